//! Schedules over gRPC: the conversions between the core's schedule records and the
//! `minoots.timer.v1` messages. A request travels as the JSON the REST API takes, so the
//! kernel validates it exactly as in process; a record travels field by field.

use minoots_core::schedule::{
    Progress, RunStatus, Schedule, ScheduleRequest, ScheduleRun, ScheduleStatus,
};
use minoots_core::{ScheduleId, TimerId};

use super::pb;
use crate::api::{ScheduleChange, ScheduleChanged, ScheduleQuotas};
use crate::error::{KernelError, KernelResult};

fn malformed(what: impl std::fmt::Display) -> KernelError {
    KernelError::Internal(format!("malformed schedule from the kernel: {what}"))
}

/// A schedule id from the wire; `field` names it in the refusal.
pub fn schedule_id_of(text: &str, field: &str) -> KernelResult<ScheduleId> {
    text.parse().map(ScheduleId).map_err(|_| {
        KernelError::Invalid(minoots_core::ValidationErrors::single(
            field,
            "is not a schedule id (a UUID like 0193a5c0-…)",
        ))
    })
}

pub fn schedule_pb(s: &Schedule) -> pb::Schedule {
    pb::Schedule {
        id: s.id.to_string(),
        tenant_id: s.tenant_id.clone(),
        request_json: serde_json::to_string(&s.request).unwrap_or_default(),
        status: s.progress.status.as_str().to_string(),
        created_at_us: s.created_at_us,
        updated_at_us: s.updated_at_us,
        version: s.version,
        cursor_us: s.progress.cursor_us,
        runs_fired: s.progress.runs_fired,
        active_timer: s.active_timer.map(|t| t.to_string()),
        buffered: s.progress.buffered.clone(),
        wake_at_us: s.wake_at_us,
    }
}

pub fn schedule_of(s: pb::Schedule) -> KernelResult<Schedule> {
    let request: ScheduleRequest = serde_json::from_str(&s.request_json).map_err(malformed)?;
    let status = ScheduleStatus::parse(&s.status).ok_or_else(|| malformed(&s.status))?;
    let active_timer = match s.active_timer {
        Some(t) => Some(TimerId(t.parse().map_err(malformed)?)),
        None => None,
    };
    Ok(Schedule {
        id: ScheduleId(s.id.parse().map_err(malformed)?),
        tenant_id: s.tenant_id,
        request,
        created_at_us: s.created_at_us,
        updated_at_us: s.updated_at_us,
        version: s.version,
        progress: Progress {
            status,
            cursor_us: s.cursor_us,
            runs_fired: s.runs_fired,
            run_active: active_timer.is_some(),
            buffered: s.buffered,
        },
        active_timer,
        wake_at_us: s.wake_at_us,
    })
}

pub fn run_pb(r: &ScheduleRun) -> pb::ScheduleRun {
    pb::ScheduleRun {
        scheduled_at_us: r.scheduled_at_us,
        status: r.status.as_str().to_string(),
        reason: r.status.reason().map(|x| x.as_str().to_string()),
        timer_id: r.timer_id.map(|t| t.to_string()),
        fire_at_us: r.fire_at_us,
        recorded_at_us: r.recorded_at_us,
        fired_at_us: r.fired_at_us,
    }
}

pub fn run_of(schedule_id: ScheduleId, r: pb::ScheduleRun) -> KernelResult<ScheduleRun> {
    Ok(ScheduleRun {
        schedule_id,
        scheduled_at_us: r.scheduled_at_us,
        status: RunStatus::parse(&r.status, r.reason.as_deref())
            .ok_or_else(|| malformed(&r.status))?,
        timer_id: match r.timer_id {
            Some(t) => Some(TimerId(t.parse().map_err(malformed)?)),
            None => None,
        },
        fire_at_us: r.fire_at_us,
        fired_at_us: r.fired_at_us,
        recorded_at_us: r.recorded_at_us,
    })
}

/// A schedule change on the wire; the patch of an update travels as JSON.
pub fn change_pb(
    tenant_id: &str,
    id: ScheduleId,
    change: &ScheduleChange,
    quotas: ScheduleQuotas,
) -> pb::ChangeScheduleRequest {
    let (catch_up, version, patch_json) = match change {
        ScheduleChange::Resume { catch_up } => (*catch_up, 0, String::new()),
        ScheduleChange::Update { version, patch } => (
            false,
            *version,
            serde_json::to_string(patch).unwrap_or_default(),
        ),
        _ => (false, 0, String::new()),
    };
    pb::ChangeScheduleRequest {
        tenant_id: tenant_id.to_string(),
        id: id.to_string(),
        kind: change.kind().to_string(),
        catch_up,
        version,
        patch_json,
        max_schedules: quotas.max_schedules,
        min_interval_ms: quotas.min_interval_ms,
    }
}

/// The change a request asks for, with the quotas it names; a request the client could
/// not have sent (an unknown kind, a patch that is not a JSON object) is `Invalid`.
pub fn change_of(r: &pb::ChangeScheduleRequest) -> KernelResult<(ScheduleChange, ScheduleQuotas)> {
    let change = match r.kind.as_str() {
        "pause" => ScheduleChange::Pause,
        "resume" => ScheduleChange::Resume {
            catch_up: r.catch_up,
        },
        "trigger" => ScheduleChange::Trigger,
        "delete" => ScheduleChange::Delete,
        "update" => match serde_json::from_str::<serde_json::Value>(&r.patch_json) {
            Ok(serde_json::Value::Object(patch)) => ScheduleChange::Update {
                version: r.version,
                patch,
            },
            _ => {
                return Err(KernelError::invalid(
                    "patchJson",
                    "must be one JSON object of the fields to change",
                ));
            }
        },
        other => {
            return Err(KernelError::invalid(
                "kind",
                format!("{other:?} is not one of pause, resume, update, trigger, delete"),
            ));
        }
    };
    Ok((
        change,
        ScheduleQuotas {
            max_schedules: r.max_schedules,
            min_interval_ms: r.min_interval_ms,
        },
    ))
}

pub fn changed_pb(c: &ScheduleChanged) -> pb::ChangeScheduleResponse {
    pb::ChangeScheduleResponse {
        schedule: Some(schedule_pb(&c.schedule)),
        timer: c.timer.as_ref().map(super::convert::timer_pb),
    }
}

pub fn changed_of(c: pb::ChangeScheduleResponse) -> KernelResult<ScheduleChanged> {
    Ok(ScheduleChanged {
        schedule: schedule_of(c.schedule.ok_or_else(|| malformed("no schedule"))?)?,
        timer: c.timer.map(super::convert::timer_of).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use minoots_core::schedule::SkipReason;

    #[test]
    fn schedules_and_runs_survive_the_wire() {
        let request = ScheduleRequest::from_json(
            br#"{"cron": "0 30 2 * * *", "timezone": "America/New_York", "overlap": "bufferAll"}"#,
        )
        .unwrap();
        let spec = request.validate("acme", 1_795_773_600_000_000, 0).unwrap();
        let mut s = Schedule::new(
            ScheduleId::new_v7(),
            "acme",
            &request,
            &spec,
            1_795_773_600_000_000,
        );
        s.active_timer = Some(TimerId::new_v7());
        s.progress.run_active = true;
        s.progress.buffered = vec![1, 2];
        s.progress.runs_fired = 3;
        assert_eq!(schedule_of(schedule_pb(&s)).unwrap(), s);
        for status in [
            RunStatus::Fired,
            RunStatus::Buffered,
            RunStatus::Skipped(SkipReason::CatchupExpired),
        ] {
            let r = ScheduleRun {
                schedule_id: s.id,
                scheduled_at_us: 5,
                status,
                timer_id: (status == RunStatus::Fired).then(TimerId::new_v7),
                fire_at_us: Some(6),
                fired_at_us: (status == RunStatus::Fired).then_some(8),
                recorded_at_us: 7,
            };
            assert_eq!(run_of(s.id, run_pb(&r)).unwrap(), r);
        }
    }

    #[test]
    fn changes_survive_the_wire() {
        let id = ScheduleId::new_v7();
        let quotas = ScheduleQuotas {
            max_schedules: Some(5),
            min_interval_ms: 60_000,
        };
        let patch = serde_json::json!({"cron": "0 0 9 * * MON-FRI", "labels": {"a": null}});
        for change in [
            ScheduleChange::Pause,
            ScheduleChange::Resume { catch_up: true },
            ScheduleChange::Update {
                version: 4,
                patch: patch.as_object().unwrap().clone(),
            },
            ScheduleChange::Trigger,
            ScheduleChange::Delete,
        ] {
            let (back, q) = change_of(&change_pb("acme", id, &change, quotas)).unwrap();
            assert_eq!((back, q), (change, quotas));
        }
        let mut bad = change_pb("acme", id, &ScheduleChange::Pause, quotas);
        bad.kind = "explode".into();
        assert!(change_of(&bad).unwrap_err().to_string().contains("kind"));
    }
}
