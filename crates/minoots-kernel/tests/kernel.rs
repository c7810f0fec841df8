//! The in-process kernel end to end on a real SQLite store: firing order, never early,
//! cancel, retries, lease expiry with fencing, event resume, the window and recovery.

mod common;
use common::{WAIT, fired_events, lease, next_item, succeeded};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use minoots_core::{
    AttemptOutcome, Clock, EventType, ManualClock, SystemClock, TimerRequest, TimerStatus,
};
use minoots_kernel::{Kernel, KernelApi, KernelConfig, KernelError};
use minoots_store::{AttemptReport, EventQuery, SqliteConfig, SqliteStore, Store};
use tokio_stream::StreamExt;

const T0: i64 = 1_795_773_600_000_000;
const SEC: i64 = 1_000_000;

fn test_config() -> KernelConfig {
    KernelConfig {
        window: Duration::from_secs(2),
        refill_interval: Duration::from_millis(100),
        rescue_interval: Duration::from_millis(50),
        ..KernelConfig::default()
    }
}

async fn start(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Arc<Kernel> {
    start_with(dir, clock, test_config()).await
}

async fn start_with(
    dir: &std::path::Path,
    clock: Arc<dyn Clock>,
    config: KernelConfig,
) -> Arc<Kernel> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir), clock.clone()).unwrap());
    let k = Kernel::start(store, clock, config).unwrap();
    assert!(k.wait_ready(WAIT).await);
    k
}

fn req(json: &str) -> TimerRequest {
    TimerRequest::from_json(json.as_bytes()).unwrap()
}

fn webhook_req(duration: &str, max_attempts: u32) -> TimerRequest {
    req(&format!(
        r#"{{"duration": "{duration}", "actionBundle": {{"actions": [{{"type": "webhook", "url": "https://example.com/h"}}],
            "retryPolicy": {{"maxAttempts": {max_attempts}, "initialBackoffMs": 1000, "maxBackoffMs": 10000}}}}}}"#
    ))
}

/// Reads events of `types` from the stream until `n` arrived (or fails after WAIT).
async fn next_events(
    stream: &mut minoots_kernel::BoxStream<minoots_core::Event>,
    n: usize,
) -> Vec<minoots_core::Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .unwrap();
        out.push(e);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_in_due_order_and_never_early_on_the_real_clock() {
    let dir = tempfile::tempdir().unwrap();
    let k = start(dir.path(), Arc::new(SystemClock)).await;
    let mut fired = fired_events(k.as_ref()).await;
    // Spread over 40–1,000 ms, in an order unrelated to their due order, and created in
    // one call: created one by one on a slow disk, a timer could be committed after its
    // due time, later than one due after it had already fired.
    let requests: Vec<_> = (0..200u32)
        .map(|i| req(&format!(r#"{{"duration": {}}}"#, 40 + (i * 7919) % 960)))
        .collect();
    k.schedule_many("acme", requests).await.unwrap();
    let events = next_events(&mut fired, 200).await;
    let mut last_due = i64::MIN;
    for e in &events {
        let t = k.get_timer("acme", e.timer_id).await.unwrap();
        assert_eq!(
            t.status,
            TimerStatus::Settled,
            "no actions: settled on fire"
        );
        let fired_at = t.fired_at_us.unwrap();
        assert!(
            fired_at >= t.fire_at_us,
            "fired {} us early",
            t.fire_at_us - fired_at
        );
        assert!(t.fire_at_us >= last_due, "fired out of due order");
        last_due = t.fire_at_us;
    }
    assert!(k.metrics().firing_lateness.count() >= 200);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fires_exactly_when_the_clock_reaches_it_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    let t = k
        .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap()
        .timer;
    clock.advance_us(SEC - 1);
    // Nothing may fire one microsecond early. There is no event to wait for, so give the
    // firing thread a bounded chance to misbehave.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fired.next())
            .await
            .is_err(),
        "fired early"
    );
    clock.advance_us(1);
    let e = next_events(&mut fired, 1).await;
    assert_eq!(e[0].timer_id, t.id);
    let got = k.get_timer("acme", t.id).await.unwrap();
    assert_eq!(got.fired_at_us, Some(T0 + SEC));
    assert_eq!(got.fired_late_us(), Some(0));
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_timer_never_fires_and_a_fired_one_cannot_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    let a = k
        .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap()
        .timer;
    let b = k
        .schedule_timer("acme", req(r#"{"duration": "2s"}"#))
        .await
        .unwrap()
        .timer;
    let c = k
        .cancel_timer("acme", a.id, Some("not needed".into()))
        .await
        .unwrap();
    assert_eq!(c.status, TimerStatus::Cancelled);
    assert!(matches!(
        k.cancel_timer("other", b.id, None).await,
        Err(KernelError::NotFound(_))
    ));
    clock.advance_us(3 * SEC);
    let e = next_events(&mut fired, 1).await;
    assert_eq!(e[0].timer_id, b.id, "only the uncancelled timer fires");
    assert_eq!(
        k.get_timer("acme", a.id).await.unwrap().status,
        TimerStatus::Cancelled
    );
    let err = k.cancel_timer("acme", b.id, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::Conflict {
                status: Some(TimerStatus::Settled),
                ..
            }
        ),
        "{err:?}"
    );
    let err = k.cancel_timer("acme", a.id, None).await.unwrap_err();
    assert!(matches!(
        err,
        KernelError::Conflict {
            status: Some(TimerStatus::Cancelled),
            ..
        }
    ));
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_another_due_time_and_success_settles() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let t = k
        .schedule_timer("acme", webhook_req("1s", 5))
        .await
        .unwrap()
        .timer;
    let mut leases = k.lease_deliveries(lease("w1", 30_000, 8)).await.unwrap();
    clock.advance_us(SEC);
    let d = next_item(&mut leases).await;
    assert_eq!(d.timer.id, t.id);
    assert_eq!(d.delivery.attempt, 1);
    let report = |d: &minoots_store::LeasedDelivery, outcome| AttemptReport {
        delivery_id: d.delivery.id,
        lease_owner: "w1".into(),
        attempt: d.delivery.attempt,
        started_at_us: clock.now_us(),
        duration_us: 10,
        outcome,
        retry_after_ms: Some(5_000),
        http_status: Some(503),
        exit_code: None,
        error: Some("unavailable".into()),
        response_excerpt: None,
    };
    let out = k
        .report_attempt(report(&d, AttemptOutcome::Retryable))
        .await
        .unwrap();
    assert_eq!(
        out.next_attempt_at_us,
        Some(clock.now_us() + 5 * SEC),
        "Retry-After 5 s"
    );
    // Not handed out again before its time.
    clock.advance_us(5 * SEC - 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), leases.next())
            .await
            .is_err(),
        "retried early"
    );
    clock.advance_us(1);
    let d2 = next_item(&mut leases).await;
    assert_eq!(
        d2.delivery.id, d.delivery.id,
        "same delivery id across retries"
    );
    assert_eq!(d2.delivery.attempt, 2);
    let out = k
        .report_attempt(AttemptReport {
            http_status: Some(200),
            error: None,
            ..report(&d2, AttemptOutcome::Succeeded)
        })
        .await
        .unwrap();
    assert_eq!(out.timer_status, TimerStatus::Settled);
    let ds = k.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts.len(), 2);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_handed_to_another_executor_and_the_stale_report_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    k.schedule_timer("acme", webhook_req("1s", 5))
        .await
        .unwrap();
    clock.advance_us(SEC);
    let mut w1 = k.lease_deliveries(lease("w1", 2_000, 1)).await.unwrap();
    let first = next_item(&mut w1).await;
    drop(w1); // the executor dies without reporting
    let mut w2 = k.lease_deliveries(lease("w2", 2_000, 1)).await.unwrap();
    clock.advance_us(3 * SEC); // the lease expires; the rescuer (every 50 ms) returns it
    let second = next_item(&mut w2).await;
    assert_eq!(second.delivery.id, first.delivery.id);
    assert_eq!(second.delivery.attempt, 2);
    assert_eq!(second.delivery.lease_owner.as_deref(), Some("w2"));
    let stale = succeeded(first.delivery.id, "w1", 1, clock.now_us());
    assert!(matches!(
        k.report_attempt(stale.clone()).await,
        Err(KernelError::Fenced(_))
    ));
    let fresh = AttemptReport {
        lease_owner: "w2".into(),
        attempt: 2,
        ..stale
    };
    assert_eq!(
        k.report_attempt(fresh).await.unwrap().timer_status,
        TimerStatus::Settled
    );
    assert!(k.metrics().leases_rescued.get() >= 1);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_resume_from_a_sequence_number_and_follow_live() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    for _ in 0..5 {
        k.schedule_timer("acme", req(r#"{"duration": "1h"}"#))
            .await
            .unwrap();
    }
    k.schedule_timer("other", req(r#"{"duration": "1h"}"#))
        .await
        .unwrap();
    let all = k
        .store()
        .read_events(EventQuery {
            after_seq: 0,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    // Resume after the second event: the next four of the log, then live ones.
    let mut s = k
        .stream_events(EventQuery {
            after_seq: all[1].seq,
            limit: 100,
            tenant_id: Some("acme".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let replayed = next_events(&mut s, 3).await;
    assert_eq!(
        replayed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[2].seq, all[3].seq, all[4].seq]
    );
    let live = k
        .schedule_timer("acme", req(r#"{"duration": "1h"}"#))
        .await
        .unwrap()
        .timer;
    let e = next_events(&mut s, 1).await;
    assert_eq!(
        e[0].timer_id, live.id,
        "the other tenant's event was filtered out"
    );
    assert_eq!(e[0].event_type, EventType::TimerScheduled);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_timers_stay_out_of_memory_until_the_window_reaches_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    let far = k
        .schedule_timer("acme", req(r#"{"duration": "10s"}"#))
        .await
        .unwrap()
        .timer;
    k.schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap();
    assert_eq!(
        k.window_len(),
        1,
        "only the timer inside the 2 s window is in memory"
    );
    clock.advance_us(9 * SEC);
    let first = next_events(&mut fired, 1).await;
    assert_ne!(first[0].timer_id, far.id);
    // The loader brings the far timer in as the window reaches it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while k.window_len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "far timer never loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.advance_us(SEC);
    let second = next_events(&mut fired, 1).await;
    assert_eq!(second[0].timer_id, far.id);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_overdue_timers_fire_at_once_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut ids = Vec::new();
    for s in [5, 3, 9, 1, 7] {
        ids.push((
            s,
            k.schedule_timer("acme", req(&format!(r#"{{"duration": "{s}s"}}"#)))
                .await
                .unwrap()
                .timer
                .id,
        ));
    }
    k.shutdown().await;
    drop(k);
    // Down for a minute: all five are overdue when the kernel comes back.
    clock.advance_us(60 * SEC);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    let events = next_events(&mut fired, 5).await;
    ids.sort();
    let want: Vec<_> = ids.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        events.iter().map(|e| e.timer_id).collect::<Vec<_>>(),
        want,
        "oldest first"
    );
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_committed_after_its_caller_gave_up_still_fires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut events = k
        .stream_events(EventQuery {
            after_seq: 0,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    // The caller's future is polled once (it gets as far as waiting for the commit) and
    // then dropped, as when a client's deadline passes: the commit still happens, and so
    // must the indexing.
    {
        let mut call = Box::pin(k.schedule_timer("acme", req(r#"{"duration": "1s"}"#)));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            call.as_mut().poll(&mut cx).is_pending(),
            "still waiting for the commit"
        );
    }
    let scheduled = next_events(&mut events, 1).await;
    assert_eq!(scheduled[0].event_type, EventType::TimerScheduled);
    clock.advance_us(SEC);
    let fired = next_events(&mut events, 1).await;
    assert_eq!(fired[0].event_type, EventType::TimerFired);
    assert_eq!(fired[0].timer_id, scheduled[0].timer_id);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_retention_are_deleted_and_newer_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap());
    let config = KernelConfig {
        event_retention: Duration::from_secs(3_600),
        retention_interval: Duration::from_millis(20),
        ..test_config()
    };
    let k = Kernel::start(store, clock.clone(), config).unwrap();
    let old = k
        .schedule_timer("acme", req(r#"{"duration": "1d"}"#))
        .await
        .unwrap()
        .timer;
    clock.advance_us(3_600 * SEC + 1);
    let young = k
        .schedule_timer("acme", req(r#"{"duration": "1d"}"#))
        .await
        .unwrap()
        .timer;
    // Pruning has no event of its own: wait (bounded) until the retention pass ran.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = k
            .store()
            .read_events(EventQuery {
                after_seq: 0,
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        if left.len() == 1 {
            assert_eq!(left[0].timer_id, young.id, "the newer event is kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old event never pruned"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The timer itself is untouched: retention concerns the log only.
    assert_eq!(
        k.get_timer("acme", old.id).await.unwrap().status,
        TimerStatus::Scheduled
    );
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_files_the_operator_did_not_enable_are_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap());
    let config = KernelConfig {
        actions: minoots_core::ActionPolicy {
            allowed_commands: ["notify".to_string()].into(),
            file_actions: false,
        },
        ..test_config()
    };
    let k = Kernel::start(store, clock.clone(), config).unwrap();
    let cmd = |name: &str| {
        req(&format!(
            r#"{{"duration": "1h", "actionBundle": {{"actions": [{{"type": "command", "command": "{name}"}}]}}}}"#
        ))
    };
    assert!(k.schedule_timer("acme", cmd("notify")).await.is_ok());
    match k.schedule_timer("acme", cmd("rm")).await.unwrap_err() {
        KernelError::Invalid(e) => assert!(e.has_field("actionBundle.actions[0].command"), "{e}"),
        other => panic!("{other:?}"),
    }
    let file = req(
        r#"{"duration": "1h", "actionBundle": {"actions": [{"type": "file", "path": "a.jsonl"}]}}"#,
    );
    assert!(matches!(
        k.schedule_timer("acme", file).await,
        Err(KernelError::Invalid(_))
    ));
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_fire_what_became_due_once_and_nothing_early_or_twice() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    let mut ids = Vec::new();
    // Two inside the 2 s window, one beyond it, one an hour out.
    for d in ["1s", "2s", "10s", "1h"] {
        let t = k
            .schedule_timer("acme", req(&format!(r#"{{"duration": "{d}"}}"#)))
            .await
            .unwrap()
            .timer;
        ids.push(t.id);
    }

    // Forward jump past the first three: each fires once, the far one does not.
    clock.set_us(T0 + 11 * SEC);
    let got = next_events(&mut fired, 3).await;
    let mut got_ids: Vec<_> = got.iter().map(|e| e.timer_id).collect();
    got_ids.sort();
    let mut want = ids[..3].to_vec();
    want.sort();
    assert_eq!(got_ids, want);

    // Backward jump: nothing fires again, and a new timer due after the jumped-back time
    // does not fire before the clock reaches it.
    clock.set_us(T0 + 5 * SEC);
    let late = k
        .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap()
        .timer;
    assert_eq!(late.fire_at_us, T0 + 6 * SEC);
    clock.set_us(T0 + 6 * SEC - 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fired.next())
            .await
            .is_err(),
        "something fired after the backward jump"
    );
    clock.set_us(T0 + 6 * SEC);
    let e = next_events(&mut fired, 1).await;
    assert_eq!(e[0].timer_id, late.id);
    // Nothing else, and the hour-out timer is still scheduled.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fired.next())
            .await
            .is_err(),
        "a timer fired twice"
    );
    for id in &ids[..3] {
        let t = k.get_timer("acme", *id).await.unwrap();
        assert_eq!(t.status, TimerStatus::Settled);
        assert!(t.fired_at_us.unwrap() >= t.fire_at_us, "fired early");
    }
    assert_eq!(
        k.get_timer("acme", ids[3]).await.unwrap().status,
        TimerStatus::Scheduled
    );
    k.shutdown().await;
}

/// Polls the store (bounded) until `done` holds for its counts; the hand-back has no
/// event of its own to wait on.
async fn until_stats(k: &Kernel, what: &str, done: impl Fn(&minoots_store::StoreStats) -> bool) {
    let waited = tokio::time::timeout(WAIT, async {
        while !done(&k.store().stats().await.unwrap()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if waited.is_err() {
        panic!("{what}: {:?}", k.store().stats().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_lease_session_hands_back_what_it_had_not_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    for _ in 0..4 {
        k.schedule_timer("acme", webhook_req("1s", 3))
            .await
            .unwrap();
    }
    let mut leases = k.lease_deliveries(lease("w1", 30_000, 4)).await.unwrap();
    clock.advance_us(SEC);
    let taken = next_item(&mut leases).await;
    // The session fills its buffer: all four are leased, three not yet passed on.
    until_stats(&k, "all four leased", |s| s.in_flight_deliveries == 4).await;
    drop(leases);
    // The clock stands still, so no lease can expire: what comes back was handed back.
    until_stats(&k, "three handed back", |s| {
        s.in_flight_deliveries == 1 && s.pending_deliveries == 3
    })
    .await;
    let held = k
        .store()
        .get_delivery(taken.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.lease_owner.as_deref(),
        Some("w1"),
        "the one passed on stays leased"
    );
    // Another executor gets the three, each as its first attempt.
    let mut other = k.lease_deliveries(lease("w2", 30_000, 4)).await.unwrap();
    for _ in 0..3 {
        let d = next_item(&mut other).await;
        assert_ne!(d.delivery.id, taken.delivery.id);
        assert_eq!(d.delivery.attempt, 1, "a hand-back is not an attempt");
    }
    drop(other);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_with_room_gets_its_deliveries_from_the_fire_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut leases = k.lease_deliveries(lease("w1", 30_000, 8)).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            k.schedule_timer("acme", webhook_req("1s", 3))
                .await
                .unwrap()
                .timer
                .id,
        );
    }
    clock.advance_us(SEC);
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = next_item(&mut leases).await;
        assert_eq!(d.delivery.attempt, 1);
        assert_eq!(d.delivery.lease_owner.as_deref(), Some("w1"));
        assert_eq!(
            d.delivery.lease_expires_at_us,
            Some(T0 + SEC + 30_000_000),
            "leased for the session's TTL at the fire's time"
        );
        got.push(d.delivery.timer_id);
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    // The session had room and sat idle (its first claim found nothing): the fire
    // claimed for it, in its own transaction.
    let m = k.metrics();
    assert_eq!(m.deliveries_claimed_at_fire.get(), 3);
    assert_eq!(m.deliveries_leased.get(), 3);
    // Committed before they were handed over.
    let stats = k.store().stats().await.unwrap();
    assert_eq!(
        (stats.in_flight_deliveries, stats.pending_deliveries),
        (3, 0)
    );
    drop(leases);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_a_gone_executor_are_handed_back_at_once_and_counted_as_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    k.schedule_timer("acme", webhook_req("1s", 3))
        .await
        .unwrap();
    let mut old = k
        .lease_deliveries(lease("serve/h/7/00c0ffee", 30_000, 1))
        .await
        .unwrap();
    clock.advance_us(SEC);
    let d = next_item(&mut old).await;
    drop(old); // what it passed on stays leased, as after a SIGKILL
    assert_eq!(k.hand_back_leases_of("serve").await.unwrap(), 1);
    let back = k
        .store()
        .get_delivery(d.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.status, minoots_core::DeliveryStatus::Pending);
    let mut new = k
        .lease_deliveries(lease("orch/h/8/0badf00d", 30_000, 1))
        .await
        .unwrap();
    let again = next_item(&mut new).await;
    assert_eq!(again.delivery.id, d.delivery.id);
    assert_eq!(
        again.delivery.attempt, 2,
        "the lost attempt may have run: it counts"
    );
    // Leases of other owners are not touched.
    assert_eq!(k.hand_back_leases_of("serve").await.unwrap(), 0);
    assert_eq!(
        k.store().stats().await.unwrap().in_flight_deliveries,
        1,
        "the orchestrator's lease stays"
    );
    drop(new);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firing_thread_pops_at_most_once_per_min_fire_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = KernelConfig {
        min_fire_interval: Duration::from_millis(100),
        ..test_config()
    };
    let k = start_with(dir.path(), Arc::new(SystemClock), config).await;
    let mut fired = fired_events(k.as_ref()).await;
    let first = k
        .schedule_timer("acme", req(r#"{"duration": 50}"#))
        .await
        .unwrap()
        .timer;
    next_events(&mut fired, 1).await;
    // Due at once, a few milliseconds after the first pop: it waits out the interval.
    let second = k
        .schedule_timer("acme", req(r#"{"duration": 1}"#))
        .await
        .unwrap()
        .timer;
    next_events(&mut fired, 1).await;
    let first = k.get_timer("acme", first.id).await.unwrap();
    let second = k.get_timer("acme", second.id).await.unwrap();
    let (a, b) = (first.fired_at_us.unwrap(), second.fired_at_us.unwrap());
    assert!(
        a >= first.fire_at_us && b >= second.fire_at_us,
        "never early"
    );
    assert!(
        b - a >= 90_000,
        "the second pop came {} us after the first, within the 100 ms interval",
        b - a
    );
    k.shutdown().await;
}
