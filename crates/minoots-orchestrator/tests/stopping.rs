//! A graceful stop starts nothing new: deliveries waiting for a slot of their host when the
//! stop begins are handed back (pending again, no attempt used), while the attempts already
//! running finish and report.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{WAIT, start_with};
use minoots_core::{DeliveryStatus, TimerStatus};
use minoots_kernel::KernelApi;
use tokio::sync::Notify;

/// Answers every webhook after `delay`, counting the requests that arrived.
async fn slow_server(delay: Duration) -> (Arc<(AtomicUsize, Notify)>, String) {
    let seen = Arc::new((AtomicUsize::new(0), Notify::new()));
    let me = seen.clone();
    let app = axum::Router::new().fallback(move || {
        let me = me.clone();
        async move {
            me.0.fetch_add(1, Ordering::SeqCst);
            me.1.notify_waiters();
            tokio::time::sleep(delay).await;
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_back_deliveries_waiting_for_their_host() {
    let (seen, url) = slow_server(Duration::from_millis(1_500)).await;
    let s = start_with(|c| {
        c.max_per_host = 2;
        c.shutdown_grace = Duration::from_secs(20);
    })
    .await;
    let mut timers = Vec::new();
    for _ in 0..6 {
        timers.push(
            s.schedule(
                "100ms",
                &url,
                r#", "timeoutMs": 30000"#,
                r#"{"maxAttempts": 1}"#,
            )
            .await
            .id,
        );
    }
    // Two run (the host's limit), four wait for the host, all six leased.
    tokio::time::timeout(WAIT, async {
        loop {
            let notified = seen.1.notified();
            let stats = s.kernel.store().stats().await.unwrap();
            if seen.0.load(Ordering::SeqCst) >= 2 && stats.in_flight_deliveries == 6 {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await
    .expect("two running and four waiting");
    let _ = s.stop.send(true);
    tokio::time::timeout(WAIT, s.task)
        .await
        .expect("the orchestrator stops")
        .expect("no panic");
    // The two running finished within the grace period; their slots freed, yet nothing
    // that waited was started.
    assert_eq!(seen.0.load(Ordering::SeqCst), 2, "started during the stop");
    let mut settled = 0;
    for id in &timers {
        let t = s.kernel.get_timer("acme", *id).await.unwrap();
        let d = &s.kernel.list_deliveries("acme", *id).await.unwrap()[0];
        match t.status {
            TimerStatus::Settled => settled += 1,
            TimerStatus::Fired => {
                assert_eq!(d.delivery.status, DeliveryStatus::Pending, "handed back");
                assert_eq!(d.delivery.attempt, 0, "a hand-back is not an attempt");
                assert!(d.attempts.is_empty());
            }
            other => panic!("timer ended {other}"),
        }
    }
    assert_eq!(settled, 2);
    s.kernel.shutdown().await;
}
