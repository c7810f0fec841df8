//! `/timers`: create (with idempotency, tier limits and quotas), list with filters and
//! opaque cursors, get, change (`PATCH`, with the version in the body or `If-Match`),
//! fire now, cancel, deliveries with their attempts, redrive, and the long-poll
//! `wait`. Handlers receive an authenticated [`Caller`] and act for its tenant only;
//! another tenant's timer is answered exactly like a missing one (404).

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minoots_core::limits::{
    DEFAULT_PAGE_SIZE, MAX_IDEMPOTENCY_KEY_BYTES, MAX_NAME_BYTES, MAX_PAGE_SIZE,
};
use minoots_core::records::{DeliveryWithAttempts, DueTimer, EventQuery, TimerQuery};
use minoots_core::timefmt::{format_us, parse_rfc3339_us};
use minoots_core::traceparent::TraceParent;
use minoots_core::{
    AttemptRecord, Delivery, EventType, Timer, TimerId, TimerPatch, TimerRequest, TimerStatus,
};
use minoots_kernel_api::TenantQuotas;
use minoots_kernel_api::api::EVENTS_FROM_NOW;
use minoots_kernel_api::trace::{self, KeyValue};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tracing::Instrument;

use crate::AppState;
use crate::auth::{Caller, rate_headers, rate_limited};
use crate::body::{Json, RawJson, require_body};
use crate::config::{DEFAULT_WAIT, MAX_WAIT};
use crate::problem::{ApiError, ApiResult};

/// JSON with the right content type and status.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// A request's query parameters, checked against the names an endpoint takes.
#[derive(Debug)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value given for `name`, unless it is empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// A `label=key:value` filter (absent or empty: none).
pub fn label_param(text: Option<&str>) -> ApiResult<Option<(String, String)>> {
    match text {
        None | Some("") => Ok(None),
        Some(l) => match l.split_once(':') {
            Some((k, v)) if !k.is_empty() => Ok(Some((k.to_string(), v.to_string()))),
            _ => Err(ApiError::field("label", "must be key:value, like team:ops")),
        },
    }
}

/// Query parameters; a name outside `allowed` is refused so a typo (`?stauts=`) is not
/// silently ignored.
pub fn query_params(raw: Option<&str>, allowed: &[&str]) -> ApiResult<Query> {
    let mut out = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::field(
                &k,
                format!(
                    "is not a query parameter of this endpoint; use {}",
                    allowed.join(", ")
                ),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(Query(out))
}

/// A UUID in its hyphenated form only (`crate::openapi::TIMER_ID_PATTERN`); the other
/// spellings a UUID parser reads (braces, `urn:uuid:`, no hyphens) are refused. Timer and
/// schedule ids both go through here.
pub fn hyphenated_uuid(text: &str) -> Option<uuid::Uuid> {
    let hyphenated = text.len() == 36 && text.bytes().filter(|b| *b == b'-').count() == 4;
    hyphenated
        .then(|| text.parse::<uuid::Uuid>().ok())
        .flatten()
}

/// A timer id in its hyphenated form ([`hyphenated_uuid`]).
pub fn timer_id(text: &str) -> ApiResult<TimerId> {
    hyphenated_uuid(text).map(TimerId).ok_or_else(|| {
        ApiError::field(
            "id",
            format!("\"{text}\" is not a timer id; ids are UUIDs like 0193a0c4-8f1e-7cc3-9d0e-3f1b2a4c5d6e"),
        )
    })
}

/// A list cursor exactly as [`DueTimer::encode_cursor`] writes it
/// (`crate::openapi::CURSOR_PATTERN`): hex of `v1.`, 1 to 18 digits, `.`, 32 lowercase hex
/// digits. Anything else is refused before it is decoded.
pub fn cursor(text: &str) -> Option<DueTimer> {
    let b = text.as_bytes();
    let digits = b.len().checked_sub(6 + 2 + 64)? / 2;
    let pairs_are = |from: usize, n: usize, ok: &dyn Fn(&[u8]) -> bool| {
        b.get(from..from + 2 * n)
            .is_some_and(|s| s.chunks(2).all(ok))
    };
    let well_formed = b.len().is_multiple_of(2)
        && (1..=18).contains(&digits)
        && b.starts_with(b"76312e")
        && pairs_are(6, digits, &|p| p[0] == b'3' && p[1].is_ascii_digit())
        && b.get(6 + 2 * digits..8 + 2 * digits) == Some(b"2e".as_slice())
        && pairs_are(8 + 2 * digits, 32, &|p| {
            (p[0] == b'3' && p[1].is_ascii_digit())
                || (p[0] == b'6' && (b'1'..=b'6').contains(&p[1]))
        });
    well_formed.then(|| DueTimer::decode_cursor(text)).flatten()
}

/// `limit` of a list: 1 to `max`, `default` when absent.
pub fn page_limit(v: Option<&str>, default: usize, max: usize) -> ApiResult<usize> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::field(
                "limit",
                format!("must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// `POST /timers`. The request's W3C `traceparent` header, when valid (an invalid one is
/// dropped, never refused), is kept with the timer; with tracing on, the `timer.create`
/// span is its child and is what the timer keeps, so the fire and the attempts join the
/// caller's trace.
pub async fn create(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    let client_traceparent = headers
        .get("traceparent")
        .and_then(|h| h.to_str().ok())
        .and_then(TraceParent::normalize);
    if !trace::enabled() {
        return create_timer(st, caller, headers, body, client_traceparent).await;
    }
    let span = tracing::info_span!(
        "timer.create",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/timers"
    );
    trace::set_parent(&span, client_traceparent.as_deref());
    let traceparent = trace::traceparent_of(&span).or(client_traceparent);
    let result = create_timer(st, caller, headers, body, traceparent)
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(e) => {
            trace::set_error(&span, e.kind);
            e.status
        }
    };
    trace::set_attribute(
        &span,
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
    );
    result
}

async fn create_timer(
    st: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
    traceparent: Option<String>,
) -> ApiResult<Response> {
    let decision = match caller.limits.creates_per_minute {
        Some(n) if !caller.is_admin() => {
            let d = st.creates.check(&caller.key_id, n);
            if !d.allowed {
                st.metrics
                    .rate_limited("createsPerMinute", &caller.tenant.tier);
                return Err(rate_limited("createsPerMinute", &d));
            }
            Some(d)
        }
        _ => None,
    };
    require_body(&body, r#"{"duration": "30s"}"#)?;
    let mut request = TimerRequest::from_json(&body).map_err(ApiError::invalid)?;
    request.traceparent = traceparent;
    if let Some(t) = &request.tenant_id
        && t != caller.tenant_id()
    {
        return Err(ApiError::forbidden(format!(
            "tenantId is \"{t}\" but this API key belongs to tenant \"{}\"; omit tenantId or send your own",
            caller.tenant_id()
        )));
    }
    if let Some(h) = headers.get("idempotency-key") {
        let key = h
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_BYTES)
            .ok_or_else(|| {
                ApiError::field(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable characters"),
                )
            })?;
        match &request.idempotency_key {
            Some(k) if k != key => {
                return Err(ApiError::field(
                    "idempotencyKey",
                    "differs from the Idempotency-Key header; send one of them, or the same value in both",
                ));
            }
            _ => request.idempotency_key = Some(key.to_string()),
        }
    }
    check_tier_horizon(&st, &caller, request.fire_at.is_some(), |now| {
        request.fire_at_us(now)
    })?;
    let quotas = if caller.is_admin() {
        TenantQuotas::default()
    } else {
        TenantQuotas {
            max_per_day: caller.limits.timers_per_day,
            max_pending: caller.limits.pending_timers,
        }
    };
    let out = st
        .kernel_call(
            st.kernel
                .schedule_timer_with(caller.tenant_id(), request, quotas),
        )
        .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    trace::set_attribute(
        &tracing::Span::current(),
        KeyValue::new("timer.id", out.timer.id.to_string()),
    );
    let mut resp = json_response(status, &out.timer.to_json());
    if let Ok(loc) = HeaderValue::from_str(&format!("/timers/{}", out.timer.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    if let Some(d) = decision {
        // The tighter of the two limits is what the client should pace itself by.
        for (k, v) in rate_headers(&d) {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

/// Refuses a fire time further out than the caller's tier allows, naming `fireAt` when
/// the request gave one (`names_fire_at`), else `duration`. `fire_at_us` gives the
/// requested fire time at a now, when it is valid; the kernel validates everything else
/// (and refuses what is invalid there).
fn check_tier_horizon(
    st: &AppState,
    caller: &Caller,
    names_fire_at: bool,
    fire_at_us: impl FnOnce(i64) -> Option<i64>,
) -> ApiResult<()> {
    let Some(max_ms) = caller.limits.max_duration_ms else {
        return Ok(());
    };
    let field = if names_fire_at { "fireAt" } else { "duration" };
    let now = st.clock.now_us();
    match fire_at_us(now) {
        Some(at) if at - now > max_ms.saturating_mul(1000) => Err(ApiError::field(
            field,
            format!(
                "is further out than the {} your tier \"{}\" allows; fire sooner or move to a higher tier",
                human_ms(max_ms),
                caller.tenant.tier
            ),
        )),
        _ => Ok(()),
    }
}

/// The version an `If-Match` header carries (`"3"`, as the `version` of the `what` read, in
/// quotes; a bare `3` is read too), or `None` without the header (or with an empty one).
pub fn if_match_version(headers: &HeaderMap, what: &str) -> ApiResult<Option<i64>> {
    let Some(h) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = h.to_str().unwrap_or("?").trim();
    if text.is_empty() {
        // An empty list of entity tags names no version: as if the header were absent.
        return Ok(None);
    }
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    match inner.parse::<i64>() {
        Ok(v) if v >= 1 && !inner.starts_with('+') => Ok(Some(v)),
        _ => Err(ApiError::field(
            "If-Match",
            format!(
                "must be the {what}'s version in quotes, like \"3\" (the version field of the {what} you read)"
            ),
        )),
    }
}

/// `PATCH /timers/{id}`: changes a scheduled timer at the version the client read.
pub async fn update(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    let id = timer_id(&id)?;
    require_body(&body, r#"{"version": 3, "fireAt": "2026-11-27T10:00:00Z"}"#)?;
    let mut patch = TimerPatch::from_json(&body).map_err(ApiError::invalid)?;
    let if_match = if_match_version(&headers, "timer")?;
    // Checked here too, so that a bad header or body is a 400 before any kernel call.
    patch
        .validate(if_match, st.clock.now_us())
        .map_err(ApiError::invalid)?;
    patch.version = patch.version.or(if_match);
    check_tier_horizon(&st, &caller, patch.fire_at.is_some(), |now| {
        patch.fire_at_us(now)
    })?;
    timer_reply(&st, st.kernel.update_timer(caller.tenant_id(), id, patch)).await
}

/// The timer a kernel call answers with, as a 200.
async fn timer_reply(
    st: &AppState,
    call: impl std::future::Future<Output = minoots_kernel_api::KernelResult<Timer>>,
) -> ApiResult<Response> {
    let t = st.kernel_call(call).await?;
    Ok(json_response(StatusCode::OK, &t.to_json()))
}

/// `POST /timers/{id}/fire`: fires a scheduled timer now.
pub async fn fire(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = timer_id(&id)?;
    timer_reply(&st, st.kernel.fire_timer_now(caller.tenant_id(), id)).await
}

fn human_ms(ms: i64) -> String {
    const DAY: i64 = 24 * 3600 * 1000;
    if ms % DAY == 0 {
        format!("{} days", ms / DAY)
    } else {
        format!("{} ms", ms)
    }
}

pub async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = query_params(
        raw.as_deref(),
        &[
            "status",
            "label",
            "limit",
            "cursor",
            "name",
            "fireAfter",
            "fireBefore",
        ],
    )?;
    let get = |name: &str| params.get(name);
    let status = match get("status") {
        None => None,
        Some(s) => Some(s.parse::<TimerStatus>().map_err(|_| {
            ApiError::field(
                "status",
                format!(
                    "\"{s}\" is not a status; use scheduled, fired, settled, failed or cancelled"
                ),
            )
        })?),
    };
    let label = label_param(get("label"))?;
    let limit = page_limit(get("limit"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let after = match get("cursor") {
        None | Some("") => None,
        Some(c) => Some(cursor(c).ok_or_else(|| {
            ApiError::field(
                "cursor",
                "is not a cursor from this API; pass nextCursor from the previous page unchanged",
            )
        })?),
    };
    let name_prefix = name_param(get("name"))?;
    let fire_from_us = time_param("fireAfter", get("fireAfter"))?;
    let fire_before_us = time_param("fireBefore", get("fireBefore"))?;
    if let (Some(from), Some(before)) = (fire_from_us, fire_before_us)
        && from >= before
    {
        return Err(ApiError::field(
            "fireBefore",
            "must be later than fireAfter (timers firing at or after fireAfter and before fireBefore are listed)",
        ));
    }
    let page = st
        .kernel_call(st.kernel.list_timers(TimerQuery {
            tenant_id: caller.tenant_id().to_string(),
            status,
            label,
            name_prefix,
            fire_from_us,
            fire_before_us,
            limit,
            after,
        }))
        .await?;
    let timers: Vec<Value> = page.timers.iter().map(Timer::to_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"timers": timers, "nextCursor": page.next.map(|n| n.encode_cursor())}),
    ))
}

/// The `name` filter of a listing: a prefix of the names to list (empty: any), within the
/// length of a name and without control characters (`openapi::NAME_FILTER_PATTERN`).
fn name_param(text: Option<&str>) -> ApiResult<Option<String>> {
    match text {
        None | Some("") => Ok(None),
        Some(t) if t.len() > MAX_NAME_BYTES => Err(ApiError::field(
            "name",
            format!("must be at most {MAX_NAME_BYTES} bytes: the start of the names to list"),
        )),
        Some(t) if t.chars().any(char::is_control) => Err(ApiError::field(
            "name",
            "must not contain control characters: the start of the names to list",
        )),
        Some(t) => Ok(Some(t.to_string())),
    }
}

/// A time filter of a listing: RFC 3339 with an offset (empty: no bound).
fn time_param(field: &str, text: Option<&str>) -> ApiResult<Option<i64>> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => parse_rfc3339_us(t).map(Some).map_err(|m| {
            ApiError::field(
                field,
                format!("{m}; write an RFC 3339 time like 2026-11-27T10:00:00Z"),
            )
        }),
    }
}

pub async fn get(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = timer_id(&id)?;
    timer_reply(&st, st.kernel.get_timer(caller.tenant_id(), id)).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    pub reason: Option<String>,
}

async fn cancel_timer(
    st: &AppState,
    caller: &Caller,
    id: &str,
    reason: Option<String>,
) -> ApiResult<Response> {
    let id = timer_id(id)?;
    timer_reply(st, st.kernel.cancel_timer(caller.tenant_id(), id, reason)).await
}

pub async fn delete(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    cancel_timer(&st, &caller, &id, None).await
}

pub async fn cancel(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<CancelBody>,
) -> ApiResult<Response> {
    cancel_timer(&st, &caller, &id, body.unwrap_or_default().reason).await
}

fn attempt_json(a: &AttemptRecord) -> Value {
    json!({
        "attempt": a.attempt,
        "startedAt": format_us(a.started_at_us),
        "durationMs": a.duration_us as f64 / 1000.0,
        "outcome": a.outcome.as_str(),
        "httpStatus": a.http_status,
        "exitCode": a.exit_code,
        "error": a.error,
        "response": a.response_excerpt,
    })
}

fn delivery_json(d: &Delivery, attempts: &[AttemptRecord]) -> Value {
    json!({
        "id": d.id.to_string(),
        "timerId": d.timer_id.to_string(),
        "actionIndex": d.action_index,
        "status": d.status.as_str(),
        "attempts": d.attempt,
        "maxAttempts": d.max_attempts,
        "nextAttemptAt": (d.status == minoots_core::DeliveryStatus::Pending).then(|| format_us(d.next_attempt_at_us)),
        "lastError": d.last_error,
        "createdAt": format_us(d.created_at_us),
        "updatedAt": format_us(d.updated_at_us),
        "attemptLog": attempts.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

pub async fn deliveries(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = timer_id(&id)?;
    let list: Vec<DeliveryWithAttempts> = st
        .kernel_call(st.kernel.list_deliveries(caller.tenant_id(), id))
        .await?;
    let out: Vec<Value> = list
        .iter()
        .map(|d| delivery_json(&d.delivery, &d.attempts))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"deliveries": out})))
}

pub async fn redrive(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = timer_id(&id)?;
    timer_reply(&st, st.kernel.redrive_timer(caller.tenant_id(), id)).await
}

/// Parses `timeout` (a duration like `30s`), at most [`MAX_WAIT`]; `None` when absent or
/// empty.
pub fn timeout_param(v: Option<&str>) -> ApiResult<Option<Duration>> {
    let Some(text) = v.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let ms = minoots_core::duration::parse_duration_ms(text)
        .map_err(|m| ApiError::field("timeout", m))?;
    if ms < 0 || ms as u128 > MAX_WAIT.as_millis() {
        return Err(ApiError::field(
            "timeout",
            format!("must be between 0 and {} s", MAX_WAIT.as_secs()),
        ));
    }
    Ok(Some(Duration::from_millis(ms as u64)))
}

fn wait_timeout(v: Option<&str>) -> ApiResult<Duration> {
    Ok(timeout_param(v)?.unwrap_or(DEFAULT_WAIT))
}

/// Long-poll: answers as soon as the timer is no longer `scheduled`, or at the timeout.
pub async fn wait(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = query_params(raw.as_deref(), &["timeout"])?;
    let timeout = wait_timeout(params.get("timeout"))?;
    let id = timer_id(&id)?;
    let tenant = caller.tenant_id().to_string();
    // Subscribe before reading: a change after the read is then seen on the stream.
    let mut changes = st
        .kernel_call(st.kernel.stream_events(EventQuery {
            after_seq: EVENTS_FROM_NOW,
            limit: 1,
            tenant_id: Some(tenant.clone()),
            timer_id: Some(id),
            types: vec![
                EventType::TimerFired,
                EventType::TimerSettled,
                EventType::TimerFailed,
                EventType::TimerCancelled,
            ],
        }))
        .await?;
    let t = st.kernel_call(st.kernel.get_timer(&tenant, id)).await?;
    if t.status != TimerStatus::Scheduled {
        return Ok(json_response(StatusCode::OK, &t.to_json()));
    }
    let _ = tokio::time::timeout(timeout, changes.next()).await;
    drop(changes);
    let t = st.kernel_call(st.kernel.get_timer(&tenant, id)).await?;
    Ok(json_response(StatusCode::OK, &t.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_exactly_what_the_list_hands_out() {
        let d = DueTimer {
            fire_at_us: 1_795_773_600_000_000,
            id: TimerId::new_v7(),
        };
        assert_eq!(cursor(&d.encode_cursor()), Some(d));
        let upper = d.encode_cursor().to_ascii_uppercase();
        // Decodable, but not a cursor this API hands out.
        assert!(DueTimer::decode_cursor(&upper).is_some());
        for bad in [
            "~",
            "",
            "76312e",
            &upper,
            &format!("{}00", d.encode_cursor()),
        ] {
            assert_eq!(cursor(bad), None, "{bad}");
        }
        // A fire time of 19 digits is outside the documented form.
        let far = DueTimer {
            fire_at_us: 1_000_000_000_000_000_000,
            id: d.id,
        };
        assert_eq!(cursor(&far.encode_cursor()), None);
    }

    #[test]
    fn query_parameters_and_limits() {
        assert!(query_params(Some("status=fired&limit=5"), &["status", "limit"]).is_ok());
        let e = query_params(Some("stauts=fired"), &["status"]).unwrap_err();
        assert_eq!(e.errors[0].field, "stauts");
        assert_eq!(page_limit(None, 50, 500).unwrap(), 50);
        assert_eq!(page_limit(Some("500"), 50, 500).unwrap(), 500);
        assert!(page_limit(Some("0"), 50, 500).is_err());
        assert!(page_limit(Some("501"), 50, 500).is_err());
        assert!(page_limit(Some("x"), 50, 500).is_err());
        assert_eq!(wait_timeout(None).unwrap(), DEFAULT_WAIT);
        assert_eq!(wait_timeout(Some("2s")).unwrap(), Duration::from_secs(2));
        assert!(wait_timeout(Some("1h")).is_err());
        assert!(wait_timeout(Some("soon")).is_err());
        assert!(timer_id("nope").is_err());
        assert!(timer_id("0193a0c4-8f1e-7cc3-9d0e-3f1b2a4c5d6e").is_ok());
        // Other spellings of the same UUID are refused: the document names one form.
        assert!(timer_id("0193a0c48f1e7cc39d0e3f1b2a4c5d6e").is_err());
        assert!(timer_id("{0193a0c4-8f1e-7cc3-9d0e-3f1b2a4c5d6e}").is_err());
    }
}
