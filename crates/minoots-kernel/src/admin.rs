//! Tenants and API keys as the kernel serves them: field checks, the authentication cache
//! and the batched record of when each key was last used.
//!
//! Authentication runs on every API request, so a key found once is kept in memory
//! (bounded by [`MAX_CACHED_KEYS`]), and so is a key hash the store does not know (bounded
//! by [`MAX_UNKNOWN_KEYS`], for [`UNKNOWN_KEY_TTL`]), so a client repeating a wrong key
//! does not reach the store each time. Every tenant or key change made through this
//! kernel empties both before it answers, so a revocation takes effect at once and a key
//! created after a miss works at once; a lookup that was already under way when the
//! cache was emptied does not refill it with what it read before the change.
//! A key's last use is noted in memory and written by [`run_touch_flusher`] every
//! [`TOUCH_FLUSH_INTERVAL`], never once per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minoots_core::TimerRequest;
use minoots_kernel_api::api::{
    MAX_ADMIN_NAME_BYTES, MAX_ADMIN_PAGE, MAX_KEY_ID_BYTES, MAX_KEY_ROLES, MAX_TIER_NAME_BYTES,
    NewTenant,
};
use minoots_kernel_api::{KernelError, KernelResult};
use minoots_store::{ApiKey, Store, Tenant};
use tokio::sync::watch;

/// Keys held in the authentication cache; when full it is emptied and refilled on demand.
pub const MAX_CACHED_KEYS: usize = 10_000;
/// Unknown key hashes remembered (32 bytes and an expiry each: about 3 MiB in all); when
/// full, the expired ones are dropped, or all of them if that frees too little.
pub const MAX_UNKNOWN_KEYS: usize = 65_536;
/// How long an unknown key hash is answered "unknown" without asking the store. Every key
/// change through the kernel forgets them at once, so this only bounds the memory a
/// stream of repeated wrong keys keeps alive.
pub const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(60);
/// Distinct keys whose last use waits to be written; beyond it, uses go unrecorded until
/// the next flush (the time is advisory, the bound protects memory).
pub const MAX_PENDING_TOUCHES: usize = 100_000;
/// How often last-use times are written to the store.
pub const TOUCH_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct KeyCache {
    entries: Mutex<Entries>,
    /// Key id → the latest use not yet written.
    touched: Mutex<HashMap<String, i64>>,
}

#[derive(Default)]
struct Entries {
    /// Plaintext hash → the key and its tenant, as last read from the store.
    known: HashMap<[u8; 32], (ApiKey, Tenant)>,
    /// Hashes the store did not know → until when that answer is kept (µs).
    unknown: HashMap<[u8; 32], i64>,
    /// Bumped by every invalidation: a lookup started in an older generation may have
    /// read the store before the change, so its answer is not kept.
    generation: u64,
}

/// What the cache knows of a key hash.
pub(crate) enum Cached {
    Known(Box<(ApiKey, Tenant)>),
    Unknown,
    /// Not cached: ask the store, then [`KeyCache::put`] or [`KeyCache::put_unknown`] with
    /// this generation.
    Miss {
        generation: u64,
    },
}

impl KeyCache {
    pub fn get(&self, hash: &[u8; 32], now_us: i64) -> Cached {
        let e = self.entries.lock().expect("poisoned");
        if let Some(entry) = e.known.get(hash) {
            return Cached::Known(Box::new(entry.clone()));
        }
        match e.unknown.get(hash) {
            Some(&until) if now_us < until => Cached::Unknown,
            _ => Cached::Miss {
                generation: e.generation,
            },
        }
    }

    /// Keeps a key read from the store, unless the cache was emptied since `generation`.
    pub fn put(&self, hash: [u8; 32], entry: (ApiKey, Tenant), generation: u64) {
        let mut e = self.entries.lock().expect("poisoned");
        if e.generation != generation {
            return;
        }
        if e.known.len() >= MAX_CACHED_KEYS {
            e.known.clear();
        }
        e.known.insert(hash, entry);
    }

    /// Remembers that the store has no key with `hash`, unless the cache was emptied since
    /// `generation` (a key created meanwhile must work at once).
    pub fn put_unknown(&self, hash: [u8; 32], now_us: i64, generation: u64) {
        let mut e = self.entries.lock().expect("poisoned");
        if e.generation != generation {
            return;
        }
        if e.unknown.len() >= MAX_UNKNOWN_KEYS {
            e.unknown.retain(|_, until| now_us < *until);
            if e.unknown.len() >= MAX_UNKNOWN_KEYS / 4 * 3 {
                // Mostly fresh entries (a flood of distinct keys, which a cache cannot
                // help with): start over rather than scan the map at every insert.
                e.unknown.clear();
            }
        }
        let ttl_us = UNKNOWN_KEY_TTL.as_micros() as i64;
        e.unknown.insert(hash, now_us.saturating_add(ttl_us));
    }

    /// Forgets every cached key, known or unknown: called after any tenant or key change.
    pub fn invalidate(&self) {
        let mut e = self.entries.lock().expect("poisoned");
        e.known.clear();
        e.unknown.clear();
        e.generation += 1;
    }

    pub fn touch(&self, key_id: &str, now_us: i64) {
        let mut map = self.touched.lock().expect("poisoned");
        if let Some(t) = map.get_mut(key_id) {
            *t = (*t).max(now_us);
        } else if map.len() < MAX_PENDING_TOUCHES {
            map.insert(key_id.to_string(), now_us);
        }
    }

    fn take_touched(&self) -> Vec<(String, i64)> {
        self.touched.lock().expect("poisoned").drain().collect()
    }

    /// Writes the pending last-use times (also called once at shutdown).
    pub async fn flush(&self, store: &Arc<dyn Store>) {
        let used = self.take_touched();
        if used.is_empty() {
            return;
        }
        if let Err(error) = store.touch_api_keys(used).await {
            tracing::warn!(%error, "could not record when API keys were last used");
        }
    }
}

/// Writes last-use times every [`TOUCH_FLUSH_INTERVAL`] until `stop`, then once more.
pub(crate) async fn run_touch_flusher(
    cache: Arc<KeyCache>,
    store: Arc<dyn Store>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TOUCH_FLUSH_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        cache.flush(&store).await;
    }
    cache.flush(&store).await;
}

/// True when the key may be used at `now_us`.
pub(crate) fn key_is_live(key: &ApiKey, now_us: i64) -> bool {
    key.revoked_at_us.is_none() && key.expires_at_us.is_none_or(|e| now_us < e)
}

pub(crate) fn check_name(field: &str, name: &str) -> KernelResult<()> {
    if name.is_empty() || name.len() > MAX_ADMIN_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(KernelError::invalid(
            field,
            format!("must be 1 to {MAX_ADMIN_NAME_BYTES} bytes without control characters"),
        ));
    }
    Ok(())
}

/// Tier and role names: 1–64 bytes of lowercase letters, digits, `-`, `_` and `:`.
pub(crate) fn check_token(field: &str, t: &str) -> KernelResult<()> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TIER_NAME_BYTES
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_:".contains(&b));
    if !ok {
        return Err(KernelError::invalid(
            field,
            format!(
                "must be 1 to {MAX_TIER_NAME_BYTES} lowercase letters, digits, '-', '_' or ':'"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_tenant_id(id: &str) -> KernelResult<()> {
    minoots_core::request::check_tenant_id(id).map_err(|m| KernelError::invalid("tenantId", m))
}

pub(crate) fn check_new_tenant(t: &NewTenant) -> KernelResult<()> {
    minoots_core::request::check_tenant_id(&t.id).map_err(|m| KernelError::invalid("id", m))?;
    check_name("name", &t.name)?;
    check_token("tier", &t.tier)
}

pub(crate) fn check_new_key(k: &ApiKey) -> KernelResult<()> {
    for (field, v) in [("id", &k.id), ("prefix", &k.prefix)] {
        if v.is_empty() || v.len() > MAX_KEY_ID_BYTES || !v.is_ascii() {
            return Err(KernelError::invalid(
                field,
                format!("must be 1 to {MAX_KEY_ID_BYTES} ASCII bytes"),
            ));
        }
    }
    check_tenant_id(&k.tenant_id)?;
    check_name("name", &k.name)?;
    if k.roles.is_empty() || k.roles.len() > MAX_KEY_ROLES {
        return Err(KernelError::invalid(
            "roles",
            format!("must list 1 to {MAX_KEY_ROLES} roles"),
        ));
    }
    for r in &k.roles {
        check_token("roles", r)?;
    }
    Ok(())
}

pub(crate) fn check_page(limit: usize) -> KernelResult<()> {
    if limit == 0 || limit > MAX_ADMIN_PAGE {
        return Err(KernelError::invalid(
            "limit",
            format!("must be between 1 and {MAX_ADMIN_PAGE}"),
        ));
    }
    Ok(())
}

/// What identifies a create request for its idempotency key: the SHA-256 of
/// [`TimerRequest::idempotency_identity`]; a request without one is refused (400).
pub(crate) fn request_fingerprint(r: &TimerRequest) -> KernelResult<[u8; 32]> {
    Ok(minoots_core::digest::sha256(&r.idempotency_identity()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_tenant_and_key_but_not_the_body() {
        let a = TimerRequest::from_json(
            br#"{"duration": "30s", "metadata": {"b": 1, "a": 2}, "idempotencyKey": "k"}"#,
        )
        .unwrap();
        let b = TimerRequest::from_json(
            br#"{"tenantId": "x", "metadata": {"a": 2, "b": 1}, "duration": "30s"}"#,
        )
        .unwrap();
        let c = TimerRequest::from_json(br#"{"duration": "31s", "metadata": {"a": 2, "b": 1}}"#)
            .unwrap();
        let fp = |r: &TimerRequest| request_fingerprint(r).unwrap();
        assert_eq!(fp(&a), fp(&b));
        assert_ne!(fp(&a), fp(&c));
    }

    #[test]
    fn tokens_and_liveness() {
        assert!(check_token("tier", "pro").is_ok());
        assert!(check_token("roles", "timers:write").is_ok());
        assert!(check_token("tier", "Pro").is_err());
        assert!(check_token("tier", "").is_err());
        let key = ApiKey {
            id: "k".into(),
            tenant_id: "t".into(),
            name: "n".into(),
            key_hash: [0; 32],
            prefix: "mnt_".into(),
            roles: vec!["admin".into()],
            created_at_us: 0,
            expires_at_us: Some(100),
            revoked_at_us: None,
            last_used_at_us: None,
        };
        assert!(key_is_live(&key, 99));
        assert!(!key_is_live(&key, 100), "expiry is exclusive");
        let revoked = ApiKey {
            revoked_at_us: Some(5),
            expires_at_us: None,
            ..key
        };
        assert!(!key_is_live(&revoked, 0));
    }

    #[test]
    fn a_lookup_that_raced_a_key_change_leaves_nothing_in_the_cache() {
        let cache = KeyCache::default();
        let Cached::Miss { generation } = cache.get(&[7; 32], 0) else {
            panic!("an empty cache misses");
        };
        // A key is created (or revoked) while the lookup runs: what it read is stale.
        cache.invalidate();
        cache.put_unknown([7; 32], 0, generation);
        assert!(matches!(cache.get(&[7; 32], 0), Cached::Miss { .. }));
        // Without a change in between, the miss is kept until its TTL.
        let Cached::Miss { generation } = cache.get(&[7; 32], 0) else {
            panic!("still a miss");
        };
        cache.put_unknown([7; 32], 0, generation);
        assert!(matches!(cache.get(&[7; 32], 1), Cached::Unknown));
        let ttl_us = UNKNOWN_KEY_TTL.as_micros() as i64;
        assert!(matches!(cache.get(&[7; 32], ttl_us), Cached::Miss { .. }));
    }
}
