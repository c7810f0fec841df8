//! What a change to a schedule through the API writes (pause, resume, a new spec,
//! trigger-now, delete), decided the same way by every backend: the backend locks the
//! schedule's row, reads what [`ControlState`] asks for, calls [`control_write`], writes
//! the answer, then dispatches the changed schedule ([`crate::schedules::dispatch_write`])
//! in the same transaction — so a change never leaves a slot without its record or with
//! two. The rules are the core's (`minoots_core::schedule::control`); nothing here reads
//! or writes a database.

use minoots_core::schedule::{
    ControlPlan, Run, RunStatus, Schedule, ScheduleRequest, ScheduleRun, ScheduleStatus,
    Withdrawable, catch_up_keep, plan_pause, plan_respec, plan_resume,
};
use minoots_core::{Timer, TimerId};

use crate::schedules::run_timer;
use crate::types::{StoreError, StoreResult};

/// Most withdrawable runs a change reads (runs created ahead of their slot or held back by
/// jitter: with the 10 s lead and a 1 s minimum interval, about 11 per schedule).
pub const MAX_WITHDRAWABLE: usize = 1_000;

/// A change to a schedule made through the API.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleControl {
    Pause,
    Resume {
        catch_up: bool,
    },
    /// Put `request` (validated) in force, if the schedule is at `version`; a completed
    /// schedule so made active again counts against `max_schedules`.
    Respec {
        version: i64,
        request: Box<ScheduleRequest>,
        max_schedules: Option<u64>,
    },
    /// Run once now, without moving the cursor or counting as a slot.
    Trigger,
    Delete,
}

impl ScheduleControl {
    /// As the API names it, for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            ScheduleControl::Pause => "paused",
            ScheduleControl::Resume { .. } => "resumed",
            ScheduleControl::Respec { .. } => "changed",
            ScheduleControl::Trigger => "triggered",
            ScheduleControl::Delete => "deleted",
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, PartialEq)]
pub struct Controlled {
    /// The schedule after the change (as it was, for a delete).
    pub schedule: Schedule,
    /// Timers created: caught-up runs, the trigger's run, runs dispatched ahead.
    pub created: Vec<Timer>,
    /// Run timers cancelled (withdrawn runs), to take out of the firing window.
    pub cancelled: Vec<crate::types::DueTimer>,
}

/// A run record whose timer may not have fired yet, with its timer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRun {
    pub slot_us: i64,
    pub timer_id: TimerId,
    /// The timer is still `scheduled` (so the run can be withdrawn).
    pub timer_scheduled: bool,
}

/// What the backend reads for a change, under the schedule's row lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlState {
    /// Records `fired` whose slot or fire time is after now (at most [`MAX_WITHDRAWABLE`]).
    pub pending: Vec<PendingRun>,
    /// For a resume with catch-up: the newest slots recorded `skipped(paused)` within the
    /// misfire window, oldest first, at most [`catch_up_reads`].
    pub paused_slots: Vec<i64>,
    /// The active run's timer has reached its final status (or is gone).
    pub active_ended: bool,
}

/// How many `skipped(paused)` records a resume with catch-up reads.
pub fn catch_up_reads(schedule: &Schedule) -> StoreResult<usize> {
    Ok(catch_up_keep(&spec_of(schedule)?))
}

/// One change's writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControlWrite {
    /// Run timers to cancel when still scheduled.
    pub cancel: Vec<TimerId>,
    /// New run records.
    pub runs: Vec<ScheduleRun>,
    /// Records whose status changes (the whole record, keyed by slot).
    pub changed_runs: Vec<ScheduleRun>,
    /// Records removed, by slot.
    pub removed_runs: Vec<i64>,
    /// Timers to create.
    pub timers: Vec<Timer>,
    /// The schedule after the change; `None` when it is deleted (with its records).
    pub schedule: Option<Schedule>,
    /// The change reactivates a completed schedule: check its quota first.
    pub reactivates: Option<Option<u64>>,
}

fn spec_of(schedule: &Schedule) -> StoreResult<minoots_core::schedule::ScheduleSpec> {
    schedule
        .spec()
        .map_err(|e| StoreError::Corrupt(format!("schedule {}: {e}", schedule.id)))
}

/// The writes of `control` on `schedule` at `now_us`, given what the backend read.
pub fn control_write(
    schedule: &Schedule,
    control: &ScheduleControl,
    state: &ControlState,
    now_us: i64,
) -> StoreResult<ControlWrite> {
    let status = schedule.progress.status;
    let refuse = || StoreError::ScheduleState {
        status: status.as_str(),
        change: control.verb(),
    };
    let withdrawable: Vec<&PendingRun> =
        state.pending.iter().filter(|p| p.timer_scheduled).collect();
    let as_withdrawable = |p: &&PendingRun| Withdrawable {
        slot_us: p.slot_us,
        active: schedule.active_timer == Some(p.timer_id),
    };
    let mut out = ControlWrite::default();
    let mut after = schedule.clone();
    let mut progress = schedule.progress.clone();
    progress.run_active = schedule.active_timer.is_some() && !state.active_ended;
    let plan = match control {
        ScheduleControl::Delete => {
            out.cancel = withdrawable.iter().map(|p| p.timer_id).collect();
            return Ok(out);
        }
        ScheduleControl::Trigger => {
            if status == ScheduleStatus::Completed {
                return Err(refuse());
            }
            let spec = spec_of(schedule)?;
            out.timers
                .push(run_timer(schedule.id, spec.run, now_us, now_us, now_us));
            out.schedule = Some(after);
            return Ok(out);
        }
        ScheduleControl::Pause => {
            if status == ScheduleStatus::Completed {
                return Err(refuse());
            }
            let w: Vec<Withdrawable> = withdrawable.iter().map(as_withdrawable).collect();
            plan_pause(&mut progress, &w)
        }
        ScheduleControl::Resume { catch_up } => {
            if status == ScheduleStatus::Completed {
                return Err(refuse());
            }
            let spec = spec_of(schedule)?;
            plan_resume(
                &spec,
                schedule.key(),
                &mut progress,
                &state.paused_slots,
                *catch_up,
                now_us,
            )
        }
        ScheduleControl::Respec {
            version,
            request,
            max_schedules,
        } => {
            if *version != schedule.version {
                return Err(StoreError::ScheduleVersionMismatch {
                    expected: *version,
                    current: schedule.version,
                });
            }
            let old = spec_of(schedule)?;
            after.request = (**request).clone();
            let spec = spec_of(&after)?;
            let w: Vec<Withdrawable> = withdrawable.iter().map(as_withdrawable).collect();
            let latest_kept = state
                .pending
                .iter()
                .filter(|p| !p.timer_scheduled && p.slot_us > now_us)
                .map(|p| p.slot_us)
                .max();
            if status == ScheduleStatus::Completed {
                out.reactivates = Some(*max_schedules);
            }
            plan_respec(
                &old,
                &spec,
                schedule.key(),
                &mut progress,
                &w,
                latest_kept,
                now_us,
            )
        }
    };
    // `run_active` was set from the active run's end above; only the rest counts as a change.
    let mut compared = progress.clone();
    compared.run_active = schedule.progress.run_active;
    let changed = plan != ControlPlan::default() || compared != schedule.progress;
    apply(&mut out, schedule, &plan, state, now_us)?;
    if plan.active_withdrawn {
        after.active_timer = None;
    }
    if let Some(new_active) = out.timers.last() {
        after.active_timer = Some(new_active.id);
    }
    after.progress = progress;
    after.progress.run_active = after.active_timer.is_some();
    if changed || matches!(control, ScheduleControl::Respec { .. }) {
        after.version += 1;
        after.updated_at_us = now_us;
    }
    // The dispatch that follows in the same transaction works out the next wake time.
    after.wake_at_us = (after.progress.status != ScheduleStatus::Completed).then_some(now_us);
    out.schedule = Some(after);
    Ok(out)
}

/// Turns a control plan into records, timers to create and timers to cancel.
fn apply(
    out: &mut ControlWrite,
    schedule: &Schedule,
    plan: &ControlPlan,
    state: &ControlState,
    now_us: i64,
) -> StoreResult<()> {
    for slot in &plan.withdrawn {
        if let Some(p) = state.pending.iter().find(|p| p.slot_us == *slot) {
            out.cancel.push(p.timer_id);
        }
    }
    if plan.cancel_active
        && let Some(active) = schedule.active_timer
        && !out.cancel.contains(&active)
    {
        out.cancel.push(active);
    }
    out.removed_runs = plan.removed.clone();
    let template = spec_of(schedule)?.run;
    let record = |run: &Run, out: &mut ControlWrite| -> ScheduleRun {
        let (status, timer_id, fire_at_us) = match *run {
            Run::Fire {
                slot_us,
                fire_at_us,
                ..
            } => {
                let timer = run_timer(schedule.id, template.clone(), slot_us, fire_at_us, now_us);
                let id = timer.id;
                out.timers.push(timer);
                (RunStatus::Fired, Some(id), Some(fire_at_us))
            }
            Run::Skip { reason, .. } => (RunStatus::Skipped(reason), None, None),
            Run::Buffer { .. } => (RunStatus::Buffered, None, None),
        };
        ScheduleRun {
            schedule_id: schedule.id,
            scheduled_at_us: run.slot_us(),
            status,
            timer_id,
            fire_at_us,
            fired_at_us: None,
            recorded_at_us: now_us,
        }
    };
    for run in &plan.changed {
        let r = record(run, out);
        out.changed_runs.push(r);
    }
    for run in &plan.recorded {
        let r = record(run, out);
        out.runs.push(r);
    }
    Ok(())
}
