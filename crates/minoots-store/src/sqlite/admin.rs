//! Tenants and API keys in SQLite: one statement per operation, run in the writer's
//! group-committed transaction for writes and on a pooled reader for reads. Keys are
//! stored by the SHA-256 of their plaintext only; nothing here ever sees a plaintext.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::WriteCtx;
use crate::types::*;

const TENANT_COLS: &str = "id, name, tier, created_at, updated_at";
const KEY_COLS: &str = "id, tenant_id, name, key_hash, prefix, roles, created_at, expires_at, revoked_at, last_used_at";

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

fn tenant_from_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        tier: r.get(2)?,
        created_at_us: r.get(3)?,
        updated_at_us: r.get(4)?,
    })
}

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let hash: Vec<u8> = r.get(3)?;
    let key_hash: [u8; 32] = hash.as_slice().try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Blob,
            Box::new(std::io::Error::other("key hash is not 32 bytes")),
        )
    })?;
    let roles: String = r.get(5)?;
    Ok(ApiKey {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        key_hash,
        prefix: r.get(4)?,
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at_us: r.get(6)?,
        expires_at_us: r.get(7)?,
        revoked_at_us: r.get(8)?,
        last_used_at_us: r.get(9)?,
    })
}

pub fn create_tenant(ctx: &mut WriteCtx<'_>, t: Tenant) -> StoreResult<Tenant> {
    let exists: bool = ctx
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = ?1)")?
        .query_row(params![t.id], |r| r.get(0))?;
    if exists {
        return Err(StoreError::AlreadyExists(format!("tenant {}", t.id)));
    }
    ctx.conn
        .prepare_cached(&format!(
            "INSERT INTO tenants ({TENANT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"
        ))?
        .execute(params![
            t.id,
            t.name,
            t.tier,
            t.created_at_us,
            t.updated_at_us
        ])?;
    Ok(t)
}

pub fn get_tenant(conn: &Connection, id: &str) -> StoreResult<Option<Tenant>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {TENANT_COLS} FROM tenants WHERE id = ?1"))?
        .query_row(params![id], tenant_from_row)
        .optional()?)
}

pub fn list_tenants(
    conn: &Connection,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<Tenant>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TENANT_COLS} FROM tenants WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, limit as i64], tenant_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn update_tenant(ctx: &mut WriteCtx<'_>, id: &str, u: TenantUpdate) -> StoreResult<Tenant> {
    let n = ctx
        .conn
        .prepare_cached(
            "UPDATE tenants SET name = COALESCE(?2, name), tier = COALESCE(?3, tier), updated_at = ?4
             WHERE id = ?1",
        )?
        .execute(params![id, u.name, u.tier, ctx.now_us])?;
    if n == 0 {
        return Err(StoreError::NotFound(Missing::Tenant(id.to_string())));
    }
    get_tenant(ctx.conn, id)?.ok_or_else(|| StoreError::NotFound(Missing::Tenant(id.to_string())))
}

pub fn create_api_key(ctx: &mut WriteCtx<'_>, k: ApiKey) -> StoreResult<ApiKey> {
    let result = ctx
        .conn
        .prepare_cached(&format!(
            "INSERT INTO api_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?
        .execute(params![
            k.id,
            k.tenant_id,
            k.name,
            k.key_hash.as_slice(),
            k.prefix,
            k.roles.join(","),
            k.created_at_us,
            k.expires_at_us,
            k.revoked_at_us,
            k.last_used_at_us,
        ]);
    match result {
        Ok(_) => Ok(k),
        // A failed INSERT changes nothing, so the batch is not poisoned by it.
        Err(e) if is_unique_violation(&e) => {
            Err(StoreError::AlreadyExists(format!("key {}", k.id)))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn api_key_by_hash(conn: &Connection, hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE key_hash = ?1"
        ))?
        .query_row(params![hash.as_slice()], key_from_row)
        .optional()?)
}

pub fn list_api_keys(
    conn: &Connection,
    tenant_id: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<ApiKey>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEY_COLS} FROM api_keys
          WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR id > ?2)
          ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![tenant_id, after, limit as i64], key_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The key with this id, revoked or not.
pub fn api_key_by_id(conn: &Connection, id: &str) -> StoreResult<Option<ApiKey>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"))?
        .query_row(params![id], key_from_row)
        .optional()?)
}

/// Revokes the key and ends its dashboard sessions in the same transaction.
pub fn revoke_api_key(ctx: &mut WriteCtx<'_>, id: &str) -> StoreResult<ApiKey> {
    let key = api_key_by_id(ctx.conn, id)?
        .ok_or_else(|| StoreError::NotFound(Missing::ApiKey(id.to_string())))?;
    ctx.conn
        .prepare_cached("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")?
        .execute(params![id, ctx.now_us])?;
    ctx.conn
        .prepare_cached("DELETE FROM ui_sessions WHERE key_id = ?1")?
        .execute(params![id])?;
    Ok(ApiKey {
        revoked_at_us: key.revoked_at_us.or(Some(ctx.now_us)),
        ..key
    })
}

pub fn touch_api_keys(ctx: &mut WriteCtx<'_>, used: &[(String, i64)]) -> StoreResult<()> {
    let mut stmt = ctx.conn.prepare_cached(
        "UPDATE api_keys SET last_used_at = ?2
          WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
    )?;
    for (id, at) in used {
        stmt.execute(params![id, at])?;
    }
    Ok(())
}
