//! The append-only event log's entries, and the one place their `data` is written.
//!
//! Every state change of a timer or delivery appends one event in the same transaction as
//! the change. `seq` increases monotonically per store, so a reader that remembers the last
//! `seq` it saw can resume without missing or repeating anything.
//!
//! The `data` of each event type is a public contract (SSE, gRPC, webhooks of the event
//! stream): stores never build it themselves, they append the [`NewEvent`] a constructor
//! here returns, and the tests below pin every payload field by field.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use serde_json::json;

use crate::model::{AttemptOutcome, DeathReason, Delivery, DeliveryId, Timer, TimerId};
use crate::records::ChangeCause;
use crate::timefmt::format_us;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "timer.scheduled")]
    TimerScheduled,
    #[serde(rename = "timer.fired")]
    TimerFired,
    #[serde(rename = "timer.settled")]
    TimerSettled,
    #[serde(rename = "timer.failed")]
    TimerFailed,
    #[serde(rename = "timer.cancelled")]
    TimerCancelled,
    #[serde(rename = "timer.updated")]
    TimerUpdated,
    #[serde(rename = "delivery.attempted")]
    DeliveryAttempted,
    #[serde(rename = "delivery.retrying")]
    DeliveryRetrying,
    #[serde(rename = "delivery.dead")]
    DeliveryDead,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::TimerScheduled,
        EventType::TimerFired,
        EventType::TimerSettled,
        EventType::TimerFailed,
        EventType::TimerCancelled,
        EventType::TimerUpdated,
        EventType::DeliveryAttempted,
        EventType::DeliveryRetrying,
        EventType::DeliveryDead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TimerScheduled => "timer.scheduled",
            EventType::TimerFired => "timer.fired",
            EventType::TimerSettled => "timer.settled",
            EventType::TimerFailed => "timer.failed",
            EventType::TimerCancelled => "timer.cancelled",
            EventType::TimerUpdated => "timer.updated",
            EventType::DeliveryAttempted => "delivery.attempted",
            EventType::DeliveryRetrying => "delivery.retrying",
            EventType::DeliveryDead => "delivery.dead",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "\"{s}\" is not an event type; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the log, strictly increasing in commit order.
    pub seq: i64,
    pub event_type: EventType,
    pub tenant_id: String,
    pub timer_id: TimerId,
    pub delivery_id: Option<DeliveryId>,
    pub occurred_at_us: i64,
    /// Small details of the change (attempt number, outcome, cancel reason, lateness).
    pub data: serde_json::Value,
}

/// An event about to be appended: all but its place in the log and its time, which the
/// store gives it in the transaction of the change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub tenant_id: String,
    pub timer_id: TimerId,
    pub delivery_id: Option<DeliveryId>,
    pub data: serde_json::Value,
}

/// Why a delivery is pending again; it decides what its `delivery.retrying` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause<'a> {
    /// The attempt failed and may pass later: due again after `delay_ms`.
    Backoff { delay_ms: u64 },
    /// Its lease ended before a report (the executor died or stalled); `reason` says whose.
    LeaseExpired { reason: &'a str },
    /// An operator redrove its dead timer.
    Redrive,
}

impl NewEvent {
    /// The event with its sequence number and time, as the log holds it.
    pub fn into_event(self, seq: i64, occurred_at_us: i64) -> Event {
        Event {
            seq,
            event_type: self.event_type,
            tenant_id: self.tenant_id,
            timer_id: self.timer_id,
            delivery_id: self.delivery_id,
            occurred_at_us,
            data: self.data,
        }
    }

    fn of_timer(
        event_type: EventType,
        tenant_id: &str,
        timer_id: TimerId,
        data: serde_json::Value,
    ) -> Self {
        Self {
            event_type,
            tenant_id: tenant_id.to_string(),
            timer_id,
            delivery_id: None,
            data,
        }
    }

    fn of_delivery(event_type: EventType, d: &Delivery, data: serde_json::Value) -> Self {
        Self {
            event_type,
            tenant_id: d.tenant_id.clone(),
            timer_id: d.timer_id,
            delivery_id: Some(d.id),
            data,
        }
    }

    /// `timer.scheduled`: `{"fireAt"}`.
    pub fn timer_scheduled(timer: &Timer) -> Self {
        Self::of_timer(
            EventType::TimerScheduled,
            &timer.tenant_id,
            timer.id,
            json!({"fireAt": format_us(timer.fire_at_us)}),
        )
    }

    /// `timer.cancelled`: `{"reason"}` (null when none was given).
    pub fn timer_cancelled(tenant_id: &str, timer_id: TimerId, reason: Option<&str>) -> Self {
        Self::of_timer(
            EventType::TimerCancelled,
            tenant_id,
            timer_id,
            json!({"reason": reason}),
        )
    }

    /// `timer.updated`, after a scheduled timer changed (now `timer`, due before at
    /// `previous_fire_at_us`): `{"version", "fireAt", "previousFireAt", "changed",
    /// "cause"}`, where `changed` names the fields given (`fireAt`, `actionBundle`,
    /// `labels`, `metadata`) and `cause` is `"update"` or `"fireNow"`.
    pub fn timer_updated(
        timer: &Timer,
        previous_fire_at_us: i64,
        changed: &[&str],
        cause: ChangeCause,
    ) -> Self {
        let cause = match cause {
            ChangeCause::Update => "update",
            ChangeCause::FireNow => "fireNow",
        };
        Self::of_timer(
            EventType::TimerUpdated,
            &timer.tenant_id,
            timer.id,
            json!({"version": timer.version, "fireAt": format_us(timer.fire_at_us),
                   "previousFireAt": format_us(previous_fire_at_us), "changed": changed,
                   "cause": cause}),
        )
    }

    /// `timer.fired`: `{"firedAt", "firedLateUs", "deliveries"}`, where the lateness is
    /// the firing time minus the due time and `deliveries` counts the deliveries made.
    pub fn timer_fired(
        tenant_id: &str,
        timer_id: TimerId,
        fire_at_us: i64,
        fired_at_us: i64,
        deliveries: usize,
    ) -> Self {
        Self::of_timer(
            EventType::TimerFired,
            tenant_id,
            timer_id,
            json!({"firedAt": format_us(fired_at_us), "firedLateUs": fired_at_us - fire_at_us,
                   "deliveries": deliveries}),
        )
    }

    /// `timer.settled`: `{}`.
    pub fn timer_settled(tenant_id: &str, timer_id: TimerId) -> Self {
        Self::of_timer(EventType::TimerSettled, tenant_id, timer_id, json!({}))
    }

    /// `timer.failed` because delivery `d` died: `{"deliveryId", "reason"}`. The event is
    /// the timer's, so it carries no delivery id of its own.
    pub fn timer_failed(d: &Delivery, reason: DeathReason) -> Self {
        Self::of_timer(
            EventType::TimerFailed,
            &d.tenant_id,
            d.timer_id,
            json!({"deliveryId": d.id.to_string(), "reason": reason.as_str()}),
        )
    }

    /// `delivery.attempted` for the current attempt of `d`:
    /// `{"attempt", "outcome", "httpStatus", "exitCode", "error", "durationUs"}`.
    pub fn delivery_attempted(
        d: &Delivery,
        outcome: AttemptOutcome,
        http_status: Option<u16>,
        exit_code: Option<i32>,
        error: Option<&str>,
        duration_us: i64,
    ) -> Self {
        Self::of_delivery(
            EventType::DeliveryAttempted,
            d,
            json!({"attempt": d.attempt, "outcome": outcome.as_str(), "httpStatus": http_status,
                   "exitCode": exit_code, "error": error, "durationUs": duration_us}),
        )
    }

    /// `delivery.retrying`: `{"attempt", "nextAttemptAt"}` with `"delayMs"` after a
    /// backoff, or `"reason"` after an expired lease (whose) or a redrive (`"redrive"`).
    /// `attempt` is the attempt that ended, not the next one.
    pub fn delivery_retrying(d: &Delivery, next_attempt_at_us: i64, cause: RetryCause<'_>) -> Self {
        let next = format_us(next_attempt_at_us);
        let data = match cause {
            RetryCause::Backoff { delay_ms } => {
                json!({"attempt": d.attempt, "nextAttemptAt": next, "delayMs": delay_ms})
            }
            RetryCause::LeaseExpired { reason } => {
                json!({"attempt": d.attempt, "nextAttemptAt": next, "reason": reason})
            }
            RetryCause::Redrive => {
                json!({"attempt": d.attempt, "nextAttemptAt": next, "reason": "redrive"})
            }
        };
        Self::of_delivery(EventType::DeliveryRetrying, d, data)
    }

    /// `delivery.dead`: `{"attempt", "reason", "error"}`, where `error` is what the last
    /// attempt reported (null when it reported nothing).
    pub fn delivery_dead(d: &Delivery, reason: DeathReason, error: Option<&str>) -> Self {
        Self::of_delivery(
            EventType::DeliveryDead,
            d,
            json!({"attempt": d.attempt, "reason": reason.as_str(), "error": error}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
        assert!("timer.exploded".parse::<EventType>().is_err());
    }

    use crate::fixtures::{T0, in_flight};

    /// A delivery in flight at its third attempt.
    fn delivery() -> Delivery {
        in_flight(3, 8)
    }

    /// The payload as JSON text, so each expectation reads like the wire format.
    fn data(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn every_timer_event_carries_its_documented_payload() {
        let timer = crate::fixtures::scheduled(T0 + 1_500_000);
        let id = timer.id;
        let cases: Vec<(NewEvent, EventType, &str)> = vec![
            (
                NewEvent::timer_scheduled(&timer),
                EventType::TimerScheduled,
                r#"{"fireAt": "2026-11-27T10:00:01.5Z"}"#,
            ),
            (
                NewEvent::timer_cancelled("acme", id, Some("no longer needed")),
                EventType::TimerCancelled,
                r#"{"reason": "no longer needed"}"#,
            ),
            (
                NewEvent::timer_cancelled("acme", id, None),
                EventType::TimerCancelled,
                r#"{"reason": null}"#,
            ),
            (
                NewEvent::timer_fired("acme", id, T0, T0 + 250, 2),
                EventType::TimerFired,
                r#"{"firedAt": "2026-11-27T10:00:00.00025Z", "firedLateUs": 250, "deliveries": 2}"#,
            ),
            (
                NewEvent::timer_fired("acme", id, T0, T0, 0),
                EventType::TimerFired,
                r#"{"firedAt": "2026-11-27T10:00:00Z", "firedLateUs": 0, "deliveries": 0}"#,
            ),
            (
                NewEvent::timer_settled("acme", id),
                EventType::TimerSettled,
                "{}",
            ),
            (
                NewEvent::timer_updated(
                    &crate::Timer {
                        version: 2,
                        ..timer.clone()
                    },
                    T0 + 60_000_000,
                    &["fireAt", "labels"],
                    ChangeCause::Update,
                ),
                EventType::TimerUpdated,
                r#"{"version": 2, "fireAt": "2026-11-27T10:00:01.5Z",
                    "previousFireAt": "2026-11-27T10:01:00Z", "changed": ["fireAt", "labels"],
                    "cause": "update"}"#,
            ),
            (
                NewEvent::timer_updated(&timer, T0 + 60_000_000, &["fireAt"], ChangeCause::FireNow),
                EventType::TimerUpdated,
                r#"{"version": 1, "fireAt": "2026-11-27T10:00:01.5Z",
                    "previousFireAt": "2026-11-27T10:01:00Z", "changed": ["fireAt"],
                    "cause": "fireNow"}"#,
            ),
        ];
        for (event, event_type, want) in cases {
            assert_eq!(event.event_type, event_type);
            assert_eq!(event.tenant_id, "acme");
            assert_eq!(event.timer_id, id);
            assert_eq!(event.delivery_id, None, "{event_type} is a timer's event");
            assert_eq!(event.data, data(want), "{event_type}");
        }
    }

    #[test]
    fn every_delivery_event_carries_its_documented_payload() {
        let d = delivery();
        let did = d.id.to_string();
        let cases: Vec<(NewEvent, EventType, String)> = vec![
            (
                NewEvent::delivery_attempted(
                    &d,
                    AttemptOutcome::Retryable,
                    Some(503),
                    None,
                    Some("busy"),
                    1_200,
                ),
                EventType::DeliveryAttempted,
                r#"{"attempt": 3, "outcome": "retryable", "httpStatus": 503, "exitCode": null,
                    "error": "busy", "durationUs": 1200}"#
                    .into(),
            ),
            (
                NewEvent::delivery_attempted(&d, AttemptOutcome::Succeeded, None, Some(0), None, 7),
                EventType::DeliveryAttempted,
                r#"{"attempt": 3, "outcome": "succeeded", "httpStatus": null, "exitCode": 0,
                    "error": null, "durationUs": 7}"#
                    .into(),
            ),
            (
                NewEvent::delivery_retrying(
                    &d,
                    T0 + 4_000_000,
                    RetryCause::Backoff { delay_ms: 4_000 },
                ),
                EventType::DeliveryRetrying,
                r#"{"attempt": 3, "nextAttemptAt": "2026-11-27T10:00:04Z", "delayMs": 4000}"#
                    .into(),
            ),
            (
                NewEvent::delivery_retrying(
                    &d,
                    T0,
                    RetryCause::LeaseExpired {
                        reason: "lease of exec-1 expired during attempt 3",
                    },
                ),
                EventType::DeliveryRetrying,
                r#"{"attempt": 3, "nextAttemptAt": "2026-11-27T10:00:00Z",
                    "reason": "lease of exec-1 expired during attempt 3"}"#
                    .into(),
            ),
            (
                NewEvent::delivery_retrying(&d, T0, RetryCause::Redrive),
                EventType::DeliveryRetrying,
                r#"{"attempt": 3, "nextAttemptAt": "2026-11-27T10:00:00Z", "reason": "redrive"}"#
                    .into(),
            ),
            (
                NewEvent::delivery_dead(&d, DeathReason::PermanentFailure, Some("HTTP 404")),
                EventType::DeliveryDead,
                r#"{"attempt": 3, "reason": "permanent failure", "error": "HTTP 404"}"#.into(),
            ),
            (
                NewEvent::delivery_dead(&d, DeathReason::RetriesExhausted, None),
                EventType::DeliveryDead,
                r#"{"attempt": 3, "reason": "retries exhausted", "error": null}"#.into(),
            ),
        ];
        for (event, event_type, want) in cases {
            assert_eq!(event.event_type, event_type);
            assert_eq!(event.tenant_id, "acme");
            assert_eq!(event.timer_id, d.timer_id);
            assert_eq!(
                event.delivery_id,
                Some(d.id),
                "{event_type} is a delivery's event"
            );
            assert_eq!(event.data, data(&want), "{event_type}");
        }
        // The timer's failure names the delivery in its data, not as its own delivery id.
        let failed = NewEvent::timer_failed(&d, DeathReason::RetriesExhausted);
        assert_eq!(failed.event_type, EventType::TimerFailed);
        assert_eq!(failed.timer_id, d.timer_id);
        assert_eq!(failed.delivery_id, None);
        assert_eq!(
            failed.data,
            data(&format!(
                r#"{{"deliveryId": "{did}", "reason": "retries exhausted"}}"#
            ))
        );
    }

    #[test]
    fn a_new_event_keeps_everything_and_gets_its_place_and_time() {
        let d = delivery();
        let new = NewEvent::delivery_dead(&d, DeathReason::PermanentFailure, None);
        let event = new.clone().into_event(42, T0 + 9);
        assert_eq!(event.seq, 42);
        assert_eq!(event.occurred_at_us, T0 + 9);
        assert_eq!(
            (
                event.event_type,
                event.tenant_id,
                event.timer_id,
                event.delivery_id,
                event.data
            ),
            (
                new.event_type,
                new.tenant_id,
                new.timer_id,
                new.delivery_id,
                new.data
            )
        );
    }
}
