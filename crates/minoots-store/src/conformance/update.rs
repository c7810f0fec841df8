//! Conformance cases about changing a scheduled timer (`Store::update_timer`): the change
//! applies only at the version the client read and only while the timer is scheduled,
//! another tenant's timer is not found, a refused change writes nothing (not even an
//! event), and a fire that comes from a stale window entry of a timer moved later is
//! refused (`NotDue`) so that the timer never fires before its new time.

use std::collections::BTreeMap;

use minoots_core::{ChangeCause, NewEvent, TimerChange, TimerStatus};

use super::{Harness, SEC, T0, all_events, create, fire, timer};
use crate::*;

/// A change of the fire time to `fire_at_us`, at `version`.
fn move_to(version: i64, fire_at_us: i64) -> TimerChange {
    TimerChange {
        expected_version: Some(version),
        fire_at: Some((fire_at_us, None)),
        ..TimerChange::default()
    }
}

/// Fires `id` at the clock's now as the scheduler does: refused if it would be early.
async fn fire_from_window(h: &Harness, id: minoots_core::TimerId) -> FireOutcome {
    h.store
        .fire_timers(vec![FireRequest {
            timer_id: id,
            fired_at_us: h.clock.now_us(),
            refuse_early: true,
        }])
        .await
        .expect("fire")
        .remove(0)
}

use minoots_core::Clock as _;

pub async fn update_changes_a_scheduled_timer_at_its_version(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + 60 * SEC, 1)).await;
    let mut labels = BTreeMap::new();
    labels.insert("team".to_string(), "billing".to_string());
    let mut metadata = serde_json::Map::new();
    metadata.insert("order".into(), serde_json::json!(42));
    let change = TimerChange {
        labels: Some(labels.clone()),
        metadata: Some(metadata.clone()),
        action_bundle: Some(minoots_core::ActionBundle::default()),
        ..move_to(1, T0 + 5 * SEC)
    };
    let changed = h
        .store
        .update_timer("acme", t.id, change)
        .await
        .expect("update");
    let want = minoots_core::Timer {
        fire_at_us: T0 + 5 * SEC,
        duration_ms: None,
        labels,
        metadata,
        action_bundle: minoots_core::ActionBundle::default(),
        version: 2,
        ..t.clone()
    };
    assert_eq!(changed.timer, want);
    assert_eq!(changed.previous_fire_at_us, T0 + 60 * SEC);
    assert_eq!(
        h.store.get_timer("acme", t.id).await.unwrap(),
        Some(want.clone())
    );
    // The window sees the new time, not the old one.
    let due = h
        .store
        .load_due_timers(None, T0 + 10 * SEC, 10)
        .await
        .unwrap();
    assert_eq!(
        due,
        vec![DueTimer {
            fire_at_us: T0 + 5 * SEC,
            id: t.id
        }]
    );
    // One event, with the core's payload.
    let last = all_events(h).await.pop().expect("an event");
    let expected = NewEvent::timer_updated(
        &want,
        T0 + 60 * SEC,
        &["fireAt", "actionBundle", "labels", "metadata"],
        ChangeCause::Update,
    );
    assert_eq!(
        (
            last.event_type,
            last.tenant_id.as_str(),
            last.timer_id,
            &last.data
        ),
        (expected.event_type, "acme", t.id, &expected.data)
    );
    // A change without a version (fire now) applies at any version.
    let now = h
        .store
        .update_timer("acme", t.id, TimerChange::fire_now(T0))
        .await
        .expect("fire now");
    assert_eq!((now.timer.fire_at_us, now.timer.version), (T0, 3));
    assert!(matches!(
        fire_from_window(h, t.id).await,
        FireOutcome::Settled { .. }
    ));
    // Scheduled count: the change kept it pending, the fire ended it.
    assert_eq!(
        h.store
            .tenant_usage("acme", utc_day(T0))
            .await
            .unwrap()
            .pending,
        0
    );
}

pub async fn a_refused_update_changes_nothing(h: &Harness) {
    let waiting = create(h, timer(h, "acme", T0 + 60 * SEC, 1)).await;
    let fired = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let cancelled = create(h, timer(h, "acme", T0 + 60 * SEC, 1)).await;
    h.clock.advance_us(SEC);
    assert!(matches!(fire(h, fired.id).await, FireOutcome::Fired { .. }));
    h.store
        .cancel_timer("acme", cancelled.id, None)
        .await
        .unwrap();
    let before = (
        h.store.latest_event_seq().await.unwrap(),
        h.store.get_timer("acme", waiting.id).await.unwrap(),
        h.store.get_timer("acme", fired.id).await.unwrap(),
        h.store.get_timer("acme", cancelled.id).await.unwrap(),
    );
    let s = &h.store;
    let at = T0 + 30 * SEC;
    // (case, outcome, refusal)
    let cases = [
        (
            "an old version",
            s.update_timer("acme", waiting.id, move_to(0, at)).await,
            StoreError::VersionMismatch {
                expected: 0,
                current: 1,
            },
        ),
        (
            "a version ahead",
            s.update_timer("acme", waiting.id, move_to(2, at)).await,
            StoreError::VersionMismatch {
                expected: 2,
                current: 1,
            },
        ),
        (
            "a fired timer",
            s.update_timer("acme", fired.id, move_to(1, at)).await,
            StoreError::Conflict {
                status: TimerStatus::Fired,
            },
        ),
        (
            "a fired timer, fire now",
            s.update_timer("acme", fired.id, TimerChange::fire_now(at))
                .await,
            StoreError::Conflict {
                status: TimerStatus::Fired,
            },
        ),
        (
            "a cancelled timer",
            s.update_timer("acme", cancelled.id, move_to(2, at)).await,
            StoreError::Conflict {
                status: TimerStatus::Cancelled,
            },
        ),
        (
            "another tenant's timer",
            s.update_timer("other", waiting.id, move_to(1, at)).await,
            StoreError::NotFound(Missing::Timer(waiting.id)),
        ),
        (
            "another tenant's timer, fire now",
            s.update_timer("other", waiting.id, TimerChange::fire_now(at))
                .await,
            StoreError::NotFound(Missing::Timer(waiting.id)),
        ),
    ];
    for (case, outcome, refusal) in cases {
        assert_eq!(outcome, Err(refusal), "{case}");
    }
    let after = (
        h.store.latest_event_seq().await.unwrap(),
        h.store.get_timer("acme", waiting.id).await.unwrap(),
        h.store.get_timer("acme", fired.id).await.unwrap(),
        h.store.get_timer("acme", cancelled.id).await.unwrap(),
    );
    assert_eq!(after, before, "a refused change writes nothing");
}

pub async fn a_timer_moved_later_does_not_fire_at_its_old_time(h: &Harness) {
    let later = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let earlier = create(h, timer(h, "acme", T0 + 10 * SEC, 1)).await;
    h.store
        .update_timer("acme", later.id, move_to(1, T0 + 60 * SEC))
        .await
        .unwrap();
    h.store
        .update_timer("acme", earlier.id, move_to(1, T0 + SEC / 2))
        .await
        .unwrap();
    h.clock.advance_us(SEC);
    // A window that still holds the old time fires at it: refused, nothing changes.
    assert_eq!(
        fire_from_window(h, later.id).await,
        FireOutcome::NotDue {
            timer_id: later.id,
            fire_at_us: T0 + 60 * SEC
        }
    );
    let still = h.store.get_timer("acme", later.id).await.unwrap().unwrap();
    assert_eq!((still.status, still.version), (TimerStatus::Scheduled, 2));
    // Moved earlier: it fires, late from its new time.
    assert_eq!(
        fire_from_window(h, earlier.id).await,
        FireOutcome::Fired {
            timer_id: earlier.id,
            tenant_id: "acme".into(),
            deliveries: 1,
            fire_at_us: T0 + SEC / 2,
            traceparent: None,
        }
    );
    let fired = h
        .store
        .get_timer("acme", earlier.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fired.fired_late_us(), Some(SEC / 2));
    // At its new time, the moved timer fires.
    h.clock.advance_us(59 * SEC);
    assert!(matches!(
        fire_from_window(h, later.id).await,
        FireOutcome::Fired { .. }
    ));
}
