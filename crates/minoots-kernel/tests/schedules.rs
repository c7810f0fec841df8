//! Schedules fired by a real kernel on SQLite, on a manual clock: every DST vector of the
//! contract fires at its instant (not a microsecond early or late), through the dispatcher,
//! the store's dispatch and the scheduler's window; each slot gets one run record.

use std::sync::Arc;
use std::time::Duration;

use minoots_core::records::EventQuery;
use minoots_core::schedule::{RunStatus, ScheduleRequest};
use minoots_core::timefmt::{format_us, parse_rfc3339_us};
use minoots_core::{Clock, EventType, ManualClock, Timer};
use minoots_kernel::{Kernel, KernelApi, KernelConfig};
use minoots_store::{SqliteConfig, SqliteStore, Store};
use tokio_stream::StreamExt;

const WAIT: Duration = Duration::from_secs(10);
const SEC: i64 = 1_000_000;

async fn start_kernel(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Arc<Kernel> {
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

/// Creates the schedule `body` at `start`, then for each expected instant: moves the clock
/// to a second before it (the dispatcher creates the run's timer then, or at the slot when
/// a run is active), then to the instant, and checks that the run fired exactly then.
async fn fires_at(body: &str, start: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(parse_rfc3339_us(start).unwrap());
    let k = start_kernel(dir.path(), clock.clone()).await;
    let request = ScheduleRequest::from_json(body.as_bytes()).unwrap();
    let s = k
        .create_schedule("acme", request.clone(), Default::default())
        .await
        .unwrap();
    let mut fired = k
        .stream_events(EventQuery {
            after_seq: 0,
            limit: 1000,
            types: vec![EventType::TimerFired],
            ..Default::default()
        })
        .await
        .unwrap();
    for want in expected {
        let at = parse_rfc3339_us(want).unwrap();
        clock.set_us(at - SEC);
        clock.set_us(at);
        let e = tokio::time::timeout(WAIT, fired.next())
            .await
            .unwrap_or_else(|_| panic!("{body}: nothing fired at {want}"))
            .unwrap()
            .unwrap();
        let t: Timer = k.get_timer("acme", e.timer_id).await.unwrap();
        assert_eq!(
            t.fired_at_us.map(format_us).as_deref(),
            Some(*want),
            "{body}"
        );
        assert_eq!(t.fire_at_us, at, "{body}: due at the slot");
        let link = t.schedule.expect("a run names its schedule");
        assert_eq!(link.id, s.id);
    }
    // One record per slot, all fired, in order.
    let runs = k.list_schedule_runs("acme", s.id, None, 100).await.unwrap();
    let got: Vec<String> = runs.iter().map(|r| format_us(r.scheduled_at_us)).collect();
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Fired),
        "{runs:?}"
    );
    // A gap-shifted slot is recorded at its nominal (shifted) instant.
    assert_eq!(got, expected, "{body}");
    k.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_york_vectors_fire_on_time() {
    let ny = |cron: &str| format!(r#"{{"cron": "{cron}", "timezone": "America/New_York"}}"#);
    fires_at(
        &ny("0 30 2 * * *"),
        "2026-03-07T12:00:00Z",
        &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
    )
    .await;
    fires_at(
        &ny("0 30 1 * * *"),
        "2026-10-31T12:00:00Z",
        &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    )
    .await;
    fires_at(
        &ny("0 */30 * * * *"),
        "2026-11-01T04:45:00Z",
        &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    )
    .await;
    fires_at(
        &ny("0 10 * * * *"),
        "2026-03-08T05:30:00Z",
        &["2026-03-08T06:10:00Z", "2026-03-08T07:10:00Z"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berlin_lord_howe_cairo_and_every_fire_on_time() {
    let berlin = r#"{"cron": "0 30 2 * * *", "timezone": "Europe/Berlin"}"#;
    fires_at(
        berlin,
        "2026-03-28T12:00:00Z",
        &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    )
    .await;
    fires_at(
        berlin,
        "2026-10-24T12:00:00Z",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    )
    .await;
    let lh = |cron: &str| format!(r#"{{"cron": "{cron}", "timezone": "Australia/Lord_Howe"}}"#);
    fires_at(
        &lh("0 15 2 * * *"),
        "2026-10-03T00:00:00Z",
        &["2026-10-03T15:30:00Z"],
    )
    .await;
    fires_at(
        &lh("0 45 1 * * *"),
        "2026-04-04T00:00:00Z",
        &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
    )
    .await;
    fires_at(
        r#"{"cron": "0 0 0 * * *", "timezone": "Africa/Cairo"}"#,
        "2026-04-23T00:00:00Z",
        &["2026-04-23T22:00:00Z"],
    )
    .await;
    fires_at(
        r#"{"every": "24h", "phase": "7h30m", "timezone": "America/New_York"}"#,
        "2026-03-07T00:00:00Z",
        &[
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-09T07:30:00Z",
        ],
    )
    .await;
}
