//! Schedules in the SQLite backend: create (with the tenant's schedule quota), read, list,
//! the due queue, the dispatch transaction and the run records. A dispatch reads the
//! schedule and its active run, asks `crate::schedules::dispatch_write`, and writes what
//! it says in the writer's transaction: run records keyed by (schedule, slot), so a slot
//! can never get two, the runs' timers through the ordinary create, and the new progress.

use minoots_core::schedule::spec::MAX_JITTER_MS;
use minoots_core::schedule::{
    Progress, RunStatus, Schedule, ScheduleFilter, ScheduleRequest, ScheduleRun, ScheduleStatus,
};
use minoots_core::{Missing, Quota, ScheduleId, TimerId, TimerStatus};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::WriteCtx;
use super::rows::{corrupt, id_col};
use super::timers::{cancel_timer, create_timer, get_timer};
use crate::schedule_control::{
    ControlState, Controlled, MAX_WITHDRAWABLE, PendingRun, ScheduleControl, catch_up_reads,
    control_write,
};
use crate::schedules::{DispatchWrite, MAX_SCHEDULES_DUE, dispatch_write};
use crate::types::*;

const SCHEDULE_COLS: &str = "id, tenant_id, request, status, created_at, updated_at, version, \
    cursor, runs_fired, active_timer, buffered, wake_at";

fn schedule_from_row(row: &Row<'_>) -> rusqlite::Result<Schedule> {
    let request: String = row.get(2)?;
    let request: ScheduleRequest = serde_json::from_str(&request).map_err(|e| corrupt(2, e))?;
    let status: String = row.get(3)?;
    let status = ScheduleStatus::parse(&status)
        .ok_or_else(|| corrupt(3, std::io::Error::other(format!("status {status:?}"))))?;
    let buffered: String = row.get(10)?;
    let buffered: Vec<i64> = serde_json::from_str(&buffered).map_err(|e| corrupt(10, e))?;
    let active: Option<Vec<u8>> = row.get(9)?;
    let active_timer = match active {
        Some(b) => Some(
            TimerId::from_slice(&b)
                .ok_or_else(|| corrupt(9, std::io::Error::other("bad id length")))?,
        ),
        None => None,
    };
    Ok(Schedule {
        id: id_col(row, 0, ScheduleId::from_slice)?,
        tenant_id: row.get(1)?,
        request,
        created_at_us: row.get(4)?,
        updated_at_us: row.get(5)?,
        version: row.get(6)?,
        progress: Progress {
            status,
            cursor_us: row.get(7)?,
            runs_fired: row.get::<_, i64>(8)?.max(0) as u64,
            run_active: active_timer.is_some(),
            buffered,
        },
        active_timer,
        wake_at_us: row.get(11)?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn get_schedule(
    conn: &Connection,
    tenant_id: Option<&str>,
    id: ScheduleId,
) -> StoreResult<Option<Schedule>> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE id = ?1"
        ))?
        .query_row(params![id.as_bytes()], schedule_from_row)
        .optional()?;
    Ok(found.filter(|s| tenant_id.is_none_or(|t| s.tenant_id == t)))
}

pub fn list_schedules(
    conn: &Connection,
    tenant_id: &str,
    filter: &ScheduleFilter,
    after: Option<ScheduleId>,
    limit: usize,
) -> StoreResult<Vec<Schedule>> {
    let after = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
    // A label is looked up in the stored request (`json_quote` makes any key one path step).
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SCHEDULE_COLS} FROM schedules WHERE tenant_id = ?1 AND id > ?2
           AND (?4 IS NULL OR status = ?4)
           AND (?5 IS NULL OR json_extract(request, '$.labels.' || json_quote(?5)) = ?6)
         ORDER BY id LIMIT ?3"
    ))?;
    let (key, value) = filter.label.clone().unzip();
    let rows = stmt
        .query_map(
            params![
                tenant_id,
                after,
                limit as i64,
                filter.status.map(|s| s.as_str()),
                key,
                value
            ],
            schedule_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn schedules_due(
    conn: &Connection,
    until_us: i64,
    limit: usize,
) -> StoreResult<Vec<(i64, ScheduleId)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT wake_at, id FROM schedules WHERE wake_at IS NOT NULL AND wake_at <= ?1
         ORDER BY wake_at, id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(
            params![until_us, limit.min(MAX_SCHEDULES_DUE) as i64],
            |r| Ok((r.get(0)?, id_col(r, 1, ScheduleId::from_slice)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn write_schedule(ctx: &WriteCtx<'_>, s: &Schedule, insert: bool) -> StoreResult<()> {
    let sql = if insert {
        "INSERT INTO schedules (id, tenant_id, request, status, created_at, updated_at, version,
                                cursor, runs_fired, active_timer, buffered, wake_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    } else {
        "UPDATE schedules SET tenant_id = ?2, request = ?3, status = ?4, created_at = ?5,
                updated_at = ?6, version = ?7, cursor = ?8, runs_fired = ?9, active_timer = ?10,
                buffered = ?11, wake_at = ?12
         WHERE id = ?1"
    };
    ctx.conn.prepare_cached(sql)?.execute(params![
        s.id.as_bytes(),
        s.tenant_id,
        json(&s.request)?,
        s.progress.status.as_str(),
        s.created_at_us,
        s.updated_at_us,
        s.version,
        s.progress.cursor_us,
        s.progress.runs_fired as i64,
        s.active_timer.map(|t| t.as_bytes().to_vec()),
        json(&s.progress.buffered)?,
        s.wake_at_us,
    ])?;
    Ok(())
}

pub fn create_schedule(
    ctx: &mut WriteCtx<'_>,
    schedule: Schedule,
    max_schedules: Option<u64>,
) -> StoreResult<Schedule> {
    check_quota(ctx.conn, &schedule.tenant_id, max_schedules)?;
    write_schedule(ctx, &schedule, true)?;
    Ok(schedule)
}

/// `QuotaExceeded` when the tenant keeps `max_schedules` schedules that are not completed.
fn check_quota(conn: &Connection, tenant_id: &str, max_schedules: Option<u64>) -> StoreResult<()> {
    let Some(limit) = max_schedules else {
        return Ok(());
    };
    let count: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM schedules WHERE tenant_id = ?1 AND status != 'completed'",
        )?
        .query_row(params![tenant_id], |r| r.get(0))?;
    if count as u64 >= limit {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::Schedules,
            limit,
        });
    }
    Ok(())
}

/// Whether the active run of `s` has reached a final status (or its timer is gone).
fn active_ended(conn: &Connection, s: &Schedule) -> StoreResult<bool> {
    let Some(id) = s.active_timer else {
        return Ok(false);
    };
    Ok(match get_timer(conn, None, id)? {
        None => true,
        Some(t) => matches!(
            t.status,
            TimerStatus::Settled | TimerStatus::Failed | TimerStatus::Cancelled
        ),
    })
}

/// Runs of `id` recorded `fired` whose timers may not have fired yet: the slot or the fire
/// time after `now_us` (a fire time after now is the slot plus at most the longest jitter).
fn pending_runs(conn: &Connection, id: ScheduleId, now_us: i64) -> StoreResult<Vec<PendingRun>> {
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT scheduled_at, timer_id FROM schedule_runs
             WHERE schedule_id = ?1 AND scheduled_at > ?2 AND status = 'fired'
               AND (scheduled_at > ?3 OR fire_at > ?3)
             ORDER BY scheduled_at LIMIT ?4",
        )?
        .query_map(
            params![
                id.as_bytes(),
                now_us - MAX_JITTER_MS * 1000 - 1,
                now_us,
                MAX_WITHDRAWABLE as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (slot_us, timer) in rows {
        let timer_id = TimerId::from_slice(&timer)
            .ok_or_else(|| StoreError::Corrupt(format!("schedule {id}: bad run timer id")))?;
        let timer_scheduled =
            get_timer(conn, None, timer_id)?.is_some_and(|t| t.status == TimerStatus::Scheduled);
        out.push(PendingRun {
            slot_us,
            timer_id,
            timer_scheduled,
        });
    }
    Ok(out)
}

/// The newest `limit` slots recorded `skipped(paused)` from `from_us` to `now_us`, oldest first.
fn paused_slots(
    conn: &Connection,
    id: ScheduleId,
    from_us: i64,
    now_us: i64,
    limit: usize,
) -> StoreResult<Vec<i64>> {
    let mut slots: Vec<i64> = conn
        .prepare_cached(
            "SELECT scheduled_at FROM schedule_runs
             WHERE schedule_id = ?1 AND scheduled_at >= ?2 AND scheduled_at <= ?3
               AND status = 'skipped' AND reason = 'paused'
             ORDER BY scheduled_at DESC LIMIT ?4",
        )?
        .query_map(params![id.as_bytes(), from_us, now_us, limit as i64], |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    slots.reverse();
    Ok(slots)
}

pub fn control_schedule(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    id: ScheduleId,
    control: &ScheduleControl,
) -> StoreResult<Controlled> {
    let schedule = get_schedule(ctx.conn, Some(tenant_id), id)?
        .ok_or(StoreError::NotFound(Missing::Schedule(id)))?;
    let now = ctx.now_us;
    let paused = match control {
        ScheduleControl::Resume { catch_up: true } => {
            let window = schedule
                .spec()
                .map(|s| s.misfire.window_us)
                .unwrap_or_default();
            paused_slots(ctx.conn, id, now - window, now, catch_up_reads(&schedule)?)?
        }
        _ => Vec::new(),
    };
    let state = ControlState {
        pending: pending_runs(ctx.conn, id, now)?,
        paused_slots: paused,
        active_ended: active_ended(ctx.conn, &schedule)?,
    };
    let write = control_write(&schedule, control, &state, now)?;
    if let Some(limit) = write.reactivates {
        check_quota(ctx.conn, tenant_id, limit)?;
    }
    let reason = format!("the schedule was {}", control.verb());
    let mut cancelled = Vec::new();
    for t in &write.cancel {
        if get_timer(ctx.conn, None, *t)?.is_some_and(|t| t.status == TimerStatus::Scheduled) {
            let t = cancel_timer(ctx, tenant_id, *t, Some(reason.clone()))?;
            cancelled.push(DueTimer {
                fire_at_us: t.fire_at_us,
                id: t.id,
            });
        }
    }
    for slot in &write.removed_runs {
        ctx.conn
            .prepare_cached(
                "DELETE FROM schedule_runs WHERE schedule_id = ?1 AND scheduled_at = ?2",
            )?
            .execute(params![id.as_bytes(), slot])?;
    }
    for run in &write.changed_runs {
        exec_run(
            ctx.conn,
            "UPDATE schedule_runs SET status = ?3, reason = ?4, timer_id = ?5, fire_at = ?6,
                    recorded_at = ?7
             WHERE schedule_id = ?1 AND scheduled_at = ?2",
            run,
        )?;
    }
    for run in &write.runs {
        insert_run(ctx.conn, run)?;
    }
    let mut created = Vec::with_capacity(write.timers.len());
    for timer in write.timers {
        created.push(create_timer(ctx, timer, &CreateOptions::default())?.timer);
    }
    let Some(after) = write.schedule else {
        ctx.conn
            .prepare_cached("DELETE FROM schedule_runs WHERE schedule_id = ?1")?
            .execute(params![id.as_bytes()])?;
        ctx.conn
            .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
            .execute(params![id.as_bytes()])?;
        return Ok(Controlled {
            schedule,
            created,
            cancelled,
        });
    };
    write_schedule(ctx, &after, false)?;
    if matches!(control, ScheduleControl::Trigger) {
        return Ok(Controlled {
            schedule: after,
            created,
            cancelled,
        });
    }
    // Dispatch the changed schedule in the same transaction.
    let ended = state.active_ended && after.active_timer == schedule.active_timer;
    let write = dispatch_write(&after, ended, now)?;
    let after = if write.is_empty(&after) {
        after
    } else {
        let d = apply_dispatch(ctx, &after, write)?;
        created.extend(d.created);
        d.schedule
    };
    Ok(Controlled {
        schedule: after,
        created,
        cancelled,
    })
}

pub fn dispatch_schedule(ctx: &mut WriteCtx<'_>, id: ScheduleId) -> StoreResult<Dispatched> {
    let schedule =
        get_schedule(ctx.conn, None, id)?.ok_or(StoreError::NotFound(Missing::Schedule(id)))?;
    let ended = active_ended(ctx.conn, &schedule)?;
    let write = dispatch_write(&schedule, ended, ctx.now_us)?;
    if write.is_empty(&schedule) {
        return Ok(Dispatched {
            schedule,
            created: Vec::new(),
        });
    }
    apply_dispatch(ctx, &schedule, write)
}

fn apply_dispatch(
    ctx: &mut WriteCtx<'_>,
    before: &Schedule,
    write: DispatchWrite,
) -> StoreResult<Dispatched> {
    if let Some(active) = write.cancel
        && get_timer(ctx.conn, None, active)?.is_some_and(|t| t.status == TimerStatus::Scheduled)
    {
        cancel_timer(
            ctx,
            &before.tenant_id,
            active,
            Some("replaced by the schedule's next run (overlap cancelOther)".into()),
        )?;
    }
    for run in &write.runs {
        insert_run(ctx.conn, run)?;
    }
    for run in &write.changed_runs {
        exec_run(
            ctx.conn,
            "UPDATE schedule_runs SET status = ?3, reason = ?4, timer_id = ?5, fire_at = ?6,
                    recorded_at = ?7
             WHERE schedule_id = ?1 AND scheduled_at = ?2 AND status = 'buffered'",
            run,
        )?;
    }
    let mut created = Vec::with_capacity(write.timers.len());
    for timer in write.timers {
        created.push(create_timer(ctx, timer, &CreateOptions::default())?.timer);
    }
    write_schedule(ctx, &write.schedule, false)?;
    Ok(Dispatched {
        schedule: write.schedule,
        created,
    })
}

fn run_params(run: &ScheduleRun) -> Vec<Box<dyn rusqlite::ToSql>> {
    vec![
        Box::new(run.schedule_id.as_bytes().to_vec()),
        Box::new(run.scheduled_at_us),
        Box::new(run.status.as_str()),
        Box::new(run.status.reason().map(|r| r.as_str())),
        Box::new(run.timer_id.map(|t| t.as_bytes().to_vec())),
        Box::new(run.fire_at_us),
        Box::new(run.recorded_at_us),
    ]
}

fn insert_run(conn: &Connection, run: &ScheduleRun) -> StoreResult<()> {
    exec_run(
        conn,
        "INSERT INTO schedule_runs (schedule_id, scheduled_at, status, reason, timer_id, fire_at,
                                    recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        run,
    )
}

/// Runs `sql` with a run record's seven values as ?1 … ?7.
fn exec_run(conn: &Connection, sql: &str, run: &ScheduleRun) -> StoreResult<()> {
    let params = run_params(run);
    let refs: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| p.as_ref()).collect();
    conn.prepare_cached(sql)?.execute(refs.as_slice())?;
    Ok(())
}

pub fn list_schedule_runs(
    conn: &Connection,
    tenant_id: &str,
    id: ScheduleId,
    after_us: Option<i64>,
    limit: usize,
) -> StoreResult<Vec<ScheduleRun>> {
    if get_schedule(conn, Some(tenant_id), id)?.is_none() {
        return Err(StoreError::NotFound(Missing::Schedule(id)));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT r.scheduled_at, r.status, r.reason, r.timer_id, r.fire_at, r.recorded_at, t.fired_at
           FROM schedule_runs r LEFT JOIN timers t ON t.id = r.timer_id
          WHERE r.schedule_id = ?1 AND r.scheduled_at > ?2 ORDER BY r.scheduled_at LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(
            params![id.as_bytes(), after_us.unwrap_or(i64::MIN), limit as i64],
            |r| {
                let status: String = r.get(1)?;
                let reason: Option<String> = r.get(2)?;
                let timer: Option<Vec<u8>> = r.get(3)?;
                Ok(ScheduleRun {
                    schedule_id: id,
                    scheduled_at_us: r.get(0)?,
                    status: RunStatus::parse(&status, reason.as_deref()).ok_or_else(|| {
                        corrupt(1, std::io::Error::other(format!("run status {status:?}")))
                    })?,
                    timer_id: match timer {
                        Some(b) => {
                            Some(TimerId::from_slice(&b).ok_or_else(|| {
                                corrupt(3, std::io::Error::other("bad id length"))
                            })?)
                        }
                        None => None,
                    },
                    fire_at_us: r.get(4)?,
                    fired_at_us: r.get(6)?,
                    recorded_at_us: r.get(5)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
