//! The schemas of `/openapi.json` and the patterns they share with the handlers.
//!
//! The document is meant to be exact: what it calls valid the server accepts, and what it
//! calls invalid the server refuses with a 4xx. Each pattern here is written in the common
//! subset of ECMA-262, Python `re` and Rust `regex` syntax, and the handler that checks the
//! same field says so next to its check. Limits the schema language cannot state (a
//! `fireAt` relative to now, sizes of serialized JSON, a backoff bounded by another field)
//! are stated in the field's `description`.

use minoots_core::limits::*;
use serde_json::{Value, json};

/// Tenant ids (`minoots_core::request::check_tenant_id`).
pub const TENANT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// Timer ids: hyphenated UUIDs (`crate::timers::timer_id`).
pub const TIMER_ID_PATTERN: &str =
    "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";
/// API key ids, also the `after` cursor of key lists: 1 to 64 printable ASCII characters
/// (`crate::admin::check_key_id`).
pub const KEY_ID_PATTERN: &str = "^[!-~]{1,64}$";
/// A timer list cursor as `nextCursor` gives it (`crate::timers::cursor`): the hex of
/// `v1.<fire time in µs>.<timer id without hyphens>`; empty means the first page.
pub const CURSOR_PATTERN: &str = "^(76312e(3[0-9]){1,18}2e(3[0-9]|6[1-6]){32})?$";
/// Text without control characters (Unicode category Cc), as `char::is_control` sees them.
pub const NO_CONTROL_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// A cancel reason: no control characters except line feeds
/// (`minoots_core::request::check_cancel_reason`).
pub const REASON_PATTERN: &str = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f]*$";
/// A timer name: no control characters and at least one character that is not a space.
pub const NAME_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// Label keys (`minoots_core::request::check_label_key`).
pub const LABEL_KEY_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$";
/// The `label` filter: `key:value`, or empty for no filter.
pub const LABEL_FILTER_PATTERN: &str = "^([^:]+:.*)?$";
/// The `types` filter: comma-separated event types; empty items are skipped.
pub const EVENT_TYPES_PATTERN: &str = "^([ \\t]*timer\\.(scheduled|fired|settled|failed|cancelled|updated)[ \\t]*)?(,([ \\t]*timer\\.(scheduled|fired|settled|failed|cancelled|updated)[ \\t]*)?)*$";
/// A wait or stream `timeout` from 0 to 300 s in the canonical forms (`99999ms`, `299s`,
/// `4m`, or milliseconds); empty means the default. The server also reads the other
/// duration forms of `minoots_core::duration`, within the same bound.
pub const TIMEOUT_PATTERN: &str =
    "^(([0-9]|[1-9][0-9]{1,4})(ms)?|([0-9]|[1-9][0-9]|[12][0-9]{2})s|[0-4]m)?$";
/// A timer `duration` text in its canonical forms, every one of them above zero and within
/// the ten-year horizon: compact units in the order w d h m s ms (`1h30m`, `500ms`), ISO
/// 8601 (`PT30S`, `P1DT2H`, `P2W`) or milliseconds (`30000`). The server also reads
/// fractions (`1.5h`), any unit order and lower-case ISO text; see
/// `minoots_core::duration`.
pub const DURATION_PATTERN: &str = concat!(
    "^(",
    // compact: at least one component, units in decreasing order
    "([1-9][0-9]?w)([1-9][0-9]{0,2}d)?([1-9][0-9]{0,3}h)?([1-9][0-9]{0,4}m)?([1-9][0-9]{0,6}s)?([1-9][0-9]{0,8}ms)?",
    "|([1-9][0-9]{0,2}d)([1-9][0-9]{0,3}h)?([1-9][0-9]{0,4}m)?([1-9][0-9]{0,6}s)?([1-9][0-9]{0,8}ms)?",
    "|([1-9][0-9]{0,3}h)([1-9][0-9]{0,4}m)?([1-9][0-9]{0,6}s)?([1-9][0-9]{0,8}ms)?",
    "|([1-9][0-9]{0,4}m)([1-9][0-9]{0,6}s)?([1-9][0-9]{0,8}ms)?",
    "|([1-9][0-9]{0,6}s)([1-9][0-9]{0,8}ms)?",
    "|([1-9][0-9]{0,8}ms)",
    // ISO 8601
    "|P[1-9][0-9]?W",
    "|P[1-9][0-9]{0,2}D(T([1-9][0-9]{0,3}H([1-9][0-9]{0,4}M)?([1-9][0-9]{0,6}S)?|[1-9][0-9]{0,4}M([1-9][0-9]{0,6}S)?|[1-9][0-9]{0,6}S))?",
    "|PT([1-9][0-9]{0,3}H([1-9][0-9]{0,4}M)?([1-9][0-9]{0,6}S)?|[1-9][0-9]{0,4}M([1-9][0-9]{0,6}S)?|[1-9][0-9]{0,6}S)",
    // milliseconds
    "|[1-9][0-9]{0,10}",
    ")$"
);

pub fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

/// A string of at most `max` characters without control characters (or null when
/// `null` is true: an absent optional field).
fn text(max: usize, null: bool) -> Value {
    let t = if null {
        json!(["string", "null"])
    } else {
        json!("string")
    };
    json!({"type": t, "maxLength": max, "pattern": NO_CONTROL_PATTERN})
}

/// An admin name (`minoots_kernel::admin::check_name`): 1 to 200 characters without
/// control characters.
fn admin_name() -> Value {
    json!({"type": ["string", "null"], "minLength": 1, "maxLength": minoots_kernel_api::api::MAX_ADMIN_NAME_BYTES, "pattern": NO_CONTROL_PATTERN,
           "description": "1 to 200 bytes of UTF-8 without control characters; omitted or null: the id"})
}

/// Every schema of the document; `tiers` are the tier names this server knows.
pub fn schemas(tiers: &[String]) -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let time_or_null = json!({"type": ["string", "null"], "format": "date-time"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let tier_or_null = json!({"type": ["string", "null"], "enum": tiers.iter().map(|t| Value::from(t.as_str())).chain([Value::Null]).collect::<Vec<_>>()});
    let header_map = json!({"type": "object", "maxProperties": MAX_WEBHOOK_HEADERS,
        "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$",
            "not": {"pattern": "^([Ww][Ee][Bb][Hh][Oo][Oo][Kk]-.*|[Xx]-[Mm][Ii][Nn][Oo][Oo][Tt][Ss]-.*|[Hh][Oo][Ss][Tt]|[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh])$"}},
        "additionalProperties": {"type": "string", "maxLength": MAX_HEADER_VALUE_BYTES, "pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$"},
        "description": "Header names are HTTP tokens; Webhook-*, X-Minoots-*, Host and Content-Length are set by MINOOTS"});
    json!({
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
                "field": {"type": "string"}, "message": {"type": "string"}}}},
            "quota": {"type": "string"}, "limit": {"type": "integer"}, "timerStatus": {"type": "string"}}},
        "WebhookAction": {"type": "object", "required": ["type", "url"], "additionalProperties": false, "properties": {
            "type": {"const": "webhook"},
            "url": {"type": "string", "maxLength": MAX_URL_BYTES,
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[a-z][a-z0-9-]{0,62}(\\.[a-z][a-z0-9-]{0,62}){0,4}(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]*){0,8}$",
                "description": "An http or https URL with a host and no credentials. The pattern gives the plain form; the server reads any URL of these schemes (IP hosts, queries, escapes)."},
            "method": {"type": ["string", "null"], "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", null]},
            "headers": header_map,
            "body": {"description": "Any JSON, at most 64 KiB serialized; null or absent: the event envelope"},
            "timeoutMs": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_WEBHOOK_TIMEOUT_MS}}},
        "CommandAction": {"type": "object", "required": ["type", "command"], "additionalProperties": false,
            "description": "Refused with 400 unless the operator allowed this command on the server.",
            "properties": {
            "type": {"const": "command"}, "command": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"},
            "args": {"type": "array", "items": {"type": "string", "maxLength": MAX_COMMAND_ARG_BYTES, "pattern": "^[^\\u0000]*$"}, "maxItems": MAX_COMMAND_ARGS},
            "env": {"type": "object", "maxProperties": MAX_COMMAND_ENV, "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                "additionalProperties": {"type": "string", "maxLength": MAX_COMMAND_ARG_BYTES, "pattern": "^[^\\u0000]*$"}},
            "timeoutMs": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_COMMAND_TIMEOUT_MS}}},
        "FileAction": {"type": "object", "required": ["type", "path"], "additionalProperties": false,
            "description": "Refused with 400 unless the operator enabled file actions on the server.",
            "properties": {
            "type": {"const": "file"},
            "path": {"type": "string", "maxLength": MAX_FILE_PATH_BYTES, "pattern": "^([^/\\\\\\u0000]+/)*[^/\\\\\\u0000]+$",
                "description": "Relative, under the operator's file root; no empty or .. segments"},
            "mode": {"type": "string", "enum": ["append", "overwrite"]},
            "content": {"description": "Any JSON, at most 64 KiB serialized"}}},
        "Action": {"oneOf": [schema("WebhookAction"), schema("CommandAction"), schema("FileAction")]},
        "RetryPolicy": {"type": ["object", "null"], "additionalProperties": false,
            "description": "initialBackoffMs must not exceed maxBackoffMs (default 3600000).",
            "properties": {
            "maxAttempts": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_RETRY_ATTEMPTS},
            "initialBackoffMs": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_BACKOFF_MS},
            "maxBackoffMs": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_BACKOFF_MS},
            "multiplier": {"type": ["number", "null"], "minimum": 1, "maximum": minoots_core::retry::MAX_MULTIPLIER}}},
        "ActionBundle": {"type": ["object", "null"], "additionalProperties": false, "properties": {
            "actions": {"type": "array", "items": schema("Action"), "maxItems": MAX_ACTIONS},
            "retryPolicy": schema("RetryPolicy")}},
        "TimerRequest": {"type": "object", "additionalProperties": false,
            "description": "Exactly one of duration and fireAt.",
            "oneOf": [
                {"required": ["duration"], "properties": {"duration": {"not": {"type": "null"}}, "fireAt": {"type": "null"}}},
                {"required": ["fireAt"], "properties": {"fireAt": {"not": {"type": "null"}}, "duration": {"type": "null"}}}],
            "properties": {
                "tenantId": {"type": ["string", "null"], "pattern": TENANT_ID_PATTERN, "description": "Your own tenant, or omit it (another tenant: 403)"},
                "requestedBy": text(MAX_REQUESTED_BY_BYTES, true),
                "name": {"type": ["string", "null"], "maxLength": MAX_NAME_BYTES, "pattern": NAME_PATTERN},
                "duration": {"oneOf": [
                    {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "1h30m", "PT30S"]},
                    {"type": "integer", "minimum": 1, "maximum": MAX_TIMER_HORIZON_MS, "description": "milliseconds"},
                    {"type": "null"}],
                    "description": "Above zero and at most 10 years (or the tier's horizon)"},
                "fireAt": {"type": ["string", "null"], "format": "date-time",
                    "description": "RFC 3339 with an offset; from 5 s in the past to 10 years ahead (or the tier's horizon)"},
                "metadata": {"type": ["object", "null"], "description": "At most 16 KiB as JSON"},
                "labels": {"type": ["object", "null"], "maxProperties": MAX_LABELS, "propertyNames": {"pattern": LABEL_KEY_PATTERN},
                    "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE_BYTES, "pattern": NO_CONTROL_PATTERN}},
                "actionBundle": schema("ActionBundle"),
                "idempotencyKey": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_BYTES, "pattern": NO_CONTROL_PATTERN}}},
        "TimerPatch": {"type": "object", "additionalProperties": false,
            "description": "The version read (or an If-Match header) and at least one field to replace; at most one of duration and fireAt. Each field is checked as on create; labels and metadata replace the stored ones whole.",
            "anyOf": [{"required": ["duration"]}, {"required": ["fireAt"]}, {"required": ["metadata"]},
                      {"required": ["labels"]}, {"required": ["actionBundle"]}],
            "not": {"required": ["duration", "fireAt"]},
            "properties": {
                "version": {"type": "integer", "minimum": 1, "description": "The timer's version as read; required unless If-Match carries it"},
                "duration": {"oneOf": [
                    {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "1h30m", "PT30S"]},
                    {"type": "integer", "minimum": 1, "maximum": MAX_TIMER_HORIZON_MS, "description": "milliseconds"}],
                    "description": "From now; above zero and at most 10 years (or the tier's horizon)"},
                "fireAt": {"type": "string", "format": "date-time",
                    "description": "RFC 3339 with an offset; from 5 s in the past to 10 years ahead (or the tier's horizon)"},
                "metadata": {"type": "object", "description": "At most 16 KiB as JSON"},
                "labels": {"type": "object", "maxProperties": MAX_LABELS, "propertyNames": {"pattern": LABEL_KEY_PATTERN},
                    "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE_BYTES, "pattern": NO_CONTROL_PATTERN}},
                "actionBundle": schema("ActionBundle")}},
        "Timer": {"type": "object", "required": ["id", "tenantId", "name", "status", "createdAt", "fireAt", "version"], "properties": {
            "id": {"type": "string"}, "tenantId": {"type": "string"}, "name": {"type": "string"},
            "requestedBy": nullable("string"),
            "status": {"type": "string", "enum": ["scheduled", "fired", "settled", "failed", "cancelled"]},
            "createdAt": time, "fireAt": time, "durationMs": nullable("integer"),
            "firedAt": time_or_null, "firedLateMs": nullable("number"), "settledAt": time_or_null,
            "cancelledAt": time_or_null, "cancelReason": nullable("string"),
            "metadata": {"type": "object"}, "labels": string_map, "actionBundle": schema("ActionBundle"),
            "version": {"type": "integer"},
            "scheduleId": {"type": "string", "description": "Present on a schedule's run: the schedule"},
            "scheduledAt": {"type": "string", "format": "date-time", "description": "Present on a schedule's run: its slot, before jitter"}}},
        "TimerList": {"type": "object", "required": ["timers", "nextCursor"], "properties": {
            "timers": {"type": "array", "items": schema("Timer")}, "nextCursor": {"type": ["string", "null"], "pattern": CURSOR_PATTERN}}},
        "CancelRequest": {"type": "object", "additionalProperties": false, "properties": {
            "reason": {"type": ["string", "null"], "maxLength": MAX_CANCEL_REASON_BYTES, "pattern": REASON_PATTERN,
                "description": "At most 1024 bytes of UTF-8; no control characters except line feeds"}}},
        "Attempt": {"type": "object", "properties": {
            "attempt": {"type": "integer"}, "startedAt": time, "durationMs": {"type": "number"},
            "outcome": {"type": "string", "enum": ["succeeded", "retryable", "permanent"]},
            "httpStatus": nullable("integer"), "exitCode": nullable("integer"), "error": nullable("string"),
            "response": nullable("string")}},
        "Delivery": {"type": "object", "properties": {
            "id": {"type": "string"}, "timerId": {"type": "string"}, "actionIndex": {"type": "integer"},
            "status": {"type": "string", "enum": ["pending", "in_flight", "succeeded", "dead"]},
            "attempts": {"type": "integer"}, "maxAttempts": {"type": "integer"}, "nextAttemptAt": time_or_null,
            "lastError": nullable("string"), "createdAt": time, "updatedAt": time,
            "attemptLog": {"type": "array", "items": schema("Attempt")}}},
        "DeliveryList": {"type": "object", "required": ["deliveries"], "properties": {"deliveries": {"type": "array", "items": schema("Delivery")}}},
        "Event": {"type": "object", "properties": {
            "seq": {"type": "integer"}, "type": {"type": "string"}, "tenantId": {"type": "string"}, "timerId": {"type": "string"},
            "deliveryId": nullable("string"), "occurredAt": time, "data": {"type": "object"},
            "timer": {"oneOf": [schema("Timer"), {"type": "null"}]}}},
        "ServerSentEvent": {"type": "object", "required": ["id", "event", "data"],
            "description": "One event of the stream (the keep-alive comments carry none)",
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's sequence number"},
                "event": {"type": "string", "enum": ["timer.scheduled", "timer.fired", "timer.settled", "timer.failed", "timer.cancelled", "timer.updated"]},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": schema("Event")}}},
        "Tenant": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "tier": {"type": "string"}, "createdAt": time, "updatedAt": time}},
        "TenantList": {"type": "object", "properties": {"tenants": {"type": "array", "items": schema("Tenant")}, "nextCursor": nullable("string")}},
        "NewTenant": {"type": "object", "required": ["id"], "additionalProperties": false, "properties": {
            "id": {"type": "string", "pattern": TENANT_ID_PATTERN}, "name": admin_name(), "tier": tier_or_null}},
        "TenantPatch": {"type": "object", "additionalProperties": false, "properties": {"name": admin_name(), "tier": tier_or_null}},
        "ApiKey": {"type": "object", "properties": {
            "id": {"type": "string"}, "tenantId": {"type": "string"}, "name": {"type": "string"}, "prefix": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}}, "createdAt": time, "expiresAt": time_or_null,
            "revokedAt": time_or_null, "lastUsedAt": time_or_null}},
        "CreatedApiKey": {"allOf": [schema("ApiKey"), {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}]},
        "ApiKeyList": {"type": "object", "properties": {"keys": {"type": "array", "items": schema("ApiKey")}, "nextCursor": nullable("string")}},
        "NewApiKey": {"type": "object", "required": ["tenantId"], "additionalProperties": false, "properties": {
            "tenantId": {"type": "string", "pattern": TENANT_ID_PATTERN}, "name": admin_name(),
            "roles": {"type": ["array", "null"], "minItems": 1, "maxItems": minoots_kernel_api::api::MAX_KEY_ROLES,
                "items": {"type": "string", "enum": ["timers:read", "timers:write", "admin"]}},
            "expiresAt": {"type": ["string", "null"], "format": "date-time", "description": "RFC 3339, in the future"}}},
        "Usage": {"type": "object", "properties": {
            "tenantId": {"type": "string"}, "tier": {"type": "string"},
            "limits": {"type": "object", "properties": {
                "requestsPerMinute": nullable("integer"), "createsPerMinute": nullable("integer"),
                "timersPerDay": nullable("integer"), "pendingTimers": nullable("integer"), "maxDurationMs": nullable("integer"),
                "schedules": nullable("integer"), "minScheduleIntervalMs": nullable("integer")}},
            "usage": {"type": "object", "properties": {"timersCreatedToday": {"type": "integer"}, "pendingTimers": {"type": "integer"}}}}},
        "WebhookSecret": {"type": "object", "required": ["secret"], "properties": {
            "secret": {"type": "string"}, "signingSecrets": {"type": "integer"}, "previousSecretValidUntil": time}},
        "Health": {"type": "object", "properties": {"status": {"type": "string"}, "version": {"type": "string"}, "mode": {"type": "string"}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use minoots_core::duration::parse_duration_ms;

    /// The largest value of each bounded number in [`DURATION_PATTERN`], by unit: every
    /// duration the pattern matches is at most their sum, which must stay within the
    /// horizon, so the document never calls a too-long duration valid.
    #[test]
    fn the_duration_pattern_stays_within_the_horizon() {
        let largest = ["99w", "999d", "9999h", "99999m", "9999999s", "999999999ms"];
        let mut total = 0;
        for part in largest {
            total += parse_duration_ms(part).unwrap();
        }
        assert!(total <= MAX_TIMER_HORIZON_MS, "{total}");
        assert!(parse_duration_ms("99999999999").unwrap() <= MAX_TIMER_HORIZON_MS);
        // The canonical forms the pattern lists all parse to a positive duration.
        for text in [
            "1h30m",
            "500ms",
            "30000",
            "PT30S",
            "P1DT2H",
            "P2W",
            "1w2d3h4m5s6ms",
        ] {
            assert!(parse_duration_ms(text).unwrap() > 0, "{text}");
        }
    }
}
