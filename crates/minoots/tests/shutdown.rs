//! Graceful shutdown under load: a real `minoots serve` delivers webhooks to a slow loopback
//! sink (so deliveries are executing and others are leased but waiting) when it gets
//! SIGTERM. It must exit 0 promptly; started on the same data directory again, it must
//! deliver every remaining timer without waiting for leases to expire, and no `webhook-id`
//! may arrive twice, none before its fire time.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use common::{KillOnDrop, call, free_port, start_serve, terminate, wait_exit};
use tokio::sync::Notify;

const ADMIN_KEY: &str = "mnt_shutdown_test_admin_key_0123456789abcdef";
/// Timers, falling due over `SPREAD_MS` shortly after they are all created.
const TIMERS: usize = 600;
const SPREAD_MS: i64 = 3_000;
/// How long the sink takes to answer each webhook.
const SINK_DELAY: Duration = Duration::from_millis(150);
/// SIGTERM comes after this many webhooks arrived (deliveries are then in full flow).
const TERM_AFTER: usize = 150;
/// A graceful stop finishes the webhooks it started (150 ms each) and hands back the rest:
/// far less than this.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// After the restart, every timer is delivered well within this; far below the default
/// lease (150 s), so a delivery left leased at the stop fails the test.
const DELIVER_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Sink {
    /// (webhook-id, timer id, receive time µs), recorded when the request arrives.
    got: Mutex<Vec<(String, String, i64)>>,
    count: AtomicUsize,
    arrived: Notify,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

async fn hook(State(sink): State<Arc<Sink>>, headers: HeaderMap, _body: Bytes) -> &'static str {
    let at = now_us();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    sink.got
        .lock()
        .unwrap()
        .push((h("webhook-id"), h("x-minoots-timer-id"), at));
    sink.count.fetch_add(1, Ordering::SeqCst);
    sink.arrived.notify_waiters();
    tokio::time::sleep(SINK_DELAY).await;
    "ok"
}

fn parse_us(s: &str) -> i64 {
    minoots_core::timefmt::parse_rfc3339_us(s).expect("an RFC 3339 time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_restart_delivers_everything_once() {
    let sink = Arc::new(Sink::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (http_port, grpc_port) = (free_port(), free_port());
    let flags = ["--allow-private-targets", "--max-in-flight", "64"];
    let env = [("MINOOTS_ADMIN_KEY", ADMIN_KEY)];
    let (child, base) = start_serve(&data, http_port, grpc_port, &flags, &env);
    let mut child = KillOnDrop(child);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (s, t) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/tenants"),
        ADMIN_KEY,
        Some(serde_json::json!({"id": "load", "name": "load", "tier": "unlimited"})),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let (s, k) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/keys"),
        ADMIN_KEY,
        Some(serde_json::json!({"tenantId": "load", "name": "load", "roles": ["timers:read", "timers:write"]})),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();

    // Every timer first, due from 2 s after the start of creation on, over SPREAD_MS.
    let first_due = now_us() + 2_000_000;
    let slots = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TIMERS {
        let at = first_due + (i as i64) * SPREAD_MS * 1_000 / TIMERS as i64;
        let fire_at = minoots_core::timefmt::format_us(at);
        let body = serde_json::json!({
            "name": format!("load-{i}"),
            "fireAt": fire_at,
            "actionBundle": {"actions": [{"type": "webhook", "url": hook_url, "timeoutMs": 10_000}]}
        });
        let (http, base, key, permit) = (
            http.clone(),
            base.clone(),
            key.clone(),
            slots.clone().acquire_owned().await.unwrap(),
        );
        tasks.spawn(async move {
            let (s, t) = call(
                &http,
                reqwest::Method::POST,
                format!("{base}/timers"),
                &key,
                Some(body),
            )
            .await;
            drop(permit);
            assert_eq!(s, 201, "{t}");
            (
                t["id"].as_str().unwrap().to_string(),
                parse_us(t["fireAt"].as_str().unwrap()),
            )
        });
    }
    let mut fire_at: HashMap<String, i64> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (id, at) = r.unwrap();
        fire_at.insert(id, at);
    }
    assert_eq!(fire_at.len(), TIMERS);

    // SIGTERM while webhooks are in full flow.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.count.load(Ordering::SeqCst) < TERM_AFTER {
        let arrived = sink.arrived.notified();
        if sink.count.load(Ordering::SeqCst) >= TERM_AFTER {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} webhooks arrived within 60 s",
            sink.count.load(Ordering::SeqCst)
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), arrived).await;
    }
    let stopping = Instant::now();
    terminate(&child.0);
    let exit = tokio::task::block_in_place(|| wait_exit(&mut child.0, STOP_LIMIT));
    let stop_took = stopping.elapsed();
    let at_stop = sink.count.load(Ordering::SeqCst);
    assert!(exit.success(), "SIGTERM under load ended with {exit:?}");
    assert!(
        at_stop < TIMERS,
        "every webhook arrived before the stop ({at_stop}); the test did not stop under load"
    );
    eprintln!("graceful stop under load: {stop_took:?}, {at_stop} of {TIMERS} webhooks before it");

    // Started again on the same data directory: the rest arrives, without lease expiry.
    let restarted = Instant::now();
    let (child, base) = start_serve(&data, http_port, grpc_port, &flags, &env);
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + DELIVER_LIMIT;
    loop {
        let received: HashSet<String> = sink
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t, _)| t.clone())
            .collect();
        let missing = fire_at.keys().filter(|id| !received.contains(*id)).count();
        if missing == 0 {
            let (s, open) = call(
                &http,
                reqwest::Method::GET,
                format!("{base}/timers?status=fired&limit=10"),
                &key,
                None,
            )
            .await;
            assert_eq!(s, 200, "{open}");
            if open["timers"].as_array().unwrap().is_empty() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {TIMERS} timers not delivered {DELIVER_LIMIT:?} after the restart \
             (a delivery left leased at the stop waits for its lease to expire)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "after the restart, all delivered in {:?}",
        restarted.elapsed()
    );
    terminate(&child.0);
    let exit = tokio::task::block_in_place(|| wait_exit(&mut child.0, STOP_LIMIT));
    assert!(exit.success(), "the second SIGTERM ended with {exit:?}");

    let got = sink.got.lock().unwrap().clone();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (w, _, _) in &got {
        *seen.entry(w.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "a graceful stop produced {} duplicate webhook-ids, e.g. {:?}",
        duplicated.len(),
        duplicated.first()
    );
    let early: Vec<_> = got
        .iter()
        .filter(|(_, t, at)| fire_at.get(t).is_some_and(|f| at < f))
        .collect();
    assert!(
        early.is_empty(),
        "webhooks before their fire time: {early:?}"
    );
    assert_eq!(got.len(), TIMERS, "every timer's webhook exactly once");
}
