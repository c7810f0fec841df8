//! Several PostgreSQL store handles on one database at once, as kernels of a cluster
//! are: quotas and idempotency keys stay exact, a reader following the log misses no
//! event, no delivery is claimed twice, a timer fired by two handles at once fires once,
//! a report racing the rescue of its lease is either recorded or fenced, never both.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; see `pg/mod.rs`.

#[allow(dead_code)]
mod pg;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minoots_core::AttemptOutcome::Succeeded;
use minoots_core::{Clock, DeliveryStatus, EventType, TimerStatus};
use minoots_store::conformance::{Harness, T0, report, timer};
use minoots_store::{
    CreateOptions, EventQuery, FireOutcome, FireRequest, IDEMPOTENCY_KEY_TTL_US, PostgresStore,
    Quota, Store, StoreError, Tenant, TimerQuery, utc_day,
};
use pg::{TestSchema, two_handles};

const SEC: i64 = 1_000_000;

/// Runs `per_handle` creates on each handle at once; returns every result.
async fn create_on_both(
    a: &PostgresStore,
    b: &PostgresStore,
    h: &Harness,
    per_handle: usize,
    tenant: &str,
    key: Option<&str>,
    options: &CreateOptions,
) -> Vec<Result<minoots_store::CreateOutcome, StoreError>> {
    let mut tasks = Vec::new();
    for i in 0..per_handle * 2 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let mut t = timer(h, tenant, h.clock.now_us() + (i as i64 + 10) * SEC, 1);
        t.idempotency_key = key.map(str::to_string);
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            store.create_timer_with(t, options).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("create task"));
    }
    out
}

fn created(results: &[Result<minoots_store::CreateOutcome, StoreError>]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Ok(o) if o.created))
        .count()
}

/// How the creates ended, in a line: "5 created, 0 returned, 19 refused: …".
fn summary(results: &[Result<minoots_store::CreateOutcome, StoreError>]) -> String {
    let returned = results
        .iter()
        .filter(|r| matches!(r, Ok(o) if !o.created))
        .count();
    let errors: BTreeSet<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    format!(
        "{} created, {returned} returned, {} refused: {errors:?}",
        created(results),
        results.len() - created(results) - returned
    )
}

async fn scheduled(store: &PostgresStore, tenant: &str) -> Vec<minoots_core::Timer> {
    store
        .list_timers(TimerQuery {
            tenant_id: tenant.into(),
            status: Some(TimerStatus::Scheduled),
            label: None,
            limit: 500,
            after: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .timers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_admit_exactly_the_quota() {
    let (a, b, h) = or_skip!(two_handles().await);
    let day = utc_day(h.clock.now_us());
    // Pending quota: 24 creates race for 5 slots.
    let pending = CreateOptions {
        max_pending: Some(5),
        ..CreateOptions::default()
    };
    let results = create_on_both(&a, &b, &h, 12, "acme", None, &pending).await;
    assert_eq!(created(&results), 5, "{}", summary(&results));
    for r in &results {
        if let Err(e) = r {
            assert_eq!(
                *e,
                StoreError::QuotaExceeded {
                    quota: Quota::PendingTimers,
                    limit: 5
                }
            );
        }
    }
    let usage = b.tenant_usage("acme", day).await.unwrap();
    assert_eq!((usage.created_today, usage.pending), (5, 5));
    let stored = scheduled(&a, "acme").await;
    assert_eq!(stored.len(), 5, "a refused create stores nothing");
    let events = a
        .read_events(EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 5);

    // Daily quota: with the pending slots freed, 24 creates race for the 3 left today.
    for t in stored {
        a.cancel_timer("acme", t.id, None).await.unwrap();
    }
    let daily = CreateOptions {
        max_per_day: Some(8),
        max_pending: Some(100),
        ..CreateOptions::default()
    };
    let results = create_on_both(&a, &b, &h, 12, "acme", None, &daily).await;
    assert_eq!(created(&results), 3, "{}", summary(&results));
    assert!(results.iter().all(|r| match r {
        Ok(o) => o.created,
        Err(e) =>
            *e == StoreError::QuotaExceeded {
                quota: Quota::TimersPerDay,
                limit: 8
            },
    }));
    let usage = a.tenant_usage("acme", day).await.unwrap();
    assert_eq!((usage.created_today, usage.pending), (8, 3));
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_creating_with_one_key_store_one_timer() {
    let (a, b, h) = or_skip!(two_handles().await);
    let opts = CreateOptions {
        idempotency_fingerprint: Some([7; 32]),
        ..CreateOptions::default()
    };
    let results = create_on_both(&a, &b, &h, 8, "acme", Some("k"), &opts).await;
    assert_eq!(created(&results), 1, "{}", summary(&results));
    let ids: BTreeSet<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().timer.id)
        .collect();
    assert_eq!(ids.len(), 1, "every caller got the one timer");
    let first = *ids.iter().next().unwrap();
    let day = utc_day(h.clock.now_us());
    assert_eq!(a.tenant_usage("acme", day).await.unwrap().created_today, 1);
    assert_eq!(scheduled(&b, "acme").await.len(), 1);

    // Once the key expired, racing creates move it to exactly one new timer.
    h.clock.advance_us(IDEMPOTENCY_KEY_TTL_US + SEC);
    let results = create_on_both(&a, &b, &h, 8, "acme", Some("k"), &opts).await;
    assert_eq!(created(&results), 1, "{}", summary(&results));
    let ids: BTreeSet<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().timer.id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(!ids.contains(&first));
    let old = a.get_timer("acme", first).await.unwrap().unwrap();
    assert_eq!(old.idempotency_key, None, "the expired key moved");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_the_log_misses_nothing_while_two_handles_write() {
    let (a, b, h) = or_skip!(two_handles().await);
    const WRITES: usize = 300;
    let done = Arc::new(AtomicBool::new(false));
    // The reader resumes after the last seq it saw, as event streams do. Were seq not in
    // commit order, it would step over an event committed late and never see it. It
    // reads on a handle of its own, so it never queues behind the writers' connections.
    let schema = h.guard.downcast_ref::<TestSchema>().unwrap();
    let c = schema.open(&h.clock).await;
    let reader = {
        let (store, done) = (c.clone(), done.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = store
                    .read_events(EventQuery {
                        after_seq: last,
                        limit: 1_000,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                for e in &page {
                    assert!(e.seq > last);
                    last = e.seq;
                    seen.push(e.seq);
                }
                if finished && page.is_empty() {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    // Each create for a tenant of its own: creates of one tenant queue on its usage rows
    // and would commit in order anyway.
    let mut writers = Vec::new();
    for i in 0..WRITES {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let t = timer(&h, &format!("t{i}"), T0 + SEC, 1);
        writers.push(tokio::spawn(async move { store.create_timer(t).await }));
    }
    for w in writers {
        assert!(w.await.unwrap().unwrap().created);
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let missing: Vec<i64> = (1..=WRITES as i64)
        .filter(|s| seen.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "the reader stepped over {} events committed after a higher seq, such as {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(seen.len(), WRITES, "every event seen once, without a gap");
    assert_eq!(b.latest_event_seq().await.unwrap(), WRITES as i64);
    a.close().await;
    b.close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_racing_for_a_tenant_and_its_first_secret_agree() {
    let (a, b, h) = or_skip!(two_handles().await);
    let now = h.clock.now_us();
    let tenant = |name: &str| Tenant {
        id: "acme".into(),
        name: name.into(),
        tier: "free".into(),
        created_at_us: now,
        updated_at_us: now,
    };
    let (x, y) = tokio::join!(a.create_tenant(tenant("x")), b.create_tenant(tenant("y")));
    assert_eq!(
        [&x, &y].iter().filter(|r| r.is_ok()).count(),
        1,
        "{x:?} {y:?}"
    );
    assert!(matches!(
        [x, y].into_iter().find(|r| r.is_err()),
        Some(Err(StoreError::AlreadyExists(_)))
    ));
    let day = 86_400 * SEC;
    let (x, y) = tokio::join!(
        a.signing_secrets("acme", "whsec_a".into(), day),
        b.signing_secrets("acme", "whsec_b".into(), day)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len(), 1);
    assert_eq!(x, y, "one first secret, whichever won");
    a.close().await;
    b.close().await;
}

/// `n` timers of `actions` actions each, due a second from now, created and fired on
/// `store`; the clock is moved to their due time.
async fn fired_timers(
    store: &PostgresStore,
    h: &Harness,
    n: usize,
    actions: usize,
) -> Vec<minoots_core::Timer> {
    let due = h.clock.now_us() + SEC;
    let timers: Vec<_> = (0..n)
        .map(|i| timer(h, &format!("t{}", i % 7), due, actions))
        .collect();
    store.create_timers(timers.clone()).await.unwrap();
    h.clock.set_us(due);
    let fires = timers
        .iter()
        .map(|t| FireRequest {
            timer_id: t.id,
            fired_at_us: due,
            refuse_early: false,
        })
        .collect();
    let fired = store.fire_timers(fires).await.unwrap();
    assert!(fired.iter().all(|o| matches!(o, FireOutcome::Fired { .. })));
    timers
}

async fn events_of(store: &PostgresStore) -> Vec<minoots_core::Event> {
    let mut all = Vec::new();
    loop {
        let page = store
            .read_events(EventQuery {
                after_seq: all.last().map_or(0, |e: &minoots_core::Event| e.seq),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_claiming_at_once_never_claim_one_delivery_twice() {
    let (a, b, h) = or_skip!(two_handles().await);
    const DELIVERIES: usize = 400;
    fired_timers(&a, &h, DELIVERIES, 1).await;
    // Each handle claims small batches as fast as it can, from several callers, until
    // nothing is left; claims of one handle share group commits, the two handles' race.
    let mut claimers = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store
                    .claim_deliveries(&format!("w{i}"), 60 * SEC, 7)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(
                    batch
                        .into_iter()
                        .map(|l| (l.delivery.id, l.delivery.attempt)),
                );
            }
        }));
    }
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let distinct: BTreeSet<_> = claimed.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        claimed.len(),
        distinct.len(),
        "{} claims of {} deliveries: some were claimed twice",
        claimed.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), DELIVERIES, "every due delivery was claimed");
    assert!(claimed.iter().all(|(_, attempt)| *attempt == 1));
    let stats = b.stats().await.unwrap();
    assert_eq!(
        (stats.pending_deliveries, stats.in_flight_deliveries),
        (0, DELIVERIES as u64)
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_firing_the_same_timers_fire_each_once() {
    let (a, b, h) = or_skip!(two_handles().await);
    const TIMERS: usize = 300;
    let timers: Vec<_> = (0..TIMERS)
        .map(|i| {
            // The first half has no actions, so their chunks make no deliveries.
            let actions = if i < TIMERS / 2 { 0 } else { 1 + i % 2 };
            timer(&h, &format!("t{}", i % 5), T0 + SEC, actions)
        })
        .collect();
    a.create_timers(timers.clone()).await.unwrap();
    h.clock.set_us(T0 + SEC);
    // Each handle fires every timer, in chunks of 10, from both ends at once: the two
    // handles meet on the same chunks all the way.
    let requests: Vec<FireRequest> = timers
        .iter()
        .map(|t| FireRequest {
            timer_id: t.id,
            fired_at_us: T0 + SEC,
            refuse_early: false,
        })
        .collect();
    let mut firers = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let mut requests = requests.clone();
        if i >= 2 {
            requests.reverse();
        }
        firers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for chunk in requests.chunks(10) {
                outcomes.extend(store.fire_timers(chunk.to_vec()).await.unwrap());
            }
            outcomes
        }));
    }
    let mut fired = std::collections::BTreeMap::new();
    for f in firers {
        for o in f.await.unwrap() {
            match o {
                FireOutcome::Fired { timer_id, .. } | FireOutcome::Settled { timer_id, .. } => {
                    *fired.entry(timer_id).or_insert(0) += 1
                }
                FireOutcome::Skipped { status, .. } => assert!(
                    [TimerStatus::Fired, TimerStatus::Settled].contains(&status),
                    "{status}"
                ),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(fired.len(), TIMERS, "every timer fired");
    assert!(
        fired.values().all(|n| *n == 1),
        "a timer fired more than once: {:?}",
        fired
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    // One set of deliveries and one timer.fired event per timer (timers without actions
    // have no deliveries whose unique key would stop a second firing: only the lock does).
    let expected_deliveries: usize = timers.iter().map(|t| t.action_bundle.actions.len()).sum();
    assert_eq!(
        a.stats().await.unwrap().pending_deliveries,
        expected_deliveries as u64
    );
    for t in timers.iter().take(20) {
        let d = b.list_deliveries(&t.tenant_id, t.id).await.unwrap();
        assert_eq!(d.len(), t.action_bundle.actions.len(), "{}", t.id);
    }
    let fired_events = events_of(&b)
        .await
        .iter()
        .filter(|e| e.event_type == minoots_core::EventType::TimerFired)
        .count();
    assert_eq!(fired_events, TIMERS);
    let usage = a.tenant_usage("t0", utc_day(T0)).await.unwrap();
    assert_eq!(usage.pending, 0, "each fire counted once");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_racing_the_rescue_of_its_lease_is_recorded_or_fenced_never_both() {
    let (a, b, h) = or_skip!(two_handles().await);
    const DELIVERIES: usize = 300;
    for round in 0..3 {
        let timers = fired_timers(&a, &h, DELIVERIES, 1).await;
        let leased = a.claim_deliveries("w1", 10 * SEC, 1_000).await.unwrap();
        assert_eq!(leased.len(), DELIVERIES);
        // The leases expire; handle a reports every attempt while handle b rescues.
        h.clock.advance_us(10 * SEC + 1);
        let now = h.clock.now_us();
        let reporter = {
            let a = a.clone();
            tokio::spawn(async move {
                let reports = leased.into_iter().map(|l| {
                    let a = a.clone();
                    tokio::spawn(async move { a.report_attempt(report(&l, Succeeded, now)).await })
                });
                let mut out = Vec::new();
                for r in reports.collect::<Vec<_>>() {
                    out.push(r.await.unwrap());
                }
                out
            })
        };
        let rescuer = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut rescued = 0;
                for _ in 0..20 {
                    rescued += b.rescue_expired_leases(25).await.unwrap();
                    tokio::task::yield_now().await;
                }
                rescued
            })
        };
        let reports = reporter.await.unwrap();
        let rescued = rescuer.await.unwrap();
        let recorded = reports.iter().filter(|r| r.is_ok()).count();
        let fenced = reports
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Fenced { .. })))
            .count();
        assert_eq!(recorded + fenced, DELIVERIES, "round {round}: {reports:?}");
        assert_eq!(
            rescued, fenced,
            "round {round}: each fenced report was rescued ({recorded} recorded)"
        );
        // Each delivery ended one way: succeeded with one attempt recorded, or pending
        // again with its rescue's event, never both.
        for t in &timers {
            let d = a
                .list_deliveries(&t.tenant_id, t.id)
                .await
                .unwrap()
                .remove(0);
            match d.delivery.status {
                DeliveryStatus::Succeeded => assert_eq!(d.attempts.len(), 1),
                DeliveryStatus::Pending => assert!(d.attempts.is_empty(), "{d:?}"),
                other => panic!("round {round}: delivery {other}: {d:?}"),
            }
        }
        let events = events_of(&a).await;
        for t in &timers {
            let kinds: Vec<_> = events
                .iter()
                .filter(|e| e.timer_id == t.id && e.delivery_id.is_some())
                .map(|e| e.event_type)
                .collect();
            assert!(
                kinds == [EventType::DeliveryAttempted] || kinds == [EventType::DeliveryRetrying],
                "round {round}: timer {} has {kinds:?}",
                t.id
            );
        }
        // Nothing of this round is due or expires in the next: the rescued deliveries are
        // leased for an hour.
        a.claim_deliveries("sweep", 3_600 * SEC, 1_000)
            .await
            .unwrap();
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_succeeding_at_once_on_two_handles_settle_their_timer() {
    let (a, b, h) = or_skip!(two_handles().await);
    const TIMERS: usize = 150;
    let timers = fired_timers(&a, &h, TIMERS, 2).await;
    let leased = a.claim_deliveries("w1", 60 * SEC, 1_000).await.unwrap();
    assert_eq!(leased.len(), 2 * TIMERS);
    // The first action of every timer is reported on one handle, the second on the other,
    // at once: each report alone sees its sibling unfinished unless it waits for it.
    let now = h.clock.now_us();
    let mut reports = Vec::new();
    for l in leased {
        let store = if l.delivery.action_index == 0 {
            a.clone()
        } else {
            b.clone()
        };
        reports.push(tokio::spawn(async move {
            store
                .report_attempt(report(&l, Succeeded, now))
                .await
                .unwrap()
        }));
    }
    for r in reports {
        r.await.unwrap();
    }
    let mut unsettled = Vec::new();
    for t in &timers {
        let stored = b.get_timer(&t.tenant_id, t.id).await.unwrap().unwrap();
        if stored.status != TimerStatus::Settled {
            unsettled.push((t.id, stored.status));
        }
    }
    assert!(
        unsettled.is_empty(),
        "{} of {TIMERS} timers did not settle, such as {:?}",
        unsettled.len(),
        &unsettled[..unsettled.len().min(3)]
    );
    let settled_events = events_of(&a)
        .await
        .iter()
        .filter(|e| e.event_type == EventType::TimerSettled)
        .count();
    assert_eq!(settled_events, TIMERS, "each timer settled once");
    a.close().await;
    b.close().await;
}
