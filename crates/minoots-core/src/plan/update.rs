//! What changing a scheduled timer does (`PATCH /timers/{id}`, fire now): only a
//! `scheduled` timer changes, only at the version the client read (when it gave one); the
//! fields given replace the stored ones, the version goes up by one and a `timer.updated`
//! event names what changed. The change was validated before (`request::TimerPatch`);
//! this decides whether it applies to the timer as stored now.

use crate::event::NewEvent;
use crate::model::{Timer, TimerStatus};
use crate::records::TimerChange;

/// Why a change does not apply; nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateRefusal {
    /// The timer already fired or was cancelled.
    NotScheduled { status: TimerStatus },
    /// The timer changed since the client read it.
    VersionMismatch { expected: i64, current: i64 },
}

/// The timer after the change, and the event to append with it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatePlan {
    pub timer: Timer,
    pub event: NewEvent,
}

/// Plans `change` to `current`, the timer as stored (read under the write's lock).
pub fn plan_update(current: &Timer, change: &TimerChange) -> Result<UpdatePlan, UpdateRefusal> {
    if current.status != TimerStatus::Scheduled {
        return Err(UpdateRefusal::NotScheduled {
            status: current.status,
        });
    }
    if let Some(expected) = change.expected_version
        && expected != current.version
    {
        return Err(UpdateRefusal::VersionMismatch {
            expected,
            current: current.version,
        });
    }
    let mut timer = current.clone();
    let mut changed = Vec::new();
    if let Some((fire_at_us, duration_ms)) = change.fire_at {
        timer.fire_at_us = fire_at_us;
        timer.duration_ms = duration_ms;
        changed.push("fireAt");
    }
    if let Some(bundle) = &change.action_bundle {
        timer.action_bundle = bundle.clone();
        changed.push("actionBundle");
    }
    if let Some(labels) = &change.labels {
        timer.labels = labels.clone();
        changed.push("labels");
    }
    if let Some(metadata) = &change.metadata {
        timer.metadata = metadata.clone();
        changed.push("metadata");
    }
    timer.version = current.version + 1;
    let event = NewEvent::timer_updated(&timer, current.fire_at_us, &changed, change.cause);
    Ok(UpdatePlan { timer, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventType;
    use crate::fixtures::T0;

    fn scheduled() -> Timer {
        Timer {
            version: 3,
            ..crate::fixtures::scheduled(T0 + 60_000_000)
        }
    }

    #[test]
    fn only_a_scheduled_timer_at_the_expected_version_changes() {
        let at = |v: Option<i64>| TimerChange {
            expected_version: v,
            fire_at: Some((T0 + 1, None)),
            ..TimerChange::default()
        };
        // (status, expected version, verdict)
        let table = [
            (TimerStatus::Scheduled, Some(3), Ok(())),
            (TimerStatus::Scheduled, None, Ok(())),
            (
                TimerStatus::Scheduled,
                Some(2),
                Err(UpdateRefusal::VersionMismatch {
                    expected: 2,
                    current: 3,
                }),
            ),
            (
                TimerStatus::Fired,
                Some(3),
                Err(UpdateRefusal::NotScheduled {
                    status: TimerStatus::Fired,
                }),
            ),
            (
                TimerStatus::Cancelled,
                None,
                Err(UpdateRefusal::NotScheduled {
                    status: TimerStatus::Cancelled,
                }),
            ),
        ];
        for (status, expected, want) in table {
            let timer = Timer {
                status,
                ..scheduled()
            };
            let got = plan_update(&timer, &at(expected)).map(|_| ());
            assert_eq!(got, want, "{status} {expected:?}");
        }
    }

    #[test]
    fn the_fields_given_replace_the_stored_ones_and_the_event_names_them() {
        let before = scheduled();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("team".to_string(), "ops".to_string());
        let change = TimerChange {
            expected_version: Some(3),
            fire_at: Some((T0 + 5_000_000, None)),
            labels: Some(labels.clone()),
            ..TimerChange::default()
        };
        let plan = plan_update(&before, &change).unwrap();
        assert_eq!(plan.timer.fire_at_us, T0 + 5_000_000);
        assert_eq!(
            plan.timer.duration_ms, None,
            "a fireAt replaces the duration"
        );
        assert_eq!(plan.timer.labels, labels);
        assert_eq!(plan.timer.metadata, before.metadata);
        assert_eq!(plan.timer.version, 4);
        assert_eq!(
            plan.timer,
            Timer {
                fire_at_us: T0 + 5_000_000,
                duration_ms: None,
                labels,
                version: 4,
                ..before.clone()
            }
        );
        assert_eq!(plan.event.event_type, EventType::TimerUpdated);
        assert_eq!(
            plan.event.data["changed"],
            serde_json::json!(["fireAt", "labels"])
        );
        assert_eq!(plan.event.data["previousFireAt"], "2026-11-27T10:01:00Z");

        let now = plan_update(&before, &TimerChange::fire_now(T0)).unwrap();
        assert_eq!(now.timer.fire_at_us, T0);
        assert_eq!(now.event.data["cause"], "fireNow");
        assert_eq!(now.event.data["version"], 4);
    }
}
