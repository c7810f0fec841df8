//! Plain data passed across the [`crate::Store`] trait: the store's own (its errors, the
//! options of a create, firing requests and outcomes, statistics) and, re-exported, the
//! records it shares with the kernel's API ([`minoots_core::records`]).

pub use minoots_core::records::*;
use minoots_core::{DeliveryId, Timer, TimerId, TimerStatus};
pub use minoots_core::{Missing, Quota, WriteTrouble};

pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No such object (for this tenant): names which, with the id asked for.
    #[error("{0} not found")]
    NotFound(Missing),
    /// The object is in a state that does not allow the operation (e.g. cancel after fire).
    #[error("the timer is {status}, so it can no longer be changed")]
    Conflict { status: TimerStatus },
    /// A change named the version the client read, and the timer is at another one now.
    #[error("the timer is at version {current}, not {expected}")]
    VersionMismatch { expected: i64, current: i64 },
    /// A report for a lease that is no longer held (expired and re-claimed, or wrong owner).
    #[error(
        "stale report: delivery {delivery_id} is not in flight under this lease owner and attempt"
    )]
    Fenced { delivery_id: DeliveryId },
    /// The store is held by another process: the data directory by another MINOOTS
    /// process. Says which, and by whom.
    #[error("{0}")]
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
    /// The schedule's status forbids the change (pausing, resuming or triggering a
    /// completed schedule).
    #[error("the schedule is {status}, so it cannot be {change}")]
    ScheduleState {
        status: &'static str,
        change: &'static str,
    },
    /// A change of a schedule named the version the client read; it is at another now.
    #[error("the schedule is at version {current}, not {expected}")]
    ScheduleVersionMismatch { expected: i64, current: i64 },
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

/// What `create_timer` did.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateOutcome {
    pub timer: Timer,
    /// False when an existing timer with the same idempotency key was returned.
    pub created: bool,
}

/// A claim made in the transaction that fires ([`crate::Store::fire_and_claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub lease_owner: String,
    pub lease_ttl_us: i64,
    /// Deliveries leased at most.
    pub limit: usize,
}

/// A request to fire one timer, stamped with the moment the scheduler fired it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireRequest {
    pub timer_id: TimerId,
    pub fired_at_us: i64,
    /// Leave the timer unchanged ([`FireOutcome::NotDue`]) when its stored fire time is
    /// after `fired_at_us`: it was rescheduled later after the caller read its due time
    /// (a stale entry of a window). The scheduler always sets it, so nothing fires early;
    /// only tests and benchmarks that fire ahead of time on purpose do not.
    pub refuse_early: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// Now `fired`, with this many pending deliveries.
    Fired {
        timer_id: TimerId,
        tenant_id: String,
        deliveries: usize,
        fire_at_us: i64,
        /// The create's trace parent, stored with the timer: the parent of the fire's span.
        traceparent: Option<String>,
    },
    /// Had no actions: now `settled`.
    Settled {
        timer_id: TimerId,
        tenant_id: String,
        fire_at_us: i64,
        traceparent: Option<String>,
    },
    /// Rescheduled to `fire_at_us`, after the firing time: left unchanged, to fire then.
    NotDue {
        timer_id: TimerId,
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
    /// Not fired by this kernel: its shard belongs to another kernel now (PostgreSQL
    /// with several kernels), which fires it. Left unchanged.
    Fenced {
        timer_id: TimerId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub scheduled_timers: u64,
    pub pending_deliveries: u64,
    pub in_flight_deliveries: u64,
    pub latest_event_seq: i64,
    /// Idle periods in which the embedded store gave its page caches back (0 on
    /// PostgreSQL, whose caches are the server's).
    pub idle_cache_releases: u64,
}

/// What a schedule's dispatch did: the schedule as it now stands, and the timers it
/// created (for the kernel's window).
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatched {
    pub schedule: minoots_core::schedule::Schedule,
    pub created: Vec<minoots_core::Timer>,
}
