//! Dashboard sessions in PostgreSQL ([`UiSessionStore`]), one statement per step. Two
//! sign-ins of one key racing through different handles may each keep the key's newest
//! sessions as they see them; both end under the bound once either commits, so a key holds
//! at most the bound plus the sign-ins in flight.

use async_trait::async_trait;

use super::PostgresStore;
use super::admin;
use super::errors::TxResult;
use super::rows::col;
use super::tx::{Db, WriteTx};
use crate::sessions::UiSessionStore;
use crate::types::*;

async fn create(
    w: &mut WriteTx<'_>,
    s: &UiSession,
    max_per_key: usize,
    max_total: u64,
) -> TxResult<bool> {
    let now_us = w.now_us;
    let row = w
        .db()
        .query_one(
            "SELECT count(*) FROM ui_sessions WHERE expires_at > $1",
            &[&now_us],
        )
        .await?;
    let live: i64 = col(&row, 0)?;
    if live as u64 >= max_total {
        return Ok(false);
    }
    let max_per_key = max_per_key as i64;
    w.db()
        .execute(
            "INSERT INTO ui_sessions (token_hash, key_id, tenant_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &s.token_hash.as_slice(),
                &s.key_id,
                &s.tenant_id,
                &s.created_at_us,
                &s.expires_at_us,
            ],
        )
        .await?;
    w.db()
        .execute(
            "DELETE FROM ui_sessions WHERE key_id = $1 AND token_hash NOT IN (
                 SELECT token_hash FROM ui_sessions WHERE key_id = $1
                  ORDER BY created_at DESC, token_hash DESC LIMIT $2)",
            &[&s.key_id, &max_per_key],
        )
        .await?;
    Ok(true)
}

async fn find(db: &mut Db<'_>, hash: &[u8; 32]) -> TxResult<Option<UiSessionGrant>> {
    let Some(row) = db
        .query_opt(
            "SELECT key_id, tenant_id, created_at, expires_at FROM ui_sessions
              WHERE token_hash = $1",
            &[&hash.as_slice()],
        )
        .await?
    else {
        return Ok(None);
    };
    let session = UiSession {
        token_hash: *hash,
        key_id: col(&row, 0)?,
        tenant_id: col(&row, 1)?,
        created_at_us: col(&row, 2)?,
        expires_at_us: col(&row, 3)?,
    };
    let Some(key) = admin::api_key_by_id(db, &session.key_id).await? else {
        return Ok(None);
    };
    let Some(tenant) = admin::get_tenant(db, &key.tenant_id).await? else {
        return Ok(None);
    };
    Ok(Some(UiSessionGrant {
        session,
        key,
        tenant,
    }))
}

#[async_trait]
impl UiSessionStore for PostgresStore {
    async fn create_ui_session(
        &self,
        session: UiSession,
        max_per_key: usize,
        max_total: u64,
    ) -> StoreResult<bool> {
        self.write(move |w| {
            let session = session.clone();
            Box::pin(async move { create(w, &session, max_per_key, max_total).await })
        })
        .await
    }

    async fn ui_session(&self, token_hash: [u8; 32]) -> StoreResult<Option<UiSessionGrant>> {
        self.read(move |db| Box::pin(async move { find(db, &token_hash).await }))
            .await
    }

    async fn end_ui_session(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        self.write(move |w| {
            Box::pin(async move {
                let n = w
                    .db()
                    .execute(
                        "DELETE FROM ui_sessions WHERE token_hash = $1",
                        &[&token_hash.as_slice()],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn prune_ui_sessions(&self, now_us: i64, limit: usize) -> StoreResult<usize> {
        let limit = limit as i64;
        self.write(move |w| {
            Box::pin(async move {
                let n = w
                    .db()
                    .execute(
                        "DELETE FROM ui_sessions WHERE token_hash IN (
                             SELECT token_hash FROM ui_sessions WHERE expires_at <= $1 LIMIT $2)",
                        &[&now_us, &limit],
                    )
                    .await?;
                Ok(n as usize)
            })
        })
        .await
    }

    async fn count_ui_sessions(&self) -> StoreResult<u64> {
        self.read(|db| {
            Box::pin(async move {
                let row = db
                    .query_one("SELECT count(*) FROM ui_sessions", &[])
                    .await?;
                Ok(col::<i64>(&row, 0)?.max(0) as u64)
            })
        })
        .await
    }
}
