//! What a schedule's dispatch writes, decided the same way by every backend: the backend
//! reads the schedule row and whether its active run has ended, calls [`dispatch_write`],
//! and writes the answer in one transaction — new run records, changed buffered records,
//! the runs' timers (created like any timer, with their events), an active run to cancel,
//! and the schedule's new progress and wake time. Nothing here reads or writes a database;
//! the rules themselves are the core's dispatch planner (`minoots_core::schedule::plan`).

use minoots_core::schedule::{
    Plan, Run, RunStatus, Schedule, ScheduleRun, plan_dispatch, plan_run_ended,
};
use minoots_core::{ScheduleId, ScheduleLink, Timer, TimerId};

use crate::types::{StoreError, StoreResult};

/// Most schedules [`crate::Store::schedules_due`] returns at once.
pub const MAX_SCHEDULES_DUE: usize = 10_000;

/// One dispatch's writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchWrite {
    /// New run records, in slot order.
    pub runs: Vec<ScheduleRun>,
    /// Buffered records whose status changes (to fired or skipped).
    pub changed_runs: Vec<ScheduleRun>,
    /// The timers of the runs that fire, in slot order.
    pub timers: Vec<Timer>,
    /// The active run's timer, to cancel if still scheduled (`cancelOther`).
    pub cancel: Option<TimerId>,
    /// The schedule with its new progress, active run and wake time.
    pub schedule: Schedule,
}

impl DispatchWrite {
    /// Whether anything changes (a dispatch with nothing due writes nothing).
    pub fn is_empty(&self, before: &Schedule) -> bool {
        self.runs.is_empty()
            && self.changed_runs.is_empty()
            && self.cancel.is_none()
            && self.schedule == *before
    }
}

/// A run's timer id: a fresh UUID v7 whose last byte is the schedule's, so the run falls
/// in the schedule's shard and the kernel that dispatches the schedule also fires its runs.
pub fn run_timer_id(schedule: ScheduleId) -> TimerId {
    let mut bytes = *TimerId::new_v7().as_bytes();
    bytes[15] = schedule.as_bytes()[15];
    TimerId(uuid::Uuid::from_bytes(bytes))
}

/// The timer of one run of `schedule`: the schedule's timer template, due at `fire_at_us`,
/// linked to the slot it runs (`slot_us`), with a fresh id in the schedule's shard.
pub fn run_timer(
    schedule: ScheduleId,
    template: minoots_core::request::TimerSpec,
    slot_us: i64,
    fire_at_us: i64,
    now_us: i64,
) -> Timer {
    let mut timer = template.into_timer(run_timer_id(schedule), now_us);
    timer.fire_at_us = fire_at_us;
    timer.duration_ms = None;
    timer.schedule = Some(ScheduleLink {
        id: schedule,
        scheduled_at_us: slot_us,
    });
    timer
}

/// The writes of a dispatch of `schedule` at `now_us`. `active_ended` says whether the
/// timer of its active run has reached a final status (or is gone).
pub fn dispatch_write(
    schedule: &Schedule,
    active_ended: bool,
    now_us: i64,
) -> StoreResult<DispatchWrite> {
    let spec = schedule
        .spec()
        .map_err(|e| StoreError::Corrupt(format!("schedule {}: {e}", schedule.id)))?;
    let mut out = DispatchWrite {
        runs: Vec::new(),
        changed_runs: Vec::new(),
        timers: Vec::new(),
        cancel: None,
        schedule: schedule.clone(),
    };
    let mut progress = schedule.progress.clone();
    let mut active = schedule.active_timer;
    if active.is_some() && active_ended {
        let ended = plan_run_ended(&spec, &progress, now_us);
        apply(
            &mut out,
            schedule,
            &spec.run,
            &ended,
            true,
            now_us,
            &mut active,
        );
        progress = ended.progress;
    } else {
        progress.run_active = active.is_some();
    }
    let plan = plan_dispatch(&spec, schedule.key(), &progress, now_us);
    apply(
        &mut out,
        schedule,
        &spec.run,
        &plan,
        false,
        now_us,
        &mut active,
    );
    out.schedule.progress = plan.progress;
    out.schedule.active_timer = active;
    out.schedule.wake_at_us = plan.wake_at_us;
    Ok(out)
}

fn apply(
    out: &mut DispatchWrite,
    schedule: &Schedule,
    template: &minoots_core::request::TimerSpec,
    plan: &Plan,
    from_buffer: bool,
    now_us: i64,
    active: &mut Option<TimerId>,
) {
    if plan.cancel_active {
        out.cancel = out.cancel.or(*active);
    }
    let runs = if from_buffer {
        &plan.unbuffered
    } else {
        &plan.runs
    };
    for run in runs {
        let record = match *run {
            Run::Fire {
                slot_us,
                fire_at_us,
                ..
            } => {
                let timer = run_timer(schedule.id, template.clone(), slot_us, fire_at_us, now_us);
                let id = timer.id;
                out.timers.push(timer);
                *active = Some(id);
                ScheduleRun {
                    schedule_id: schedule.id,
                    scheduled_at_us: slot_us,
                    status: RunStatus::Fired,
                    timer_id: Some(id),
                    fire_at_us: Some(fire_at_us),
                    fired_at_us: None,
                    recorded_at_us: now_us,
                }
            }
            Run::Skip { slot_us, reason } => ScheduleRun {
                schedule_id: schedule.id,
                scheduled_at_us: slot_us,
                status: RunStatus::Skipped(reason),
                timer_id: None,
                fire_at_us: None,
                fired_at_us: None,
                recorded_at_us: now_us,
            },
            Run::Buffer { slot_us } => ScheduleRun {
                schedule_id: schedule.id,
                scheduled_at_us: slot_us,
                status: RunStatus::Buffered,
                timer_id: None,
                fire_at_us: None,
                fired_at_us: None,
                recorded_at_us: now_us,
            },
        };
        if from_buffer {
            out.changed_runs.push(record);
        } else {
            out.runs.push(record);
        }
    }
    if !plan.progress.run_active {
        *active = None;
    }
}
