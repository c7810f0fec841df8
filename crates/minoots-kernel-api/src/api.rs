//! The kernel's API as one Rust trait, [`KernelApi`], with two implementations: the
//! in-process kernel (`minoots_kernel::Kernel`) and the gRPC client
//! [`crate::grpc::GrpcKernelClient`]. The orchestrator and the control plane are written
//! against this trait only, so the same code runs in one process or as separate services.

use minoots_core::billing::{BillingApplied, BillingEvent, BillingState, GraceSweep, MeterUsage};
use std::pin::Pin;

use async_trait::async_trait;
use minoots_core::records::{
    ApiKey, AttemptReport, DeliveryActivity, DeliveryWithAttempts, EventQuery, LeaseRenewal,
    LeasedDelivery, ReportOutcome, Tenant, TenantUpdate, TenantUsage, TimerCounts, TimerPage,
    TimerQuery, UiSession, UiSessionGrant,
};
use minoots_core::schedule::{Schedule, ScheduleFilter, ScheduleRequest, ScheduleRun};
use minoots_core::{DeliveryId, Event, ScheduleId, Timer, TimerId, TimerPatch, TimerRequest};
use tokio_stream::Stream;

use crate::error::{KernelError, KernelResult};

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = KernelResult<T>> + Send + 'static>>;

/// What `schedule_timer` did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleOutcome {
    pub timer: Timer,
    /// False when the idempotency key matched an existing timer, which is returned.
    pub created: bool,
}

/// An executor asking for deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRequest {
    /// Identifies the executor; reports must carry it (fencing).
    pub lease_owner: String,
    /// How long the executor may hold each delivery before it is handed out again.
    pub lease_ttl_ms: u32,
    /// Most deliveries buffered towards this executor at once.
    pub max_in_flight: u32,
}

/// An executor renewing the leases it holds (its heartbeat).
#[derive(Debug, Clone, PartialEq)]
pub struct RenewLeasesRequest {
    pub lease_owner: String,
    /// The renewed leases end this long from the kernel's now.
    pub lease_ttl_ms: u32,
    /// (delivery, attempt) of each lease held; empty asks only for the kernel's time.
    pub leases: Vec<(DeliveryId, u32)>,
}

/// How long a fire-now waits for the fire to commit before it answers with the timer as
/// it stands (due now): well within the control plane's kernel timeout (10 s), and long
/// past a kernel's usual fire latency (milliseconds).
pub const FIRE_NOW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most leases renewed by one call (an executor holding more renews in several calls).
pub const MAX_RENEW_LEASES: usize = 4_096;

impl RenewLeasesRequest {
    pub fn validate(&self) -> KernelResult<()> {
        validate_owner_and_ttl(&self.lease_owner, self.lease_ttl_ms)?;
        if self.leases.len() > MAX_RENEW_LEASES {
            return Err(KernelError::invalid(
                "leases",
                format!("at most {MAX_RENEW_LEASES} per call; send the rest in another call"),
            ));
        }
        Ok(())
    }
}

/// The lease owner is stored with every lease and attempt, so it is plain text: no
/// control characters (PostgreSQL's text cannot even hold NUL).
fn validate_owner_and_ttl(lease_owner: &str, lease_ttl_ms: u32) -> KernelResult<()> {
    if lease_owner.is_empty()
        || lease_owner.len() > MAX_LEASE_OWNER_BYTES
        || lease_owner.chars().any(char::is_control)
    {
        return Err(KernelError::invalid(
            "leaseOwner",
            format!("must be 1 to {MAX_LEASE_OWNER_BYTES} bytes without control characters"),
        ));
    }
    if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&lease_ttl_ms) {
        return Err(KernelError::invalid(
            "leaseTtlMs",
            format!("must be between {MIN_LEASE_TTL_MS} and {MAX_LEASE_TTL_MS}"),
        ));
    }
    Ok(())
}

pub const MIN_LEASE_TTL_MS: u32 = 1_000;
pub const MAX_LEASE_TTL_MS: u32 = 3_600_000;
pub const MAX_LEASE_IN_FLIGHT: u32 = 1_024;
pub const MAX_LEASE_OWNER_BYTES: usize = 128;
/// Longest delay of a delivery handed back with [`KernelApi::release_delivery_after`].
pub const MAX_RELEASE_DELAY_MS: u32 = 60_000;

impl LeaseRequest {
    pub fn validate(&self) -> KernelResult<()> {
        validate_owner_and_ttl(&self.lease_owner, self.lease_ttl_ms)?;
        if self.max_in_flight == 0 || self.max_in_flight > MAX_LEASE_IN_FLIGHT {
            return Err(KernelError::invalid(
                "maxInFlight",
                format!("must be between 1 and {MAX_LEASE_IN_FLIGHT}"),
            ));
        }
        Ok(())
    }
}

/// The horology kernel, as seen by the control plane and the orchestrator.
#[async_trait]
pub trait KernelApi: Send + Sync + 'static {
    /// Validates and durably schedules a timer for `tenant_id`. Answers after the commit.
    async fn schedule_timer(
        &self,
        tenant_id: &str,
        request: TimerRequest,
    ) -> KernelResult<ScheduleOutcome> {
        self.schedule_timer_with(tenant_id, request, TenantQuotas::default())
            .await
    }

    /// `schedule_timer` checked against the tenant's quotas in the same transaction
    /// (`QuotaExceeded`, nothing stored). An idempotency key reused within 24 h for a
    /// different request is a `Conflict`; for the same request it returns the original.
    async fn schedule_timer_with(
        &self,
        tenant_id: &str,
        request: TimerRequest,
        quotas: TenantQuotas,
    ) -> KernelResult<ScheduleOutcome>;

    async fn get_timer(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer>;

    async fn list_timers(&self, query: TimerQuery) -> KernelResult<TimerPage>;

    /// Cancels a scheduled timer; `Conflict` once it fired or was cancelled.
    async fn cancel_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        reason: Option<String>,
    ) -> KernelResult<Timer>;

    /// Changes a scheduled timer of `tenant_id` as `patch` says: each field is validated
    /// as on create, and the change applies only at `patch.version`. Answers after the
    /// commit with the timer at its next version. `NotFound` for another tenant's timer;
    /// `Conflict` when the version differs or the timer is no longer scheduled.
    async fn update_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        patch: TimerPatch,
    ) -> KernelResult<Timer>;

    /// Fires a scheduled timer of `tenant_id` now, through the normal fire path (its fire
    /// time becomes now; deliveries, events and lateness as for any fire). Answers once it
    /// fired, or after [`FIRE_NOW_WAIT`] with the timer due now when its kernel has not
    /// fired it yet (it fires as soon as that kernel does). `Conflict` when it is no
    /// longer scheduled.
    async fn fire_timer_now(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer>;

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        id: TimerId,
    ) -> KernelResult<Vec<DeliveryWithAttempts>>;

    /// Validates and stores a schedule of `tenant_id` within `quotas`; its slots are
    /// dispatched from then on. `Invalid` names each refused field; `QuotaExceeded` with
    /// the `schedules` quota when the tenant keeps its tier's number already.
    async fn create_schedule(
        &self,
        tenant_id: &str,
        request: ScheduleRequest,
        quotas: ScheduleQuotas,
    ) -> KernelResult<Schedule>;

    /// The schedule; `NotFound` for another tenant's.
    async fn get_schedule(&self, tenant_id: &str, id: ScheduleId) -> KernelResult<Schedule>;

    /// The tenant's schedules that match `filter`, by id, after `after`, at most `limit`.
    async fn list_schedules(
        &self,
        tenant_id: &str,
        filter: &ScheduleFilter,
        after: Option<ScheduleId>,
        limit: usize,
    ) -> KernelResult<Vec<Schedule>>;

    /// Changes a schedule of `tenant_id` (pause, resume, a merge patch of its spec at a
    /// version, trigger-now, delete) in one transaction with the dispatch that follows.
    /// `Invalid` names each refused field of a patch (checked as on create, with `quotas`);
    /// `Conflict` on a stale version or when the schedule's status forbids the change
    /// (a completed schedule cannot be paused, resumed or triggered); `NotFound` for
    /// another tenant's.
    async fn change_schedule(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        change: ScheduleChange,
        quotas: ScheduleQuotas,
    ) -> KernelResult<ScheduleChanged>;

    /// A schedule's run records in slot order, after the slot `after_us`, at most `limit`.
    async fn list_schedule_runs(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        after_us: Option<i64>,
        limit: usize,
    ) -> KernelResult<Vec<ScheduleRun>>;

    /// Events after `query.after_seq` that match the query, then live ones as they happen,
    /// in sequence order, without gaps or repeats. Ends only when the receiver drops it.
    /// With `after_seq` = [`EVENTS_FROM_NOW`], every event committed after this returns.
    async fn stream_events(&self, query: EventQuery) -> KernelResult<BoxStream<Event>>;

    /// Due deliveries leased to `request.lease_owner`, as they become due.
    async fn lease_deliveries(
        &self,
        request: LeaseRequest,
    ) -> KernelResult<BoxStream<LeasedDelivery>>;

    /// Extends the leases the executor still holds to `lease_ttl_ms` from now and names
    /// those it lost; also tells the kernel's time, so the executor can bound the clock
    /// skew between them. Executors call it every third of their lease TTL while they hold
    /// deliveries, so a lease can be short and an executor that dies is replaced soon.
    async fn renew_leases(&self, request: RenewLeasesRequest) -> KernelResult<LeaseRenewal>;

    /// Records an attempt; `Fenced` when the lease is no longer held.
    async fn report_attempt(&self, report: AttemptReport) -> KernelResult<ReportOutcome>;

    /// Hands a leased delivery back unexecuted (an executor shutting down); it is due again
    /// at once and the attempt is not counted. `Fenced` when the lease is no longer held.
    async fn release_delivery(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
    ) -> KernelResult<()>;

    /// Hands a leased delivery back unexecuted, due again `delay_ms` from now (at most
    /// [`MAX_RELEASE_DELAY_MS`]): an executor that cannot start it yet, e.g. because its
    /// destination is saturated, lets other executors and other deliveries go first.
    async fn release_delivery_after(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
        delay_ms: u32,
    ) -> KernelResult<()>;

    /// Re-queues a failed timer's dead deliveries; `Conflict` when none is dead.
    async fn redrive_timer(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer>;

    /// The tenant's `whsec_` signing secrets, newest first: the current one and, for
    /// [`SECRET_ROTATION_GRACE`] after a rotation, the previous one. Created on first use.
    async fn webhook_secrets(&self, tenant_id: &str) -> KernelResult<Vec<String>>;

    /// Replaces the tenant's current secret and returns the new one.
    async fn rotate_webhook_secret(&self, tenant_id: &str) -> KernelResult<String>;

    /// Creates a tenant; `Conflict` when the id is taken.
    async fn create_tenant(&self, tenant: NewTenant) -> KernelResult<Tenant>;

    /// The tenant, or `NotFound`.
    async fn get_tenant(&self, id: &str) -> KernelResult<Tenant>;

    /// Tenants ordered by id, after `after`, at most `limit` (1 to [`MAX_ADMIN_PAGE`]).
    async fn list_tenants(&self, after: Option<String>, limit: usize) -> KernelResult<Vec<Tenant>>;

    /// Renames a tenant or moves it to another tier; `NotFound` for an unknown id.
    async fn update_tenant(&self, id: &str, update: TenantUpdate) -> KernelResult<Tenant>;

    /// Stores a new key (its hash; the plaintext stays with the caller). The tenant must
    /// exist (`NotFound` otherwise).
    async fn create_api_key(&self, key: ApiKey) -> KernelResult<ApiKey>;

    /// The live key whose plaintext hashes to `key_hash`, with its tenant: `None` when it
    /// is unknown, revoked or expired. Records the use (written to the store in batches).
    async fn authenticate(&self, key_hash: [u8; 32]) -> KernelResult<Option<(ApiKey, Tenant)>>;

    /// Keys ordered by id (of one tenant, or all), after `after`, at most `limit`.
    async fn list_api_keys(
        &self,
        tenant_id: Option<String>,
        after: Option<String>,
        limit: usize,
    ) -> KernelResult<Vec<ApiKey>>;

    /// Revokes a key; it stops authenticating at once. `NotFound` for an unknown id.
    async fn revoke_api_key(&self, id: &str) -> KernelResult<ApiKey>;

    /// The tenant's timers created today (UTC) and pending now.
    async fn tenant_usage(&self, tenant_id: &str) -> KernelResult<TenantUsage>;

    /// Opens a dashboard session for a key the caller authenticated: stores the hash of
    /// its token, expiring `ttl_ms` from the kernel's now (or when the key expires, if
    /// sooner). The key's oldest sessions end beyond [`MAX_UI_SESSIONS_PER_KEY`];
    /// `Unavailable` when the store holds [`MAX_UI_SESSIONS`] live sessions already.
    async fn create_ui_session(&self, session: NewUiSession) -> KernelResult<UiSession>;

    /// The live session whose token hashes to `token_hash`, with its key and tenant:
    /// `None` when it is unknown, ended, expired, or its key is revoked or expired.
    /// Read from the store on every call (no cache), so an end or a revocation through
    /// any kernel applies to the next request. Records the key's use as `authenticate`.
    async fn ui_session(&self, token_hash: [u8; 32]) -> KernelResult<Option<UiSessionGrant>>;

    /// Ends the session (sign-out); `false` when there was none.
    async fn end_ui_session(&self, token_hash: [u8; 32]) -> KernelResult<bool>;

    /// The tenant's timers by status, each count stopping at
    /// [`minoots_core::records::MAX_COUNTED_PER_STATUS`] (then `capped`); read from counts
    /// the store keeps per tenant or from an index, never the timers themselves.
    async fn timer_counts(&self, tenant_id: &str) -> KernelResult<TimerCounts>;

    /// The tenant's delivery outcomes per minute over the last `minutes` minutes (1 to
    /// [`minoots_core::records::MAX_ACTIVITY_MINUTES`]) of the kernel's clock, oldest
    /// first, whole minutes of UTC with the current one last; read from at most
    /// [`minoots_core::records::MAX_ACTIVITY_EVENTS_SCANNED`] events of the log.
    async fn delivery_activity(
        &self,
        tenant_id: &str,
        minutes: u32,
    ) -> KernelResult<DeliveryActivity>;

    /// Records a Stripe event the caller verified, once: in one transaction its id and
    /// its change of the tenant's account and tier (see
    /// [`minoots_core::billing::plan_account`]); `Duplicate` with no effect for an id
    /// recorded before. A tier that changed applies to the next request (key caches are
    /// dropped). `Invalid` for ids longer than the store keeps.
    async fn record_billing_event(&self, event: BillingEvent) -> KernelResult<BillingApplied>;

    /// The tenant's billing account (if any) and its metered usage since the start of its
    /// current period (or of the current UTC month when no period is known).
    async fn billing_state(&self, tenant_id: &str) -> KernelResult<BillingState>;

    /// Ends, at the kernel's now, the grace periods that ran out: their tenants become
    /// free at once. Says how many, and when the next one ends.
    async fn expire_billing_grace(&self) -> KernelResult<GraceSweep>;

    /// Unsent usage of the metering buckets closed at the kernel's now
    /// ([`minoots_core::billing::bucket_ready`]), oldest first, at most `limit` rows.
    async fn meter_usage_ready(&self, limit: u32) -> KernelResult<Vec<MeterUsage>>;

    /// Marks usage rows ((tenant, meter, bucket start)) as sent; returns how many were
    /// not marked before.
    async fn mark_meter_sent(&self, rows: Vec<(String, String, i64)>) -> KernelResult<u64>;
}

/// A dashboard session to open, for a key the control plane has just authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUiSession {
    /// SHA-256 of the session token; the token itself never leaves the control plane.
    pub token_hash: [u8; 32],
    pub key_id: String,
    pub tenant_id: String,
    /// How long the session lasts, between [`MIN_UI_SESSION_TTL`] and [`MAX_UI_SESSION_TTL`].
    pub ttl_ms: u64,
    /// When the key expires: the session never outlives it.
    pub key_expires_at_us: Option<i64>,
}

/// Most live dashboard sessions of one key: a new sign-in beyond it ends the key's oldest
/// session (a person signing in from a few browsers never meets it; a script signing in in
/// a loop cannot grow the table).
pub const MAX_UI_SESSIONS_PER_KEY: usize = 32;
/// Most live dashboard sessions in the store (about 100 bytes a row: 10 MB at most);
/// beyond it sign-ins are refused until sessions end or expire.
pub const MAX_UI_SESSIONS: u64 = 100_000;
/// Shortest and longest lifetime of a dashboard session.
pub const MIN_UI_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(60);
pub const MAX_UI_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Limits a create is checked against, from the tenant's tier; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantQuotas {
    pub max_per_day: Option<u64>,
    pub max_pending: Option<u64>,
}

/// What a schedule's create is checked against, from the tenant's tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleQuotas {
    /// Schedules the tenant may keep that are not completed; `None` is unlimited.
    pub max_schedules: Option<u64>,
    /// The shortest time allowed between two slots of one schedule.
    pub min_interval_ms: i64,
}

/// A change to a schedule through the API.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleChange {
    /// Stop firing; each slot that passes is recorded `skipped(paused)`.
    Pause,
    /// Fire again from now on; with `catch_up`, the paused slots within the misfire window
    /// are caught up by the misfire policy.
    Resume { catch_up: bool },
    /// A JSON merge patch of the schedule's fields, applied if it is at `version`.
    Update {
        version: i64,
        patch: serde_json::Map<String, serde_json::Value>,
    },
    /// Run once now, outside the slots.
    Trigger,
    /// Remove the schedule and its run records; its runs not yet fired are cancelled.
    Delete,
}

impl ScheduleChange {
    /// The name on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            ScheduleChange::Pause => "pause",
            ScheduleChange::Resume { .. } => "resume",
            ScheduleChange::Update { .. } => "update",
            ScheduleChange::Trigger => "trigger",
            ScheduleChange::Delete => "delete",
        }
    }
}

/// What a schedule change did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleChanged {
    /// The schedule after the change (as it was, for a delete).
    pub schedule: Schedule,
    /// The run a trigger created.
    pub timer: Option<Timer>,
}

/// A tenant to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenant {
    pub id: String,
    pub name: String,
    pub tier: String,
}

/// `EventQuery::after_seq` for "only events committed from now on" (long-poll waits).
pub const EVENTS_FROM_NOW: i64 = -1;

/// Most tenants or keys listed in one page.
pub const MAX_ADMIN_PAGE: usize = 1_000;
/// Longest tenant or key name, in bytes.
pub const MAX_ADMIN_NAME_BYTES: usize = 200;
/// Longest tier name or role name, in bytes.
pub const MAX_TIER_NAME_BYTES: usize = 64;
/// Most roles on one key.
pub const MAX_KEY_ROLES: usize = 8;
/// Longest key id and key prefix, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 64;

/// How long a rotated-out signing secret keeps signing alongside the new one.
pub const SECRET_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Compares two secrets in time independent of where they differ (the kernel token, key
/// hashes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_owner_is_short_plain_text() {
        let request = |owner: &str| LeaseRequest {
            lease_owner: owner.to_string(),
            lease_ttl_ms: 30_000,
            max_in_flight: 10,
        };
        request("orchestrator-7f3a").validate().unwrap();
        for bad in [
            "",
            "a\0b",
            "line\nbreak",
            &"x".repeat(MAX_LEASE_OWNER_BYTES + 1),
        ] {
            let err = request(bad).validate().unwrap_err().to_string();
            assert!(err.contains("leaseOwner"), "{bad:?}: {err}");
        }
    }
}
