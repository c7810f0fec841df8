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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KillOnDrop, WAIT, free_port, start_process};
use tokio::sync::Notify;

const KEY: &str = "mnt_demo_key_free";
/// The demo tenant's tier without limits: the tests create more timers than the free
/// tier keeps pending.
const TIERS: &str = r#"{"free": {"requestsPerMinute": null, "createsPerMinute": null, "timersPerDay": null, "pendingTimers": null, "maxDurationMs": null}}"#;
/// A kernel's shard lease with default settings.
const SHARD_LEASE: Duration = Duration::from_secs(10);

fn database_url() -> Option<String> {
    std::env::var("MINOOTS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

macro_rules! or_skip {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => {
                println!("skipped: no database");
                return;
            }
        }
    };
}

/// A schema of the test's own, dropped with this value.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str) -> Self {
        Self {
            url: url.into(),
            name: format!("minoots_proc_{:016x}", fastrand::u64(..)),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let client = admin(&url).await;
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                })
        })
        .join();
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// A loopback webhook receiver counting deliveries per timer id.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<String>>,
    arrived: Notify,
}

impl Receiver {
    async fn start() -> (Arc<Self>, String) {
        let me = Arc::new(Self::default());
        let app = {
            let me = me.clone();
            axum::Router::new().route(
                "/hook",
                axum::routing::post(move |headers: axum::http::HeaderMap| {
                    let me = me.clone();
                    async move {
                        let id = headers["x-minoots-timer-id"].to_str().unwrap().to_string();
                        me.got.lock().unwrap().push(id);
                        me.arrived.notify_waiters();
                        "ok"
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, hook)
    }

    fn count(&self, id: &str) -> usize {
        self.got.lock().unwrap().iter().filter(|g| *g == id).count()
    }

    /// Waits until `id` arrived at least once.
    async fn until(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.count(id) == 0 {
            let wait = self.arrived.notified();
            if self.count(id) > 0 {
                break;
            }
            tokio::time::timeout_at(deadline, wait)
                .await
                .unwrap_or_else(|_| panic!("the webhook of timer {id} arrives"));
        }
    }
}

/// Starts `serve --demo` on the schema; returns it and its REST base URL.
fn start_serve(url: &str, schema: &Schema) -> (KillOnDrop, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let (child, _) = start_process(
        &[
            "serve",
            "--demo",
            "--database-url",
            url,
            "--database-schema",
            &schema.name,
            "--http-addr",
            &http,
            "--grpc-addr",
            &grpc,
        ],
        &[("MINOOTS_TIERS", TIERS)],
        "minoots ready on ",
    );
    (KillOnDrop(child), format!("http://{http}"))
}

async fn create(http: &reqwest::Client, base: &str, hook: &str, duration: &str) -> String {
    let body = serde_json::json!({
        "tenantId": "test", "name": "pg", "duration": duration,
        "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
    });
    let (status, timer) = common::call(
        http,
        reqwest::Method::POST,
        format!("{base}/timers"),
        KEY,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{timer}");
    timer["id"].as_str().unwrap().to_string()
}

/// A counter or gauge of a `serve`'s `/metrics`.
async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .header("X-API-Key", KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Waits (at most `within`) until the metric has the value.
async fn until_metric(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    value: f64,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    while metric(http, base, name).await != value {
        assert!(
            Instant::now() < deadline,
            "{name} reaches {value} at {base}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// Sends a signal to a child process.
fn signal(child: &std::process::Child, sig: libc::c_int) {
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "signal {sig} sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_share_the_timers_and_one_fires_what_a_killed_one_held() {
    let url = or_skip!(database_url());
    let schema = Schema::new(&url);
    let (receiver, hook) = Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (_a, a) = start_serve(&url, &schema);
    let (mut b_proc, b) = start_serve(&url, &schema);
    for base in [&a, &b] {
        until_metric(&http, base, "minoots_shards_held", 32.0, WAIT).await;
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
    until_metric(&http, &a, "minoots_shards_held", 64.0, WAIT).await;
    for id in shared.iter().chain(&due) {
        assert_eq!(receiver.count(id), 1, "timer {id} arrived once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_stopped_past_its_lease_is_fenced_when_it_wakes() {
    let url = or_skip!(database_url());
    let schema = Schema::new(&url);
    let (receiver, hook) = Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (stopped, a) = start_serve(&url, &schema);
    let (_b, b) = start_serve(&url, &schema);
    for base in [&a, &b] {
        until_metric(&http, base, "minoots_shards_held", 32.0, WAIT).await;
    }
    // Timers due in 4 s, created through a: each of its shards is in its window before
    // the create is answered.
    let due = create_many(&http, &a, &hook, "4s", 40).await;
    signal(&stopped.0, libc::SIGSTOP);
    // b takes the stopped serve's shards when their leases end and fires its timers.
    until_metric(&http, &b, "minoots_shards_held", 64.0, WAIT).await;
    for id in &due {
        receiver.until(id).await;
    }
    // Woken, the stale serve tries to fire what its window still holds: refused.
    signal(&stopped.0, libc::SIGCONT);
    let deadline = Instant::now() + WAIT;
    while metric(&http, &a, "minoots_fires_fenced_total").await == 0.0 {
        assert!(Instant::now() < deadline, "the stale fires are fenced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It rejoins: the shards are shared again, and nothing arrived twice.
    for base in [&a, &b] {
        until_metric(&http, base, "minoots_shards_held", 32.0, WAIT).await;
    }
    for id in &due {
        assert_eq!(receiver.count(id), 1, "timer {id} arrived once");
    }
}
