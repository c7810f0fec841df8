//! Conformance case about the claim made in the fire's own transaction
//! (`Store::fire_and_claim`): it is a claim like any other, the oldest due deliveries
//! first (a retry waiting before the new ones), up to its limit, leased to its owner, and
//! what it leaves stays pending for the lease session's own claim.

use super::{Harness, SEC, T0, create, timer};
use crate::*;

pub async fn a_claim_in_the_fire_transaction_takes_the_oldest_due_up_to_its_limit(h: &Harness) {
    let older = create(h, timer(h, "acme", T0, 2)).await;
    let newer = create(h, timer(h, "acme", T0, 2)).await;
    let fire = |id, at| FireRequest {
        timer_id: id,
        fired_at_us: at,
        refuse_early: false,
    };
    h.store.fire_timers(vec![fire(older.id, T0)]).await.unwrap();
    h.clock.advance_us(1_000);
    let claim = ClaimRequest {
        lease_owner: "w1".into(),
        lease_ttl_us: 30 * SEC,
        limit: 3,
    };
    let (fired, leased) = h
        .store
        .fire_and_claim(vec![fire(newer.id, T0 + 1_000)], Some(claim))
        .await
        .unwrap();
    assert!(matches!(
        fired[..],
        [FireOutcome::Fired { deliveries: 2, .. }]
    ));
    let timers: Vec<_> = leased.iter().map(|d| d.delivery.timer_id).collect();
    assert_eq!(
        timers,
        [older.id, older.id, newer.id],
        "oldest first, up to 3"
    );
    for d in &leased {
        assert_eq!(d.delivery.lease_owner.as_deref(), Some("w1"));
        assert_eq!(d.delivery.lease_expires_at_us, Some(T0 + 1_000 + 30 * SEC));
        assert_eq!(d.delivery.attempt, 1);
        assert_eq!(d.timer.id, d.delivery.timer_id);
    }
    let left = h.store.claim_deliveries("w2", 30 * SEC, 10).await.unwrap();
    assert_eq!(left.len(), 1, "the fourth stayed pending");
    assert_eq!(left[0].delivery.timer_id, newer.id);
    // Without a claim it only fires.
    let third = create(h, timer(h, "acme", T0, 1)).await;
    let (fired, none) = h
        .store
        .fire_and_claim(vec![fire(third.id, T0 + 1_000)], None)
        .await
        .unwrap();
    assert!(matches!(
        fired[..],
        [FireOutcome::Fired { deliveries: 1, .. }]
    ));
    assert!(none.is_empty());
}
