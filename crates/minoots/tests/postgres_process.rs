//! `minoots serve --database-url` as real processes on a real PostgreSQL, with default
//! settings: two `serve` processes on one database share its shards of timers, and
//! timers created through one fire wherever their shard is held, each once; when one is
//! SIGKILLed, the other takes its shards over within one shard lease (10 s) and fires
//! what it held; and a `serve` SIGSTOPped past its lease, whose shards another took, is
//! refused by the fence when it wakes and tries to fire them (counted at its
//! `/metrics`), while every timer arrives exactly once.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; each test uses a schema of its own, dropped at the
//! end. Without it every test prints "skipped: no database" and passes.

mod common;

use std::time::{Duration, Instant};

use common::pg::{self, Receiver, Schema, metric, signal, until_metric};
use common::{KillOnDrop, WAIT};

const KEY: &str = "mnt_demo_key_free";
/// The demo tenant's tier without limits: the tests create more timers than the free
/// tier keeps pending.
const TIERS: &str = r#"{"free": {"requestsPerMinute": null, "createsPerMinute": null, "timersPerDay": null, "pendingTimers": null, "maxDurationMs": null}}"#;
/// A kernel's shard lease with default settings.
const SHARD_LEASE: Duration = Duration::from_secs(10);

/// Starts `serve --demo` on the schema; returns it and its REST base URL.
fn start_serve(schema: &Schema) -> (KillOnDrop, String) {
    pg::start_serve(schema, &["--demo"], &[("MINOOTS_TIERS", TIERS)])
}

async fn create(http: &reqwest::Client, base: &str, hook: &str, duration: &str) -> String {
    let body = serde_json::json!({
        "tenantId": "test", "name": "pg", "duration": duration,
        "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
    });
    let timer = common::create_timer(http, base, KEY, body).await;
    timer["id"].as_str().unwrap().to_string()
}

/// Creates `n` timers through `base`, due after `duration`.
async fn create_many(
    http: &reqwest::Client,
    base: &str,
    hook: &str,
    duration: &str,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(create(http, base, hook, duration).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_share_the_timers_and_one_fires_what_a_killed_one_held() {
    let url = or_skip!(pg::database_url());
    let schema = Schema::new(&url, "minoots_proc");
    let (receiver, hook) = Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (_a, a) = start_serve(&schema);
    let (mut b_proc, b) = start_serve(&schema);
    for base in [&a, &b] {
        until_metric(&http, base, "minoots_shards_held", |h| h == 32.0, WAIT).await;
    }
    // Created through one, fired by whichever holds each timer's shard: all arrive, once.
    let shared = create_many(&http, &a, &hook, "2s", 40).await;
    for id in &shared {
        receiver.until(id).await;
    }
    let fired_b = metric(&http, &b, "minoots_timers_fired_total").await;
    assert!(
        fired_b > 0.0,
        "the second serve fired the timers of its shards"
    );

    // One serve is killed while timers of its shards are due: the other fires them once
    // it has taken the shards over, within one shard lease and a round.
    let due = create_many(&http, &a, &hook, "1s", 40).await;
    b_proc.0.kill().unwrap();
    b_proc.0.wait().unwrap();
    let killed = Instant::now();
    for id in &due {
        receiver.until(id).await;
    }
    let took = killed.elapsed();
    println!("every timer of the killed serve's shards arrived {took:?} after the kill");
    assert!(
        took < SHARD_LEASE + Duration::from_secs(5),
        "taken over within one lease and a round, then fired at once ({took:?})"
    );
    until_metric(&http, &a, "minoots_shards_held", |h| h == 64.0, WAIT).await;
    for id in shared.iter().chain(&due) {
        assert_eq!(receiver.count(id), 1, "timer {id} arrived once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_stopped_past_its_lease_is_fenced_when_it_wakes() {
    let url = or_skip!(pg::database_url());
    let schema = Schema::new(&url, "minoots_proc");
    let (receiver, hook) = Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (stopped, a) = start_serve(&schema);
    let (_b, b) = start_serve(&schema);
    for base in [&a, &b] {
        until_metric(&http, base, "minoots_shards_held", |h| h == 32.0, WAIT).await;
    }
    // Timers due in 4 s, created through a: each of its shards is in its window before
    // the create is answered.
    let due = create_many(&http, &a, &hook, "4s", 40).await;
    signal(&stopped.0, libc::SIGSTOP);
    // b takes the stopped serve's shards when their leases end and fires its timers.
    until_metric(&http, &b, "minoots_shards_held", |h| h == 64.0, WAIT).await;
    for id in &due {
        receiver.until(id).await;
    }
    // Woken, the stale serve tries to fire what its window still holds: refused.
    signal(&stopped.0, libc::SIGCONT);
    until_metric(&http, &a, "minoots_fires_fenced_total", |f| f != 0.0, WAIT).await;
    // It rejoins: the shards are shared again, and nothing arrived twice.
    for base in [&a, &b] {
        until_metric(&http, base, "minoots_shards_held", |h| h == 32.0, WAIT).await;
    }
    for id in &due {
        assert_eq!(receiver.count(id), 1, "timer {id} arrived once");
    }
}
