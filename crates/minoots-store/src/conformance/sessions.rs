//! Conformance of dashboard sessions: stored by hash, found with their key and tenant,
//! bounded per key (the oldest ends) and in all (refused without a write), ended by
//! sign-out and by revoking their key, and pruned once expired.

use minoots_core::Clock;

use super::{Harness, SEC};
use crate::*;

fn session(h: &Harness, hash: u8, key: &str, tenant: &str, ttl_s: i64) -> UiSession {
    let now = h.clock.now_us();
    UiSession {
        token_hash: [hash; 32],
        key_id: key.into(),
        tenant_id: tenant.into(),
        created_at_us: now,
        expires_at_us: now + ttl_s * SEC,
    }
}

async fn key_and_tenant(h: &Harness, id: &str, tenant: &str, hash: u8) {
    let now = h.clock.now_us();
    let _ = h
        .store
        .create_tenant(Tenant {
            id: tenant.into(),
            name: tenant.into(),
            tier: "free".into(),
            created_at_us: now,
            updated_at_us: now,
        })
        .await;
    h.store
        .create_api_key(ApiKey {
            id: id.into(),
            tenant_id: tenant.into(),
            name: format!("key {id}"),
            key_hash: [hash; 32],
            prefix: "mnt_abcd".into(),
            roles: vec!["timers:read".into()],
            created_at_us: now,
            expires_at_us: None,
            revoked_at_us: None,
            last_used_at_us: None,
        })
        .await
        .unwrap();
}

pub async fn ui_sessions_are_bounded_ended_and_pruned(h: &Harness) {
    key_and_tenant(h, "k1", "acme", 1).await;
    key_and_tenant(h, "k2", "other", 2).await;

    // Found by hash with the key and tenant they act for.
    let first = session(h, 10, "k1", "acme", 60);
    assert!(
        h.store
            .create_ui_session(first.clone(), 3, 100)
            .await
            .unwrap()
    );
    let grant = h.store.ui_session([10; 32]).await.unwrap().unwrap();
    assert_eq!(grant.session, first);
    assert_eq!(grant.key.id, "k1");
    assert_eq!(grant.tenant.id, "acme");
    assert_eq!(h.store.ui_session([11; 32]).await.unwrap(), None);

    // At most 3 per key: the fourth ends the oldest, and another key's are untouched.
    let other = session(h, 20, "k2", "other", 60);
    assert!(h.store.create_ui_session(other, 3, 100).await.unwrap());
    for hash in [11, 12, 13] {
        h.clock.advance_us(SEC);
        let s = session(h, hash, "k1", "acme", 60);
        assert!(h.store.create_ui_session(s, 3, 100).await.unwrap());
    }
    assert_eq!(
        h.store.ui_session([10; 32]).await.unwrap(),
        None,
        "the oldest session of the key ended"
    );
    for hash in [11, 12, 13, 20] {
        assert!(h.store.ui_session([hash; 32]).await.unwrap().is_some());
    }
    assert_eq!(h.store.count_ui_sessions().await.unwrap(), 4);

    // The global bound refuses without writing.
    let refused = session(h, 30, "k2", "other", 60);
    assert!(!h.store.create_ui_session(refused, 3, 4).await.unwrap());
    assert_eq!(h.store.ui_session([30; 32]).await.unwrap(), None);
    assert_eq!(h.store.count_ui_sessions().await.unwrap(), 4);

    // Sign-out ends one; a second sign-out finds nothing.
    assert!(h.store.end_ui_session([13; 32]).await.unwrap());
    assert!(!h.store.end_ui_session([13; 32]).await.unwrap());
    assert_eq!(h.store.ui_session([13; 32]).await.unwrap(), None);

    // Revoking the key ends all of its sessions at once, and only its own.
    h.store.revoke_api_key("k1").await.unwrap();
    assert_eq!(h.store.ui_session([11; 32]).await.unwrap(), None);
    assert_eq!(h.store.ui_session([12; 32]).await.unwrap(), None);
    assert!(h.store.ui_session([20; 32]).await.unwrap().is_some());

    // Expired sessions are pruned, live ones kept; expired ones no longer count against
    // the global bound.
    let short = session(h, 40, "k2", "other", 1);
    assert!(h.store.create_ui_session(short, 3, 100).await.unwrap());
    h.clock.advance_us(2 * SEC);
    let now = h.clock.now_us();
    assert!(
        h.store
            .create_ui_session(session(h, 41, "k2", "other", 60), 3, 2)
            .await
            .unwrap(),
        "an expired session leaves room under the bound"
    );
    assert_eq!(h.store.prune_ui_sessions(now, 100).await.unwrap(), 1);
    assert_eq!(h.store.ui_session([40; 32]).await.unwrap(), None);
    assert!(h.store.ui_session([20; 32]).await.unwrap().is_some());
    assert_eq!(h.store.count_ui_sessions().await.unwrap(), 2);
}
