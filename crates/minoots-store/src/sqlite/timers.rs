//! Timers in the SQLite backend: create, read, list, change, cancel, load the due window, fire
//! and redrive. Each write reads what it needs, asks a planner (`crate::plan`,
//! `minoots_core::plan`) before its first change, then writes what the plan says with
//! the events of `minoots_core::event`; no rule of its own.

use std::sync::LazyLock;

use minoots_core::limits::{MAX_CANCEL_REASON_BYTES, stored_text};
use minoots_core::plan::{FirePlan, FireTiming, plan_fire, plan_redrive, plan_update};
use minoots_core::{
    ActionBundle, DeliveryId, NewEvent, RetryCause, Timer, TimerChange, TimerChanged, TimerId,
    TimerStatus,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::WriteCtx;
use super::rows::{
    DELIVERY_COLS, TIMER_COLS, TIMER_COLUMNS, delivery_from_row, id_col, timer_from_row,
};
use crate::plan::{KeyReuse, check_new_timer, check_quotas, key_reuse};
use crate::types::*;

pub fn create_timer(
    ctx: &mut WriteCtx<'_>,
    timer: Timer,
    options: &CreateOptions,
) -> StoreResult<CreateOutcome> {
    // Every refusal (idempotency mismatch, quota, invariant) comes before the first write.
    let mut expired_key_holder = None;
    if let Some(key) = &timer.idempotency_key {
        let mut stmt = ctx.conn.prepare_cached(&format!(
            "SELECT {TIMER_COLS}, idempotency_fingerprint FROM timers WHERE tenant_id = ?1 AND idempotency_key = ?2"
        ))?;
        let found = stmt
            .query_row(params![timer.tenant_id, key], |r| {
                Ok((
                    timer_from_row(r)?,
                    r.get::<_, Option<Vec<u8>>>(TIMER_COLUMNS)?,
                ))
            })
            .optional()?;
        if let Some((existing, fingerprint)) = found {
            let given = options
                .idempotency_fingerprint
                .as_ref()
                .map(|f| f.as_slice());
            match key_reuse(
                existing.created_at_us,
                fingerprint.as_deref(),
                given,
                ctx.now_us,
            ) {
                KeyReuse::ReturnExisting => {
                    return Ok(CreateOutcome {
                        timer: existing,
                        created: false,
                    });
                }
                KeyReuse::Mismatch => {
                    return Err(StoreError::IdempotencyMismatch {
                        timer_id: existing.id,
                    });
                }
                // The key will name the new timer, once every check passed.
                KeyReuse::Expired => expired_key_holder = Some(existing.id),
            }
        }
    }
    let day = utc_day(timer.created_at_us);
    check_quotas(options, || {
        // The stored counts and what this batch has not written yet.
        let stored = tenant_usage(ctx.conn, &timer.tenant_id, day)?;
        let (created, pending) = ctx.usage_in_batch(&timer.tenant_id, day);
        Ok(TenantUsage {
            created_today: (stored.created_today as i64 + created).max(0) as u64,
            pending: (stored.pending as i64 + pending).max(0) as u64,
        })
    })?;
    check_new_timer(&timer)?;
    let json = |v: serde_json::Result<String>| v.map_err(|e| StoreError::Corrupt(e.to_string()));
    let metadata = json(serde_json::to_string(&timer.metadata))?;
    let labels = json(serde_json::to_string(&timer.labels))?;
    let bundle = json(serde_json::to_string(&timer.action_bundle))?;

    if let Some(old) = expired_key_holder {
        // The old timer keeps no key.
        ctx.conn
            .prepare_cached("UPDATE timers SET idempotency_key = NULL, idempotency_fingerprint = NULL WHERE id = ?1")?
            .execute(params![old.as_bytes()])?;
    }
    ctx.execute(
        &INSERT_TIMER_SQL,
        params![
            timer.id.as_bytes(),
            timer.tenant_id,
            timer.name,
            timer.requested_by,
            timer.status.as_str(),
            timer.created_at_us,
            timer.fire_at_us,
            timer.duration_ms,
            timer.fired_at_us,
            timer.settled_at_us,
            timer.cancelled_at_us,
            timer.cancel_reason,
            metadata,
            labels,
            bundle,
            timer.idempotency_key,
            timer.version,
            timer.schedule.map(|l| l.id.as_bytes().to_vec()),
            timer.schedule.map(|l| l.scheduled_at_us),
            timer.traceparent,
        ],
    )?;
    if timer.idempotency_key.is_some()
        && let Some(fp) = &options.idempotency_fingerprint
    {
        ctx.conn
            .prepare_cached("UPDATE timers SET idempotency_fingerprint = ?2 WHERE id = ?1")?
            .execute(params![timer.id.as_bytes(), fp.as_slice()])?;
    }
    ctx.add_created(&timer.tenant_id, day);
    ctx.add_metered(
        &timer.tenant_id,
        minoots_core::billing::METER_TIMERS_CREATED,
    );
    ctx.add_pending(&timer.tenant_id, 1);
    ctx.append_event(NewEvent::timer_scheduled(&timer))?;
    Ok(CreateOutcome {
        timer,
        created: true,
    })
}

/// Inserts a timer row, all columns in [`TIMER_COLS`] order.
static INSERT_TIMER_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO timers ({TIMER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
    )
});

/// Inserts a pending delivery, at its first attempt, made by a fire.
static INSERT_DELIVERY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO deliveries ({DELIVERY_COLS}) VALUES (?1, ?2, ?3, 0, ?4, 'pending', 0, ?5, ?6, NULL, NULL, ?7, ?7, NULL)"
    )
});

pub fn tenant_usage(conn: &Connection, tenant_id: &str, day: i64) -> StoreResult<TenantUsage> {
    let created: Option<i64> = conn
        .prepare_cached("SELECT created FROM tenant_daily WHERE tenant_id = ?1 AND day = ?2")?
        .query_row(params![tenant_id, day], |r| r.get(0))
        .optional()?;
    Ok(TenantUsage {
        created_today: created.unwrap_or(0).max(0) as u64,
        pending: pending_count(conn, tenant_id)?.max(0) as u64,
    })
}

/// The tenant's count of scheduled timers as committed (0 for a tenant without timers).
pub(super) fn pending_count(conn: &Connection, tenant_id: &str) -> StoreResult<i64> {
    let pending: Option<i64> = conn
        .prepare_cached("SELECT pending FROM tenant_pending WHERE tenant_id = ?1")?
        .query_row(params![tenant_id], |r| r.get(0))
        .optional()?;
    Ok(pending.unwrap_or(0))
}

/// Reads one timer by id, all columns in [`TIMER_COLS`] order.
pub(super) static SELECT_TIMER_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TIMER_COLS} FROM timers WHERE id = ?1"));

pub fn get_timer(
    conn: &Connection,
    tenant_id: Option<&str>,
    id: TimerId,
) -> StoreResult<Option<Timer>> {
    let mut stmt = conn.prepare_cached(&SELECT_TIMER_SQL)?;
    let timer = stmt
        .query_row(params![id.as_bytes()], timer_from_row)
        .optional()?;
    Ok(timer.filter(|t| tenant_id.is_none_or(|tenant| t.tenant_id == tenant)))
}

pub fn list_timers(conn: &Connection, q: &TimerQuery) -> StoreResult<TimerPage> {
    let limit = q.limit.clamp(1, minoots_core::limits::MAX_PAGE_SIZE);
    // Two statements, so that with a cursor the tenant index seeks straight to it instead
    // of scanning the tenant's earlier timers on every page.
    // The fire-time bounds are never NULL (the widest range instead), so the tenant index
    // seeks to the first one; the name prefix is compared by characters.
    let filters = "tenant_id = ?1
           AND (?2 IS NULL OR status = ?2)
           AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(timers.labels) AS l WHERE l.key = ?3 AND l.value = ?4))
           AND fire_at >= ?8 AND fire_at < ?9
           AND (?10 = '' OR substr(name, 1, length(?10)) = ?10)";
    let sql = if q.after.is_some() {
        format!(
            "SELECT {TIMER_COLS} FROM timers WHERE {filters} AND (fire_at, id) > (?5, ?6) ORDER BY fire_at, id LIMIT ?7"
        )
    } else {
        format!(
            "SELECT {TIMER_COLS} FROM timers WHERE {filters} AND ?5 IS NULL AND ?6 IS NULL ORDER BY fire_at, id LIMIT ?7"
        )
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let (label_key, label_value) = match &q.label {
        Some((k, v)) => (Some(k.as_str()), Some(v.as_str())),
        None => (None, None),
    };
    let rows = stmt.query_map(
        params![
            q.tenant_id,
            q.status.map(|s| s.as_str()),
            label_key,
            label_value,
            q.after.map(|a| a.fire_at_us),
            q.after.map(|a| a.id.as_bytes().to_vec()),
            (limit + 1) as i64,
            q.fire_from_us.unwrap_or(i64::MIN),
            q.fire_before_us.unwrap_or(i64::MAX),
            q.name_prefix.as_deref().unwrap_or(""),
        ],
        timer_from_row,
    )?;
    let timers = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(TimerPage::from_rows(timers, limit))
}

pub fn cancel_timer(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    id: TimerId,
    reason: Option<String>,
) -> StoreResult<Timer> {
    let timer = get_timer(ctx.conn, Some(tenant_id), id)?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    if timer.status != TimerStatus::Scheduled {
        return Err(StoreError::Conflict {
            status: timer.status,
        });
    }
    timer.status.check_transition(id, TimerStatus::Cancelled)?;
    let reason = reason.map(|r| stored_text(r, MAX_CANCEL_REASON_BYTES));
    let mut stmt = ctx.conn.prepare_cached(
        "UPDATE timers SET status = 'cancelled', cancelled_at = ?2, cancel_reason = ?3, version = version + 1
         WHERE id = ?1 AND status = 'scheduled'",
    )?;
    stmt.execute(params![id.as_bytes(), ctx.now_us, reason])?;
    ctx.add_pending(tenant_id, -1);
    ctx.move_status(tenant_id, TimerStatus::Scheduled, TimerStatus::Cancelled);
    ctx.append_event(NewEvent::timer_cancelled(tenant_id, id, reason.as_deref()))?;
    Ok(Timer {
        status: TimerStatus::Cancelled,
        cancelled_at_us: Some(ctx.now_us),
        cancel_reason: reason,
        version: timer.version + 1,
        ..timer
    })
}

/// Changes a scheduled timer as `plan_update` says; the read, the plan and the refusal all
/// come before the first write.
pub fn update_timer(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    id: TimerId,
    change: &TimerChange,
) -> StoreResult<TimerChanged> {
    let current = get_timer(ctx.conn, Some(tenant_id), id)?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    let plan = plan_update(&current, change)?;
    let json = |v: serde_json::Result<String>| v.map_err(|e| StoreError::Corrupt(e.to_string()));
    let t = &plan.timer;
    ctx.conn
        .prepare_cached(
            "UPDATE timers SET fire_at = ?2, duration_ms = ?3, metadata = ?4, labels = ?5,
                    action_bundle = ?6, version = ?7
              WHERE id = ?1 AND status = 'scheduled' AND version = ?8",
        )?
        .execute(params![
            id.as_bytes(),
            t.fire_at_us,
            t.duration_ms,
            json(serde_json::to_string(&t.metadata))?,
            json(serde_json::to_string(&t.labels))?,
            json(serde_json::to_string(&t.action_bundle))?,
            t.version,
            current.version,
        ])?;
    ctx.append_event(plan.event)?;
    Ok(TimerChanged {
        timer: plan.timer,
        previous_fire_at_us: current.fire_at_us,
    })
}

pub fn load_due_timers(
    conn: &Connection,
    after: Option<DueTimer>,
    until_us: i64,
    limit: usize,
) -> StoreResult<Vec<DueTimer>> {
    let map = |row: &Row<'_>| {
        Ok(DueTimer {
            fire_at_us: row.get(0)?,
            id: id_col(row, 1, TimerId::from_slice)?,
        })
    };
    let rows = match after {
        None => {
            let mut stmt = conn.prepare_cached(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= ?1
                 ORDER BY fire_at, id LIMIT ?2",
            )?;
            stmt.query_map(params![until_us, limit as i64], map)?
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(a) => {
            let mut stmt = conn.prepare_cached(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= ?1
                   AND (fire_at, id) > (?2, ?3)
                 ORDER BY fire_at, id LIMIT ?4",
            )?;
            stmt.query_map(
                params![until_us, a.fire_at_us, a.id.as_bytes(), limit as i64],
                map,
            )?
            .collect::<Result<Vec<_>, _>>()?
        }
    };
    Ok(rows)
}

/// Fires each timer. A timer whose stored data cannot be read is reported as `Failed` and
/// left as it is, without holding back the others: `fire_timer` reads and checks
/// everything before its first write, so such a failure leaves nothing to undo. Anything
/// that fails after a write fails the whole call, which the caller retries.
pub fn fire_timers(ctx: &mut WriteCtx<'_>, fires: &[FireRequest]) -> StoreResult<Vec<FireOutcome>> {
    let mut out = Vec::with_capacity(fires.len());
    for f in fires {
        let changes_before = ctx.conn.total_changes();
        match fire_timer(ctx, *f) {
            Ok(o) => out.push(o),
            Err(StoreError::Corrupt(error)) if ctx.conn.total_changes() == changes_before => {
                tracing::error!(timer = %f.timer_id, %error, "cannot fire a timer whose stored data is unreadable");
                out.push(FireOutcome::Failed {
                    timer_id: f.timer_id,
                    error,
                });
            }
            Err(other) => return Err(other),
        }
    }
    Ok(out)
}

/// Fires one timer; its tenant's counts move at the batch's commit, once per tenant
/// (`usage.rs`, `status_counts.rs`).
fn fire_timer(ctx: &mut WriteCtx<'_>, fire: FireRequest) -> StoreResult<FireOutcome> {
    type Row = (String, String, i64, String, Option<String>);
    let row: Option<Row> = ctx.query_row(
        "SELECT status, tenant_id, fire_at, action_bundle, traceparent FROM timers WHERE id = ?1",
        params![fire.timer_id.as_bytes()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let Some((status, tenant_id, fire_at_us, bundle, traceparent)) = row else {
        return Ok(FireOutcome::NotFound {
            timer_id: fire.timer_id,
        });
    };
    let status: TimerStatus = status.parse().map_err(StoreError::Corrupt)?;
    let timing = FireTiming {
        fire_at_us,
        fired_at_us: fire.fired_at_us,
        refuse_early: fire.refuse_early,
    };
    let plan = plan_fire(fire.timer_id, status, timing, || {
        serde_json::from_str::<ActionBundle>(&bundle)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    })?;
    let fired_at = fire.fired_at_us;
    match plan {
        FirePlan::Skip { status } => Ok(FireOutcome::Skipped {
            timer_id: fire.timer_id,
            status,
        }),
        FirePlan::NotDue { fire_at_us } => Ok(FireOutcome::NotDue {
            timer_id: fire.timer_id,
            fire_at_us,
        }),
        FirePlan::Settle => {
            ctx.execute(
                "UPDATE timers SET status = 'settled', fired_at = ?2, settled_at = ?2, version = version + 1 WHERE id = ?1",
                params![fire.timer_id.as_bytes(), fired_at],
            )?;
            ctx.move_status(&tenant_id, status, TimerStatus::Settled);
            ctx.add_pending(&tenant_id, -1);
            ctx.append_event(NewEvent::timer_fired(
                &tenant_id,
                fire.timer_id,
                fire_at_us,
                fired_at,
                0,
            ))?;
            ctx.append_event(NewEvent::timer_settled(&tenant_id, fire.timer_id))?;
            Ok(FireOutcome::Settled {
                timer_id: fire.timer_id,
                tenant_id,
                fire_at_us,
                traceparent,
            })
        }
        FirePlan::Fire {
            deliveries,
            max_attempts,
        } => {
            ctx.execute(
                "UPDATE timers SET status = 'fired', fired_at = ?2, version = version + 1 WHERE id = ?1",
                params![fire.timer_id.as_bytes(), fired_at],
            )?;
            ctx.move_status(&tenant_id, status, TimerStatus::Fired);
            ctx.add_pending(&tenant_id, -1);
            for index in 0..deliveries {
                let id = DeliveryId::new_v7();
                ctx.execute(
                    &INSERT_DELIVERY_SQL,
                    params![
                        id.as_bytes(),
                        fire.timer_id.as_bytes(),
                        tenant_id,
                        index as i64,
                        max_attempts,
                        fired_at,
                        ctx.now_us,
                    ],
                )?;
            }
            ctx.append_event(NewEvent::timer_fired(
                &tenant_id,
                fire.timer_id,
                fire_at_us,
                fired_at,
                deliveries,
            ))?;
            Ok(FireOutcome::Fired {
                timer_id: fire.timer_id,
                tenant_id,
                deliveries,
                fire_at_us,
                traceparent,
            })
        }
    }
}

/// Writes a timer's new terminal status (settled or failed) with its event. The
/// transition must have been planned and checked before the write's first change.
pub(super) fn write_timer_status(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    timer_id: TimerId,
    to: TimerStatus,
    event: NewEvent,
) -> StoreResult<()> {
    ctx.execute(
        "UPDATE timers SET status = ?2, settled_at = ?3, version = version + 1 WHERE id = ?1",
        params![timer_id.as_bytes(), to.as_str(), ctx.now_us],
    )?;
    // Only a fired timer settles or fails (`TimerStatus::can_transition_to`).
    ctx.move_status(tenant_id, TimerStatus::Fired, to);
    ctx.append_event(event)
}

pub fn redrive_timer(ctx: &mut WriteCtx<'_>, tenant_id: &str, id: TimerId) -> StoreResult<Timer> {
    let timer = get_timer(ctx.conn, Some(tenant_id), id)?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    let dead = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE timer_id = ?1 AND status = 'dead'"
        ))?
        .query_map(params![id.as_bytes()], delivery_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let plan = plan_redrive(&timer, &dead)?;
    for d in &dead {
        ctx.conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, max_attempts = ?3,
                        updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![
                d.id.as_bytes(),
                ctx.now_us,
                plan.max_attempts_of(d)
            ])?;
        ctx.append_event(NewEvent::delivery_retrying(
            d,
            ctx.now_us,
            RetryCause::Redrive,
        ))?;
    }
    if plan.refire_timer {
        ctx.conn
            .prepare_cached("UPDATE timers SET status = 'fired', settled_at = NULL, version = version + 1 WHERE id = ?1")?
            .execute(params![id.as_bytes()])?;
        ctx.move_status(tenant_id, timer.status, TimerStatus::Fired);
    }
    get_timer(ctx.conn, Some(tenant_id), id)?.ok_or(StoreError::NotFound(Missing::Timer(id)))
}
