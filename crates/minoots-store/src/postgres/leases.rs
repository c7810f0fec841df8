//! Lease upkeep of the PostgreSQL backend: renewing the leases an executor still holds,
//! and ending at once the leases of executors known to be gone. Each is one statement;
//! neither decides anything about retries (an ended lease goes through the rescuer like
//! any expired one, so a crash is handled in one place).

use std::collections::HashSet;

use minoots_core::DeliveryId;
use uuid::Uuid;

use super::errors::TxResult;
use super::rows::uuid_of;
use super::tx::WriteTx;
use crate::types::LeaseRenewal;

/// Extends each lease in `leases` that `owner` still holds (in flight, same owner, same
/// attempt) to `lease_ttl_us` from now. The others are reported as lost: the executor
/// must stop working on them, as another executor may have them now.
pub(super) async fn renew_leases(
    w: &mut WriteTx<'_>,
    owner: &str,
    leases: &[(DeliveryId, u32)],
    lease_ttl_us: i64,
) -> TxResult<LeaseRenewal> {
    let now_us = w.now_us;
    let expires_at_us = now_us.saturating_add(lease_ttl_us);
    // An owner PostgreSQL cannot store (with a NUL) holds no lease.
    let renewed: HashSet<Uuid> = if leases.is_empty() || owner.contains('\0') {
        HashSet::new()
    } else {
        let ids: Vec<Uuid> = leases.iter().map(|(id, _)| id.0).collect();
        let attempts: Vec<i32> = leases.iter().map(|(_, a)| *a as i32).collect();
        w.db()
            // Locked in id order first, as reports and rescues lock them: in the order
            // the executor listed them, two renewals (or a renewal and a report group)
            // could lock the same rows in opposite orders and deadlock.
            .query(
                "WITH held AS (
                    SELECT d.id FROM deliveries AS d
                      JOIN unnest($1::uuid[], $2::int4[]) AS l(id, attempt)
                        ON d.id = l.id AND d.attempt = l.attempt
                     WHERE d.status = 'in_flight' AND d.lease_owner = $3
                     ORDER BY d.id FOR UPDATE OF d)
                 UPDATE deliveries AS d SET lease_expires_at = $4
                   FROM held WHERE d.id = held.id
                 RETURNING d.id",
                &[&ids, &attempts, &owner, &expires_at_us],
            )
            .await?
            .iter()
            .map(|r| uuid_of(r, 0))
            .collect::<TxResult<_>>()?
    };
    let lost = leases
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !renewed.contains(&id.0))
        .collect();
    Ok(LeaseRenewal {
        now_us,
        expires_at_us,
        lost,
    })
}

/// Ends now every lease held by an owner whose name starts with `owner_prefix`: they
/// count as expired, so the next rescue pass returns them (an attempt that may have
/// started counts, as for any lost lease). Returns how many were ended.
pub(super) async fn end_leases_of(w: &mut WriteTx<'_>, owner_prefix: &str) -> TxResult<usize> {
    if owner_prefix.contains('\0') {
        return Ok(0);
    }
    let now_us = w.now_us;
    let ended = w
        .db()
        .execute(
            "UPDATE deliveries SET lease_expires_at = $2 - 1
              WHERE status = 'in_flight' AND starts_with(lease_owner, $1)
                AND lease_expires_at >= $2",
            &[&owner_prefix, &now_us],
        )
        .await?;
    Ok(ended as usize)
}
