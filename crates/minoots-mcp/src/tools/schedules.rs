//! The schedule tools: preview a spec, create, list, read, pause, resume, delete and
//! trigger schedules, and read their run records — each one REST request under
//! `/schedules` (API.md, "Schedules"), with descriptions that tell a model what a slot, a
//! run and a catch-up are.
//!
//! As for the timer tools, arguments are only shaped here (known fields, types, a preview's
//! `count`); the spec — cron grammar, zone, intervals against the tier, misfire and overlap
//! settings, actions — is validated by the API, whose sentence comes back as the tool
//! error. This module never builds a request the caller's key could not send itself.

use http::Method;
use rmcp::model::{JsonObject, Tool};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    IdArgs, ListArgs, Plan, ToolError, action_bundle, annotations, args, id_segment, query_path,
    schema, single,
};

/// Runs `preview_schedule` returns when the call gives no `count` (as the API's default).
pub const DEFAULT_PREVIEW_COUNT: usize = minoots_control_plane::schedules::DEFAULT_PREVIEW_COUNT;
/// Most runs one `preview_schedule` returns (the API's bound).
pub const MAX_PREVIEW_COUNT: usize = minoots_core::schedule::MAX_PREVIEW_COUNT;
/// Gap-shifted runs named one by one in a preview's summary; more are only counted.
const MAX_SUMMARY_SHIFTED: usize = 3;

const SCHEDULE_ID_DESCRIPTION: &str = "The schedule id (a UUID such as 0193a0c4-8f1e-7cc3-9d0e-3f1b2a4c5d6e) from create_schedule or list_schedules.";

/// The properties a spec shares between `preview_schedule` and `create_schedule`.
fn spec_properties() -> Map<String, Value> {
    let properties = json!({
        "cron": {"type": "string", "maxLength": minoots_core::schedule::cron::MAX_CRON_BYTES, "description": "A cron expression of 5, 6 or 7 fields: [second] minute hour day-of-month month day-of-week [year], e.g. \"0 30 2 * * *\" (02:30:00 daily), \"0 9 * * MON-FRI\" (09:00 on weekdays); L, W, # and @daily-style macros work. Read in `timezone`. Give cron or every, not both."},
        "every": {"type": ["string", "integer"], "description": "Instead of cron: a fixed interval in whole seconds, e.g. \"15m\", \"1h\", or milliseconds. Runs are at the Unix epoch + n·every + phase; DST never moves them."},
        "phase": {"type": ["string", "integer"], "description": "With every: the offset of its runs from the epoch, shorter than every, e.g. \"7m\"."},
        "timezone": {"type": "string", "maxLength": 64, "description": "The IANA time zone the cron expression is read in, e.g. \"America/New_York\" (default UTC). A local time skipped by a DST jump fires at the end of the gap; one repeated when clocks fall back fires once."},
        "startAt": {"type": "string", "format": "date-time", "description": "No runs before this RFC 3339 time, e.g. \"2026-12-01T00:00:00Z\"."},
        "endAt": {"type": "string", "format": "date-time", "description": "No runs after this RFC 3339 time (inclusive); past it the schedule is completed."},
        "jitter": {"type": ["string", "integer"], "description": "Delay each run by up to this (\"30s\"), a delay that is the same for a run every time and never early; spreads load."}
    });
    match properties {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

/// An object schema of `properties`, no others allowed.
fn object(properties: Map<String, Value>, required: &[&str]) -> JsonObject {
    let mut o = schema(json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    }));
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    o
}

fn id_property() -> Value {
    json!({"type": "string", "maxLength": super::MAX_ID_CHARS, "description": SCHEDULE_ID_DESCRIPTION})
}

fn id_only() -> JsonObject {
    object(Map::from_iter([("id".to_string(), id_property())]), &["id"])
}

/// `limit` and `cursor` of a paged list of `what`.
fn paging_properties(what: &str) -> Map<String, Value> {
    match json!({
        "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": format!("How many {what} per page, 1 to 500 (default 50).")},
        "cursor": {"type": "string", "description": "nextCursor from the previous page, unchanged."}
    }) {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

/// The schedule tools, in the order they are listed.
pub(super) fn definitions() -> Vec<Tool> {
    let mut preview = spec_properties();
    preview.insert("from".into(), json!({"type": "string", "format": "date-time", "description": "List runs at or after this RFC 3339 time, e.g. \"2026-03-07T12:00:00Z\" (default now)."}));
    preview.insert("count".into(), json!({"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW_COUNT, "description": "How many runs, 1 to 1000 (default 10)."}));

    let mut create = spec_properties();
    let extra = json!({
        "name": {"type": "string", "maxLength": minoots_core::limits::MAX_NAME_BYTES, "description": "A short name that says what the schedule is for, e.g. \"nightly-report\"; each run's timer carries it. Generated when absent."},
        "maxRuns": {"type": "integer", "minimum": 1, "maximum": minoots_core::schedule::spec::MAX_MAX_RUNS, "description": "Stop after this many runs have fired; the schedule is then completed."},
        "misfire": {
            "type": "object",
            "additionalProperties": false,
            "description": "What to do with runs missed while MINOOTS was down. Default: fire only the newest missed run, if it is less than 1 hour old.",
            "properties": {
                "policy": {"type": "string", "enum": ["latest", "all", "none"], "description": "latest (default): fire the newest missed run; all: fire up to maxBurst missed runs, oldest first; none: fire none."},
                "window": {"type": ["string", "integer"], "description": "Missed runs older than this are never fired (default \"1h\", at most 366 days)."},
                "maxBurst": {"type": "integer", "minimum": 1, "maximum": minoots_core::schedule::spec::MAX_MAX_BURST, "description": "With policy all: most missed runs fired at once (default 100)."}
            }
        },
        "overlap": {"type": "string", "enum": ["skip", "bufferOne", "bufferAll", "cancelOther", "allowAll"], "description": "What to do when a run is due while the previous run is still active (its actions not finished): skip (default) records it skipped; bufferOne keeps the first waiting run (newer ones are skipped) and fires it when the active one ends; bufferAll keeps up to 100 in order; cancelOther cancels the active run if its timer has not fired yet, then fires (a run already delivering is not interrupted); allowAll fires regardless."},
        "webhookUrl": {"type": "string", "format": "uri", "description": "An https URL to POST to at every run (signed, retried; headers x-minoots-schedule-id and x-minoots-scheduled-at name the schedule and the run's slot)."},
        "actionBundle": {"type": "object", "description": "Instead of webhookUrl: {\"actions\": [{\"type\": \"webhook\", \"url\": \"...\", \"method\": \"POST\", \"headers\": {}, \"body\": {}}], \"retryPolicy\": {\"maxAttempts\": 8}} as for timers in the MINOOTS REST API; every run executes it."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "String labels, e.g. {\"project\": \"web\"}; kept on the schedule and on each run's timer."},
        "metadata": {"type": "object", "description": "Any JSON kept with the schedule and sent with each run's webhook."}
    });
    if let Value::Object(extra) = extra {
        create.extend(extra);
    }

    let mut list = match json!({
        "status": {"type": "string", "enum": ["active", "paused", "completed"], "description": "Only schedules with this status."},
        "label": {"type": "string", "description": "Only schedules with this label, written key:value, e.g. \"project:web\"."}
    }) {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    };
    list.extend(paging_properties("schedules"));

    let mut runs = Map::from_iter([("id".to_string(), id_property())]);
    runs.extend(paging_properties("run records"));

    let mut resume = Map::from_iter([("id".to_string(), id_property())]);
    resume.insert("catchUp".into(), json!({"type": "boolean", "default": false, "description": "false (default): runs missed while paused are not fired; the schedule goes on from its next run. true: runs missed while paused within misfire.window are fired now as the schedule's misfire policy says (latest: only the newest; all: up to maxBurst)."}));

    vec![
        Tool::new(
            "preview_schedule",
            "Show when a recurring schedule would fire, without creating anything: the next `count` runs \
             (default 10, at most 1000) of a cron expression or a fixed interval (give exactly one of \
             `cron` and `every`), at or after `from` (default now). Each run has `at` (the instant, UTC), \
             `local` (the same instant in `timezone`, with its offset), `dst` (\"gapShifted\" when the named \
             local time did not exist that day because clocks jumped forward, so the run moved to the \
             first instant after the gap; otherwise null) and `fireAt` (`at` plus the `jitter` delay). \
             Use it to check an expression, a time zone or a DST transition before create_schedule.",
            object(preview, &[]),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "create_schedule",
            "Create a recurring schedule: at every slot of a cron expression (read in `timezone`, DST \
             handled) or of a fixed interval `every` — give exactly one — MINOOTS fires a run: an ordinary \
             timer that executes the schedule's actions (`webhookUrl` or `actionBundle`; without either, \
             runs only produce events). Runs survive restarts; each slot fires at most once. Check the \
             expression with preview_schedule first. Returns the schedule: keep its `id`; `nextRunAt` is \
             its next slot, `status` is active. The account's tier bounds the number of schedules and the \
             shortest interval between runs (free: 5 schedules, 60 s); a refusal names the field to fix.",
            object(create, &[]),
        )
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            "list_schedules",
            "List this account's schedules, optionally only one status (active, paused, completed) or one \
             label. Each has its spec (cron or every, timezone), status, nextRunAt and runsFired. Returns \
             {\"schedules\": [...], \"nextCursor\": ...}; pass nextCursor back as `cursor` for the next page.",
            object(list, &[]),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "get_schedule",
            "Get one schedule by id: its spec, status (active, paused, completed), nextRunAt (null when no \
             run is left), runsFired, labels, metadata and version.",
            id_only(),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "list_schedule_runs",
            "Show what a schedule did at each of its slots, oldest first: one record per slot with \
             `scheduledAt` (the slot), `status` (fired; skipped; buffered = waiting for the active run to \
             end), `reason` when skipped (paused, overlap, catchupExpired, superseded, maxRuns), `timerId` \
             of the run's timer when it fired (get_timer and list_deliveries show how it went) and \
             `fireAt`. Returns {\"runs\": [...], \"nextCursor\": ...}; pass nextCursor back as `cursor` for \
             newer records.",
            object(runs, &["id"]),
        )
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            "pause_schedule",
            "Pause a schedule: no run fires until resume_schedule. Every slot that passes while paused is \
             recorded skipped (reason paused) and is not fired later unless you resume with catchUp: true. \
             A run whose timer already fired finishes. Returns the schedule (status paused).",
            id_only(),
        )
        .with_annotations(annotations(false, false, true)),
        Tool::new(
            "resume_schedule",
            "Resume a paused schedule: runs fire again from its next slot. By default the runs missed \
             while it was paused are NOT fired; set catchUp: true to fire them now as the schedule's \
             misfire policy says (by default only the newest one, within misfire.window). Returns the \
             schedule (status active) with its nextRunAt.",
            object(resume, &["id"]),
        )
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            "delete_schedule",
            "Delete a schedule for good: it fires no more runs and is gone from list_schedules and \
             get_schedule. A run whose timer already fired finishes. This cannot be undone; to stop a \
             schedule for a while use pause_schedule. Returns {\"id\": ..., \"deleted\": true}.",
            id_only(),
        )
        .with_annotations(annotations(false, true, true)),
        Tool::new(
            "trigger_schedule",
            "Fire one extra run of a schedule now, outside its slots: its actions execute as at any slot, \
             and its regular slots are unchanged. Returns the run's timer (with scheduleId); \
             wait_for_timer or list_deliveries on its id shows how it went.",
            id_only(),
        )
        .with_annotations(annotations(false, false, false)),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PreviewArgs {
    cron: Option<String>,
    every: Option<Value>,
    phase: Option<Value>,
    timezone: Option<String>,
    start_at: Option<String>,
    end_at: Option<String>,
    jitter: Option<Value>,
    from: Option<String>,
    count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateArgs {
    name: Option<String>,
    cron: Option<String>,
    every: Option<Value>,
    phase: Option<Value>,
    timezone: Option<String>,
    start_at: Option<String>,
    end_at: Option<String>,
    max_runs: Option<Value>,
    misfire: Option<Value>,
    overlap: Option<String>,
    jitter: Option<Value>,
    webhook_url: Option<String>,
    action_bundle: Option<Value>,
    labels: Option<Value>,
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsArgs {
    id: String,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResumeArgs {
    id: String,
    #[serde(default)]
    catch_up: bool,
}

/// The path of the schedule `id`, checked and encoded, with `suffix` (`""`, `"/pause"`).
fn schedule_path(id: &str, suffix: &str) -> Result<String, ToolError> {
    Ok(format!(
        "/schedules/{}{suffix}",
        id_segment("schedule", id)?
    ))
}

/// What the schedule tool `name` must do with `arguments`; `None` for another name.
pub(super) fn plan(name: &str, arguments: Option<JsonObject>) -> Option<Result<Plan, ToolError>> {
    Some(match name {
        "preview_schedule" => args::<PreviewArgs>(arguments).and_then(preview_plan),
        "create_schedule" => args::<CreateArgs>(arguments)
            .and_then(create_body)
            .map(|body| single(Method::POST, "/schedules".into(), Some(body))),
        "list_schedules" => args::<ListArgs>(arguments).map(|a| {
            let limit = a.limit.map(|n| n.to_string());
            let path = query_path(
                "/schedules",
                &[
                    ("status", a.status.as_deref()),
                    ("label", a.label.as_deref()),
                    ("limit", limit.as_deref()),
                    ("cursor", a.cursor.as_deref()),
                ],
            );
            single(Method::GET, path, None)
        }),
        "get_schedule" => args::<IdArgs>(arguments)
            .and_then(|a| schedule_path(&a.id, ""))
            .map(|path| single(Method::GET, path, None)),
        "list_schedule_runs" => args::<RunsArgs>(arguments).and_then(|a| {
            let limit = a.limit.map(|n| n.to_string());
            let path = query_path(
                &schedule_path(&a.id, "/runs")?,
                &[("limit", limit.as_deref()), ("cursor", a.cursor.as_deref())],
            );
            Ok(single(Method::GET, path, None))
        }),
        "pause_schedule" => args::<IdArgs>(arguments)
            .and_then(|a| schedule_path(&a.id, "/pause"))
            .map(|path| single(Method::POST, path, None)),
        "resume_schedule" => args::<ResumeArgs>(arguments).and_then(|a| {
            let path = schedule_path(&a.id, "/resume")?;
            Ok(single(
                Method::POST,
                path,
                Some(json!({"catchUp": a.catch_up})),
            ))
        }),
        // The API answers 204 without a body; the agent gets what happened.
        "delete_schedule" => args::<IdArgs>(arguments).and_then(|a| {
            let path = schedule_path(&a.id, "")?;
            Ok(Plan::NoContent {
                req: super::request(Method::DELETE, path, None),
                answer: json!({"id": a.id.trim(), "deleted": true}),
            })
        }),
        "trigger_schedule" => args::<IdArgs>(arguments)
            .and_then(|a| schedule_path(&a.id, "/trigger"))
            .map(|path| single(Method::POST, path, None)),
        _ => return None,
    })
}

/// The `POST /schedules` body of a `create_schedule` call: the arguments as given, with
/// `webhookUrl` turned into a one-webhook `actionBundle`.
fn create_body(a: CreateArgs) -> Result<Value, ToolError> {
    let fields = [
        ("name", a.name.map(Value::String)),
        ("cron", a.cron.map(Value::String)),
        ("every", a.every),
        ("phase", a.phase),
        ("timezone", a.timezone.map(Value::String)),
        ("startAt", a.start_at.map(Value::String)),
        ("endAt", a.end_at.map(Value::String)),
        ("maxRuns", a.max_runs),
        ("misfire", a.misfire),
        ("overlap", a.overlap.map(Value::String)),
        ("jitter", a.jitter),
        (
            "actionBundle",
            action_bundle(a.webhook_url, a.action_bundle)?,
        ),
        ("labels", a.labels),
        ("metadata", a.metadata),
    ];
    Ok(Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect(),
    ))
}

/// The `POST /schedules/preview?from=&count=` request of a `preview_schedule` call.
fn preview_plan(a: PreviewArgs) -> Result<Plan, ToolError> {
    let count = match a.count {
        None => DEFAULT_PREVIEW_COUNT,
        Some(n) if (1..=MAX_PREVIEW_COUNT as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(ToolError::field(
                "count",
                format!("must be a whole number from 1 to {MAX_PREVIEW_COUNT}"),
            ));
        }
    };
    let count = count.to_string();
    let path = query_path(
        "/schedules/preview",
        &[("from", a.from.as_deref()), ("count", Some(&count))],
    );
    let fields = [
        ("cron", a.cron.map(Value::String)),
        ("every", a.every),
        ("phase", a.phase),
        ("timezone", a.timezone.map(Value::String)),
        ("startAt", a.start_at.map(Value::String)),
        ("endAt", a.end_at.map(Value::String)),
        ("jitter", a.jitter),
    ];
    let body: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect();
    Ok(single(Method::POST, path, Some(Value::Object(body))))
}

/// The sentence before a preview's JSON: how many runs, their span, the time-zone database
/// and the runs moved past a DST gap.
pub(super) fn preview_summary(answer: &Value) -> Option<String> {
    let runs = answer.get("runs").and_then(Value::as_array)?;
    let at = |r: &Value| {
        r.get("at")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let tzdb = answer
        .get("tzdbVersion")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mut text = match (runs.first(), runs.last()) {
        (Some(first), Some(last)) => format!(
            "{} run{} from {} to {} (UTC; time zone database {tzdb}).",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            at(first),
            at(last)
        ),
        _ => format!("No runs at or after `from` (time zone database {tzdb})."),
    };
    let shifted: Vec<&Value> = runs
        .iter()
        .filter(|r| r.get("dst").and_then(Value::as_str) == Some("gapShifted"))
        .collect();
    if !shifted.is_empty() {
        let named: Vec<String> = shifted
            .iter()
            .take(MAX_SUMMARY_SHIFTED)
            .map(|r| {
                let local = r.get("local").and_then(Value::as_str).unwrap_or("?");
                format!("{} (local {local})", at(r))
            })
            .collect();
        let more = shifted.len() - named.len();
        text.push_str(&format!(
            " {} moved past a DST gap (the local time did not exist that day): {}{}.",
            shifted.len(),
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::super::plan as plan_of;
    use super::*;

    fn obj(v: Value) -> Option<JsonObject> {
        Some(schema(v))
    }

    fn request(name: &str, a: Value) -> crate::backend::ApiRequest {
        match plan_of(name, obj(a)).unwrap().unwrap() {
            Plan::Single(req) => req,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn tool(name: &str) -> Tool {
        super::super::definitions()
            .into_iter()
            .find(|t| t.name == name)
            .unwrap()
    }

    /// The tools of this module, in the order they are listed.
    const NAMES: [&str; 9] = [
        "preview_schedule",
        "create_schedule",
        "list_schedules",
        "get_schedule",
        "list_schedule_runs",
        "pause_schedule",
        "resume_schedule",
        "delete_schedule",
        "trigger_schedule",
    ];

    #[test]
    fn every_schedule_tool_is_defined_with_a_plan() {
        let defined: Vec<String> = definitions().iter().map(|t| t.name.to_string()).collect();
        assert_eq!(defined, NAMES);
        for name in NAMES {
            assert!(plan(name, None).is_some(), "{name} has no plan");
        }
        assert!(plan("create_timer", None).is_none());
    }

    #[test]
    fn create_schedule_posts_the_spec_with_the_webhook_as_an_action_bundle() {
        let props = tool("create_schedule").input_schema["properties"]
            .as_object()
            .unwrap()
            .clone();
        for f in [
            "name",
            "cron",
            "every",
            "phase",
            "timezone",
            "startAt",
            "endAt",
            "maxRuns",
            "misfire",
            "overlap",
            "jitter",
            "labels",
            "metadata",
            "actionBundle",
            "webhookUrl",
        ] {
            assert!(props.contains_key(f), "no {f} in the schema");
        }
        let req = request(
            "create_schedule",
            json!({"name": "nightly", "cron": "0 30 2 * * *", "timezone": "America/New_York",
                "maxRuns": 3, "misfire": {"policy": "all", "maxBurst": 5}, "overlap": "bufferOne",
                "jitter": "30s", "labels": {"a": "b"}, "webhookUrl": "https://example.com/h"}),
        );
        assert_eq!(
            (req.method, req.path_and_query.as_str()),
            (Method::POST, "/schedules")
        );
        assert_eq!(
            req.body.unwrap(),
            json!({"name": "nightly", "cron": "0 30 2 * * *", "timezone": "America/New_York",
                "maxRuns": 3, "misfire": {"policy": "all", "maxBurst": 5}, "overlap": "bufferOne",
                "jitter": "30s", "labels": {"a": "b"},
                "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}]}})
        );
        let req = request("create_schedule", json!({"every": "15m", "phase": 420000}));
        assert_eq!(req.body.unwrap(), json!({"every": "15m", "phase": 420000}));
    }

    #[test]
    fn create_schedule_bad_arguments_name_the_field() {
        for (a, field) in [
            (json!({"cron": 5}), "cron:"),
            (json!({"every": "1m", "overlap": 1}), "overlap:"),
            (
                json!({"every": "1m", "webhookUrl": "https://a", "actionBundle": {"actions": []}}),
                "webhookUrl:",
            ),
        ] {
            let e = plan("create_schedule", obj(a.clone()))
                .unwrap()
                .unwrap_err();
            assert!(e.message.starts_with(field), "{a}: {}", e.message);
        }
        let e = plan("create_schedule", obj(json!({"every": "1m", "tz": "UTC"})))
            .unwrap()
            .unwrap_err();
        assert!(e.message.contains("tz"), "{}", e.message);
    }

    #[test]
    fn reads_are_get_requests_with_encoded_ids_and_queries() {
        let req = request("get_schedule", json!({"id": "../admin/keys"}));
        assert_eq!(
            (req.method, req.path_and_query.as_str()),
            (Method::GET, "/schedules/..%2Fadmin%2Fkeys")
        );
        let req = request(
            "list_schedules",
            json!({"status": "paused", "label": "a:b&c", "limit": 5, "cursor": "x"}),
        );
        assert_eq!(
            req.path_and_query,
            "/schedules?status=paused&label=a%3Ab%26c&limit=5&cursor=x"
        );
        assert_eq!(
            request("list_schedules", json!({})).path_and_query,
            "/schedules"
        );
        let req = request(
            "list_schedule_runs",
            json!({"id": "s-1", "limit": 2, "cursor": "-17"}),
        );
        assert_eq!(
            (req.method, req.path_and_query.as_str()),
            (Method::GET, "/schedules/s-1/runs?limit=2&cursor=-17")
        );
        for name in ["list_schedules", "get_schedule", "list_schedule_runs"] {
            let a = tool(name).annotations.unwrap();
            assert_eq!(a.read_only_hint, Some(true), "{name}");
        }
        let e = plan("get_schedule", obj(json!({"id": ""})))
            .unwrap()
            .unwrap_err();
        assert!(e.message.starts_with("id:"), "{}", e.message);
        assert!(e.message.contains("schedule id"), "{}", e.message);
    }

    #[test]
    fn pause_resume_delete_trigger_follow_the_contract() {
        let req = request("pause_schedule", json!({"id": "s-1"}));
        assert_eq!(
            (req.method, req.path_and_query.as_str(), req.body),
            (Method::POST, "/schedules/s-1/pause", None)
        );
        // Without catchUp, resume says false: missed runs are not fired.
        let req = request("resume_schedule", json!({"id": "s-1"}));
        assert_eq!(
            (req.method, req.path_and_query.as_str(), req.body),
            (
                Method::POST,
                "/schedules/s-1/resume",
                Some(json!({"catchUp": false}))
            )
        );
        let req = request("resume_schedule", json!({"id": "s-1", "catchUp": true}));
        assert_eq!(req.body, Some(json!({"catchUp": true})));
        let e = plan(
            "resume_schedule",
            obj(json!({"id": "s-1", "catchUp": "yes"})),
        )
        .unwrap()
        .unwrap_err();
        assert!(e.message.starts_with("catchUp:"), "{}", e.message);
        let Plan::NoContent { req, answer } = plan_of("delete_schedule", obj(json!({"id": "s-1"})))
            .unwrap()
            .unwrap()
        else {
            panic!("delete_schedule is not a no-content plan")
        };
        assert_eq!(
            (req.method, req.path_and_query.as_str(), req.body),
            (Method::DELETE, "/schedules/s-1", None)
        );
        assert_eq!(answer, json!({"id": "s-1", "deleted": true}));
        let req = request("trigger_schedule", json!({"id": "s-1"}));
        assert_eq!(
            (req.method, req.path_and_query.as_str(), req.body),
            (Method::POST, "/schedules/s-1/trigger", None)
        );
        let a = tool("delete_schedule").annotations.unwrap();
        assert_eq!(a.destructive_hint, Some(true));
        let resume = tool("resume_schedule");
        assert!(
            resume.description.as_ref().unwrap().contains("NOT fired"),
            "resume must say that missed runs are not caught up by default"
        );
    }

    #[test]
    fn preview_schedule_is_read_only_and_posts_the_spec_with_from_and_count() {
        let tool = tool("preview_schedule");
        let a = tool.annotations.unwrap();
        assert_eq!(
            (a.read_only_hint, a.destructive_hint, a.idempotent_hint),
            (Some(true), Some(false), Some(true))
        );
        let props = tool.input_schema["properties"].as_object().unwrap();
        for f in [
            "cron", "every", "phase", "timezone", "startAt", "endAt", "jitter", "from", "count",
        ] {
            assert!(props.contains_key(f), "no {f} in the schema");
        }
        assert_eq!(props["count"]["maximum"], 1000);

        let req = request(
            "preview_schedule",
            json!({"cron": "0 30 2 * * *", "timezone": "America/New_York",
                "from": "2026-03-07T12:00:00+01:00", "count": 2, "jitter": "30s", "endAt": "2027-01-01T00:00:00Z"}),
        );
        assert_eq!(req.method, Method::POST);
        // The offset's `+` is encoded, or the API would read a space.
        assert_eq!(
            req.path_and_query,
            "/schedules/preview?from=2026-03-07T12%3A00%3A00%2B01%3A00&count=2"
        );
        assert_eq!(
            req.body.unwrap(),
            json!({"cron": "0 30 2 * * *", "timezone": "America/New_York", "jitter": "30s", "endAt": "2027-01-01T00:00:00Z"})
        );

        let req = request("preview_schedule", json!({"every": "15m", "phase": 420000}));
        assert_eq!(req.path_and_query, "/schedules/preview?count=10");
        assert_eq!(req.body.unwrap(), json!({"every": "15m", "phase": 420000}));
    }

    #[test]
    fn preview_schedule_bad_arguments_name_the_field() {
        for (a, field) in [
            (json!({"cron": "* * * * *", "count": 0}), "count:"),
            (json!({"cron": "* * * * *", "count": 1001}), "count:"),
            (json!({"cron": "* * * * *", "count": "5"}), "count:"),
            (json!({"cron": 5}), "cron:"),
            (json!({"every": "1m", "from": 1}), "from:"),
        ] {
            let e = plan("preview_schedule", obj(a.clone()))
                .unwrap()
                .unwrap_err();
            assert!(e.message.starts_with(field), "{a}: {}", e.message);
        }
        let e = plan(
            "preview_schedule",
            obj(json!({"cron": "* * * * *", "tz": "UTC"})),
        )
        .unwrap()
        .unwrap_err();
        assert!(e.message.contains("tz"), "{}", e.message);
    }

    #[test]
    fn preview_summary_counts_runs_and_names_gap_shifted_ones() {
        let answer = json!({"tzdbVersion": "2026f", "runs": [
            {"at": "2026-03-08T07:00:00Z", "local": "2026-03-08T03:00:00-04:00", "dst": "gapShifted", "fireAt": "2026-03-08T07:00:00Z"},
            {"at": "2026-03-09T06:30:00Z", "local": "2026-03-09T02:30:00-04:00", "dst": null, "fireAt": "2026-03-09T06:30:00Z"}]});
        assert_eq!(
            super::super::summary("preview_schedule", &answer).unwrap(),
            "2 runs from 2026-03-08T07:00:00Z to 2026-03-09T06:30:00Z (UTC; time zone database 2026f). \
             1 moved past a DST gap (the local time did not exist that day): \
             2026-03-08T07:00:00Z (local 2026-03-08T03:00:00-04:00)."
        );
        let none = preview_summary(&json!({"tzdbVersion": "2026f", "runs": []})).unwrap();
        assert!(none.starts_with("No runs"), "{none}");
        assert_eq!(super::super::summary("get_timer", &answer), None);
    }
}
