//! The route table: every endpoint once, with the access it needs, its handler and its
//! OpenAPI operation. [`build`] makes the router from it and [`openapi_document`] the
//! `/openapi.json`, so an endpoint cannot be served without being documented.

use axum::Router;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde_json::{Value, json};

use crate::auth::{Access, authorize};
use crate::openapi::{
    CURSOR_PATTERN, EVENT_TYPES_PATTERN, KEY_ID_PATTERN, LABEL_FILTER_PATTERN, NO_CONTROL_PATTERN,
    TENANT_ID_PATTERN, TIMEOUT_PATTERN, TIMER_ID_PATTERN, schema, schemas,
};
use crate::{AppState, admin, events, ops, schedules, timers};

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

pub(crate) fn r(
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

pub(crate) fn body(name: &str, required: bool) -> Value {
    json!({"required": required, "content": {"application/json": {"schema": schema(name)}}})
}

pub(crate) fn ok(code: &str, description: &str, name: &str) -> (String, Value) {
    (
        code.to_string(),
        json!({"description": description, "content": {"application/json": {"schema": schema(name)}}}),
    )
}

pub(crate) fn problem(code: &str, description: &str) -> (String, Value) {
    (
        code.to_string(),
        json!({"description": description, "content": {"application/problem+json": {"schema": schema("Problem")}}}),
    )
}

/// A response header; `required` when every answer with this status carries it.
fn header_doc(description: &str, required: bool, schema: Value) -> Value {
    json!({"description": description, "required": required, "schema": schema})
}

/// The `RateLimit-*` headers of a keyed answer (present when the key's tier limits its
/// request rate).
fn rate_limit_headers() -> serde_json::Map<String, Value> {
    let int = || json!({"type": "integer", "minimum": 0});
    [
        ("RateLimit-Limit", "Requests allowed per minute"),
        ("RateLimit-Remaining", "Requests left in the window"),
        ("RateLimit-Reset", "Seconds until the window is full again"),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), header_doc(d, false, int())))
    .collect()
}

fn retry_after(required: bool) -> Value {
    header_doc(
        "Seconds to wait before retrying",
        required,
        json!({"type": "integer", "minimum": 0}),
    )
}

/// An operation with the error answers every route of its access level can give.
pub(crate) fn op(
    id: &str,
    tag: &str,
    summary: &str,
    access: Access,
    mut responses: Vec<(String, Value)>,
    extra: Value,
) -> Value {
    responses.push(problem("400", "Invalid input; `errors` names each field"));
    if access != Access::Public {
        let mut unauthorized = problem(
            "401",
            "Missing, malformed, unknown, revoked or expired API key",
        );
        unauthorized.1["headers"] = json!({"WWW-Authenticate": header_doc("The scheme to authenticate with", true, json!({"type": "string"}))});
        responses.push(unauthorized);
        responses.push(problem(
            "403",
            "The key lacks the role, or acts for another tenant",
        ));
        let mut limited = problem(
            "429",
            "A rate limit or quota was hit (`Retry-After`, `RateLimit-*`)",
        );
        let mut h = rate_limit_headers();
        h.insert("Retry-After".into(), retry_after(true));
        limited.1["headers"] = Value::Object(h);
        responses.push(limited);
        for (code, r) in responses.iter_mut() {
            if code.starts_with('2') {
                r["headers"] = Value::Object(rate_limit_headers());
            }
        }
    }
    if extra.get("requestBody").is_some() {
        responses.push(problem("413", "Body over the size limit"));
        responses.push(problem("415", "Body is not JSON"));
    }
    let mut unavailable = problem(
        "503",
        "The kernel is unavailable; retry after `Retry-After`",
    );
    unavailable.1["headers"] = json!({"Retry-After": retry_after(true)});
    responses.push(unavailable);
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
    let schema = match what {
        "timer" => json!({"type": "string", "format": "uuid", "pattern": TIMER_ID_PATTERN}),
        "tenant" => json!({"type": "string", "pattern": TENANT_ID_PATTERN}),
        _ => json!({"type": "string", "pattern": KEY_ID_PATTERN}),
    };
    json!({"name": "id", "in": "path", "required": true, "description": format!("The {what} id"), "schema": schema})
}

pub(crate) fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// Every endpoint of the API.
pub fn table() -> Vec<RouteSpec> {
    use Access::*;
    let timer_ok = |c: &str, d: &str| ok(c, d, "Timer");
    let not_found = || problem("404", "No such timer for this tenant");
    let mut routes = vec![
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
                    located(timer_ok("201", "Created")),
                    located(timer_ok(
                        "200",
                        "The timer created earlier with this idempotency key",
                    )),
                    problem(
                        "409",
                        "The idempotency key was used for a different request",
                    ),
                ],
                json!({"requestBody": body("TimerRequest", true),
                   "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false,
                                   "description": "The same as idempotencyKey in the body (both: they must match)",
                                   "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[ -~]*$"}},
                                  {"name": "traceparent", "in": "header", "required": false,
                                   "description": "W3C Trace Context of the caller, kept with the timer: its fire and webhook attempts join the caller's trace, and its webhooks carry a traceparent of that trace. A value that is not a valid traceparent (of any length) is ignored, never refused",
                                   "schema": {"type": "string"}}]}),
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
                query("label", "Only timers with this label, as key:value (empty: no filter)", json!({"type": "string", "pattern": LABEL_FILTER_PATTERN})),
                query("name", "Only timers whose name starts with this text, case-sensitive (a whole name lists it and any longer name it begins; empty: no filter)", json!({"type": "string", "maxLength": minoots_core::limits::MAX_NAME_BYTES, "pattern": NO_CONTROL_PATTERN})),
                query("fireAfter", "Only timers that fire at or after this RFC 3339 time (empty: no bound)", json!({"type": "string", "anyOf": [{"format": "date-time"}, {"maxLength": 0}]})),
                query("fireBefore", "Only timers that fire before this RFC 3339 time, later than fireAfter (empty: no bound)", json!({"type": "string", "anyOf": [{"format": "date-time"}, {"maxLength": 0}]})),
                query("limit", "Page size (1 to 500, default 50)", json!({"type": "integer", "minimum": 1, "maximum": 500})),
                query("cursor", "nextCursor of the previous page, unchanged (opaque; empty: the first page)", json!({"type": "string", "pattern": CURSOR_PATTERN}))]}),
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
                    json!({"description": "An event stream", "content": {"text/event-stream": {"schema": schema("ServerSentEvent")}}}),
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
            Method::PATCH,
            "/timers/{id}",
            Write,
            patch(timers::update),
            op(
                "updateTimer",
                "timers",
                "Change a scheduled timer at the version read",
                Write,
                vec![
                    timer_ok("200", "The changed timer, at its next version"),
                    not_found(),
                    problem(
                        "409",
                        "The version differs (the timer changed since it was read), or the timer already fired or was cancelled",
                    ),
                ],
                json!({"parameters": [path_id("timer"),
                        {"name": "If-Match", "in": "header", "required": false,
                         "description": "The version read, in quotes (\"3\"), instead of version in the body (both: they must match)",
                         "schema": {"type": "string", "pattern": "^\"[1-9][0-9]{0,17}\"$"}}],
                       "requestBody": body("TimerPatch", true)}),
            ),
        ),
        r(
            Method::POST,
            "/timers/{id}/fire",
            Write,
            post(timers::fire),
            op(
                "fireTimer",
                "timers",
                "Fire a scheduled timer now",
                Write,
                vec![
                    timer_ok(
                        "200",
                        "The timer once it fired (or, after 2 s without the fire, still scheduled and due now)",
                    ),
                    not_found(),
                    problem("409", "The timer already fired or was cancelled"),
                ],
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
                json!({"parameters": [path_id("timer"), timeout_param("How long to wait, like 30s (default 30s, at most 300s)")]}),
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
                    json!({"description": "An event stream; each data is an Event", "content": {"text/event-stream": {"schema": schema("ServerSentEvent")}}}),
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
                json!({"parameters": [query("after", "nextCursor of the previous page (a tenant id; empty: the first page)", json!({"type": "string", "pattern": format!("^({})?$", &TENANT_ID_PATTERN[1..TENANT_ID_PATTERN.len() - 1])})),
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
                json!({"parameters": [query("tenantId", "Only this tenant's keys (empty: every tenant)", json!({"type": "string", "pattern": format!("^({})?$", &TENANT_ID_PATTERN[1..TENANT_ID_PATTERN.len() - 1])})),
                                  query("after", "nextCursor of the previous page (a key id; empty: the first page)", json!({"type": "string", "pattern": format!("^({})?$", &KEY_ID_PATTERN[1..KEY_ID_PATTERN.len() - 1])})),
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
                    json!({"description": "Prometheus metrics in the OpenMetrics text format", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}),
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
    ];
    routes.extend(schedules::routes());
    routes.extend(crate::session::routes());
    routes.extend(crate::dashboard::routes());
    routes.extend(crate::billing::routes());
    routes
}

fn timeout_param(description: &str) -> Value {
    query(
        "timeout",
        description,
        json!({"type": "string", "pattern": TIMEOUT_PATTERN}),
    )
}

/// A response that carries `Location` (the timer's URL).
fn located(mut r: (String, Value)) -> (String, Value) {
    r.1["headers"] =
        json!({"Location": header_doc("The timer's URL", true, json!({"type": "string"}))});
    r
}

fn events_params() -> Value {
    json!({"parameters": [
        query("after", "Resume after this sequence number (or send Last-Event-ID, which wins); `latest`: only events from now on, none of the log before", json!({"anyOf": [{"type": "integer", "minimum": 0, "maximum": i64::MAX}, {"type": "string", "const": "latest"}]})),
        query("timerId", "Only this timer's events (empty: every timer)", json!({"type": "string", "pattern": format!("^({})?$", &TIMER_ID_PATTERN[1..TIMER_ID_PATTERN.len() - 1])})),
        query("types", "Comma-separated event types, like timer.fired,timer.settled (empty: every type)", json!({"type": "string", "pattern": EVENT_TYPES_PATTERN})),
        timeout_param("Close the stream after this long, like 30s (at most 300s; default: open until the client leaves)"),
        {"name": "Last-Event-ID", "in": "header", "required": false, "description": "The id of the last event received (empty: the start)",
         "schema": {"type": "string", "pattern": "^[ \\t]*([0-9]{1,18}[ \\t]*)?$"}}]})
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
        .merge(crate::ui::router())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .with_state(state)
}

/// `/openapi.json` with the default tiers (what `minoots openapi` prints).
pub fn openapi_document() -> Value {
    let tiers: Vec<String> = crate::config::default_tiers().into_keys().collect();
    openapi_document_for(&tiers)
}

/// `/openapi.json`: OpenAPI 3.1 built from [`table`] and [`schemas`]; `tiers` are the tier
/// names the server knows.
pub fn openapi_document_for(tiers: &[String]) -> Value {
    let mut paths = serde_json::Map::new();
    for spec in table() {
        let mut doc = spec.doc;
        doc["security"] = match spec.access {
            Access::Public => json!([]),
            _ => json!([{"apiKey": []}, {"bearer": []}, {"session": []}]),
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
    let mut all_schemas = schemas(tiers);
    if let Some(m) = all_schemas.as_object_mut() {
        m.extend(schedules::schemas());
        m.extend(crate::session::schemas());
        m.extend(crate::dashboard::schemas());
        m.extend(crate::billing::schemas());
    }
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
                "session": {"type": "apiKey", "in": "cookie", "name": crate::session::COOKIE_NAME,
                            "description": "The dashboard's session (POST /ui/session); a write with it also needs X-CSRF-Token and a same-origin Origin"},
            },
            "schemas": all_schemas,
        },
    })
}
