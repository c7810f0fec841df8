//! Conformance case about the event log's payloads: every event a write appends is the
//! one `minoots_core::event::NewEvent` builds for that change, so no backend can drift
//! from the public contract the core's tests pin.

use minoots_core::plan::lease_expired_reason;
use minoots_core::{AttemptOutcome, Clock as _, DeathReason, NewEvent, RetryCause};

use super::{Harness, SEC, T0, create, fire, report, timer};
use crate::*;

/// The events appended since `seq`, without their place and time; moves `seq` past them.
async fn appended(h: &Harness, seq: &mut i64) -> Vec<NewEvent> {
    let events = h
        .store
        .read_events(EventQuery {
            after_seq: *seq,
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events");
    if let Some(last) = events.last() {
        *seq = last.seq;
    }
    events
        .into_iter()
        .map(|e| NewEvent {
            event_type: e.event_type,
            tenant_id: e.tenant_id,
            timer_id: e.timer_id,
            delivery_id: e.delivery_id,
            data: e.data,
        })
        .collect()
}

/// Claims the one due delivery for `owner`.
async fn claim_one(h: &Harness, owner: &str, lease_ttl_us: i64) -> LeasedDelivery {
    let mut claimed = h
        .store
        .claim_deliveries(owner, lease_ttl_us, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "one delivery is due");
    claimed.remove(0)
}

/// Lets the lease of `d` expire and rescues it; returns the time of the rescue.
async fn expire_and_rescue(h: &Harness, d: &LeasedDelivery) -> i64 {
    h.clock
        .set_us(d.delivery.lease_expires_at_us.expect("leased") + 1);
    assert_eq!(h.store.rescue_expired_leases(100).await.unwrap(), 1);
    h.clock.now_us()
}

pub async fn every_event_carries_the_core_payload(h: &Harness) {
    use AttemptOutcome::*;
    let mut seq = h.store.latest_event_seq().await.unwrap();
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await; // maxAttempts 3
    assert_eq!(appended(h, &mut seq).await, [NewEvent::timer_scheduled(&t)]);
    h.clock.advance_us(SEC + 250);
    fire(h, t.id).await;
    assert_eq!(
        appended(h, &mut seq).await,
        [NewEvent::timer_fired(
            "acme",
            t.id,
            t.fire_at_us,
            h.clock.now_us(),
            1
        )]
    );

    // A retryable failure backs off.
    let first = claim_one(h, "w1", 10 * SEC).await;
    let now = h.clock.now_us();
    let out = h
        .store
        .report_attempt(report(&first, Retryable, now))
        .await
        .unwrap();
    let next = out.next_attempt_at_us.expect("a retry");
    let delay_ms = ((next - now) / 1_000) as u64;
    let d = &first.delivery;
    assert_eq!(
        appended(h, &mut seq).await,
        [
            NewEvent::delivery_attempted(d, Retryable, Some(503), None, Some("boom"), 1_234),
            NewEvent::delivery_retrying(d, next, RetryCause::Backoff { delay_ms }),
        ]
    );

    // A lease that ends before a report is rescued.
    h.clock.set_us(next);
    let second = claim_one(h, "w2", SEC).await;
    let rescued_at = expire_and_rescue(h, &second).await;
    let reason = lease_expired_reason(&second.delivery);
    assert_eq!(
        appended(h, &mut seq).await,
        [NewEvent::delivery_retrying(
            &second.delivery,
            rescued_at,
            RetryCause::LeaseExpired { reason: &reason }
        )]
    );

    // A permanent failure kills the delivery and fails the timer.
    let third = claim_one(h, "w1", 10 * SEC).await;
    h.store
        .report_attempt(report(&third, Permanent, h.clock.now_us()))
        .await
        .unwrap();
    let d = &third.delivery;
    assert_eq!(
        appended(h, &mut seq).await,
        [
            NewEvent::delivery_attempted(d, Permanent, Some(404), None, Some("boom"), 1_234),
            NewEvent::delivery_dead(d, DeathReason::PermanentFailure, Some("boom")),
            NewEvent::timer_failed(d, DeathReason::PermanentFailure),
        ]
    );

    // A redrive requeues it; its success settles the timer.
    h.store.redrive_timer("acme", t.id).await.unwrap();
    assert_eq!(
        appended(h, &mut seq).await,
        [NewEvent::delivery_retrying(
            d,
            h.clock.now_us(),
            RetryCause::Redrive
        )]
    );
    let fourth = claim_one(h, "w1", 10 * SEC).await;
    h.store
        .report_attempt(report(&fourth, Succeeded, h.clock.now_us()))
        .await
        .unwrap();
    assert_eq!(
        appended(h, &mut seq).await,
        [
            NewEvent::delivery_attempted(&fourth.delivery, Succeeded, Some(200), None, None, 1_234),
            NewEvent::timer_settled("acme", t.id),
        ]
    );

    // The last attempt's lease ending kills the delivery.
    let doomed = create(h, timer(h, "acme", h.clock.now_us(), 1)).await;
    fire(h, doomed.id).await;
    for _ in 0..2 {
        let leased = claim_one(h, "w1", SEC).await;
        expire_and_rescue(h, &leased).await;
    }
    let last = claim_one(h, "w1", SEC).await;
    seq = h.store.latest_event_seq().await.unwrap(); // past the earlier rescues
    expire_and_rescue(h, &last).await;
    let error = lease_expired_reason(&last.delivery);
    assert_eq!(
        appended(h, &mut seq).await,
        [
            NewEvent::delivery_dead(&last.delivery, DeathReason::RetriesExhausted, Some(&error)),
            NewEvent::timer_failed(&last.delivery, DeathReason::RetriesExhausted),
        ]
    );

    // A timer without actions settles as it fires; a cancel carries its reason.
    let empty = create(h, timer(h, "acme", h.clock.now_us(), 0)).await;
    let waiting = create(h, timer(h, "acme", h.clock.now_us() + SEC, 1)).await;
    appended(h, &mut seq).await;
    fire(h, empty.id).await;
    h.store
        .cancel_timer("acme", waiting.id, Some("no longer needed".into()))
        .await
        .unwrap();
    assert_eq!(
        appended(h, &mut seq).await,
        [
            NewEvent::timer_fired("acme", empty.id, empty.fire_at_us, h.clock.now_us(), 0),
            NewEvent::timer_settled("acme", empty.id),
            NewEvent::timer_cancelled("acme", waiting.id, Some("no longer needed")),
        ]
    );
}
