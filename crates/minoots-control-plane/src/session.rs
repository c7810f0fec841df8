//! Dashboard sessions: `POST /ui/session` trades an API key for a session cookie,
//! `GET /ui/session` says who the cookie signs in as, `DELETE /ui/session` signs out; and
//! [`authenticate`] lets a request that carries the cookie (and no key) act as the key,
//! which is how the dashboard's `EventSource` — which cannot send headers — reads the
//! event stream, and why a key never has to go into a URL.
//!
//! The token is 32 bytes from the operating system's random source, base64url (43
//! characters), sent only in the `minoots_session` cookie: `HttpOnly` (no script reads
//! it), `SameSite=Strict` (no other site's page sends it), `Path=/`, and `Secure` when the
//! request came over HTTPS (a proxy's `X-Forwarded-Proto: https`) or the operator says the
//! API is served over HTTPS (`secure_cookies`). The store keeps only its SHA-256, with the
//! key, the tenant and the expiry; sessions live in the kernel's store (not in this
//! process), so they survive a restart and work with any control plane of the kernel.
//!
//! The CSRF token is not stored: it is HMAC-SHA256 of a fixed label keyed by the session
//! token, base64url. So the server can check it on every write and hand it again to a
//! reloaded page (`GET /ui/session`), a leaked CSRF token reveals nothing of the session
//! token, and it ends with the session. A write (POST, PUT, PATCH, DELETE) made with the
//! cookie needs `X-CSRF-Token` equal to it and an `Origin` equal to the request's own
//! origin; otherwise 403, saying which is missing or wrong. Reads need neither. A request
//! that carries `X-API-Key` or `Authorization` is authenticated by that alone, as before.
//!
//! A session acts only while it has not expired (`ui_session_ttl`, 12 h by default, never
//! past its key's own expiry) and its key is live: the kernel reads the session, its key
//! and its tenant from the store on every request (no cache), so a sign-out, a revoked key
//! or an expired session stops working at the next request, through any control plane.
//! A lookup that finds no live session counts against the client address's budget of
//! failed authentications, as an unknown key does. This module must never log, store or
//! put in a URL a token or a key.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minoots_core::FieldError;
use minoots_core::records::UiSessionGrant;
use minoots_kernel_api::api::{NewUiSession, constant_time_eq};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{self, Access, Caller};
use crate::problem::{ApiError, ApiResult};
use crate::routes::{RouteSpec, body, ok, op, problem, r};
use crate::{AppState, ControlPlaneError};

/// The cookie that carries the session token.
pub const COOKIE_NAME: &str = "minoots_session";
/// The header a cookie-authenticated write must carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Where sessions are opened, read and ended.
pub const SESSION_PATH: &str = "/ui/session";
/// Largest sign-in body: `{"apiKey": "..."}` with a key of at most 256 bytes fits many
/// times over.
pub const MAX_SIGN_IN_BODY_BYTES: usize = 4 * 1024;
/// Random bytes of a session token.
const TOKEN_BYTES: usize = 32;
/// Characters of a token in base64url without padding.
const TOKEN_CHARS: usize = 43;
/// What the CSRF token is the HMAC of (keyed by the session token).
const CSRF_LABEL: &[u8] = b"minoots dashboard csrf v1";

/// A new session token.
pub fn new_token() -> Result<String, ControlPlaneError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| ControlPlaneError::NoRandomness(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    minoots_core::digest::sha256(token.as_bytes())
}

/// The session's CSRF token.
pub fn csrf_token(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(minoots_core::digest::hmac_sha256(
        CSRF_LABEL,
        token.as_bytes(),
    ))
}

/// The session token of the request's cookie, when it has one of the right shape (a
/// cookie of another shape is ignored, as if absent, and costs no lookup).
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|v| {
            v.len() == TOKEN_CHARS
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
}

/// Whether the request reached the server over HTTPS, as far as it can tell: the operator
/// says so (`secure_cookies`), or a proxy in front says `X-Forwarded-Proto: https`.
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if over_https(state, headers) {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{COOKIE_NAME}={value}; Max-Age={max_age_s}; Path=/; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

fn clear_cookie(state: &AppState, headers: &HeaderMap) -> HeaderValue {
    cookie(state, headers, "", 0)
}

/// The request's own origin (`http://host:port`), from its Host (or its URI's authority).
fn own_origin(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))?;
    let scheme = if over_https(state, headers) {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}", host.trim().to_ascii_lowercase()))
}

/// 403 unless `Origin` is the request's own origin. `required`: whether a request
/// without `Origin` is refused too (a write with the cookie; a browser always sends it).
fn check_origin(state: &AppState, uri: &Uri, headers: &HeaderMap, required: bool) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        if !required {
            return Ok(());
        }
        return Err(ApiError::forbidden(
            "a write made with the dashboard's session cookie needs an Origin header naming this server; send the request from the dashboard's own page",
        ));
    };
    let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match own_origin(state, uri, headers) {
        Some(own) if own == origin => Ok(()),
        own => Err(ApiError::forbidden(format!(
            "the Origin \"{origin}\" is not this server's own ({}); the session cookie works only from the dashboard's own pages",
            own.as_deref().unwrap_or("unknown: the request has no Host")
        ))),
    }
}

/// 403 unless `X-CSRF-Token` is the session's.
fn check_csrf(headers: &HeaderMap, token: &str) -> ApiResult<()> {
    let Some(sent) = headers.get(CSRF_HEADER) else {
        return Err(ApiError::forbidden(
            "a write made with the dashboard's session cookie needs the X-CSRF-Token header: send the csrfToken that POST or GET /ui/session returned",
        ));
    };
    if !constant_time_eq(sent.as_bytes(), csrf_token(token).as_bytes()) {
        return Err(ApiError::forbidden(
            "the X-CSRF-Token header does not match this session: send the csrfToken that GET /ui/session returns",
        ));
    }
    Ok(())
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The live session of `token` with its key and tenant, counted against `client`'s budget
/// of failed authentications; 401 (clearing the cookie) when there is none.
async fn live_session(
    state: &AppState,
    client: Option<IpAddr>,
    headers: &HeaderMap,
    token: &str,
) -> ApiResult<UiSessionGrant> {
    let hash = token_hash(token);
    let demo_hash = auth::hash_key(crate::admin::DEMO_KEY);
    let found = auth::counted_lookup(state, client, async {
        let found = state.kernel_call(state.kernel.ui_session(hash)).await?;
        // The demo key signs in only while the server runs in demo mode; a session it
        // opened in an earlier demo run does not outlive that either.
        Ok(found.filter(|g| state.config.demo || g.key.key_hash != demo_hash))
    })
    .await?;
    found.ok_or_else(|| {
        ApiError::unauthorized(
            "the dashboard session is unknown, signed out or expired, or its API key was revoked; sign in again with POST /ui/session",
        )
        .with_header(header::SET_COOKIE, clear_cookie(state, headers))
    })
}

/// Authenticates a request by its session cookie (see the module's comment): 401 when the
/// session is not live, 403 when a write lacks the CSRF token or a same-origin `Origin`.
pub async fn authenticate(
    state: &AppState,
    client: Option<IpAddr>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    token: &str,
) -> ApiResult<Caller> {
    let grant = live_session(state, client, headers, token).await?;
    if is_write(method) {
        check_csrf(headers, token)?;
        check_origin(state, uri, headers, true)?;
    }
    auth::caller_of(state, grant.key, grant.tenant)
}

/// What the dashboard learns of its session.
fn session_json(caller: &Caller, expires_at_us: i64, token: &str) -> Value {
    json!({
        "tenantId": caller.tenant_id(),
        "keyName": caller.key_name,
        "roles": caller.roles,
        "expiresAt": minoots_core::timefmt::format_us(expires_at_us),
        "csrfToken": csrf_token(token),
    })
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SignIn {
    api_key: Option<String>,
}

/// A sign-in refused for its key: the 401 names `apiKey` and says what to do.
fn key_refused(mut e: ApiError) -> ApiError {
    if e.status == StatusCode::UNAUTHORIZED {
        e.errors.push(FieldError {
            field: "apiKey".into(),
            message: format!(
                "{}; sign in with a live key of the tenant (an admin creates one with POST /admin/keys)",
                e.detail
            ),
        });
    }
    e
}

/// `POST /ui/session`: the key becomes a session cookie; the answer carries the CSRF token.
pub async fn sign_in(State(state): State<AppState>, req: Request) -> Response {
    match open_session(&state, req).await {
        Ok(resp) => no_store(resp),
        Err(e) => e.into_response(),
    }
}

async fn open_session(state: &AppState, req: Request) -> ApiResult<Response> {
    let client = auth::client_ip(&req);
    let (uri, headers) = (req.uri().clone(), req.headers().clone());
    // A page of another site must not sign a visitor in with a key of its choosing.
    check_origin(state, &uri, &headers, false)?;
    let bytes = crate::body::read_limited(req, MAX_SIGN_IN_BODY_BYTES).await?;
    crate::body::require_body(&bytes, r#"{"apiKey": "mnt_..."}"#)?;
    let body: SignIn = crate::body::parse_json(&bytes)?;
    let Some(key) = body.api_key else {
        return Err(ApiError::field(
            "apiKey",
            r#"is required: send {"apiKey": "mnt_..."} with the API key to sign in with"#,
        ));
    };
    let key = auth::checked_key(&key).map_err(key_refused)?;
    let caller = auth::authenticate_key(state, client, &key)
        .await
        .map_err(key_refused)?;
    let token = new_token().map_err(|e| ApiError::internal(e.to_string()))?;
    let ttl = state.config.ui_session_ttl;
    let session = state
        .kernel_call(state.kernel.create_ui_session(NewUiSession {
            token_hash: token_hash(&token),
            key_id: caller.key_id.clone(),
            tenant_id: caller.tenant_id().to_string(),
            ttl_ms: ttl.as_millis() as u64,
            key_expires_at_us: caller.key_expires_at_us,
        }))
        .await?;
    let max_age_s = ((session.expires_at_us - session.created_at_us) / 1_000_000).max(0);
    let mut resp = (
        StatusCode::OK,
        axum::Json(session_json(&caller, session.expires_at_us, &token)),
    )
        .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie(state, &headers, &token, max_age_s),
    );
    Ok(resp)
}

/// `GET /ui/session`: who the cookie signs in as, with the CSRF token (a reloaded page
/// cannot read the cookie, so it asks here).
pub async fn whoami(State(state): State<AppState>, req: Request) -> Response {
    let client = auth::client_ip(&req);
    let headers = req.headers();
    let Some(token) = cookie_token(headers) else {
        return ApiError::unauthorized(
            "no dashboard session: sign in with POST /ui/session and an API key",
        )
        .into_response();
    };
    let result = async {
        let grant = live_session(&state, client, headers, &token).await?;
        let expires = grant.session.expires_at_us;
        let caller = auth::caller_of(&state, grant.key, grant.tenant)?;
        Ok::<_, ApiError>(axum::Json(session_json(&caller, expires, &token)).into_response())
    }
    .await;
    match result {
        Ok(resp) => no_store(resp),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /ui/session`: ends the session (a write: CSRF token and Origin as for any) and
/// clears the cookie. Without a live session there is nothing to end: 204 all the same.
pub async fn sign_out(State(state): State<AppState>, req: Request) -> Response {
    let client = auth::client_ip(&req);
    let (method, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers());
    let result = async {
        if let Some(token) = cookie_token(headers) {
            match authenticate(&state, client, &method, &uri, headers, &token).await {
                Ok(_) => {
                    state
                        .kernel_call(state.kernel.end_ui_session(token_hash(&token)))
                        .await?;
                }
                Err(e) if e.status == StatusCode::UNAUTHORIZED => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp.headers_mut()
                .insert(header::SET_COOKIE, clear_cookie(&state, headers));
            no_store(resp)
        }
        Err(e) => e.into_response(),
    }
}

/// The session endpoints for the route table. They are public in the table: each handler
/// authenticates by the key in the body (sign-in) or by the cookie itself.
pub fn routes() -> Vec<RouteSpec> {
    let public = Access::Public;
    let cookie_header = || {
        json!({"Set-Cookie": {"description": format!("{COOKIE_NAME}=<token>; HttpOnly; SameSite=Strict; Path=/ (and Secure over HTTPS)"),
                              "required": true, "schema": {"type": "string"}}})
    };
    let mut opened = ok("200", "Signed in: the session cookie is set", "UiSession");
    opened.1["headers"] = cookie_header();
    let unauthorized = |what: &str| problem("401", what);
    let forbidden = || {
        problem(
            "403",
            "A cookie write without X-CSRF-Token or with another Origin, or a tier the server does not know",
        )
    };
    let limited = || {
        problem(
            "429",
            "Too many failed authentications from this address (`Retry-After`)",
        )
    };
    vec![
        r(
            Method::POST,
            SESSION_PATH,
            public,
            post(sign_in),
            op(
                "signIn",
                "dashboard",
                "Sign in to the dashboard: an API key becomes an HttpOnly session cookie",
                public,
                vec![
                    opened,
                    unauthorized(
                        "The apiKey is malformed, unknown, revoked or expired (`errors` names apiKey)",
                    ),
                    forbidden(),
                    problem("413", "The body is larger than 4 KiB"),
                    limited(),
                    problem(
                        "503",
                        "The server holds its maximum of sessions, or the kernel is unavailable",
                    ),
                ],
                json!({"requestBody": body("SignInRequest", true)}),
            ),
        ),
        r(
            Method::GET,
            SESSION_PATH,
            public,
            get(whoami),
            op(
                "getSession",
                "dashboard",
                "Who the session cookie signs in as, with its CSRF token",
                public,
                vec![
                    ok("200", "The live session", "UiSession"),
                    unauthorized(
                        "No session cookie, or the session is signed out, expired or its key revoked",
                    ),
                    limited(),
                ],
                json!({}),
            ),
        ),
        r(
            Method::DELETE,
            SESSION_PATH,
            public,
            delete(sign_out),
            op(
                "signOut",
                "dashboard",
                "Sign out: ends the session and clears the cookie (needs X-CSRF-Token and a same-origin Origin)",
                public,
                vec![
                    (
                        "204".into(),
                        json!({"description": "Signed out (also when there was no live session); the cookie is cleared"}),
                    ),
                    forbidden(),
                ],
                json!({"parameters": [{"name": "X-CSRF-Token", "in": "header", "required": false,
                                       "description": "The session's csrfToken", "schema": {"type": "string"}}]}),
            ),
        ),
    ]
}

/// The OpenAPI schemas of the session endpoints.
pub fn schemas() -> serde_json::Map<String, Value> {
    let v = json!({
        "SignInRequest": {"type": "object", "additionalProperties": false, "required": ["apiKey"],
            "properties": {"apiKey": {"type": "string", "minLength": auth::MIN_KEY_BYTES, "maxLength": auth::MAX_KEY_BYTES,
                                      "description": "The API key to sign in with; it is never stored in the browser"}}},
        "UiSession": {"type": "object", "required": ["tenantId", "keyName", "roles", "expiresAt", "csrfToken"],
            "properties": {
                "tenantId": {"type": "string"},
                "keyName": {"type": "string"},
                "roles": {"type": "array", "items": {"type": "string"}},
                "expiresAt": {"type": "string", "format": "date-time", "description": "When the session ends (never after its key expires)"},
                "csrfToken": {"type": "string", "description": "Send it as X-CSRF-Token with every write made with the cookie"}}},
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_url_safe_and_their_csrf_tokens_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_CHARS);
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), a);

        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("theme=dark; {COOKIE_NAME}={a}; other=1")
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_token(&h), Some(a.clone()));
        h.insert(
            header::COOKIE,
            format!("{COOKIE_NAME}=short").parse().unwrap(),
        );
        assert_eq!(
            cookie_token(&h),
            None,
            "a cookie of another shape is ignored"
        );
        h.insert(
            header::COOKIE,
            format!("x{COOKIE_NAME}={a}").parse().unwrap(),
        );
        assert_eq!(cookie_token(&h), None, "only the cookie of that exact name");
    }
}
