//! What the rescuer does with a delivery whose lease expired before a report: the
//! executor died or stalled, so the attempt counts, and the delivery runs again at once
//! unless that was its last attempt.

use crate::model::{DeathReason, Delivery, DeliveryStatus, ForbiddenTransition, TimerStatus};

use super::kill::{KillPlan, plan_kill};

/// What happens to one delivery whose lease expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescuePlan {
    /// Pending again, due at once; `reason` (whose lease ended during which attempt) is
    /// kept as its last error.
    Requeue {
        next_attempt_at_us: i64,
        reason: String,
    },
    /// Its attempts are used up: it dies with `error` (whose lease ended) as its last
    /// error, and `kill` says whether its timer fails.
    Kill { kill: KillPlan, error: String },
}

/// Why a lease ended without a report, as its delivery's last error says it.
pub fn lease_expired_reason(d: &Delivery) -> String {
    format!(
        "lease of {} expired during attempt {}",
        d.lease_owner.as_deref().unwrap_or("?"),
        d.attempt
    )
}

/// Plans the rescue of `d`, in flight with an expired lease, at `now_us`. `timer_status`
/// reads its timer's status (`None` when the timer cannot be read) and is called only
/// when the delivery dies. A timer whose status forbids failing is left as it is: the
/// delivery still dies, so that it cannot hold up the rescue of the others.
pub fn plan_rescue<E: From<ForbiddenTransition>>(
    d: &Delivery,
    now_us: i64,
    timer_status: impl FnOnce() -> Result<Option<TimerStatus>, E>,
) -> Result<RescuePlan, E> {
    let reason = lease_expired_reason(d);
    if d.attempt >= d.max_attempts {
        let dies = DeathReason::RetriesExhausted;
        let kill = plan_kill(d, timer_status()?, dies).unwrap_or(KillPlan {
            reason: dies,
            fail_timer: false,
        });
        return Ok(RescuePlan::Kill {
            kill,
            error: reason,
        });
    }
    d.status.check_transition(d.id, DeliveryStatus::Pending)?;
    Ok(RescuePlan::Requeue {
        next_attempt_at_us: now_us,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{T0, in_flight};

    fn rescue(
        d: &Delivery,
        timer_status: Option<TimerStatus>,
    ) -> Result<RescuePlan, ForbiddenTransition> {
        plan_rescue(d, T0, || Ok(timer_status))
    }

    #[test]
    fn an_expired_lease_with_attempts_left_runs_again_at_once() {
        for (attempt, max) in [(1, 3), (2, 3), (1, 100)] {
            let d = in_flight(attempt, max);
            let plan = plan_rescue(&d, T0, || -> Result<_, ForbiddenTransition> {
                panic!("a requeue needs no timer")
            });
            assert_eq!(
                plan,
                Ok(RescuePlan::Requeue {
                    next_attempt_at_us: T0,
                    reason: format!("lease of exec-1 expired during attempt {attempt}"),
                }),
                "attempt {attempt} of {max}"
            );
        }
    }

    #[test]
    fn an_expired_lease_on_the_last_attempt_kills_the_delivery() {
        use TimerStatus::*;
        // (attempt, max attempts, timer status, fails the timer)
        let table = [
            (3, 3, Some(Fired), true),
            (4, 3, Some(Fired), true),
            (3, 3, Some(Failed), false),
            // The timer cannot be read, or forbids failing: it is left; the delivery dies.
            (3, 3, None, false),
            (3, 3, Some(Settled), false),
            (3, 3, Some(Cancelled), false),
        ];
        for (attempt, max, timer, fail_timer) in table {
            let d = in_flight(attempt, max);
            assert_eq!(
                rescue(&d, timer),
                Ok(RescuePlan::Kill {
                    kill: KillPlan {
                        reason: DeathReason::RetriesExhausted,
                        fail_timer
                    },
                    error: format!("lease of exec-1 expired during attempt {attempt}"),
                }),
                "attempt {attempt} of {max}, timer {timer:?}"
            );
        }
    }

    #[test]
    fn a_lease_without_an_owner_is_named_as_unknown() {
        let d = Delivery {
            lease_owner: None,
            ..in_flight(1, 3)
        };
        assert_eq!(
            lease_expired_reason(&d),
            "lease of ? expired during attempt 1"
        );
    }

    #[test]
    fn a_rescue_the_state_machine_forbids_is_refused() {
        let d = Delivery {
            status: DeliveryStatus::Succeeded,
            ..in_flight(1, 3)
        };
        let e = rescue(&d, Some(TimerStatus::Fired)).unwrap_err();
        assert_eq!((e.kind, e.from, e.to), ("delivery", "succeeded", "pending"));
    }
}
