//! The in-process kernel following changes of its timers, on a manual clock and a real
//! SQLite store: a timer moved earlier into the window fires at its new time, one moved
//! later or out of the window does not fire at its old time, a change the window did not
//! hear of (made through the store, as another kernel would) still never fires early,
//! and fire-now fires at once through the normal fire path.

#[allow(dead_code)]
mod common;
use common::{WAIT, fired_events, next_item};

use std::sync::Arc;
use std::time::Duration;

use minoots_core::{
    Clock, Event, EventType, ManualClock, Timer, TimerChange, TimerId, TimerPatch, TimerRequest,
    TimerStatus,
};
use minoots_kernel::{BoxStream, Kernel, KernelApi, KernelConfig, KernelError};
use minoots_store::{EventQuery, SqliteConfig, SqliteStore, Store};

const T0: i64 = 1_795_773_600_000_000;
const SEC: i64 = 1_000_000;

async fn start(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Kernel> {
    let clock: Arc<dyn Clock> = clock;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir), clock.clone()).unwrap());
    let config = KernelConfig {
        window: Duration::from_secs(2),
        refill_interval: Duration::from_millis(100),
        ..KernelConfig::default()
    };
    let k = Kernel::start(store, clock, config).unwrap();
    assert!(k.wait_ready(WAIT).await);
    k
}

async fn schedule(k: &Kernel, json: &str) -> Timer {
    k.schedule_timer("acme", TimerRequest::from_json(json.as_bytes()).unwrap())
        .await
        .unwrap()
        .timer
}

fn patch(json: &str) -> TimerPatch {
    TimerPatch::from_json(json.as_bytes()).unwrap()
}

/// The timer's fire time as `fireAt` text, `us` after T0.
fn at(us: i64) -> String {
    minoots_core::timefmt::format_us(T0 + us)
}

/// The next timer that fired.
async fn next_fired(stream: &mut BoxStream<Event>) -> TimerId {
    next_item(stream).await.timer_id
}

async fn fired_at(k: &Kernel, id: TimerId) -> Option<i64> {
    k.get_timer("acme", id).await.unwrap().fired_at_us
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_moved_earlier_into_the_window_fires_at_its_new_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    // Beyond the 2 s window: not in memory until it is moved.
    let t = schedule(&k, r#"{"duration": "10s"}"#).await;
    let moved = k
        .update_timer(
            "acme",
            t.id,
            patch(&format!(r#"{{"version": 1, "fireAt": "{}"}}"#, at(SEC))),
        )
        .await
        .unwrap();
    assert_eq!((moved.fire_at_us, moved.version), (T0 + SEC, 2));
    clock.advance_us(SEC);
    assert_eq!(next_fired(&mut fired).await, t.id);
    assert_eq!(
        fired_at(&k, t.id).await,
        Some(T0 + SEC),
        "fired at its new time"
    );
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_moved_later_or_out_of_the_window_does_not_fire_at_its_old_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    let later = schedule(&k, r#"{"duration": "1s"}"#).await;
    let out = schedule(&k, r#"{"duration": "1s"}"#).await;
    // Due after the old times: when it fires, they would have fired before it.
    let sentinel = schedule(&k, r#"{"duration": "1500ms"}"#).await;
    k.update_timer(
        "acme",
        later.id,
        patch(&format!(
            r#"{{"version": 1, "fireAt": "{}"}}"#,
            at(1_800_000)
        )),
    )
    .await
    .unwrap();
    k.update_timer(
        "acme",
        out.id,
        patch(r#"{"version": 1, "duration": "30s"}"#),
    )
    .await
    .unwrap();
    clock.advance_us(1_500_000);
    assert_eq!(
        next_fired(&mut fired).await,
        sentinel.id,
        "nothing fires at the old times"
    );
    assert_eq!(fired_at(&k, later.id).await, None);
    assert_eq!(fired_at(&k, out.id).await, None);
    clock.advance_us(300_000);
    assert_eq!(next_fired(&mut fired).await, later.id);
    assert_eq!(fired_at(&k, later.id).await, Some(T0 + 1_800_000));
    clock.set_us(T0 + 30 * SEC);
    assert_eq!(next_fired(&mut fired).await, out.id);
    assert_eq!(fired_at(&k, out.id).await, Some(T0 + 30 * SEC));
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_the_window_did_not_hear_of_never_fires_early_and_fires_at_the_new_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let mut fired = fired_events(k.as_ref()).await;
    let moved = schedule(&k, r#"{"duration": "1s"}"#).await;
    let sentinel = schedule(&k, r#"{"duration": "1200ms"}"#).await;
    // Changed through the store, as another kernel of a shared store would: this
    // kernel's window still holds the old time.
    let change = TimerChange {
        expected_version: Some(1),
        fire_at: Some((T0 + 1_700_000, None)),
        ..TimerChange::default()
    };
    k.store()
        .update_timer("acme", moved.id, change)
        .await
        .unwrap();
    clock.advance_us(1_200_000);
    assert_eq!(next_fired(&mut fired).await, sentinel.id);
    assert_eq!(
        fired_at(&k, moved.id).await,
        None,
        "not fired at its old time"
    );
    clock.advance_us(500_000);
    assert_eq!(
        next_fired(&mut fired).await,
        moved.id,
        "indexed again at its new time"
    );
    assert_eq!(fired_at(&k, moved.id).await, Some(T0 + 1_700_000));
    assert_eq!(k.metrics().fires_not_due.get(), 1);
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_now_fires_at_once_through_the_normal_fire_path() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let t = schedule(
        &k,
        r#"{"duration": "1h", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}]}}"#,
    )
    .await;
    let now = k.fire_timer_now("acme", t.id).await.unwrap();
    assert_eq!(now.status, TimerStatus::Fired);
    assert_eq!((now.fire_at_us, now.fired_at_us), (T0, Some(T0)));
    assert_eq!(now.fired_late_us(), Some(0));
    assert_eq!(now.version, 3, "created, made due now, fired");
    let deliveries = k.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(
        deliveries.len(),
        1,
        "one delivery per action, as for any fire"
    );
    let events: Vec<_> = k
        .store()
        .read_events(EventQuery {
            after_seq: 0,
            limit: 100,
            timer_id: Some(t.id),
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        kinds,
        [
            EventType::TimerScheduled,
            EventType::TimerUpdated,
            EventType::TimerFired
        ]
    );
    assert_eq!(events[1].data["cause"], "fireNow");
    assert_eq!(events[2].data["firedLateUs"], 0);
    // Only a scheduled timer fires now; another tenant's is not found.
    assert!(matches!(
        k.fire_timer_now("acme", t.id).await,
        Err(KernelError::Conflict {
            status: Some(TimerStatus::Fired),
            ..
        })
    ));
    let other = schedule(&k, r#"{"duration": "1h"}"#).await;
    assert!(matches!(
        k.fire_timer_now("globex", other.id).await,
        Err(KernelError::NotFound(_))
    ));
    assert_eq!(
        k.get_timer("acme", other.id).await.unwrap().status,
        TimerStatus::Scheduled
    );
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_names_why_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = start(dir.path(), clock.clone()).await;
    let t = schedule(&k, r#"{"duration": "1h"}"#).await;
    let stale = k
        .update_timer("acme", t.id, patch(r#"{"version": 2, "duration": "2h"}"#))
        .await
        .unwrap_err();
    match stale {
        KernelError::Conflict { message, status } => {
            assert_eq!(status, None);
            assert!(message.contains("version 1, not 2"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let bad = k
        .update_timer(
            "acme",
            t.id,
            patch(r#"{"version": 1, "fireAt": "2020-01-01T00:00:00Z"}"#),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, KernelError::Invalid(e) if e.errors[0].field == "fireAt"),
        "{bad:?}"
    );
    // Command actions are off unless the operator allows them, for a change as on create.
    let command = k
        .update_timer(
            "acme",
            t.id,
            patch(r#"{"version": 1, "actionBundle": {"actions": [{"type": "command", "command": "rm"}]}}"#),
        )
        .await
        .unwrap_err();
    assert!(matches!(command, KernelError::Invalid(_)), "{command:?}");
    assert_eq!(
        k.get_timer("acme", t.id).await.unwrap(),
        t,
        "nothing changed"
    );
    k.shutdown().await;
}
