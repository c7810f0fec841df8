//! Plain records of the kernel's API and its store: tenants and API keys, timer queries
//! and pages, leased deliveries, attempt reports and what they led to, event queries and
//! lease renewals. The kernel's API passes them to its callers and the store reads and
//! writes them, so they live here, below both: data only, no I/O.

use crate::{
    Action, AttemptOutcome, AttemptRecord, Delivery, DeliveryId, DeliveryStatus, Event, EventType,
    Timer, TimerId, TimerStatus,
};

/// A tenant: the unit of isolation, quotas and signing secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// The tier name; its limits are the control plane's configuration.
    pub tier: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// A change to a tenant; `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantUpdate {
    pub name: Option<String>,
    pub tier: Option<String>,
}

/// An API key as stored: the SHA-256 of the plaintext, never the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub key_hash: [u8; 32],
    /// The first characters of the plaintext, so people can tell their keys apart.
    pub prefix: String,
    pub roles: Vec<String>,
    pub created_at_us: i64,
    pub expires_at_us: Option<i64>,
    pub revoked_at_us: Option<i64>,
    pub last_used_at_us: Option<i64>,
}

/// A dashboard sign-in as stored: the SHA-256 of its token (the token itself stays in the
/// browser's cookie), the key it was opened with and that key's tenant. It authenticates
/// like its key until `expires_at_us`, and never once the key is revoked or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSession {
    pub token_hash: [u8; 32],
    pub key_id: String,
    pub tenant_id: String,
    pub created_at_us: i64,
    pub expires_at_us: i64,
}

/// A session with the key and tenant it acts for, as one read of the store finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSessionGrant {
    pub session: UiSession,
    pub key: ApiKey,
    pub tenant: Tenant,
}

/// A tenant's current usage, for quotas and `/usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// Timers created in the current UTC day.
    pub created_today: u64,
    /// Timers scheduled and not yet fired or cancelled.
    pub pending: u64,
}

/// The ordering key of the due index: (fire time, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DueTimer {
    pub fire_at_us: i64,
    pub id: TimerId,
}

/// Why a scheduled timer is changed: it decides what its `timer.updated` event says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChangeCause {
    /// A client changed it (`PATCH /timers/{id}`).
    #[default]
    Update,
    /// A client asked it to fire now (`POST /timers/{id}/fire`): its fire time became now.
    FireNow,
}

/// A validated change to a scheduled timer; `None` leaves a field as it is. Built by
/// [`crate::request::TimerPatch::validate`] (or [`TimerChange::fire_now`]) and applied by
/// [`crate::plan::plan_update`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerChange {
    /// The version the client read: the change is refused unless the timer is still at
    /// it. `None` checks no version (fire now).
    pub expected_version: Option<i64>,
    /// The new fire time, and the duration it was given as (`None` for a `fireAt`).
    pub fire_at: Option<(i64, Option<i64>)>,
    pub action_bundle: Option<crate::ActionBundle>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub cause: ChangeCause,
}

impl TimerChange {
    /// Makes the timer due at `now_us`, whatever its version.
    pub fn fire_now(now_us: i64) -> Self {
        Self {
            fire_at: Some((now_us, None)),
            cause: ChangeCause::FireNow,
            ..Self::default()
        }
    }
}

/// What a change did: the timer as it is now, and the fire time it had before (so the
/// kernel moves it in its window).
#[derive(Debug, Clone, PartialEq)]
pub struct TimerChanged {
    pub timer: Timer,
    pub previous_fire_at_us: i64,
}

/// Filters and paging for listing a tenant's timers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerQuery {
    pub tenant_id: String,
    pub status: Option<TimerStatus>,
    /// Only timers with this label key set to this value.
    pub label: Option<(String, String)>,
    /// Only timers whose name starts with this text (case-sensitive, compared by
    /// characters; at most [`crate::limits::MAX_NAME_BYTES`] bytes).
    pub name_prefix: Option<String>,
    /// Only timers that fire at or after this time (µs).
    pub fire_from_us: Option<i64>,
    /// Only timers that fire before this time (µs).
    pub fire_before_us: Option<i64>,
    pub limit: usize,
    /// Resume after this (fire time, id), as returned in a previous page.
    pub after: Option<DueTimer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerPage {
    pub timers: Vec<Timer>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<DueTimer>,
}

impl TimerPage {
    /// A page of at most `limit` timers from `timers`, read in (fire time, id) order with
    /// one more than the page holds when there is one: that extra timer says another page
    /// follows, which starts after the page's last timer.
    pub fn from_rows(mut timers: Vec<Timer>, limit: usize) -> Self {
        let next = if timers.len() > limit {
            timers.truncate(limit);
            timers.last().map(|t| DueTimer {
                fire_at_us: t.fire_at_us,
                id: t.id,
            })
        } else {
            None
        };
        TimerPage { timers, next }
    }
}

impl DueTimer {
    /// An opaque cursor text for clients (`v1.<fire_at_us>.<id hex>`, base16).
    pub fn encode_cursor(&self) -> String {
        let raw = format!("v1.{}.{}", self.fire_at_us, self.id.0.simple());
        raw.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Decodes a cursor made by [`DueTimer::encode_cursor`]; `None` for anything else.
    pub fn decode_cursor(text: &str) -> Option<Self> {
        if text.len() > 200 || !text.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect();
        let raw = String::from_utf8(bytes?).ok()?;
        let mut parts = raw.split('.');
        if parts.next()? != "v1" {
            return None;
        }
        let fire_at_us = parts.next()?.parse().ok()?;
        let id = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(DueTimer { fire_at_us, id })
    }
}

/// A delivery handed to an executor, with what it needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedDelivery {
    pub delivery: Delivery,
    pub action: Action,
    pub timer: Timer,
    /// The version of the tenant's signing secrets when this was leased (the creation
    /// time of its current secret; 0 when it has none yet). An executor whose cached
    /// secrets are older fetches them again, so a delivery leased after a rotation
    /// returned carries the new signature at once.
    pub secrets_version: i64,
}

/// An executor's report of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    pub delivery_id: DeliveryId,
    pub lease_owner: String,
    /// The attempt number the executor was given with the lease.
    pub attempt: u32,
    pub started_at_us: i64,
    pub duration_us: i64,
    pub outcome: AttemptOutcome,
    /// The server's `Retry-After`, in milliseconds, if it sent one.
    pub retry_after_ms: Option<u64>,
    pub http_status: Option<u16>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// What a report led to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOutcome {
    pub delivery_status: DeliveryStatus,
    /// When the next attempt is due, if one was scheduled.
    pub next_attempt_at_us: Option<i64>,
    pub timer_status: TimerStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryWithAttempts {
    pub delivery: Delivery,
    pub attempts: Vec<AttemptRecord>,
}

/// Most events one `read_events` call returns; larger limits are lowered to this.
pub const MAX_EVENTS_PER_READ: usize = 10_000;

/// Which events to read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventQuery {
    pub after_seq: i64,
    pub limit: usize,
    pub tenant_id: Option<String>,
    pub timer_id: Option<TimerId>,
    /// Only these types; empty means all.
    pub types: Vec<EventType>,
}

impl EventQuery {
    /// True when `event` passes the tenant, timer and type filters.
    pub fn matches(&self, event: &Event) -> bool {
        self.tenant_id
            .as_ref()
            .is_none_or(|t| *t == event.tenant_id)
            && self.timer_id.is_none_or(|t| t == event.timer_id)
            && (self.types.is_empty() || self.types.contains(&event.event_type))
    }
}

/// What a renewal of an executor's leases did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// The store's time of the renewal (its clock, not the executor's).
    pub now_us: i64,
    /// The renewed leases end at this time.
    pub expires_at_us: i64,
    /// Deliveries whose lease the owner no longer holds (handed to another executor,
    /// rescued, or finished): their attempts must stop.
    pub lost: Vec<DeliveryId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let d = DueTimer {
            fire_at_us: 1_795_773_600_000_000,
            id: TimerId::new_v7(),
        };
        assert_eq!(DueTimer::decode_cursor(&d.encode_cursor()), Some(d));
        for bad in ["", "zz", "00", "763", &"ab".repeat(101), "76312e", "v1.5.x"] {
            assert_eq!(DueTimer::decode_cursor(bad), None, "{bad}");
        }
    }
}

/// Most timers counted per status by [`TimerCounts`]: a status with more shows this number
/// and sets `capped`, so a count reads at most five times this many index entries.
pub const MAX_COUNTED_PER_STATUS: u64 = 100_000;

/// A tenant's timers by status, each count at most [`MAX_COUNTED_PER_STATUS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerCounts {
    pub scheduled: u64,
    pub fired: u64,
    pub settled: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// True when a count stopped at the bound: that status has at least that many.
    pub capped: bool,
}

/// Longest window of [`DeliveryActivity`], in minutes.
pub const MAX_ACTIVITY_MINUTES: u32 = 60;
/// Most events of the log (all tenants) read to count one window of [`DeliveryActivity`]:
/// at about 70 events a second for an hour the window is read whole; beyond, its most
/// recent part is (`complete` false).
pub const MAX_ACTIVITY_EVENTS_SCANNED: usize = 250_000;

/// Delivery outcomes of one minute, from the event log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryMinute {
    /// Start of the minute (µs, a multiple of 60 s).
    pub start_us: i64,
    /// `delivery.attempted` events whose outcome is `succeeded`.
    pub succeeded: u64,
    /// `delivery.retrying` events (a backoff, an expired lease or a redrive).
    pub retried: u64,
    /// `delivery.dead` events.
    pub dead: u64,
}

/// A tenant's delivery outcomes per minute over a recent window, oldest minute first; the
/// last minute is the current one, still running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryActivity {
    pub minutes: Vec<DeliveryMinute>,
    /// False when the window held more events (of all tenants) than
    /// [`MAX_ACTIVITY_EVENTS_SCANNED`]: its oldest minutes may then be undercounted.
    pub complete: bool,
}
