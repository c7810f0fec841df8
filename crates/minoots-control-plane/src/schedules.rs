//! `/schedules`: recurring schedules — create (with the tier's schedule quota and shortest
//! interval), list, get, a schedule's run records, its preview, and the stateless preview
//! of a spec (`POST /schedules/preview`), which validates it exactly as a create will and
//! answers the next slots from the same generator the dispatcher uses
//! (`minoots_core::schedule`), with the version of the time-zone database compiled into the
//! binary. Another tenant's schedule is answered exactly like a missing one.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete as delete_route, get, patch, post};
use minoots_core::ScheduleId;
use minoots_core::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use minoots_core::schedule::{
    self, MAX_PREVIEW_COUNT, ScheduleFilter, ScheduleRequest, ScheduleStatus,
};
use minoots_core::timefmt::parse_rfc3339_us;
use minoots_kernel_api::{ScheduleChange, ScheduleQuotas};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Access, Caller};
use crate::body::{RawJson, require_body};
use crate::openapi::{
    DURATION_PATTERN, LABEL_KEY_PATTERN, NAME_PATTERN, NO_CONTROL_PATTERN, schema,
};
use crate::problem::{ApiError, ApiResult};
use crate::routes::{RouteSpec, body, ok, op, problem, query, r};
use crate::timers::{
    Query as QueryParams, hyphenated_uuid, if_match_version, json_response, label_param,
    page_limit, query_params,
};

/// Slots a preview returns when `count` is not given.
pub const DEFAULT_PREVIEW_COUNT: usize = 10;

/// `POST /schedules/preview?from=&count=`: the next slots of a spec, nothing stored.
pub async fn preview(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    let now = st.clock.now_us();
    let (from, count) = from_and_count(&st, raw.as_deref())?;
    let request = schedule_request(&body)?;
    let min_interval_ms = quotas(&caller).min_interval_ms;
    // Validated as of `from` (a preview of next year may name an `endAt` that is past by
    // then only if it is past now too).
    let spec = request
        .validate(caller.tenant_id(), now.min(from), min_interval_ms)
        .map_err(ApiError::invalid)?;
    // No schedule exists yet, so the jitter shown is that of an empty key; a stored
    // schedule's own preview shows the delays its id gives.
    let runs = schedule::preview(&spec, &[], from, count);
    Ok(json_response(
        StatusCode::OK,
        &json!({"tzdbVersion": schedule::tzdb_version(), "runs": runs}),
    ))
}

/// A schedule id in its hyphenated form.
fn schedule_id(text: &str) -> ApiResult<ScheduleId> {
    hyphenated_uuid(text)
        .map(ScheduleId)
        .ok_or_else(|| ApiError::not_found(format!("schedule {text} not found")))
}

/// A schedule request from a body, refusing an empty one with an example.
fn schedule_request(body: &[u8]) -> ApiResult<ScheduleRequest> {
    require_body(
        body,
        r#"{"cron": "0 30 2 * * *", "timezone": "Europe/Paris"}"#,
    )?;
    ScheduleRequest::from_json(body).map_err(ApiError::invalid)
}

/// What the caller's tier allows a schedule (an admin: anything).
fn quotas(caller: &Caller) -> ScheduleQuotas {
    if caller.is_admin() {
        return ScheduleQuotas::default();
    }
    ScheduleQuotas {
        max_schedules: caller.limits.schedules,
        min_interval_ms: caller.limits.min_schedule_interval_ms.unwrap_or(0),
    }
}

/// A run-record cursor: the last slot of a page in µs, as `nextCursor` gives it.
pub const RUN_CURSOR_PATTERN: &str = "^(-?[0-9]{1,18})?$";

fn run_cursor(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain =
        !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit());
    if plain { text.parse().ok() } else { None }
}

/// `POST /schedules`.
pub async fn create(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    let request = schedule_request(&body)?;
    let quotas = quotas(&caller);
    let s = st
        .kernel_call(
            st.kernel
                .create_schedule(caller.tenant_id(), request, quotas),
        )
        .await?;
    let mut resp = json_response(StatusCode::CREATED, &s.to_json());
    if let Ok(loc) = HeaderValue::from_str(&format!("/schedules/{}", s.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// `GET /schedules?status=&label=&limit=&cursor=`: the tenant's schedules by id.
pub async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = query_params(raw.as_deref(), &["status", "label", "limit", "cursor"])?;
    let status = match params.non_empty("status") {
        None => None,
        Some(s) => Some(ScheduleStatus::parse(s).ok_or_else(|| {
            ApiError::field(
                "status",
                format!("\"{s}\" is not a status; use active, paused or completed"),
            )
        })?),
    };
    let filter = ScheduleFilter {
        status,
        label: label_param(params.non_empty("label"))?,
    };
    let (limit, after) = paging(&params, |c| schedule_id(c).ok())?;
    let list = st
        .kernel_call(
            st.kernel
                .list_schedules(caller.tenant_id(), &filter, after, limit),
        )
        .await?;
    Ok(page(
        "schedules",
        &list,
        limit,
        |s| s.to_json(),
        |s| s.id.to_string(),
    ))
}

/// The `limit` and the position after `cursor` of a paged list; `cursor` parses a cursor
/// this API gave.
fn paging<T>(
    params: &QueryParams,
    cursor: impl Fn(&str) -> Option<T>,
) -> ApiResult<(usize, Option<T>)> {
    let limit = page_limit(params.get("limit"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let after = match params.non_empty("cursor") {
        None => None,
        Some(c) => Some(cursor(c).ok_or_else(|| {
            ApiError::field(
                "cursor",
                "is not a cursor from this API; pass nextCursor from the previous page unchanged",
            )
        })?),
    };
    Ok((limit, after))
}

/// A page of `items` under `name`, with `nextCursor` when the page is full.
fn page<T>(
    name: &str,
    items: &[T],
    limit: usize,
    json: impl Fn(&T) -> Value,
    cursor: impl Fn(&T) -> String,
) -> Response {
    let next = (items.len() == limit)
        .then(|| items.last().map(&cursor))
        .flatten();
    let items: Vec<Value> = items.iter().map(json).collect();
    json_response(StatusCode::OK, &json!({name: items, "nextCursor": next}))
}

/// `GET /schedules/{id}`.
pub async fn get_one(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    let s = st
        .kernel_call(st.kernel.get_schedule(caller.tenant_id(), id))
        .await?;
    Ok(json_response(StatusCode::OK, &s.to_json()))
}

/// `PATCH /schedules/{id}`: replaces the fields given (a `null` removes one) at the
/// version read (in the body or `If-Match`); the new spec governs the slots from now on.
pub async fn update(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    require_body(&body, r#"{"version": 3, "cron": "0 0 9 * * MON-FRI"}"#)?;
    let mut patch = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Err(ApiError::field(
                "body",
                "must be one JSON object of the fields to change and the version read",
            ));
        }
        Err(e) => {
            return Err(ApiError::field(
                "body",
                format!("is not valid JSON ({e}); send one JSON object"),
            ));
        }
    };
    let body_version = match patch.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(minoots_core::patch::whole_number(&v).filter(|v| *v >= 1).ok_or_else(|| {
            ApiError::field(
                "version",
                "must be the schedule's version, a whole number from 1 (the version field of the schedule you read)",
            )
        })?),
    };
    let if_match = if_match_version(&headers, "schedule")?;
    let version = match (body_version, if_match) {
        (Some(b), Some(h)) if b != h => {
            return Err(ApiError::field(
                "version",
                format!("is {b} but If-Match says {h}; send the version once, or the same in both"),
            ));
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            return Err(ApiError::field(
                "version",
                "is missing: send the version of the schedule you read (or an If-Match header), so a change made meanwhile is not overwritten",
            ));
        }
    };
    change(&st, &caller, id, ScheduleChange::Update { version, patch }).await
}

/// Makes `change` and answers with the schedule.
async fn change(
    st: &AppState,
    caller: &Caller,
    id: ScheduleId,
    change: ScheduleChange,
) -> ApiResult<Response> {
    let c = st
        .kernel_call(
            st.kernel
                .change_schedule(caller.tenant_id(), id, change, quotas(caller)),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &c.schedule.to_json()))
}

/// `POST /schedules/{id}/pause`.
pub async fn pause(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    change(&st, &caller, id, ScheduleChange::Pause).await
}

/// The body of `POST /schedules/{id}/resume` (optional).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResumeBody {
    #[serde(default)]
    catch_up: Option<bool>,
}

/// `POST /schedules/{id}/resume` (`{"catchUp": false}` by default).
pub async fn resume(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    let catch_up = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        minoots_core::request::parse_json::<ResumeBody>(&body)
            .map_err(ApiError::invalid)?
            .catch_up
            .unwrap_or(false)
    };
    change(&st, &caller, id, ScheduleChange::Resume { catch_up }).await
}

/// `POST /schedules/{id}/trigger`: one run now, outside the slots; answers with its timer.
pub async fn trigger(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    let c = st
        .kernel_call(st.kernel.change_schedule(
            caller.tenant_id(),
            id,
            ScheduleChange::Trigger,
            quotas(&caller),
        ))
        .await?;
    let timer = c
        .timer
        .ok_or_else(|| ApiError::internal("the kernel created no run for the trigger"))?;
    let mut resp = json_response(StatusCode::CREATED, &timer.to_json());
    if let Ok(loc) = HeaderValue::from_str(&format!("/timers/{}", timer.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// `DELETE /schedules/{id}`: removes it and its run records; runs not yet fired are
/// cancelled, runs already firing go on.
pub async fn delete(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    st.kernel_call(st.kernel.change_schedule(
        caller.tenant_id(),
        id,
        ScheduleChange::Delete,
        quotas(&caller),
    ))
    .await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(axum::body::Body::empty())
        .unwrap_or_default())
}

/// `GET /schedules/{id}/runs?limit=&cursor=`: run records in slot order.
pub async fn runs(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    let params = query_params(raw.as_deref(), &["limit", "cursor"])?;
    let (limit, after) = paging(&params, run_cursor)?;
    let list = st
        .kernel_call(
            st.kernel
                .list_schedule_runs(caller.tenant_id(), id, after, limit),
        )
        .await?;
    Ok(page(
        "runs",
        &list,
        limit,
        |r| r.to_json(),
        |r| r.scheduled_at_us.to_string(),
    ))
}

/// `GET /schedules/{id}/preview?from=&count=`: the stored schedule's next slots with the
/// jitter its id gives them.
pub async fn preview_one(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let id = schedule_id(&id)?;
    let (from, count) = from_and_count(&st, raw.as_deref())?;
    let s = st
        .kernel_call(st.kernel.get_schedule(caller.tenant_id(), id))
        .await?;
    let spec = s.spec().map_err(ApiError::invalid)?;
    let from = from.max(s.progress.cursor_us + 1);
    let runs = schedule::preview(&spec, s.key(), from, count);
    Ok(json_response(
        StatusCode::OK,
        &json!({"tzdbVersion": schedule::tzdb_version(), "runs": runs}),
    ))
}

/// The `from` (default now) and `count` (default 10) of a preview.
fn from_and_count(st: &AppState, raw: Option<&str>) -> ApiResult<(i64, usize)> {
    let params = query_params(raw, &["from", "count"])?;
    let from = match params.get("from") {
        None => st.clock.now_us(),
        Some(t) => parse_rfc3339_us(t).map_err(|e| {
            ApiError::field(
                "from",
                format!("is not an RFC 3339 time with an offset, like 2026-03-08T00:00:00Z ({e})"),
            )
        })?,
    };
    let count = match params.get("count") {
        None => DEFAULT_PREVIEW_COUNT,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PREVIEW_COUNT).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "count",
                    format!("must be a whole number from 1 to {MAX_PREVIEW_COUNT}"),
                )
            })?,
    };
    Ok((from, count))
}

/// The routes of this module, for the route table.
pub fn routes() -> Vec<RouteSpec> {
    let id_param = || {
        json!({"name": "id", "in": "path", "required": true, "description": "The schedule id",
               "schema": {"type": "string", "format": "uuid", "pattern": crate::openapi::TIMER_ID_PATTERN}})
    };
    let not_found = || problem("404", "No such schedule for this tenant");
    let conflict = || {
        problem(
            "409",
            "The version differs (the schedule changed since it was read), or the schedule is completed",
        )
    };
    let paging = |what: &str, pattern: &str| {
        vec![
            query(
                "limit",
                "Page size (1 to 500, default 50)",
                json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}),
            ),
            query(
                "cursor",
                &format!(
                    "nextCursor of the previous page of {what}, unchanged (empty: the first page)"
                ),
                json!({"type": "string", "pattern": pattern}),
            ),
        ]
    };
    let id_cursor = {
        let id = crate::openapi::TIMER_ID_PATTERN;
        format!("^({})?$", &id[1..id.len() - 1])
    };
    let mut created = ok("201", "Created", "Schedule");
    created.1["headers"] = json!({"Location": {"description": "The schedule's URL", "required": true, "schema": {"type": "string"}}});
    vec![
        r(
            Method::POST,
            "/schedules",
            Access::Write,
            post(create),
            op(
                "createSchedule",
                "schedules",
                "Create a recurring schedule",
                Access::Write,
                vec![created],
                json!({"requestBody": body("ScheduleRequest", true)}),
            ),
        ),
        r(
            Method::GET,
            "/schedules",
            Access::Read,
            get(list),
            op(
                "listSchedules",
                "schedules",
                "List the tenant's schedules",
                Access::Read,
                vec![ok("200", "A page of schedules", "ScheduleList")],
                json!({"parameters": [
                    query("status", "Only schedules with this status (empty: no filter)", json!({"type": "string", "enum": ["active", "paused", "completed", ""]})),
                    query("label", "Only schedules carrying this label, as key:value (empty: no filter)", json!({"type": "string", "pattern": crate::openapi::LABEL_FILTER_PATTERN})),
                    paging("schedules", &id_cursor)[0].clone(),
                    paging("schedules", &id_cursor)[1].clone()]}),
            ),
        ),
        r(
            Method::GET,
            "/schedules/{id}",
            Access::Read,
            get(get_one),
            op(
                "getSchedule",
                "schedules",
                "Get a schedule",
                Access::Read,
                vec![ok("200", "The schedule", "Schedule"), not_found()],
                json!({"parameters": [id_param()]}),
            ),
        ),
        r(
            Method::PATCH,
            "/schedules/{id}",
            Access::Write,
            patch(update),
            op(
                "updateSchedule",
                "schedules",
                "Change a schedule at the version read; its new spec governs the slots from now on",
                Access::Write,
                vec![
                    ok(
                        "200",
                        "The changed schedule, at its next version",
                        "Schedule",
                    ),
                    not_found(),
                    conflict(),
                ],
                json!({"parameters": [id_param(),
                        {"name": "If-Match", "in": "header", "required": false,
                         "description": "The version read, in quotes (\"3\"), instead of version in the body (both: they must match)",
                         "schema": {"type": "string", "pattern": "^\"[1-9][0-9]{0,17}\"$"}}],
                       "requestBody": body("SchedulePatch", true)}),
            ),
        ),
        r(
            Method::DELETE,
            "/schedules/{id}",
            Access::Write,
            delete_route(delete),
            op(
                "deleteSchedule",
                "schedules",
                "Delete a schedule and its run records; runs not yet fired are cancelled",
                Access::Write,
                vec![
                    ("204".to_string(), json!({"description": "Deleted"})),
                    not_found(),
                ],
                json!({"parameters": [id_param()]}),
            ),
        ),
        r(
            Method::POST,
            "/schedules/{id}/pause",
            Access::Write,
            post(pause),
            op(
                "pauseSchedule",
                "schedules",
                "Pause a schedule: runs not yet fired are withdrawn, and each slot that passes is recorded skipped (paused)",
                Access::Write,
                vec![
                    ok("200", "The paused schedule", "Schedule"),
                    not_found(),
                    conflict(),
                ],
                json!({"parameters": [id_param()]}),
            ),
        ),
        r(
            Method::POST,
            "/schedules/{id}/resume",
            Access::Write,
            post(resume),
            op(
                "resumeSchedule",
                "schedules",
                "Resume a paused schedule; with catchUp, the paused slots within the misfire window are caught up by its misfire policy",
                Access::Write,
                vec![
                    ok("200", "The resumed schedule", "Schedule"),
                    not_found(),
                    conflict(),
                ],
                json!({"parameters": [id_param()], "requestBody": body("ScheduleResume", false)}),
            ),
        ),
        r(
            Method::POST,
            "/schedules/{id}/trigger",
            Access::Write,
            post(trigger),
            op(
                "triggerSchedule",
                "schedules",
                "Run a schedule once now, outside its slots (the cursor, runsFired and overlap are not affected)",
                Access::Write,
                vec![
                    ok("201", "The run's timer", "Timer"),
                    not_found(),
                    conflict(),
                ],
                json!({"parameters": [id_param()]}),
            ),
        ),
        r(
            Method::GET,
            "/schedules/{id}/runs",
            Access::Read,
            get(runs),
            op(
                "listScheduleRuns",
                "schedules",
                "A schedule's run records, one per slot, in slot order",
                Access::Read,
                vec![
                    ok("200", "A page of run records", "ScheduleRunList"),
                    not_found(),
                ],
                json!({"parameters": [id_param(), paging("runs", RUN_CURSOR_PATTERN)[0].clone(), paging("runs", RUN_CURSOR_PATTERN)[1].clone()]}),
            ),
        ),
        r(
            Method::GET,
            "/schedules/{id}/preview",
            Access::Read,
            get(preview_one),
            op(
                "previewStoredSchedule",
                "schedules",
                "The next slots of a schedule, with its own jitter",
                Access::Read,
                vec![ok("200", "The next slots", "SchedulePreview"), not_found()],
                json!({"parameters": [id_param(),
                    query("from", "Slots at or after this time (RFC 3339; absent: now)", json!({"type": "string", "format": "date-time"})),
                    query("count", "How many slots (1 to 1000, default 10)", json!({"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW_COUNT}))]}),
            ),
        ),
        r(
            Method::POST,
            "/schedules/preview",
            Access::Read,
            post(preview),
            op(
                "previewSchedule",
                "schedules",
                "The next slots of a schedule spec (nothing is stored)",
                Access::Read,
                vec![ok("200", "The next slots", "SchedulePreview")],
                json!({"requestBody": body("ScheduleRequest", true), "parameters": [
                query("from", "Slots at or after this time (RFC 3339; absent: now)", json!({"type": "string", "format": "date-time"})),
                query("count", "How many slots (1 to 1000, default 10)", json!({"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW_COUNT}))]}),
            ),
        ),
    ]
}

/// The schemas of this module, for `/openapi.json`. No `examples`: fields of a schedule
/// depend on each other (cron or every, phase with every), so examples combined field by
/// field would make requests the server must refuse.
pub fn schemas() -> serde_json::Map<String, Value> {
    let duration = |description: &str| {
        json!({"oneOf": [
            {"type": "string", "pattern": DURATION_PATTERN},
            {"type": "integer", "minimum": 0, "description": "milliseconds"},
            {"type": "null"}], "description": description})
    };
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let v = json!({
        "ScheduleRequest": {"type": "object", "additionalProperties": false,
            "description": "Exactly one of cron and every. Rules the schema cannot state: the cron grammar (5, 6 or 7 fields; see the guide), a time zone from the IANA database, phase shorter than every, whole seconds for every and phase, endAt after startAt and after now, at least one slot, and the tier's shortest interval.",
            "properties": {
                "name": {"type": ["string", "null"], "maxLength": minoots_core::limits::MAX_NAME_BYTES, "pattern": NAME_PATTERN},
                "cron": {"type": ["string", "null"], "maxLength": schedule::cron::MAX_CRON_BYTES,
                    "description": "[second] minute hour day-of-month month day-of-week [year], with L, W, #, nL; a CRON_TZ= or TZ= prefix sets the zone"},
                "every": duration("Slots at epoch + n·every + phase, in whole seconds (at least the tier's shortest interval)"),
                "phase": duration("Offset of every's slots from the epoch, shorter than every"),
                "timezone": {"type": ["string", "null"], "maxLength": 64, "description": "An IANA name (default UTC), like Europe/Paris"},
                "startAt": time, "endAt": time,
                "maxRuns": {"type": ["integer", "null"], "minimum": 1, "maximum": schedule::spec::MAX_MAX_RUNS},
                "misfire": {"type": ["object", "null"], "additionalProperties": false, "properties": {
                    "policy": {"type": ["string", "null"], "enum": ["latest", "all", "none", null]},
                    "window": duration("Missed slots older than this are not caught up (default 1h, at most 366 days)"),
                    "maxBurst": {"type": ["integer", "null"], "minimum": 1, "maximum": schedule::spec::MAX_MAX_BURST}}},
                "overlap": {"type": ["string", "null"], "enum": ["skip", "bufferOne", "bufferAll", "cancelOther", "allowAll", null]},
                "jitter": duration("A delay of at most this (and never past the next slot), the same for a slot every time (at most 24h)"),
                "metadata": {"type": ["object", "null"], "description": "At most 16 KiB as JSON"},
                "labels": {"type": ["object", "null"], "maxProperties": minoots_core::limits::MAX_LABELS, "propertyNames": {"pattern": LABEL_KEY_PATTERN},
                    "additionalProperties": {"type": "string", "maxLength": minoots_core::limits::MAX_LABEL_VALUE_BYTES, "pattern": NO_CONTROL_PATTERN}},
                "actionBundle": schema("ActionBundle")}},
        "Schedule": {"type": "object", "required": ["id", "tenantId", "status", "createdAt", "updatedAt", "nextRunAt", "runsFired", "version"],
            "description": "The request's fields as normalized (the zone by its canonical name, catch-up and overlap with their defaults) and the schedule's state",
            "properties": {
                "id": {"type": "string"}, "tenantId": {"type": "string"},
                "status": {"type": "string", "enum": ["active", "paused", "completed"]},
                "createdAt": {"type": "string", "format": "date-time"}, "updatedAt": {"type": "string", "format": "date-time"},
                "nextRunAt": {"type": ["string", "null"], "format": "date-time", "description": "The next slot; null when none is left"},
                "runsFired": {"type": "integer", "minimum": 0}, "version": {"type": "integer"}}},
        "ScheduleList": {"type": "object", "required": ["schedules", "nextCursor"], "properties": {
            "schedules": {"type": "array", "items": schema("Schedule")}, "nextCursor": {"type": ["string", "null"]}}},
        "ScheduleRunList": {"type": "object", "required": ["runs", "nextCursor"], "properties": {
            "runs": {"type": "array", "items": {"type": "object", "required": ["scheduledAt", "status", "recordedAt"], "properties": {
                "scheduledAt": {"type": "string", "format": "date-time", "description": "The slot"},
                "status": {"type": "string", "enum": ["fired", "skipped", "buffered"]},
                "reason": {"type": ["string", "null"], "enum": ["paused", "overlap", "catchupExpired", "superseded", "maxRuns", null]},
                "timerId": {"type": ["string", "null"], "description": "The run's timer, when it fired"},
                "fireAt": {"type": ["string", "null"], "format": "date-time", "description": "When the run's timer was due (the slot plus jitter, or later when caught up)"},
                "firedAt": {"type": ["string", "null"], "format": "date-time", "description": "When the run's timer fired (null until it has)"},
                "recordedAt": {"type": "string", "format": "date-time"}}}},
            "nextCursor": {"type": ["string", "null"]}}},
        "SchedulePreview": {"type": "object", "required": ["tzdbVersion", "runs"], "properties": {
            "tzdbVersion": {"type": "string", "description": "The IANA time zone database compiled into the server"},
            "runs": {"type": "array", "items": {"type": "object", "required": ["at", "local", "dst", "fireAt"], "properties": {
                "at": {"type": "string", "format": "date-time", "description": "The slot, UTC"},
                "local": {"type": "string", "description": "The slot in the schedule's zone, with its offset"},
                "dst": {"type": ["string", "null"], "enum": ["gapShifted", null], "description": "gapShifted: the named time did not exist that day; the slot is the first instant after the gap"},
                "fireAt": {"type": "string", "format": "date-time", "description": "The slot plus its jitter"}}}}}},
    });
    let Value::Object(mut m) = v else {
        unreachable!("a JSON object literal")
    };
    // A PATCH body: the request's fields (each replaces the stored one whole; null removes
    // it) and the version read.
    let mut patch = m["ScheduleRequest"].clone();
    patch["description"] = json!(
        "The version read (or an If-Match header) and the fields to replace, each whole (labels, metadata, misfire and actionBundle included); null removes a field. Giving cron drops every and phase; giving every drops cron. The result is checked as a new schedule is, at the time of the change."
    );
    patch["properties"]["version"] = json!({"type": "integer", "minimum": 1, "description": "The version of the schedule you read"});
    m.insert("SchedulePatch".into(), patch);
    m.insert(
        "ScheduleResume".into(),
        json!({"type": "object", "additionalProperties": false, "properties": {
            "catchUp": {"type": ["boolean", "null"], "description": "Catch up the slots skipped while paused, within the misfire window, by the misfire policy (default false)"}}}),
    );
    m
}
