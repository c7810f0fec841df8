//! Changing schedules, for [`Kernel`]: a patch merged into the stored request and validated
//! as a create is (with the tier's quotas and the operator's action policy), the store's
//! change (one transaction with the dispatch that follows it), then the firing window and
//! the dispatcher's queue following what it did: runs it created go into the window, runs
//! it withdrew come out, and the schedule is queued at its new wake time.
//!
//! Must never: decide which slot fires or is skipped (the core's planners do), or hold the
//! window's lock across a store call.

use minoots_core::schedule::{ScheduleSpec, patched_request};
use minoots_core::{Missing, ScheduleId, TimerStatus};
use minoots_kernel_api::{
    KernelError, KernelResult, ScheduleChange, ScheduleChanged, ScheduleQuotas,
};
use minoots_store::schedule_control::ScheduleControl;
use minoots_store::{DueTimer, StoreError};

use super::Kernel;
use crate::error::from_store;

impl Kernel {
    /// Refuses a schedule whose runs would carry actions this server does not allow.
    pub(super) fn check_schedule_policy(&self, spec: &ScheduleSpec) -> KernelResult<()> {
        let mut errors = minoots_core::ValidationErrors::new();
        spec.run
            .action_bundle
            .check_policy(&self.config.actions, "actionBundle", &mut errors);
        Ok(errors.into_result()?)
    }

    pub(super) async fn apply_schedule_change(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        change: ScheduleChange,
        quotas: ScheduleQuotas,
    ) -> KernelResult<ScheduleChanged> {
        let control = match change {
            ScheduleChange::Pause => ScheduleControl::Pause,
            ScheduleChange::Resume { catch_up } => ScheduleControl::Resume { catch_up },
            ScheduleChange::Trigger => ScheduleControl::Trigger,
            ScheduleChange::Delete => ScheduleControl::Delete,
            ScheduleChange::Update { version, patch } => {
                let current = self
                    .store
                    .get_schedule(tenant_id, id)
                    .await
                    .map_err(from_store)?
                    .ok_or(KernelError::NotFound(Missing::Schedule(id)))?;
                if current.version != version {
                    // Checked again under the row lock; this spares a validation.
                    return Err(from_store(StoreError::ScheduleVersionMismatch {
                        expected: version,
                        current: current.version,
                    }));
                }
                let request = patched_request(&current.request, &patch)?;
                let spec =
                    request.validate(tenant_id, self.clock.now_us(), quotas.min_interval_ms)?;
                self.check_schedule_policy(&spec)?;
                ScheduleControl::Respec {
                    version,
                    request: Box::new(request.normalized(&spec)),
                    max_schedules: quotas.max_schedules,
                }
            }
        };
        let trigger = matches!(control, ScheduleControl::Trigger);
        let done = self
            .store
            .control_schedule(tenant_id, id, control)
            .await
            .map_err(from_store)?;
        for t in &done.cancelled {
            self.scheduler.on_cancelled(*t);
        }
        for t in &done.created {
            if t.status == TimerStatus::Scheduled
                && self.cluster.as_ref().is_none_or(|c| c.owns_timer(t.id))
            {
                self.scheduler.on_scheduled(DueTimer {
                    fire_at_us: t.fire_at_us,
                    id: t.id,
                });
            }
        }
        if let Some(active) = done.schedule.active_timer
            && !done.schedule.progress.buffered.is_empty()
        {
            self.schedules.watch_run(active, id);
        }
        if let Some(wake) = done.schedule.wake_at_us {
            self.schedules.enqueue(id, wake);
        }
        Ok(ScheduleChanged {
            timer: if trigger {
                done.created.into_iter().next()
            } else {
                None
            },
            schedule: done.schedule,
        })
    }
}
