//! A stored schedule and its run records, as the store keeps them and the API shows them.

use serde_json::{Value, json};

use super::plan::{Progress, ScheduleStatus, SkipReason};
use super::spec::{ScheduleRequest, ScheduleSpec};
use crate::error::ValidationErrors;
use crate::model::{ScheduleId, TimerId};
use crate::timefmt::format_us;

/// A schedule: what the client asked (normalized), and how far it has got.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub tenant_id: String,
    /// The request as normalized at creation (or at the last change).
    pub request: ScheduleRequest,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    /// Incremented on every change made through the API (not by dispatches).
    pub version: i64,
    pub progress: Progress,
    /// The timer of the run that is active (created, not yet settled, failed or cancelled).
    pub active_timer: Option<TimerId>,
    /// When the schedule's next dispatch is due; `None` when there is nothing left to do.
    pub wake_at_us: Option<i64>,
}

impl Schedule {
    /// A new schedule for a request validated into `spec` at `now_us`: active, nothing
    /// recorded before its start, its first dispatch due at once (which works out when
    /// the first slot comes).
    pub fn new(
        id: ScheduleId,
        tenant_id: &str,
        request: &ScheduleRequest,
        spec: &ScheduleSpec,
        now_us: i64,
    ) -> Self {
        Schedule {
            id,
            tenant_id: tenant_id.to_string(),
            request: request.normalized(spec),
            created_at_us: now_us,
            updated_at_us: now_us,
            version: 1,
            progress: Progress::new(spec, now_us),
            active_timer: None,
            wake_at_us: Some(now_us),
        }
    }

    /// The validated spec (without the checks of creation time, which it passed).
    pub fn spec(&self) -> Result<ScheduleSpec, ValidationErrors> {
        self.request.stored_spec(&self.tenant_id)
    }

    /// The jitter key of this schedule's slots.
    pub fn key(&self) -> &[u8] {
        self.id.as_bytes()
    }

    /// The REST representation: the request's fields with `id`, `tenantId`, `status`,
    /// `createdAt`, `updatedAt`, `nextRunAt`, `runsFired` and `version`.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.request).unwrap_or_else(|_| json!({}));
        let next = match (self.progress.status, self.spec()) {
            (ScheduleStatus::Completed, _) | (_, Err(_)) => None,
            (_, Ok(spec)) => spec
                .recurrence
                .next_after(self.progress.cursor_us)
                .filter(|s| spec.end_at_us.is_none_or(|end| s.at_us <= end))
                .map(|s| format_us(s.at_us)),
        };
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, v| !v.is_null());
            o.insert("id".into(), self.id.to_string().into());
            o.insert("tenantId".into(), self.tenant_id.clone().into());
            o.insert("status".into(), self.progress.status.as_str().into());
            o.insert("createdAt".into(), format_us(self.created_at_us).into());
            o.insert("updatedAt".into(), format_us(self.updated_at_us).into());
            o.insert("nextRunAt".into(), next.into());
            o.insert("runsFired".into(), self.progress.runs_fired.into());
            o.insert("version".into(), self.version.into());
        }
        v
    }
}

/// Which schedules a list returns (besides its page): all when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleFilter {
    pub status: Option<ScheduleStatus>,
    /// A label the schedule carries, as (key, value).
    pub label: Option<(String, String)>,
}

/// What happened to one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Its timer was created.
    Fired,
    Skipped(SkipReason),
    /// Waiting for the active run to end (`bufferOne`, `bufferAll`).
    Buffered,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Fired => "fired",
            RunStatus::Skipped(_) => "skipped",
            RunStatus::Buffered => "buffered",
        }
    }

    pub fn reason(self) -> Option<SkipReason> {
        match self {
            RunStatus::Skipped(r) => Some(r),
            _ => None,
        }
    }

    /// From the stored status and reason.
    pub fn parse(status: &str, reason: Option<&str>) -> Option<Self> {
        match (status, reason) {
            ("fired", _) => Some(RunStatus::Fired),
            ("buffered", _) => Some(RunStatus::Buffered),
            ("skipped", Some(r)) => SkipReason::parse(r).map(RunStatus::Skipped),
            _ => None,
        }
    }
}

/// The record of one slot: exactly one per slot from the schedule's start to its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    pub schedule_id: ScheduleId,
    /// The slot (nominal instant).
    pub scheduled_at_us: i64,
    pub status: RunStatus,
    /// The run's timer, when it fired.
    pub timer_id: Option<TimerId>,
    /// When the run's timer was due (the slot plus jitter, or later when caught up).
    pub fire_at_us: Option<i64>,
    /// When the run's timer fired (read from the timer; `None` until then, and when the
    /// record is written).
    pub fired_at_us: Option<i64>,
    pub recorded_at_us: i64,
}

impl ScheduleRun {
    /// The REST representation.
    pub fn to_json(&self) -> Value {
        json!({
            "scheduledAt": format_us(self.scheduled_at_us),
            "status": self.status.as_str(),
            "reason": self.status.reason().map(SkipReason::as_str),
            "timerId": self.timer_id.map(|t| t.to_string()),
            "fireAt": self.fire_at_us.map(format_us),
            "firedAt": self.fired_at_us.map(format_us),
            "recordedAt": format_us(self.recorded_at_us),
        })
    }
}
