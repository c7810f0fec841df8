//! Conformance cases for the overview reads ([`crate::DashboardStore`]) and the list
//! filters by name and fire time.

use minoots_core::{AttemptOutcome, Clock as _, TimerStatus};

use super::{Harness, SEC, T0, create, fire, report, timer};
use crate::*;

const MIN: i64 = 60 * SEC;

pub async fn timer_counts_by_status_per_tenant(h: &Harness) {
    for i in 0..3 {
        create(h, timer(h, "acme", T0 + (100 + i) * SEC, 1)).await;
    }
    let cancelled = create(h, timer(h, "acme", T0 + 100 * SEC, 1)).await;
    h.store
        .cancel_timer("acme", cancelled.id, None)
        .await
        .unwrap();
    let settles = create(h, timer(h, "acme", T0 + SEC, 0)).await;
    let runs = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let fails = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(create(h, timer(h, "other", T0 + SEC, 1)).await);
    }
    h.clock.advance_us(SEC);
    // One fire batch of two tenants' timers (counts are moved per tenant and batch).
    let fired = h
        .store
        .fire_timers(
            [settles.id, runs.id, fails.id, others[0].id]
                .into_iter()
                .map(|timer_id| FireRequest {
                    timer_id,
                    fired_at_us: h.clock.now_us(),
                    refuse_early: false,
                })
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(fired.len(), 4);
    let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    let failing = claimed
        .iter()
        .find(|d| d.delivery.timer_id == fails.id)
        .expect("the failing timer's delivery");
    h.store
        .report_attempt(report(failing, AttemptOutcome::Permanent, h.clock.now_us()))
        .await
        .unwrap();

    let counts = h.store.timer_counts("acme", 1_000).await.unwrap();
    assert_eq!(
        counts,
        TimerCounts {
            scheduled: 3,
            fired: 1,
            settled: 1,
            failed: 1,
            cancelled: 1,
            capped: false,
        }
    );
    let other = h.store.timer_counts("other", 1_000).await.unwrap();
    assert_eq!((other.scheduled, other.fired), (1, 1));
    assert_eq!(
        h.store.timer_counts("nobody", 1_000).await.unwrap(),
        TimerCounts::default()
    );
    // A count stops at the cap and says so.
    let capped = h.store.timer_counts("acme", 2).await.unwrap();
    assert_eq!(
        (capped.scheduled, capped.fired, capped.capped),
        (2, 1, true)
    );
    // A redrive takes the failed timer back to fired.
    h.store.redrive_timer("acme", fails.id).await.unwrap();
    let counts = h.store.timer_counts("acme", 1_000).await.unwrap();
    assert_eq!((counts.fired, counts.failed), (2, 0));
}

/// Fires a fresh timer of `tenant` with one action now and reports its first attempt.
async fn attempt(h: &Harness, tenant: &str, outcome: AttemptOutcome) {
    let t = create(h, timer(h, tenant, h.clock.now_us(), 1)).await;
    fire(h, t.id).await;
    let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    let d = claimed
        .iter()
        .find(|d| d.delivery.timer_id == t.id)
        .expect("its delivery");
    h.store
        .report_attempt(report(d, outcome, h.clock.now_us()))
        .await
        .unwrap();
}

pub async fn delivery_activity_counts_the_window_by_minute(h: &Harness) {
    // Minute 0: two successes of acme. Minute 1: a retry and a death of acme, a success
    // of another tenant. Minute 2: nothing.
    h.clock.set_us(T0 + 5 * SEC);
    attempt(h, "acme", AttemptOutcome::Succeeded).await;
    attempt(h, "acme", AttemptOutcome::Succeeded).await;
    h.clock.set_us(T0 + MIN + 5 * SEC);
    attempt(h, "acme", AttemptOutcome::Retryable).await;
    attempt(h, "acme", AttemptOutcome::Permanent).await;
    attempt(h, "other", AttemptOutcome::Succeeded).await;

    let minute = |start_us, succeeded, retried, dead| DeliveryMinute {
        start_us,
        succeeded,
        retried,
        dead,
    };
    let all = h
        .store
        .delivery_activity("acme", T0, 3, 10_000)
        .await
        .unwrap();
    assert_eq!(
        all,
        DeliveryActivity {
            minutes: vec![
                minute(T0, 2, 0, 0),
                minute(T0 + MIN, 0, 1, 1),
                minute(T0 + 2 * MIN, 0, 0, 0),
            ],
            complete: true,
        }
    );
    // A window that starts later leaves the earlier minute out (the search skips it).
    let later = h
        .store
        .delivery_activity("acme", T0 + MIN, 1, 10_000)
        .await
        .unwrap();
    assert_eq!(later.minutes, vec![minute(T0 + MIN, 0, 1, 1)]);
    assert!(later.complete);
    let other = h
        .store
        .delivery_activity("other", T0, 2, 10_000)
        .await
        .unwrap();
    assert_eq!(
        other.minutes,
        vec![minute(T0, 0, 0, 0), minute(T0 + MIN, 1, 0, 0)]
    );
    // A window after the last event is empty and complete.
    let empty = h
        .store
        .delivery_activity("acme", T0 + 10 * MIN, 2, 10_000)
        .await
        .unwrap();
    assert!(empty.complete);
    assert!(
        empty
            .minutes
            .iter()
            .all(|m| m.succeeded + m.retried + m.dead == 0)
    );
    // Reading fewer events than the window holds keeps the most recent ones and says so.
    let cut = h.store.delivery_activity("acme", T0, 2, 3).await.unwrap();
    assert!(!cut.complete);
    assert_eq!(cut.minutes[0], minute(T0, 0, 0, 0));
}

pub async fn list_filters_by_name_prefix_and_fire_time(h: &Harness) {
    let mut ids = Vec::new();
    for (i, name) in [
        "alpha-1", "beta-1", "alpha-2", "Alpha-3", "álpha-4", "alpha-5",
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = timer(h, "acme", T0 + (10 + i as i64) * SEC, 1);
        t.name = name.to_string();
        ids.push(create(h, t).await.id);
    }
    let mut other = timer(h, "other", T0 + 12 * SEC, 1);
    other.name = "alpha-other".into();
    create(h, other).await;
    h.store.cancel_timer("acme", ids[5], None).await.unwrap();
    let list = |name: Option<&str>, from: Option<i64>, before: Option<i64>| TimerQuery {
        tenant_id: "acme".into(),
        name_prefix: name.map(str::to_string),
        fire_from_us: from,
        fire_before_us: before,
        limit: 50,
        ..Default::default()
    };
    let ids_of = |p: TimerPage| p.timers.iter().map(|t| t.id).collect::<Vec<_>>();

    let by_name = h.store.list_timers(list(Some("alpha"), None, None)).await;
    assert_eq!(ids_of(by_name.unwrap()), vec![ids[0], ids[2], ids[5]]);
    let exact = h.store.list_timers(list(Some("alpha-2"), None, None)).await;
    assert_eq!(ids_of(exact.unwrap()), vec![ids[2]]);
    let accented = h.store.list_timers(list(Some("álp"), None, None)).await;
    assert_eq!(ids_of(accented.unwrap()), vec![ids[4]]);
    // From inclusive, before exclusive.
    let window = h
        .store
        .list_timers(list(None, Some(T0 + 11 * SEC), Some(T0 + 13 * SEC)))
        .await;
    assert_eq!(ids_of(window.unwrap()), vec![ids[1], ids[2]]);
    // With the status filter and pages of one.
    let mut q = list(Some("alpha"), Some(T0 + 10 * SEC), Some(T0 + 20 * SEC));
    q.status = Some(TimerStatus::Scheduled);
    q.limit = 1;
    let mut seen = Vec::new();
    loop {
        let page = h.store.list_timers(q.clone()).await.unwrap();
        seen.extend(page.timers.iter().map(|t| t.id));
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, vec![ids[0], ids[2]]);
    let none = h.store.list_timers(list(Some("zeta"), None, None)).await;
    assert!(none.unwrap().timers.is_empty());
}
