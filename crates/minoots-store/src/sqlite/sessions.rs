//! Dashboard sessions in SQLite ([`UiSessionStore`]): a create is one group-committed
//! write (the global bound is checked before anything changes, so a refusal never fails
//! the batch), a lookup one read of the session, its key and its tenant on one connection.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, WriteCtx, admin};
use crate::sessions::UiSessionStore;
use crate::types::*;

fn create(
    ctx: &mut WriteCtx<'_>,
    s: &UiSession,
    max_per_key: usize,
    max_total: u64,
) -> StoreResult<bool> {
    let live: i64 = ctx
        .conn
        .prepare_cached("SELECT COUNT(*) FROM ui_sessions WHERE expires_at > ?1")?
        .query_row(params![ctx.now_us], |r| r.get(0))?;
    if live as u64 >= max_total {
        return Ok(false);
    }
    ctx.conn
        .prepare_cached(
            "INSERT INTO ui_sessions (token_hash, key_id, tenant_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            s.token_hash.as_slice(),
            s.key_id,
            s.tenant_id,
            s.created_at_us,
            s.expires_at_us
        ])?;
    ctx.conn
        .prepare_cached(
            "DELETE FROM ui_sessions WHERE key_id = ?1 AND token_hash NOT IN (
                 SELECT token_hash FROM ui_sessions WHERE key_id = ?1
                  ORDER BY created_at DESC, token_hash DESC LIMIT ?2)",
        )?
        .execute(params![s.key_id, max_per_key as i64])?;
    Ok(true)
}

fn find(conn: &Connection, hash: &[u8; 32]) -> StoreResult<Option<UiSessionGrant>> {
    let session = conn
        .prepare_cached(
            "SELECT key_id, tenant_id, created_at, expires_at FROM ui_sessions
              WHERE token_hash = ?1",
        )?
        .query_row(params![hash.as_slice()], |r| {
            Ok(UiSession {
                token_hash: *hash,
                key_id: r.get(0)?,
                tenant_id: r.get(1)?,
                created_at_us: r.get(2)?,
                expires_at_us: r.get(3)?,
            })
        })
        .optional()?;
    let Some(session) = session else {
        return Ok(None);
    };
    let Some(key) = admin::api_key_by_id(conn, &session.key_id)? else {
        return Ok(None);
    };
    let Some(tenant) = admin::get_tenant(conn, &key.tenant_id)? else {
        return Ok(None);
    };
    Ok(Some(UiSessionGrant {
        session,
        key,
        tenant,
    }))
}

#[async_trait]
impl UiSessionStore for SqliteStore {
    async fn create_ui_session(
        &self,
        session: UiSession,
        max_per_key: usize,
        max_total: u64,
    ) -> StoreResult<bool> {
        self.write(move |ctx| create(ctx, &session, max_per_key, max_total))
            .await
    }

    async fn ui_session(&self, token_hash: [u8; 32]) -> StoreResult<Option<UiSessionGrant>> {
        self.read(move |c| find(c, &token_hash)).await
    }

    async fn end_ui_session(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        self.write(move |ctx| {
            let n = ctx
                .conn
                .prepare_cached("DELETE FROM ui_sessions WHERE token_hash = ?1")?
                .execute(params![token_hash.as_slice()])?;
            Ok(n > 0)
        })
        .await
    }

    async fn prune_ui_sessions(&self, now_us: i64, limit: usize) -> StoreResult<usize> {
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached(
                    "DELETE FROM ui_sessions WHERE token_hash IN (
                         SELECT token_hash FROM ui_sessions WHERE expires_at <= ?1 LIMIT ?2)",
                )?
                .execute(params![now_us, limit as i64])?)
        })
        .await
    }

    async fn count_ui_sessions(&self) -> StoreResult<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM ui_sessions")?
                .query_row([], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }
}
