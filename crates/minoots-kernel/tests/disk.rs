//! The kernel when its disk refuses writes: creates and cancels answer `StoreCannotWrite`
//! naming the reason (over gRPC: UNAVAILABLE with the reason in the status details),
//! reads go on, timers that come due are not fired early, lost or doubled but fire, late,
//! once the disk recovers.

#[allow(dead_code)]
mod common;
use common::WAIT;

use std::sync::Arc;
use std::time::Duration;

use minoots_core::{Clock, EventType, ManualClock, TimerRequest, TimerStatus};
use minoots_kernel::{Kernel, KernelApi, KernelConfig, KernelError};
use minoots_store::{EventQuery, SqliteConfig, SqliteStore, Store, TimerQuery, WriteTrouble};
use tokio_stream::StreamExt;

const T0: i64 = 1_795_773_600_000_000;
const SEC: i64 = 1_000_000;

async fn start(dir: &std::path::Path, clock: Arc<ManualClock>) -> (Arc<Kernel>, SqliteStore) {
    let sqlite = SqliteStore::open(SqliteConfig::new(dir), clock.clone() as Arc<dyn Clock>)
        .expect("open the store");
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let config = KernelConfig {
        window: Duration::from_secs(2),
        refill_interval: Duration::from_millis(100),
        realtime_firing_thread: false,
        ..KernelConfig::default()
    };
    let k = Kernel::start(store, clock, config).unwrap();
    assert!(k.wait_ready(WAIT).await);
    (k, sqlite)
}

fn req(json: &str) -> TimerRequest {
    TimerRequest::from_json(json.as_bytes()).unwrap()
}

fn assert_refused(e: &KernelError, trouble: WriteTrouble) {
    assert_eq!(e, &KernelError::StoreCannotWrite(trouble.clone()));
    assert_eq!(e.to_string(), format!("the store cannot write: {trouble}"));
    assert!(
        e.is_transient(),
        "the same write succeeds once the disk recovers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_due_while_the_disk_refuses_writes_fire_once_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (k, sqlite) = start(dir.path(), clock.clone()).await;
    let mut fired = k
        .stream_events(EventQuery {
            after_seq: 0,
            limit: 100,
            types: vec![EventType::TimerFired],
            ..Default::default()
        })
        .await
        .unwrap();
    let a = k
        .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap()
        .timer;
    let b = k
        .schedule_timer("acme", req(r#"{"duration": "5s"}"#))
        .await
        .unwrap()
        .timer;

    sqlite.set_writer_read_only(true).await.unwrap();
    let e = k
        .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap_err();
    assert_refused(&e, WriteTrouble::ReadOnly);
    assert_refused(
        &k.cancel_timer("acme", b.id, None).await.unwrap_err(),
        WriteTrouble::ReadOnly,
    );
    // Over gRPC the refusal is UNAVAILABLE with the same sentence and the trouble in the
    // details, and comes back as the same error.
    let status = minoots_kernel::grpc::to_status(e.clone());
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.message(),
        "the store cannot write: the disk is read-only"
    );
    assert_eq!(minoots_kernel::grpc::from_status(status), e);

    // Both come due; the firing attempt fails (and is retried), nothing fires.
    let errors_before = k.metrics().fire_errors.get();
    clock.advance_us(10 * SEC);
    let deadline = tokio::time::Instant::now() + WAIT;
    while k.metrics().fire_errors.get() < errors_before + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kernel never tried to fire"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Reads work meanwhile and show both still scheduled.
    for id in [a.id, b.id] {
        assert_eq!(
            k.get_timer("acme", id).await.unwrap().status,
            TimerStatus::Scheduled
        );
    }
    let page = k
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            status: None,
            label: None,
            limit: 10,
            after: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.timers.len(), 2, "the refused create stored nothing");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), fired.next())
            .await
            .is_err(),
        "a timer fired although its fire could not be stored"
    );

    // The disk recovers: both fire, each once, late and never early; writes work again.
    sqlite.set_writer_read_only(false).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let e = tokio::time::timeout(WAIT, fired.next())
            .await
            .expect("the due timers fire after the disk recovers")
            .unwrap()
            .unwrap();
        got.push(e.timer_id);
    }
    got.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(got, want);
    for id in [a.id, b.id] {
        let t = k.get_timer("acme", id).await.unwrap();
        assert_eq!(t.status, TimerStatus::Settled);
        assert!(
            t.fired_at_us.unwrap() >= T0 + 10 * SEC,
            "fired after the trouble"
        );
    }
    let c = k
        .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap()
        .timer;
    clock.advance_us(SEC);
    let e = tokio::time::timeout(WAIT, fired.next())
        .await
        .expect("a new timer fires")
        .unwrap()
        .unwrap();
    assert_eq!(e.timer_id, c.id, "no timer fired twice");
    let fired_total = k
        .store()
        .read_events(EventQuery {
            after_seq: 0,
            limit: 100,
            types: vec![EventType::TimerFired],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fired_total.len(), 3, "each timer fired exactly once");
    assert_eq!(sqlite.integrity_check().await.unwrap(), "ok");
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_creates_with_a_clear_reason_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (k, sqlite) = start(dir.path(), clock.clone()).await;
    let kept = k
        .schedule_timer("acme", req(r#"{"duration": "1h"}"#))
        .await
        .unwrap()
        .timer;
    sqlite.set_max_db_pages(Some(1)).await.unwrap();
    let big = format!(
        r#"{{"duration": "1h", "metadata": {{"pad": "{}"}}}}"#,
        "x".repeat(12_000)
    );
    let mut refused = None;
    for _ in 0..5_000 {
        if let Err(e) = k.schedule_timer("acme", req(&big)).await {
            refused = Some(e);
            break;
        }
    }
    assert_refused(
        &refused.expect("the capped store fills up"),
        WriteTrouble::DiskFull,
    );
    assert_eq!(
        k.get_timer("acme", kept.id).await.unwrap().status,
        TimerStatus::Scheduled,
        "reads go on"
    );
    sqlite.set_max_db_pages(None).await.unwrap();
    k.schedule_timer("acme", req(&big)).await.unwrap();
    assert_eq!(sqlite.integrity_check().await.unwrap(), "ok");
    k.shutdown().await;
}
