//! Conversions between the domain model and the protobuf messages, both directions.
//! Decoding client input never panics: anything malformed becomes a validation error
//! naming the field.

use std::collections::BTreeMap;

use minoots_core::records::{
    ApiKey, AttemptReport, DeliveryWithAttempts, DueTimer, EventQuery, LeasedDelivery,
    ReportOutcome, Tenant, TimerQuery,
};
use minoots_core::timefmt::format_us;
use minoots_core::traceparent::TraceParent;
use minoots_core::{
    Action, ActionBundle, AttemptOutcome, AttemptRecord, CommandAction, Delivery, DeliveryId,
    DeliveryStatus, DurationInput, Event, EventType, FileAction, FileMode, RetryPolicy, ScheduleId,
    ScheduleLink, Timer, TimerId, TimerRequest, TimerStatus, ValidationErrors, WebhookAction,
};
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};

use super::pb;
use crate::api::TenantQuotas;
use crate::error::{KernelError, KernelResult};

// ---- time ---------------------------------------------------------------------------

pub fn ts(us: i64) -> Timestamp {
    Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

pub fn ts_opt(us: Option<i64>) -> Option<Timestamp> {
    us.map(ts)
}

pub fn us_of(t: &Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos) / 1_000)
}

pub fn us_opt(t: &Option<Timestamp>) -> Option<i64> {
    t.as_ref().map(us_of)
}

// ---- JSON <-> protobuf Struct --------------------------------------------------------

pub fn to_value(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(m) => Kind::StructValue(to_struct(m)),
    };
    Value { kind: Some(kind) }
}

pub fn to_struct(m: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
    }
}

pub fn from_value(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            // Whole numbers come back as integers, so 42 stays 42 and not 42.0.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(from_value).collect())
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(from_struct(s)),
    }
}

pub fn from_struct(s: &Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), from_value(v)))
        .collect()
}

// ---- enums --------------------------------------------------------------------------

pub fn timer_status_pb(s: TimerStatus) -> pb::TimerStatus {
    match s {
        TimerStatus::Scheduled => pb::TimerStatus::Scheduled,
        TimerStatus::Fired => pb::TimerStatus::Fired,
        TimerStatus::Settled => pb::TimerStatus::Settled,
        TimerStatus::Failed => pb::TimerStatus::Failed,
        TimerStatus::Cancelled => pb::TimerStatus::Cancelled,
    }
}

pub fn timer_status_of(v: i32, field: &str) -> KernelResult<Option<TimerStatus>> {
    Ok(match pb::TimerStatus::try_from(v) {
        Ok(pb::TimerStatus::Unspecified) => None,
        Ok(pb::TimerStatus::Scheduled) => Some(TimerStatus::Scheduled),
        Ok(pb::TimerStatus::Fired) => Some(TimerStatus::Fired),
        Ok(pb::TimerStatus::Settled) => Some(TimerStatus::Settled),
        Ok(pb::TimerStatus::Failed) => Some(TimerStatus::Failed),
        Ok(pb::TimerStatus::Cancelled) => Some(TimerStatus::Cancelled),
        Err(_) => {
            return Err(KernelError::invalid(
                field,
                format!("{v} is not a timer status"),
            ));
        }
    })
}

fn required_timer_status(v: i32, field: &str) -> KernelResult<TimerStatus> {
    timer_status_of(v, field)?
        .ok_or_else(|| KernelError::Internal(format!("{field} missing in response")))
}

pub fn delivery_status_pb(s: DeliveryStatus) -> pb::DeliveryStatus {
    match s {
        DeliveryStatus::Pending => pb::DeliveryStatus::Pending,
        DeliveryStatus::InFlight => pb::DeliveryStatus::InFlight,
        DeliveryStatus::Succeeded => pb::DeliveryStatus::Succeeded,
        DeliveryStatus::Dead => pb::DeliveryStatus::Dead,
    }
}

pub fn delivery_status_of(v: i32) -> KernelResult<DeliveryStatus> {
    match pb::DeliveryStatus::try_from(v) {
        Ok(pb::DeliveryStatus::Pending) => Ok(DeliveryStatus::Pending),
        Ok(pb::DeliveryStatus::InFlight) => Ok(DeliveryStatus::InFlight),
        Ok(pb::DeliveryStatus::Succeeded) => Ok(DeliveryStatus::Succeeded),
        Ok(pb::DeliveryStatus::Dead) => Ok(DeliveryStatus::Dead),
        _ => Err(KernelError::Internal(format!(
            "{v} is not a delivery status"
        ))),
    }
}

pub fn outcome_pb(o: AttemptOutcome) -> pb::AttemptOutcome {
    match o {
        AttemptOutcome::Succeeded => pb::AttemptOutcome::Succeeded,
        AttemptOutcome::Retryable => pb::AttemptOutcome::Retryable,
        AttemptOutcome::Permanent => pb::AttemptOutcome::Permanent,
    }
}

pub fn outcome_of(v: i32, field: &str) -> KernelResult<AttemptOutcome> {
    match pb::AttemptOutcome::try_from(v) {
        Ok(pb::AttemptOutcome::Succeeded) => Ok(AttemptOutcome::Succeeded),
        Ok(pb::AttemptOutcome::Retryable) => Ok(AttemptOutcome::Retryable),
        Ok(pb::AttemptOutcome::Permanent) => Ok(AttemptOutcome::Permanent),
        _ => Err(KernelError::invalid(
            field,
            "must be SUCCEEDED, RETRYABLE or PERMANENT",
        )),
    }
}

// ---- ids ----------------------------------------------------------------------------

pub fn timer_id_of(s: &str, field: &str) -> KernelResult<TimerId> {
    s.parse()
        .map_err(|_| KernelError::invalid(field, format!("\"{s}\" is not a timer id (a UUID)")))
}

pub fn delivery_id_of(s: &str, field: &str) -> KernelResult<DeliveryId> {
    s.parse()
        .map_err(|_| KernelError::invalid(field, format!("\"{s}\" is not a delivery id (a UUID)")))
}

// ---- actions ------------------------------------------------------------------------

pub fn action_pb(a: &Action) -> pb::Action {
    let kind = match a {
        Action::Webhook(w) => pb::action::Kind::Webhook(pb::WebhookAction {
            url: w.url.clone(),
            method: w.method.clone(),
            headers: w.headers.clone().into_iter().collect(),
            body: w.body.as_ref().map(to_value),
            timeout_ms: w.timeout_ms,
        }),
        Action::Command(c) => pb::action::Kind::Command(pb::CommandAction {
            command: c.command.clone(),
            args: c.args.clone(),
            env: c.env.clone().into_iter().collect(),
            timeout_ms: c.timeout_ms,
        }),
        Action::File(f) => pb::action::Kind::File(pb::FileAction {
            path: f.path.clone(),
            mode: match f.mode {
                FileMode::Append => pb::FileMode::Append as i32,
                FileMode::Overwrite => pb::FileMode::Overwrite as i32,
            },
            content: f.content.as_ref().map(to_value),
        }),
    };
    pb::Action { kind: Some(kind) }
}

pub fn action_of(a: &pb::Action, field: &str, errors: &mut ValidationErrors) -> Option<Action> {
    match &a.kind {
        None => {
            errors.push(field, "must set one of webhook, command or file");
            None
        }
        Some(pb::action::Kind::Webhook(w)) => Some(Action::Webhook(WebhookAction {
            url: w.url.clone(),
            method: w.method.clone(),
            headers: w.headers.clone().into_iter().collect(),
            body: w.body.as_ref().map(from_value),
            timeout_ms: w.timeout_ms,
        })),
        Some(pb::action::Kind::Command(c)) => Some(Action::Command(CommandAction {
            command: c.command.clone(),
            args: c.args.clone(),
            env: c.env.clone().into_iter().collect(),
            timeout_ms: c.timeout_ms,
        })),
        Some(pb::action::Kind::File(f)) => {
            let mode = match pb::FileMode::try_from(f.mode) {
                Ok(pb::FileMode::Unspecified) | Ok(pb::FileMode::Append) => FileMode::Append,
                Ok(pb::FileMode::Overwrite) => FileMode::Overwrite,
                Err(_) => {
                    errors.push(format!("{field}.mode"), "must be APPEND or OVERWRITE");
                    FileMode::Append
                }
            };
            Some(Action::File(FileAction {
                path: f.path.clone(),
                mode,
                content: f.content.as_ref().map(from_value),
            }))
        }
    }
}

pub fn bundle_pb(b: &ActionBundle) -> pb::ActionBundle {
    pb::ActionBundle {
        actions: b.actions.iter().map(action_pb).collect(),
        retry_policy: b.retry_policy.as_ref().map(|r| pb::RetryPolicy {
            max_attempts: r.max_attempts,
            initial_backoff_ms: r.initial_backoff_ms,
            max_backoff_ms: r.max_backoff_ms,
            multiplier: r.multiplier,
        }),
    }
}

pub fn bundle_of(b: &pb::ActionBundle, errors: &mut ValidationErrors) -> ActionBundle {
    ActionBundle {
        actions: b
            .actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| action_of(a, &format!("actionBundle.actions[{i}]"), errors))
            .collect(),
        retry_policy: b.retry_policy.as_ref().map(|r| RetryPolicy {
            max_attempts: r.max_attempts,
            initial_backoff_ms: r.initial_backoff_ms,
            max_backoff_ms: r.max_backoff_ms,
            multiplier: r.multiplier,
        }),
    }
}

// ---- timers -------------------------------------------------------------------------

pub fn timer_pb(t: &Timer) -> pb::Timer {
    pb::Timer {
        id: t.id.to_string(),
        tenant_id: t.tenant_id.clone(),
        name: t.name.clone(),
        requested_by: t.requested_by.clone(),
        status: timer_status_pb(t.status) as i32,
        created_at: Some(ts(t.created_at_us)),
        fire_at: Some(ts(t.fire_at_us)),
        duration_ms: t.duration_ms,
        fired_at: ts_opt(t.fired_at_us),
        fired_late_us: t.fired_late_us(),
        settled_at: ts_opt(t.settled_at_us),
        cancelled_at: ts_opt(t.cancelled_at_us),
        cancel_reason: t.cancel_reason.clone(),
        metadata: Some(to_struct(&t.metadata)),
        labels: t.labels.clone().into_iter().collect(),
        action_bundle: Some(bundle_pb(&t.action_bundle)),
        idempotency_key: t.idempotency_key.clone(),
        version: t.version,
        schedule_id: t.schedule.map(|l| l.id.to_string()),
        scheduled_at: t.schedule.map(|l| ts(l.scheduled_at_us)),
        traceparent: t.traceparent.clone(),
    }
}

pub fn timer_of(t: pb::Timer) -> KernelResult<Timer> {
    let mut errors = ValidationErrors::new();
    let action_bundle = t
        .action_bundle
        .as_ref()
        .map(|b| bundle_of(b, &mut errors))
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(KernelError::Internal(format!(
            "malformed timer from the kernel: {errors}"
        )));
    }
    Ok(Timer {
        id: timer_id_of(&t.id, "id")?,
        tenant_id: t.tenant_id,
        name: t.name,
        requested_by: t.requested_by,
        status: required_timer_status(t.status, "status")?,
        created_at_us: us_opt(&t.created_at).unwrap_or_default(),
        fire_at_us: us_opt(&t.fire_at).unwrap_or_default(),
        duration_ms: t.duration_ms,
        fired_at_us: us_opt(&t.fired_at),
        settled_at_us: us_opt(&t.settled_at),
        cancelled_at_us: us_opt(&t.cancelled_at),
        cancel_reason: t.cancel_reason,
        metadata: t.metadata.as_ref().map(from_struct).unwrap_or_default(),
        labels: t.labels.into_iter().collect::<BTreeMap<_, _>>(),
        action_bundle,
        idempotency_key: t.idempotency_key,
        version: t.version,
        schedule: match (t.schedule_id, us_opt(&t.scheduled_at)) {
            (Some(id), Some(scheduled_at_us)) => Some(ScheduleLink {
                id: id.parse().map(ScheduleId).map_err(|_| {
                    KernelError::Internal(format!("malformed schedule id {id:?} from the kernel"))
                })?,
                scheduled_at_us,
            }),
            _ => None,
        },
        traceparent: t.traceparent.as_deref().and_then(TraceParent::normalize),
    })
}

/// A client's schedule request as the kernel's input, checked field by field by
/// [`TimerRequest::validate`] afterwards (the one place that decides validity).
pub fn schedule_request_of(
    r: pb::ScheduleTimerRequest,
) -> KernelResult<(String, TimerRequest, TenantQuotas)> {
    use pb::schedule_timer_request::When;
    let mut errors = ValidationErrors::new();
    let (duration, fire_at) = match r.when {
        None => (None, None),
        Some(When::Duration(d)) => (Some(DurationInput::Text(d)), None),
        Some(When::DurationMs(ms)) => (Some(DurationInput::Millis(ms)), None),
        Some(When::FireAt(t)) => (None, Some(format_us(us_of(&t)))),
        Some(When::FireAtText(s)) => (None, Some(s)),
    };
    let action_bundle = r.action_bundle.as_ref().map(|b| bundle_of(b, &mut errors));
    errors.into_result()?;
    let quotas = TenantQuotas {
        max_per_day: r.max_timers_per_day,
        max_pending: r.max_pending_timers,
    };
    Ok((
        r.tenant_id.clone(),
        TimerRequest {
            tenant_id: Some(r.tenant_id),
            requested_by: r.requested_by,
            name: r.name,
            duration,
            fire_at,
            metadata: r
                .metadata
                .as_ref()
                .map(|m| serde_json::Value::Object(from_struct(m))),
            labels: (!r.labels.is_empty()).then(|| r.labels.into_iter().collect()),
            action_bundle,
            idempotency_key: r.idempotency_key,
            traceparent: r.traceparent,
        },
        quotas,
    ))
}

pub fn schedule_request_pb(
    tenant_id: &str,
    r: TimerRequest,
    quotas: TenantQuotas,
) -> pb::ScheduleTimerRequest {
    use pb::schedule_timer_request::When;
    let when = match (r.duration, r.fire_at) {
        (Some(DurationInput::Millis(ms)), _) => Some(When::DurationMs(ms)),
        (Some(DurationInput::Text(t)), _) => Some(When::Duration(t)),
        (None, Some(text)) => Some(When::FireAtText(text)),
        (None, None) => None,
    };
    pb::ScheduleTimerRequest {
        tenant_id: tenant_id.to_string(),
        name: r.name,
        requested_by: r.requested_by,
        when,
        metadata: match r.metadata {
            Some(serde_json::Value::Object(m)) => Some(to_struct(&m)),
            _ => None,
        },
        labels: r.labels.unwrap_or_default().into_iter().collect(),
        action_bundle: r.action_bundle.as_ref().map(bundle_pb),
        idempotency_key: r.idempotency_key,
        max_timers_per_day: quotas.max_per_day,
        max_pending_timers: quotas.max_pending,
        traceparent: r.traceparent,
    }
}

pub fn list_request_of(r: pb::ListTimersRequest) -> KernelResult<TimerQuery> {
    let status = timer_status_of(r.status, "status")?;
    let label = if r.label.is_empty() {
        None
    } else {
        let (k, v) = r
            .label
            .split_once(':')
            .ok_or_else(|| KernelError::invalid("label", "must be key:value, like team:ops"))?;
        Some((k.to_string(), v.to_string()))
    };
    let after = if r.page_token.is_empty() {
        None
    } else {
        Some(DueTimer::decode_cursor(&r.page_token).ok_or_else(|| {
            KernelError::invalid(
                "pageToken",
                "is not a token from a previous page; start again without it",
            )
        })?)
    };
    let limit = if r.page_size == 0 {
        minoots_core::limits::DEFAULT_PAGE_SIZE
    } else {
        r.page_size as usize
    };
    Ok(TimerQuery {
        tenant_id: r.tenant_id,
        status,
        label,
        name_prefix: (!r.name_prefix.is_empty()).then_some(r.name_prefix),
        fire_from_us: r.fire_from_us,
        fire_before_us: r.fire_before_us,
        limit,
        after,
    })
}

pub fn list_request_pb(q: &TimerQuery) -> pb::ListTimersRequest {
    pb::ListTimersRequest {
        tenant_id: q.tenant_id.clone(),
        status: q
            .status
            .map_or(pb::TimerStatus::Unspecified, timer_status_pb) as i32,
        label: q
            .label
            .as_ref()
            .map(|(k, v)| format!("{k}:{v}"))
            .unwrap_or_default(),
        page_size: q.limit.min(u32::MAX as usize) as u32,
        page_token: q.after.map(|a| a.encode_cursor()).unwrap_or_default(),
        name_prefix: q.name_prefix.clone().unwrap_or_default(),
        fire_from_us: q.fire_from_us,
        fire_before_us: q.fire_before_us,
    }
}

// ---- deliveries ---------------------------------------------------------------------

pub fn delivery_pb(d: &Delivery, attempts: &[AttemptRecord]) -> pb::Delivery {
    pb::Delivery {
        id: d.id.to_string(),
        timer_id: d.timer_id.to_string(),
        tenant_id: d.tenant_id.clone(),
        occurrence: d.occurrence,
        action_index: d.action_index,
        status: delivery_status_pb(d.status) as i32,
        attempt: d.attempt,
        max_attempts: d.max_attempts,
        next_attempt_at: Some(ts(d.next_attempt_at_us)),
        lease_owner: d.lease_owner.clone(),
        lease_expires_at: ts_opt(d.lease_expires_at_us),
        created_at: Some(ts(d.created_at_us)),
        updated_at: Some(ts(d.updated_at_us)),
        last_error: d.last_error.clone(),
        attempts: attempts
            .iter()
            .map(|a| pb::Attempt {
                attempt: a.attempt,
                lease_owner: a.lease_owner.clone(),
                started_at: Some(ts(a.started_at_us)),
                duration_us: a.duration_us,
                outcome: outcome_pb(a.outcome) as i32,
                http_status: a.http_status.map(u32::from),
                exit_code: a.exit_code,
                error: a.error.clone(),
                response_excerpt: a.response_excerpt.clone(),
            })
            .collect(),
    }
}

pub fn delivery_of(d: pb::Delivery) -> KernelResult<DeliveryWithAttempts> {
    let id = delivery_id_of(&d.id, "id")?;
    let attempts = d
        .attempts
        .iter()
        .map(|a| {
            Ok(AttemptRecord {
                delivery_id: id,
                attempt: a.attempt,
                lease_owner: a.lease_owner.clone(),
                started_at_us: us_opt(&a.started_at).unwrap_or_default(),
                duration_us: a.duration_us,
                outcome: outcome_of(a.outcome, "outcome")?,
                http_status: a.http_status.and_then(|s| u16::try_from(s).ok()),
                exit_code: a.exit_code,
                error: a.error.clone(),
                response_excerpt: a.response_excerpt.clone(),
            })
        })
        .collect::<KernelResult<Vec<_>>>()?;
    Ok(DeliveryWithAttempts {
        delivery: Delivery {
            id,
            timer_id: timer_id_of(&d.timer_id, "timerId")?,
            tenant_id: d.tenant_id,
            occurrence: d.occurrence,
            action_index: d.action_index,
            status: delivery_status_of(d.status)?,
            attempt: d.attempt,
            max_attempts: d.max_attempts,
            next_attempt_at_us: us_opt(&d.next_attempt_at).unwrap_or_default(),
            lease_owner: d.lease_owner,
            lease_expires_at_us: us_opt(&d.lease_expires_at),
            created_at_us: us_opt(&d.created_at).unwrap_or_default(),
            updated_at_us: us_opt(&d.updated_at).unwrap_or_default(),
            last_error: d.last_error,
        },
        attempts,
    })
}

pub fn leased_pb(l: &LeasedDelivery) -> pb::LeasedDelivery {
    pb::LeasedDelivery {
        delivery: Some(delivery_pb(&l.delivery, &[])),
        action: Some(action_pb(&l.action)),
        timer: Some(timer_pb(&l.timer)),
        secrets_version: l.secrets_version,
    }
}

pub fn leased_of(l: pb::LeasedDelivery) -> KernelResult<LeasedDelivery> {
    let missing = |what: &str| KernelError::Internal(format!("leased delivery without {what}"));
    let mut errors = ValidationErrors::new();
    let action = action_of(
        l.action.as_ref().ok_or_else(|| missing("action"))?,
        "action",
        &mut errors,
    )
    .ok_or_else(|| missing("action kind"))?;
    Ok(LeasedDelivery {
        delivery: delivery_of(l.delivery.ok_or_else(|| missing("delivery"))?)?.delivery,
        action,
        timer: timer_of(l.timer.ok_or_else(|| missing("timer"))?)?,
        secrets_version: l.secrets_version,
    })
}

pub fn report_of(r: pb::ReportAttemptRequest) -> KernelResult<AttemptReport> {
    Ok(AttemptReport {
        delivery_id: delivery_id_of(&r.delivery_id, "deliveryId")?,
        lease_owner: r.lease_owner,
        attempt: r.attempt,
        started_at_us: us_opt(&r.started_at).unwrap_or_default(),
        duration_us: r.duration_us,
        outcome: outcome_of(r.outcome, "outcome")?,
        retry_after_ms: r.retry_after_ms,
        http_status: match r.http_status {
            Some(s) => Some(
                u16::try_from(s)
                    .map_err(|_| KernelError::invalid("httpStatus", "must be below 65536"))?,
            ),
            None => None,
        },
        exit_code: r.exit_code,
        error: r.error,
        response_excerpt: r.response_excerpt,
    })
}

pub fn report_pb(r: &AttemptReport) -> pb::ReportAttemptRequest {
    pb::ReportAttemptRequest {
        delivery_id: r.delivery_id.to_string(),
        lease_owner: r.lease_owner.clone(),
        attempt: r.attempt,
        started_at: Some(ts(r.started_at_us)),
        duration_us: r.duration_us,
        outcome: outcome_pb(r.outcome) as i32,
        retry_after_ms: r.retry_after_ms,
        http_status: r.http_status.map(u32::from),
        exit_code: r.exit_code,
        error: r.error.clone(),
        response_excerpt: r.response_excerpt.clone(),
    }
}

pub fn report_outcome_pb(o: &ReportOutcome) -> pb::ReportAttemptResponse {
    pb::ReportAttemptResponse {
        delivery_status: delivery_status_pb(o.delivery_status) as i32,
        next_attempt_at: ts_opt(o.next_attempt_at_us),
        timer_status: timer_status_pb(o.timer_status) as i32,
    }
}

pub fn report_outcome_of(o: pb::ReportAttemptResponse) -> KernelResult<ReportOutcome> {
    Ok(ReportOutcome {
        delivery_status: delivery_status_of(o.delivery_status)?,
        next_attempt_at_us: us_opt(&o.next_attempt_at),
        timer_status: required_timer_status(o.timer_status, "timerStatus")?,
    })
}

// ---- events -------------------------------------------------------------------------

pub fn event_pb(e: &Event) -> pb::TimerEvent {
    pb::TimerEvent {
        seq: e.seq,
        r#type: e.event_type.as_str().to_string(),
        tenant_id: e.tenant_id.clone(),
        timer_id: e.timer_id.to_string(),
        delivery_id: e.delivery_id.map(|d| d.to_string()),
        occurred_at: Some(ts(e.occurred_at_us)),
        data: match &e.data {
            serde_json::Value::Object(m) => Some(to_struct(m)),
            _ => None,
        },
    }
}

pub fn event_of(e: pb::TimerEvent) -> KernelResult<Event> {
    Ok(Event {
        seq: e.seq,
        event_type: e
            .r#type
            .parse::<EventType>()
            .map_err(KernelError::Internal)?,
        tenant_id: e.tenant_id,
        timer_id: timer_id_of(&e.timer_id, "timerId")?,
        delivery_id: e
            .delivery_id
            .as_deref()
            .map(|d| delivery_id_of(d, "deliveryId"))
            .transpose()?,
        occurred_at_us: us_opt(&e.occurred_at).unwrap_or_default(),
        data: serde_json::Value::Object(e.data.as_ref().map(from_struct).unwrap_or_default()),
    })
}

pub fn event_query_of(r: pb::StreamTimerEventsRequest) -> KernelResult<EventQuery> {
    if r.after_seq < crate::api::EVENTS_FROM_NOW {
        return Err(KernelError::invalid(
            "afterSeq",
            "must be 0, a sequence number from an earlier event, or -1 for events from now on",
        ));
    }
    Ok(EventQuery {
        after_seq: r.after_seq,
        limit: 1_000,
        tenant_id: (!r.tenant_id.is_empty()).then_some(r.tenant_id),
        timer_id: if r.timer_id.is_empty() {
            None
        } else {
            Some(timer_id_of(&r.timer_id, "timerId")?)
        },
        types: r
            .types
            .iter()
            .map(|t| {
                t.parse::<EventType>()
                    .map_err(|e| KernelError::invalid("types", e))
            })
            .collect::<KernelResult<Vec<_>>>()?,
    })
}

pub fn event_query_pb(q: &EventQuery) -> pb::StreamTimerEventsRequest {
    pb::StreamTimerEventsRequest {
        tenant_id: q.tenant_id.clone().unwrap_or_default(),
        after_seq: q.after_seq,
        timer_id: q.timer_id.map(|t| t.to_string()).unwrap_or_default(),
        types: q.types.iter().map(|t| t.as_str().to_string()).collect(),
    }
}

pub fn tenant_pb(t: &Tenant) -> pb::Tenant {
    pb::Tenant {
        id: t.id.clone(),
        name: t.name.clone(),
        tier: t.tier.clone(),
        created_at: Some(ts(t.created_at_us)),
        updated_at: Some(ts(t.updated_at_us)),
    }
}

pub fn tenant_of(t: pb::Tenant) -> Tenant {
    Tenant {
        created_at_us: us_opt(&t.created_at).unwrap_or(0),
        updated_at_us: us_opt(&t.updated_at).unwrap_or(0),
        id: t.id,
        name: t.name,
        tier: t.tier,
    }
}

pub fn api_key_pb(k: &ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.clone(),
        tenant_id: k.tenant_id.clone(),
        name: k.name.clone(),
        key_hash: k.key_hash.to_vec(),
        prefix: k.prefix.clone(),
        roles: k.roles.clone(),
        created_at: Some(ts(k.created_at_us)),
        expires_at: ts_opt(k.expires_at_us),
        revoked_at: ts_opt(k.revoked_at_us),
        last_used_at: ts_opt(k.last_used_at_us),
    }
}

pub fn api_key_of(k: pb::ApiKey) -> KernelResult<ApiKey> {
    let key_hash: [u8; 32] =
        k.key_hash.as_slice().try_into().map_err(|_| {
            KernelError::invalid("keyHash", "must be the 32-byte SHA-256 of the key")
        })?;
    Ok(ApiKey {
        id: k.id,
        tenant_id: k.tenant_id,
        name: k.name,
        key_hash,
        prefix: k.prefix,
        roles: k.roles,
        created_at_us: us_opt(&k.created_at).unwrap_or(0),
        expires_at_us: us_opt(&k.expires_at),
        revoked_at_us: us_opt(&k.revoked_at),
        last_used_at_us: us_opt(&k.last_used_at),
    })
}

/// Empty text means "not given" in the admin paging requests.
pub fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_survives_the_struct_round_trip() {
        let v = serde_json::json!({"a": 1, "b": [true, null, "x", 2.5], "c": {"d": -7}});
        let back = serde_json::Value::Object(from_struct(&to_struct(v.as_object().unwrap())));
        assert_eq!(back, v);
    }

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for us in [0, 1, -1, 1_795_773_600_123_456, -1_500_000] {
            assert_eq!(us_of(&ts(us)), us);
        }
    }

    #[test]
    fn a_timer_keeps_its_schedule_and_slot_over_grpc() {
        let request: TimerRequest =
            serde_json::from_str(r#"{"duration": "1m", "name": "run"}"#).unwrap();
        let mut timer = request
            .validate("acme", 1_795_773_600_000_000)
            .unwrap()
            .into_timer(TimerId::new_v7(), 1_795_773_600_000_000);
        for schedule in [
            None,
            Some(ScheduleLink {
                id: ScheduleId::new_v7(),
                scheduled_at_us: 1_795_773_660_000_000,
            }),
        ] {
            timer.schedule = schedule;
            assert_eq!(timer_of(timer_pb(&timer)).unwrap(), timer);
        }
    }

    /// The create's trace parent crosses the planes: in the schedule request (the control
    /// plane's create span) and in the timer (the leased delivery's), dropped when invalid.
    #[test]
    fn the_traceparent_crosses_grpc_and_an_invalid_one_is_dropped() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let now = 1_795_773_600_000_000;
        for (sent, kept) in [
            (Some(TP), Some(TP)),
            (Some("00-nonsense"), None),
            (None, None),
        ] {
            let mut request: TimerRequest = serde_json::from_str(r#"{"duration": "1m"}"#).unwrap();
            request.traceparent = sent.map(String::from);
            let pb = schedule_request_pb("acme", request, TenantQuotas::default());
            assert_eq!(pb.traceparent.as_deref(), sent);
            let (_, back, _) = schedule_request_of(pb).unwrap();
            let timer = back
                .validate("acme", now)
                .unwrap()
                .into_timer(TimerId::new_v7(), now);
            assert_eq!(timer.traceparent.as_deref(), kept, "{sent:?}");
            assert_eq!(timer_of(timer_pb(&timer)).unwrap(), timer);
        }
    }

    #[test]
    fn an_action_without_a_kind_names_its_field() {
        let mut e = ValidationErrors::new();
        let b = pb::ActionBundle {
            actions: vec![pb::Action { kind: None }],
            retry_policy: None,
        };
        bundle_of(&b, &mut e);
        assert!(e.has_field("actionBundle.actions[0]"));
    }
}
