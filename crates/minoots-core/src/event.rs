//! The append-only event log's entries.
//!
//! Every state change of a timer or delivery appends one event in the same transaction as
//! the change. `seq` increases monotonically per store, so a reader that remembers the last
//! `seq` it saw can resume without missing or repeating anything.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{DeliveryId, TimerId};

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
    #[serde(rename = "delivery.attempted")]
    DeliveryAttempted,
    #[serde(rename = "delivery.retrying")]
    DeliveryRetrying,
    #[serde(rename = "delivery.dead")]
    DeliveryDead,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::TimerScheduled,
        EventType::TimerFired,
        EventType::TimerSettled,
        EventType::TimerFailed,
        EventType::TimerCancelled,
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
}
