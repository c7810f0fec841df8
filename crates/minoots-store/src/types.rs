//! Plain data passed across the [`crate::Store`] trait.

use minoots_core::{
    Action, AttemptOutcome, AttemptRecord, Delivery, DeliveryId, DeliveryStatus, EventType, Timer,
    TimerId, TimerStatus,
};

pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The object is in a state that does not allow the operation (e.g. cancel after fire).
    #[error("the timer is {status}, so it can no longer be changed")]
    Conflict { status: TimerStatus },
    /// A report for a lease that is no longer held (expired and re-claimed, or wrong owner).
    #[error(
        "stale report: delivery {delivery_id} is not in flight under this lease owner and attempt"
    )]
    Fenced { delivery_id: DeliveryId },
    /// The data directory is held by another process.
    #[error("the data directory {0} is in use by another MINOOTS process")]
    Locked(String),
    /// The store cannot write or read right now (for a reason other than the disk refusing
    /// writes: the writer stopped, a read task failed, the file cannot be opened).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The disk refused a write (full, read-only, I/O error). Nothing of the refused write
    /// was stored; reads keep working, and the same write succeeds once the disk recovers.
    #[error("the store cannot write: {0}")]
    CannotWrite(WriteTrouble),
    /// Stored data that cannot be decoded: a bug or corruption, never user input.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
    /// A tenant quota would be exceeded by this create; nothing was written.
    #[error("the {quota} quota of {limit} is reached")]
    QuotaExceeded { quota: Quota, limit: u64 },
    /// The idempotency key was used within its lifetime for a different request.
    #[error("the idempotency key was already used for a different request")]
    IdempotencyMismatch { timer_id: TimerId },
    /// An object with this id exists already (tenants, keys).
    #[error("{0} already exists")]
    AlreadyExists(String),
}

/// Why the disk refused a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteTrouble {
    /// No room left: the file system is full, or the database reached its page cap
    /// (`SqliteConfig::max_db_pages`).
    #[error("disk full")]
    DiskFull,
    /// The database or its file system is read-only.
    #[error("the disk is read-only")]
    ReadOnly,
    /// The operating system reported an I/O error while writing.
    #[error("I/O error ({0})")]
    Io(String),
}

/// The tenant quotas a create is checked against inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    /// Timers created per UTC day.
    TimersPerDay,
    /// Timers scheduled and not yet fired or cancelled.
    PendingTimers,
}

impl Quota {
    /// The name used in API answers and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::TimersPerDay => "timersPerDay",
            Quota::PendingTimers => "pendingTimers",
        }
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long an idempotency key maps to its timer; after that it may be used afresh.
pub const IDEMPOTENCY_KEY_TTL_US: i64 = 24 * 3600 * 1_000_000;

/// Options of a create beyond the timer itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// At most this many timers created by the tenant in the current UTC day.
    pub max_per_day: Option<u64>,
    /// At most this many scheduled timers of the tenant.
    pub max_pending: Option<u64>,
    /// Identifies the request that used the timer's idempotency key; a reuse of the key
    /// with another fingerprint is refused with `IdempotencyMismatch`.
    pub idempotency_fingerprint: Option<[u8; 32]>,
}

/// The UTC day number (days since the Unix epoch) of a time in microseconds.
pub fn utc_day(us: i64) -> i64 {
    us.div_euclid(86_400 * 1_000_000)
}

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

/// A tenant's current usage, for quotas and `/usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// Timers created in the current UTC day.
    pub created_today: u64,
    /// Timers scheduled and not yet fired or cancelled.
    pub pending: u64,
}

/// What `create_timer` did.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateOutcome {
    pub timer: Timer,
    /// False when an existing timer with the same idempotency key was returned.
    pub created: bool,
}

/// The ordering key of the due index: (fire time, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DueTimer {
    pub fire_at_us: i64,
    pub id: TimerId,
}

/// Filters and paging for listing a tenant's timers.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerQuery {
    pub tenant_id: String,
    pub status: Option<TimerStatus>,
    /// Only timers with this label key set to this value.
    pub label: Option<(String, String)>,
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

/// A request to fire one timer, stamped with the moment the scheduler fired it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireRequest {
    pub timer_id: TimerId,
    pub fired_at_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// Now `fired`, with this many pending deliveries.
    Fired {
        timer_id: TimerId,
        tenant_id: String,
        deliveries: usize,
        fire_at_us: i64,
    },
    /// Had no actions: now `settled`.
    Settled {
        timer_id: TimerId,
        tenant_id: String,
        fire_at_us: i64,
    },
    /// Not scheduled any more (cancelled, or already fired by an earlier call).
    Skipped {
        timer_id: TimerId,
        status: TimerStatus,
    },
    NotFound {
        timer_id: TimerId,
    },
    /// Its stored data could not be read (a bug or corruption); it was left unchanged.
    Failed {
        timer_id: TimerId,
        error: String,
    },
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
    pub fn matches(&self, event: &minoots_core::Event) -> bool {
        self.tenant_id
            .as_ref()
            .is_none_or(|t| *t == event.tenant_id)
            && self.timer_id.is_none_or(|t| t == event.timer_id)
            && (self.types.is_empty() || self.types.contains(&event.event_type))
    }
}

/// What [`crate::Store::renew_leases`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// The store's time of the renewal (its clock, not the executor's).
    pub now_us: i64,
    /// The renewed leases end at this time.
    pub expires_at_us: i64,
    /// Deliveries whose lease the owner no longer holds (handed to another executor,
    /// rescued, or finished): their attempts must stop.
    pub lost: Vec<minoots_core::DeliveryId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub scheduled_timers: u64,
    pub pending_deliveries: u64,
    pub in_flight_deliveries: u64,
    pub latest_event_seq: i64,
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
