//! Tenants, API keys, authentication, usage and webhook signing secrets, for
//! [`Kernel`]'s [`KernelApi`](minoots_kernel_api::KernelApi) methods of the admin plane:
//! field checks first, then the store, and the key cache emptied after every tenant or
//! key change so a revocation takes effect at once.

use minoots_core::Missing;
use minoots_kernel_api::api::{NewTenant, SECRET_ROTATION_GRACE};
use minoots_kernel_api::{KernelError, KernelResult};
use minoots_store::{ApiKey, Tenant, TenantUpdate, TenantUsage};

use super::Kernel;
use crate::admin::{self, Cached};
use crate::error::from_store;
use crate::metrics::KernelMetrics;

pub(super) async fn webhook_secrets(kernel: &Kernel, tenant_id: &str) -> KernelResult<Vec<String>> {
    minoots_core::request::check_tenant_id(tenant_id)
        .map_err(|m| KernelError::invalid("tenantId", m))?;
    let grace_us = SECRET_ROTATION_GRACE.as_micros() as i64;
    kernel
        .store
        .signing_secrets(tenant_id, new_secret()?, grace_us)
        .await
        .map_err(from_store)
}

pub(super) async fn rotate_webhook_secret(
    kernel: &Kernel,
    tenant_id: &str,
) -> KernelResult<String> {
    minoots_core::request::check_tenant_id(tenant_id)
        .map_err(|m| KernelError::invalid("tenantId", m))?;
    let secret = new_secret()?;
    kernel
        .store
        .rotate_signing_secret(tenant_id, secret.clone())
        .await
        .map_err(from_store)?;
    Ok(secret)
}

pub(super) async fn create_tenant(kernel: &Kernel, tenant: NewTenant) -> KernelResult<Tenant> {
    admin::check_new_tenant(&tenant)?;
    let now = kernel.clock.now_us();
    let created = kernel
        .store
        .create_tenant(Tenant {
            id: tenant.id,
            name: tenant.name,
            tier: tenant.tier,
            created_at_us: now,
            updated_at_us: now,
        })
        .await
        .map_err(from_store)?;
    kernel.keys.invalidate();
    Ok(created)
}

pub(super) async fn get_tenant(kernel: &Kernel, id: &str) -> KernelResult<Tenant> {
    admin::check_tenant_id(id)?;
    kernel
        .store
        .get_tenant(id)
        .await
        .map_err(from_store)?
        .ok_or_else(|| KernelError::NotFound(Missing::Tenant(id.to_string())))
}

pub(super) async fn list_tenants(
    kernel: &Kernel,
    after: Option<String>,
    limit: usize,
) -> KernelResult<Vec<Tenant>> {
    admin::check_page(limit)?;
    kernel
        .store
        .list_tenants(after, limit)
        .await
        .map_err(from_store)
}

pub(super) async fn update_tenant(
    kernel: &Kernel,
    id: &str,
    update: TenantUpdate,
) -> KernelResult<Tenant> {
    admin::check_tenant_id(id)?;
    if let Some(name) = &update.name {
        admin::check_name("name", name)?;
    }
    if let Some(tier) = &update.tier {
        admin::check_token("tier", tier)?;
    }
    let result = kernel
        .store
        .update_tenant(id, update)
        .await
        .map_err(from_store);
    kernel.keys.invalidate();
    result
}

pub(super) async fn create_api_key(kernel: &Kernel, key: ApiKey) -> KernelResult<ApiKey> {
    admin::check_new_key(&key)?;
    if kernel
        .store
        .get_tenant(&key.tenant_id)
        .await
        .map_err(from_store)?
        .is_none()
    {
        return Err(KernelError::NotFound(Missing::Tenant(key.tenant_id)));
    }
    let created = kernel.store.create_api_key(key).await.map_err(from_store)?;
    kernel.keys.invalidate();
    Ok(created)
}

pub(super) async fn authenticate(
    kernel: &Kernel,
    key_hash: [u8; 32],
) -> KernelResult<Option<(ApiKey, Tenant)>> {
    let now = kernel.clock.now_us();
    let entry = match kernel.keys.get(&key_hash, now) {
        Cached::Known(e) => *e,
        // Known not to exist: the store is not asked again until the entry expires or
        // a key or tenant changes.
        Cached::Unknown => return Ok(None),
        Cached::Miss { generation } => {
            KernelMetrics::inc(&kernel.metrics.store_key_lookups, 1);
            let Some(key) = kernel
                .store
                .api_key_by_hash(key_hash)
                .await
                .map_err(from_store)?
            else {
                kernel.keys.put_unknown(key_hash, now, generation);
                return Ok(None);
            };
            let Some(tenant) = kernel
                .store
                .get_tenant(&key.tenant_id)
                .await
                .map_err(from_store)?
            else {
                return Ok(None);
            };
            kernel
                .keys
                .put(key_hash, (key.clone(), tenant.clone()), generation);
            (key, tenant)
        }
    };
    let now = kernel.clock.now_us();
    Ok(Some(entry)
        .filter(|(key, _)| admin::key_is_live(key, now))
        .inspect(|(key, _)| {
            kernel.keys.touch(&key.id, now);
        }))
}

pub(super) async fn list_api_keys(
    kernel: &Kernel,
    tenant_id: Option<String>,
    after: Option<String>,
    limit: usize,
) -> KernelResult<Vec<ApiKey>> {
    admin::check_page(limit)?;
    if let Some(t) = &tenant_id {
        admin::check_tenant_id(t)?;
    }
    kernel
        .store
        .list_api_keys(tenant_id, after, limit)
        .await
        .map_err(from_store)
}

pub(super) async fn revoke_api_key(kernel: &Kernel, id: &str) -> KernelResult<ApiKey> {
    let result = kernel.store.revoke_api_key(id).await.map_err(from_store);
    kernel.keys.invalidate();
    result
}

pub(super) async fn tenant_usage(kernel: &Kernel, tenant_id: &str) -> KernelResult<TenantUsage> {
    admin::check_tenant_id(tenant_id)?;
    let day = minoots_store::utc_day(kernel.clock.now_us());
    kernel
        .store
        .tenant_usage(tenant_id, day)
        .await
        .map_err(from_store)
}

/// A new `whsec_` secret: 32 bytes from the operating system's random source, base64.
fn new_secret() -> KernelResult<String> {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| KernelError::Internal(format!("no randomness available: {e}")))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}
