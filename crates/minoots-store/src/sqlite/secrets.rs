//! Per-tenant webhook signing secrets in the SQLite backend: the current one, those
//! retired within the grace period, rotation.

use rusqlite::{Connection, params};

use super::WriteCtx;
use crate::types::*;

pub fn ensure_signing_secret(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    candidate: String,
    grace_us: i64,
) -> StoreResult<Vec<String>> {
    let has_current: bool = ctx
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM signing_secrets WHERE tenant_id = ?1 AND retired_at IS NULL)")?
        .query_row(params![tenant_id], |r| r.get(0))?;
    if !has_current {
        ctx.conn
            .prepare_cached("INSERT INTO signing_secrets (tenant_id, secret, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)")?
            .execute(params![tenant_id, candidate, ctx.now_us])?;
    }
    signing_secrets_at(ctx.conn, tenant_id, ctx.now_us, grace_us)
}

/// The creation time of the tenant's current signing secret (0 when it has none): it grows
/// with every rotation.
pub fn signing_secrets_version(conn: &Connection, tenant_id: &str) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(MAX(created_at), 0) FROM signing_secrets
              WHERE tenant_id = ?1 AND retired_at IS NULL",
        )?
        .query_row(params![tenant_id], |r| r.get(0))?)
}

/// The current secret (never retired) first, then those retired within the grace period.
pub fn signing_secrets_at(
    conn: &Connection,
    tenant_id: &str,
    now_us: i64,
    grace_us: i64,
) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT secret FROM signing_secrets
          WHERE tenant_id = ?1 AND (retired_at IS NULL OR retired_at > ?2 - ?3)
          ORDER BY retired_at IS NOT NULL, created_at DESC",
    )?;
    let rows = stmt.query_map(params![tenant_id, now_us, grace_us], |r| {
        r.get::<_, String>(0)
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn rotate_signing_secret(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    new_secret: String,
) -> StoreResult<()> {
    ctx.conn
        .prepare_cached("UPDATE signing_secrets SET retired_at = ?2 WHERE tenant_id = ?1 AND retired_at IS NULL")?
        .execute(params![tenant_id, ctx.now_us])?;
    ctx.conn
        .prepare_cached("INSERT INTO signing_secrets (tenant_id, secret, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)")?
        .execute(params![tenant_id, new_secret, ctx.now_us])?;
    Ok(())
}
