//! Whether a claimed delivery can be handed to an executor, or must be set aside.

use std::fmt;

use crate::action::Action;
use crate::model::{Delivery, Timer, TimerId};

/// Why a delivery is set aside as dead without an attempt: nothing could execute it, and
/// left pending it would be claimed again and again ahead of the deliveries behind it.
/// Its text is kept as the delivery's last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quarantine {
    /// The stored delivery cannot be decoded; the text says why.
    Unreadable(String),
    /// Its timer is missing or cannot be decoded.
    TimerMissing { timer_id: TimerId },
    /// Its timer has fewer actions than its action index says.
    NoSuchAction {
        timer_id: TimerId,
        action_index: u32,
    },
}

impl fmt::Display for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quarantine::Unreadable(why) => write!(f, "unreadable delivery: {why}"),
            Quarantine::TimerMissing { timer_id } => {
                write!(f, "timer {timer_id} is missing or unreadable")
            }
            Quarantine::NoSuchAction {
                timer_id,
                action_index,
            } => write!(f, "timer {timer_id} has no action {action_index}"),
        }
    }
}

/// The timer and action a claimed delivery `d` executes, given its `timer` (`None` when
/// the timer is missing or unreadable), or why the delivery must be set aside.
pub fn plan_handout(d: &Delivery, timer: Option<Timer>) -> Result<(Timer, Action), Quarantine> {
    let timer = timer.ok_or(Quarantine::TimerMissing {
        timer_id: d.timer_id,
    })?;
    let action = timer
        .action_bundle
        .actions
        .get(d.action_index as usize)
        .cloned()
        .ok_or(Quarantine::NoSuchAction {
            timer_id: d.timer_id,
            action_index: d.action_index,
        })?;
    Ok((timer, action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{T0, in_flight};
    use crate::{TimerRequest, TimerStatus};

    fn timer_with_one_action() -> Timer {
        let request = TimerRequest::from_json(
            br#"{"name": "t", "duration": "1h",
                 "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/a"}]}}"#,
        )
        .unwrap();
        let mut t = request
            .validate("acme", T0)
            .unwrap()
            .into_timer(TimerId::new_v7(), T0);
        t.status = TimerStatus::Fired;
        t
    }

    #[test]
    fn a_delivery_gets_its_action_or_is_set_aside_with_the_reason() {
        let timer = timer_with_one_action();
        let first = Delivery {
            timer_id: timer.id,
            ..in_flight(1, 3)
        };
        assert_eq!(
            plan_handout(&first, Some(timer.clone())),
            Ok((timer.clone(), timer.action_bundle.actions[0].clone()))
        );
        let second = Delivery {
            action_index: 1,
            ..first.clone()
        };
        let why = plan_handout(&second, Some(timer.clone())).unwrap_err();
        assert_eq!(
            why.to_string(),
            format!("timer {} has no action 1", timer.id)
        );
        let why = plan_handout(&first, None).unwrap_err();
        assert_eq!(
            why.to_string(),
            format!("timer {} is missing or unreadable", timer.id)
        );
        assert_eq!(
            Quarantine::Unreadable("bad id length".into()).to_string(),
            "unreadable delivery: bad id length"
        );
    }
}
