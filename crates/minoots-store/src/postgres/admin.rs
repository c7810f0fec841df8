//! Tenants, API keys, usage and webhook signing secrets in PostgreSQL: one statement per
//! operation where one suffices. A write that could race with the same write of another
//! handle is made safe by a constraint, not by a check before it: a taken tenant id or key
//! is `ON CONFLICT DO NOTHING` answered `AlreadyExists`, and a tenant has at most one
//! current signing secret by a partial unique index. Keys are stored by the SHA-256 of
//! their plaintext only; nothing here ever sees a plaintext.

use std::collections::BTreeMap;

use super::errors::{TxError, TxResult, unique_violation};
use super::rows::{col, key_cols, key_from_row, tenant_cols, tenant_from_row};
use super::tx::{Db, WriteTx};
use crate::types::*;

pub(super) async fn create_tenant(w: &mut WriteTx<'_>, t: Tenant) -> TxResult<Tenant> {
    let inserted = w
        .db()
        .query_opt(
            concat!(
                "INSERT INTO tenants (",
                tenant_cols!(),
                ") VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            &[&t.id, &t.name, &t.tier, &t.created_at_us, &t.updated_at_us],
        )
        .await?;
    match inserted {
        Some(_) => Ok(t),
        None => Err(StoreError::AlreadyExists(format!("tenant {}", t.id)).into()),
    }
}

pub(super) async fn get_tenant(db: &mut Db<'_>, id: &str) -> TxResult<Option<Tenant>> {
    db.query_opt(
        concat!("SELECT ", tenant_cols!(), " FROM tenants WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| tenant_from_row(&r))
    .transpose()
}

pub(super) async fn list_tenants(
    db: &mut Db<'_>,
    after: Option<&str>,
    limit: usize,
) -> TxResult<Vec<Tenant>> {
    let limit = limit as i64;
    db.query(
        concat!(
            "SELECT ",
            tenant_cols!(),
            " FROM tenants WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
        ),
        &[&after, &limit],
    )
    .await?
    .iter()
    .map(tenant_from_row)
    .collect()
}

pub(super) async fn update_tenant(
    w: &mut WriteTx<'_>,
    id: &str,
    u: &TenantUpdate,
) -> TxResult<Tenant> {
    let now_us = w.now_us;
    w.db()
        .query_opt(
            concat!(
                "UPDATE tenants SET name = COALESCE($2, name), tier = COALESCE($3, tier), updated_at = $4
                  WHERE id = $1 RETURNING ",
                tenant_cols!()
            ),
            &[&id, &u.name, &u.tier, &now_us],
        )
        .await?
        .map(|r| tenant_from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(Missing::Tenant(id.to_string())).into())
}

pub(super) async fn create_api_key(w: &mut WriteTx<'_>, k: ApiKey) -> TxResult<ApiKey> {
    // Without a conflict target: a taken id and a taken hash are both refused.
    let inserted = w
        .db()
        .query_opt(
            concat!(
                "INSERT INTO api_keys (",
                key_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING id"
            ),
            &[
                &k.id,
                &k.tenant_id,
                &k.name,
                &k.key_hash.as_slice(),
                &k.prefix,
                &k.roles,
                &k.created_at_us,
                &k.expires_at_us,
                &k.revoked_at_us,
                &k.last_used_at_us,
            ],
        )
        .await?;
    match inserted {
        Some(_) => Ok(k),
        None => Err(StoreError::AlreadyExists(format!("key {}", k.id)).into()),
    }
}

pub(super) async fn api_key_by_hash(db: &mut Db<'_>, hash: &[u8; 32]) -> TxResult<Option<ApiKey>> {
    db.query_opt(
        concat!("SELECT ", key_cols!(), " FROM api_keys WHERE key_hash = $1"),
        &[&hash.as_slice()],
    )
    .await?
    .map(|r| key_from_row(&r))
    .transpose()
}

pub(super) async fn list_api_keys(
    db: &mut Db<'_>,
    tenant_id: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> TxResult<Vec<ApiKey>> {
    let limit = limit as i64;
    db.query(
        concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR id > $2)
              ORDER BY id LIMIT $3"
        ),
        &[&tenant_id, &after, &limit],
    )
    .await?
    .iter()
    .map(key_from_row)
    .collect()
}

/// The key with this id, revoked or not.
pub(super) async fn api_key_by_id(db: &mut Db<'_>, id: &str) -> TxResult<Option<ApiKey>> {
    db.query_opt(
        concat!("SELECT ", key_cols!(), " FROM api_keys WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| key_from_row(&r))
    .transpose()
}

/// Revokes the key and ends its dashboard sessions in the same transaction.
pub(super) async fn revoke_api_key(w: &mut WriteTx<'_>, id: &str) -> TxResult<ApiKey> {
    let now_us = w.now_us;
    w.db()
        .execute("DELETE FROM ui_sessions WHERE key_id = $1", &[&id])
        .await?;
    w.db()
        .query_opt(
            concat!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ",
                key_cols!()
            ),
            &[&id, &now_us],
        )
        .await?
        .map(|r| key_from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(Missing::ApiKey(id.to_string())).into())
}

/// One statement for every key; for a key named twice the later time counts. (Two
/// touches that lock the same keys in different orders deadlock; the server breaks the
/// tie and the loser runs again.)
pub(super) async fn touch_api_keys(w: &mut WriteTx<'_>, used: &[(String, i64)]) -> TxResult<()> {
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, at) in used {
        let slot = latest.entry(id.as_str()).or_insert(*at);
        *slot = (*slot).max(*at);
    }
    let (ids, times): (Vec<&str>, Vec<i64>) = latest.into_iter().unzip();
    w.db()
        .execute(
            "UPDATE api_keys AS k SET last_used_at = u.at
               FROM unnest($1::text[], $2::bigint[]) AS u(id, at)
              WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
            &[&ids, &times],
        )
        .await?;
    Ok(())
}

pub(super) async fn tenant_usage(
    db: &mut Db<'_>,
    tenant_id: &str,
    day: i64,
) -> TxResult<TenantUsage> {
    let row = db
        .query_one(
            "SELECT (SELECT created FROM tenant_daily WHERE tenant_id = $1 AND day = $2),
                    (SELECT pending FROM tenant_pending WHERE tenant_id = $1)",
            &[&tenant_id, &day],
        )
        .await?;
    let count = |i| col::<Option<i64>>(&row, i).map(|n| n.unwrap_or(0).max(0) as u64);
    Ok(TenantUsage {
        created_today: count(0)?,
        pending: count(1)?,
    })
}

/// The current secret first, then those retired less than `grace_us` before `now_us`.
pub(super) async fn signing_secrets_at(
    db: &mut Db<'_>,
    tenant_id: &str,
    now_us: i64,
    grace_us: i64,
) -> TxResult<Vec<String>> {
    db.query(
        "SELECT secret FROM signing_secrets
          WHERE tenant_id = $1 AND (retired_at IS NULL OR retired_at > $2::bigint - $3::bigint)
          ORDER BY retired_at IS NOT NULL, created_at DESC",
        &[&tenant_id, &now_us, &grace_us],
    )
    .await?
    .iter()
    .map(|r| col(r, 0))
    .collect()
}

/// Makes `candidate` the tenant's first secret unless it has a current one (which a
/// concurrent first webhook may have stored a moment ago), and returns its secrets.
pub(super) async fn ensure_signing_secret(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    candidate: &str,
    grace_us: i64,
) -> TxResult<Vec<String>> {
    let now_us = w.now_us;
    w.db()
        .execute(
            "INSERT INTO signing_secrets (tenant_id, secret, created_at, retired_at)
             VALUES ($1, $2, $3, NULL)
             ON CONFLICT (tenant_id) WHERE retired_at IS NULL DO NOTHING",
            &[&tenant_id, &candidate, &now_us],
        )
        .await?;
    signing_secrets_at(&mut w.db(), tenant_id, now_us, grace_us).await
}

/// Retires the current secret now and makes `new_secret` current. Two rotations racing
/// both retire the old one; the second to insert meets the first's new secret and runs
/// again, retiring it in turn.
pub(super) async fn rotate_signing_secret(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    new_secret: &str,
) -> TxResult<()> {
    let now_us = w.now_us;
    w.db()
        .execute(
            "UPDATE signing_secrets SET retired_at = $2 WHERE tenant_id = $1 AND retired_at IS NULL",
            &[&tenant_id, &now_us],
        )
        .await?;
    let inserted = w
        .db()
        .execute(
            "INSERT INTO signing_secrets (tenant_id, secret, created_at, retired_at)
             VALUES ($1, $2, $3, NULL)",
            &[&tenant_id, &new_secret, &now_us],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e) == Some("signing_secrets_current") => Err(TxError::Retry(
            "a concurrent rotation made another secret current",
        )),
        Err(e) => Err(e),
    }
}
