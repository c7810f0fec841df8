//! Conformance cases about group commit: writes of different callers that a backend
//! commits together must not fail one another. One caller's refusal, or a call that
//! fails part-way, is undone alone; the other writes of its group are committed.
//! [`in_one_group`] makes concurrent writes share one group on a backend that can hold
//! its writes back ([`HoldWrites`]), so these cases test what they claim.

use std::future::Future;
use std::pin::Pin;

use minoots_core::{AttemptOutcome, Clock as _, DeliveryStatus, EventType, TimerStatus};

use super::{Harness, SEC, T0, all_events, create, fire, report, timer};
use crate::*;

/// One write of a group, boxed so that writes of different kinds can share a list.
pub type GroupWrite<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Holds a backend's writes back so that the ones sent meanwhile are committed together.
#[async_trait::async_trait]
pub trait HoldWrites: Send + Sync {
    /// Returns once writes are held; they go on, as one group, when the result is dropped.
    async fn hold(&self) -> Box<dyn HeldWrites>;
}

/// Writes held back by [`HoldWrites::hold`].
pub trait HeldWrites: Send {
    /// How many writes are waiting.
    fn queued(&self) -> usize;
}

#[async_trait::async_trait]
impl HoldWrites for crate::SqliteStore {
    async fn hold(&self) -> Box<dyn HeldWrites> {
        Box::new(self.hold_writer().await.expect("hold the writer"))
    }
}

impl HeldWrites for crate::sqlite::WriterHold {
    fn queued(&self) -> usize {
        crate::sqlite::WriterHold::queued(self)
    }
}

#[async_trait::async_trait]
impl HoldWrites for crate::PostgresStore {
    async fn hold(&self) -> Box<dyn HeldWrites> {
        Box::new(self.hold_writer().await.expect("hold the writer"))
    }
}

impl HeldWrites for crate::postgres::WriterHold {
    fn queued(&self) -> usize {
        crate::postgres::WriterHold::queued(self)
    }
}

/// Runs `writes` concurrently; with a hold, they are all queued before any is committed,
/// so they share one group commit. Returns their results in order.
pub async fn in_one_group<T>(h: &Harness, writes: Vec<GroupWrite<'_, T>>) -> Vec<T> {
    let n = writes.len();
    let held = match &h.hold_writes {
        Some(hold) => Some(hold.hold().await),
        None => None,
    };
    let release = async move {
        if let Some(held) = held {
            while held.queued() < n {
                tokio::task::yield_now().await;
            }
            assert_eq!(held.queued(), n, "all writes wait for one group");
        }
    };
    let (out, ()) = tokio::join!(futures_join_all(writes), release);
    out
}

/// Polls every future until all are done (in the order given, on each wake).
async fn futures_join_all<T>(mut writes: Vec<GroupWrite<'_, T>>) -> Vec<T> {
    let mut out: Vec<Option<T>> = writes.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in writes.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("done")).collect()
}

/// A create refused for its quota after its idempotency key was found expired fails
/// alone: the other writes of its group commit (other tenants' creates, a fire, a report)
/// are committed, and nothing of the refused create is stored.
pub async fn a_refused_create_fails_no_other_write_of_its_group(h: &Harness) {
    let opts = |fp: u8| CreateOptions {
        max_pending: Some(1),
        idempotency_fingerprint: Some([fp; 32]),
        ..CreateOptions::default()
    };
    // acme: one pending timer, far out, holding the key "k".
    let mut keyed = timer(h, "acme", T0 + 30 * 86_400 * SEC, 1);
    keyed.idempotency_key = Some("k".into());
    assert!(
        h.store
            .create_timer_with(keyed.clone(), opts(1))
            .await
            .unwrap()
            .created
    );
    let to_fire = create(h, timer(h, "beta", T0 + SEC, 1)).await;
    let to_report = create(h, timer(h, "gamma", T0 + SEC, 1)).await;
    // The key expires; gamma's delivery is leased.
    h.clock.advance_us(IDEMPOTENCY_KEY_TTL_US + SEC);
    assert!(matches!(
        fire(h, to_report.id).await,
        FireOutcome::Fired { .. }
    ));
    let leased = h.store.claim_deliveries("w1", 60 * SEC, 10).await.unwrap();
    assert_eq!(leased.len(), 1);
    let now = h.clock.now_us();
    let day = utc_day(now);
    let seen = all_events(h).await.len();

    let mut refused = timer(h, "acme", now + 10 * SEC, 1);
    refused.idempotency_key = Some("k".into());
    let beta = timer(h, "beta", now + 5 * SEC, 1);
    let delta = timer(h, "delta", now + 5 * SEC, 0);
    let store = &h.store;
    let writes: Vec<GroupWrite<'_, StoreResult<()>>> = vec![
        Box::pin(async {
            store
                .create_timer(beta.clone())
                .await
                .map(|o| assert!(o.created))
        }),
        Box::pin(async {
            store
                .create_timer_with(refused.clone(), opts(2))
                .await
                .map(|o| panic!("the create over quota was stored: {o:?}"))
        }),
        Box::pin(async {
            store
                .create_timer(delta.clone())
                .await
                .map(|o| assert!(o.created))
        }),
        Box::pin(async {
            store
                .fire_timers(vec![FireRequest {
                    timer_id: to_fire.id,
                    fired_at_us: now,
                    refuse_early: false,
                }])
                .await
                .map(|o| assert!(matches!(o[0], FireOutcome::Fired { .. }), "{o:?}"))
        }),
        Box::pin(async {
            store
                .report_attempt(report(&leased[0], AttemptOutcome::Succeeded, now))
                .await
                .map(|o| assert_eq!(o.timer_status, TimerStatus::Settled))
        }),
    ];
    let results = in_one_group(h, writes).await;
    assert_eq!(
        results[1],
        Err(StoreError::QuotaExceeded {
            quota: Quota::PendingTimers,
            limit: 1
        })
    );
    for i in [0, 2, 3, 4] {
        assert_eq!(results[i], Ok(()), "write {i} of the group: {results:?}");
    }

    // Nothing of the refused create, everything of the others.
    assert_eq!(h.store.get_timer("acme", refused.id).await.unwrap(), None);
    let kept = h.store.get_timer("acme", keyed.id).await.unwrap().unwrap();
    assert_eq!(
        kept.idempotency_key.as_deref(),
        Some("k"),
        "the old key stays"
    );
    assert_eq!(h.store.tenant_usage("acme", day).await.unwrap().pending, 1);
    assert!(h.store.get_timer("beta", beta.id).await.unwrap().is_some());
    assert!(
        h.store
            .get_timer("delta", delta.id)
            .await
            .unwrap()
            .is_some()
    );
    let fired = h
        .store
        .get_timer("beta", to_fire.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fired.status, TimerStatus::Fired);
    let settled = h.store.get_timer("gamma", to_report.id).await.unwrap();
    assert_eq!(settled.unwrap().status, TimerStatus::Settled);
    let mut new: Vec<_> = all_events(h).await[seen..]
        .iter()
        .map(|e| (e.tenant_id.clone(), e.event_type))
        .collect();
    new.sort_by_key(|(t, e)| (t.clone(), e.as_str()));
    assert_eq!(
        new,
        vec![
            ("beta".to_string(), EventType::TimerFired),
            ("beta".to_string(), EventType::TimerScheduled),
            ("delta".to_string(), EventType::TimerScheduled),
            ("gamma".to_string(), EventType::DeliveryAttempted),
            ("gamma".to_string(), EventType::TimerSettled),
        ]
    );
}

/// Reports committed in one group see one another, as if made one after the other:
/// the second of two sibling successes settles their timer (once), a second report of
/// one attempt is fenced, a report with a stale attempt is fenced without touching the
/// others, and a retryable failure is requeued beside them.
pub async fn reports_of_one_group_see_each_other(h: &Harness) {
    let pair = create(h, timer(h, "acme", T0 + SEC, 2)).await;
    let retried = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let stale = create(h, timer(h, "beta", T0 + SEC, 1)).await;
    h.clock.advance_us(2 * SEC);
    for id in [pair.id, retried.id, stale.id] {
        assert!(matches!(fire(h, id).await, FireOutcome::Fired { .. }));
    }
    let leased = h.store.claim_deliveries("w1", 60 * SEC, 10).await.unwrap();
    assert_eq!(leased.len(), 4);
    let of = |id| -> Vec<&LeasedDelivery> {
        leased
            .iter()
            .filter(|l| l.delivery.timer_id == id)
            .collect()
    };
    let (siblings, retry, old) = (of(pair.id), of(retried.id)[0], of(stale.id)[0]);
    let now = h.clock.now_us();
    let seen = all_events(h).await.len();
    let store = &h.store;
    let writes: Vec<GroupWrite<'_, StoreResult<ReportOutcome>>> = vec![
        Box::pin(store.report_attempt(report(siblings[0], AttemptOutcome::Succeeded, now))),
        Box::pin(store.report_attempt(report(retry, AttemptOutcome::Retryable, now))),
        Box::pin(store.report_attempt(report(siblings[1], AttemptOutcome::Succeeded, now))),
        Box::pin(store.report_attempt(report(siblings[0], AttemptOutcome::Succeeded, now))),
        Box::pin(store.report_attempt(super::report_on(
            old.delivery.id,
            "w1",
            old.delivery.attempt + 1,
            AttemptOutcome::Succeeded,
            now,
        ))),
    ];
    let results = in_one_group(h, writes).await;

    // The two siblings: one leaves the timer fired, the other settles it; the repeated
    // report of the first is fenced.
    let statuses: Vec<TimerStatus> = [0, 2]
        .iter()
        .map(|&i| {
            results[i]
                .as_ref()
                .expect("a sibling's report")
                .timer_status
        })
        .collect();
    assert!(
        statuses.contains(&TimerStatus::Settled) && statuses.contains(&TimerStatus::Fired),
        "{results:?}"
    );
    assert!(
        matches!(results[3], Err(StoreError::Fenced { delivery_id }) if delivery_id == siblings[0].delivery.id),
        "{results:?}"
    );
    let requeued = results[1].as_ref().expect("the retryable report");
    assert_eq!(requeued.delivery_status, DeliveryStatus::Pending);
    assert!(requeued.next_attempt_at_us.is_some_and(|t| t > now));
    assert!(
        matches!(results[4], Err(StoreError::Fenced { .. })),
        "{results:?}"
    );

    let got = |tenant: &'static str, id| async move {
        h.store.get_timer(tenant, id).await.unwrap().unwrap().status
    };
    assert_eq!(got("acme", pair.id).await, TimerStatus::Settled);
    assert_eq!(got("acme", retried.id).await, TimerStatus::Fired);
    assert_eq!(got("beta", stale.id).await, TimerStatus::Fired);
    for d in h.store.list_deliveries("acme", pair.id).await.unwrap() {
        assert_eq!(d.delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(d.attempts.len(), 1, "one attempt recorded per sibling");
    }
    let r = &h.store.list_deliveries("acme", retried.id).await.unwrap()[0];
    assert_eq!(r.delivery.status, DeliveryStatus::Pending);
    assert_eq!(r.delivery.lease_owner, None);
    assert_eq!(r.attempts.len(), 1);
    let o = &h.store.list_deliveries("beta", stale.id).await.unwrap()[0];
    assert_eq!(
        o.delivery.status,
        DeliveryStatus::InFlight,
        "the stale report changed nothing"
    );
    assert!(o.attempts.is_empty());

    let new: Vec<EventType> = all_events(h).await[seen..]
        .iter()
        .map(|e| e.event_type)
        .collect();
    let count = |t: EventType| new.iter().filter(|e| **e == t).count();
    assert_eq!(count(EventType::TimerSettled), 1, "{new:?}");
    assert_eq!(count(EventType::DeliveryAttempted), 3, "{new:?}");
    assert_eq!(count(EventType::DeliveryRetrying), 1, "{new:?}");
    assert_eq!(new.len(), 5, "{new:?}");
}

/// A call that fails part-way (a batch of creates whose second timer breaks an invariant,
/// after the first was written) is undone alone: none of its timers is stored, and the
/// writes before and after it in its group are committed.
pub async fn a_call_failing_part_way_is_undone_alone(h: &Harness) {
    let good = timer(h, "acme", T0 + 10 * SEC, 1);
    let mut broken = timer(h, "acme", T0 + 10 * SEC, 1);
    broken.status = TimerStatus::Fired;
    let beta = timer(h, "beta", T0 + 10 * SEC, 1);
    let to_cancel = create(h, timer(h, "gamma", T0 + 10 * SEC, 1)).await;
    let seen = all_events(h).await.len();
    let store = &h.store;
    let writes: Vec<GroupWrite<'_, StoreResult<()>>> = vec![
        Box::pin(async { store.create_timer(beta.clone()).await.map(|_| ()) }),
        Box::pin(async {
            store
                .create_timers(vec![good.clone(), broken.clone()])
                .await
                .map(|o| panic!("a broken timer was stored: {o:?}"))
        }),
        Box::pin(async {
            store
                .cancel_timer("gamma", to_cancel.id, None)
                .await
                .map(|t| assert_eq!(t.status, TimerStatus::Cancelled))
        }),
    ];
    let results = in_one_group(h, writes).await;
    assert!(
        matches!(results[1], Err(StoreError::Corrupt(_))),
        "{results:?}"
    );
    assert_eq!(results[0], Ok(()), "{results:?}");
    assert_eq!(results[2], Ok(()), "{results:?}");

    assert_eq!(
        h.store.get_timer("acme", good.id).await.unwrap(),
        None,
        "nothing of the failed call is stored"
    );
    let usage = h.store.tenant_usage("acme", utc_day(T0)).await.unwrap();
    assert_eq!(usage, TenantUsage::default());
    assert!(h.store.get_timer("beta", beta.id).await.unwrap().is_some());
    let cancelled = h.store.get_timer("gamma", to_cancel.id).await.unwrap();
    assert_eq!(cancelled.unwrap().status, TimerStatus::Cancelled);
    let new: Vec<_> = all_events(h).await[seen..]
        .iter()
        .map(|e| (e.tenant_id.clone(), e.event_type))
        .collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new.iter().all(|(t, _)| t != "acme"), "{new:?}");
}

/// Creates of one group meet their tenant's quotas as the same creates one after another
/// would: the group's own creates count, though the backend may write its counters only
/// at the commit.
pub async fn quotas_count_the_creates_of_their_own_group(h: &Harness) {
    let day = utc_day(h.clock.now_us());
    let pending_limit = CreateOptions {
        max_pending: Some(3),
        ..CreateOptions::default()
    };
    let day_limit = CreateOptions {
        max_per_day: Some(2),
        ..CreateOptions::default()
    };
    let store = &h.store;
    let mut writes: Vec<GroupWrite<'_, StoreResult<bool>>> = Vec::new();
    for i in 0..5 {
        let t = timer(h, "acme", T0 + (10 + i) * SEC, 1);
        let opts = pending_limit.clone();
        writes.push(Box::pin(async move {
            store.create_timer_with(t, opts).await.map(|o| o.created)
        }));
        let t = timer(h, "beta", T0 + (10 + i) * SEC, 1);
        let opts = day_limit.clone();
        writes.push(Box::pin(async move {
            store.create_timer_with(t, opts).await.map(|o| o.created)
        }));
    }
    let results = in_one_group(h, writes).await;
    let outcomes = |tenant: usize| -> (usize, Vec<StoreError>) {
        let mine = results.iter().skip(tenant).step_by(2);
        let created = mine.clone().filter(|r| matches!(r, Ok(true))).count();
        let refused = mine.filter_map(|r| r.clone().err()).collect();
        (created, refused)
    };
    let (created, refused) = outcomes(0);
    assert_eq!(created, 3, "acme: three pending at most ({results:?})");
    assert!(refused.iter().all(|e| *e
        == StoreError::QuotaExceeded {
            quota: Quota::PendingTimers,
            limit: 3
        }));
    let (created, refused) = outcomes(1);
    assert_eq!(created, 2, "beta: two a day at most ({results:?})");
    assert!(refused.iter().all(|e| *e
        == StoreError::QuotaExceeded {
            quota: Quota::TimersPerDay,
            limit: 2
        }));
    // The counters the group committed are those of its accepted creates.
    let acme = store.tenant_usage("acme", day).await.unwrap();
    assert_eq!((acme.created_today, acme.pending), (3, 3));
    let beta = store.tenant_usage("beta", day).await.unwrap();
    assert_eq!((beta.created_today, beta.pending), (2, 2));
}
