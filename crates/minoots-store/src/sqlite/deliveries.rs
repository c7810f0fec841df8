//! Deliveries in the SQLite backend: claim under a lease, report attempts, rescue expired
//! leases, release, list. Each write reads its rows, fences, asks a planner of
//! `minoots_core::plan` what to do before its first change, and writes exactly that with
//! the events of `minoots_core::event`: retry, backoff, settling, failing and rescue are
//! decided there, not here.

use std::collections::HashMap;

use minoots_core::limits::{MAX_ATTEMPT_ERROR_BYTES, MAX_ATTEMPT_RESPONSE_BYTES, stored_text};
use minoots_core::plan::{
    KillPlan, Quarantine, ReportPlan, ReportRead, RescuePlan, plan_handout, plan_release,
    plan_report, plan_rescue,
};
use minoots_core::{
    ActionBundle, AttemptOutcome, AttemptRecord, Delivery, DeliveryId, NewEvent, RetryCause,
    RetryPolicy, Timer, TimerId, TimerStatus,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::WriteCtx;
use super::rows::{
    DELIVERY_COLS, DELIVERY_COLUMNS, corrupt, delivery_from_row, id_col, timer_from_row,
};
use super::secrets::signing_secrets_version;
use super::timers::{SELECT_TIMER_SQL, get_timer, write_timer_status};
use crate::types::*;

/// Leases up to `?4` due deliveries to `?1` until `?2` (now is `?3`). With the query
/// planner stability guarantee on every connection ([`super::tune_connection`]), the
/// `LIMIT ?4` no longer makes SQLite compile the statement again for each claim.
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE deliveries
            SET status = 'in_flight', attempt = attempt + 1, lease_owner = ?1,
                lease_expires_at = ?2, updated_at = ?3
          WHERE id IN (SELECT id FROM deliveries
                        WHERE status = 'pending' AND next_attempt_at <= ?3
                        ORDER BY next_attempt_at LIMIT ?4)
        RETURNING {DELIVERY_COLS}"
    )
});

/// Reads a reported delivery, its timer's status and how many of the timer's other
/// deliveries of the same occurrence are unfinished.
static REPORT_READ_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {DELIVERY_COLS},
                (SELECT status FROM timers WHERE timers.id = deliveries.timer_id),
                (SELECT COUNT(*) FROM deliveries AS o
                  WHERE o.timer_id = deliveries.timer_id AND o.occurrence = deliveries.occurrence
                    AND o.status != 'succeeded' AND o.id != deliveries.id)
           FROM deliveries WHERE id = ?1"
    )
});

pub fn claim_deliveries(
    ctx: &mut WriteCtx<'_>,
    owner: &str,
    lease_ttl_us: i64,
    limit: usize,
) -> StoreResult<Vec<LeasedDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = ctx.query_rows(
        &CLAIM_SQL,
        params![owner, ctx.now_us + lease_ttl_us, ctx.now_us, limit as i64],
        |row| Ok((row.get::<_, Vec<u8>>(0)?, delivery_from_row(row))),
    )?;
    // A delivery that cannot be handed out (unreadable row, missing timer or action) is
    // set aside as dead with the reason, so it cannot block the deliveries behind it.
    let mut deliveries = Vec::with_capacity(rows.len());
    let mut quarantined = Vec::new();
    for (raw_id, d) in rows {
        match d {
            Ok(d) => deliveries.push(d),
            Err(e) => quarantined.push((raw_id, Quarantine::Unreadable(e.to_string()))),
        }
    }
    deliveries.sort_by_key(|d| (d.next_attempt_at_us, d.id));
    let mut timers: HashMap<TimerId, Option<Timer>> = HashMap::new();
    let mut secret_versions: HashMap<String, i64> = HashMap::new();
    let mut out = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let timer = match timers.entry(d.timer_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let read = ctx.query_row(
                    &SELECT_TIMER_SQL,
                    params![d.timer_id.as_bytes()],
                    timer_from_row,
                );
                let t = match read {
                    Ok(t) => t,
                    Err(StoreError::Corrupt(_)) => None,
                    Err(other) => return Err(other),
                };
                e.insert(t).clone()
            }
        };
        let (timer, action) = match plan_handout(&d, timer) {
            Ok(handout) => handout,
            Err(why) => {
                quarantined.push((d.id.as_bytes().to_vec(), why));
                continue;
            }
        };
        let secrets_version = match secret_versions.get(&d.tenant_id) {
            Some(v) => *v,
            None => {
                let v = signing_secrets_version(ctx.conn, &d.tenant_id)?;
                secret_versions.insert(d.tenant_id.clone(), v);
                v
            }
        };
        out.push(LeasedDelivery {
            delivery: d,
            action,
            timer,
            secrets_version,
        });
    }
    for (raw_id, why) in quarantined {
        tracing::error!(error = %why, "a delivery could not be handed out and is set aside as dead");
        quarantine(ctx, &raw_id, &why)?;
    }
    Ok(out)
}

/// Sets a delivery that nothing could execute aside as dead, without an event: it has no
/// readable timer or action to report on.
fn quarantine(ctx: &WriteCtx<'_>, raw_id: &[u8], why: &Quarantine) -> StoreResult<()> {
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = ?2, last_error = ?3 WHERE id = ?1",
        )?
        .execute(params![raw_id, ctx.now_us, why.to_string()])?;
    Ok(())
}

pub fn get_delivery(conn: &Connection, id: DeliveryId) -> StoreResult<Option<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1"
    ))?;
    Ok(stmt
        .query_row(params![id.as_bytes()], delivery_from_row)
        .optional()?)
}

fn timer_status(conn: &Connection, id: TimerId) -> StoreResult<TimerStatus> {
    let s: Option<String> = conn
        .prepare_cached("SELECT status FROM timers WHERE id = ?1")?
        .query_row(params![id.as_bytes()], |r| r.get(0))
        .optional()?;
    delivery_timer_status(id, s)
}

/// The status of a delivery's timer as read from the store; a delivery whose timer is
/// missing is corrupt data.
fn delivery_timer_status(id: TimerId, status: Option<String>) -> StoreResult<TimerStatus> {
    status
        .ok_or_else(|| StoreError::Corrupt(format!("timer {id} of a delivery is missing")))?
        .parse()
        .map_err(StoreError::Corrupt)
}

/// The retry policy of a delivery's timer.
fn timer_retry_policy(conn: &Connection, id: TimerId) -> StoreResult<RetryPolicy> {
    let bundle: String = conn
        .prepare_cached("SELECT action_bundle FROM timers WHERE id = ?1")?
        .query_row(params![id.as_bytes()], |row| row.get(0))?;
    let bundle: ActionBundle =
        serde_json::from_str(&bundle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(bundle.retry_policy())
}

pub fn report_attempt(ctx: &mut WriteCtx<'_>, r: AttemptReport) -> StoreResult<ReportOutcome> {
    // One statement reads the delivery, its timer's status and how many of the timer's
    // other deliveries are unfinished. The report is the writer's busiest write; one
    // statement instead of three saved 4 % of its instructions (docs/benchmarks.md).
    let row = ctx.query_row(&REPORT_READ_SQL, params![r.delivery_id.as_bytes()], |row| {
        Ok((
            delivery_from_row(row)?,
            row.get::<_, Option<String>>(DELIVERY_COLUMNS)?,
            row.get::<_, i64>(DELIVERY_COLUMNS + 1)?,
        ))
    })?;
    let (d, timer_now, others_unfinished) =
        row.ok_or(StoreError::NotFound(Missing::Delivery(r.delivery_id)))?;
    if !d.is_leased_to(&r.lease_owner, r.attempt) {
        return Err(StoreError::Fenced {
            delivery_id: r.delivery_id,
        });
    }
    let timer_now = delivery_timer_status(d.timer_id, timer_now)?;
    let read = ReportRead {
        delivery: &d,
        timer_status: timer_now,
        others_unfinished: others_unfinished.max(0) as u64,
    };
    let conn = ctx.conn;
    let plan = plan_report(
        &read,
        r.outcome,
        r.retry_after_ms,
        ctx.now_us,
        fastrand::f64(),
        || timer_retry_policy(conn, d.timer_id),
    )?;

    let error = r.error.map(|e| stored_text(e, MAX_ATTEMPT_ERROR_BYTES));
    let excerpt = r
        .response_excerpt
        .map(|e| stored_text(e, MAX_ATTEMPT_RESPONSE_BYTES));
    ctx.execute(
        "INSERT OR REPLACE INTO attempts (delivery_id, attempt, lease_owner, started_at, duration_us, outcome,
                               http_status, exit_code, error, response_excerpt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            d.id.as_bytes(),
            r.attempt,
            r.lease_owner,
            r.started_at_us,
            r.duration_us,
            r.outcome.as_str(),
            r.http_status,
            r.exit_code,
            error,
            excerpt,
        ],
    )?;
    ctx.append_event(NewEvent::delivery_attempted(
        &d,
        r.outcome,
        r.http_status,
        r.exit_code,
        error.as_deref(),
        r.duration_us,
    ))?;

    match plan {
        ReportPlan::Succeed { settles_timer } => {
            ctx.execute(
                "UPDATE deliveries SET status = 'succeeded', lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = ?2, last_error = NULL WHERE id = ?1",
                params![d.id.as_bytes(), ctx.now_us],
            )?;
            ctx.add_metered(
                &d.tenant_id,
                minoots_core::billing::METER_DELIVERIES_SUCCEEDED,
            );
            if settles_timer {
                write_timer_status(
                    ctx,
                    &d.tenant_id,
                    d.timer_id,
                    TimerStatus::Settled,
                    NewEvent::timer_settled(&d.tenant_id, d.timer_id),
                )?;
            }
        }
        ReportPlan::Retry {
            next_attempt_at_us,
            delay_ms,
        } => requeue(
            ctx,
            &d,
            next_attempt_at_us,
            error.as_deref(),
            RetryCause::Backoff { delay_ms },
        )?,
        ReportPlan::Kill(kill) => kill_delivery(ctx, &d, kill, error.as_deref())?,
    }
    Ok(ReportOutcome {
        delivery_status: plan.delivery_status(),
        next_attempt_at_us: plan.next_attempt_at_us(),
        timer_status: plan.timer_status_after(timer_now),
    })
}

/// Writes a planned retry: the delivery is pending again, out of its lease, due at
/// `next_attempt_at_us` with `last_error`, and its `delivery.retrying` event says why.
fn requeue(
    ctx: &mut WriteCtx<'_>,
    d: &Delivery,
    next_attempt_at_us: i64,
    last_error: Option<&str>,
    cause: RetryCause<'_>,
) -> StoreResult<()> {
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = ?3, last_error = ?4 WHERE id = ?1",
        )?
        .execute(params![
            d.id.as_bytes(),
            next_attempt_at_us,
            ctx.now_us,
            last_error
        ])?;
    ctx.append_event(NewEvent::delivery_retrying(d, next_attempt_at_us, cause))
}

/// Writes a planned death: the delivery is dead with `error` (or the reason) as its last
/// error, and its timer fails when the plan says so, with their events.
fn kill_delivery(
    ctx: &mut WriteCtx<'_>,
    d: &Delivery,
    kill: KillPlan,
    error: Option<&str>,
) -> StoreResult<()> {
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = ?2, last_error = ?3 WHERE id = ?1",
        )?
        .execute(params![
            d.id.as_bytes(),
            ctx.now_us,
            error.unwrap_or(kill.reason.as_str())
        ])?;
    ctx.append_event(NewEvent::delivery_dead(d, kill.reason, error))?;
    if kill.fail_timer {
        write_timer_status(
            ctx,
            &d.tenant_id,
            d.timer_id,
            TimerStatus::Failed,
            NewEvent::timer_failed(d, kill.reason),
        )?;
    }
    Ok(())
}

pub fn rescue_expired_leases(ctx: &mut WriteCtx<'_>, limit: usize) -> StoreResult<usize> {
    let rows = {
        let mut stmt = ctx.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE status = 'in_flight' AND lease_expires_at < ?1
             ORDER BY lease_expires_at LIMIT ?2"
        ))?;
        stmt.query_map(params![ctx.now_us, limit as i64], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, delivery_from_row(row)))
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let n = rows.len();
    for (raw_id, d) in rows {
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                // Unreadable: set aside as dead so it cannot block the rescue of others.
                tracing::error!(error = %e, "an expired delivery is unreadable and is set aside as dead");
                quarantine(ctx, &raw_id, &Quarantine::Unreadable(e.to_string()))?;
                continue;
            }
        };
        // Planned one delivery at a time, after the writes of the previous one: when two
        // deliveries of one timer die in one pass, the second sees the timer failed
        // already and does not fail it again. Its only refusals (a row not in flight, a
        // timer read failing for another reason than corrupt data) cannot follow a write
        // of an earlier delivery without that write failing the group anyway.
        let conn = ctx.conn;
        // A timer that cannot be read is left as it is; the delivery still dies.
        let plan = plan_rescue(&d, ctx.now_us, || match timer_status(conn, d.timer_id) {
            Ok(status) => Ok(Some(status)),
            Err(StoreError::Corrupt(_)) => Ok(None),
            Err(other) => Err(other),
        })?;
        match plan {
            RescuePlan::Kill { kill, error } => kill_delivery(ctx, &d, kill, Some(&error))?,
            RescuePlan::Requeue {
                next_attempt_at_us,
                reason,
            } => requeue(
                ctx,
                &d,
                next_attempt_at_us,
                Some(&reason),
                RetryCause::LeaseExpired { reason: &reason },
            )?,
        }
    }
    Ok(n)
}

pub fn next_delivery_due_us(conn: &Connection) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

pub fn list_deliveries(
    conn: &Connection,
    tenant_id: &str,
    timer_id: TimerId,
) -> StoreResult<Vec<DeliveryWithAttempts>> {
    if get_timer(conn, Some(tenant_id), timer_id)?.is_none() {
        return Err(StoreError::NotFound(Missing::Timer(timer_id)));
    }
    let deliveries = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE timer_id = ?1 ORDER BY occurrence, action_index"
        ))?
        .query_map(params![timer_id.as_bytes()], delivery_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT delivery_id, attempt, lease_owner, started_at, duration_us, outcome, http_status, exit_code, error,
                response_excerpt
           FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let mut out = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let attempts = stmt
            .query_map(params![d.id.as_bytes()], |row| {
                let outcome: String = row.get(5)?;
                Ok(AttemptRecord {
                    delivery_id: id_col(row, 0, DeliveryId::from_slice)?,
                    attempt: row.get(1)?,
                    lease_owner: row.get(2)?,
                    started_at_us: row.get(3)?,
                    duration_us: row.get(4)?,
                    outcome: outcome
                        .parse::<AttemptOutcome>()
                        .map_err(|e| corrupt(5, std::io::Error::other(e)))?,
                    http_status: row.get(6)?,
                    exit_code: row.get(7)?,
                    error: row.get(8)?,
                    response_excerpt: row.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(DeliveryWithAttempts {
            delivery: d,
            attempts,
        });
    }
    Ok(out)
}

pub fn release_delivery(
    ctx: &mut WriteCtx<'_>,
    id: DeliveryId,
    owner: &str,
    attempt: u32,
    delay_us: i64,
) -> StoreResult<()> {
    let d = get_delivery(ctx.conn, id)?.ok_or(StoreError::NotFound(Missing::Delivery(id)))?;
    if !d.is_leased_to(owner, attempt) {
        return Err(StoreError::Fenced { delivery_id: id });
    }
    let plan = plan_release(&d, ctx.now_us, delay_us)?;
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, attempt = ?3,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![
            id.as_bytes(),
            plan.next_attempt_at_us,
            plan.attempt,
            ctx.now_us
        ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;
    use rusqlite::config::DbConfig;

    use super::CLAIM_SQL;
    use crate::Store;
    use crate::conformance::{T0, sqlite_at_t0, timer};
    use crate::types::{FireRequest, StoreError};

    /// Claims of different sizes bind new values to the claim's `LIMIT ?`: the writer
    /// runs the statement it compiled once instead of compiling it again for each claim,
    /// and the readers have the same setting.
    #[tokio::test]
    async fn lease_claims_run_their_statement_without_compiling_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, h) = sqlite_at_t0(dir.path());
        let mut fires = Vec::new();
        for _ in 0..6 {
            let t = timer(&h, "acme", T0, 1);
            fires.push(FireRequest {
                timer_id: t.id,
                fired_at_us: T0,
                refuse_early: false,
            });
            store.create_timer(t).await.unwrap();
        }
        store.fire_timers(fires).await.unwrap();
        let mut claimed = 0;
        for limit in [1, 2, 3] {
            claimed += store
                .claim_deliveries("w1", 30_000_000, limit)
                .await
                .unwrap()
                .len();
        }
        assert_eq!(claimed, 6, "each claim took as many as its limit");
        let recompiled = store
            .configure_writer(|conn| {
                Ok(conn
                    .prepare_cached(&CLAIM_SQL)?
                    .get_status(StatementStatus::RePrepare))
            })
            .await
            .unwrap();
        assert_eq!(
            recompiled, 0,
            "the claim statement was compiled again {recompiled} times"
        );
        let reader_stable = store
            .read(|conn| {
                conn.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert!(reader_stable, "readers keep their plans too");
        store.close().await;
    }
}
