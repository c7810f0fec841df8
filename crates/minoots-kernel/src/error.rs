//! How the kernel answers its store's errors: [`from_store`] is the one mapping of a
//! [`StoreError`] to the [`KernelError`] of the kernel's API, applied at every store call
//! (`.map_err(from_store)`), so the API crate never needs to know the store.

use minoots_kernel_api::KernelError;
use minoots_store::StoreError;

/// The kernel's answer to a store error: what was not found, the conflict in words a client
/// can act on, a fenced report, a transient failure, a disk that refuses writes, a quota.
/// A refused write is counted here ([`crate::metrics::note_store_error`]) on its way out.
pub(crate) fn from_store(e: StoreError) -> KernelError {
    crate::metrics::note_store_error(&e);
    match e {
        StoreError::NotFound(missing) => KernelError::NotFound(missing),
        StoreError::Conflict { status } => KernelError::Conflict {
            message: format!(
                "the timer is already {status}; only scheduled timers can be cancelled"
            ),
            status: Some(status),
        },
        StoreError::VersionMismatch { expected, current } => KernelError::Conflict {
            message: format!(
                "the timer is at version {current}, not {expected}: it changed since it was read; GET it again and send version {current} if the change still applies"
            ),
            status: None,
        },
        StoreError::Fenced { .. } => KernelError::Fenced(e.to_string()),
        StoreError::Locked(_) | StoreError::Unavailable(_) | StoreError::Closed => {
            KernelError::Unavailable(e.to_string())
        }
        StoreError::CannotWrite(trouble) => KernelError::StoreCannotWrite(trouble),
        StoreError::Corrupt(m) => KernelError::Internal(m),
        StoreError::QuotaExceeded { quota, limit } => KernelError::QuotaExceeded { quota, limit },
        StoreError::IdempotencyMismatch { timer_id } => KernelError::Conflict {
            message: format!(
                "the idempotency key was already used within 24 hours for a different request (timer {timer_id}); send the same body again or use a new key"
            ),
            status: None,
        },
        StoreError::ScheduleState { status, change } => KernelError::Conflict {
            message: format!(
                "the schedule is {status}, so it cannot be {change}; change its endAt or maxRuns with PATCH to make it active again"
            ),
            status: None,
        },
        StoreError::ScheduleVersionMismatch { expected, current } => KernelError::Conflict {
            message: format!(
                "the schedule is at version {current}, not {expected}: it changed since it was read; GET it again and send version {current} if the change still applies"
            ),
            status: None,
        },
        StoreError::AlreadyExists(what) => KernelError::Conflict {
            message: format!("{what} already exists"),
            status: None,
        },
    }
}
