//! The MCP tools: their names, descriptions (written for a model), input schemas, and
//! how each call becomes REST requests and its answer becomes a tool result (the API's
//! JSON, and for `preview_schedule` a short summary of it as well). The timer tools live
//! here, the schedule tools in [`schedules`]; both share the argument decoding, the id
//! checks and the query encoding below.
//!
//! Arguments are camelCase like the REST API and checked here only as far as shaping a
//! request needs (known fields, types, the MCP-side wait limits, a preview's `count`);
//! everything else — durations, fire times, URLs, labels, cron expressions, time zones,
//! tenant access — is validated by the API, whose sentence is returned as the tool error. This module never reaches another tenant's
//! data by itself: every request carries the caller's key and the API decides.

use std::time::Duration;

use http::Method;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::backend::{ApiReply, ApiRequest};

mod schedules;

pub use schedules::{DEFAULT_PREVIEW_COUNT, MAX_PREVIEW_COUNT};

/// Longest total wait of `wait_for_timer` and longest `sleep`.
pub const MAX_WAIT_TOTAL: Duration = Duration::from_secs(3600);
/// `wait_for_timer` without a `timeout`.
pub const DEFAULT_WAIT_TOTAL: Duration = Duration::from_secs(300);
/// One long-poll of `GET /timers/{id}/wait`; progress is reported between slices.
pub const WAIT_SLICE: Duration = Duration::from_secs(20);
/// How long `sleep` keeps waiting after the fire time before it answers anyway.
pub const SLEEP_GRACE: Duration = Duration::from_secs(60);
/// Longest timer or schedule id accepted before the API is asked (ids are 36-character
/// UUIDs).
pub const MAX_ID_CHARS: usize = 64;
/// Requester recorded on timers created through MCP when the caller names none.
pub const REQUESTED_BY: &str = "mcp";

/// A tool call that did not succeed: the sentence a model reads, and the API's problem
/// document when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub message: String,
    pub problem: Option<Value>,
}

impl ToolError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            problem: None,
        }
    }

    /// An error about one argument, named first so the caller knows what to fix.
    pub fn field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(format!("{field}: {message}"))
    }

    /// The API's problem+json answer, as one sentence with the fields it names.
    pub fn from_reply(reply: &ApiReply) -> Self {
        let detail = reply
            .body
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| match &reply.body {
                Value::String(s) if !s.is_empty() => s.chars().take(500).collect(),
                _ => format!("MINOOTS answered HTTP {}", reply.status),
            });
        let mut message = detail;
        let fields: Vec<String> = reply
            .body
            .get("errors")
            .and_then(Value::as_array)
            .map(|errs| {
                errs.iter()
                    .filter_map(|e| {
                        let field = e.get("field")?.as_str()?;
                        let msg = e.get("message")?.as_str()?;
                        Some(format!("{field}: {msg}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for f in fields {
            if !message.contains(&f) {
                message.push_str(&format!(" ({f})"));
            }
        }
        if reply.status == 404 && !message.to_ascii_lowercase().contains("not found") {
            message = format!("not found: {message}");
        }
        Self {
            message,
            problem: reply.body.is_object().then(|| reply.body.clone()),
        }
    }
}

/// A step a tool asks its runner to take.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// One API request; its answer is the result.
    Single(ApiRequest),
    /// Long-poll the timer until it is no longer scheduled or `total` passes.
    Wait { id: String, total: Duration },
    /// Create a timer with this body, then wait for it up to `total`.
    Sleep { body: Value, total: Duration },
    /// One API request whose success has no body (204 No Content); `answer` is the result.
    NoContent { req: ApiRequest, answer: Value },
}

impl PartialEq for ApiRequest {
    fn eq(&self, o: &Self) -> bool {
        self.method == o.method
            && self.path_and_query == o.path_and_query
            && self.body == o.body
            && self.wait == o.wait
    }
}

fn schema(v: Value) -> JsonObject {
    match v {
        Value::Object(o) => o,
        _ => unreachable!("tool schemas are JSON objects"),
    }
}

const ID_DESCRIPTION: &str = "The timer id (a UUID such as 0193a0c4-8f1e-7cc3-9d0e-3f1b2a4c5d6e) from create_timer or list_timers.";

fn id_only(description: &'static str) -> JsonObject {
    schema(json!({
        "type": "object",
        "properties": {"id": {"type": "string", "maxLength": MAX_ID_CHARS, "description": description}},
        "required": ["id"],
        "additionalProperties": false
    }))
}

fn annotations(read_only: bool, destructive: bool, idempotent: bool) -> ToolAnnotations {
    ToolAnnotations::from_raw(
        None,
        Some(read_only),
        Some(destructive),
        Some(idempotent),
        Some(false),
    )
}

/// Every tool, in the order they are listed.
pub fn definitions() -> Vec<Tool> {
    let duration_text = "How long from now: \"20m\", \"1h30m\", \"30s\", \"500ms\", ISO 8601 \"PT20M\", or a number of milliseconds.";
    let mut out = vec![
        Tool::new(
            "create_timer",
            "Schedule a durable timer that fires once after `duration` or at `fireAt` (give exactly one). \
             Use it for reminders (\"remind me in 20 minutes\"), timeouts, follow-ups and scheduled calls. \
             With `webhookUrl`, MINOOTS POSTs the timer as JSON to that URL when it fires (signed, retried); \
             `actionBundle` gives full control (several actions, method, headers, body, retry policy) and \
             replaces `webhookUrl`. Without either, the timer only fires events, which is enough to \
             wait_for_timer on it. Returns the timer; keep its `id`. The timer survives restarts of \
             MINOOTS and of this agent.",
            schema(json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 200, "description": "A short name that says what the timer is for, e.g. \"check-build-123\". Generated when absent."},
                    "duration": {"type": ["string", "integer"], "description": duration_text},
                    "fireAt": {"type": "string", "format": "date-time", "description": "When to fire, as RFC 3339 with a time zone, e.g. \"2026-11-27T09:00:00Z\" or \"2026-11-27T09:00:00+01:00\". Must be in the future."},
                    "webhookUrl": {"type": "string", "format": "uri", "description": "An https URL to POST to when the timer fires."},
                    "actionBundle": {"type": "object", "description": "Instead of webhookUrl: {\"actions\": [{\"type\": \"webhook\", \"url\": \"...\", \"method\": \"POST\", \"headers\": {}, \"body\": {}}], \"retryPolicy\": {\"maxAttempts\": 8}} as in the MINOOTS REST API."},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "String labels to find the timer again with list_timers, e.g. {\"project\": \"web\"}."},
                    "metadata": {"type": "object", "description": "Any JSON kept with the timer and sent with its webhook, e.g. what to do when it fires."},
                    "idempotencyKey": {"type": "string", "maxLength": 256, "description": "Optional: the same key again returns the timer created the first time instead of a second one."}
                },
                "additionalProperties": false
            })),
        )
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            "get_timer",
            "Get one timer by id: its status (scheduled, fired, settled, failed, cancelled), fire time, \
             when it fired and how late, labels and metadata.",
            id_only(ID_DESCRIPTION),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "list_timers",
            "List this account's timers in fire-time order, optionally only one status or one label. \
             Returns {\"timers\": [...], \"nextCursor\": ...}; pass nextCursor back as `cursor` for the next page.",
            schema(json!({
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["scheduled", "fired", "settled", "failed", "cancelled"], "description": "Only timers with this status."},
                    "label": {"type": "string", "description": "Only timers with this label, written key:value, e.g. \"project:web\"."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "Page size, 1 to 500 (default 50)."},
                    "cursor": {"type": "string", "description": "nextCursor from the previous page."}
                },
                "additionalProperties": false
            })),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "cancel_timer",
            "Cancel a scheduled timer so it never fires. Fails if it already fired or was cancelled. \
             Returns the cancelled timer.",
            schema(json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "maxLength": MAX_ID_CHARS, "description": ID_DESCRIPTION},
                    "reason": {"type": "string", "maxLength": 500, "description": "Why, kept with the timer."}
                },
                "required": ["id"],
                "additionalProperties": false
            })),
        )
        .with_annotations(annotations(false, true, false)),
        Tool::new(
            "reschedule_timer",
            "Move a scheduled timer to a new time: give `duration` (from now) or `fireAt`, and the \
             timer's `version` as you last read it (from create_timer, get_timer or list_timers). Fails \
             if the timer changed since (read it again and retry with its new version), already fired \
             or was cancelled. Returns the timer with its new fire time and version.",
            schema(json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "maxLength": MAX_ID_CHARS, "description": ID_DESCRIPTION},
                    "version": {"type": "integer", "minimum": 1, "description": "The timer's `version` as you last read it."},
                    "duration": {"type": ["string", "integer"], "description": duration_text},
                    "fireAt": {"type": "string", "format": "date-time", "description": "The new fire time, as RFC 3339 with a time zone, e.g. \"2026-11-27T09:00:00Z\". Must be in the future."}
                },
                "required": ["id", "version"],
                "additionalProperties": false
            })),
        )
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            "fire_timer_now",
            "Fire a scheduled timer now instead of at its fire time: its actions run (webhook and so on) \
             as when it fires on its own. Fails if it already fired or was cancelled. Returns the fired timer.",
            id_only(ID_DESCRIPTION),
        )
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            "wait_for_timer",
            "Block until the timer is no longer scheduled (it fired or was cancelled) or `timeout` passes, \
             then return the timer. Check `status`: still \"scheduled\" means the timeout passed first. \
             Reports progress while waiting. The timeout is at most 1 hour (default 5 minutes); for longer \
             waits call it again.",
            schema(json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "maxLength": MAX_ID_CHARS, "description": ID_DESCRIPTION},
                    "timeout": {"type": ["string", "integer"], "description": "How long to wait at most: \"10m\", \"90s\", or milliseconds. At most 1 hour; default 5 minutes."}
                },
                "required": ["id"],
                "additionalProperties": false
            })),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "sleep",
            "Pause for `duration` (at most 1 hour) without holding a process: creates a timer and waits \
             until it fires, reporting progress, then returns the fired timer. Use it to \"wait 10 minutes, \
             then check again\".",
            schema(json!({
                "type": "object",
                "properties": {
                    "duration": {"type": ["string", "integer"], "description": format!("{duration_text} At most 1 hour.")}
                },
                "required": ["duration"],
                "additionalProperties": false
            })),
        )
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            "list_deliveries",
            "Show what happened when a timer fired: each action's delivery (pending, in_flight, succeeded, \
             dead) with every attempt's time, HTTP status or exit code, error and duration.",
            id_only(ID_DESCRIPTION),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "redrive_timer",
            "Retry a failed timer: its dead deliveries (actions that exhausted their retries) are queued \
             again. Use after fixing the webhook receiver. Returns the timer.",
            id_only(ID_DESCRIPTION),
        )
        .with_annotations(annotations(false, false, false)),
    ];
    out.extend(schedules::definitions());
    for t in &mut out {
        t.title = Some(t.name.replace('_', " "));
    }
    out
}

/// Decodes a tool's arguments, naming the argument at fault.
fn args<T: DeserializeOwned>(arguments: Option<JsonObject>) -> Result<T, ToolError> {
    let value = Value::Object(arguments.unwrap_or_default());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            ToolError::new(format!("arguments: {inner}"))
        } else {
            ToolError::field(&path, inner)
        }
    })
}

/// The path segment of the id of a `what` (timer, schedule): checked for length,
/// percent-encoded.
fn id_segment(what: &str, id: &str) -> Result<String, ToolError> {
    let id = id.trim();
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(ToolError::field(
            "id",
            format!("must be a {what} id of 1 to {MAX_ID_CHARS} characters"),
        ));
    }
    Ok(url::form_urlencoded::byte_serialize(id.as_bytes()).collect())
}

/// `path` with the given query parameters, in order, encoded; absent ones left out.
fn query_path(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

/// The `actionBundle` of a create: `webhookUrl` as a one-webhook bundle, or the bundle
/// given; both at once is an error.
fn action_bundle(
    webhook_url: Option<String>,
    bundle: Option<Value>,
) -> Result<Option<Value>, ToolError> {
    match (webhook_url, bundle) {
        (Some(_), Some(_)) => Err(ToolError::field(
            "webhookUrl",
            "give either webhookUrl or actionBundle, not both",
        )),
        (Some(url), None) => Ok(Some(json!({"actions": [{"type": "webhook", "url": url}]}))),
        (None, bundle) => Ok(bundle),
    }
}

/// A duration argument (`timeout`, `duration`) as a bounded [`Duration`].
fn bounded_duration(field: &str, v: &Value, max: Duration) -> Result<Duration, ToolError> {
    let ms = match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| ToolError::field(field, "must be a whole number of milliseconds"))?,
        Value::String(s) => {
            minoots_core::duration::parse_duration_ms(s).map_err(|m| ToolError::field(field, m))?
        }
        _ => {
            return Err(ToolError::field(
                field,
                "must be a duration like \"20m\" or a number of milliseconds",
            ));
        }
    };
    if ms < 0 || ms as u128 > max.as_millis() {
        return Err(ToolError::field(
            field,
            format!("must be between 0 and {} s", max.as_secs()),
        ));
    }
    Ok(Duration::from_millis(ms as u64))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateArgs {
    name: Option<String>,
    duration: Option<Value>,
    fire_at: Option<Value>,
    webhook_url: Option<String>,
    action_bundle: Option<Value>,
    labels: Option<Value>,
    metadata: Option<Value>,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    status: Option<String>,
    label: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelArgs {
    id: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RescheduleArgs {
    id: String,
    version: Value,
    duration: Option<Value>,
    fire_at: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    id: String,
    timeout: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepArgs {
    duration: Value,
}

/// A request the server answers without waiting on purpose.
fn request(method: Method, path_and_query: String, body: Option<Value>) -> ApiRequest {
    ApiRequest {
        method,
        path_and_query,
        body,
        wait: Duration::ZERO,
    }
}

fn single(method: Method, path_and_query: String, body: Option<Value>) -> Plan {
    Plan::Single(request(method, path_and_query, body))
}

/// What the tool `name` must do with `arguments`; `None` for an unknown tool.
pub fn plan(name: &str, arguments: Option<JsonObject>) -> Option<Result<Plan, ToolError>> {
    Some(match name {
        "create_timer" => args::<CreateArgs>(arguments)
            .and_then(create_body)
            .map(|body| single(Method::POST, "/timers".into(), Some(body))),
        "get_timer" => args::<IdArgs>(arguments)
            .and_then(|a| id_segment("timer", &a.id))
            .map(|id| single(Method::GET, format!("/timers/{id}"), None)),
        "list_timers" => args::<ListArgs>(arguments).map(|a| {
            let limit = a.limit.map(|n| n.to_string());
            let path = query_path(
                "/timers",
                &[
                    ("status", a.status.as_deref()),
                    ("label", a.label.as_deref()),
                    ("limit", limit.as_deref()),
                    ("cursor", a.cursor.as_deref()),
                ],
            );
            single(Method::GET, path, None)
        }),
        "cancel_timer" => args::<CancelArgs>(arguments).and_then(|a| {
            let id = id_segment("timer", &a.id)?;
            let body = match a.reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            };
            Ok(single(
                Method::POST,
                format!("/timers/{id}/cancel"),
                Some(body),
            ))
        }),
        "reschedule_timer" => args::<RescheduleArgs>(arguments).and_then(|a| {
            let id = id_segment("timer", &a.id)?;
            // The API checks the version, the duration and the fire time, and names the
            // field at fault; here they are only passed on.
            let mut body = json!({"version": a.version});
            if let Some(d) = a.duration {
                body["duration"] = d;
            }
            if let Some(at) = a.fire_at {
                body["fireAt"] = at;
            }
            Ok(single(Method::PATCH, format!("/timers/{id}"), Some(body)))
        }),
        "fire_timer_now" => args::<IdArgs>(arguments)
            .and_then(|a| id_segment("timer", &a.id))
            .map(|id| single(Method::POST, format!("/timers/{id}/fire"), None)),
        "wait_for_timer" => args::<WaitArgs>(arguments).and_then(|a| {
            let id = id_segment("timer", &a.id)?;
            let total = match &a.timeout {
                None => DEFAULT_WAIT_TOTAL,
                Some(v) => bounded_duration("timeout", v, MAX_WAIT_TOTAL)?,
            };
            Ok(Plan::Wait { id, total })
        }),
        "sleep" => args::<SleepArgs>(arguments).and_then(|a| {
            let d = bounded_duration("duration", &a.duration, MAX_WAIT_TOTAL)?;
            Ok(Plan::Sleep {
                body: json!({
                    "name": "sleep",
                    "requestedBy": REQUESTED_BY,
                    "duration": d.as_millis() as u64,
                }),
                total: d + SLEEP_GRACE,
            })
        }),
        "list_deliveries" => args::<IdArgs>(arguments)
            .and_then(|a| id_segment("timer", &a.id))
            .map(|id| single(Method::GET, format!("/timers/{id}/deliveries"), None)),
        "redrive_timer" => args::<IdArgs>(arguments)
            .and_then(|a| id_segment("timer", &a.id))
            .map(|id| single(Method::POST, format!("/timers/{id}/redrive"), None)),
        _ => return schedules::plan(name, arguments),
    })
}

/// The `POST /timers` body of a `create_timer` call.
fn create_body(a: CreateArgs) -> Result<Value, ToolError> {
    let mut body = serde_json::Map::new();
    body.insert("requestedBy".into(), json!(REQUESTED_BY));
    let action_bundle = action_bundle(a.webhook_url, a.action_bundle)?;
    let fields = [
        ("name", a.name.map(Value::String)),
        ("duration", a.duration),
        ("fireAt", a.fire_at),
        ("actionBundle", action_bundle),
        ("labels", a.labels),
        ("metadata", a.metadata),
        ("idempotencyKey", a.idempotency_key.map(Value::String)),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    }
    Ok(Value::Object(body))
}

/// The text a model reads first for the tool `name`'s answer, when a sentence says more
/// than the JSON alone: for `preview_schedule`, how many runs, their span, the time-zone
/// database and the runs moved past a DST gap. `None`: the JSON is the text.
pub fn summary(name: &str, answer: &Value) -> Option<String> {
    match name {
        "preview_schedule" => schedules::preview_summary(answer),
        _ => None,
    }
}

/// The long-poll request for one wait slice of at most `slice`.
pub fn wait_request(id: &str, slice: Duration) -> ApiRequest {
    ApiRequest {
        method: Method::GET,
        path_and_query: format!("/timers/{id}/wait?timeout={}ms", slice.as_millis()),
        body: None,
        wait: slice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Option<JsonObject> {
        Some(schema(v))
    }

    #[test]
    fn every_tool_has_an_object_schema_and_a_plan() {
        let tools = definitions();
        assert_eq!(tools.len(), 19);
        for t in &tools {
            assert_eq!(t.input_schema.get("type"), Some(&json!("object")));
            assert!(t.description.as_ref().is_some_and(|d| d.len() > 40));
            assert!(plan(&t.name, None).is_some(), "{} has no plan", t.name);
        }
        assert!(plan("drop_tables", None).is_none());
    }

    #[test]
    fn create_maps_camel_case_arguments_to_the_rest_body() {
        let p = plan(
            "create_timer",
            obj(json!({"name": "n", "duration": "20m", "webhookUrl": "https://example.com/h", "labels": {"a": "b"}})),
        )
        .unwrap()
        .unwrap();
        let Plan::Single(req) = p else { panic!() };
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path_and_query, "/timers");
        let body = req.body.unwrap();
        assert_eq!(body["duration"], "20m");
        assert_eq!(
            body["actionBundle"]["actions"][0]["url"],
            "https://example.com/h"
        );
        assert_eq!(body["requestedBy"], REQUESTED_BY);
        assert_eq!(body["labels"]["a"], "b");
    }

    #[test]
    fn reschedule_and_fire_now_become_patch_and_fire_requests() {
        let p = plan(
            "reschedule_timer",
            obj(json!({"id": "t-1", "version": 3, "fireAt": "2026-11-27T09:00:00Z"})),
        )
        .unwrap()
        .unwrap();
        let Plan::Single(req) = p else { panic!() };
        assert_eq!(
            (req.method, req.path_and_query.as_str()),
            (Method::PATCH, "/timers/t-1")
        );
        assert_eq!(
            req.body,
            Some(json!({"version": 3, "fireAt": "2026-11-27T09:00:00Z"}))
        );
        let p = plan("fire_timer_now", obj(json!({"id": "t-1"})))
            .unwrap()
            .unwrap();
        let Plan::Single(req) = p else { panic!() };
        assert_eq!(
            (req.method, req.path_and_query.as_str(), req.body),
            (Method::POST, "/timers/t-1/fire", None)
        );
        let e = plan(
            "reschedule_timer",
            obj(json!({"id": "t-1", "duration": "1h"})),
        )
        .unwrap()
        .unwrap_err();
        assert!(e.message.contains("version"), "{}", e.message);
    }

    #[test]
    fn bad_arguments_name_the_field() {
        let e = plan("create_timer", obj(json!({"duraton": "1s"})))
            .unwrap()
            .unwrap_err();
        assert!(e.message.contains("duraton"), "{}", e.message);
        let e = plan(
            "create_timer",
            obj(json!({"webhookUrl": "https://a", "actionBundle": {"actions": []}})),
        )
        .unwrap()
        .unwrap_err();
        assert!(e.message.starts_with("webhookUrl:"), "{}", e.message);
        let e = plan("wait_for_timer", obj(json!({"id": "x", "timeout": "2h"})))
            .unwrap()
            .unwrap_err();
        assert!(e.message.starts_with("timeout:"), "{}", e.message);
        let e = plan("sleep", obj(json!({"duration": "soon"})))
            .unwrap()
            .unwrap_err();
        assert!(e.message.starts_with("duration:"), "{}", e.message);
        let e = plan("get_timer", obj(json!({"id": 7})))
            .unwrap()
            .unwrap_err();
        assert!(e.message.starts_with("id:"), "{}", e.message);
        let e = plan("get_timer", obj(json!({"id": "x".repeat(65)})))
            .unwrap()
            .unwrap_err();
        assert!(e.message.starts_with("id:"), "{}", e.message);
    }

    #[test]
    fn ids_and_queries_are_encoded() {
        let Plan::Single(req) = plan("get_timer", obj(json!({"id": "../admin/keys"})))
            .unwrap()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(req.path_and_query, "/timers/..%2Fadmin%2Fkeys");
        let Plan::Single(req) = plan(
            "list_timers",
            obj(json!({"label": "a:b&c", "limit": 5, "status": "fired"})),
        )
        .unwrap()
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            req.path_and_query,
            "/timers?status=fired&label=a%3Ab%26c&limit=5"
        );
    }

    #[test]
    fn waits_are_bounded() {
        let Plan::Wait { total, .. } = plan("wait_for_timer", obj(json!({"id": "x"})))
            .unwrap()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(total, DEFAULT_WAIT_TOTAL);
        let Plan::Sleep { total, body } = plan("sleep", obj(json!({"duration": "1s"})))
            .unwrap()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(total, Duration::from_secs(1) + SLEEP_GRACE);
        assert_eq!(body["duration"], 1000);
        assert!(
            plan("sleep", obj(json!({"duration": "1h1s"})))
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn api_problems_become_one_sentence() {
        let reply = ApiReply {
            status: 400,
            body: json!({"detail": "the request is invalid", "errors": [{"field": "duration", "message": "is empty"}]}),
        };
        let e = ToolError::from_reply(&reply);
        assert_eq!(e.message, "the request is invalid (duration: is empty)");
        assert!(e.problem.is_some());
        let e = ToolError::from_reply(&ApiReply {
            status: 404,
            body: json!({"detail": "no such timer"}),
        });
        assert!(e.message.starts_with("not found"), "{}", e.message);
    }
}
