//! `minoots migrate-store` with real processes: a `serve` on the embedded store is given
//! timers of every kind, a key and a signing secret, then stopped; its store is moved
//! into a PostgreSQL schema; a `serve` on that schema answers every timer, delivery,
//! usage and secret as before, fires the pending timers once each, continues the event
//! stream after the last number seen with no gap, and accepts the key. A `serve` killed
//! with a delivery in flight loses nothing either: after the migration that delivery
//! runs again, with the same delivery id. And the command refuses, with a non-zero exit
//! and the fix in its message, a store still open by a running `serve`, a directory
//! with no store, and a target that already holds data.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; each test uses a schema of its own, dropped at the
//! end. Without it every test prints "skipped: no database" and passes.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::pg::{self, Answer, Receiver, Schema};
use common::{KillOnDrop, WAIT, free_port, terminate, wait_exit};
use serde_json::{Value, json};

const KEY: &str = "mnt_demo_key_free";
const ADMIN_KEY: &str = "mnt_migrate_admin_key_0123456789abcdef0123";
/// The demo tenant's tier without limits, on both stores.
const TIERS: &str = r#"{"free": {"requestsPerMinute": null, "createsPerMinute": null, "timersPerDay": null, "pendingTimers": null, "maxDurationMs": null}}"#;
/// How far ahead the timers that must fire after the migration are due: more than a
/// stop, a migration and a start take on a slow machine.
const PENDING_DUE: &str = "20s";

/// A loopback webhook receiver: `/ok` answers 200, `/gone` 410 (no retry), and `/hang`
/// never answers its first call (the executor is killed while it waits) and 200 after.
/// Returns it and its base URL.
async fn start_receiver() -> (Arc<Receiver>, String) {
    Receiver::answering(|path, n| match path {
        "gone" => Answer::Now(StatusCode::GONE),
        "hang" if n == 1 => Answer::Never,
        _ => Answer::Now(StatusCode::OK),
    })
    .await
}

/// Starts `serve --demo` on the embedded store in `dir`.
fn serve_sqlite(dir: &std::path::Path) -> (KillOnDrop, String) {
    let (child, base) = common::start_serve(
        dir,
        free_port(),
        free_port(),
        &["--demo"],
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY), ("MINOOTS_TIERS", TIERS)],
    );
    (KillOnDrop(child), base)
}

/// Starts `serve --demo` on the PostgreSQL schema.
fn serve_postgres(schema: &Schema) -> (KillOnDrop, String) {
    pg::start_serve(
        schema,
        &["--demo"],
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY), ("MINOOTS_TIERS", TIERS)],
    )
}

/// Stops a `serve` with SIGTERM and checks that it exited cleanly.
fn stop(mut serve: KillOnDrop) {
    terminate(&serve.0);
    assert!(
        wait_exit(&mut serve.0, WAIT).success(),
        "serve stopped cleanly"
    );
}

/// Runs `minoots migrate-store` from `dir` into the schema.
fn migrate(dir: &std::path::Path, url: &str, schema: &Schema) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(["migrate-store", "--data-dir", dir.to_str().unwrap()])
        .args(["--database-url", url, "--database-schema", &schema.name])
        .env("MINOOTS_LOG", "warn")
        .output()
        .expect("run minoots migrate-store");
    println!(
        "migrate-store took {:?}, exit {}:\n{}{}",
        started.elapsed(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn create(
    http: &reqwest::Client,
    base: &str,
    hook: &str,
    duration: &str,
    idempotency: Option<&str>,
) -> Value {
    let mut r = http
        .post(format!("{base}/timers"))
        .header("X-API-Key", KEY)
        .header("content-type", "application/json")
        .body(
            json!({
                "tenantId": "test", "name": format!("migrate {duration}"), "duration": duration,
                "metadata": {"order": 42, "note": "crosses as it is"},
                "labels": {"team": "ops", "kind": duration},
                "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
            })
            .to_string(),
        );
    if let Some(key) = idempotency {
        r = r.header("Idempotency-Key", key);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let timer: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(status == 201 || status == 200, "{status} {timer}");
    timer
}

async fn get(http: &reqwest::Client, url: String, key: &str) -> Value {
    let (status, body) = common::call(http, reqwest::Method::GET, url, key, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the timer has `status`.
async fn until_status(http: &reqwest::Client, base: &str, id: &str, status: &str) {
    let deadline = Instant::now() + WAIT;
    while get(http, format!("{base}/timers/{id}"), KEY).await["status"] != status {
        assert!(Instant::now() < deadline, "timer {id} becomes {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Server-sent events of a text: (seq, type, data) of each.
fn parse_sse(text: &str) -> Vec<(i64, String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            };
            Some((
                field("id:")?.parse().ok()?,
                field("event:")?.to_string(),
                serde_json::from_str(field("data:")?).ok()?,
            ))
        })
        .collect()
}

/// Every event of the demo tenant after `after`, up to now (the stream ends after 1 s).
async fn events_until_now(http: &reqwest::Client, base: &str, after: i64) -> Vec<Value> {
    let text = http
        .get(format!("{base}/events?after={after}&timeout=1s"))
        .header("X-API-Key", KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_sse(&text)
        .into_iter()
        .map(|(_, _, mut data)| {
            // The timer as it is now is not part of the event.
            data.as_object_mut().unwrap().remove("timer");
            data
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_store_moves_to_postgres_and_goes_on_there() {
    let url = or_skip!(pg::database_url());
    let schema = Schema::new(&url, "minoots_migrate");
    let dir = tempfile::tempdir().unwrap();
    let (receiver, hooks) = start_receiver().await;
    let (ok, gone) = (format!("{hooks}/ok"), format!("{hooks}/gone"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // On the embedded store: a settled, a failed, a cancelled, a far-future timer, and
    // three due a while after the migration.
    let (serve, base) = serve_sqlite(dir.path());
    let settled = create(&http, &base, &ok, "1s", Some("order-42")).await;
    let failed = create(&http, &base, &gone, "1s", None).await;
    let cancelled = create(&http, &base, &ok, "1h", None).await;
    let (status, _) = common::call(
        &http,
        reqwest::Method::POST,
        format!("{base}/timers/{}/cancel", cancelled["id"].as_str().unwrap()),
        KEY,
        Some(json!({"reason": "not needed"})),
    )
    .await;
    assert_eq!(status, 200);
    let later = create(&http, &base, &ok, "1h", None).await;
    let mut pending = Vec::new();
    for _ in 0..3 {
        pending.push(create(&http, &base, &ok, PENDING_DUE, None).await);
    }
    let created_pending = Instant::now();
    let id = |t: &Value| t["id"].as_str().unwrap().to_string();
    until_status(&http, &base, &id(&settled), "settled").await;
    until_status(&http, &base, &id(&failed), "failed").await;
    let (status, new_key) = common::call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/keys"),
        ADMIN_KEY,
        Some(json!({"tenantId": "test", "name": "made before the migration"})),
    )
    .await;
    assert_eq!(status, 201, "{new_key}");
    let new_key = new_key["key"].as_str().unwrap().to_string();

    let all: Vec<String> = [&settled, &failed, &cancelled, &later]
        .into_iter()
        .chain(&pending)
        .map(id)
        .collect();
    let mut before = Vec::new();
    for t in &all {
        before.push(get(&http, format!("{base}/timers/{t}"), KEY).await);
        before.push(get(&http, format!("{base}/timers/{t}/deliveries"), KEY).await);
    }
    let usage = get(&http, format!("{base}/usage"), KEY).await;
    let secret = get(&http, format!("{base}/webhook-secret"), KEY).await;
    let events = events_until_now(&http, &base, 0).await;
    let last_seq = events.last().unwrap()["seq"].as_i64().unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (1..=last_seq).collect::<Vec<_>>(),
        "the demo tenant's events are the whole log"
    );
    stop(serve);
    for t in &pending {
        assert_eq!(receiver.count(&id(t)), 0, "not fired before");
    }

    let out = migrate(dir.path(), &url, &schema);
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("verified"), "{summary}");
    assert!(
        summary.contains(&format!("{:<16} {last_seq:>10}", "event log head")),
        "{summary}"
    );

    let (serve, base) = serve_postgres(&schema);
    let mut after = Vec::new();
    for t in &all {
        after.push(get(&http, format!("{base}/timers/{t}"), KEY).await);
        after.push(get(&http, format!("{base}/timers/{t}/deliveries"), KEY).await);
    }
    assert_eq!(after, before, "every timer and delivery reads the same");
    assert_eq!(get(&http, format!("{base}/usage"), KEY).await, usage);
    assert_eq!(
        get(&http, format!("{base}/webhook-secret"), KEY).await,
        secret
    );
    assert_eq!(events_until_now(&http, &base, 0).await, events);
    assert!(
        created_pending.elapsed() < Duration::from_secs(20),
        "the comparison ran before the pending timers were due ({:?})",
        created_pending.elapsed()
    );
    // The key made on the embedded store, and the idempotency key, still work.
    get(&http, format!("{base}/timers"), &new_key).await;
    let again = create(&http, &base, &ok, "1s", Some("order-42")).await;
    assert_eq!(again["id"], settled["id"], "the idempotency key crossed");

    // The pending timers fire once each, and the stream resumed after the last seq
    // seen goes on with no gap.
    let mut stream = http
        .get(format!("{base}/events?after={last_seq}&timeout=60s"))
        .header("X-API-Key", KEY)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let settled_all = |text: &str| {
        let got = parse_sse(text);
        pending.iter().all(|t| {
            got.iter()
                .any(|(_, ty, d)| ty == "timer.settled" && d["timerId"] == t["id"])
        })
    };
    while !settled_all(&text) {
        let chunk = tokio::time::timeout(WAIT, stream.chunk())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let seqs: Vec<i64> = parse_sse(&text).iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        seqs,
        (last_seq + 1..last_seq + 1 + seqs.len() as i64).collect::<Vec<_>>(),
        "no gap after the last seq seen"
    );
    for t in &pending {
        assert_eq!(receiver.count(&id(t)), 1, "fired once after");
    }
    assert!(
        created_pending.elapsed() >= Duration::from_secs(20),
        "not early"
    );
    for t in [&settled, &failed] {
        assert_eq!(receiver.count(&id(t)), 1, "not run again");
    }
    stop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_in_flight_in_a_killed_serve_runs_again_after_the_migration() {
    let url = or_skip!(pg::database_url());
    let schema = Schema::new(&url, "minoots_migrate");
    let dir = tempfile::tempdir().unwrap();
    let (receiver, hooks) = start_receiver().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (mut serve, base) = serve_sqlite(dir.path());
    let timer = create(&http, &base, &format!("{hooks}/hang"), "1s", None).await;
    let id = timer["id"].as_str().unwrap().to_string();
    receiver.until(&id).await;
    // Killed while the receiver holds the call: the delivery stays in flight, in a WAL
    // that no one checkpointed.
    serve.0.kill().unwrap();
    serve.0.wait().unwrap();
    let killed = Instant::now();

    let out = migrate(dir.path(), &url, &schema);
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("{:<16} {:>10}", "in flight", 1)),
        "{summary}"
    );

    let (serve, base) = serve_postgres(&schema);
    receiver.until_count(&id, 2).await;
    println!(
        "the delivery ran again {:?} after the kill",
        killed.elapsed()
    );
    let hits = receiver.arrivals_of(&id);
    assert_eq!(hits[1].delivery, hits[0].delivery, "the same delivery id");
    assert_eq!((hits[0].attempt, hits[1].attempt), (1, 2));
    until_status(&http, &base, &id, "settled").await;
    assert_eq!(receiver.count(&id), 2);
    stop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_refuses_a_running_store_no_store_and_a_target_with_data() {
    let url = or_skip!(pg::database_url());
    let schema = Schema::new(&url, "minoots_migrate");
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // No store in the directory.
    let empty = tempfile::tempdir().unwrap();
    let out = migrate(empty.path(), &url, &schema);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no MINOOTS store"),
        "{}",
        stderr(&out)
    );

    // The store is open by a running serve: refused before the target is touched.
    let (serve, base) = serve_sqlite(dir.path());
    create(&http, &base, "http://127.0.0.1:9/ok", "1h", None).await;
    let out = migrate(dir.path(), &url, &schema);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("open by a running MINOOTS process"),
        "{}",
        stderr(&out)
    );
    assert!(!schema.exists().await, "the target was not touched");
    // The running serve is not disturbed.
    get(&http, format!("{base}/timers"), KEY).await;
    stop(serve);

    // Stopped, it moves; a second run finds the data there and refuses.
    assert!(migrate(dir.path(), &url, &schema).status.success());
    let out = migrate(dir.path(), &url, &schema);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds MINOOTS data"),
        "{}",
        stderr(&out)
    );
}
