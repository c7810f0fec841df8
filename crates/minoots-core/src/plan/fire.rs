//! What firing a timer does: one pending delivery per action, or settled at once when it
//! has none; a timer no longer scheduled is skipped, so firing twice is harmless.

use crate::action::ActionBundle;
use crate::model::{ForbiddenTransition, TimerId, TimerStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirePlan {
    /// The timer is no longer scheduled (fired before, or cancelled): nothing changes.
    Skip { status: TimerStatus },
    /// It has no action: it fires and settles at once, with no delivery.
    Settle,
    /// It fires with `deliveries` pending deliveries (one per action, due at the firing
    /// time), each with a budget of `max_attempts`.
    Fire {
        deliveries: usize,
        max_attempts: u32,
    },
}

/// Plans the firing of timer `id`, whose stored status is `status`. `bundle` reads its
/// action bundle and is called only when the timer is scheduled.
pub fn plan_fire<E: From<ForbiddenTransition>>(
    id: TimerId,
    status: TimerStatus,
    bundle: impl FnOnce() -> Result<ActionBundle, E>,
) -> Result<FirePlan, E> {
    if status != TimerStatus::Scheduled {
        return Ok(FirePlan::Skip { status });
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
            let plan = plan_fire(TimerId::new_v7(), TimerStatus::Scheduled, || {
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
                || -> Result<_, ForbiddenTransition> {
                    panic!("a skipped timer's actions are not read")
                },
            );
            assert_eq!(plan, Ok(FirePlan::Skip { status }));
        }
    }
}
