//! Firing never stops silently: when the firing thread, the dispatcher or the loader dies,
//! the kernel stops saying it is ready, reports why, still shuts down, and a new kernel on
//! the same store fires what the dead one had taken in hand.

#[allow(dead_code)]
mod common;
use common::WAIT;

use std::sync::Arc;
use std::time::Duration;

use minoots_core::{Clock, EventType, ManualClock, TimerRequest, TimerStatus};
use minoots_kernel::{Fault, Kernel, KernelApi, KernelConfig};
use minoots_store::{EventQuery, SqliteConfig, SqliteStore, Store};

const T0: i64 = 1_795_773_600_000_000;
const SEC: i64 = 1_000_000;

fn config() -> KernelConfig {
    KernelConfig {
        window: Duration::from_secs(2),
        refill_interval: Duration::from_millis(100),
        ..KernelConfig::default()
    }
}

async fn start(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Arc<Kernel> {
    start_with(dir, clock, config()).await
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

/// Waits for the kernel to report a failure (an event, not a sleep) and checks that it
/// is no longer ready and names `part` and the panic.
async fn expect_failure(k: &Kernel, part: &str) -> String {
    let reason = tokio::time::timeout(WAIT, k.failed())
        .await
        .unwrap_or_else(|_| panic!("the death of the {part} is noticed"));
    assert!(
        reason.contains(part) && reason.contains("injected fault"),
        "the reason names the {part} and its panic: {reason}"
    );
    assert!(!k.is_ready(), "a kernel whose {part} died is not ready");
    assert_eq!(k.failure().as_deref(), Some(reason.as_str()));
    reason
}

/// Shutdown completes after a failure (nothing waits for a part that is gone).
async fn shutdown_in_time(k: &Kernel) {
    tokio::time::timeout(WAIT, k.shutdown())
        .await
        .expect("shutdown completes after a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_of_the_firing_thread_is_reported_and_a_restart_fires_its_timer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let t = k
        .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap();
    k.inject_fault(Fault::PanicFiringAfter(1));
    assert!(k.is_ready());
    assert_eq!(k.failure(), None);

    clock.advance_us(2 * SEC);
    let reason = expect_failure(&k, "firing thread").await;
    assert!(reason.contains("panicked"), "{reason}");
    // The timer was popped from the window but never committed: it is still scheduled.
    let stored = k.get_timer("acme", t.timer.id).await.unwrap();
    assert_eq!(stored.status, TimerStatus::Scheduled);
    shutdown_in_time(&k).await;

    // What the supervisor does: a new process on the same store fires it, once.
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = k
        .stream_events(EventQuery {
            after_seq: 0,
            tenant_id: Some("acme".into()),
            types: vec![EventType::TimerFired],
            ..Default::default()
        })
        .await
        .unwrap();
    let event = common::next_item(&mut fired).await;
    assert_eq!(event.timer_id, t.timer.id);
    let stored = k.get_timer("acme", t.timer.id).await.unwrap();
    assert_ne!(
        stored.status,
        TimerStatus::Scheduled,
        "fired after the restart"
    );
    assert!(k.is_ready());
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_of_the_dispatcher_is_reported_and_frees_the_firing_thread() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // One fire per batch and one batch queued: the firing thread soon waits for room.
    let tight = KernelConfig {
        fire_batch: 1,
        max_fire_batches_in_flight: 1,
        ..config()
    };
    let k = start_with(dir.path(), clock.clone(), tight).await;
    for _ in 0..3 {
        k.schedule_timer("acme", req(r#"{"duration": "1s"}"#))
            .await
            .unwrap();
    }
    k.inject_fault(Fault::PanicDispatcherAfter(1));
    clock.advance_us(2 * SEC);
    expect_failure(&k, "dispatcher").await;
    // More due timers after the dispatcher is gone: the firing thread must not wait for
    // room in a queue nobody empties, or shutdown would hang joining it.
    for _ in 0..5 {
        k.schedule_timer("acme", req(r#"{"duration": "1s"}"#))
            .await
            .unwrap();
    }
    clock.advance_us(2 * SEC);
    shutdown_in_time(&k).await;
    assert!(
        k.failure().unwrap().contains("dispatcher"),
        "the first failure stays the reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_of_the_loader_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    k.inject_fault(Fault::PanicLoader);
    expect_failure(&k, "loader").await;
    shutdown_in_time(&k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_is_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    k.schedule_timer("acme", req(r#"{"duration": "1s"}"#))
        .await
        .unwrap();
    clock.advance_us(2 * SEC);
    k.shutdown().await;
    // The firing thread, the dispatcher and the loader have all ended by now.
    assert_eq!(k.failure(), None);
}
