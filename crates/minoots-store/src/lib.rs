//! MINOOTS storage: the [`Store`] trait every backend implements, the embedded SQLite
//! backend, the PostgreSQL backend (for several kernels on one database), and a
//! conformance suite written once that every backend must pass.
//!
//! The trait makes the kernel's durable operations explicit: create/change/cancel timers, load the
//! next window of due timers, fire them (one transaction per firing: status, deliveries and
//! events), claim due deliveries under a lease, report attempts fenced by (lease owner,
//! attempt), rescue expired leases, and read the event log from any sequence number.
//! A backend answers a write only after it is committed and durable. Backends read "now"
//! from the [`minoots_core::Clock`] they were opened with (a cluster backend may use its
//! database's clock instead); callers never pass the time for lease arithmetic.

pub mod billing;
pub mod conformance;
pub mod dashboard;
pub mod migrate;
mod plan;
pub mod postgres;
pub mod schedule_control;
pub mod schedules;
pub mod sessions;
pub mod sqlite;
mod types;
pub mod writer_stats;

pub use billing::BillingStore;
pub use dashboard::DashboardStore;
pub use postgres::{ANNOUNCE_DUE_WITHIN_US, PostgresConfig, PostgresStore, SHARD_COUNT, shard_of};
pub use sessions::UiSessionStore;
pub use sqlite::{SqliteConfig, SqliteStore};
pub use types::*;

use std::sync::Arc;

use async_trait::async_trait;
use minoots_core::schedule::{Schedule, ScheduleRun};
use minoots_core::{Delivery, Event, ScheduleId, Timer, TimerId};

/// An event of the live feed, shared by all its receivers: every receiver of a broadcast
/// gets its own clone of each message, and a live event goes to every subscriber (the
/// schedules' dispatcher, each event stream) whatever its tenant.
pub type LiveEvent = Arc<Event>;
use tokio::sync::{broadcast, watch};

/// What a kernel must know when it shares its store with other kernels (PostgreSQL; see
/// `postgres/shards.rs`): which timers are its own to fire, when that changes, which
/// timers other kernels created for it, when keys changed elsewhere, and whether it is
/// the one kernel that runs the cluster's maintenance.
pub trait Cluster: Send + Sync {
    /// Whether the timer is in a shard this kernel holds now.
    fn owns_timer(&self, id: TimerId) -> bool;
    /// Changes whenever the shards held change, or notifications may have been missed
    /// (a reconnect): the kernel then reloads its window from the store.
    fn shard_changes(&self) -> watch::Receiver<u64>;
    /// How many shards this kernel holds.
    fn shards_held(&self) -> usize;
    /// Timers created through any handle of the database and due soon, as the database
    /// announced them (of every shard: the kernel keeps those it owns).
    fn scheduled_elsewhere(&self) -> broadcast::Receiver<DueTimer>;
    /// A message after any tenant or key change through any handle, and after a
    /// reconnect (when changes may have been missed).
    fn key_changes(&self) -> broadcast::Receiver<()>;
    /// Changes when another handle made deliveries due (fired, rescued, handed back,
    /// redriven, or a retry scheduled), and after a reconnect, so this kernel's lease
    /// sessions claim them at once.
    fn deliveries_ready(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Whether this kernel runs the cluster's maintenance (lease rescue, retention): one
    /// kernel at a time does.
    fn maintains(&self) -> bool;
}

/// The durable state of the horology kernel.
#[async_trait]
pub trait Store: UiSessionStore + DashboardStore + BillingStore + Send + Sync + 'static {
    /// Stores a new, validated timer and appends `timer.scheduled`. When the timer carries
    /// an idempotency key already used by the same tenant, nothing is written and the
    /// existing timer is returned with `created == false`.
    async fn create_timer(&self, timer: Timer) -> StoreResult<CreateOutcome> {
        self.create_timer_with(timer, CreateOptions::default())
            .await
    }

    /// `create_timer` with quotas checked (`QuotaExceeded`, nothing written) and the
    /// request's fingerprint kept with its idempotency key: a reuse of the key within
    /// [`IDEMPOTENCY_KEY_TTL_US`] with another fingerprint is `IdempotencyMismatch`; after
    /// it, the key is free again. Every create counts towards the tenant's day and pending
    /// usage; returning an existing timer counts nothing.
    async fn create_timer_with(
        &self,
        timer: Timer,
        options: CreateOptions,
    ) -> StoreResult<CreateOutcome>;

    /// Stores many timers in one call (each with the semantics of `create_timer`).
    async fn create_timers(&self, timers: Vec<Timer>) -> StoreResult<Vec<CreateOutcome>>;

    /// The timer, if it exists and belongs to `tenant_id`.
    async fn get_timer(&self, tenant_id: &str, id: TimerId) -> StoreResult<Option<Timer>>;

    /// A page of a tenant's timers ordered by (fire time, id).
    async fn list_timers(&self, query: TimerQuery) -> StoreResult<TimerPage>;

    /// Cancels a scheduled timer. `NotFound` for an unknown id or another tenant's timer;
    /// `Conflict` when it has already fired or been cancelled.
    async fn cancel_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        reason: Option<String>,
    ) -> StoreResult<Timer>;

    /// Changes a scheduled timer as [`minoots_core::plan::plan_update`] says (its fire
    /// time, actions, labels or metadata; version + 1; `timer.updated`), in one write.
    /// `NotFound` for an unknown id or another tenant's timer; `Conflict` once it fired or
    /// was cancelled; `VersionMismatch` when the change names another version. A refused
    /// change writes nothing. On a shared store, a new fire time due soon is announced to
    /// the kernel holding the timer's shard, as a create's is.
    async fn update_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        change: TimerChange,
    ) -> StoreResult<TimerChanged>;

    /// Scheduled timers due at or before `until_us`, after the `after` key, ordered by
    /// (fire time, id), at most `limit`. The scheduler's window is filled from this.
    async fn load_due_timers(
        &self,
        after: Option<DueTimer>,
        until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<DueTimer>>;

    /// Fires timers: each scheduled one becomes `fired` with one pending delivery per action
    /// (or `settled` at once when it has none), with events, in one transaction per call.
    /// Timers that are no longer scheduled are skipped, so firing twice is harmless.
    async fn fire_timers(&self, fires: Vec<FireRequest>) -> StoreResult<Vec<FireOutcome>>;

    /// Fires like [`Store::fire_timers`] and, when `claim` is given, claims for it like
    /// [`Store::claim_deliveries`] in the same transaction: an executor waiting for work
    /// gets the deliveries of these timers (and any older ones due) without a transaction
    /// and a commit of its own. Without `claim` it only fires.
    async fn fire_and_claim(
        &self,
        fires: Vec<FireRequest>,
        claim: Option<ClaimRequest>,
    ) -> StoreResult<(Vec<FireOutcome>, Vec<LeasedDelivery>)>;

    /// Claims up to `limit` due pending deliveries for `lease_owner` for `lease_ttl_us`:
    /// each becomes `in_flight` and its attempt number is incremented.
    async fn claim_deliveries(
        &self,
        lease_owner: &str,
        lease_ttl_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<LeasedDelivery>>;

    /// Records one attempt's outcome. Refused with `Fenced` unless the delivery is in flight
    /// under exactly this lease owner and attempt number. Decides retry, success or death.
    async fn report_attempt(&self, report: AttemptReport) -> StoreResult<ReportOutcome>;

    /// Returns in-flight deliveries whose lease expired to `pending` (or `dead` when their
    /// attempts are used up). Returns how many were rescued.
    async fn rescue_expired_leases(&self, limit: usize) -> StoreResult<usize>;

    /// The earliest `next_attempt_at` of any pending delivery.
    async fn next_delivery_due_us(&self) -> StoreResult<Option<i64>>;

    /// Deliveries of a timer with their attempts. `NotFound` for another tenant's timer.
    async fn list_deliveries(
        &self,
        tenant_id: &str,
        timer_id: TimerId,
    ) -> StoreResult<Vec<DeliveryWithAttempts>>;

    /// Events with `seq > after_seq` that match the query, in order, at most `limit`.
    /// Fewer than `limit` means the end of the log was reached (everything committed so
    /// far that matches has been returned). `limit` above 10,000 is lowered to 10,000.
    async fn read_events(&self, query: EventQuery) -> StoreResult<Vec<Event>>;

    /// The highest sequence number written so far (0 when the log is empty).
    async fn latest_event_seq(&self) -> StoreResult<i64>;

    /// Live events, in commit order, as they are committed. A receiver that lags behind
    /// gets `Lagged` and must catch up with `read_events`. Each event is shared by every
    /// receiver ([`LiveEvent`]): a receiver copies only the events it keeps.
    fn subscribe_events(&self) -> broadcast::Receiver<LiveEvent>;

    /// Deletes up to `limit` of the oldest events that occurred before `before_us`.
    async fn prune_events(&self, before_us: i64, limit: usize) -> StoreResult<usize>;

    /// Counts for metrics and readiness.
    async fn stats(&self) -> StoreResult<StoreStats>;

    /// The writer's group commits (durations, sizes), for `/metrics`.
    fn writer_stats(&self) -> Arc<writer_stats::WriterStats>;

    /// A delivery by id (for tests and operators).
    async fn get_delivery(&self, id: minoots_core::DeliveryId) -> StoreResult<Option<Delivery>>;

    /// Re-queues a failed timer's dead deliveries with a fresh retry budget; the timer goes
    /// back to `fired`. `NotFound` for another tenant's timer, `Conflict` when it has no
    /// dead delivery.
    async fn redrive_timer(&self, tenant_id: &str, id: TimerId) -> StoreResult<Timer>;

    /// Hands a leased delivery back unexecuted (graceful shutdown): it is `pending` again at
    /// once and the attempt does not count against its budget. Fenced like a report.
    async fn release_delivery(
        &self,
        delivery_id: minoots_core::DeliveryId,
        lease_owner: &str,
        attempt: u32,
    ) -> StoreResult<()> {
        self.release_delivery_after(delivery_id, lease_owner, attempt, 0)
            .await
    }

    /// Like [`Store::release_delivery`], but the delivery is due again only `delay_us`
    /// from now (an executor handing back work it cannot start yet, e.g. because the
    /// destination is saturated).
    async fn release_delivery_after(
        &self,
        delivery_id: minoots_core::DeliveryId,
        lease_owner: &str,
        attempt: u32,
        delay_us: i64,
    ) -> StoreResult<()>;

    /// Extends to `lease_ttl_us` from now each lease in `leases` ((delivery, attempt)
    /// pairs) that `lease_owner` still holds; the rest come back as `lost`. An executor
    /// renews what it holds while it works, so its leases can be short: when it dies, they
    /// end soon and its deliveries run again.
    async fn renew_leases(
        &self,
        lease_owner: &str,
        leases: Vec<(minoots_core::DeliveryId, u32)>,
        lease_ttl_us: i64,
    ) -> StoreResult<LeaseRenewal>;

    /// Ends now the leases of every owner whose name starts with `owner_prefix` (executors
    /// known to be gone, such as the embedded executor of a previous process on this
    /// store); the next rescue pass returns their deliveries. Returns how many ended.
    async fn end_leases_of(&self, owner_prefix: &str) -> StoreResult<usize>;

    /// The tenant's webhook signing secrets, newest first: the current one and those retired
    /// less than `grace_us` ago. When the tenant has none, `candidate` becomes its first.
    async fn signing_secrets(
        &self,
        tenant_id: &str,
        candidate: String,
        grace_us: i64,
    ) -> StoreResult<Vec<String>>;

    /// Makes `new_secret` the tenant's current secret; the previous one is retired now and
    /// keeps signing for the grace period given to `signing_secrets`.
    async fn rotate_signing_secret(&self, tenant_id: &str, new_secret: String) -> StoreResult<()>;

    /// Creates a tenant; `AlreadyExists` when the id is taken.
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<Tenant>;

    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;

    /// Tenants ordered by id, after `after`, at most `limit`.
    async fn list_tenants(&self, after: Option<String>, limit: usize) -> StoreResult<Vec<Tenant>>;

    /// Changes a tenant's name or tier; `NotFound` for an unknown id.
    async fn update_tenant(&self, id: &str, update: TenantUpdate) -> StoreResult<Tenant>;

    /// Stores a new key; `AlreadyExists` when its id or hash is taken.
    async fn create_api_key(&self, key: ApiKey) -> StoreResult<ApiKey>;

    /// The key whose plaintext hashes to `key_hash`, revoked or not (the caller decides).
    async fn api_key_by_hash(&self, key_hash: [u8; 32]) -> StoreResult<Option<ApiKey>>;

    /// Keys ordered by id (of one tenant, or all), after `after`, at most `limit`.
    async fn list_api_keys(
        &self,
        tenant_id: Option<String>,
        after: Option<String>,
        limit: usize,
    ) -> StoreResult<Vec<ApiKey>>;

    /// Revokes a key now (a second revoke keeps the first time) and ends its dashboard
    /// sessions in the same transaction; `NotFound` for an unknown id.
    async fn revoke_api_key(&self, id: &str) -> StoreResult<ApiKey>;

    /// Records when keys were last used, in one write for many keys; a time older than the
    /// stored one is ignored.
    async fn touch_api_keys(&self, used: Vec<(String, i64)>) -> StoreResult<()>;

    /// The tenant's timers created in the UTC day `day` (see [`utc_day`]) and pending now.
    async fn tenant_usage(&self, tenant_id: &str, day: i64) -> StoreResult<TenantUsage>;

    /// Stores a new schedule (its progress at its start, its first wake time set).
    /// `QuotaExceeded` (quota `schedules`) when the tenant already has `max_schedules`
    /// schedules that are not completed; nothing is written then.
    async fn create_schedule(
        &self,
        schedule: Schedule,
        max_schedules: Option<u64>,
    ) -> StoreResult<Schedule>;

    /// The schedule, if it exists and belongs to `tenant_id`.
    async fn get_schedule(&self, tenant_id: &str, id: ScheduleId) -> StoreResult<Option<Schedule>>;

    /// A tenant's schedules that match `filter`, ordered by id, after `after`, at most `limit`.
    async fn list_schedules(
        &self,
        tenant_id: &str,
        filter: &minoots_core::schedule::ScheduleFilter,
        after: Option<ScheduleId>,
        limit: usize,
    ) -> StoreResult<Vec<Schedule>>;

    /// Schedules whose next dispatch is due at or before `until_us`, as (wake time, id) in
    /// that order, at most `limit` (capped at [`schedules::MAX_SCHEDULES_DUE`]). The
    /// kernel's schedule dispatcher fills its queue from this.
    async fn schedules_due(
        &self,
        until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<(i64, ScheduleId)>>;

    /// Dispatches a schedule at the store's now: in one transaction, records every slot
    /// due (or about to be) exactly once, creates the timers of the runs that fire,
    /// cancels a run replaced by `cancelOther`, and advances the schedule's progress and
    /// wake time ([`schedules::dispatch_write`]). Dispatching again at once writes nothing.
    /// `NotFound` when the schedule is gone.
    async fn dispatch_schedule(&self, id: ScheduleId) -> StoreResult<Dispatched>;

    /// Changes a schedule of `tenant_id` through the API, in one transaction with the
    /// dispatch that follows ([`schedule_control::control_write`]): pause, resume, a new
    /// spec (`ScheduleVersionMismatch` on a stale version), trigger-now, or delete (with
    /// its run records). Withdrawn runs' timers are cancelled. `NotFound` for another
    /// tenant's schedule; `ScheduleState` when its status forbids the change.
    async fn control_schedule(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        control: schedule_control::ScheduleControl,
    ) -> StoreResult<schedule_control::Controlled>;

    /// A schedule's run records in slot order, after the slot `after_us`, at most `limit`.
    /// `NotFound` for another tenant's schedule.
    async fn list_schedule_runs(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        after_us: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<ScheduleRun>>;

    /// Stops accepting writes, finishes those already queued, and releases the store.
    async fn close(&self);

    /// The cluster this store's kernel belongs to, when other kernels share the store;
    /// `None` when one kernel owns it alone (SQLite: the data directory's lock), which
    /// also proves that no earlier process on it is still running.
    fn cluster(&self) -> Option<Arc<dyn Cluster>> {
        None
    }
}
