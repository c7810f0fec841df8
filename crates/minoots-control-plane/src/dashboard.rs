//! The overview of the key's tenant, for the dashboard and any client: `GET /timers/counts`
//! (timers by status) and `GET /deliveries/per-minute` (delivery outcomes per minute over
//! the last hour at most). Both read the kernel's bounded overview calls, so each answer
//! costs at most a fixed amount of store work whatever the tenant's size: two counter
//! rows (SQLite) or five index range reads of at most `MAX_COUNTED_PER_STATUS` entries
//! (PostgreSQL), or a binary search of the
//! event log and at most `MAX_ACTIVITY_EVENTS_SCANNED` events. Never a private endpoint:
//! both are in the route table, hence in `/openapi.json`.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use minoots_core::records::{
    DeliveryActivity, MAX_ACTIVITY_EVENTS_SCANNED, MAX_ACTIVITY_MINUTES, MAX_COUNTED_PER_STATUS,
    TimerCounts,
};
use minoots_core::timefmt::format_us;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Access, Caller};
use crate::problem::{ApiError, ApiResult};
use crate::routes::{RouteSpec, ok, op, query, r};
use crate::timers::{json_response, query_params};

pub const COUNTS_PATH: &str = "/timers/counts";
pub const PER_MINUTE_PATH: &str = "/deliveries/per-minute";

pub fn counts_json(c: &TimerCounts) -> Value {
    json!({
        "scheduled": c.scheduled,
        "fired": c.fired,
        "settled": c.settled,
        "failed": c.failed,
        "cancelled": c.cancelled,
        "capped": c.capped,
        "cap": MAX_COUNTED_PER_STATUS,
    })
}

pub fn activity_json(a: &DeliveryActivity) -> Value {
    let minutes: Vec<Value> = a
        .minutes
        .iter()
        .map(|m| {
            json!({"minute": format_us(m.start_us), "succeeded": m.succeeded,
                   "retried": m.retried, "dead": m.dead})
        })
        .collect();
    json!({"minutes": minutes, "complete": a.complete})
}

pub async fn counts(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    if let Some((k, _)) =
        url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()).next()
    {
        return Err(ApiError::field(
            &k,
            "is not a query parameter: this endpoint takes none",
        ));
    }
    let c = st
        .kernel_call(st.kernel.timer_counts(caller.tenant_id()))
        .await?;
    Ok(json_response(StatusCode::OK, &counts_json(&c)))
}

/// `minutes`: 1 to [`MAX_ACTIVITY_MINUTES`], 60 when absent or empty.
fn minutes_param(v: Option<&str>) -> ApiResult<u32> {
    let refuse = || {
        ApiError::field(
            "minutes",
            format!("must be a whole number of minutes from 1 to {MAX_ACTIVITY_MINUTES}, like 60"),
        )
    };
    match v {
        None | Some("") => Ok(MAX_ACTIVITY_MINUTES),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=MAX_ACTIVITY_MINUTES).contains(m))
            .ok_or_else(refuse),
    }
}

pub async fn per_minute(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = query_params(raw.as_deref(), &["minutes"])?;
    let minutes = minutes_param(params.get("minutes"))?;
    let a = st
        .kernel_call(st.kernel.delivery_activity(caller.tenant_id(), minutes))
        .await?;
    Ok(json_response(StatusCode::OK, &activity_json(&a)))
}

pub fn routes() -> Vec<RouteSpec> {
    let read = Access::Read;
    vec![
        r(
            Method::GET,
            COUNTS_PATH,
            read,
            get(counts),
            op(
                "countTimers",
                "timers",
                "The tenant's timers by status",
                read,
                vec![ok("200", "Counts by status", "TimerCounts")],
                json!({}),
            ),
        ),
        r(
            Method::GET,
            PER_MINUTE_PATH,
            read,
            get(per_minute),
            op(
                "deliveriesPerMinute",
                "timers",
                "The tenant's delivery outcomes per minute, over the last hour at most",
                read,
                vec![ok(
                    "200",
                    "Outcomes per minute, oldest first",
                    "DeliveriesPerMinute",
                )],
                json!({"parameters": [
                    query("minutes", &format!("How many minutes, the current one last (1 to {MAX_ACTIVITY_MINUTES}; default and empty: {MAX_ACTIVITY_MINUTES})"),
                          json!({"type": "string", "pattern": "^([1-9]|[1-5][0-9]|60)?$"}))]}),
            ),
        ),
    ]
}

pub fn schemas() -> serde_json::Map<String, Value> {
    let count = |what: &str| {
        json!({"type": "integer", "minimum": 0, "maximum": MAX_COUNTED_PER_STATUS,
               "description": format!("Timers {what} (at most `cap`)")})
    };
    let v = json!({
        "TimerCounts": {"type": "object", "additionalProperties": false,
            "description": format!("Read from an index of the store, never the timers themselves; each count stops at {MAX_COUNTED_PER_STATUS} (then `capped` is true)"),
            "required": ["scheduled", "fired", "settled", "failed", "cancelled", "capped", "cap"],
            "properties": {
                "scheduled": count("waiting to fire"),
                "fired": count("fired whose deliveries are still running"),
                "settled": count("whose every action succeeded"),
                "failed": count("with an action that failed for good"),
                "cancelled": count("cancelled before they fired"),
                "capped": {"type": "boolean", "description": "A count stopped at `cap`: that status has at least that many timers"},
                "cap": {"type": "integer", "const": MAX_COUNTED_PER_STATUS, "description": "The most timers counted per status"}}},
        "DeliveriesPerMinute": {"type": "object", "additionalProperties": false,
            "required": ["minutes", "complete"],
            "properties": {
                "minutes": {"type": "array", "maxItems": MAX_ACTIVITY_MINUTES, "items": schema_minute()},
                "complete": {"type": "boolean", "description": format!("False when the window held more than {MAX_ACTIVITY_EVENTS_SCANNED} events of the whole log: the most recent ones were counted, the oldest minutes may be short")}}},
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn schema_minute() -> Value {
    let n = |d: &str| json!({"type": "integer", "minimum": 0, "description": d});
    json!({"type": "object", "additionalProperties": false,
           "required": ["minute", "succeeded", "retried", "dead"],
           "properties": {
               "minute": {"type": "string", "format": "date-time", "description": "Start of the minute (UTC)"},
               "succeeded": n("Attempts that succeeded (`delivery.attempted` with outcome `succeeded`)"),
               "retried": n("Retries scheduled (`delivery.retrying`: a backoff, an expired lease or a redrive)"),
               "dead": n("Deliveries that died (`delivery.dead`)")}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_one_to_sixty() {
        assert_eq!(minutes_param(None).unwrap(), 60);
        assert_eq!(minutes_param(Some("")).unwrap(), 60);
        assert_eq!(minutes_param(Some("1")).unwrap(), 1);
        for bad in ["0", "61", "-1", "1.5", "x", "99999999999"] {
            let e = minutes_param(Some(bad)).unwrap_err();
            assert_eq!(e.errors[0].field, "minutes", "{bad}");
        }
    }
}
