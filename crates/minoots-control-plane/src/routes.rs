//! The route table: every endpoint once, with the access it needs, its handler and its
//! OpenAPI operation. [`build`] makes the router from it and [`openapi_document`] the
//! `/openapi.json`, so an endpoint cannot be served without being documented.

use axum::Router;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde_json::{Value, json};

use crate::auth::{Access, authorize};
use crate::{AppState, admin, events, ops, timers};

/// Where the Swagger UI is served (outside the table: its assets are many paths).
pub const DOCS_PATH: &str = "/docs";

pub struct RouteSpec {
    pub method: Method,
    /// The axum path pattern, which is also the OpenAPI path (`/timers/{id}`).
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<AppState>,
    /// The OpenAPI operation object (without security, which follows from `access`).
    pub doc: Value,
}

fn r(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
    doc: Value,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        handler,
        doc,
    }
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn body(name: &str, required: bool) -> Value {
    json!({"required": required, "content": {"application/json": {"schema": schema(name)}}})
}

fn ok(code: &str, description: &str, name: &str) -> (String, Value) {
    (
        code.to_string(),
        json!({"description": description, "content": {"application/json": {"schema": schema(name)}}}),
    )
}

fn problem(code: &str, description: &str) -> (String, Value) {
    (
        code.to_string(),
        json!({"description": description, "content": {"application/problem+json": {"schema": schema("Problem")}}}),
    )
}

/// An operation with the error answers every route of its access level can give.
fn op(
    id: &str,
    tag: &str,
    summary: &str,
    access: Access,
    mut responses: Vec<(String, Value)>,
    extra: Value,
) -> Value {
    responses.push(problem("400", "Invalid input; `errors` names each field"));
    if access != Access::Public {
        responses.push(problem(
            "401",
            "Missing, malformed, unknown, revoked or expired API key",
        ));
        responses.push(problem(
            "403",
            "The key lacks the role, or acts for another tenant",
        ));
        responses.push(problem(
            "429",
            "A rate limit or quota was hit (`Retry-After`, `RateLimit-*`)",
        ));
    }
    responses.push(problem(
        "503",
        "The kernel is unavailable; retry after `Retry-After`",
    ));
    let mut o = json!({
        "operationId": id,
        "tags": [tag],
        "summary": summary,
        "responses": responses.into_iter().collect::<serde_json::Map<_, _>>(),
    });
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    o
}

fn path_id(what: &str) -> Value {
    // Timer ids are UUIDs; tenant and key ids are other text.
    let schema = if what == "timer" {
        json!({"type": "string", "format": "uuid"})
    } else {
        json!({"type": "string"})
    };
    json!({"name": "id", "in": "path", "required": true, "description": format!("The {what} id"), "schema": schema})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// Every endpoint of the API.
pub fn table() -> Vec<RouteSpec> {
    use Access::*;
    let timer_ok = |c: &str, d: &str| ok(c, d, "Timer");
    let not_found = || problem("404", "No such timer for this tenant");
    vec![
        r(
            Method::POST,
            "/timers",
            Write,
            post(timers::create),
            op(
                "createTimer",
                "timers",
                "Schedule a timer",
                Write,
                vec![
                    timer_ok("201", "Created"),
                    timer_ok("200", "The timer created earlier with this idempotency key"),
                    problem(
                        "409",
                        "The idempotency key was used for a different request",
                    ),
                    problem("413", "Body over the size limit"),
                    problem("415", "Body is not JSON"),
                ],
                json!({"requestBody": body("TimerRequest", true),
                   "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 256}}]}),
            ),
        ),
        r(
            Method::GET,
            "/timers",
            Read,
            get(timers::list),
            op(
                "listTimers",
                "timers",
                "List timers in fire-time order",
                Read,
                vec![ok("200", "A page of timers", "TimerList")],
                json!({"parameters": [
                query("status", "Only timers with this status", json!({"type": "string", "enum": ["scheduled", "fired", "settled", "failed", "cancelled"]})),
                query("label", "Only timers with this label, as key:value", json!({"type": "string"})),
                query("limit", "Page size (1 to 500, default 50)", json!({"type": "integer", "minimum": 1, "maximum": 500})),
                query("cursor", "nextCursor of the previous page", json!({"type": "string"}))]}),
            ),
        ),
        r(
            Method::GET,
            "/timers/stream",
            Read,
            get(events::stream),
            op(
                "streamTimerEvents",
                "events",
                "Server-Sent Events (same as /events)",
                Read,
                vec![(
                    "200".into(),
                    json!({"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
                )],
                events_params(),
            ),
        ),
        r(
            Method::GET,
            "/timers/{id}",
            Read,
            get(timers::get),
            op(
                "getTimer",
                "timers",
                "Get a timer",
                Read,
                vec![timer_ok("200", "The timer"), not_found()],
                json!({"parameters": [path_id("timer")]}),
            ),
        ),
        r(
            Method::DELETE,
            "/timers/{id}",
            Write,
            delete(timers::delete),
            op(
                "deleteTimer",
                "timers",
                "Cancel a scheduled timer",
                Write,
                vec![
                    timer_ok("200", "The cancelled timer"),
                    not_found(),
                    problem("409", "The timer already fired or was cancelled"),
                ],
                json!({"parameters": [path_id("timer")]}),
            ),
        ),
        r(
            Method::POST,
            "/timers/{id}/cancel",
            Write,
            post(timers::cancel),
            op(
                "cancelTimer",
                "timers",
                "Cancel a scheduled timer, with a reason",
                Write,
                vec![
                    timer_ok("200", "The cancelled timer"),
                    not_found(),
                    problem("409", "The timer already fired or was cancelled"),
                ],
                json!({"parameters": [path_id("timer")], "requestBody": body("CancelRequest", false)}),
            ),
        ),
        r(
            Method::GET,
            "/timers/{id}/deliveries",
            Read,
            get(timers::deliveries),
            op(
                "listDeliveries",
                "timers",
                "Deliveries of a timer with every attempt",
                Read,
                vec![ok("200", "Deliveries", "DeliveryList"), not_found()],
                json!({"parameters": [path_id("timer")]}),
            ),
        ),
        r(
            Method::POST,
            "/timers/{id}/redrive",
            Write,
            post(timers::redrive),
            op(
                "redriveTimer",
                "timers",
                "Re-queue a failed timer's dead deliveries",
                Write,
                vec![
                    timer_ok("200", "The timer, fired again"),
                    not_found(),
                    problem("409", "No dead delivery to redrive"),
                ],
                json!({"parameters": [path_id("timer")]}),
            ),
        ),
        r(
            Method::GET,
            "/timers/{id}/wait",
            Read,
            get(timers::wait),
            op(
                "waitForTimer",
                "timers",
                "Long-poll until the timer is no longer scheduled",
                Read,
                vec![
                    timer_ok("200", "The timer when it changed, or at the timeout"),
                    not_found(),
                ],
                json!({"parameters": [path_id("timer"), query("timeout", "How long to wait, like 30s (at most 300s)", json!({"type": "string"}))]}),
            ),
        ),
        r(
            Method::GET,
            "/events",
            Read,
            get(events::stream),
            op(
                "streamEvents",
                "events",
                "Server-Sent Events of the tenant, resumable",
                Read,
                vec![(
                    "200".into(),
                    json!({"description": "An event stream; each data is an Event", "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
                )],
                events_params(),
            ),
        ),
        r(
            Method::GET,
            "/usage",
            Read,
            get(admin::usage),
            op(
                "getUsage",
                "tenant",
                "The tenant's tier, limits and usage",
                Read,
                vec![ok("200", "Usage", "Usage")],
                json!({}),
            ),
        ),
        r(
            Method::GET,
            "/webhook-secret",
            Write,
            get(admin::webhook_secret),
            op(
                "getWebhookSecret",
                "tenant",
                "The tenant's webhook signing secret",
                Write,
                vec![ok("200", "The current secret", "WebhookSecret")],
                json!({}),
            ),
        ),
        r(
            Method::POST,
            "/webhook-secret/rotate",
            Write,
            post(admin::rotate_webhook_secret),
            op(
                "rotateWebhookSecret",
                "tenant",
                "Rotate the signing secret (the old one signs for 24 h more)",
                Write,
                vec![ok("200", "The new secret", "WebhookSecret")],
                json!({}),
            ),
        ),
        r(
            Method::POST,
            "/admin/tenants",
            Admin,
            post(admin::create_tenant),
            op(
                "createTenant",
                "admin",
                "Create a tenant",
                Admin,
                vec![
                    ok("201", "Created", "Tenant"),
                    problem("409", "The id is taken"),
                ],
                json!({"requestBody": body("NewTenant", true)}),
            ),
        ),
        r(
            Method::GET,
            "/admin/tenants",
            Admin,
            get(admin::list_tenants),
            op(
                "listTenants",
                "admin",
                "List tenants",
                Admin,
                vec![ok("200", "Tenants", "TenantList")],
                json!({"parameters": [query("after", "nextCursor of the previous page", json!({"type": "string"})),
                                  query("limit", "Page size (1 to 1000)", json!({"type": "integer", "minimum": 1, "maximum": 1000}))]}),
            ),
        ),
        r(
            Method::PATCH,
            "/admin/tenants/{id}",
            Admin,
            patch(admin::update_tenant),
            op(
                "updateTenant",
                "admin",
                "Rename a tenant or change its tier",
                Admin,
                vec![
                    ok("200", "The tenant", "Tenant"),
                    problem("404", "No such tenant"),
                ],
                json!({"parameters": [path_id("tenant")], "requestBody": body("TenantPatch", true)}),
            ),
        ),
        r(
            Method::POST,
            "/admin/keys",
            Admin,
            post(admin::create_key),
            op(
                "createKey",
                "admin",
                "Create an API key (the plaintext is shown once)",
                Admin,
                vec![
                    ok("201", "Created; `key` is the plaintext", "CreatedApiKey"),
                    problem("404", "No such tenant"),
                ],
                json!({"requestBody": body("NewApiKey", true)}),
            ),
        ),
        r(
            Method::GET,
            "/admin/keys",
            Admin,
            get(admin::list_keys),
            op(
                "listKeys",
                "admin",
                "List API keys",
                Admin,
                vec![ok("200", "Keys", "ApiKeyList")],
                json!({"parameters": [query("tenantId", "Only this tenant's keys", json!({"type": "string"})),
                                  query("after", "nextCursor of the previous page", json!({"type": "string"})),
                                  query("limit", "Page size (1 to 1000)", json!({"type": "integer", "minimum": 1, "maximum": 1000}))]}),
            ),
        ),
        r(
            Method::DELETE,
            "/admin/keys/{id}",
            Admin,
            delete(admin::revoke_key),
            op(
                "revokeKey",
                "admin",
                "Revoke an API key at once",
                Admin,
                vec![
                    ok("200", "The revoked key", "ApiKey"),
                    problem("404", "No such key"),
                ],
                json!({"parameters": [path_id("key")]}),
            ),
        ),
        r(
            Method::GET,
            "/healthz",
            Public,
            get(ops::healthz),
            op(
                "healthz",
                "operations",
                "The process is up",
                Public,
                vec![ok("200", "Up", "Health")],
                json!({}),
            ),
        ),
        r(
            Method::GET,
            "/readyz",
            Public,
            get(ops::readyz),
            op(
                "readyz",
                "operations",
                "The kernel and its store answer",
                Public,
                vec![ok("200", "Ready", "Health")],
                json!({}),
            ),
        ),
        r(
            Method::GET,
            "/metrics",
            Public,
            get(ops::metrics),
            op(
                "metrics",
                "operations",
                "Prometheus metrics",
                Public,
                vec![(
                    "200".into(),
                    json!({"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}),
                )],
                json!({}),
            ),
        ),
        r(
            Method::GET,
            "/openapi.json",
            Public,
            get(ops::openapi),
            op(
                "openapi",
                "operations",
                "This document",
                Public,
                vec![(
                    "200".into(),
                    json!({"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}),
                )],
                json!({}),
            ),
        ),
    ]
}

fn events_params() -> Value {
    json!({"parameters": [
        query("after", "Resume after this sequence number (or send Last-Event-ID)", json!({"type": "integer", "minimum": 0})),
        query("timerId", "Only this timer's events", json!({"type": "string"})),
        query("types", "Comma-separated event types, like timer.fired,timer.settled", json!({"type": "string"})),
        {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string"}}]})
}

/// The router of the whole API.
pub fn build(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for spec in table() {
        let handler = spec
            .handler
            .layer(from_fn_with_state((state.clone(), spec.access), authorize));
        router = router.route(spec.path, handler);
    }
    let docs: Router<AppState> = utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .config(utoipa_swagger_ui::Config::from("/openapi.json"))
        .into();
    router
        .merge(docs)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .with_state(state)
}

/// `/openapi.json`: OpenAPI 3.1 built from [`table`] and the schemas below.
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for spec in table() {
        let mut doc = spec.doc;
        doc["security"] = match spec.access {
            Access::Public => json!([]),
            _ => json!([{"apiKey": []}, {"bearer": []}]),
        };
        if let Some(role) = spec.access.role() {
            doc["description"] =
                format!("Requires a key with the role `{role}` (or `admin`).").into();
        }
        let entry = paths
            .entry(spec.path.to_string())
            .or_insert_with(|| json!({}));
        entry[spec.method.as_str().to_ascii_lowercase()] = doc;
    }
    paths.insert(
        DOCS_PATH.into(),
        json!({"get": {"operationId": "docs", "tags": ["operations"], "summary": "Swagger UI for this API", "security": [],
                        "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                                      "303": {"description": "Redirect to the UI's page"}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "MINOOTS",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Durable timers as a service: schedule a webhook, command or file write for a moment in the future; MINOOTS fires it on time, retries it, signs it and tells you what happened.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": schemas(),
        },
    })
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

fn schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let time_or_null = json!({"type": ["string", "null"], "format": "date-time"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
                "field": {"type": "string"}, "message": {"type": "string"}}}},
            "quota": {"type": "string"}, "limit": {"type": "integer"}, "timerStatus": {"type": "string"}}},
        "WebhookAction": {"type": "object", "required": ["type", "url"], "additionalProperties": false, "properties": {
            "type": {"const": "webhook"}, "url": {"type": "string", "maxLength": 2048},
            "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]},
            "headers": string_map, "body": {}, "timeoutMs": {"type": "integer", "minimum": 1, "maximum": 120000}}},
        "CommandAction": {"type": "object", "required": ["type", "command"], "additionalProperties": false, "properties": {
            "type": {"const": "command"}, "command": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}, "maxItems": 64}, "env": string_map,
            "timeoutMs": {"type": "integer", "minimum": 1}}},
        "FileAction": {"type": "object", "required": ["type", "path"], "additionalProperties": false, "properties": {
            "type": {"const": "file"}, "path": {"type": "string"}, "mode": {"type": "string", "enum": ["append", "overwrite"]},
            "content": {}}},
        "Action": {"oneOf": [schema("WebhookAction"), schema("CommandAction"), schema("FileAction")]},
        "RetryPolicy": {"type": "object", "additionalProperties": false, "properties": {
            "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 100},
            "initialBackoffMs": {"type": "integer", "minimum": 1}, "maxBackoffMs": {"type": "integer", "minimum": 1},
            "multiplier": {"type": "number", "minimum": 1}}},
        "ActionBundle": {"type": "object", "additionalProperties": false, "properties": {
            "actions": {"type": "array", "items": schema("Action"), "maxItems": 16},
            "retryPolicy": schema("RetryPolicy")}},
        "TimerRequest": {"type": "object", "additionalProperties": false,
            "description": "Exactly one of duration and fireAt.",
            "properties": {
                "tenantId": {"type": "string"}, "requestedBy": {"type": "string"}, "name": {"type": "string"},
                "duration": {"oneOf": [{"type": "string", "examples": ["30s", "1h30m", "PT30S"]}, {"type": "integer", "description": "milliseconds"}]},
                "fireAt": time, "metadata": {"type": "object"}, "labels": string_map,
                "actionBundle": schema("ActionBundle"), "idempotencyKey": {"type": "string", "maxLength": 256}}},
        "Timer": {"type": "object", "required": ["id", "tenantId", "name", "status", "createdAt", "fireAt", "version"], "properties": {
            "id": {"type": "string"}, "tenantId": {"type": "string"}, "name": {"type": "string"},
            "requestedBy": nullable("string"),
            "status": {"type": "string", "enum": ["scheduled", "fired", "settled", "failed", "cancelled"]},
            "createdAt": time, "fireAt": time, "durationMs": nullable("integer"),
            "firedAt": time_or_null, "firedLateMs": nullable("number"), "settledAt": time_or_null,
            "cancelledAt": time_or_null, "cancelReason": nullable("string"),
            "metadata": {"type": "object"}, "labels": string_map, "actionBundle": schema("ActionBundle"),
            "version": {"type": "integer"}}},
        "TimerList": {"type": "object", "required": ["timers", "nextCursor"], "properties": {
            "timers": {"type": "array", "items": schema("Timer")}, "nextCursor": nullable("string")}},
        "CancelRequest": {"type": "object", "additionalProperties": false, "properties": {"reason": {"type": "string", "maxLength": 1024}}},
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
        "Tenant": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "tier": {"type": "string"}, "createdAt": time, "updatedAt": time}},
        "TenantList": {"type": "object", "properties": {"tenants": {"type": "array", "items": schema("Tenant")}, "nextCursor": nullable("string")}},
        "NewTenant": {"type": "object", "required": ["id"], "additionalProperties": false, "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "name": {"type": "string"}, "tier": {"type": "string"}}},
        "TenantPatch": {"type": "object", "additionalProperties": false, "properties": {"name": {"type": "string"}, "tier": {"type": "string"}}},
        "ApiKey": {"type": "object", "properties": {
            "id": {"type": "string"}, "tenantId": {"type": "string"}, "name": {"type": "string"}, "prefix": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}}, "createdAt": time, "expiresAt": time_or_null,
            "revokedAt": time_or_null, "lastUsedAt": time_or_null}},
        "CreatedApiKey": {"allOf": [schema("ApiKey"), {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}]},
        "ApiKeyList": {"type": "object", "properties": {"keys": {"type": "array", "items": schema("ApiKey")}, "nextCursor": nullable("string")}},
        "NewApiKey": {"type": "object", "required": ["tenantId"], "additionalProperties": false, "properties": {
            "tenantId": {"type": "string"}, "name": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string", "enum": ["timers:read", "timers:write", "admin"]}},
            "expiresAt": time}},
        "Usage": {"type": "object", "properties": {
            "tenantId": {"type": "string"}, "tier": {"type": "string"},
            "limits": {"type": "object", "properties": {
                "requestsPerMinute": nullable("integer"), "createsPerMinute": nullable("integer"),
                "timersPerDay": nullable("integer"), "pendingTimers": nullable("integer"), "maxDurationMs": nullable("integer")}},
            "usage": {"type": "object", "properties": {"timersCreatedToday": {"type": "integer"}, "pendingTimers": {"type": "integer"}}}}},
        "WebhookSecret": {"type": "object", "required": ["secret"], "properties": {
            "secret": {"type": "string"}, "signingSecrets": {"type": "integer"}, "previousSecretValidUntil": time}},
        "Health": {"type": "object", "properties": {"status": {"type": "string"}, "version": {"type": "string"}, "mode": {"type": "string"}}},
    })
}
