//! Tenants, API keys, usage and webhook secrets over REST, and the bootstrap that makes a
//! fresh store usable: the `system` tenant with an admin key (from `MINOOTS_ADMIN_KEY`, or
//! generated once and shown once), and in demo mode the tenant `test` with the key
//! `mnt_demo_key_free`. The demo key is accepted only while the server runs in demo mode.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minoots_core::records::{ApiKey, Tenant, TenantUpdate};
use minoots_core::timefmt::{format_us, parse_rfc3339_us};
use minoots_core::{Clock, ConfigError, SystemClock};
use minoots_kernel_api::api::SECRET_ROTATION_GRACE;
use minoots_kernel_api::{KernelApi, KernelError, NewTenant};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{
    Caller, ROLE_ADMIN, ROLE_READ, ROLE_WRITE, ROLES, generate_key, hash_key, hex, key_prefix,
};
use crate::body::Json;
use crate::config::TierLimits;
use crate::problem::{ApiError, ApiResult};
use crate::timers::{json_response, page_limit, query_params};
use crate::{AppState, ControlPlaneError};

/// The tenant that owns admin keys.
pub const SYSTEM_TENANT: &str = "system";
/// The demo tenant and its key (demo mode only).
pub const DEMO_TENANT: &str = "test";
pub const DEMO_KEY: &str = "mnt_demo_key_free";
/// Shortest `MINOOTS_ADMIN_KEY` accepted.
pub const MIN_ADMIN_KEY_BYTES: usize = 32;
/// Default and largest page of tenants or keys.
const DEFAULT_ADMIN_PAGE: usize = 100;
const MAX_ADMIN_PAGE: usize = minoots_kernel_api::api::MAX_ADMIN_PAGE;

pub fn tenant_json(t: &Tenant) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "tier": t.tier,
        "createdAt": format_us(t.created_at_us),
        "updatedAt": format_us(t.updated_at_us),
    })
}

pub fn key_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id,
        "tenantId": k.tenant_id,
        "name": k.name,
        "prefix": k.prefix,
        "roles": k.roles,
        "createdAt": format_us(k.created_at_us),
        "expiresAt": k.expires_at_us.map(format_us),
        "revokedAt": k.revoked_at_us.map(format_us),
        "lastUsedAt": k.last_used_at_us.map(format_us),
    })
}

fn limits_json(l: &TierLimits) -> Value {
    json!({
        "requestsPerMinute": l.requests_per_minute,
        "createsPerMinute": l.creates_per_minute,
        "timersPerDay": l.timers_per_day,
        "pendingTimers": l.pending_timers,
        "maxDurationMs": l.max_duration_ms,
        "schedules": l.schedules,
        "minScheduleIntervalMs": l.min_schedule_interval_ms,
    })
}

fn check_tier(st: &AppState, field: &str, tier: &str) -> ApiResult<()> {
    if st.config.tiers.contains_key(tier) {
        return Ok(());
    }
    let known: Vec<&str> = st.config.tiers.keys().map(String::as_str).collect();
    Err(ApiError::field(
        field,
        format!(
            "\"{tier}\" is not a tier of this server; use one of {}",
            known.join(", ")
        ),
    ))
}

/// Key ids as the document describes them (`crate::openapi::KEY_ID_PATTERN`): 1 to 64
/// printable ASCII characters. Used for the `{id}` of a revoke and the `after` of a list.
fn check_key_id(field: &str, id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::field(
            field,
            "must be a key id: 1 to 64 printable ASCII characters, as listed by GET /admin/keys",
        ));
    }
    Ok(())
}

fn required<T>(body: Option<T>) -> ApiResult<T> {
    body.ok_or_else(|| ApiError::field("body", "is required: send a JSON object"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTenantBody {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
}

pub async fn create_tenant(
    State(st): State<AppState>,
    Json(body): Json<NewTenantBody>,
) -> ApiResult<Response> {
    let body = required(body)?;
    let tier = body.tier.unwrap_or_else(|| "free".into());
    check_tier(&st, "tier", &tier)?;
    let t = st
        .kernel_call(st.kernel.create_tenant(NewTenant {
            name: body.name.unwrap_or_else(|| body.id.clone()),
            id: body.id,
            tier,
        }))
        .await?;
    Ok(json_response(StatusCode::CREATED, &tenant_json(&t)))
}

pub async fn list_tenants(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = query_params(raw.as_deref(), &["after", "limit"])?;
    let limit = page_limit(params.get("limit"), DEFAULT_ADMIN_PAGE, MAX_ADMIN_PAGE)?;
    let after = params.non_empty("after").map(str::to_string);
    if let Some(a) = &after {
        minoots_core::request::check_tenant_id(a).map_err(|m| ApiError::field("after", m))?;
    }
    let list = st.kernel_call(st.kernel.list_tenants(after, limit)).await?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|t| t.id.clone()))
        .flatten();
    Ok(json_response(
        StatusCode::OK,
        &json!({"tenants": list.iter().map(tenant_json).collect::<Vec<_>>(), "nextCursor": next}),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
}

pub async fn update_tenant(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<TenantPatch>,
) -> ApiResult<Response> {
    let body = required(body)?;
    if let Some(t) = &body.tier {
        check_tier(&st, "tier", t)?;
    }
    let t = st
        .kernel_call(st.kernel.update_tenant(
            &id,
            TenantUpdate {
                name: body.name,
                tier: body.tier,
            },
        ))
        .await?;
    Ok(json_response(StatusCode::OK, &tenant_json(&t)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewKeyBody {
    pub tenant_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

pub async fn create_key(
    State(st): State<AppState>,
    Json(body): Json<NewKeyBody>,
) -> ApiResult<Response> {
    let body = required(body)?;
    let roles = body
        .roles
        .unwrap_or_else(|| vec![ROLE_READ.into(), ROLE_WRITE.into()]);
    if roles.is_empty() {
        return Err(ApiError::field("roles", "must name at least one role"));
    }
    for r in &roles {
        if !ROLES.contains(&r.as_str()) {
            return Err(ApiError::field(
                "roles",
                format!("\"{r}\" is not a role; use {}", ROLES.join(", ")),
            ));
        }
    }
    let now = st.clock.now_us();
    let expires_at_us = match &body.expires_at {
        None => None,
        Some(text) => {
            let at = parse_rfc3339_us(text).map_err(|m| ApiError::field("expiresAt", m))?;
            if at <= now {
                return Err(ApiError::field(
                    "expiresAt",
                    "is in the past; give a future time",
                ));
            }
            Some(at)
        }
    };
    let plaintext = generate_key()?;
    let key = ApiKey {
        expires_at_us,
        ..key_record(
            uuid::Uuid::now_v7().to_string(),
            &body.tenant_id,
            &body.name.unwrap_or_else(|| "api key".into()),
            &plaintext,
            roles,
            now,
        )
    };
    let stored = st.kernel_call(st.kernel.create_api_key(key)).await?;
    let mut out = key_json(&stored);
    out["key"] = plaintext.into();
    Ok(json_response(StatusCode::CREATED, &out))
}

pub async fn list_keys(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let params = query_params(raw.as_deref(), &["tenantId", "after", "limit"])?;
    let get = |n: &str| params.non_empty(n).map(str::to_string);
    let limit = page_limit(get("limit").as_deref(), DEFAULT_ADMIN_PAGE, MAX_ADMIN_PAGE)?;
    if let Some(a) = get("after") {
        check_key_id("after", &a)?;
    }
    let list = st
        .kernel_call(
            st.kernel
                .list_api_keys(get("tenantId"), get("after"), limit),
        )
        .await?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|k| k.id.clone()))
        .flatten();
    Ok(json_response(
        StatusCode::OK,
        &json!({"keys": list.iter().map(key_json).collect::<Vec<_>>(), "nextCursor": next}),
    ))
}

pub async fn revoke_key(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    check_key_id("id", &id)?;
    let k = st.kernel_call(st.kernel.revoke_api_key(&id)).await?;
    Ok(json_response(StatusCode::OK, &key_json(&k)))
}

pub async fn usage(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let u = st
        .kernel_call(st.kernel.tenant_usage(caller.tenant_id()))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "tenantId": caller.tenant_id(),
            "tier": caller.tenant.tier,
            "limits": limits_json(&caller.limits),
            "usage": {"timersCreatedToday": u.created_today, "pendingTimers": u.pending},
        }),
    ))
}

pub async fn webhook_secret(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let secrets = st
        .kernel_call(st.kernel.webhook_secrets(caller.tenant_id()))
        .await?;
    let current = secrets
        .first()
        .ok_or_else(|| ApiError::internal("the tenant has no signing secret"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"secret": current, "signingSecrets": secrets.len()}),
    ))
}

pub async fn rotate_webhook_secret(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let secret = st
        .kernel_call(st.kernel.rotate_webhook_secret(caller.tenant_id()))
        .await?;
    let until = st.clock.now_us() + SECRET_ROTATION_GRACE.as_micros() as i64;
    Ok(json_response(
        StatusCode::OK,
        &json!({"secret": secret, "previousSecretValidUntil": format_us(until)}),
    ))
}

/// A new, live key record for `plaintext` (stored by its hash and shown prefix only).
fn key_record(
    id: String,
    tenant_id: &str,
    name: &str,
    plaintext: &str,
    roles: Vec<String>,
    now_us: i64,
) -> ApiKey {
    ApiKey {
        id,
        tenant_id: tenant_id.to_string(),
        name: name.to_string(),
        key_hash: hash_key(plaintext),
        prefix: key_prefix(plaintext),
        roles,
        created_at_us: now_us,
        expires_at_us: None,
        revoked_at_us: None,
        last_used_at_us: None,
    }
}

/// What [`bootstrap`] should ensure.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// `MINOOTS_ADMIN_KEY`: the admin key to accept (at least 32 characters).
    pub admin_key: Option<String>,
    /// Create the demo tenant and key.
    pub demo: bool,
}

/// What [`bootstrap`] did that the operator must hear about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapOutcome {
    /// A newly generated admin key: print it once; it is stored only as a hash.
    pub generated_admin_key: Option<String>,
}

fn ignore_conflict<T>(r: Result<T, KernelError>) -> Result<(), KernelError> {
    match r {
        Ok(_) | Err(KernelError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a store usable: the `system` tenant and an admin key, and the demo tenant and
/// key in demo mode. Safe to run at every start.
pub async fn bootstrap(
    kernel: &dyn KernelApi,
    b: Bootstrap,
) -> Result<BootstrapOutcome, ControlPlaneError> {
    let now = SystemClock.now_us();
    ignore_conflict(
        kernel
            .create_tenant(NewTenant {
                id: SYSTEM_TENANT.into(),
                name: "MINOOTS operators".into(),
                tier: "unlimited".into(),
            })
            .await,
    )?;
    let admin_key = |plaintext: &str, name: &str| {
        let id = format!("bootstrap-{}", &hex(&hash_key(plaintext))[..16]);
        key_record(
            id,
            SYSTEM_TENANT,
            name,
            plaintext,
            vec![ROLE_ADMIN.into()],
            now,
        )
    };
    let mut outcome = BootstrapOutcome::default();
    match &b.admin_key {
        Some(k) => {
            if k.len() < MIN_ADMIN_KEY_BYTES || !k.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(ConfigError::new(
                    "MINOOTS_ADMIN_KEY",
                    format!(
                        "must be at least {MIN_ADMIN_KEY_BYTES} printable characters without spaces"
                    ),
                )
                .into());
            }
            if kernel.authenticate(hash_key(k)).await?.is_none() {
                let record = admin_key(k, "MINOOTS_ADMIN_KEY");
                let id = record.id.clone();
                match kernel.create_api_key(record).await {
                    Ok(_) => {}
                    // A conflict is either a revoked key of that id, or another process
                    // sharing the store (a second control plane, a second `serve` on
                    // PostgreSQL) that created the same key a moment ago: look at the
                    // stored key (not through the key cache, which may still remember
                    // "unknown").
                    Err(KernelError::Conflict { .. }) => {
                        let live = kernel
                            .list_api_keys(Some(SYSTEM_TENANT.into()), None, MAX_ADMIN_PAGE)
                            .await?
                            .iter()
                            .any(|stored| stored.id == id && stored.revoked_at_us.is_none());
                        if !live {
                            return Err(ConfigError::new(
                                "MINOOTS_ADMIN_KEY",
                                "was revoked on this store; choose a new key",
                            )
                            .into());
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        None => {
            let keys = kernel
                .list_api_keys(Some(SYSTEM_TENANT.into()), None, MAX_ADMIN_PAGE)
                .await?;
            let has_admin = keys.iter().any(|k| {
                k.revoked_at_us.is_none()
                    && k.expires_at_us.is_none_or(|e| e > now)
                    && k.roles.iter().any(|r| r == ROLE_ADMIN)
            });
            if !has_admin {
                let plaintext = generate_key()?;
                kernel
                    .create_api_key(admin_key(&plaintext, "generated at first start"))
                    .await?;
                outcome.generated_admin_key = Some(plaintext);
            }
        }
    }
    if b.demo {
        ignore_conflict(
            kernel
                .create_tenant(NewTenant {
                    id: DEMO_TENANT.into(),
                    name: "Demo tenant".into(),
                    tier: "free".into(),
                })
                .await,
        )?;
        ignore_conflict(
            kernel
                .create_api_key(key_record(
                    "demo-key-free".into(),
                    DEMO_TENANT,
                    "demo key (demo mode only)",
                    DEMO_KEY,
                    vec![ROLE_READ.into(), ROLE_WRITE.into()],
                    now,
                ))
                .await,
        )?;
    }
    Ok(outcome)
}
