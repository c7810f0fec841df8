//! Dashboard sign-in sessions in the store: what [`UiSessionStore`] asks of every backend.
//! A session row holds the SHA-256 of its token, never the token, so a copy of the
//! database opens no browser session. Backends store, find, end and prune rows, and keep
//! the bounds they are given (sessions per key, sessions in all); the kernel decides the
//! expiry and whether a found session may still be used (its key live, its time not up).

use async_trait::async_trait;

use crate::types::*;

/// Sessions of a backend; a supertrait of [`crate::Store`], so `Arc<dyn Store>` has them.
#[async_trait]
pub trait UiSessionStore: Send + Sync + 'static {
    /// Stores `session`, then ends the oldest sessions of its key (by creation time) so the
    /// key keeps at most `max_per_key`. Writes nothing and answers `false` when the store
    /// already holds `max_total` sessions that have not expired (as of the store's now).
    /// On a shared database, sign-ins racing through several handles may pass the global
    /// bound by at most their number.
    async fn create_ui_session(
        &self,
        session: UiSession,
        max_per_key: usize,
        max_total: u64,
    ) -> StoreResult<bool>;

    /// The session whose token hashes to `token_hash`, with its key and the key's tenant,
    /// expired or not and whatever the key's state (the caller decides); `None` when there
    /// is no such session, or its key or tenant is gone.
    async fn ui_session(&self, token_hash: [u8; 32]) -> StoreResult<Option<UiSessionGrant>>;

    /// Ends the session; `false` when there was none.
    async fn end_ui_session(&self, token_hash: [u8; 32]) -> StoreResult<bool>;

    /// Deletes up to `limit` sessions that expired at or before `now_us`; returns how many.
    async fn prune_ui_sessions(&self, now_us: i64, limit: usize) -> StoreResult<usize>;

    /// Sessions stored, expired ones included until they are pruned (metrics, tests).
    async fn count_ui_sessions(&self) -> StoreResult<u64>;
}
