//! Lease upkeep of the SQLite backend: renewing the leases an executor still holds, and
//! ending at once the leases of executors known to be gone. Each function is one
//! statement per delivery inside the writer's group-committed transaction; neither
//! decides anything about retries (an ended lease goes through the rescuer like any
//! expired one, so a crash is handled in one place).

use minoots_core::DeliveryId;
use rusqlite::params;

use super::WriteCtx;
use crate::types::{LeaseRenewal, StoreResult};

/// Extends each lease in `leases` that `owner` still holds (in flight, same owner, same
/// attempt) to `lease_ttl_us` from now. The others are reported as lost: the executor
/// must stop working on them, as another executor may have them now.
pub fn renew_leases(
    ctx: &mut WriteCtx<'_>,
    owner: &str,
    leases: &[(DeliveryId, u32)],
    lease_ttl_us: i64,
) -> StoreResult<LeaseRenewal> {
    let expires_at_us = ctx.now_us.saturating_add(lease_ttl_us);
    let mut lost = Vec::new();
    let mut stmt = ctx.conn.prepare_cached(
        "UPDATE deliveries SET lease_expires_at = ?4
          WHERE id = ?1 AND status = 'in_flight' AND lease_owner = ?2 AND attempt = ?3",
    )?;
    for (id, attempt) in leases {
        if stmt.execute(params![id.as_bytes(), owner, attempt, expires_at_us])? == 0 {
            lost.push(*id);
        }
    }
    Ok(LeaseRenewal {
        now_us: ctx.now_us,
        expires_at_us,
        lost,
    })
}

/// Ends now every lease held by an owner whose name starts with `owner_prefix`: they
/// count as expired, so the next rescue pass returns them (an attempt that may have
/// started counts, as for any lost lease). Returns how many were ended.
pub fn end_leases_of(ctx: &mut WriteCtx<'_>, owner_prefix: &str) -> StoreResult<usize> {
    let ended = ctx
        .conn
        .prepare_cached(
            "UPDATE deliveries SET lease_expires_at = ?2 - 1
              WHERE status = 'in_flight' AND substr(lease_owner, 1, length(?1)) = ?1
                AND lease_expires_at >= ?2",
        )?
        .execute(params![owner_prefix, ctx.now_us])?;
    Ok(ended)
}
