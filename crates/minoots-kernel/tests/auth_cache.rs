//! Authentication and the store: an unknown key hash reaches the store once, and is then
//! answered from memory until it expires or a key or tenant changes; a key created after
//! a miss works at once. Counted by `store_key_lookups`, on a manual clock.

use std::sync::Arc;

use minoots_core::{Clock, ManualClock};
use minoots_kernel::admin::UNKNOWN_KEY_TTL;
use minoots_kernel::metrics::KernelMetrics;
use minoots_kernel::{Kernel, KernelApi, KernelConfig, NewTenant};
use minoots_store::{ApiKey, SqliteConfig, SqliteStore, Store};

const T0: i64 = 1_795_773_600_000_000;

fn key(id: &str, hash: [u8; 32]) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant_id: "acme".into(),
        name: format!("key {id}"),
        key_hash: hash,
        prefix: "mnt_xyz".into(),
        roles: vec!["timers:read".into()],
        created_at_us: 0,
        expires_at_us: None,
        revoked_at_us: None,
        last_used_at_us: None,
    }
}

fn lookups(k: &Kernel) -> u64 {
    KernelMetrics::get(&k.metrics().store_key_lookups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_reaches_the_store_once_and_a_key_created_after_the_miss_works_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), dyn_clock.clone()).unwrap());
    let k = Kernel::start(store, dyn_clock, KernelConfig::default()).unwrap();
    k.create_tenant(NewTenant {
        id: "acme".into(),
        name: "Acme".into(),
        tier: "free".into(),
    })
    .await
    .unwrap();

    // 200 tries of 20 unknown hashes: 20 lookups, not 200.
    let before = lookups(&k);
    for i in 0..200u32 {
        let hash = [(i % 20) as u8 + 100; 32];
        assert_eq!(k.authenticate(hash).await.unwrap(), None);
    }
    assert_eq!(
        lookups(&k) - before,
        20,
        "each unknown hash is looked up once"
    );

    // A key created after its miss works at once (the cache of unknown hashes is emptied
    // with the cache of known keys).
    let hash = [100u8; 32];
    k.create_api_key(key("k1", hash)).await.unwrap();
    let (found, tenant) = k.authenticate(hash).await.unwrap().expect("the new key");
    assert_eq!((found.id.as_str(), tenant.id.as_str()), ("k1", "acme"));
    // The others were forgotten too, and are looked up once more.
    let before = lookups(&k);
    for _ in 0..5 {
        assert_eq!(k.authenticate([101; 32]).await.unwrap(), None);
    }
    assert_eq!(lookups(&k) - before, 1);

    // Until the entry expires: then the store is asked again, once.
    clock.advance_us(UNKNOWN_KEY_TTL.as_micros() as i64 - 1);
    assert_eq!(k.authenticate([101; 32]).await.unwrap(), None);
    assert_eq!(
        lookups(&k) - before,
        1,
        "still remembered just before the TTL"
    );
    clock.advance_us(1);
    for _ in 0..5 {
        assert_eq!(k.authenticate([101; 32]).await.unwrap(), None);
    }
    assert_eq!(
        lookups(&k) - before,
        2,
        "looked up again once after the TTL"
    );

    // A tenant change empties it as well; a revoked key stops at once.
    k.revoke_api_key("k1").await.unwrap();
    assert_eq!(k.authenticate(hash).await.unwrap(), None);
    k.shutdown().await;
}
