//! Changing a scheduled timer and firing one now, for [`Kernel`]: validation (the
//! create's rules and the operator's action policy), the store's versioned change, and
//! the window following it. A fire-now makes the timer due now and lets the scheduler
//! fire it like any other (so deliveries, events, lateness and, on a shared store, the
//! shard fence are those of every fire); it then waits for that fire's event, bounded by
//! [`FIRE_NOW_WAIT`].
//!
//! Must never: fire a timer itself (only the scheduler of the shard's owner does), or hold
//! the window's lock across a store call.

use minoots_core::Event;
use minoots_core::{EventType, Missing, Timer, TimerChange, TimerChanged, TimerId, TimerPatch};
use minoots_kernel_api::api::FIRE_NOW_WAIT;
use minoots_kernel_api::{KernelError, KernelResult};
use minoots_store::{DueTimer, StoreError};
use tokio::sync::broadcast::{self, error::RecvError};

use super::Kernel;
use crate::error::from_store;
use crate::metrics::KernelMetrics;

/// The kernel's answer to a refused change: that it can no longer change (in words about
/// changing); everything else as any store error.
fn change_refused(e: StoreError) -> KernelError {
    match e {
        StoreError::Conflict { status } => KernelError::Conflict {
            message: format!(
                "the timer is already {status}; only scheduled timers can be changed or fired now"
            ),
            status: Some(status),
        },
        other => from_store(other),
    }
}

/// Whether `e` ends the wait of a fire-now of `id`: it fired (`timer.fired` comes with
/// every fire, settled at once or not), or was cancelled meanwhile.
fn ends_wait(e: &Event, id: TimerId) -> bool {
    e.timer_id == id
        && matches!(
            e.event_type,
            EventType::TimerFired | EventType::TimerCancelled
        )
}

impl Kernel {
    pub(super) async fn change_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        patch: TimerPatch,
    ) -> KernelResult<Timer> {
        let change = patch.validate(None, self.clock.now_us())?;
        if let Some(bundle) = &change.action_bundle {
            let mut errors = minoots_core::ValidationErrors::new();
            bundle.check_policy(&self.config.actions, "actionBundle", &mut errors);
            errors.into_result()?;
        }
        let changed = self.apply_change(tenant_id, id, change).await?;
        Ok(changed.timer)
    }

    pub(super) async fn fire_now(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        // Subscribed before the change, so the fire's event cannot pass unseen.
        let mut live = self.store.subscribe_events();
        let now = self.clock.now_us();
        let changed = self
            .apply_change(tenant_id, id, TimerChange::fire_now(now))
            .await?;
        let fired =
            tokio::time::timeout(FIRE_NOW_WAIT, self.wait_for_fire(&mut live, tenant_id, id))
                .await
                .unwrap_or(Ok(None))?;
        match fired {
            Some(timer) => Ok(timer),
            None => self
                .store
                .get_timer(tenant_id, id)
                .await
                .map_err(from_store)?
                .map_or(Ok(changed.timer), Ok),
        }
    }

    /// Waits until `id` fired (or was cancelled), and returns it then; `None` when the
    /// live feed closed.
    async fn wait_for_fire(
        &self,
        live: &mut broadcast::Receiver<minoots_store::LiveEvent>,
        tenant_id: &str,
        id: TimerId,
    ) -> KernelResult<Option<Timer>> {
        loop {
            match live.recv().await {
                Ok(e) if ends_wait(&e, id) => break,
                Ok(_) => {}
                // Events were missed: the timer's own state tells whether it fired.
                Err(RecvError::Lagged(_)) => {
                    let t = self.get_stored(tenant_id, id).await?;
                    if t.status != minoots_core::TimerStatus::Scheduled {
                        return Ok(Some(t));
                    }
                }
                Err(RecvError::Closed) => return Ok(None),
            }
        }
        self.get_stored(tenant_id, id).await.map(Some)
    }

    async fn get_stored(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        self.store
            .get_timer(tenant_id, id)
            .await
            .map_err(from_store)?
            .ok_or(KernelError::NotFound(Missing::Timer(id)))
    }

    /// Writes a change and moves the timer in the window when this kernel fires it (on a
    /// shared store, the store announces the new time to the shard's kernel).
    async fn apply_change(
        &self,
        tenant_id: &str,
        id: TimerId,
        change: TimerChange,
    ) -> KernelResult<TimerChanged> {
        let changed = self
            .store
            .update_timer(tenant_id, id, change)
            .await
            .map_err(change_refused)?;
        let t = &changed.timer;
        if t.fire_at_us != changed.previous_fire_at_us
            && self.cluster.as_ref().is_none_or(|c| c.owns_timer(id))
        {
            self.scheduler.on_rescheduled(
                DueTimer {
                    fire_at_us: changed.previous_fire_at_us,
                    id,
                },
                DueTimer {
                    fire_at_us: t.fire_at_us,
                    id,
                },
            );
        }
        KernelMetrics::inc(&self.metrics.timers_updated, 1);
        Ok(changed)
    }
}
