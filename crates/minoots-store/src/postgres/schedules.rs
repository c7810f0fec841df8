//! Schedules in the PostgreSQL backend, the same operations as SQLite's
//! (`sqlite/schedules.rs`): a dispatch locks the schedule's row first (so dispatches of
//! one schedule by several kernels run one after the other, each seeing the cursor the
//! last one left), asks `crate::schedules::dispatch_write`, and writes run records keyed
//! by (schedule, slot), the runs' timers through the ordinary create (tenant locks,
//! events, announcements to the owner of their shard, which is the schedule's), and the
//! new progress. A create counts the tenant's schedules under the tenant's advisory lock.

use minoots_core::schedule::spec::MAX_JITTER_MS;
use minoots_core::schedule::{
    Progress, RunStatus, Schedule, ScheduleFilter, ScheduleRequest, ScheduleRun, ScheduleStatus,
};
use minoots_core::{Missing, Quota, ScheduleId, TimerId, TimerStatus};
use tokio_postgres::Row;
use uuid::Uuid;

use super::create::{create_in, lock_tenants};
use super::errors::{TxError, TxResult};
use super::rows::col;
use super::timers::cancel_timer;
use super::tx::{Db, WriteTx};
use crate::schedule_control::{
    ControlState, Controlled, MAX_WITHDRAWABLE, PendingRun, ScheduleControl, catch_up_reads,
    control_write,
};
use crate::schedules::{DispatchWrite, MAX_SCHEDULES_DUE, dispatch_write};
use crate::types::*;

macro_rules! schedule_cols {
    () => {
        "id, tenant_id, request, status, created_at, updated_at, version, cursor, runs_fired, \
         active_timer, buffered, wake_at"
    };
}

fn corrupt(what: impl std::fmt::Display) -> TxError {
    TxError::Store(StoreError::Corrupt(what.to_string()))
}

fn schedule_from_row(row: &Row) -> TxResult<Schedule> {
    let request: ScheduleRequest = serde_json::from_str(col::<&str>(row, 2)?)
        .map_err(|e| corrupt(format!("schedule request: {e}")))?;
    let status: &str = col(row, 3)?;
    let status = ScheduleStatus::parse(status)
        .ok_or_else(|| corrupt(format!("schedule status {status:?}")))?;
    let buffered: Vec<i64> = serde_json::from_str(col::<&str>(row, 10)?)
        .map_err(|e| corrupt(format!("buffered slots: {e}")))?;
    let active_timer = col::<Option<Uuid>>(row, 9)?.map(TimerId);
    Ok(Schedule {
        id: ScheduleId(col(row, 0)?),
        tenant_id: col(row, 1)?,
        request,
        created_at_us: col(row, 4)?,
        updated_at_us: col(row, 5)?,
        version: col(row, 6)?,
        progress: Progress {
            status,
            cursor_us: col(row, 7)?,
            runs_fired: col::<i64>(row, 8)?.max(0) as u64,
            run_active: active_timer.is_some(),
            buffered,
        },
        active_timer,
        wake_at_us: col(row, 11)?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> TxResult<String> {
    serde_json::to_string(v).map_err(corrupt)
}

pub(super) async fn get_schedule(
    db: &mut Db<'_>,
    tenant_id: Option<&str>,
    id: ScheduleId,
) -> TxResult<Option<Schedule>> {
    let row = db
        .query_opt(
            concat!("SELECT ", schedule_cols!(), " FROM schedules WHERE id = $1"),
            &[&id.0],
        )
        .await?;
    let found = row.map(|r| schedule_from_row(&r)).transpose()?;
    Ok(found.filter(|s| tenant_id.is_none_or(|t| s.tenant_id == t)))
}

pub(super) async fn list_schedules(
    db: &mut Db<'_>,
    tenant_id: &str,
    filter: &ScheduleFilter,
    after: Option<ScheduleId>,
    limit: usize,
) -> TxResult<Vec<Schedule>> {
    let after = after.map_or(Uuid::nil(), |a| a.0);
    let (key, value) = filter.label.clone().unzip();
    let status = filter.status.map(|s| s.as_str());
    db.query(
        concat!(
            "SELECT ",
            schedule_cols!(),
            " FROM schedules WHERE tenant_id = $1 AND id > $2
                AND ($4::text IS NULL OR status = $4)
                AND ($5::text IS NULL OR (request::jsonb -> 'labels' ->> $5) = $6)
              ORDER BY id LIMIT $3"
        ),
        &[&tenant_id, &after, &(limit as i64), &status, &key, &value],
    )
    .await?
    .iter()
    .map(schedule_from_row)
    .collect()
}

pub(super) async fn schedules_due(
    db: &mut Db<'_>,
    until_us: i64,
    limit: usize,
) -> TxResult<Vec<(i64, ScheduleId)>> {
    db.query(
        "SELECT wake_at, id FROM schedules WHERE wake_at IS NOT NULL AND wake_at <= $1
          ORDER BY wake_at, id LIMIT $2",
        &[&until_us, &(limit.min(MAX_SCHEDULES_DUE) as i64)],
    )
    .await?
    .iter()
    .map(|r| Ok((col(r, 0)?, ScheduleId(col(r, 1)?))))
    .collect()
}

async fn write_schedule(w: &mut WriteTx<'_>, s: &Schedule, insert: bool) -> TxResult<()> {
    let sql = if insert {
        "INSERT INTO schedules (id, tenant_id, request, status, created_at, updated_at, version,
                                cursor, runs_fired, active_timer, buffered, wake_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    } else {
        "UPDATE schedules SET tenant_id = $2, request = $3, status = $4, created_at = $5,
                updated_at = $6, version = $7, cursor = $8, runs_fired = $9, active_timer = $10,
                buffered = $11, wake_at = $12
          WHERE id = $1"
    };
    let (request, buffered) = (json(&s.request)?, json(&s.progress.buffered)?);
    let runs_fired = s.progress.runs_fired as i64;
    let active = s.active_timer.map(|t| t.0);
    w.db()
        .execute(
            sql,
            &[
                &s.id.0,
                &s.tenant_id,
                &request,
                &s.progress.status.as_str(),
                &s.created_at_us,
                &s.updated_at_us,
                &s.version,
                &s.progress.cursor_us,
                &runs_fired,
                &active,
                &buffered,
                &s.wake_at_us,
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn create_schedule(
    w: &mut WriteTx<'_>,
    schedule: &Schedule,
    max_schedules: Option<u64>,
) -> TxResult<Schedule> {
    check_quota(w, &schedule.tenant_id, max_schedules).await?;
    write_schedule(w, schedule, true).await?;
    Ok(schedule.clone())
}

/// `QuotaExceeded` when the tenant keeps `max_schedules` schedules that are not completed
/// (counted under the tenant's advisory lock, so two creates cannot both pass).
async fn check_quota(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    max_schedules: Option<u64>,
) -> TxResult<()> {
    let Some(limit) = max_schedules else {
        return Ok(());
    };
    lock_tenants(w, std::iter::once(tenant_id)).await?;
    let count: i64 = col(
        &w.db()
            .query_one(
                "SELECT COUNT(*) FROM schedules WHERE tenant_id = $1 AND status <> 'completed'",
                &[&tenant_id],
            )
            .await?,
        0,
    )?;
    if count as u64 >= limit {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::Schedules,
            limit,
        }
        .into());
    }
    Ok(())
}

/// Whether the active run of `s` has reached a final status (or its timer is gone).
async fn active_ended(w: &mut WriteTx<'_>, s: &Schedule) -> TxResult<bool> {
    let Some(id) = s.active_timer else {
        return Ok(false);
    };
    let row = w
        .db()
        .query_opt("SELECT status FROM timers WHERE id = $1", &[&id.0])
        .await?;
    Ok(match row {
        None => true,
        Some(r) => matches!(
            col::<&str>(&r, 0)?
                .parse::<TimerStatus>()
                .map_err(corrupt)?,
            TimerStatus::Settled | TimerStatus::Failed | TimerStatus::Cancelled
        ),
    })
}

async fn timer_scheduled(w: &mut WriteTx<'_>, id: TimerId) -> TxResult<bool> {
    let row = w
        .db()
        .query_opt("SELECT status FROM timers WHERE id = $1", &[&id.0])
        .await?;
    Ok(row.is_some_and(|r| col::<&str>(&r, 0).is_ok_and(|s| s == "scheduled")))
}

/// Runs of `id` recorded `fired` whose timers may not have fired yet (as in SQLite's).
async fn pending_runs(
    w: &mut WriteTx<'_>,
    id: ScheduleId,
    now_us: i64,
) -> TxResult<Vec<PendingRun>> {
    let rows = w
        .db()
        .query(
            "SELECT scheduled_at, timer_id FROM schedule_runs
              WHERE schedule_id = $1 AND scheduled_at > $2 AND status = 'fired'
                AND (scheduled_at > $3 OR fire_at > $3)
              ORDER BY scheduled_at LIMIT $4",
            &[
                &id.0,
                &(now_us - MAX_JITTER_MS * 1000 - 1),
                &now_us,
                &(MAX_WITHDRAWABLE as i64),
            ],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let timer_id = TimerId(
            col::<Option<Uuid>>(&r, 1)?.ok_or_else(|| corrupt("a fired run without its timer"))?,
        );
        out.push(PendingRun {
            slot_us: col(&r, 0)?,
            timer_id,
            timer_scheduled: timer_scheduled(w, timer_id).await?,
        });
    }
    Ok(out)
}

/// The newest `limit` slots recorded `skipped(paused)` from `from_us` to `now_us`, oldest first.
async fn paused_slots(
    w: &mut WriteTx<'_>,
    id: ScheduleId,
    from_us: i64,
    now_us: i64,
    limit: usize,
) -> TxResult<Vec<i64>> {
    let mut slots = w
        .db()
        .query(
            "SELECT scheduled_at FROM schedule_runs
              WHERE schedule_id = $1 AND scheduled_at >= $2 AND scheduled_at <= $3
                AND status = 'skipped' AND reason = 'paused'
              ORDER BY scheduled_at DESC LIMIT $4",
            &[&id.0, &from_us, &now_us, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| col::<i64>(r, 0))
        .collect::<TxResult<Vec<i64>>>()?;
    slots.reverse();
    Ok(slots)
}

async fn lock_schedule(w: &mut WriteTx<'_>, id: ScheduleId) -> TxResult<Option<Schedule>> {
    let row = w
        .db()
        .query_opt(
            concat!(
                "SELECT ",
                schedule_cols!(),
                " FROM schedules WHERE id = $1 FOR UPDATE"
            ),
            &[&id.0],
        )
        .await?;
    row.map(|r| schedule_from_row(&r)).transpose()
}

pub(super) async fn control_schedule(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    id: ScheduleId,
    control: &ScheduleControl,
) -> TxResult<Controlled> {
    let schedule = lock_schedule(w, id)
        .await?
        .filter(|s| s.tenant_id == tenant_id)
        .ok_or(StoreError::NotFound(Missing::Schedule(id)))?;
    let now = w.now_us;
    let paused = match control {
        ScheduleControl::Resume { catch_up: true } => {
            let window = schedule
                .spec()
                .map(|s| s.misfire.window_us)
                .unwrap_or_default();
            let keep = catch_up_reads(&schedule)?;
            paused_slots(w, id, now - window, now, keep).await?
        }
        _ => Vec::new(),
    };
    let state = ControlState {
        pending: pending_runs(w, id, now).await?,
        paused_slots: paused,
        active_ended: active_ended(w, &schedule).await?,
    };
    let write = control_write(&schedule, control, &state, now)?;
    if let Some(limit) = write.reactivates {
        check_quota(w, tenant_id, limit).await?;
    }
    let reason = format!("the schedule was {}", control.verb());
    let mut cancelled = Vec::new();
    for t in &write.cancel {
        if timer_scheduled(w, *t).await? {
            let t = cancel_timer(w, tenant_id, *t, Some(reason.clone())).await?;
            cancelled.push(DueTimer {
                fire_at_us: t.fire_at_us,
                id: t.id,
            });
        }
    }
    for slot in &write.removed_runs {
        w.db()
            .execute(
                "DELETE FROM schedule_runs WHERE schedule_id = $1 AND scheduled_at = $2",
                &[&id.0, slot],
            )
            .await?;
    }
    for run in &write.changed_runs {
        exec_run(
            w,
            "UPDATE schedule_runs SET status = $3, reason = $4, timer_id = $5, fire_at = $6,
                    recorded_at = $7
              WHERE schedule_id = $1 AND scheduled_at = $2",
            run,
        )
        .await?;
    }
    for run in &write.runs {
        exec_run(w, INSERT_RUN, run).await?;
    }
    let mut created: Vec<minoots_core::Timer> = if write.timers.is_empty() {
        Vec::new()
    } else {
        create_in(w, &write.timers)
            .await?
            .into_iter()
            .map(|o| o.timer)
            .collect()
    };
    let Some(after) = write.schedule else {
        w.db()
            .execute("DELETE FROM schedule_runs WHERE schedule_id = $1", &[&id.0])
            .await?;
        w.db()
            .execute("DELETE FROM schedules WHERE id = $1", &[&id.0])
            .await?;
        return Ok(Controlled {
            schedule,
            created,
            cancelled,
        });
    };
    write_schedule(w, &after, false).await?;
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
        let d = apply_dispatch(w, &after, write).await?;
        created.extend(d.created);
        d.schedule
    };
    Ok(Controlled {
        schedule: after,
        created,
        cancelled,
    })
}

const INSERT_RUN: &str =
    "INSERT INTO schedule_runs (schedule_id, scheduled_at, status, reason, timer_id,
                                        fire_at, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(super) async fn dispatch_schedule(w: &mut WriteTx<'_>, id: ScheduleId) -> TxResult<Dispatched> {
    let schedule = lock_schedule(w, id)
        .await?
        .ok_or(StoreError::NotFound(Missing::Schedule(id)))?;
    let ended = active_ended(w, &schedule).await?;
    let write = dispatch_write(&schedule, ended, w.now_us)?;
    if write.is_empty(&schedule) {
        return Ok(Dispatched {
            schedule,
            created: Vec::new(),
        });
    }
    apply_dispatch(w, &schedule, write).await
}

async fn apply_dispatch(
    w: &mut WriteTx<'_>,
    before: &Schedule,
    write: DispatchWrite,
) -> TxResult<Dispatched> {
    if let Some(active) = write.cancel {
        let status = w
            .db()
            .query_opt("SELECT status FROM timers WHERE id = $1", &[&active.0])
            .await?;
        if status.is_some_and(|r| col::<&str>(&r, 0).is_ok_and(|s| s == "scheduled")) {
            cancel_timer(
                w,
                &before.tenant_id,
                active,
                Some("replaced by the schedule's next run (overlap cancelOther)".into()),
            )
            .await?;
        }
    }
    for run in &write.runs {
        exec_run(w, INSERT_RUN, run).await?;
    }
    for run in &write.changed_runs {
        exec_run(
            w,
            "UPDATE schedule_runs SET status = $3, reason = $4, timer_id = $5, fire_at = $6,
                    recorded_at = $7
              WHERE schedule_id = $1 AND scheduled_at = $2 AND status = 'buffered'",
            run,
        )
        .await?;
    }
    let created = if write.timers.is_empty() {
        Vec::new()
    } else {
        create_in(w, &write.timers)
            .await?
            .into_iter()
            .map(|o| o.timer)
            .collect()
    };
    write_schedule(w, &write.schedule, false).await?;
    Ok(Dispatched {
        schedule: write.schedule,
        created,
    })
}

async fn exec_run(w: &mut WriteTx<'_>, sql: &'static str, run: &ScheduleRun) -> TxResult<()> {
    let reason = run.status.reason().map(|r| r.as_str());
    let timer = run.timer_id.map(|t| t.0);
    w.db()
        .execute(
            sql,
            &[
                &run.schedule_id.0,
                &run.scheduled_at_us,
                &run.status.as_str(),
                &reason,
                &timer,
                &run.fire_at_us,
                &run.recorded_at_us,
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn list_schedule_runs(
    db: &mut Db<'_>,
    tenant_id: &str,
    id: ScheduleId,
    after_us: Option<i64>,
    limit: usize,
) -> TxResult<Vec<ScheduleRun>> {
    if get_schedule(db, Some(tenant_id), id).await?.is_none() {
        return Err(StoreError::NotFound(Missing::Schedule(id)).into());
    }
    db.query(
        "SELECT r.scheduled_at, r.status, r.reason, r.timer_id, r.fire_at, r.recorded_at, t.fired_at
           FROM schedule_runs r LEFT JOIN timers t ON t.id = r.timer_id
          WHERE r.schedule_id = $1 AND r.scheduled_at > $2 ORDER BY r.scheduled_at LIMIT $3",
        &[&id.0, &after_us.unwrap_or(i64::MIN), &(limit as i64)],
    )
    .await?
    .iter()
    .map(|r| {
        let status: &str = col(r, 1)?;
        let reason: Option<&str> = col(r, 2)?;
        Ok(ScheduleRun {
            schedule_id: id,
            scheduled_at_us: col(r, 0)?,
            status: RunStatus::parse(status, reason)
                .ok_or_else(|| corrupt(format!("run status {status:?}")))?,
            timer_id: col::<Option<Uuid>>(r, 3)?.map(TimerId),
            fire_at_us: col(r, 4)?,
            fired_at_us: col(r, 6)?,
            recorded_at_us: col(r, 5)?,
        })
    })
    .collect()
}
