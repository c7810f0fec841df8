//! Decisions every backend makes the same way that need the store's own types: whether a
//! new timer may be written (its invariant, the tenant's quotas, its idempotency key),
//! and how the refusals of the core planners ([`minoots_core::plan`]) become
//! [`StoreError`]s. Backends call these before their first write; nothing here reads or
//! writes a database.

use minoots_core::plan::{RedriveRefusal, UpdateRefusal};
use minoots_core::{ForbiddenTransition, Timer, TimerStatus};

use crate::types::{
    CreateOptions, IDEMPOTENCY_KEY_TTL_US, Quota, StoreError, StoreResult, TenantUsage,
};

/// A status change the state machines forbid is a bug or corrupt data.
impl From<ForbiddenTransition> for StoreError {
    fn from(e: ForbiddenTransition) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<RedriveRefusal> for StoreError {
    fn from(e: RedriveRefusal) -> Self {
        match e {
            RedriveRefusal::NothingDead { status } => StoreError::Conflict { status },
            RedriveRefusal::Forbidden(e) => e.into(),
        }
    }
}

impl From<UpdateRefusal> for StoreError {
    fn from(e: UpdateRefusal) -> Self {
        match e {
            UpdateRefusal::NotScheduled { status } => StoreError::Conflict { status },
            UpdateRefusal::VersionMismatch { expected, current } => {
                StoreError::VersionMismatch { expected, current }
            }
        }
    }
}

/// The invariant of a timer about to be created: it is `scheduled`. Checked for every timer
/// of a call before the first is written.
pub fn check_new_timer(timer: &Timer) -> StoreResult<()> {
    if timer.status != TimerStatus::Scheduled {
        return Err(StoreError::Corrupt(format!(
            "invariant violated: new timer {} is {}",
            timer.id, timer.status
        )));
    }
    Ok(())
}

/// What a create does when its idempotency key already names a timer of the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReuse {
    /// The same request again within the key's lifetime: the existing timer is returned
    /// and nothing is written.
    ReturnExisting,
    /// Another request with the key within its lifetime: refused.
    Mismatch,
    /// The key has expired: it moves to the new timer, once every other check passed.
    Expired,
}

/// Decides a reuse of an idempotency key held by a timer created at
/// `existing_created_at_us`, at `now_us`. A fingerprint stored with the key is compared
/// with the caller's; a key stored without one, or a caller that gives none, cannot be
/// compared, and the existing timer is returned.
pub fn key_reuse(
    existing_created_at_us: i64,
    stored_fingerprint: Option<&[u8]>,
    given_fingerprint: Option<&[u8]>,
    now_us: i64,
) -> KeyReuse {
    if existing_created_at_us <= now_us - IDEMPOTENCY_KEY_TTL_US {
        return KeyReuse::Expired;
    }
    match (stored_fingerprint, given_fingerprint) {
        (Some(stored), Some(given)) if stored != given => KeyReuse::Mismatch,
        _ => KeyReuse::ReturnExisting,
    }
}

/// Refuses a create that would exceed the tenant's quotas. `usage` reads the tenant's
/// usage and is called only when `options` sets a quota.
pub fn check_quotas(
    options: &CreateOptions,
    usage: impl FnOnce() -> StoreResult<TenantUsage>,
) -> StoreResult<()> {
    if options.max_per_day.is_none() && options.max_pending.is_none() {
        return Ok(());
    }
    let usage = usage()?;
    if let Some(limit) = options.max_per_day
        && usage.created_today >= limit
    {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::TimersPerDay,
            limit,
        });
    }
    if let Some(limit) = options.max_pending
        && usage.pending >= limit
    {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::PendingTimers,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T10:00:00Z.
    const T0: i64 = 1_795_773_600_000_000;

    #[test]
    fn a_key_is_reused_within_its_lifetime_and_free_after_it() {
        let fresh = T0 - IDEMPOTENCY_KEY_TTL_US + 1;
        let expired = T0 - IDEMPOTENCY_KEY_TTL_US;
        let (a, b): (&[u8], &[u8]) = (b"a", b"b");
        // (created at, stored fingerprint, given fingerprint, verdict)
        let table = [
            (fresh, Some(a), Some(a), KeyReuse::ReturnExisting),
            (fresh, Some(a), Some(b), KeyReuse::Mismatch),
            (fresh, None, Some(b), KeyReuse::ReturnExisting),
            (fresh, Some(a), None, KeyReuse::ReturnExisting),
            (expired, Some(a), Some(a), KeyReuse::Expired),
            (expired, Some(a), Some(b), KeyReuse::Expired),
        ];
        for (created, stored, given, want) in table {
            assert_eq!(
                key_reuse(created, stored, given, T0),
                want,
                "{created} {stored:?} {given:?}"
            );
        }
    }

    #[test]
    fn quotas_refuse_at_their_limit_and_read_usage_only_when_set() {
        let no_read = || -> StoreResult<TenantUsage> { panic!("no quota, no read") };
        assert_eq!(check_quotas(&CreateOptions::default(), no_read), Ok(()));
        let refused = |quota, limit| Err(StoreError::QuotaExceeded { quota, limit });
        // (per day, pending, created today, pending now, verdict)
        let table = [
            (Some(10), None, 9, 100, Ok(())),
            (Some(10), None, 10, 0, refused(Quota::TimersPerDay, 10)),
            (None, Some(2), 100, 1, Ok(())),
            (None, Some(2), 0, 2, refused(Quota::PendingTimers, 2)),
            (Some(10), Some(2), 10, 2, refused(Quota::TimersPerDay, 10)),
        ];
        for (max_per_day, max_pending, created_today, pending, want) in table {
            let options = CreateOptions {
                max_per_day,
                max_pending,
                ..CreateOptions::default()
            };
            let usage = || {
                Ok(TenantUsage {
                    created_today,
                    pending,
                })
            };
            assert_eq!(
                check_quotas(&options, usage),
                want,
                "{max_per_day:?} {max_pending:?} {created_today} {pending}"
            );
        }
    }
}
