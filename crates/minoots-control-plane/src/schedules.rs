//! `/schedules`: recurring schedules. So far the stateless preview (`POST
//! /schedules/preview`), which validates a schedule spec exactly as a create will (the
//! tenant's tier sets the shortest interval) and answers the next slots from the same
//! generator the dispatcher uses (`minoots_core::schedule`), with the version of the time-zone
//! database compiled into the binary. It stores nothing and never calls the kernel.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::post;
use minoots_core::schedule::{self, MAX_PREVIEW_COUNT, ScheduleRequest};
use minoots_core::timefmt::parse_rfc3339_us;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Access, Caller};
use crate::body::RawJson;
use crate::openapi::{
    DURATION_PATTERN, LABEL_KEY_PATTERN, NAME_PATTERN, NO_CONTROL_PATTERN, schema,
};
use crate::problem::{ApiError, ApiResult};
use crate::routes::{RouteSpec, body, ok, op, query, r};
use crate::timers::{json_response, query_params};

/// Slots a preview returns when `count` is not given.
pub const DEFAULT_PREVIEW_COUNT: usize = 10;

/// `POST /schedules/preview?from=&count=`: the next slots of a spec, nothing stored.
pub async fn preview(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RawJson(body): RawJson,
) -> ApiResult<Response> {
    let params = query_params(raw.as_deref(), &["from", "count"])?;
    let now = st.clock.now_us();
    let from = match params.non_empty("from") {
        None => now,
        Some(t) => parse_rfc3339_us(t).map_err(|e| {
            ApiError::field(
                "from",
                format!("is not an RFC 3339 time with an offset, like 2026-03-08T00:00:00Z ({e})"),
            )
        })?,
    };
    let count = match params.non_empty("count") {
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
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field(
            "body",
            "is empty; send a schedule like {\"cron\": \"0 30 2 * * *\", \"timezone\": \"Europe/Paris\"}",
        ));
    }
    let request = ScheduleRequest::from_json(&body).map_err(ApiError::invalid)?;
    let min_interval_ms = if caller.is_admin() {
        0
    } else {
        caller.limits.min_schedule_interval_ms.unwrap_or(0)
    };
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

/// The routes of this module, for the route table.
pub fn routes() -> Vec<RouteSpec> {
    vec![r(
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
                query("from", "Slots at or after this time (RFC 3339; empty: now)", json!({"type": "string", "format": "date-time"})),
                query("count", "How many slots (1 to 1000, default 10)", json!({"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW_COUNT}))]}),
        ),
    )]
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
        "SchedulePreview": {"type": "object", "required": ["tzdbVersion", "runs"], "properties": {
            "tzdbVersion": {"type": "string", "description": "The IANA time zone database compiled into the server"},
            "runs": {"type": "array", "items": {"type": "object", "required": ["at", "local", "dst", "fireAt"], "properties": {
                "at": {"type": "string", "format": "date-time", "description": "The slot, UTC"},
                "local": {"type": "string", "description": "The slot in the schedule's zone, with its offset"},
                "dst": {"type": ["string", "null"], "enum": ["gapShifted", null], "description": "gapShifted: the named time did not exist that day; the slot is the first instant after the gap"},
                "fireAt": {"type": "string", "format": "date-time", "description": "The slot plus its jitter"}}}}}},
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}
