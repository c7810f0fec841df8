//! Timers, deliveries and attempts, and the state machines that govern them.
//!
//! ```text
//! timer:    scheduled ──fire──▶ fired ──all actions succeeded──▶ settled
//!               │                 └──────one action dead───────▶ failed
//!               └──cancel──▶ cancelled          (no actions: scheduled ──▶ settled)
//! delivery: pending ──claim──▶ in_flight ──success──▶ succeeded
//!               ▲                  │ └──permanent failure / retries exhausted──▶ dead
//!               └─retry / lease expired─┘
//! ```
//! Every change of status in the stores goes through [`TimerStatus::can_transition_to`] or
//! [`DeliveryStatus::can_transition_to`]; a forbidden change is a bug, not a user error.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::ActionBundle;
use crate::timefmt::format_us;

/// A timer's id: a UUID v7, so ids sort roughly by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimerId(pub Uuid);

/// A schedule's id: a UUID v7, like a timer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScheduleId(pub Uuid);

/// A delivery's id: stable across retries and redeliveries, so receivers deduplicate on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub Uuid);

macro_rules! uuid_id {
    ($t:ident) => {
        impl $t {
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                Uuid::from_slice(b).ok().map(Self)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
        impl FromStr for $t {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}
uuid_id!(TimerId);
uuid_id!(DeliveryId);
uuid_id!(ScheduleId);

/// Where a timer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerStatus {
    Scheduled,
    Fired,
    Settled,
    Failed,
    Cancelled,
}

impl TimerStatus {
    pub const ALL: [TimerStatus; 5] = [
        TimerStatus::Scheduled,
        TimerStatus::Fired,
        TimerStatus::Settled,
        TimerStatus::Failed,
        TimerStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimerStatus::Scheduled => "scheduled",
            TimerStatus::Fired => "fired",
            TimerStatus::Settled => "settled",
            TimerStatus::Failed => "failed",
            TimerStatus::Cancelled => "cancelled",
        }
    }

    /// The allowed status changes. `Scheduled → Settled` is a timer without actions;
    /// `Failed → Fired` is a redrive of its dead deliveries.
    pub fn can_transition_to(self, next: TimerStatus) -> bool {
        use TimerStatus::*;
        matches!(
            (self, next),
            (Scheduled, Fired)
                | (Scheduled, Settled)
                | (Scheduled, Cancelled)
                | (Fired, Settled)
                | (Fired, Failed)
                | (Failed, Fired)
        )
    }

    /// Settled, failed and cancelled timers change no more by themselves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TimerStatus::Settled | TimerStatus::Failed | TimerStatus::Cancelled
        )
    }
}

impl fmt::Display for TimerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TimerStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimerStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("\"{s}\" is not a timer status; use scheduled, fired, settled, failed or cancelled")
            })
    }
}

/// A status change the state machines forbid, found before anything was written. It is a
/// bug or corrupt data, never a user error: stores surface it instead of writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated: {kind} {id} cannot go from {from} to {to}")]
pub struct ForbiddenTransition {
    /// `"timer"` or `"delivery"`.
    pub kind: &'static str,
    pub id: String,
    pub from: &'static str,
    pub to: &'static str,
}

impl ForbiddenTransition {
    fn check(
        allowed: bool,
        kind: &'static str,
        id: impl fmt::Display,
        from: &'static str,
        to: &'static str,
    ) -> Result<(), ForbiddenTransition> {
        if allowed {
            return Ok(());
        }
        Err(ForbiddenTransition {
            kind,
            id: id.to_string(),
            from,
            to,
        })
    }
}

impl TimerStatus {
    /// `Ok` when timer `id` may go from `self` to `next`; the one check every store runs
    /// before it writes a timer's new status.
    pub fn check_transition(
        self,
        id: TimerId,
        next: TimerStatus,
    ) -> Result<(), ForbiddenTransition> {
        let allowed = self.can_transition_to(next);
        ForbiddenTransition::check(allowed, "timer", id, self.as_str(), next.as_str())
    }
}

/// Where one action's delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    InFlight,
    Succeeded,
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::InFlight,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::InFlight => "in_flight",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// `InFlight → Pending` is a retry or an expired lease; `InFlight → Dead` a permanent
    /// failure or exhausted retries; `Dead → Pending` a redrive.
    pub fn can_transition_to(self, next: DeliveryStatus) -> bool {
        use DeliveryStatus::*;
        matches!(
            (self, next),
            (Pending, InFlight)
                | (InFlight, Succeeded)
                | (InFlight, Pending)
                | (InFlight, Dead)
                | (Dead, Pending)
        )
    }
}

impl DeliveryStatus {
    /// `Ok` when delivery `id` may go from `self` to `next`; the one check every store runs
    /// before it writes a delivery's new status.
    pub fn check_transition(
        self,
        id: DeliveryId,
        next: DeliveryStatus,
    ) -> Result<(), ForbiddenTransition> {
        let allowed = self.can_transition_to(next);
        ForbiddenTransition::check(allowed, "delivery", id, self.as_str(), next.as_str())
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a delivery status"))
    }
}

/// A durable timer. Times are microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct Timer {
    pub id: TimerId,
    pub tenant_id: String,
    pub name: String,
    pub requested_by: Option<String>,
    pub status: TimerStatus,
    pub created_at_us: i64,
    pub fire_at_us: i64,
    /// The duration the client asked for, when it gave one instead of `fireAt`.
    pub duration_ms: Option<i64>,
    pub fired_at_us: Option<i64>,
    pub settled_at_us: Option<i64>,
    pub cancelled_at_us: Option<i64>,
    pub cancel_reason: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub labels: BTreeMap<String, String>,
    pub action_bundle: ActionBundle,
    pub idempotency_key: Option<String>,
    /// Incremented on every change; clients may use it for optimistic concurrency.
    pub version: i64,
    /// The schedule and slot this timer is a run of, when a schedule created it.
    pub schedule: Option<ScheduleLink>,
    /// The W3C `traceparent` of the create (canonical version-00 form, see
    /// [`crate::traceparent`]): the parent of the spans of its fire and attempts, and of the
    /// `traceparent` its webhooks carry. Not shown in the REST representation.
    pub traceparent: Option<String>,
}

/// Which slot of which schedule a timer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleLink {
    pub id: ScheduleId,
    /// The slot's nominal instant (before jitter).
    pub scheduled_at_us: i64,
}

impl Timer {
    /// How late the timer fired, in microseconds (fired − due), once it has fired.
    pub fn fired_late_us(&self) -> Option<i64> {
        self.fired_at_us.map(|f| f - self.fire_at_us)
    }

    /// The REST representation (camelCase, RFC 3339 times), as in the API contract.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id.to_string(),
            "tenantId": self.tenant_id,
            "name": self.name,
            "requestedBy": self.requested_by,
            "status": self.status.as_str(),
            "createdAt": format_us(self.created_at_us),
            "fireAt": format_us(self.fire_at_us),
            "durationMs": self.duration_ms,
            "firedAt": self.fired_at_us.map(format_us),
            "firedLateMs": self.fired_late_us().map(|us| us as f64 / 1000.0),
            "settledAt": self.settled_at_us.map(format_us),
            "cancelledAt": self.cancelled_at_us.map(format_us),
            "cancelReason": self.cancel_reason,
            "metadata": self.metadata,
            "labels": self.labels,
            "actionBundle": self.action_bundle,
            "version": self.version,
        });
        if let (Some(link), Some(o)) = (&self.schedule, v.as_object_mut()) {
            o.insert("scheduleId".into(), link.id.to_string().into());
            o.insert("scheduledAt".into(), format_us(link.scheduled_at_us).into());
        }
        v
    }

    /// Appends [`Timer::to_json`] encoded as JSON to `out`, byte for byte what
    /// `serde_json::to_vec(&timer.to_json())` gives (keys in sorted order), without building
    /// the intermediate value: webhooks carry it in every attempt's body, and the value
    /// tree cost more than the rest of the encoding.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        fn key(out: &mut Vec<u8>, first: bool, k: &str) {
            if !first {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
        }
        fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
            // Writing into a Vec fails only when the value cannot be encoded, which the
            // types here rule out; `to_json` would have produced null in that case too.
            if serde_json::to_writer(&mut *out, v).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        let time = |us: Option<i64>| us.map(format_us);
        out.push(b'{');
        key(out, true, "actionBundle");
        // Through a value so that the bundle's keys are sorted as well.
        match serde_json::to_value(&self.action_bundle) {
            Ok(v) => put(out, &v),
            Err(_) => out.extend_from_slice(b"null"),
        }
        key(out, false, "cancelReason");
        put(out, &self.cancel_reason);
        key(out, false, "cancelledAt");
        put(out, &time(self.cancelled_at_us));
        key(out, false, "createdAt");
        put(out, &format_us(self.created_at_us));
        key(out, false, "durationMs");
        put(out, &self.duration_ms);
        key(out, false, "fireAt");
        put(out, &format_us(self.fire_at_us));
        key(out, false, "firedAt");
        put(out, &time(self.fired_at_us));
        key(out, false, "firedLateMs");
        put(
            out,
            &self
                .fired_late_us()
                .map(|us| serde_json::Value::from(us as f64 / 1000.0)),
        );
        key(out, false, "id");
        put(out, &self.id);
        key(out, false, "labels");
        put(out, &self.labels);
        key(out, false, "metadata");
        put(out, &self.metadata);
        key(out, false, "name");
        put(out, &self.name);
        key(out, false, "requestedBy");
        put(out, &self.requested_by);
        if let Some(link) = &self.schedule {
            key(out, false, "scheduleId");
            put(out, &link.id);
            key(out, false, "scheduledAt");
            put(out, &format_us(link.scheduled_at_us));
        }
        key(out, false, "settledAt");
        put(out, &time(self.settled_at_us));
        key(out, false, "status");
        put(out, self.status.as_str());
        key(out, false, "tenantId");
        put(out, &self.tenant_id);
        key(out, false, "version");
        put(out, &self.version);
        out.push(b'}');
    }
}

/// One action's delivery for one firing of a timer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub timer_id: TimerId,
    pub tenant_id: String,
    /// Which firing of the timer (0 for one-shot timers).
    pub occurrence: i64,
    pub action_index: u32,
    pub status: DeliveryStatus,
    /// Attempts started so far (a claim increments it).
    pub attempt: u32,
    pub max_attempts: u32,
    pub next_attempt_at_us: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at_us: Option<i64>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub last_error: Option<String>,
}

impl Delivery {
    /// Whether `owner` holds this delivery's lease for `attempt`: only then may it report
    /// or hand back that attempt. Anything else is a stale lease (it expired and was
    /// claimed again, or belongs to another executor) and is refused as fenced.
    pub fn is_leased_to(&self, owner: &str, attempt: u32) -> bool {
        self.status == DeliveryStatus::InFlight
            && self.lease_owner.as_deref() == Some(owner)
            && self.attempt == attempt
    }
}

/// Why a delivery died; the `reason` of its `delivery.dead` event and of its timer's
/// `timer.failed` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// The action failed in a way retrying cannot fix.
    PermanentFailure,
    /// Every attempt of its budget was used.
    RetriesExhausted,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::PermanentFailure => "permanent failure",
            DeathReason::RetriesExhausted => "retries exhausted",
        }
    }
}

impl fmt::Display for DeathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt ended, as reported by the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The action succeeded (2xx, exit 0, file written).
    Succeeded,
    /// It failed in a way that may pass later (5xx, 429, timeout, connection error).
    Retryable,
    /// It failed for good (4xx other than 429, 410, command not allowed).
    Permanent,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Retryable => "retryable",
            AttemptOutcome::Permanent => "permanent",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "succeeded" => Ok(Self::Succeeded),
            "retryable" => Ok(Self::Retryable),
            "permanent" => Ok(Self::Permanent),
            _ => Err(format!("\"{s}\" is not an attempt outcome")),
        }
    }
}

/// One recorded execution of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub delivery_id: DeliveryId,
    pub attempt: u32,
    pub lease_owner: String,
    pub started_at_us: i64,
    pub duration_us: i64,
    pub outcome: AttemptOutcome,
    pub http_status: Option<u16>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// First 4 KiB of the response or output.
    pub response_excerpt: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timer_transition_is_either_allowed_or_forbidden_as_designed() {
        use TimerStatus::*;
        let allowed = [
            (Scheduled, Fired),
            (Scheduled, Settled),
            (Scheduled, Cancelled),
            (Fired, Settled),
            (Fired, Failed),
            (Failed, Fired),
        ];
        for from in TimerStatus::ALL {
            for to in TimerStatus::ALL {
                let want = allowed.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), want, "{from} -> {to}");
            }
        }
        // Nothing leaves settled or cancelled.
        for to in TimerStatus::ALL {
            assert!(!Settled.can_transition_to(to));
            assert!(!Cancelled.can_transition_to(to));
        }
    }

    #[test]
    fn every_delivery_transition_is_either_allowed_or_forbidden_as_designed() {
        use DeliveryStatus::*;
        let allowed = [
            (Pending, InFlight),
            (InFlight, Succeeded),
            (InFlight, Pending),
            (InFlight, Dead),
            (Dead, Pending),
        ];
        for from in DeliveryStatus::ALL {
            for to in DeliveryStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn a_forbidden_transition_names_the_object_and_both_statuses() {
        let (t, d) = (TimerId::new_v7(), DeliveryId::new_v7());
        assert_eq!(
            TimerStatus::Fired.check_transition(t, TimerStatus::Settled),
            Ok(())
        );
        assert_eq!(
            DeliveryStatus::InFlight.check_transition(d, DeliveryStatus::Dead),
            Ok(())
        );
        let refused = [
            (
                TimerStatus::Settled.check_transition(t, TimerStatus::Failed),
                format!("invariant violated: timer {t} cannot go from settled to failed"),
            ),
            (
                DeliveryStatus::Succeeded.check_transition(d, DeliveryStatus::Pending),
                format!("invariant violated: delivery {d} cannot go from succeeded to pending"),
            ),
        ];
        for (result, want) in refused {
            assert_eq!(result.unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn only_the_lease_owner_of_the_current_attempt_holds_the_lease() {
        let d = crate::fixtures::in_flight(2, 3);
        assert!(d.is_leased_to("exec-1", 2));
        assert!(!d.is_leased_to("exec-2", 2), "another owner");
        assert!(!d.is_leased_to("exec-1", 1), "an earlier attempt");
        let pending = Delivery {
            status: DeliveryStatus::Pending,
            ..d
        };
        assert!(!pending.is_leased_to("exec-1", 2), "not in flight");
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in TimerStatus::ALL {
            assert_eq!(s.as_str().parse::<TimerStatus>().unwrap(), s);
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>().unwrap(), s);
        }
        assert!(
            "done"
                .parse::<TimerStatus>()
                .unwrap_err()
                .contains("scheduled")
        );
    }

    #[test]
    fn the_direct_encoding_is_the_value_encoding() {
        let bundle: ActionBundle = serde_json::from_str(
            r#"{"actions": [{"type": "webhook", "url": "https://example.com/h?a=\"b\"",
                             "method": "PUT", "headers": {"x-b": "2", "x-a": "1"},
                             "body": {"z": 1, "a": [true, null, 2.5]}, "timeoutMs": 900},
                            {"type": "file", "path": "out/ü.json"}],
                "retryPolicy": {"maxAttempts": 3, "multiplier": 1.5}}"#,
        )
        .unwrap();
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "zeta".into(),
            serde_json::json!({"n": -1, "s": "line\nbreak"}),
        );
        metadata.insert("alpha".into(), serde_json::json!(1e21));
        let full = Timer {
            id: TimerId::new_v7(),
            tenant_id: "acme".into(),
            name: "quote \" and \\ and \u{1}".into(),
            requested_by: Some("ops".into()),
            status: TimerStatus::Fired,
            created_at_us: 1_700_000_000_123_456,
            fire_at_us: 1_700_000_010_000_000,
            duration_ms: Some(10_000),
            fired_at_us: Some(1_700_000_010_000_321),
            settled_at_us: None,
            cancelled_at_us: Some(1_700_000_020_000_000),
            cancel_reason: Some("why".into()),
            metadata,
            labels: [("team".to_string(), "x".to_string())].into(),
            action_bundle: bundle,
            idempotency_key: Some("k".into()),
            version: 7,
            schedule: Some(ScheduleLink {
                id: ScheduleId::new_v7(),
                scheduled_at_us: 1_700_000_009_000_000,
            }),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let bare = Timer {
            schedule: None,
            requested_by: None,
            status: TimerStatus::Scheduled,
            duration_ms: None,
            fired_at_us: None,
            cancelled_at_us: None,
            cancel_reason: None,
            metadata: serde_json::Map::new(),
            labels: BTreeMap::new(),
            action_bundle: ActionBundle::default(),
            ..full.clone()
        };
        let json = full.to_json();
        assert_eq!(json["scheduledAt"], "2023-11-14T22:13:29Z");
        assert_eq!(json["scheduleId"], full.schedule.unwrap().id.to_string());
        assert!(bare.to_json().get("scheduleId").is_none());
        assert!(json.get("traceparent").is_none(), "kept, never shown");
        for t in [full, bare] {
            let mut direct = Vec::new();
            t.write_json(&mut direct);
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                serde_json::to_string(&t.to_json()).unwrap()
            );
        }
    }
}
