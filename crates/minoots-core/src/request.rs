//! A client's request to schedule a timer, and its validation into a [`TimerSpec`].
//!
//! This is the single place where "when should it fire" is decided: exactly one of
//! `duration` and `fireAt`, not in the past beyond a short grace, not beyond the horizon.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action::ActionBundle;
use crate::duration::parse_duration_ms;
use crate::error::ValidationErrors;
use crate::limits::*;
use crate::model::{Timer, TimerId, TimerStatus};
use crate::timefmt::{format_us, parse_rfc3339_us};
use crate::traceparent::TraceParent;

/// `duration` as a JSON number of milliseconds or as text (`"30s"`, `"PT30S"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DurationInput {
    Millis(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for DurationInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationInput;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like \"30s\", \"1h30m\", \"PT30S\" or a whole number of milliseconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationInput, E> {
                Ok(DurationInput::Millis(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationInput, E> {
                i64::try_from(v).map(DurationInput::Millis).map_err(|_| {
                    E::custom("is too large; the farthest a timer may fire is 10 years")
                })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationInput, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(DurationInput::Millis(v as i64))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a whole number of milliseconds; write it like 30000 or \"30s\""
                    )))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationInput, E> {
                Ok(DurationInput::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The body of `POST /timers` (and the gRPC and MCP equivalents), as the client sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimerRequest {
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub requested_by: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub duration: Option<DurationInput>,
    #[serde(default)]
    pub fire_at: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub action_bundle: Option<ActionBundle>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` of the request that created the timer (from the HTTP header
    /// or the gRPC field, never from the JSON body): kept with the timer so its fire and
    /// attempts join the caller's trace. Not part of the request's identity for its
    /// idempotency key; an invalid value is dropped by [`TimerRequest::validate`].
    #[serde(skip)]
    pub traceparent: Option<String>,
}

/// The error of a failed parse, named by its JSON path (`body` for the whole document).
fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ValidationErrors {
    let path = e.path().to_string();
    let field = if path == "." || path == "?" || path.is_empty() {
        "body".to_string()
    } else {
        path
    };
    let inner = e.into_inner();
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("is not valid JSON ({inner}); send one JSON object")
    } else {
        inner.to_string()
    };
    ValidationErrors::single(field, message)
}

/// Largest integer a JSON number with a fraction part holds exactly (2^53).
const MAX_EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// `body` parsed again with every number written with a zero fraction (`5.0`, `1e3`)
/// read as that integer, when that makes it a `T`. JSON Schema, and so the OpenAPI
/// document, counts such numbers as integers, while serde reads them only into floats.
/// Tried only after a type error, so a body that parses costs nothing more; a number of
/// a free-form object (metadata, a webhook's body) in such a body is kept as the integer.
fn with_integral_floats_as_integers<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    fn convert(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT_INTEGER => {
                    *n = serde_json::Number::from(f as i64);
                    true
                }
                _ => false,
            },
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, v| convert(v) | c),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |c, v| convert(v) | c),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if !convert(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// Parses a JSON body into `T`; a syntax or type error names the JSON path where it
/// happened (`actionBundle.actions[0].url`), or `body` when it concerns the whole document.
/// Every JSON body MINOOTS accepts goes through here.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ValidationErrors> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ValidationErrors::single(
            "body",
            "must be one JSON object, like {\"duration\": \"30s\"}",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize(&mut *de) {
        Ok(value) => value,
        Err(e) => {
            let inner = e.inner();
            if !(inner.is_syntax() || inner.is_eof())
                && let Some(value) = with_integral_floats_as_integers(body)
            {
                return Ok(value);
            }
            return Err(field_error(e));
        }
    };
    de.end().map_err(|e| {
        ValidationErrors::single(
            "body",
            format!("has trailing data after the JSON object ({e})"),
        )
    })?;
    Ok(value)
}

/// A validated timer request: every field is within its limits and the fire time is known.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerSpec {
    pub tenant_id: String,
    pub name: String,
    pub requested_by: Option<String>,
    pub fire_at_us: i64,
    pub duration_ms: Option<i64>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub labels: BTreeMap<String, String>,
    pub action_bundle: ActionBundle,
    pub idempotency_key: Option<String>,
    /// The creating request's trace parent in its canonical form, when it had a valid one.
    pub traceparent: Option<String>,
}

impl TimerRequest {
    /// Parses a JSON body; a syntax or type error names the field where it happened.
    pub fn from_json(body: &[u8]) -> Result<Self, ValidationErrors> {
        parse_json(body)
    }

    /// Validates the request for `tenant_id` at time `now_us`. All problems are reported
    /// together. The request's own `tenantId`, when present, must equal `tenant_id`.
    pub fn validate(&self, tenant_id: &str, now_us: i64) -> Result<TimerSpec, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(msg) = check_tenant_id(tenant_id) {
            errors.push("tenantId", msg);
        }
        if let Some(t) = &self.tenant_id
            && t != tenant_id
        {
            errors.push("tenantId", format!("is \"{t}\" but the request acts for tenant \"{tenant_id}\"; omit it or send your own tenant"));
        }

        let (fire_at_us, duration_ms) = self.resolve_fire_time(now_us, &mut errors);

        let name = match &self.name {
            Some(n) => {
                check_text(n, "name", MAX_NAME_BYTES, false, &mut errors);
                n.clone()
            }
            None => String::new(),
        };
        if let Some(r) = &self.requested_by {
            check_text(r, "requestedBy", MAX_REQUESTED_BY_BYTES, true, &mut errors);
        }

        let metadata = check_metadata(self.metadata.as_ref(), &mut errors);
        let labels = check_labels(self.labels.clone().unwrap_or_default(), &mut errors);

        let action_bundle = self.action_bundle.clone().unwrap_or_default();
        action_bundle.validate("actionBundle", &mut errors);

        if let Some(k) = &self.idempotency_key
            && (k.is_empty()
                || k.len() > MAX_IDEMPOTENCY_KEY_BYTES
                || k.chars().any(char::is_control))
        {
            errors.push(
                "idempotencyKey",
                format!(
                    "must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes without control characters"
                ),
            );
        }

        errors.into_result()?;
        Ok(TimerSpec {
            tenant_id: tenant_id.to_string(),
            name,
            requested_by: self.requested_by.clone(),
            fire_at_us,
            duration_ms,
            metadata,
            labels,
            action_bundle,
            idempotency_key: self.idempotency_key.clone(),
            traceparent: self.traceparent.as_deref().and_then(TraceParent::normalize),
        })
    }

    /// What identifies this request for its idempotency key: the request as JSON without
    /// `tenantId` and `idempotencyKey` (maps serialise in key order, so the same body
    /// always gives the same bytes). A request that cannot be encoded is refused, naming
    /// `idempotencyKey`, instead of being identified by nothing (which would make every
    /// such request look like a repeat of the first).
    pub fn idempotency_identity(&self) -> Result<Vec<u8>, ValidationErrors> {
        let canonical = TimerRequest {
            tenant_id: None,
            idempotency_key: None,
            ..self.clone()
        };
        crate::action::encode_json(&canonical).map_err(|e| {
            ValidationErrors::single(
                "idempotencyKey",
                format!("cannot be checked: the request {e}; send it without an idempotency key or fix the request"),
            )
        })
    }

    /// The fire time this request asks for at `now_us`, when `duration` / `fireAt` are valid
    /// (without validating the rest of the request).
    pub fn fire_at_us(&self, now_us: i64) -> Option<i64> {
        let mut errors = ValidationErrors::new();
        let (at, _) = self.resolve_fire_time(now_us, &mut errors);
        errors.is_empty().then_some(at)
    }

    fn resolve_fire_time(&self, now_us: i64, errors: &mut ValidationErrors) -> (i64, Option<i64>) {
        resolve_fire_time(
            self.duration.as_ref(),
            self.fire_at.as_ref(),
            now_us,
            errors,
        )
    }
}

/// The fire time that exactly one of `duration` and `fireAt` asks for at `now_us`, and the
/// duration in milliseconds when it was given as one: not in the past beyond a short
/// grace, not beyond the horizon. Problems go to `errors` (then the answer is `now_us`).
pub(crate) fn resolve_fire_time(
    duration: Option<&DurationInput>,
    fire_at: Option<&String>,
    now_us: i64,
    errors: &mut ValidationErrors,
) -> (i64, Option<i64>) {
    match (duration, fire_at) {
        (Some(_), Some(_)) => {
            errors.push("duration", "give either duration or fireAt, not both");
            (now_us, None)
        }
        (None, None) => {
            errors.push("duration", "is required (or give fireAt); write it like \"30s\", \"1h30m\" or 30000 (milliseconds)");
            (now_us, None)
        }
        (Some(d), None) => {
            let ms = match d {
                DurationInput::Millis(ms) => Ok(*ms),
                DurationInput::Text(t) => parse_duration_ms(t),
            };
            match ms {
                Err(msg) => {
                    errors.push("duration", msg);
                    (now_us, None)
                }
                Ok(ms) if ms <= 0 => {
                    errors.push(
                        "duration",
                        "must be positive; use at least 1 millisecond, e.g. \"1ms\" or \"30s\"",
                    );
                    (now_us, None)
                }
                Ok(ms) if ms > MAX_TIMER_HORIZON_MS => {
                    errors.push("duration", "must be at most 10 years; for later times schedule again closer to the date");
                    (now_us, None)
                }
                Ok(ms) => (now_us + ms * 1_000, Some(ms)),
            }
        }
        (None, Some(text)) => match parse_rfc3339_us(text) {
            Err(e) => {
                errors.push("fireAt", format!("\"{text}\" is not an RFC 3339 time with an offset ({e}); write it like \"2026-11-27T10:00:00Z\" or \"2026-11-27T11:00:00+01:00\""));
                (now_us, None)
            }
            Ok(at) if at < now_us - PAST_FIRE_AT_GRACE_MS * 1_000 => {
                errors.push(
                    "fireAt",
                    format!(
                        "{text} is in the past (now is {}); give a future time or use duration",
                        format_us(now_us)
                    ),
                );
                (now_us, None)
            }
            Ok(at) if at > now_us + MAX_TIMER_HORIZON_MS * 1_000 => {
                errors.push(
                    "fireAt",
                    "is more than 10 years ahead; schedule again closer to the date",
                );
                (now_us, None)
            }
            Ok(at) => (at, None),
        },
    }
}

impl TimerSpec {
    /// The timer this spec describes, freshly scheduled at `now_us`.
    pub fn into_timer(self, id: TimerId, now_us: i64) -> Timer {
        let name = if self.name.is_empty() {
            format!("timer-{}", &id.to_string()[..13])
        } else {
            self.name
        };
        Timer {
            id,
            tenant_id: self.tenant_id,
            name,
            requested_by: self.requested_by,
            status: TimerStatus::Scheduled,
            created_at_us: now_us,
            fire_at_us: self.fire_at_us,
            duration_ms: self.duration_ms,
            fired_at_us: None,
            settled_at_us: None,
            cancelled_at_us: None,
            cancel_reason: None,
            metadata: self.metadata,
            labels: self.labels,
            action_bundle: self.action_bundle,
            idempotency_key: self.idempotency_key,
            version: 1,
            schedule: None,
            traceparent: self.traceparent,
        }
    }
}

/// Checks `metadata` (a JSON object within its size limit); absent or null is empty.
pub(crate) fn check_metadata(
    metadata: Option<&serde_json::Value>,
    errors: &mut ValidationErrors,
) -> serde_json::Map<String, serde_json::Value> {
    match metadata {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => {
            match crate::action::encode_json(m) {
                Ok(v) if v.len() > MAX_METADATA_BYTES => errors.push(
                    "metadata",
                    format!(
                        "is {} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed",
                        v.len()
                    ),
                ),
                Ok(_) => {}
                Err(e) => errors.push("metadata", e),
            }
            m.clone()
        }
        Some(_) => {
            errors.push("metadata", "must be a JSON object, like {\"orderId\": 42}");
            serde_json::Map::new()
        }
    }
}

/// Checks `labels`: how many, and each key and value.
pub(crate) fn check_labels(
    labels: BTreeMap<String, String>,
    errors: &mut ValidationErrors,
) -> BTreeMap<String, String> {
    if labels.len() > MAX_LABELS {
        errors.push(
            "labels",
            format!(
                "has {} labels; at most {MAX_LABELS} are allowed",
                labels.len()
            ),
        );
    }
    for (k, v) in &labels {
        if let Err(msg) = check_label_key(k) {
            errors.push(format!("labels.{k}"), msg);
        }
        if v.len() > MAX_LABEL_VALUE_BYTES || v.chars().any(char::is_control) {
            errors.push(
                format!("labels.{k}"),
                format!(
                    "value must be at most {MAX_LABEL_VALUE_BYTES} bytes without control characters"
                ),
            );
        }
    }
    labels
}

/// Tenant ids: 1–64 bytes of letters, digits, `-` and `_`.
pub fn check_tenant_id(t: &str) -> Result<(), String> {
    if t.is_empty()
        || t.len() > MAX_TENANT_ID_BYTES
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "must be 1 to {MAX_TENANT_ID_BYTES} letters, digits, - or _"
        ));
    }
    Ok(())
}

/// Label keys: 1–63 bytes of letters, digits, `-`, `_`, `.` and `/`, starting with a letter or digit.
pub fn check_label_key(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.len() <= MAX_LABEL_KEY_BYTES
        && k.as_bytes()[0].is_ascii_alphanumeric()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key must be 1 to {MAX_LABEL_KEY_BYTES} letters, digits, - _ . /, starting with a letter or digit"
        ))
    }
}

/// Checks a cancel reason's size; used by every entry point that cancels.
pub fn check_cancel_reason(reason: &str) -> Result<(), ValidationErrors> {
    if reason.len() > MAX_CANCEL_REASON_BYTES || reason.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(ValidationErrors::single(
            "reason",
            format!("must be at most {MAX_CANCEL_REASON_BYTES} bytes without control characters"),
        ));
    }
    Ok(())
}

fn check_text(
    text: &str,
    field: &str,
    max: usize,
    allow_empty: bool,
    errors: &mut ValidationErrors,
) {
    if !allow_empty && text.trim().is_empty() {
        errors.push(field, "must not be empty; omit it to get a generated one");
    } else if text.len() > max {
        errors.push(
            field,
            format!("is {} bytes; at most {max} are allowed", text.len()),
        );
    } else if text.chars().any(char::is_control) {
        errors.push(field, "must not contain control characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_773_600_000_000; // 2026-11-27T10:00:00Z

    fn req(json: &str) -> TimerRequest {
        TimerRequest::from_json(json.as_bytes()).expect("parses")
    }

    #[test]
    fn the_original_request_is_accepted() {
        let r = req(
            r#"{"tenantId": "test", "requestedBy": "user", "name": "webhook-test", "duration": "30s",
            "actionBundle": {"actions": [{"type": "webhook", "url": "https://webhook.site/your-url"}]}}"#,
        );
        let spec = r.validate("test", NOW).unwrap();
        assert_eq!(spec.fire_at_us, NOW + 30_000_000);
        assert_eq!(spec.duration_ms, Some(30_000));
        assert_eq!(spec.name, "webhook-test");
        assert_eq!(spec.action_bundle.actions.len(), 1);
    }

    #[test]
    fn a_number_with_a_zero_fraction_is_an_integer() {
        // JSON Schema's "integer" includes 5242.0, so the document's integer fields take it.
        let r = req(r#"{"duration": 30000.0, "metadata": {"x": 1.5},
            "actionBundle": {"actions": [], "retryPolicy": {"initialBackoffMs": 5242.0, "maxAttempts": 3e0}}}"#);
        let policy = r
            .action_bundle
            .as_ref()
            .unwrap()
            .retry_policy
            .as_ref()
            .unwrap();
        assert_eq!(policy.initial_backoff_ms, Some(5242));
        assert_eq!(policy.max_attempts, Some(3));
        assert_eq!(r.metadata.as_ref().unwrap()["x"], serde_json::json!(1.5));
        // A fraction is still refused, with the field named.
        let err = TimerRequest::from_json(
            br#"{"actionBundle": {"actions": [], "retryPolicy": {"initialBackoffMs": 5242.5}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.errors[0].field,
            "actionBundle.retryPolicy.initialBackoffMs"
        );
    }

    #[test]
    fn good_fire_times() {
        let table: &[(&str, i64)] = &[
            (r#"{"duration": 30000}"#, NOW + 30_000_000),
            (r#"{"duration": "500ms"}"#, NOW + 500_000),
            (r#"{"duration": "1h30m"}"#, NOW + 5_400_000_000),
            (r#"{"duration": "PT30S"}"#, NOW + 30_000_000),
            (r#"{"fireAt": "2026-11-27T11:00:00+01:00"}"#, NOW),
            (r#"{"fireAt": "2026-11-27T10:00:30Z"}"#, NOW + 30_000_000),
            (r#"{"fireAt": "2026-11-27T09:59:57Z"}"#, NOW - 3_000_000),
            (r#"{"duration": "3650d"}"#, NOW + 3650 * 86_400_000_000),
        ];
        for (json, want) in table {
            let spec = req(json)
                .validate("t1", NOW)
                .unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(spec.fire_at_us, *want, "{json}");
        }
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let table: &[(&str, &str)] = &[
            (r#"{}"#, "duration"),
            (
                r#"{"duration": "30s", "fireAt": "2026-11-27T10:00:30Z"}"#,
                "duration",
            ),
            (r#"{"duration": "soon"}"#, "duration"),
            (r#"{"duration": 0}"#, "duration"),
            (r#"{"duration": -5}"#, "duration"),
            (r#"{"duration": "4000d"}"#, "duration"),
            (r#"{"fireAt": "2026-11-27T09:00:00Z"}"#, "fireAt"),
            (r#"{"fireAt": "2040-01-01T00:00:00Z"}"#, "fireAt"),
            (r#"{"fireAt": "2026-11-27 10:00"}"#, "fireAt"),
            (r#"{"fireAt": "2026-11-27T10:00:30"}"#, "fireAt"),
            (r#"{"duration": "1s", "name": ""}"#, "name"),
            (r#"{"duration": "1s", "name": "a\u0007b"}"#, "name"),
            (r#"{"duration": "1s", "metadata": [1, 2]}"#, "metadata"),
            (r#"{"duration": "1s", "labels": {"": "x"}}"#, "labels."),
            (
                r#"{"duration": "1s", "labels": {"-bad": "x"}}"#,
                "labels.-bad",
            ),
            (r#"{"duration": "1s", "tenantId": "other"}"#, "tenantId"),
            (
                r#"{"duration": "1s", "idempotencyKey": ""}"#,
                "idempotencyKey",
            ),
            (
                r#"{"duration": "1s", "actionBundle": {"actions": [{"type": "webhook", "url": "gopher://x"}]}}"#,
                "actionBundle.actions[0].url",
            ),
        ];
        for (json, field) in table {
            let err = req(json).validate("t1", NOW).expect_err(json);
            assert!(
                err.has_field(field),
                "{json}: expected error on {field}, got {err}"
            );
            assert!(err.errors.iter().all(|e| !e.message.is_empty()));
        }
    }

    #[test]
    fn size_limits_are_enforced() {
        let long_name = "n".repeat(MAX_NAME_BYTES + 1);
        let e = req(&format!(r#"{{"duration": "1s", "name": "{long_name}"}}"#))
            .validate("t1", NOW)
            .unwrap_err();
        assert!(e.has_field("name"));
        let big = "x".repeat(MAX_METADATA_BYTES);
        let e = req(&format!(
            r#"{{"duration": "1s", "metadata": {{"k": "{big}"}}}}"#
        ))
        .validate("t1", NOW)
        .unwrap_err();
        assert!(e.has_field("metadata"));
        let labels: Vec<String> = (0..=MAX_LABELS)
            .map(|i| format!(r#""k{i}": "v""#))
            .collect();
        let e = req(&format!(
            r#"{{"duration": "1s", "labels": {{{}}}}}"#,
            labels.join(",")
        ))
        .validate("t1", NOW)
        .unwrap_err();
        assert!(e.has_field("labels"));
    }

    #[test]
    fn all_errors_are_reported_together() {
        let e = req(r#"{"duration": "nope", "name": "", "metadata": 3}"#)
            .validate("t1", NOW)
            .unwrap_err();
        assert!(
            e.has_field("duration") && e.has_field("name") && e.has_field("metadata"),
            "{e}"
        );
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = TimerRequest::from_json(br#"{"duration": "1s", "labels": {"a": 5}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "labels.a", "{e}");
        let e = TimerRequest::from_json(br#"{"duration": "1s", "colour": "red"}"#).unwrap_err();
        assert!(e.errors[0].message.contains("colour"), "{e}");
        let e = TimerRequest::from_json(br#"{"duration": "1s", "actionBundle": {"actions": [{"type": "webhook", "url": "https://a.example", "timeoutMS": 5}]}}"#).unwrap_err();
        assert!(
            e.errors[0].field.starts_with("actionBundle.actions[0]"),
            "{e}"
        );
        let e = TimerRequest::from_json(b"{not json").unwrap_err();
        assert_eq!(e.errors[0].field, "body");
    }

    #[test]
    fn names_are_generated_when_absent() {
        let spec = req(r#"{"duration": "1s"}"#).validate("t1", NOW).unwrap();
        let t = spec.into_timer(TimerId::new_v7(), NOW);
        assert!(t.name.starts_with("timer-"));
        assert_eq!(t.status, TimerStatus::Scheduled);
        assert_eq!(t.version, 1);
    }
}
