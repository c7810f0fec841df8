//! What firing a timer does: one pending delivery per action, or settled at once when it
//! has none; a timer no longer scheduled is skipped, so firing twice is harmless; a timer
//! rescheduled to a later time since the scheduler read it is not due yet, and is left
//! for its new time (never early).

use crate::action::ActionBundle;
use crate::model::{ForbiddenTransition, TimerId, TimerStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirePlan {
    /// The timer is no longer scheduled (fired before, or cancelled): nothing changes.
    Skip { status: TimerStatus },
    /// The timer was moved to `fire_at_us`, after the firing time: nothing changes, and it
    /// fires at its new time.
    NotDue { fire_at_us: i64 },
    /// It has no action: it fires and settles at once, with no delivery.
    Settle,
    /// It fires with `deliveries` pending deliveries (one per action, due at the firing
    /// time), each with a budget of `max_attempts`.
    Fire {
        deliveries: usize,
        max_attempts: u32,
    },
}

/// When a fire happens, against the timer's stored fire time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireTiming {
    /// The timer's fire time as stored now.
    pub fire_at_us: i64,
    /// When the caller fired it.
    pub fired_at_us: i64,
    /// Whether a stored fire time after `fired_at_us` stops the fire (see
    /// `FireRequest::refuse_early` in the store).
    pub refuse_early: bool,
}

/// Plans the firing of timer `id`, whose stored status is `status`. `bundle` reads its
/// action bundle and is called only when the timer is scheduled and due.
pub fn plan_fire<E: From<ForbiddenTransition>>(
    id: TimerId,
    status: TimerStatus,
    timing: FireTiming,
    bundle: impl FnOnce() -> Result<ActionBundle, E>,
) -> Result<FirePlan, E> {
    if status != TimerStatus::Scheduled {
        return Ok(FirePlan::Skip { status });
    }
    if timing.refuse_early && timing.fire_at_us > timing.fired_at_us {
        return Ok(FirePlan::NotDue {
            fire_at_us: timing.fire_at_us,
        });
    }
    let bundle = bundle()?;
    if bundle.actions.is_empty() {
        status.check_transition(id, TimerStatus::Settled)?;
        return Ok(FirePlan::Settle);
    }
    status.check_transition(id, TimerStatus::Fired)?;
    Ok(FirePlan::Fire {
        deliveries: bundle.actions.len(),
        max_attempts: bundle.retry_policy().max_attempts(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(json: &str) -> ActionBundle {
        serde_json::from_str(json).unwrap()
    }

    const DUE: FireTiming = FireTiming {
        fire_at_us: 1_000,
        fired_at_us: 1_000,
        refuse_early: true,
    };

    #[test]
    fn a_timer_moved_after_the_firing_time_is_not_due_unless_fired_on_purpose() {
        let one = r#"{"actions": [{"type": "webhook", "url": "https://example.com/a"}]}"#;
        let fires = FirePlan::Fire {
            deliveries: 1,
            max_attempts: crate::retry::DEFAULT_MAX_ATTEMPTS,
        };
        // (stored fire time, fired at, refuse early, plan)
        let table = [
            (1_001, 1_000, true, FirePlan::NotDue { fire_at_us: 1_001 }),
            (1_000, 1_000, true, fires),
            (999, 1_000, true, fires),
            (5_000, 1_000, false, fires),
        ];
        for (fire_at_us, fired_at_us, refuse_early, want) in table {
            let timing = FireTiming {
                fire_at_us,
                fired_at_us,
                refuse_early,
            };
            let plan = plan_fire(TimerId::new_v7(), TimerStatus::Scheduled, timing, || {
                Ok::<_, ForbiddenTransition>(bundle(one))
            });
            assert_eq!(plan, Ok(want), "{fire_at_us} {fired_at_us} {refuse_early}");
        }
    }

    #[test]
    fn a_scheduled_timer_fires_one_delivery_per_action_with_its_budget() {
        let two = r#"{"actions": [{"type": "webhook", "url": "https://example.com/a"},
                                  {"type": "webhook", "url": "https://example.com/b"}],
                      "retryPolicy": {"maxAttempts": 5}}"#;
        let one = r#"{"actions": [{"type": "webhook", "url": "https://example.com/a"}]}"#;
        // (bundle, plan)
        let table = [
            (
                two,
                FirePlan::Fire {
                    deliveries: 2,
                    max_attempts: 5,
                },
            ),
            (
                one,
                FirePlan::Fire {
                    deliveries: 1,
                    max_attempts: crate::retry::DEFAULT_MAX_ATTEMPTS,
                },
            ),
            (r#"{"actions": []}"#, FirePlan::Settle),
        ];
        for (json, want) in table {
            let plan = plan_fire(TimerId::new_v7(), TimerStatus::Scheduled, DUE, || {
                Ok::<_, ForbiddenTransition>(bundle(json))
            });
            assert_eq!(plan, Ok(want), "{json}");
        }
    }

    #[test]
    fn a_timer_no_longer_scheduled_is_skipped_without_reading_its_actions() {
        for status in TimerStatus::ALL {
            if status == TimerStatus::Scheduled {
                continue;
            }
            let plan = plan_fire(
                TimerId::new_v7(),
                status,
                DUE,
                || -> Result<_, ForbiddenTransition> {
                    panic!("a skipped timer's actions are not read")
                },
            );
            assert_eq!(plan, Ok(FirePlan::Skip { status }));
        }
    }
}
