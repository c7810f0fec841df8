//! API keys: their format, how they are hashed and generated, and the middleware that turns
//! a request's key into a [`Caller`] — authenticated, role-checked and rate-limited —
//! before any handler runs. Routes declare the [`Access`] they need in the route table, so
//! no handler can forget the check.
//!
//! A key is `mnt_` + 64 hex digits (32 random bytes). It is stored as its SHA-256 (a fast
//! hash suffices for 256-bit random secrets; a slow password hash would cost every request
//! milliseconds) and looked up by that hash in O(1); the stored hash is compared again in
//! constant time. The kernel caches keys and drops the cache on every key or tenant change,
//! so revocation and expiry apply to the next request.
//!
//! A request without a key header but with a dashboard session cookie is authenticated by
//! the session instead ([`crate::session`]), with the same roles, limits and throttling.
//!
//! Guessing keys is throttled per client address before any lookup: a malformed key is
//! refused without one, and an address that made more failed authentications than its
//! budget (`failed_auth_burst` at once, `failed_auth_per_minute` after that; GCRA) is
//! answered 429 with `Retry-After` without one, so a flood of random keys costs the store
//! a bounded number of lookups per address. The kernel also remembers unknown keys for a
//! while, so a repeated wrong key does not reach the store again.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use minoots_core::records::{ApiKey, Tenant};
use minoots_kernel_api::api::constant_time_eq;

use crate::config::TierLimits;
use crate::problem::{ApiError, ApiResult};
use crate::{AppState, ControlPlaneError};

pub const ROLE_READ: &str = "timers:read";
pub const ROLE_WRITE: &str = "timers:write";
pub const ROLE_ADMIN: &str = "admin";
/// Every role a key may carry.
pub const ROLES: [&str; 3] = [ROLE_READ, ROLE_WRITE, ROLE_ADMIN];

/// Shortest and longest key text accepted before any lookup (the demo key is 17 bytes;
/// generated keys are 68; an operator's `MINOOTS_ADMIN_KEY` is at least 32).
pub const MIN_KEY_BYTES: usize = 16;
pub const MAX_KEY_BYTES: usize = 256;
/// Characters of a key kept in clear as its `prefix`, so people can tell keys apart.
pub const KEY_PREFIX_CHARS: usize = 12;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key (health, metrics, docs).
    Public,
    /// A key with `timers:read` (or `admin`).
    Read,
    /// A key with `timers:write` (or `admin`).
    Write,
    /// A key with `admin`.
    Admin,
}

impl Access {
    pub fn role(self) -> Option<&'static str> {
        match self {
            Access::Public => None,
            Access::Read => Some(ROLE_READ),
            Access::Write => Some(ROLE_WRITE),
            Access::Admin => Some(ROLE_ADMIN),
        }
    }
}

/// The address of the client a request came from, put in each request's extensions by
/// `into_make_service_with_connect_info::<ClientAddr>()` (as [`crate::serve`] does). The
/// peer of the TCP connection, never a forwarded header (which a client could invent):
/// behind a proxy, all clients share the proxy's budget of failed authentications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, crate::listener::LimitedListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, crate::listener::LimitedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// The budget a client address's failed authentications count against: the IPv4 address,
/// or the /64 network of an IPv6 address (one host usually holds a whole /64, so counting
/// per address would give it 2^64 budgets).
pub fn client_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The authenticated caller, put in the request's extensions by [`authorize`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub key_name: String,
    /// When the key stops working (a dashboard session never outlives it).
    pub key_expires_at_us: Option<i64>,
    pub tenant: Tenant,
    pub roles: Vec<String>,
    /// The tenant's tier limits (unlimited for admin keys).
    pub limits: TierLimits,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_ADMIN)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.is_admin() || self.roles.iter().any(|r| r == role)
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant.id
    }
}

/// SHA-256 of the key text.
pub fn hash_key(key: &str) -> [u8; 32] {
    minoots_core::digest::sha256(key.as_bytes())
}

/// A new key: `mnt_` + 32 bytes from the operating system's random source, in hex.
pub fn generate_key() -> Result<String, ControlPlaneError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ControlPlaneError::NoRandomness(e.to_string()))?;
    Ok(format!("mnt_{}", hex(&bytes)))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The shown part of a key.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX_CHARS).collect()
}

/// The key a request carries: `X-API-Key`, or `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let raw = if let Some(v) = headers.get("x-api-key") {
        v.as_bytes()
    } else if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        match v.get(..7) {
            Some(p) if p.eq_ignore_ascii_case(b"bearer ") => &v[7..],
            _ => {
                return Err(ApiError::unauthorized(
                    "the Authorization header must be \"Bearer <API key>\"",
                ));
            }
        }
    } else {
        return Ok(None);
    };
    checked_key(std::str::from_utf8(raw).unwrap_or("")).map(Some)
}

/// The key text trimmed, or 401 when it cannot be a key (checked before any lookup).
pub fn checked_key(text: &str) -> ApiResult<String> {
    let text = text.trim();
    if text.len() < MIN_KEY_BYTES
        || text.len() > MAX_KEY_BYTES
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::unauthorized(format!(
            "the API key is malformed: it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} printable characters, like mnt_ followed by 64 hex digits"
        )));
    }
    Ok(text.to_string())
}

/// Whether the request names an API key at all (then the key decides, never a cookie).
pub fn carries_key(headers: &HeaderMap) -> bool {
    headers.contains_key("x-api-key") || headers.contains_key(header::AUTHORIZATION)
}

/// Resolves a key to its caller, or says why not (401 / 403), without a limit on failed
/// authentications (for callers that have no client address).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    authenticate_from(state, None, headers).await
}

/// [`authenticate`] for a request, with the limit on failed authentications of the
/// address it came from (when the server recorded one, see [`ClientAddr`]).
pub fn authenticate_request<'a>(
    state: &'a AppState,
    req: &'a Request,
) -> impl Future<Output = ApiResult<Caller>> + Send + 'a {
    // Only the headers are held across the lookup (a request's body is not `Sync`).
    let client = client_ip(req);
    let (method, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers());
    async move {
        match crate::session::cookie_token(headers) {
            Some(token) if !carries_key(headers) => {
                crate::session::authenticate(state, client, &method, &uri, headers, &token).await
            }
            _ => authenticate_from(state, client, headers).await,
        }
    }
}

/// The address of the client that sent `req`, when the server recorded it.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip())
}

/// Resolves a key to its caller, or says why not: 401 (no key, malformed, unknown,
/// revoked, expired), 403 (tier not configured), or 429 when `client` already failed to
/// authenticate more often than its budget allows. The 401s of a missing or malformed key
/// and the 429 are decided without any lookup.
pub async fn authenticate_from(
    state: &AppState,
    client: Option<IpAddr>,
    headers: &HeaderMap,
) -> ApiResult<Caller> {
    let Some(key) = presented_key(headers)? else {
        return Err(ApiError::unauthorized(
            "an API key is required: send it as X-API-Key: <key> or Authorization: Bearer <key>",
        ));
    };
    authenticate_key(state, client, &key).await
}

/// Resolves a well-formed key text to its caller, as [`authenticate_from`] does for a
/// header's key (and `POST /ui/session` for a sign-in's).
pub async fn authenticate_key(
    state: &AppState,
    client: Option<IpAddr>,
    key: &str,
) -> ApiResult<Caller> {
    if key == crate::admin::DEMO_KEY && !state.config.demo {
        return Err(ApiError::unauthorized(
            "the demo key works only while the server runs in demo mode (--demo)",
        ));
    }
    let hash = hash_key(key);
    let found = counted_lookup(state, client, async {
        let found = state.kernel_call(state.kernel.authenticate(hash)).await?;
        Ok(found.filter(|(stored, _)| constant_time_eq(&stored.key_hash, &hash)))
    })
    .await?;
    let Some((stored, tenant)) = found else {
        return Err(ApiError::unauthorized(
            "the API key is unknown, revoked or expired",
        ));
    };
    caller_of(state, stored, tenant)
}

/// Runs a credential lookup against `client`'s budget of failed authentications: 429
/// without the lookup when the budget is spent; a lookup that finds nothing counts as a
/// failure; one that finds the credential, or fails for the kernel's sake (slow, down),
/// does not.
pub async fn counted_lookup<T>(
    state: &AppState,
    client: Option<IpAddr>,
    lookup: impl Future<Output = ApiResult<Option<T>>>,
) -> ApiResult<Option<T>> {
    let (per_minute, burst) = (
        state.config.failed_auth_per_minute,
        state.config.failed_auth_burst,
    );
    let bucket = client.map(client_bucket);
    if let Some(b) = &bucket {
        // Counted as a failure before the lookup and given back when the key is good, so
        // an address never has more lookups running or failed than its budget allows.
        let d = state.failed_auth.check_burst(b, per_minute, burst);
        if !d.allowed {
            state
                .metrics
                .rate_limited(FAILED_AUTH_QUOTA, crate::metrics::NO_TIER);
            return Err(failed_auth_limited(burst, &d));
        }
    }
    let found = lookup.await;
    if let Some(b) = &bucket
        && !matches!(found, Ok(None))
    {
        state.failed_auth.refund(b, per_minute);
    }
    found
}

/// The quota named in the 429 of too many failed authentications (and in
/// `minoots_rate_limited_total`).
pub const FAILED_AUTH_QUOTA: &str = "failedAuthPerMinute";

/// 429 for an address that failed to authenticate too often, with `Retry-After`.
fn failed_auth_limited(burst: u32, d: &crate::ratelimit::Decision) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        format!(
            "this address sent more than {burst} unknown, revoked or expired API keys in a row (at most {} per minute are looked up); check the key and retry after {} s",
            d.limit, d.retry_after_s
        ),
    )
    .with_extra("quota", FAILED_AUTH_QUOTA.into())
    .with_extra("limit", d.limit.into())
    .with_header(header::RETRY_AFTER, HeaderValue::from(d.retry_after_s))
}

/// The caller a live key (found by its key text or by a dashboard session) acts as: 403
/// when its tenant's tier is not configured.
pub fn caller_of(state: &AppState, key: ApiKey, tenant: Tenant) -> ApiResult<Caller> {
    let admin = key.roles.iter().any(|r| r == ROLE_ADMIN);
    let limits = match state.config.tiers.get(&tenant.tier) {
        _ if admin => TierLimits::UNLIMITED,
        Some(l) => *l,
        None => {
            return Err(ApiError::forbidden(format!(
                "the tenant's tier \"{}\" is not configured on this server; an operator must set a known tier",
                tenant.tier
            )));
        }
    };
    Ok(Caller {
        key_id: key.id,
        key_name: key.name,
        key_expires_at_us: key.expires_at_us,
        tenant,
        roles: key.roles,
        limits,
    })
}

/// `RateLimit-*` headers for a decision.
pub fn rate_headers(d: &crate::ratelimit::Decision) -> [(&'static str, HeaderValue); 3] {
    [
        ("ratelimit-limit", HeaderValue::from(d.limit)),
        ("ratelimit-remaining", HeaderValue::from(d.remaining)),
        ("ratelimit-reset", HeaderValue::from(d.reset_s)),
    ]
}

/// 429 for a per-minute limit, with the standard headers and the quota named.
pub fn rate_limited(quota: &str, d: &crate::ratelimit::Decision) -> ApiError {
    let mut e = ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        format!(
            "this key made more than {} {} per minute, the most its tier allows; retry after {} s",
            d.limit,
            if quota == "createsPerMinute" {
                "creates"
            } else {
                "requests"
            },
            d.retry_after_s
        ),
    )
    .with_extra("quota", quota.into())
    .with_extra("limit", d.limit.into())
    .with_header(header::RETRY_AFTER, HeaderValue::from(d.retry_after_s));
    for (k, v) in rate_headers(d) {
        e = e.with_header(header::HeaderName::from_static(k), v);
    }
    e
}

/// Route middleware: authenticates (with the limit on failed authentications of the
/// client's address), checks the role `access` needs, applies the key's request rate, and
/// hands the [`Caller`] to the handler.
pub async fn authorize(
    State((state, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(role) = access.role() else {
        return next.run(req).await;
    };
    let caller = match authenticate_request(&state, &req).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !caller.has_role(role) {
        return ApiError::forbidden(format!(
            "this API key lacks the role \"{role}\" that this request needs"
        ))
        .into_response();
    }
    let decision = match caller.limits.requests_per_minute {
        Some(n) if !caller.is_admin() => {
            let d = state.rate.check(&caller.key_id, n);
            if !d.allowed {
                state
                    .metrics
                    .rate_limited("requestsPerMinute", &caller.tenant.tier);
                return rate_limited("requestsPerMinute", &d).into_response();
            }
            Some(d)
        }
        _ => None,
    };
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    if let Some(d) = decision
        && !resp.headers().contains_key("ratelimit-limit")
    {
        // A handler that applied a tighter limit (creates per minute) set its own.
        for (k, v) in rate_headers(&d) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn keys_are_found_in_either_header_and_checked_for_shape() {
        let k = generate_key().unwrap();
        assert_eq!(k.len(), 68);
        assert!(k.starts_with("mnt_"));
        assert_ne!(k, generate_key().unwrap());
        assert_eq!(
            presented_key(&headers(&[("x-api-key", &k)])).unwrap(),
            Some(k.clone())
        );
        let bearer = format!("Bearer {k}");
        assert_eq!(
            presented_key(&headers(&[("authorization", &bearer)])).unwrap(),
            Some(k.clone())
        );
        assert_eq!(presented_key(&headers(&[])).unwrap(), None);
        assert!(presented_key(&headers(&[("x-api-key", "short")])).is_err());
        assert!(presented_key(&headers(&[("authorization", "Basic abcdefabcdefabcdef")])).is_err());
        assert!(presented_key(&headers(&[("x-api-key", &"a".repeat(300))])).is_err());
        assert_eq!(key_prefix(&k).len(), KEY_PREFIX_CHARS);

        assert!(constant_time_eq(&hash_key(&k), &hash_key(&k)));
        assert!(!constant_time_eq(
            &hash_key(&k),
            &hash_key("mnt_other_key_123")
        ));
    }

    #[test]
    fn failed_authentications_count_per_ipv4_address_and_per_ipv6_network() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(client_bucket(v4), "203.0.113.7");
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(client_bucket(mapped), "203.0.113.7");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_bucket(a), client_bucket(b));
        assert_ne!(client_bucket(a), client_bucket(c));
        assert_eq!(client_bucket(a), "2001:db8:1:2::/64");
    }
}
