//! Helpers for the tests that run real `minoots` processes on a real PostgreSQL: the test
//! database's URL and the skip without one, a schema of each test's own, an admin
//! connection, `serve` and `kernel` processes on that schema, a loopback webhook
//! receiver, the processes' `/metrics`, and signals.
//!
//! Each of these files once carried its own copy; this module is the one place they
//! live, so that a fix (a cleaner drop, a clearer timeout message) reaches every test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use tokio::sync::Notify;

use super::{KillOnDrop, WAIT, free_port, start_process};

/// The test database from `MINOOTS_TEST_DATABASE_URL`, or `None` when it is unset or
/// empty: these tests need a server that a developer may not run, so without one they
/// skip (see [`or_skip!`](crate::or_skip)) rather than fail.
pub fn database_url() -> Option<String> {
    std::env::var("MINOOTS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// `or_skip!(option)`: the value inside, or — printing "skipped: no database" — a return
/// from the test, which then passes. Written for [`database_url`]:
/// `let url = or_skip!(pg::database_url());`.
#[macro_export]
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

/// A connection to the test database for the test itself (to read what the processes
/// wrote, or to drop a schema), its connection driven on the current runtime.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// A schema of the test's own (`--database-schema`), so that tests sharing one database
/// never see each other's data; dropped, with everything in it, when this value is.
///
/// Declare it before the processes that use it: they are dropped (killed) first, and so
/// hold no connection to the schema when it goes.
pub struct Schema {
    /// The test database's URL.
    pub url: String,
    /// `{prefix}_{16 hex digits}`: a plain identifier, usable unquoted in SQL.
    pub name: String,
}

impl Schema {
    /// A fresh name under `prefix` (a lowercase identifier that says which test file made
    /// it, should one be left behind). The schema itself is created by whoever first opens
    /// it: a process, or `migrate-store`.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.into(),
            name: format!("{prefix}_{:016x}", fastrand::u64(..)),
        }
    }

    /// Whether the schema exists (a process or a migration created it).
    pub async fn exists(&self) -> bool {
        admin(&self.url)
            .await
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&self.name],
            )
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // On a thread of its own: drop may run inside the test's runtime, which cannot
        // block on another.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _ = admin(&url)
                        .await
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                })
        })
        .join();
    }
}

/// Starts `minoots serve` on `schema` with `extra` flags (`--demo`, say) and `env`, on free
/// ports; waits for its ready line. Returns it and its REST base URL (`/metrics` too).
pub fn start_serve(schema: &Schema, extra: &[&str], env: &[(&str, &str)]) -> (KillOnDrop, String) {
    let (child, http, _) = start_on(schema, "serve", extra, env, "minoots ready on ");
    (child, http)
}

/// Starts `minoots kernel` on `schema` with `extra` flags, on free ports; waits for its
/// ready line. Returns it, its gRPC URL (for a control plane or an orchestrator) and the
/// base URL of its `/metrics` and health checks.
pub fn start_kernel(schema: &Schema, extra: &[&str]) -> (KillOnDrop, String, String) {
    let (child, http, grpc) = start_on(schema, "kernel", extra, &[], "minoots kernel ready on ");
    (child, grpc, http)
}

/// Starts `minoots {subcommand}` on the schema, its HTTP and gRPC on free loopback ports;
/// returns it and the two as `http://` URLs.
fn start_on(
    schema: &Schema,
    subcommand: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    ready_prefix: &'static str,
) -> (KillOnDrop, String, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        subcommand,
        "--database-url",
        &schema.url,
        "--database-schema",
        &schema.name,
        "--http-addr",
        &http,
        "--grpc-addr",
        &grpc,
    ];
    args.extend_from_slice(extra);
    let (child, _) = start_process(&args, env, ready_prefix);
    (
        KillOnDrop(child),
        format!("http://{http}"),
        format!("http://{grpc}"),
    )
}

/// One webhook that reached a [`Receiver`].
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The path it was sent to, without the leading `/` (`hook` for [`Receiver::start`]).
    pub path: String,
    /// `x-minoots-timer-id` (empty if missing).
    pub timer: String,
    /// `webhook-id`: the delivery id, the same on every attempt of one delivery (empty if
    /// missing).
    pub delivery: String,
    /// `x-minoots-attempt` (0 if missing).
    pub attempt: u32,
    /// When it arrived, by the wall clock: the processes run on this machine's clock too,
    /// so it compares directly with a timer's fire time.
    pub at: SystemTime,
}

/// How a [`Receiver`] answers one arrival.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// This status, at once.
    Now(StatusCode),
    /// 200, after holding the call this long (a delivery still in flight meanwhile).
    After(Duration),
    /// Never: the call stays open until the sender gives up or dies.
    Never,
}

#[derive(Default)]
struct Arrivals {
    all: Vec<Arrival>,
    /// Indices into `all` of each timer's arrivals, so that counting stays cheap with
    /// many timers.
    by_timer: HashMap<String, Vec<usize>>,
    /// Arrivals so far on each path.
    by_path: HashMap<String, usize>,
}

/// A loopback webhook receiver: the target of the timers' webhooks, recording every
/// arrival (which timer, which delivery and attempt, when), so that a test can wait for
/// a timer to arrive and check that it arrived once.
#[derive(Default)]
pub struct Receiver {
    got: Mutex<Arrivals>,
    arrived: Notify,
}

impl Receiver {
    /// Starts a receiver that answers 200 at once; returns it and the webhook URL
    /// (`http://127.0.0.1:PORT/hook`).
    pub async fn start() -> (Arc<Self>, String) {
        let (me, base) = Self::answering(|_, _| Answer::Now(StatusCode::OK)).await;
        (me, format!("{base}/hook"))
    }

    /// Starts a receiver that takes webhooks on any path `/{path}` and answers each as
    /// `answer(path, n)` says, `n` counting the arrivals on that path so far, this one
    /// included (1 for the first). Returns it and its base URL (`http://127.0.0.1:PORT`).
    pub async fn answering(
        answer: impl Fn(&str, usize) -> Answer + Send + Sync + 'static,
    ) -> (Arc<Self>, String) {
        let me = Arc::new(Self::default());
        let answer = Arc::new(answer);
        let app = {
            let me = me.clone();
            axum::Router::new().route(
                "/{path}",
                axum::routing::post(
                    move |axum::extract::Path(path): axum::extract::Path<String>,
                          headers: HeaderMap| {
                        let (me, answer) = (me.clone(), answer.clone());
                        async move {
                            let n = me.record(&path, &headers);
                            match answer(&path, n) {
                                Answer::Now(status) => status,
                                Answer::After(hold) => {
                                    tokio::time::sleep(hold).await;
                                    StatusCode::OK
                                }
                                Answer::Never => std::future::pending().await,
                            }
                        }
                    },
                ),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, base)
    }

    /// Records an arrival on `path`; returns how many arrived on that path so far.
    fn record(&self, path: &str, headers: &HeaderMap) -> usize {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let arrival = Arrival {
            path: path.to_string(),
            timer: header("x-minoots-timer-id"),
            delivery: header("webhook-id"),
            attempt: header("x-minoots-attempt").parse().unwrap_or(0),
            at: SystemTime::now(),
        };
        let n = {
            let mut got = self.got.lock().unwrap();
            let i = got.all.len();
            got.by_timer
                .entry(arrival.timer.clone())
                .or_default()
                .push(i);
            let n = got.by_path.entry(arrival.path.clone()).or_default();
            *n += 1;
            let n = *n;
            got.all.push(arrival);
            n
        };
        self.arrived.notify_waiters();
        n
    }

    /// How many times the webhook of timer `id` arrived.
    pub fn count(&self, id: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .by_timer
            .get(id)
            .map_or(0, Vec::len)
    }

    /// The arrivals of timer `id`, in the order they came.
    pub fn arrivals_of(&self, id: &str) -> Vec<Arrival> {
        let got = self.got.lock().unwrap();
        got.by_timer.get(id).map_or(Vec::new(), |at| {
            at.iter().map(|&i| got.all[i].clone()).collect()
        })
    }

    /// Every arrival so far, in the order they came.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.got.lock().unwrap().all.clone()
    }

    /// How many distinct timers arrived.
    pub fn distinct(&self) -> usize {
        self.got.lock().unwrap().by_timer.len()
    }

    /// Waits (at most [`WAIT`]) until timer `id` arrived at least once.
    pub async fn until(&self, id: &str) {
        self.until_true(
            || self.count(id) > 0,
            &format!("the webhook of timer {id} arrives"),
        )
        .await;
    }

    /// Waits (at most [`WAIT`]) until timer `id` arrived at least `n` times.
    pub async fn until_count(&self, id: &str, n: usize) {
        self.until_true(
            || self.count(id) >= n,
            &format!("timer {id} arrives {n} times"),
        )
        .await;
    }

    /// Waits (at most [`WAIT`]) until every timer in `ids` arrived at least once.
    pub async fn until_all(&self, ids: &[String]) {
        self.until_true(
            || {
                let got = self.got.lock().unwrap();
                ids.iter().all(|id| got.by_timer.contains_key(id))
            },
            "every webhook arrives",
        )
        .await;
    }

    /// Waits until `done` holds, checking after every arrival; panics with `what` after
    /// [`WAIT`].
    async fn until_true(&self, done: impl Fn() -> bool, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // Registered before the check, so an arrival between the two still wakes us.
            let wait = self.arrived.notified();
            if done() {
                return;
            }
            tokio::time::timeout_at(deadline, wait)
                .await
                .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"));
        }
    }
}

/// A counter or gauge without labels, read from `{base}/metrics` (Prometheus text, no
/// key needed): how the tests see what a process did (shards held, timers fired, fires
/// fenced) without reaching into it.
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}/metrics answers: {e}"))
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Waits (at most `within`, polling every 100 ms) until `holds` is true of the metric
/// (see [`metric`]); returns its value. The processes converge on their own schedule
/// (leases, rounds), so a test waits for a state rather than sleeping a guess.
pub async fn until_metric(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    holds: impl Fn(f64) -> bool,
    within: Duration,
) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let value = metric(http, base, name).await;
        if holds(value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{name} at {base} did not reach the expected value in {within:?} (last {value})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `sig` to a child process: SIGKILL, SIGSTOP and SIGCONT are how these tests make
/// a process die or stall past its lease (SIGTERM has [`super::terminate`]).
pub fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "signal {sig} sent");
}
