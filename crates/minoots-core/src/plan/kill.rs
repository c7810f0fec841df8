//! What a delivery's death does: it dies, and its timer fails unless it failed already.

use crate::model::{DeathReason, Delivery, DeliveryStatus, ForbiddenTransition, TimerStatus};

/// A delivery about to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillPlan {
    pub reason: DeathReason,
    /// The timer becomes `failed` (with `timer.failed`). False when it failed already
    /// (an earlier action died) or could not be read: the delivery dies all the same.
    pub fail_timer: bool,
}

/// Plans the death of `d` for `reason`; `timer_status` is its timer's status, `None` when
/// the timer cannot be read. Refused when the delivery may not die or its timer may not
/// fail (a settled or cancelled timer, for instance).
pub fn plan_kill(
    d: &Delivery,
    timer_status: Option<TimerStatus>,
    reason: DeathReason,
) -> Result<KillPlan, ForbiddenTransition> {
    d.status.check_transition(d.id, DeliveryStatus::Dead)?;
    let fail_timer = match timer_status {
        Some(TimerStatus::Failed) | None => false,
        Some(status) => {
            status.check_transition(d.timer_id, TimerStatus::Failed)?;
            true
        }
    };
    Ok(KillPlan { reason, fail_timer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::in_flight;

    #[test]
    fn a_death_fails_the_timer_once() {
        use DeathReason::*;
        use TimerStatus::*;
        // (timer status, reason, fails the timer)
        let table = [
            (Some(Fired), PermanentFailure, true),
            (Some(Fired), RetriesExhausted, true),
            (Some(Failed), RetriesExhausted, false),
            (None, PermanentFailure, false),
        ];
        let d = in_flight(2, 3);
        for (timer, reason, fail_timer) in table {
            assert_eq!(
                plan_kill(&d, timer, reason),
                Ok(KillPlan { reason, fail_timer }),
                "timer {timer:?}"
            );
        }
    }

    #[test]
    fn a_death_the_state_machines_forbid_is_refused() {
        let d = in_flight(1, 3);
        for timer in [
            TimerStatus::Settled,
            TimerStatus::Cancelled,
            TimerStatus::Scheduled,
        ] {
            let e = plan_kill(&d, Some(timer), DeathReason::PermanentFailure).unwrap_err();
            assert_eq!((e.kind, e.to), ("timer", "failed"), "{timer}");
        }
        let succeeded = Delivery {
            status: DeliveryStatus::Succeeded,
            ..in_flight(1, 3)
        };
        let e = plan_kill(
            &succeeded,
            Some(TimerStatus::Fired),
            DeathReason::PermanentFailure,
        )
        .unwrap_err();
        assert_eq!((e.kind, e.from, e.to), ("delivery", "succeeded", "dead"));
    }
}
