//! Deliveries in the SQLite backend: claim under a lease, report attempts, rescue expired
//! leases, release, list.

use std::collections::HashMap;

use minoots_core::limits::{MAX_ATTEMPT_ERROR_BYTES, MAX_ATTEMPT_RESPONSE_BYTES};
use minoots_core::timefmt::format_us;
use minoots_core::{
    ActionBundle, AttemptOutcome, AttemptRecord, Delivery, DeliveryId, DeliveryStatus, EventType,
    Timer, TimerId, TimerStatus,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::WriteCtx;
use super::rows::{DELIVERY_COLS, DELIVERY_COLUMNS, corrupt, delivery_from_row, id_col};
use super::secrets::signing_secrets_version;
use super::timers::{
    check_delivery_transition, check_timer_transition, get_timer, truncate, write_timer_status,
};
use crate::types::*;

pub fn claim_deliveries(
    ctx: &mut WriteCtx<'_>,
    owner: &str,
    lease_ttl_us: i64,
    limit: usize,
) -> StoreResult<Vec<LeasedDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = ctx.conn.prepare_cached(&format!(
        "UPDATE deliveries
            SET status = 'in_flight', attempt = attempt + 1, lease_owner = ?1,
                lease_expires_at = ?2, updated_at = ?3
          WHERE id IN (SELECT id FROM deliveries
                        WHERE status = 'pending' AND next_attempt_at <= ?3
                        ORDER BY next_attempt_at LIMIT ?4)
        RETURNING {DELIVERY_COLS}"
    ))?;
    let rows = stmt
        .query_map(
            params![owner, ctx.now_us + lease_ttl_us, ctx.now_us, limit as i64],
            |row| Ok((row.get::<_, Vec<u8>>(0)?, delivery_from_row(row))),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    // A delivery that cannot be handed out (unreadable row, missing timer or action) is
    // set aside as dead with the reason, so it cannot block the deliveries behind it.
    let mut deliveries = Vec::with_capacity(rows.len());
    let mut quarantine = Vec::new();
    for (raw_id, d) in rows {
        match d {
            Ok(d) => deliveries.push(d),
            Err(e) => quarantine.push((raw_id, format!("unreadable delivery: {e}"))),
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
                let t = match get_timer(ctx.conn, None, d.timer_id) {
                    Ok(t) => t,
                    Err(StoreError::Corrupt(_)) => None,
                    Err(other) => return Err(other),
                };
                e.insert(t).clone()
            }
        };
        let Some(timer) = timer else {
            quarantine.push((
                d.id.as_bytes().to_vec(),
                format!("timer {} is missing or unreadable", d.timer_id),
            ));
            continue;
        };
        let Some(action) = timer
            .action_bundle
            .actions
            .get(d.action_index as usize)
            .cloned()
        else {
            quarantine.push((
                d.id.as_bytes().to_vec(),
                format!("timer {} has no action {}", d.timer_id, d.action_index),
            ));
            continue;
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
    for (raw_id, why) in quarantine {
        tracing::error!(error = %why, "a delivery could not be handed out and is set aside as dead");
        ctx.conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![raw_id, ctx.now_us, why])?;
    }
    Ok(out)
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

/// What a report will do, decided (and checked) before anything is written, so a refused
/// report has nothing to roll back.
enum ReportPlan {
    Succeed { settles: bool },
    Retry { next_us: i64, delay_ms: u64 },
    Kill { why: &'static str },
}

pub fn report_attempt(ctx: &mut WriteCtx<'_>, r: AttemptReport) -> StoreResult<ReportOutcome> {
    // One statement reads the delivery, its timer's status and how many of the timer's
    // other deliveries are unfinished. The report is the writer's busiest write; one
    // statement instead of three saved 4 % of its instructions (docs/benchmarks.md).
    let row = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLS},
                    (SELECT status FROM timers WHERE timers.id = deliveries.timer_id),
                    (SELECT COUNT(*) FROM deliveries AS o
                      WHERE o.timer_id = deliveries.timer_id AND o.occurrence = deliveries.occurrence
                        AND o.status != 'succeeded' AND o.id != deliveries.id)
               FROM deliveries WHERE id = ?1"
        ))?
        .query_row(params![r.delivery_id.as_bytes()], |row| {
            Ok((
                delivery_from_row(row)?,
                row.get::<_, Option<String>>(DELIVERY_COLUMNS)?,
                row.get::<_, i64>(DELIVERY_COLUMNS + 1)?,
            ))
        })
        .optional()?;
    let (d, timer_now, others_unfinished) = row.ok_or(StoreError::NotFound)?;
    if d.status != DeliveryStatus::InFlight
        || d.lease_owner.as_deref() != Some(r.lease_owner.as_str())
        || d.attempt != r.attempt
    {
        return Err(StoreError::Fenced {
            delivery_id: r.delivery_id,
        });
    }
    let timer_now = delivery_timer_status(d.timer_id, timer_now)?;
    let plan = match r.outcome {
        AttemptOutcome::Succeeded => {
            check_delivery_transition(d.id, d.status, DeliveryStatus::Succeeded)?;
            // A failed timer stays failed when another of its actions succeeds later.
            let settles = others_unfinished == 0 && timer_now != TimerStatus::Failed;
            if settles {
                check_timer_transition(d.timer_id, timer_now, TimerStatus::Settled)?;
            }
            ReportPlan::Succeed { settles }
        }
        AttemptOutcome::Retryable if d.attempt < d.max_attempts => {
            let bundle: String = ctx
                .conn
                .prepare_cached("SELECT action_bundle FROM timers WHERE id = ?1")?
                .query_row(params![d.timer_id.as_bytes()], |row| row.get(0))?;
            let bundle: ActionBundle =
                serde_json::from_str(&bundle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let delay_ms =
                bundle
                    .retry_policy()
                    .backoff_ms(d.attempt, fastrand::f64(), r.retry_after_ms);
            check_delivery_transition(d.id, d.status, DeliveryStatus::Pending)?;
            ReportPlan::Retry {
                next_us: ctx.now_us + (delay_ms as i64) * 1_000,
                delay_ms,
            }
        }
        AttemptOutcome::Retryable | AttemptOutcome::Permanent => {
            check_kill(&d, Some(timer_now))?;
            ReportPlan::Kill {
                why: if r.outcome == AttemptOutcome::Permanent {
                    "permanent failure"
                } else {
                    "retries exhausted"
                },
            }
        }
    };

    let error = r.error.map(|e| truncate(e, MAX_ATTEMPT_ERROR_BYTES));
    let excerpt = r
        .response_excerpt
        .map(|e| truncate(e, MAX_ATTEMPT_RESPONSE_BYTES));
    ctx.conn
        .prepare_cached(
            "INSERT OR REPLACE INTO attempts (delivery_id, attempt, lease_owner, started_at, duration_us, outcome,
                                   http_status, exit_code, error, response_excerpt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
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
        ])?;
    ctx.append_event(
        EventType::DeliveryAttempted,
        &d.tenant_id,
        d.timer_id,
        Some(d.id),
        json!({"attempt": r.attempt, "outcome": r.outcome.as_str(), "httpStatus": r.http_status,
               "exitCode": r.exit_code, "error": error, "durationUs": r.duration_us}),
    )?;

    match plan {
        ReportPlan::Succeed { settles } => {
            ctx.conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'succeeded', lease_owner = NULL, lease_expires_at = NULL,
                            updated_at = ?2, last_error = NULL WHERE id = ?1",
                )?
                .execute(params![d.id.as_bytes(), ctx.now_us])?;
            let timer_status = if settles {
                write_timer_status(
                    ctx,
                    d.timer_id,
                    &d.tenant_id,
                    TimerStatus::Settled,
                    json!({}),
                )?;
                TimerStatus::Settled
            } else {
                timer_now
            };
            Ok(ReportOutcome {
                delivery_status: DeliveryStatus::Succeeded,
                next_attempt_at_us: None,
                timer_status,
            })
        }
        ReportPlan::Retry { next_us, delay_ms } => {
            ctx.conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, lease_owner = NULL,
                            lease_expires_at = NULL, updated_at = ?3, last_error = ?4 WHERE id = ?1",
                )?
                .execute(params![d.id.as_bytes(), next_us, ctx.now_us, error])?;
            ctx.append_event(
                EventType::DeliveryRetrying,
                &d.tenant_id,
                d.timer_id,
                Some(d.id),
                json!({"attempt": d.attempt, "nextAttemptAt": format_us(next_us), "delayMs": delay_ms}),
            )?;
            Ok(ReportOutcome {
                delivery_status: DeliveryStatus::Pending,
                next_attempt_at_us: Some(next_us),
                timer_status: timer_now,
            })
        }
        ReportPlan::Kill { why } => {
            let timer_status = kill_delivery(ctx, &d, why, error, Some(timer_now))?;
            Ok(ReportOutcome {
                delivery_status: DeliveryStatus::Dead,
                next_attempt_at_us: None,
                timer_status,
            })
        }
    }
}

/// Checks, before any write, that a delivery may die and its timer (if readable) fail.
fn check_kill(d: &Delivery, timer_now: Option<TimerStatus>) -> StoreResult<()> {
    check_delivery_transition(d.id, d.status, DeliveryStatus::Dead)?;
    if let Some(ts) = timer_now.filter(|ts| *ts != TimerStatus::Failed) {
        check_timer_transition(d.timer_id, ts, TimerStatus::Failed)?;
    }
    Ok(())
}

/// Marks a delivery dead and its timer failed, with events. `check_kill` must have passed.
/// `timer_now` is None when the timer cannot be read: the delivery still dies.
fn kill_delivery(
    ctx: &mut WriteCtx<'_>,
    d: &Delivery,
    why: &str,
    error: Option<String>,
    timer_now: Option<TimerStatus>,
) -> StoreResult<TimerStatus> {
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = ?2, last_error = ?3 WHERE id = ?1",
        )?
        .execute(params![
            d.id.as_bytes(),
            ctx.now_us,
            error.as_deref().or(Some(why))
        ])?;
    ctx.append_event(
        EventType::DeliveryDead,
        &d.tenant_id,
        d.timer_id,
        Some(d.id),
        json!({"attempt": d.attempt, "reason": why, "error": error}),
    )?;
    match timer_now {
        Some(TimerStatus::Failed) | None => Ok(TimerStatus::Failed),
        Some(_) => {
            write_timer_status(
                ctx,
                d.timer_id,
                &d.tenant_id,
                TimerStatus::Failed,
                json!({"deliveryId": d.id.to_string(), "reason": why}),
            )?;
            Ok(TimerStatus::Failed)
        }
    }
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
                ctx.conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                                updated_at = ?2, last_error = ?3 WHERE id = ?1",
                    )?
                    .execute(params![raw_id, ctx.now_us, format!("unreadable delivery: {e}")])?;
                continue;
            }
        };
        let why = format!(
            "lease of {} expired during attempt {}",
            d.lease_owner.as_deref().unwrap_or("?"),
            d.attempt
        );
        if d.attempt >= d.max_attempts {
            let timer_now = match timer_status(ctx.conn, d.timer_id) {
                Ok(ts) => Some(ts),
                Err(StoreError::Corrupt(_)) => None,
                Err(other) => return Err(other),
            };
            if check_kill(&d, timer_now).is_err() {
                // A state the machine does not allow: leave the timer, still end the delivery.
                kill_delivery(ctx, &d, "retries exhausted", Some(why), None)?;
            } else {
                kill_delivery(ctx, &d, "retries exhausted", Some(why), timer_now)?;
            }
        } else {
            check_delivery_transition(d.id, d.status, DeliveryStatus::Pending)?;
            ctx.conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, lease_owner = NULL,
                            lease_expires_at = NULL, updated_at = ?2, last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![d.id.as_bytes(), ctx.now_us, why])?;
            ctx.append_event(
                EventType::DeliveryRetrying,
                &d.tenant_id,
                d.timer_id,
                Some(d.id),
                json!({"attempt": d.attempt, "nextAttemptAt": format_us(ctx.now_us), "reason": why}),
            )?;
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
        return Err(StoreError::NotFound);
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
    let d = get_delivery(ctx.conn, id)?.ok_or(StoreError::NotFound)?;
    if d.status != DeliveryStatus::InFlight
        || d.lease_owner.as_deref() != Some(owner)
        || d.attempt != attempt
    {
        return Err(StoreError::Fenced { delivery_id: id });
    }
    check_delivery_transition(id, d.status, DeliveryStatus::Pending)?;
    // Not executed: the claim's attempt number is taken back, so `attempt` counts only
    // attempts that started and the budget is unchanged. Fencing still holds: the lease
    // owner carries its process's boot identity, and an owner that handed a delivery back
    // has no attempt of it left to report.
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, attempt = attempt - 1,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![
            id.as_bytes(),
            ctx.now_us.saturating_add(delay_us.max(0)),
            ctx.now_us
        ])?;
    Ok(())
}
