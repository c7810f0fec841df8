//! Conformance case about reported text: what a remote server, a command or a caller
//! sends back is stored as the core's `stored_text` makes it (NUL replaced, cut to its
//! limit), the same in the attempt, the delivery's last error and the event, whatever the
//! backend (PostgreSQL's `text` cannot hold NUL; SQLite could, but must not differ).

use minoots_core::{AttemptOutcome, Clock as _, EventType};

use super::{Harness, SEC, T0, all_events, create, fire, report, timer};
use crate::*;

pub async fn reported_text_with_nul_is_stored_without_it(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    h.clock.advance_us(SEC);
    assert!(matches!(fire(h, t.id).await, FireOutcome::Fired { .. }));
    let leased = h.store.claim_deliveries("w1", 60 * SEC, 10).await.unwrap();
    let mut r = report(&leased[0], AttemptOutcome::Retryable, h.clock.now_us());
    r.error = Some("bad\0byte".into());
    r.response_excerpt = Some("\0body\0".into());
    h.store
        .report_attempt(r)
        .await
        .expect("a report with NUL is stored");

    let listed = h.store.list_deliveries("acme", t.id).await.unwrap();
    let attempt = &listed[0].attempts[0];
    assert_eq!(attempt.error.as_deref(), Some("bad\u{FFFD}byte"));
    assert_eq!(
        attempt.response_excerpt.as_deref(),
        Some("\u{FFFD}body\u{FFFD}")
    );
    assert_eq!(
        listed[0].delivery.last_error.as_deref(),
        Some("bad\u{FFFD}byte")
    );
    let events = all_events(h).await;
    let attempted = events
        .iter()
        .find(|e| e.event_type == EventType::DeliveryAttempted)
        .expect("delivery.attempted");
    assert_eq!(attempted.data["error"], "bad\u{FFFD}byte");

    // A cancel reason that reaches the store without validation is stored the same way.
    let u = create(h, timer(h, "acme", T0 + 60 * SEC, 1)).await;
    let cancelled = h
        .store
        .cancel_timer("acme", u.id, Some("why\0not".into()))
        .await
        .expect("a cancel with NUL is stored");
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("why\u{FFFD}not"));
    let stored = h.store.get_timer("acme", u.id).await.unwrap().unwrap();
    assert_eq!(stored, cancelled);
}
