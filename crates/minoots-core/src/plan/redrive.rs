//! What an operator's redrive and an executor's release do to deliveries: a redrive gives
//! a failed timer's dead deliveries a fresh budget; a release hands an unstarted delivery
//! back without spending an attempt.

use crate::model::{Delivery, DeliveryStatus, ForbiddenTransition, Timer, TimerStatus};

/// A redrive of a timer's dead deliveries: each is pending again, due at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedrivePlan {
    /// Attempts added to each delivery's budget: the timer's whole retry budget. The
    /// attempt number keeps growing (it fences reports), so the budget grows with it.
    pub added_attempts: u32,
    /// The timer goes back from `failed` to `fired`.
    pub refire_timer: bool,
}

impl RedrivePlan {
    /// The budget of dead delivery `d` once redriven.
    pub fn max_attempts_of(&self, d: &Delivery) -> u32 {
        d.attempt.saturating_add(self.added_attempts)
    }
}

/// Why a redrive is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveRefusal {
    /// The timer has no dead delivery; `status` is its status.
    NothingDead {
        status: TimerStatus,
    },
    Forbidden(ForbiddenTransition),
}

impl From<ForbiddenTransition> for RedriveRefusal {
    fn from(e: ForbiddenTransition) -> Self {
        RedriveRefusal::Forbidden(e)
    }
}

/// Plans the redrive of `timer`, whose dead deliveries are `dead`.
pub fn plan_redrive(timer: &Timer, dead: &[Delivery]) -> Result<RedrivePlan, RedriveRefusal> {
    if dead.is_empty() {
        return Err(RedriveRefusal::NothingDead {
            status: timer.status,
        });
    }
    for d in dead {
        d.status.check_transition(d.id, DeliveryStatus::Pending)?;
    }
    let refire_timer = timer.status == TimerStatus::Failed;
    if refire_timer {
        timer
            .status
            .check_transition(timer.id, TimerStatus::Fired)?;
    }
    Ok(RedrivePlan {
        added_attempts: timer.action_bundle.retry_policy().max_attempts(),
        refire_timer,
    })
}

/// A leased delivery handed back unexecuted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleasePlan {
    /// Due again `delay_us` from now (at once for a negative delay).
    pub next_attempt_at_us: i64,
    /// The claim's attempt number is taken back, so `attempt` counts only attempts that
    /// started and the budget is unchanged. Fencing still holds: the lease owner carries
    /// its process's boot identity, and an owner that handed a delivery back has no
    /// attempt of it left to report.
    pub attempt: u32,
}

/// Plans the release of `d`, whose lease the caller has checked it holds, at `now_us`.
pub fn plan_release(
    d: &Delivery,
    now_us: i64,
    delay_us: i64,
) -> Result<ReleasePlan, ForbiddenTransition> {
    d.status.check_transition(d.id, DeliveryStatus::Pending)?;
    Ok(ReleasePlan {
        next_attempt_at_us: now_us.saturating_add(delay_us.max(0)),
        attempt: d.attempt.saturating_sub(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{T0, in_flight};
    use crate::{TimerId, TimerRequest};

    fn timer(status: TimerStatus, max_attempts: u32) -> Timer {
        let json = format!(
            r#"{{"name": "t", "duration": "1h", "actionBundle": {{
                 "actions": [{{"type": "webhook", "url": "https://example.com/a"}}],
                 "retryPolicy": {{"maxAttempts": {max_attempts}}}}}}}"#
        );
        let mut t = TimerRequest::from_json(json.as_bytes())
            .unwrap()
            .validate("acme", T0)
            .unwrap()
            .into_timer(TimerId::new_v7(), T0);
        t.status = status;
        t
    }

    fn dead(attempt: u32) -> Delivery {
        Delivery {
            status: DeliveryStatus::Dead,
            lease_owner: None,
            ..in_flight(attempt, attempt)
        }
    }

    #[test]
    fn a_redrive_gives_each_dead_delivery_a_fresh_budget_and_refires_a_failed_timer() {
        // (timer status, refires)
        for (status, refire_timer) in [(TimerStatus::Failed, true), (TimerStatus::Fired, false)] {
            let t = timer(status, 4);
            let deliveries = [dead(4), dead(1)];
            let plan = plan_redrive(&t, &deliveries).unwrap();
            assert_eq!(
                plan,
                RedrivePlan {
                    added_attempts: 4,
                    refire_timer
                },
                "{status}"
            );
            assert_eq!(plan.max_attempts_of(&deliveries[0]), 8);
            assert_eq!(plan.max_attempts_of(&deliveries[1]), 5);
        }
    }

    #[test]
    fn a_redrive_without_a_dead_delivery_or_against_the_state_machines_is_refused() {
        let t = timer(TimerStatus::Settled, 3);
        assert_eq!(
            plan_redrive(&t, &[]),
            Err(RedriveRefusal::NothingDead {
                status: TimerStatus::Settled
            })
        );
        let succeeded = Delivery {
            status: DeliveryStatus::Succeeded,
            ..dead(1)
        };
        let refused = plan_redrive(&timer(TimerStatus::Failed, 3), &[dead(3), succeeded]);
        assert!(
            matches!(&refused, Err(RedriveRefusal::Forbidden(e)) if e.from == "succeeded"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_release_gives_the_attempt_back_and_is_due_after_the_delay() {
        // (delay µs, due)
        for (delay_us, due) in [(0, T0), (5_000_000, T0 + 5_000_000), (-7, T0)] {
            assert_eq!(
                plan_release(&in_flight(2, 3), T0, delay_us),
                Ok(ReleasePlan {
                    next_attempt_at_us: due,
                    attempt: 1
                }),
                "delay {delay_us}"
            );
        }
        let pending = Delivery {
            status: DeliveryStatus::Pending,
            ..in_flight(2, 3)
        };
        assert!(plan_release(&pending, T0, 0).is_err());
    }
}
