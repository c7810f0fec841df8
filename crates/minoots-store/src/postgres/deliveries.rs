//! Deliveries in PostgreSQL: claim under a lease, rescue expired leases, release, and the
//! reads of executors and operators (attempt reports are `reports.rs`). Each write reads
//! and locks its rows,
//! fences, asks a planner of `minoots_core::plan` what to do before its first change, and
//! writes exactly that with the events of `minoots_core::event`: retry, backoff, settling,
//! failing and rescue are decided there, not here.
//!
//! **Handles at once.** A claim picks due deliveries with `FOR UPDATE SKIP LOCKED`: two
//! handles claiming together take disjoint rows and never wait for each other, and a row
//! one of them changed is re-checked before the other could take it, so no delivery is
//! claimed twice. A report, a release and the rescuer lock the delivery's row before they
//! fence on it, so whichever commits first wins and the other sees its result: a report
//! after a rescue is fenced, a rescue after a report finds nothing to rescue. A report
//! then locks the delivery's timer before counting its unfinished siblings, so that two
//! siblings succeeding at once on two handles cannot both miss settling the timer.

use std::collections::HashMap;

use minoots_core::plan::{
    KillPlan, Quarantine, RescuePlan, plan_handout, plan_release, plan_rescue,
};
use minoots_core::{
    AttemptRecord, Delivery, DeliveryId, NewEvent, RetryCause, Timer, TimerId, TimerStatus,
};
use tokio_postgres::Row;
use uuid::Uuid;

use super::errors::TxResult;
use super::rows::{col, delivery_cols, delivery_from_row, timer_cols, timer_from_row, uuid_of};
use super::timers::{get_timer, write_timer_status};
use super::tx::{Db, WriteTx};
use crate::types::*;

/// Deliveries to set aside, by id, with the reason.
type SetAside = Vec<(Uuid, Quarantine)>;

/// Decodes claimed or expired rows; a row that cannot be decoded comes back as its id
/// with the reason, to be set aside.
fn decode(rows: &[Row]) -> TxResult<(Vec<Delivery>, SetAside)> {
    let mut readable = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for r in rows {
        match delivery_from_row(r) {
            Ok(d) => readable.push(d),
            Err(e) => unreadable.push((uuid_of(r, 0)?, Quarantine::Unreadable(e.to_string()))),
        }
    }
    Ok((readable, unreadable))
}

pub(super) async fn claim_deliveries(
    w: &mut WriteTx<'_>,
    owner: &str,
    lease_ttl_us: i64,
    limit: usize,
) -> TxResult<Vec<LeasedDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now_us = w.now_us;
    let expires_at_us = now_us.saturating_add(lease_ttl_us);
    let limit = limit as i64;
    let rows = w
        .db()
        .query(
            concat!(
                "WITH picked AS MATERIALIZED (
                     SELECT id AS picked_id FROM deliveries
                      WHERE status = 'pending' AND next_attempt_at <= $3
                      ORDER BY next_attempt_at LIMIT $4
                        FOR UPDATE SKIP LOCKED)
                 UPDATE deliveries
                    SET status = 'in_flight', attempt = attempt + 1, lease_owner = $1,
                        lease_expires_at = $2, updated_at = $3
                   FROM picked WHERE id = picked_id
                 RETURNING ",
                delivery_cols!()
            ),
            &[&owner, &expires_at_us, &now_us, &limit],
        )
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // A delivery that cannot be handed out (unreadable row, missing timer or action) is
    // set aside as dead with the reason, so it cannot block the deliveries behind it.
    let (mut deliveries, mut quarantined) = decode(&rows)?;
    deliveries.sort_by_key(|d| (d.next_attempt_at_us, d.id));
    let timers = timers_of(w, &deliveries).await?;
    let versions = secrets_versions(w, &deliveries).await?;
    let mut out = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let timer = timers.get(&d.timer_id).cloned().flatten();
        match plan_handout(&d, timer) {
            Ok((timer, action)) => {
                let secrets_version = versions.get(&d.tenant_id).copied().unwrap_or(0);
                out.push(LeasedDelivery {
                    delivery: d,
                    action,
                    timer,
                    secrets_version,
                });
            }
            Err(why) => quarantined.push((d.id.0, why)),
        }
    }
    if !quarantined.is_empty() {
        for (_, why) in &quarantined {
            tracing::error!(error = %why, "a delivery could not be handed out and is set aside as dead");
        }
        quarantine(w, &quarantined).await?;
    }
    Ok(out)
}

/// The ids of the timers of `deliveries`, in order, each once.
fn timer_ids(deliveries: &[Delivery]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = deliveries.iter().map(|d| d.timer_id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The timers of `deliveries`; `None` for one that cannot be decoded.
async fn timers_of(
    w: &mut WriteTx<'_>,
    deliveries: &[Delivery],
) -> TxResult<HashMap<TimerId, Option<Timer>>> {
    let ids = timer_ids(deliveries);
    let rows = w
        .db()
        .query(
            concat!("SELECT ", timer_cols!(), " FROM timers WHERE id = ANY ($1)"),
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((TimerId(uuid_of(r, 0)?), timer_from_row(r).ok())))
        .collect()
}

/// The signing secrets' version of each tenant of `deliveries`: the creation time of its
/// current secret, 0 when it has none.
async fn secrets_versions(
    w: &mut WriteTx<'_>,
    deliveries: &[Delivery],
) -> TxResult<HashMap<String, i64>> {
    let mut tenants: Vec<&str> = deliveries.iter().map(|d| d.tenant_id.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    if tenants.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = w
        .db()
        .query(
            "SELECT t.tenant_id,
                    (SELECT COALESCE(max(created_at), 0) FROM signing_secrets s
                      WHERE s.tenant_id = t.tenant_id AND s.retired_at IS NULL)
               FROM unnest($1::text[]) AS t(tenant_id)",
            &[&tenants],
        )
        .await?;
    rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
}

/// Sets deliveries that nothing could execute aside as dead, without an event: they have
/// no readable timer or action to report on.
async fn quarantine(w: &mut WriteTx<'_>, set_aside: &SetAside) -> TxResult<()> {
    let ids: Vec<Uuid> = set_aside.iter().map(|(id, _)| *id).collect();
    let reasons: Vec<String> = set_aside.iter().map(|(_, why)| why.to_string()).collect();
    let now_us = w.now_us;
    w.db()
        .execute(
            "UPDATE deliveries AS d SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = $3, last_error = q.reason
               FROM unnest($1::uuid[], $2::text[]) AS q(id, reason)
              WHERE d.id = q.id",
            &[&ids, &reasons, &now_us],
        )
        .await?;
    Ok(())
}

/// The delivery, locked until the write ends.
async fn lock_delivery(w: &mut WriteTx<'_>, id: DeliveryId) -> TxResult<Option<Delivery>> {
    w.db()
        .query_opt(
            concat!(
                "SELECT ",
                delivery_cols!(),
                " FROM deliveries WHERE id = $1 FOR UPDATE"
            ),
            &[&id.0],
        )
        .await?
        .map(|r| delivery_from_row(&r))
        .transpose()
}

/// Writes a planned retry: the delivery is pending again, out of its lease, due at
/// `next_attempt_at_us` with `last_error`, and its `delivery.retrying` event says why.
async fn requeue(
    w: &mut WriteTx<'_>,
    d: &Delivery,
    next_attempt_at_us: i64,
    last_error: Option<&str>,
    cause: RetryCause<'_>,
) -> TxResult<()> {
    let now_us = w.now_us;
    w.db()
        .execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = $3, last_error = $4
              WHERE id = $1",
            &[&d.id.0, &next_attempt_at_us, &now_us, &last_error],
        )
        .await?;
    w.announce_ready();
    w.append_event(NewEvent::delivery_retrying(d, next_attempt_at_us, cause));
    Ok(())
}

/// Writes a planned death: the delivery is dead with `error` (or the reason) as its last
/// error, and its timer fails when the plan says so, with their events.
async fn kill_delivery(
    w: &mut WriteTx<'_>,
    d: &Delivery,
    kill: KillPlan,
    error: Option<&str>,
) -> TxResult<()> {
    let now_us = w.now_us;
    let last_error = error.unwrap_or(kill.reason.as_str());
    w.db()
        .execute(
            "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = $2, last_error = $3
              WHERE id = $1",
            &[&d.id.0, &now_us, &last_error],
        )
        .await?;
    w.append_event(NewEvent::delivery_dead(d, kill.reason, error));
    if kill.fail_timer {
        let failed = NewEvent::timer_failed(d, kill.reason);
        write_timer_status(w, d.timer_id, TimerStatus::Failed, failed).await?;
    }
    Ok(())
}

pub(super) async fn rescue_expired_leases(w: &mut WriteTx<'_>, limit: usize) -> TxResult<usize> {
    let now_us = w.now_us;
    let limit = limit as i64;
    // Skipping locked rows: a delivery being reported or rescued elsewhere right now is
    // that transaction's; if its lease is still expired after, the next pass takes it.
    let rows = w
        .db()
        .query(
            concat!(
                "SELECT ",
                delivery_cols!(),
                " FROM deliveries WHERE status = 'in_flight' AND lease_expires_at < $1
                  ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            &[&now_us, &limit],
        )
        .await?;
    let n = rows.len();
    if n == 0 {
        return Ok(0);
    }
    let (expired, unreadable) = decode(&rows)?;
    if !unreadable.is_empty() {
        for (_, why) in &unreadable {
            tracing::error!(error = %why, "an expired delivery is unreadable and is set aside as dead");
        }
        quarantine(w, &unreadable).await?;
    }
    // The statuses of their timers, locked (after the deliveries, as everywhere); `None`
    // for a timer that cannot be read: it is left as it is and its delivery still dies.
    let mut statuses = timer_statuses(w, &expired).await?;
    for d in &expired {
        let status = statuses.get(&d.timer_id).copied().flatten();
        match plan_rescue(d, now_us, || Ok::<_, StoreError>(status))? {
            RescuePlan::Kill { kill, error } => {
                kill_delivery(w, d, kill, Some(&error)).await?;
                if kill.fail_timer {
                    // Planned one delivery at a time on what is stored: a second death
                    // of this timer in this pass sees it failed already.
                    statuses.insert(d.timer_id, Some(TimerStatus::Failed));
                }
            }
            RescuePlan::Requeue {
                next_attempt_at_us,
                reason,
            } => {
                let cause = RetryCause::LeaseExpired { reason: &reason };
                requeue(w, d, next_attempt_at_us, Some(&reason), cause).await?;
            }
        }
    }
    Ok(n)
}

/// The statuses of the timers of `deliveries`, locked in id order.
async fn timer_statuses(
    w: &mut WriteTx<'_>,
    deliveries: &[Delivery],
) -> TxResult<HashMap<TimerId, Option<TimerStatus>>> {
    let ids = timer_ids(deliveries);
    let rows = w
        .db()
        .query(
            "SELECT id, status FROM timers WHERE id = ANY ($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let status: String = col(r, 1)?;
            Ok((TimerId(uuid_of(r, 0)?), status.parse().ok()))
        })
        .collect()
}

pub(super) async fn release_delivery(
    w: &mut WriteTx<'_>,
    id: DeliveryId,
    owner: &str,
    attempt: u32,
    delay_us: i64,
) -> TxResult<()> {
    let d = lock_delivery(w, id)
        .await?
        .ok_or(StoreError::NotFound(Missing::Delivery(id)))?;
    if !d.is_leased_to(owner, attempt) {
        return Err(StoreError::Fenced { delivery_id: id }.into());
    }
    let plan = plan_release(&d, w.now_us, delay_us).map_err(StoreError::from)?;
    let now_us = w.now_us;
    let attempt = plan.attempt as i32;
    w.db()
        .execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, attempt = $3,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
              WHERE id = $1",
            &[&id.0, &plan.next_attempt_at_us, &attempt, &now_us],
        )
        .await?;
    w.announce_ready();
    Ok(())
}

pub(super) async fn next_delivery_due_us(db: &mut Db<'_>) -> TxResult<Option<i64>> {
    let row = db
        .query_one(
            "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'",
            &[],
        )
        .await?;
    col(&row, 0)
}

pub(super) async fn get_delivery(db: &mut Db<'_>, id: DeliveryId) -> TxResult<Option<Delivery>> {
    db.query_opt(
        concat!(
            "SELECT ",
            delivery_cols!(),
            " FROM deliveries WHERE id = $1"
        ),
        &[&id.0],
    )
    .await?
    .map(|r| delivery_from_row(&r))
    .transpose()
}

/// A timer's deliveries with their attempts; run in one snapshot, so the attempts are
/// those of the deliveries as read.
pub(super) async fn list_deliveries(
    db: &mut Db<'_>,
    tenant_id: &str,
    timer_id: TimerId,
) -> TxResult<Vec<DeliveryWithAttempts>> {
    if get_timer(db, tenant_id, timer_id).await?.is_none() {
        return Err(StoreError::NotFound(Missing::Timer(timer_id)).into());
    }
    let deliveries = db
        .query(
            concat!(
                "SELECT ",
                delivery_cols!(),
                " FROM deliveries WHERE timer_id = $1 ORDER BY occurrence, action_index"
            ),
            &[&timer_id.0],
        )
        .await?
        .iter()
        .map(delivery_from_row)
        .collect::<TxResult<Vec<_>>>()?;
    let attempts = db
        .query(
            "SELECT a.delivery_id, a.attempt, a.lease_owner, a.started_at, a.duration_us, a.outcome,
                    a.http_status, a.exit_code, a.error, a.response_excerpt
               FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
              WHERE d.timer_id = $1 ORDER BY a.delivery_id, a.attempt",
            &[&timer_id.0],
        )
        .await?;
    let mut by_delivery: HashMap<Uuid, Vec<AttemptRecord>> = HashMap::new();
    for r in &attempts {
        let outcome: &str = col(r, 5)?;
        let http_status: Option<i32> = col(r, 6)?;
        let record = AttemptRecord {
            delivery_id: DeliveryId(uuid_of(r, 0)?),
            attempt: u32::try_from(col::<i32>(r, 1)?)
                .map_err(|_| StoreError::Corrupt("negative attempt number".into()))?,
            lease_owner: col(r, 2)?,
            started_at_us: col(r, 3)?,
            duration_us: col(r, 4)?,
            outcome: outcome.parse().map_err(StoreError::Corrupt)?,
            http_status: http_status
                .map(u16::try_from)
                .transpose()
                .map_err(|_| StoreError::Corrupt("HTTP status out of range".into()))?,
            exit_code: col(r, 7)?,
            error: col(r, 8)?,
            response_excerpt: col(r, 9)?,
        };
        by_delivery
            .entry(record.delivery_id.0)
            .or_default()
            .push(record);
    }
    Ok(deliveries
        .into_iter()
        .map(|d| DeliveryWithAttempts {
            attempts: by_delivery.remove(&d.id.0).unwrap_or_default(),
            delivery: d,
        })
        .collect())
}
