//! The store conformance suite: behaviour every [`Store`] backend must show, written once.
//!
//! A backend's test file calls [`conformance_tests!`](crate::conformance_tests) with a
//! function that opens a fresh, empty store on a [`ManualClock`]; the macro expands to one
//! test per case below. The cases move time only through the clock, never by sleeping.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use minoots_core::{
    Action, ActionBundle, AttemptOutcome, DeliveryId, DeliveryStatus, EventType, ManualClock,
    RetryPolicy, Timer, TimerId, TimerStatus, WebhookAction,
};

use crate::*;

mod billing;
mod claim_at_fire;
mod dashboard;
mod group;
mod missing;
mod payloads;
mod runs;
mod schedules;
mod sessions;
mod text;
mod update;
pub use billing::*;
pub use claim_at_fire::*;
pub use dashboard::*;
pub use group::*;
pub use missing::*;
pub use payloads::*;
pub use runs::*;
pub use schedules::*;
pub use sessions::*;
pub use text::*;
pub use update::*;

/// A fresh store, the clock it reads, and whatever must live as long as it (a temp dir).
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub guard: Box<dyn Any + Send + Sync>,
    /// How to make concurrent writes share one group commit, for a backend that has one.
    pub hold_writes: Option<Arc<dyn HoldWrites>>,
}

/// A SQLite store in `dir` on a manual clock at [`T0`], with a harness over it that
/// holds nothing else (for tests of what only SQLite has).
pub fn sqlite_at_t0(dir: &std::path::Path) -> (crate::SqliteStore, Harness) {
    let clock = ManualClock::new(T0);
    let store = crate::SqliteStore::open(
        crate::SqliteConfig::new(dir),
        clock.clone() as Arc<dyn minoots_core::Clock>,
    )
    .expect("open a SQLite store");
    let h = Harness {
        store: Arc::new(store.clone()),
        clock,
        guard: Box::new(()),
        hold_writes: None,
    };
    (store, h)
}

/// 2026-11-27T10:00:00Z, the suite's starting time.
pub const T0: i64 = 1_795_773_600_000_000;
const SEC: i64 = 1_000_000;

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an
/// `async fn() -> Option<Harness>`; `None` skips the case (backend not available).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            create_get_and_tenant_isolation,
            idempotency_key_returns_the_original,
            list_filters_and_pages,
            cancel_before_fire_and_conflicts,
            due_timers_load_in_order_and_skip_cancelled,
            fire_creates_deliveries_once,
            timer_without_actions_settles_on_fire,
            traceparent_is_kept_through_fire_and_lease,
            claim_leases_only_due_deliveries,
            a_claim_in_the_fire_transaction_takes_the_oldest_due_up_to_its_limit,
            success_settles_the_timer,
            retry_reschedules_and_exhaustion_kills,
            permanent_failure_kills_at_once,
            retry_after_is_honoured,
            expired_lease_is_rescued_and_stale_report_fenced,
            events_resume_from_any_sequence_number,
            live_events_arrive_in_commit_order,
            old_events_are_pruned,
            concurrent_writes_all_commit,
            redrive_requeues_dead_deliveries,
            release_hands_a_lease_back_without_using_an_attempt,
            release_after_a_delay_is_not_due_before_it,
            renewal_extends_only_the_leases_the_owner_still_holds,
            ending_a_gone_owners_leases_hands_them_back_and_spares_others,
            signing_secrets_rotate_with_a_grace_period,
            idempotency_fingerprint_and_expiry,
            quotas_refuse_without_writing,
            pending_usage_follows_create_cancel_and_fire,
            tenants_create_list_update,
            api_keys_lookup_revoke_and_touch,
            a_refused_create_fails_no_other_write_of_its_group,
            quotas_count_the_creates_of_their_own_group,
            reports_of_one_group_see_each_other,
            a_call_failing_part_way_is_undone_alone,
            every_event_carries_the_core_payload,
            every_not_found_names_what_is_missing,
            reported_text_with_nul_is_stored_without_it,
            a_run_keeps_its_schedule_and_slot,
            schedules_dispatch_each_slot_once,
            racing_dispatches_of_one_schedule_create_one_run,
            schedule_controls_keep_one_record_per_slot,
            update_changes_a_scheduled_timer_at_its_version,
            a_refused_update_changes_nothing,
            a_timer_moved_later_does_not_fire_at_its_old_time,
            ui_sessions_are_bounded_ended_and_pruned,
            timer_counts_by_status_per_tenant,
            delivery_activity_counts_the_window_by_minute,
            list_filters_by_name_prefix_and_fire_time,
            billing_events_apply_once_in_order_with_grace,
            usage_is_metered_per_bucket_and_handed_out_once
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(h) = $make().await else {
                    println!("skipped: no database");
                    return;
                };
                $crate::conformance::$case(&h).await;
                h.store.close().await;
            }
        )*
    };
}

fn webhook(url: &str) -> Action {
    Action::Webhook(WebhookAction {
        url: url.to_string(),
        method: None,
        headers: BTreeMap::new(),
        body: None,
        timeout_ms: None,
    })
}

/// A scheduled timer for `tenant` due at `fire_at_us` with `actions` webhooks.
pub fn timer(h: &Harness, tenant: &str, fire_at_us: i64, actions: usize) -> Timer {
    let mut labels = BTreeMap::new();
    labels.insert(
        "team".to_string(),
        if actions.is_multiple_of(2) {
            "ops"
        } else {
            "dev"
        }
        .to_string(),
    );
    let mut metadata = serde_json::Map::new();
    metadata.insert("n".into(), serde_json::json!(actions));
    Timer {
        id: TimerId::new_v7(),
        tenant_id: tenant.to_string(),
        name: format!("t-{fire_at_us}"),
        requested_by: Some("conformance".into()),
        status: TimerStatus::Scheduled,
        created_at_us: h.clock.now_us(),
        fire_at_us,
        duration_ms: Some((fire_at_us - h.clock.now_us()) / 1000),
        fired_at_us: None,
        settled_at_us: None,
        cancelled_at_us: None,
        cancel_reason: None,
        metadata,
        labels,
        action_bundle: ActionBundle {
            actions: (0..actions)
                .map(|i| webhook(&format!("https://example.com/{i}")))
                .collect(),
            retry_policy: Some(RetryPolicy {
                max_attempts: Some(3),
                initial_backoff_ms: Some(1_000),
                max_backoff_ms: Some(60_000),
                multiplier: None,
            }),
        },
        idempotency_key: None,
        version: 1,
        schedule: None,
        traceparent: None,
    }
}

async fn create(h: &Harness, t: Timer) -> Timer {
    let out = h.store.create_timer(t).await.expect("create");
    assert!(out.created);
    out.timer
}

use minoots_core::Clock as _;

async fn fire(h: &Harness, id: TimerId) -> FireOutcome {
    let now = h.clock.now_us();
    h.store
        .fire_timers(vec![FireRequest {
            timer_id: id,
            fired_at_us: now,
            refuse_early: false,
        }])
        .await
        .expect("fire")
        .remove(0)
}

/// The report of an attempt of `d` at `now` with `outcome` (and a made-up status, error
/// and excerpt to match).
pub fn report(d: &LeasedDelivery, outcome: AttemptOutcome, now: i64) -> AttemptReport {
    let owner = d.delivery.lease_owner.as_deref().expect("leased");
    report_on(d.delivery.id, owner, d.delivery.attempt, outcome, now)
}

/// The report of attempt `attempt` of `delivery_id` under `owner`'s lease.
fn report_on(
    delivery_id: DeliveryId,
    owner: &str,
    attempt: u32,
    outcome: AttemptOutcome,
    now: i64,
) -> AttemptReport {
    AttemptReport {
        delivery_id,
        lease_owner: owner.to_string(),
        attempt,
        started_at_us: now,
        duration_us: 1_234,
        outcome,
        retry_after_ms: None,
        http_status: Some(match outcome {
            AttemptOutcome::Succeeded => 200,
            AttemptOutcome::Retryable => 503,
            AttemptOutcome::Permanent => 404,
        }),
        exit_code: None,
        error: (outcome != AttemptOutcome::Succeeded).then(|| "boom".to_string()),
        response_excerpt: Some("ok".into()),
    }
}

async fn read(h: &Harness, q: EventQuery) -> Vec<minoots_core::Event> {
    h.store.read_events(q).await.expect("events")
}

async fn all_events(h: &Harness) -> Vec<minoots_core::Event> {
    h.store
        .read_events(EventQuery {
            after_seq: 0,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("events")
}

pub async fn create_get_and_tenant_isolation(h: &Harness) {
    let t = timer(h, "acme", T0 + 30 * SEC, 1);
    let stored = create(h, t.clone()).await;
    assert_eq!(stored, t);
    let got = h
        .store
        .get_timer("acme", t.id)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(got, t, "every field survives the round trip");
    assert_eq!(
        h.store.get_timer("other", t.id).await.unwrap(),
        None,
        "another tenant sees nothing"
    );
    assert_eq!(
        h.store.get_timer("acme", TimerId::new_v7()).await.unwrap(),
        None
    );
    assert_eq!(
        h.store.cancel_timer("other", t.id, None).await.unwrap_err(),
        StoreError::NotFound(Missing::Timer(t.id)),
        "another tenant cannot cancel"
    );
    assert_eq!(
        h.store.list_deliveries("other", t.id).await.unwrap_err(),
        StoreError::NotFound(Missing::Timer(t.id))
    );
    let ev = all_events(h).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].event_type, EventType::TimerScheduled);
    assert_eq!(ev[0].timer_id, t.id);
}

pub async fn idempotency_key_returns_the_original(h: &Harness) {
    let mut a = timer(h, "acme", T0 + 10 * SEC, 1);
    a.idempotency_key = Some("k1".into());
    let first = h.store.create_timer(a.clone()).await.unwrap();
    assert!(first.created);
    let mut b = timer(h, "acme", T0 + 20 * SEC, 1);
    b.idempotency_key = Some("k1".into());
    let second = h.store.create_timer(b.clone()).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.timer.id, a.id);
    // The same key in another tenant is a different timer.
    let mut c = timer(h, "other", T0 + 20 * SEC, 1);
    c.idempotency_key = Some("k1".into());
    assert!(h.store.create_timer(c).await.unwrap().created);
    assert_eq!(h.store.get_timer("acme", b.id).await.unwrap(), None);
}

pub async fn list_filters_and_pages(h: &Harness) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let t = create(h, timer(h, "acme", T0 + (10 + i) * SEC, (i % 2) as usize)).await;
        ids.push(t.id);
    }
    create(h, timer(h, "other", T0 + 5 * SEC, 1)).await;
    h.store
        .cancel_timer("acme", ids[6], Some("x".into()))
        .await
        .unwrap();

    // Pages of 3 walk all seven acme timers in fire order, and no other tenant's.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = h
            .store
            .list_timers(TimerQuery {
                tenant_id: "acme".into(),
                status: None,
                label: None,
                limit: 3,
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.timers.len() <= 3);
        seen.extend(page.timers.iter().map(|t| t.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let scheduled = h
        .store
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            status: Some(TimerStatus::Scheduled),
            label: None,
            limit: 50,
            after: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(scheduled.timers.len(), 6);
    assert!(scheduled.next.is_none());
    let ops = h
        .store
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            status: None,
            label: Some(("team".into(), "ops".into())),
            limit: 50,
            after: None,
            ..Default::default()
        })
        .await
        .unwrap();
    // Even action counts (0, 2, 4, 6 -> i = 0, 2, 4, 6) carry team=ops.
    assert_eq!(
        ops.timers.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2], ids[4], ids[6]]
    );
}

pub async fn cancel_before_fire_and_conflicts(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + 10 * SEC, 1)).await;
    let c = h
        .store
        .cancel_timer("acme", t.id, Some("changed my mind".into()))
        .await
        .unwrap();
    assert_eq!(c.status, TimerStatus::Cancelled);
    assert_eq!(c.cancel_reason.as_deref(), Some("changed my mind"));
    assert_eq!(c.version, 2);
    assert_eq!(h.store.get_timer("acme", t.id).await.unwrap().unwrap(), c);
    assert_eq!(
        h.store.cancel_timer("acme", t.id, None).await.unwrap_err(),
        StoreError::Conflict {
            status: TimerStatus::Cancelled
        }
    );
    h.clock.advance_us(11 * SEC);
    assert_eq!(
        fire(h, t.id).await,
        FireOutcome::Skipped {
            timer_id: t.id,
            status: TimerStatus::Cancelled
        }
    );
    assert!(
        h.store
            .load_due_timers(None, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let f = create(h, timer(h, "acme", T0 + 12 * SEC, 1)).await;
    h.clock.advance_us(2 * SEC);
    assert!(matches!(fire(h, f.id).await, FireOutcome::Fired { .. }));
    assert_eq!(
        h.store.cancel_timer("acme", f.id, None).await.unwrap_err(),
        StoreError::Conflict {
            status: TimerStatus::Fired
        }
    );
}

pub async fn due_timers_load_in_order_and_skip_cancelled(h: &Harness) {
    // Same fire time for several timers: the id breaks the tie.
    let mut want = Vec::new();
    for i in [5, 1, 3, 3, 3, 9, 2] {
        let t = create(h, timer(h, "acme", T0 + i * SEC, 1)).await;
        want.push(DueTimer {
            fire_at_us: t.fire_at_us,
            id: t.id,
        });
    }
    let cancelled = create(h, timer(h, "acme", T0 + 4 * SEC, 1)).await;
    h.store
        .cancel_timer("acme", cancelled.id, None)
        .await
        .unwrap();
    want.sort();
    let due: Vec<DueTimer> = want
        .iter()
        .copied()
        .filter(|d| d.fire_at_us <= T0 + 5 * SEC)
        .collect();
    assert_eq!(
        h.store
            .load_due_timers(None, T0 + 5 * SEC, 100)
            .await
            .unwrap(),
        due
    );
    // Keyset paging through the window returns the same sequence.
    let first = h
        .store
        .load_due_timers(None, T0 + 5 * SEC, 2)
        .await
        .unwrap();
    assert_eq!(first, due[..2]);
    let rest = h
        .store
        .load_due_timers(Some(first[1]), T0 + 5 * SEC, 100)
        .await
        .unwrap();
    assert_eq!(rest, due[2..]);
}

pub async fn fire_creates_deliveries_once(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 2)).await;
    h.clock.advance_us(SEC + 500);
    let out = fire(h, t.id).await;
    assert_eq!(
        out,
        FireOutcome::Fired {
            timer_id: t.id,
            tenant_id: "acme".into(),
            deliveries: 2,
            fire_at_us: t.fire_at_us,
            traceparent: None,
        }
    );
    let again = fire(h, t.id).await;
    assert_eq!(
        again,
        FireOutcome::Skipped {
            timer_id: t.id,
            status: TimerStatus::Fired
        }
    );
    let got = h.store.get_timer("acme", t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TimerStatus::Fired);
    assert_eq!(got.fired_at_us, Some(T0 + SEC + 500));
    assert_eq!(got.fired_late_us(), Some(500));
    let ds = h.store.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds.len(), 2);
    assert!(
        ds.iter()
            .all(|d| d.delivery.status == DeliveryStatus::Pending && d.delivery.attempt == 0)
    );
    assert_eq!(
        ds.iter()
            .map(|d| d.delivery.action_index)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    let fired: Vec<_> = all_events(h)
        .await
        .into_iter()
        .filter(|e| e.event_type == EventType::TimerFired)
        .collect();
    assert_eq!(fired.len(), 1, "firing twice appends one event");
    assert_eq!(fired[0].data["firedLateUs"], 500);
    let unknown = TimerId::new_v7();
    assert_eq!(
        fire(h, unknown).await,
        FireOutcome::NotFound { timer_id: unknown }
    );
}

/// The create's trace parent is stored with the timer and comes back with every read the
/// later spans need: the timer, its fire outcome and its leased deliveries.
pub async fn traceparent_is_kept_through_fire_and_lease(h: &Harness) {
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let t = create(
        h,
        Timer {
            traceparent: Some(TP.into()),
            ..timer(h, "acme", T0 + SEC, 1)
        },
    )
    .await;
    assert_eq!(t.traceparent.as_deref(), Some(TP));
    let got = h.store.get_timer("acme", t.id).await.unwrap().unwrap();
    assert_eq!(got.traceparent.as_deref(), Some(TP));
    let silent = create(h, timer(h, "acme", T0 + SEC, 0)).await;
    h.clock.advance_us(SEC);
    match fire(h, t.id).await {
        FireOutcome::Fired { traceparent, .. } => assert_eq!(traceparent.as_deref(), Some(TP)),
        other => panic!("not fired: {other:?}"),
    }
    match fire(h, silent.id).await {
        FireOutcome::Settled { traceparent, .. } => assert_eq!(traceparent, None),
        other => panic!("not settled: {other:?}"),
    }
    let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].timer.traceparent.as_deref(), Some(TP));
}

pub async fn timer_without_actions_settles_on_fire(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 0)).await;
    h.clock.advance_us(SEC);
    assert!(matches!(fire(h, t.id).await, FireOutcome::Settled { .. }));
    let got = h.store.get_timer("acme", t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TimerStatus::Settled);
    assert_eq!(got.settled_at_us, Some(T0 + SEC));
    let types: Vec<_> = all_events(h).await.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        vec![
            EventType::TimerScheduled,
            EventType::TimerFired,
            EventType::TimerSettled
        ]
    );
    assert!(
        h.store
            .claim_deliveries("w1", 30 * SEC, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn claim_leases_only_due_deliveries(h: &Harness) {
    let a = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let b = create(h, timer(h, "acme", T0 + 100 * SEC, 1)).await;
    assert!(
        h.store
            .claim_deliveries("w1", 30 * SEC, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing fired yet"
    );
    h.clock.advance_us(SEC);
    fire(h, a.id).await;
    assert_eq!(
        h.store.next_delivery_due_us().await.unwrap(),
        Some(T0 + SEC)
    );
    let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    assert_eq!(d.timer.id, a.id);
    assert_eq!(d.delivery.status, DeliveryStatus::InFlight);
    assert_eq!(d.delivery.attempt, 1);
    assert_eq!(d.delivery.lease_owner.as_deref(), Some("w1"));
    assert_eq!(d.delivery.lease_expires_at_us, Some(T0 + 31 * SEC));
    assert_eq!(d.action, a.action_bundle.actions[0]);
    assert!(
        h.store
            .claim_deliveries("w2", 30 * SEC, 10)
            .await
            .unwrap()
            .is_empty(),
        "a leased delivery is not handed out twice"
    );
    assert_eq!(h.store.next_delivery_due_us().await.unwrap(), None);
    let _ = b;
    let stats = h.store.stats().await.unwrap();
    assert_eq!(
        (
            stats.scheduled_timers,
            stats.pending_deliveries,
            stats.in_flight_deliveries
        ),
        (1, 0, 1)
    );
}

pub async fn success_settles_the_timer(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 2)).await;
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let now = h.clock.now_us();
    let first = h
        .store
        .report_attempt(report(&claimed[0], AttemptOutcome::Succeeded, now))
        .await
        .unwrap();
    assert_eq!(first.delivery_status, DeliveryStatus::Succeeded);
    assert_eq!(
        first.timer_status,
        TimerStatus::Fired,
        "one action still running"
    );
    let second = h
        .store
        .report_attempt(report(&claimed[1], AttemptOutcome::Succeeded, now))
        .await
        .unwrap();
    assert_eq!(second.timer_status, TimerStatus::Settled);
    // A repeated report of a finished attempt is fenced, not applied twice.
    assert!(matches!(
        h.store
            .report_attempt(report(&claimed[1], AttemptOutcome::Succeeded, now))
            .await,
        Err(StoreError::Fenced { .. })
    ));
    let ds = h.store.list_deliveries("acme", t.id).await.unwrap();
    assert!(
        ds.iter()
            .all(|d| d.delivery.status == DeliveryStatus::Succeeded && d.attempts.len() == 1)
    );
    assert_eq!(ds[0].attempts[0].http_status, Some(200));
    assert_eq!(ds[0].attempts[0].duration_us, 1_234);
    let settled = all_events(h)
        .await
        .into_iter()
        .filter(|e| e.event_type == EventType::TimerSettled)
        .count();
    assert_eq!(settled, 1);
}

pub async fn retry_reschedules_and_exhaustion_kills(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await; // maxAttempts 3, initial 1 s
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    for attempt in 1..=3u32 {
        let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt} is due");
        assert_eq!(claimed[0].delivery.attempt, attempt);
        let now = h.clock.now_us();
        let out = h
            .store
            .report_attempt(report(&claimed[0], AttemptOutcome::Retryable, now))
            .await
            .unwrap();
        if attempt < 3 {
            assert_eq!(out.delivery_status, DeliveryStatus::Pending);
            let next = out.next_attempt_at_us.expect("a retry time");
            let ceiling = 1_000_000 * 2i64.pow(attempt - 1);
            assert!(
                next >= now && next <= now + ceiling,
                "next {next} within [now, now+{ceiling}]"
            );
            assert_eq!(h.store.next_delivery_due_us().await.unwrap(), Some(next));
            if next > now {
                assert!(
                    h.store
                        .claim_deliveries("w1", 30 * SEC, 10)
                        .await
                        .unwrap()
                        .is_empty(),
                    "not before its time"
                );
            }
            h.clock.set_us(next);
        } else {
            assert_eq!(out.delivery_status, DeliveryStatus::Dead);
            assert_eq!(out.timer_status, TimerStatus::Failed);
        }
    }
    let got = h.store.get_timer("acme", t.id).await.unwrap().unwrap();
    assert_eq!(got.status, TimerStatus::Failed);
    let ds = h.store.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts.len(), 3);
    assert_eq!(ds[0].delivery.status, DeliveryStatus::Dead);
    let types: Vec<_> = all_events(h).await.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == EventType::DeliveryRetrying)
            .count(),
        2
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == EventType::DeliveryDead)
            .count(),
        1
    );
    assert_eq!(types.last(), Some(&EventType::TimerFailed));
}

pub async fn permanent_failure_kills_at_once(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    let out = h
        .store
        .report_attempt(report(
            &claimed[0],
            AttemptOutcome::Permanent,
            h.clock.now_us(),
        ))
        .await
        .unwrap();
    assert_eq!(out.delivery_status, DeliveryStatus::Dead);
    assert_eq!(out.timer_status, TimerStatus::Failed);
    assert_eq!(h.store.next_delivery_due_us().await.unwrap(), None);
}

pub async fn retry_after_is_honoured(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    let claimed = h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    let now = h.clock.now_us();
    let mut r = report(&claimed[0], AttemptOutcome::Retryable, now);
    r.http_status = Some(429);
    r.retry_after_ms = Some(45_000);
    let out = h.store.report_attempt(r).await.unwrap();
    assert_eq!(
        out.next_attempt_at_us,
        Some(now + 45 * SEC),
        "Retry-After above the jittered backoff wins"
    );
    let claimed = {
        h.clock.set_us(now + 45 * SEC);
        h.store.claim_deliveries("w1", 30 * SEC, 10).await.unwrap()
    };
    let mut r = report(&claimed[0], AttemptOutcome::Retryable, now);
    r.retry_after_ms = Some(10_000_000);
    let now = h.clock.now_us();
    let out = h.store.report_attempt(r).await.unwrap();
    assert_eq!(
        out.next_attempt_at_us,
        Some(now + 60 * SEC),
        "capped at maxBackoffMs"
    );
}

pub async fn expired_lease_is_rescued_and_stale_report_fenced(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    let first = h
        .store
        .claim_deliveries("w1", 10 * SEC, 10)
        .await
        .unwrap()
        .remove(0);
    h.clock.advance_us(5 * SEC);
    assert_eq!(
        h.store.rescue_expired_leases(100).await.unwrap(),
        0,
        "lease still valid"
    );
    h.clock.advance_us(6 * SEC);
    assert_eq!(h.store.rescue_expired_leases(100).await.unwrap(), 1);
    let d = h
        .store
        .get_delivery(first.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.lease_owner, None);
    let second = h
        .store
        .claim_deliveries("w2", 10 * SEC, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        second.delivery.id, first.delivery.id,
        "same delivery id across redeliveries"
    );
    assert_eq!(second.delivery.attempt, 2);
    // The first executor comes back late: its report is refused.
    let stale = h
        .store
        .report_attempt(report(&first, AttemptOutcome::Succeeded, h.clock.now_us()))
        .await;
    assert_eq!(
        stale.unwrap_err(),
        StoreError::Fenced {
            delivery_id: first.delivery.id
        }
    );
    // Right owner, wrong attempt: refused too.
    let mut wrong = report(&second, AttemptOutcome::Succeeded, h.clock.now_us());
    wrong.attempt = 1;
    assert!(matches!(
        h.store.report_attempt(wrong).await,
        Err(StoreError::Fenced { .. })
    ));
    let ok = h
        .store
        .report_attempt(report(&second, AttemptOutcome::Succeeded, h.clock.now_us()))
        .await
        .unwrap();
    assert_eq!(ok.timer_status, TimerStatus::Settled);
    // The third and last allowed attempt expiring makes the delivery dead.
    let t2 = create(h, timer(h, "acme", h.clock.now_us(), 1)).await;
    fire(h, t2.id).await;
    for _ in 0..3 {
        assert_eq!(
            h.store.claim_deliveries("w1", SEC, 10).await.unwrap().len(),
            1
        );
        h.clock.advance_us(2 * SEC);
        assert_eq!(h.store.rescue_expired_leases(100).await.unwrap(), 1);
    }
    assert_eq!(
        h.store
            .get_timer("acme", t2.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TimerStatus::Failed
    );
}

pub async fn events_resume_from_any_sequence_number(h: &Harness) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            create(
                h,
                timer(
                    h,
                    if i % 2 == 0 { "acme" } else { "other" },
                    T0 + (i + 1) * SEC,
                    1,
                ),
            )
            .await
            .id,
        );
    }
    h.store.cancel_timer("acme", ids[0], None).await.unwrap();
    let all = all_events(h).await;
    assert_eq!(all.len(), 6);
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "strictly increasing"
    );
    assert_eq!(
        h.store.latest_event_seq().await.unwrap(),
        all.last().unwrap().seq
    );
    for (i, e) in all.iter().enumerate() {
        let rest = read(
            h,
            EventQuery {
                after_seq: e.seq,
                limit: 100,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(rest, all[i + 1..], "resuming after seq {}", e.seq);
    }
    let acme = read(
        h,
        EventQuery {
            after_seq: 0,
            limit: 100,
            tenant_id: Some("acme".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(acme.len(), 4);
    assert!(acme.iter().all(|e| e.tenant_id == "acme"));
    let cancels = read(
        h,
        EventQuery {
            after_seq: 0,
            limit: 100,
            types: vec![EventType::TimerCancelled],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(cancels.len(), 1);
    let one_timer = read(
        h,
        EventQuery {
            after_seq: 0,
            limit: 100,
            timer_id: Some(ids[0]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(one_timer.len(), 2);
    let limited = read(
        h,
        EventQuery {
            after_seq: 0,
            limit: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(limited, all[..2]);
}

pub async fn live_events_arrive_in_commit_order(h: &Harness) {
    let mut rx = h.store.subscribe_events();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = h.store.clone();
        let t = timer(h, "acme", T0 + (i + 1) * SEC, 1);
        tasks.push(tokio::spawn(
            async move { store.create_timer(t).await.unwrap() },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut live = Vec::new();
    for _ in 0..50 {
        live.push(Event::clone(&rx.recv().await.expect("live event")));
    }
    assert!(live.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(live, all_events(h).await);
}

pub async fn old_events_are_pruned(h: &Harness) {
    for i in 0..4 {
        create(h, timer(h, "acme", T0 + 100 * SEC, 1)).await;
        let _ = i;
    }
    h.clock.advance_us(3_600 * SEC);
    let young = create(h, timer(h, "acme", T0 + 7_200 * SEC, 1)).await;
    let latest = h.store.latest_event_seq().await.unwrap();
    assert_eq!(
        h.store.prune_events(T0 + 1_800 * SEC, 2).await.unwrap(),
        2,
        "bounded by the limit"
    );
    assert_eq!(
        h.store.prune_events(T0 + 1_800 * SEC, 100).await.unwrap(),
        2
    );
    assert_eq!(
        h.store.prune_events(T0 + 1_800 * SEC, 100).await.unwrap(),
        0
    );
    let left = all_events(h).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].timer_id, young.id);
    assert_eq!(
        h.store.latest_event_seq().await.unwrap(),
        latest,
        "pruning never lowers the sequence"
    );
    let after = create(h, timer(h, "acme", T0 + 7_200 * SEC, 1)).await;
    let ev = all_events(h).await;
    assert_eq!(ev.last().unwrap().timer_id, after.id);
    assert!(
        ev.last().unwrap().seq > latest,
        "sequence numbers are never reused"
    );
}

pub async fn concurrent_writes_all_commit(h: &Harness) {
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = h.store.clone();
        let t = timer(h, "acme", T0 + (i % 17 + 1) * SEC, 1);
        tasks.push(tokio::spawn(async move {
            store.create_timer(t).await.unwrap().timer.id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let due = h
        .store
        .load_due_timers(None, i64::MAX, 1_000)
        .await
        .unwrap();
    assert_eq!(due.len(), 400);
    let mut a: Vec<_> = due.iter().map(|d| d.id).collect();
    a.sort();
    ids.sort();
    assert_eq!(a, ids);
    let ev = all_events(h).await;
    assert_eq!(ev.len(), 400);
    let many: Vec<Timer> = (0..100)
        .map(|i| timer(h, "bulk", T0 + i * SEC, 0))
        .collect();
    let out = h.store.create_timers(many).await.unwrap();
    assert!(out.iter().all(|o| o.created));
    assert_eq!(h.store.stats().await.unwrap().scheduled_timers, 500);
}

pub async fn redrive_requeues_dead_deliveries(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await; // maxAttempts 3
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    let d = h
        .store
        .claim_deliveries("w1", 30 * SEC, 10)
        .await
        .unwrap()
        .remove(0);
    h.store
        .report_attempt(report(&d, AttemptOutcome::Permanent, h.clock.now_us()))
        .await
        .unwrap();
    assert_eq!(
        h.store
            .get_timer("acme", t.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TimerStatus::Failed
    );
    assert_eq!(
        h.store.redrive_timer("other", t.id).await.unwrap_err(),
        StoreError::NotFound(Missing::Timer(t.id))
    );
    let redriven = h.store.redrive_timer("acme", t.id).await.unwrap();
    assert_eq!(redriven.status, TimerStatus::Fired);
    // Nothing dead any more: a second redrive has nothing to do.
    assert!(matches!(
        h.store.redrive_timer("acme", t.id).await,
        Err(StoreError::Conflict { .. })
    ));
    let again = h
        .store
        .claim_deliveries("w1", 30 * SEC, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        again.delivery.id, d.delivery.id,
        "the same delivery runs again"
    );
    assert_eq!(again.delivery.attempt, 2, "attempt numbers keep growing");
    assert_eq!(
        again.delivery.max_attempts,
        1 + 3,
        "a fresh budget of maxAttempts"
    );
    let out = h
        .store
        .report_attempt(report(&again, AttemptOutcome::Succeeded, h.clock.now_us()))
        .await
        .unwrap();
    assert_eq!(out.timer_status, TimerStatus::Settled);
    // A timer with no dead deliveries cannot be redriven.
    let fresh = create(h, timer(h, "acme", T0 + 100 * SEC, 1)).await;
    assert_eq!(
        h.store.redrive_timer("acme", fresh.id).await.unwrap_err(),
        StoreError::Conflict {
            status: TimerStatus::Scheduled
        }
    );
}

pub async fn release_hands_a_lease_back_without_using_an_attempt(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await; // maxAttempts 3
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    let d = h
        .store
        .claim_deliveries("w1", 30 * SEC, 10)
        .await
        .unwrap()
        .remove(0);
    assert!(matches!(
        h.store
            .release_delivery(d.delivery.id, "w2", d.delivery.attempt)
            .await,
        Err(StoreError::Fenced { .. })
    ));
    h.store
        .release_delivery(d.delivery.id, "w1", d.delivery.attempt)
        .await
        .unwrap();
    let back = h.store.get_delivery(d.delivery.id).await.unwrap().unwrap();
    assert_eq!(back.status, DeliveryStatus::Pending);
    assert_eq!(back.attempt, 0, "a hand-back is not an attempt");
    assert_eq!(back.max_attempts, 3, "nor does it change the budget");
    let again = h
        .store
        .claim_deliveries("w2", 30 * SEC, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        again.delivery.attempt, 1,
        "the first attempt that starts is attempt 1"
    );
    // The released lease can no longer report.
    assert!(matches!(
        h.store
            .report_attempt(report(&d, AttemptOutcome::Succeeded, h.clock.now_us()))
            .await,
        Err(StoreError::Fenced { .. })
    ));
}

pub async fn renewal_extends_only_the_leases_the_owner_still_holds(h: &Harness) {
    let a = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let b = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    h.clock.advance_us(SEC);
    fire(h, a.id).await;
    fire(h, b.id).await;
    let claimed = h.store.claim_deliveries("w1", 10 * SEC, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (da, db) = (&claimed[0].delivery, &claimed[1].delivery);
    h.clock.advance_us(8 * SEC);
    // The second is named with a stale attempt number: not held, so lost.
    let renewal = h
        .store
        .renew_leases(
            "w1",
            vec![(da.id, da.attempt), (db.id, db.attempt + 1)],
            10 * SEC,
        )
        .await
        .unwrap();
    assert_eq!(renewal.now_us, h.clock.now_us());
    assert_eq!(renewal.expires_at_us, h.clock.now_us() + 10 * SEC);
    assert_eq!(renewal.lost, vec![db.id]);
    let renewed = h.store.get_delivery(da.id).await.unwrap().unwrap();
    assert_eq!(renewed.lease_expires_at_us, Some(renewal.expires_at_us));
    // Past the first lease's end only the unrenewed one is rescued.
    h.clock.advance_us(5 * SEC);
    assert_eq!(h.store.rescue_expired_leases(10).await.unwrap(), 1);
    let still = h.store.get_delivery(da.id).await.unwrap().unwrap();
    assert_eq!(still.status, DeliveryStatus::InFlight);
    let rescued = h.store.get_delivery(db.id).await.unwrap().unwrap();
    assert_eq!(rescued.status, DeliveryStatus::Pending);
    // Another owner cannot renew a lease it does not hold, and nothing changes.
    let other = h
        .store
        .renew_leases("w2", vec![(da.id, da.attempt)], 60 * SEC)
        .await
        .unwrap();
    assert_eq!(other.lost, vec![da.id]);
    let unchanged = h.store.get_delivery(da.id).await.unwrap().unwrap();
    assert_eq!(unchanged.lease_expires_at_us, Some(renewal.expires_at_us));
}

pub async fn ending_a_gone_owners_leases_hands_them_back_and_spares_others(h: &Harness) {
    let a = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let b = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    h.clock.advance_us(SEC);
    fire(h, a.id).await;
    fire(h, b.id).await;
    let old = h
        .store
        .claim_deliveries("serve/h/41/0a0b0c0d", 60 * SEC, 1)
        .await
        .unwrap()
        .remove(0);
    let alive = h
        .store
        .claim_deliveries("orch/h/42/01020304", 60 * SEC, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(h.store.end_leases_of("serve").await.unwrap(), 1);
    h.clock.advance_us(1);
    assert_eq!(h.store.rescue_expired_leases(10).await.unwrap(), 1);
    let back = h
        .store
        .get_delivery(old.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.status, DeliveryStatus::Pending);
    assert_eq!(back.next_attempt_at_us, h.clock.now_us(), "due at once");
    assert_eq!(
        back.attempt, 1,
        "the lost attempt may have started: it counts"
    );
    let kept = h
        .store
        .get_delivery(alive.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.status, DeliveryStatus::InFlight);
    assert_eq!(kept.lease_owner.as_deref(), Some("orch/h/42/01020304"));
    // The old holder's late report stays fenced.
    assert!(matches!(
        h.store
            .report_attempt(report(&old, AttemptOutcome::Succeeded, h.clock.now_us()))
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(h.store.end_leases_of("serve").await.unwrap(), 0);
}

pub async fn release_after_a_delay_is_not_due_before_it(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    h.clock.advance_us(SEC);
    fire(h, t.id).await;
    let d = h
        .store
        .claim_deliveries("w1", 30 * SEC, 10)
        .await
        .unwrap()
        .remove(0);
    h.store
        .release_delivery_after(d.delivery.id, "w1", d.delivery.attempt, 2 * SEC)
        .await
        .unwrap();
    let back = h.store.get_delivery(d.delivery.id).await.unwrap().unwrap();
    assert_eq!(back.status, DeliveryStatus::Pending);
    assert_eq!(back.next_attempt_at_us, h.clock.now_us() + 2 * SEC);
    h.clock.advance_us(2 * SEC - 1);
    let early = h.store.claim_deliveries("w2", 30 * SEC, 10).await.unwrap();
    assert!(early.is_empty(), "claimed before its delay");
    h.clock.advance_us(1);
    let again = h.store.claim_deliveries("w2", 30 * SEC, 10).await.unwrap();
    assert_eq!(again.len(), 1, "due once the delay has passed");
}

pub async fn signing_secrets_rotate_with_a_grace_period(h: &Harness) {
    let day = 86_400 * SEC;
    let first = h
        .store
        .signing_secrets("acme", "whsec_first".into(), day)
        .await
        .unwrap();
    assert_eq!(first, vec!["whsec_first".to_string()]);
    // The candidate is only used when the tenant has no secret.
    let same = h
        .store
        .signing_secrets("acme", "whsec_ignored".into(), day)
        .await
        .unwrap();
    assert_eq!(same, first);
    assert_eq!(
        h.store
            .signing_secrets("other", "whsec_other".into(), day)
            .await
            .unwrap(),
        vec!["whsec_other".to_string()],
        "tenants have their own secrets"
    );
    h.clock.advance_us(SEC);
    h.store
        .rotate_signing_secret("acme", "whsec_second".into())
        .await
        .unwrap();
    let both = h
        .store
        .signing_secrets("acme", "whsec_ignored".into(), day)
        .await
        .unwrap();
    assert_eq!(
        both,
        vec!["whsec_second".to_string(), "whsec_first".to_string()],
        "newest first"
    );
    h.clock.advance_us(day + SEC);
    let after = h
        .store
        .signing_secrets("acme", "whsec_ignored".into(), day)
        .await
        .unwrap();
    assert_eq!(
        after,
        vec!["whsec_second".to_string()],
        "the old secret stops after the grace period"
    );
}

pub async fn idempotency_fingerprint_and_expiry(h: &Harness) {
    let opts = |fp: u8| CreateOptions {
        idempotency_fingerprint: Some([fp; 32]),
        ..CreateOptions::default()
    };
    let mut a = timer(h, "acme", T0 + 10 * SEC, 1);
    a.idempotency_key = Some("k".into());
    assert!(
        h.store
            .create_timer_with(a.clone(), opts(1))
            .await
            .unwrap()
            .created
    );

    let mut same = timer(h, "acme", T0 + 10 * SEC, 1);
    same.idempotency_key = Some("k".into());
    let again = h
        .store
        .create_timer_with(same.clone(), opts(1))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.timer.id, a.id);

    let err = h
        .store
        .create_timer_with(same.clone(), opts(2))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::IdempotencyMismatch { timer_id: a.id });
    let usage = h
        .store
        .tenant_usage("acme", utc_day(h.clock.now_us()))
        .await
        .unwrap();
    assert_eq!(
        usage.created_today, 1,
        "neither the replay nor the mismatch counts"
    );

    // After the key's lifetime it names a new timer, whatever the body.
    h.clock.advance_us(IDEMPOTENCY_KEY_TTL_US + SEC);
    let mut later = timer(h, "acme", h.clock.now_us() + 10 * SEC, 1);
    later.idempotency_key = Some("k".into());
    let fresh = h
        .store
        .create_timer_with(later.clone(), opts(2))
        .await
        .unwrap();
    assert!(fresh.created);
    assert_eq!(fresh.timer.id, later.id);
    let old = h.store.get_timer("acme", a.id).await.unwrap().unwrap();
    assert_eq!(
        old.idempotency_key, None,
        "the expired key moved to the new timer"
    );
}

pub async fn quotas_refuse_without_writing(h: &Harness) {
    let day = utc_day(h.clock.now_us());
    let limited = CreateOptions {
        max_per_day: Some(3),
        max_pending: Some(2),
        ..CreateOptions::default()
    };
    let a = timer(h, "acme", T0 + 10 * SEC, 0);
    let b = timer(h, "acme", T0 + 11 * SEC, 0);
    h.store
        .create_timer_with(a.clone(), limited.clone())
        .await
        .unwrap();
    h.store.create_timer_with(b, limited.clone()).await.unwrap();
    let c = timer(h, "acme", T0 + 12 * SEC, 0);
    let err = h
        .store
        .create_timer_with(c.clone(), limited.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::QuotaExceeded {
            quota: Quota::PendingTimers,
            limit: 2
        }
    );
    assert_eq!(h.store.get_timer("acme", c.id).await.unwrap(), None);
    // Another tenant is unaffected.
    h.store
        .create_timer_with(timer(h, "other", T0 + 12 * SEC, 0), limited.clone())
        .await
        .unwrap();

    // Cancelling frees a pending slot; the day's count does not go down.
    h.store.cancel_timer("acme", a.id, None).await.unwrap();
    h.store.create_timer_with(c, limited.clone()).await.unwrap();
    assert_eq!(
        h.store.tenant_usage("acme", day).await.unwrap(),
        TenantUsage {
            created_today: 3,
            pending: 2
        }
    );
    h.store
        .cancel_timer(
            "acme",
            h.store
                .list_timers(TimerQuery {
                    tenant_id: "acme".into(),
                    status: Some(TimerStatus::Scheduled),
                    label: None,
                    limit: 1,
                    after: None,
                    ..Default::default()
                })
                .await
                .unwrap()
                .timers[0]
                .id,
            None,
        )
        .await
        .unwrap();
    let err = h
        .store
        .create_timer_with(timer(h, "acme", T0 + 13 * SEC, 0), limited.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::QuotaExceeded {
            quota: Quota::TimersPerDay,
            limit: 3
        }
    );
    // A new UTC day starts a new count.
    h.clock.advance_us(86_400 * SEC);
    let next = timer(h, "acme", h.clock.now_us() + 10 * SEC, 0);
    h.store.create_timer_with(next, limited).await.unwrap();
    let usage = h.store.tenant_usage("acme", day + 1).await.unwrap();
    assert_eq!(usage.created_today, 1);
}

pub async fn pending_usage_follows_create_cancel_and_fire(h: &Harness) {
    let day = utc_day(h.clock.now_us());
    let with_action = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let without = create(h, timer(h, "acme", T0 + SEC, 0)).await;
    let cancelled = create(h, timer(h, "acme", T0 + 5 * SEC, 1)).await;
    create(h, timer(h, "acme", T0 + 9 * SEC, 1)).await;
    assert_eq!(h.store.tenant_usage("acme", day).await.unwrap().pending, 4);
    h.clock.advance_us(2 * SEC);
    fire(h, with_action.id).await;
    fire(h, without.id).await;
    // Firing twice is harmless and must not count twice.
    fire(h, with_action.id).await;
    h.store
        .cancel_timer("acme", cancelled.id, None)
        .await
        .unwrap();
    assert!(
        h.store
            .cancel_timer("acme", cancelled.id, None)
            .await
            .is_err()
    );
    let usage = h.store.tenant_usage("acme", day).await.unwrap();
    assert_eq!(
        usage,
        TenantUsage {
            created_today: 4,
            pending: 1
        }
    );
    assert_eq!(
        h.store.tenant_usage("nobody", day).await.unwrap(),
        TenantUsage::default()
    );
}

pub async fn tenants_create_list_update(h: &Harness) {
    let now = h.clock.now_us();
    let t = |id: &str| Tenant {
        id: id.into(),
        name: format!("{id} inc"),
        tier: "free".into(),
        created_at_us: now,
        updated_at_us: now,
    };
    for id in ["b", "a", "c"] {
        h.store.create_tenant(t(id)).await.unwrap();
    }
    assert!(matches!(
        h.store.create_tenant(t("a")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let all = h.store.list_tenants(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let page = h.store.list_tenants(Some("a".into()), 1).await.unwrap();
    assert_eq!(page, vec![t("b")]);
    h.clock.advance_us(SEC);
    let updated = h
        .store
        .update_tenant(
            "b",
            TenantUpdate {
                tier: Some("pro".into()),
                name: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.tier, "pro");
    assert_eq!(updated.name, "b inc");
    assert_eq!(updated.updated_at_us, now + SEC);
    assert_eq!(h.store.get_tenant("b").await.unwrap(), Some(updated));
    assert_eq!(h.store.get_tenant("zz").await.unwrap(), None);
    assert_eq!(
        h.store.update_tenant("zz", TenantUpdate::default()).await,
        Err(StoreError::NotFound(Missing::Tenant("zz".into())))
    );
}

pub async fn api_keys_lookup_revoke_and_touch(h: &Harness) {
    let now = h.clock.now_us();
    let key = |id: &str, tenant: &str, hash: u8| ApiKey {
        id: id.into(),
        tenant_id: tenant.into(),
        name: format!("key {id}"),
        key_hash: [hash; 32],
        prefix: "mnt_abcd".into(),
        roles: vec!["timers:read".into(), "timers:write".into()],
        created_at_us: now,
        expires_at_us: Some(now + 100 * SEC),
        revoked_at_us: None,
        last_used_at_us: None,
    };
    h.store.create_api_key(key("k1", "acme", 1)).await.unwrap();
    h.store.create_api_key(key("k2", "acme", 2)).await.unwrap();
    h.store.create_api_key(key("k3", "other", 3)).await.unwrap();
    assert!(
        matches!(
            h.store.create_api_key(key("k4", "acme", 1)).await,
            Err(StoreError::AlreadyExists(_))
        ),
        "a hash is unique"
    );
    // The failed insert did not disturb later writes.
    h.store.create_api_key(key("k5", "acme", 5)).await.unwrap();

    assert_eq!(
        h.store.api_key_by_hash([2; 32]).await.unwrap(),
        Some(key("k2", "acme", 2))
    );
    assert_eq!(h.store.api_key_by_hash([9; 32]).await.unwrap(), None);
    let acme = h
        .store
        .list_api_keys(Some("acme".into()), None, 10)
        .await
        .unwrap();
    assert_eq!(
        acme.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["k1", "k2", "k5"]
    );
    let all = h
        .store
        .list_api_keys(None, Some("k2".into()), 10)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["k3", "k5"]
    );

    h.clock.advance_us(SEC);
    let revoked = h.store.revoke_api_key("k1").await.unwrap();
    assert_eq!(revoked.revoked_at_us, Some(now + SEC));
    h.clock.advance_us(SEC);
    let again = h.store.revoke_api_key("k1").await.unwrap();
    assert_eq!(
        again.revoked_at_us,
        Some(now + SEC),
        "the first revocation time stays"
    );
    assert_eq!(
        h.store.revoke_api_key("nope").await,
        Err(StoreError::NotFound(Missing::ApiKey("nope".into())))
    );

    h.store
        .touch_api_keys(vec![
            ("k2".into(), now + 5 * SEC),
            ("k3".into(), now + 6 * SEC),
        ])
        .await
        .unwrap();
    h.store
        .touch_api_keys(vec![("k2".into(), now + 4 * SEC)])
        .await
        .unwrap();
    let k2 = h.store.api_key_by_hash([2; 32]).await.unwrap().unwrap();
    assert_eq!(
        k2.last_used_at_us,
        Some(now + 5 * SEC),
        "an older time is ignored"
    );
}
