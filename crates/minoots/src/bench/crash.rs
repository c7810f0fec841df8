//! `minoots bench crash`: the crash harness. A real `minoots serve` process on a fixed data
//! directory and fixed ports (or, with `--kill orchestrator`, the orchestrator of a
//! microservice deployment whose kernel and control plane stay up) is killed with SIGKILL
//! at random moments (seeded, the seed is printed) and started again, while a client creates timers at a steady rate, each with a
//! webhook to a sink in this process that appends `(webhook-id, timer id, receive time)` to a
//! file and fsyncs it before answering 200. At the end, with the server up again, it waits
//! (bounded) until every acknowledged timer is delivered and settled, stops the server with
//! SIGTERM and checks the guarantees from the sink's file:
//!
//! * lost = acknowledged − delivered = 0 (a create whose answer was lost in a kill is
//!   retried with the same `Idempotency-Key`; at the end the run's timers are listed, and
//!   every timer that exists counts as acknowledged);
//! * early = receipts before the timer's `fireAt` (from the server's answer) = 0, with no
//!   tolerance: the sink and the server read the same clock;
//! * every repeated receipt of a `webhook-id` has a kill between it and the previous one,
//!   and that previous receipt came at most the webhook timeout (plus an allowance) before
//!   the kill: only a delivery in flight at a kill may run twice. Duplicates across one kill
//!   ≤ the orchestrator's `--max-in-flight` (at most that many webhooks are executing when
//!   the process dies), so in all ≤ kills × `--max-in-flight`;
//! * every delivery in flight at a kill (a repeated receipt) is received again within 10 s
//!   of the restart: the new process hands back its predecessor's leases at start;
//! * the final SIGTERM exits 0.
//!
//! It prints one JSON line (`"section": "crash"`) and fails if a guarantee is violated. It
//! owns the harness only: it never reads or writes the server's store, and sends traffic to
//! loopback only.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use minoots_core::timefmt::parse_rfc3339_us;
use minoots_core::{Clock, SystemClock};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::emit;

#[derive(clap::Args, Clone)]
pub struct CrashBench {
    /// Timers created over the run, one webhook each.
    #[arg(long, default_value_t = 20_000)]
    timers: usize,
    /// SIGKILLs of the server during the run (at least 1).
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Timers created per second (the client's steady rate).
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seed of the random kill moments, downtimes and durations (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Shortest timer duration, in milliseconds.
    #[arg(long, default_value_t = 200)]
    min_duration_ms: u64,
    /// Longest timer duration, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    max_duration_ms: u64,
    /// The server's delivery lease (`serve --lease-ttl-ms`); by default the server's own
    /// default. What was in flight at a kill runs again at the restart, when the new
    /// process hands its predecessor's leases back.
    #[arg(long)]
    lease_ttl_ms: Option<u64>,
    /// The server's orchestrator: deliveries executing at once (the duplicate bound per kill).
    #[arg(long, default_value_t = 64)]
    max_in_flight: u32,
    /// Which process is killed: `serve`, or the orchestrator of a microservice deployment
    /// (kernel, control plane and orchestrator as three processes).
    #[arg(long, value_enum, default_value_t = KillTarget::Serve)]
    kill: KillTarget,
    /// Where the data directory and the sink's file are kept (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Tenant of the run's timers, created through the admin API at the first start.
const TENANT: &str = "crash";
/// The bootstrap admin key the harness hands to the server (at least 32 characters).
const ADMIN_KEY: &str = "mnt_crash_harness_admin_key_not_secret_0123456789";
/// Creates waiting for an answer at once; beyond it the steady rate waits.
const MAX_CLIENT_IN_FLIGHT: usize = 512;
/// One HTTP request of the client, before it is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between retries of a create that could not be acknowledged.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a start may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the final SIGTERM may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest downtime between a kill and the next start.
const MAX_DOWNTIME_MS: u64 = 300;
/// The webhook's own timeout.
const WEBHOOK_TIMEOUT_MS: u64 = 2_000;
/// The guarantee checked for every delivery in flight at a kill: it is received again
/// within this of the restart.
const REDELIVERY_LIMIT_US: i64 = 10_000_000;
/// `serve`'s default lease TTL, used to bound the final wait when no lease is given.
const DEFAULT_LEASE_TTL_MS: u64 = 6_000;
/// An attempt in flight at a kill was received by the sink at most this long before it: the
/// webhook's timeout plus a generous allowance for the sink's answer and the report's commit.
const IN_FLIGHT_WINDOW_US: i64 = (WEBHOOK_TIMEOUT_MS as i64 + 2_000) * 1_000;
/// Receipts fsynced together by the sink's writer.
const MAX_SINK_BATCH: usize = 4_096;
/// Receipts waiting for the sink's writer.
const SINK_QUEUE: usize = 65_536;
/// Page size of the final listing.
const PAGE: usize = 500;
/// Bounds of the whole run (besides the creates): after the last create and kill, how long
/// the harness waits for every delivery beyond one lease and the longest duration.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// splitmix64: a small seeded generator, so a run can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }
}

/// Which process the harness kills.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillTarget {
    /// `minoots serve`: kernel, orchestrator and REST in one process.
    Serve,
    /// A `minoots orchestrator` of a microservice deployment; its `minoots kernel` and
    /// `minoots control-plane` stay up.
    Orchestrator,
}

/// The processes under test. The killed one (`serve`, or the orchestrator) runs one at a
/// time on the same data directory and ports; in microservice mode the kernel and the
/// control plane are `companions`, started once and stopped at the end.
struct Server {
    target: KillTarget,
    data_dir: PathBuf,
    log: PathBuf,
    http_port: u16,
    grpc_port: u16,
    lease_ttl_ms: Option<u64>,
    max_in_flight: u32,
    child: Option<Child>,
    companions: Vec<Child>,
}

impl Server {
    /// Spawns `minoots ARGS` with stderr to the log and waits for a stdout line starting
    /// with `ready`.
    fn spawn(&self, args: &[String], ready: &'static str) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .env("MINOOTS_ADMIN_KEY", ADMIN_KEY)
            .env("MINOOTS_LOG", "warn")
            .env_remove("MINOOTS_CONFIG")
            .env_remove("MINOOTS_DEMO")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting minoots {}", args[0]))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with(ready) {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(READY_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "minoots {} did not print its ready line within {READY_TIMEOUT:?}; see {}",
                args[0],
                self.log.display()
            );
        }
        Ok(child)
    }

    /// In microservice mode, starts the kernel and the control plane (once).
    fn start_companions(&mut self) -> anyhow::Result<()> {
        if self.target != KillTarget::Orchestrator {
            return Ok(());
        }
        let port = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let kernel = vec![
            "kernel".to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--grpc-addr".into(),
            format!("127.0.0.1:{}", self.grpc_port),
            "--http-addr".into(),
            format!("127.0.0.1:{}", port()?),
        ];
        let kernel = self.spawn(&kernel, "minoots kernel ready on ")?;
        self.companions.push(kernel);
        let control_plane = vec![
            "control-plane".to_string(),
            "--kernel-url".into(),
            format!("http://127.0.0.1:{}", self.grpc_port),
            "--http-addr".into(),
            format!("127.0.0.1:{}", self.http_port),
        ];
        let control_plane = self.spawn(&control_plane, "minoots control plane ready on ")?;
        self.companions.push(control_plane);
        Ok(())
    }

    /// Starts the process the harness kills and waits for its ready line; returns the time
    /// that took.
    fn start(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut args: Vec<String> = match self.target {
            KillTarget::Serve => vec![
                "serve".into(),
                "--data-dir".into(),
                self.data_dir.display().to_string(),
                "--http-addr".into(),
                format!("127.0.0.1:{}", self.http_port),
                "--grpc-addr".into(),
                format!("127.0.0.1:{}", self.grpc_port),
            ],
            KillTarget::Orchestrator => vec![
                "orchestrator".into(),
                "--kernel-url".into(),
                format!("http://127.0.0.1:{}", self.grpc_port),
                // Its health port: any free one.
                "--http-addr".into(),
                "127.0.0.1:0".into(),
            ],
        };
        args.extend([
            "--allow-private-targets".into(),
            "--max-in-flight".into(),
            self.max_in_flight.to_string(),
        ]);
        if let Some(ms) = self.lease_ttl_ms {
            args.extend(["--lease-ttl-ms".into(), ms.to_string()]);
        }
        let ready = match self.target {
            KillTarget::Serve => "minoots ready on ",
            KillTarget::Orchestrator => "minoots orchestrator running against ",
        };
        self.child = Some(self.spawn(&args, ready)?);
        Ok(started.elapsed())
    }

    /// SIGKILL; returns when the signal was sent and when the process was gone (µs).
    fn kill(&mut self) -> anyhow::Result<(i64, i64)> {
        let mut child = self.child.take().context("no server running")?;
        let sent = SystemClock.now_us();
        child.kill()?;
        child.wait()?;
        Ok((sent, SystemClock.now_us()))
    }

    /// SIGTERM to the killed process, then to the companions (control plane before
    /// kernel); waits (bounded) for each exit. Returns the first process's status and how
    /// long the whole stop took.
    fn terminate(&mut self) -> anyhow::Result<(ExitStatus, Duration)> {
        let started = Instant::now();
        let child = self.child.take().context("no server running")?;
        let status = terminate_child(child)?;
        while let Some(c) = self.companions.pop() {
            let companion = terminate_child(c)?;
            anyhow::ensure!(
                companion.success(),
                "a companion process ended with {companion}"
            );
        }
        Ok((status, started.elapsed()))
    }
}

/// SIGTERM, then waits (bounded by [`STOP_TIMEOUT`]) for the exit.
fn terminate_child(mut child: Child) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    // SAFETY: sending a signal to our own child process.
    if unsafe { libc::kill(child.id() as i32, libc::SIGTERM) } != 0 {
        anyhow::bail!("SIGTERM failed: {}", std::io::Error::last_os_error());
    }
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > STOP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("minoots did not stop within {STOP_TIMEOUT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for mut c in self
            .child
            .take()
            .into_iter()
            .chain(self.companions.drain(..))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The webhook receiver: answers 200 only after the receipt is on disk.
struct Sink {
    queue: mpsc::Sender<(String, oneshot::Sender<()>)>,
    /// Timer ids received (durably), for the final wait.
    timers: Mutex<HashSet<String>>,
    receipts: AtomicU64,
}

async fn hook(State(sink): State<Arc<Sink>>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    let at_us = SystemClock.now_us();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
            .map(str::to_string)
    };
    let (Some(webhook_id), Some(timer_id)) = (header("webhook-id"), header("x-minoots-timer-id"))
    else {
        return StatusCode::BAD_REQUEST;
    };
    let (done, durable) = oneshot::channel();
    let line = format!("{webhook_id} {timer_id} {at_us}\n");
    if sink.queue.send((line, done)).await.is_err() || durable.await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    sink.receipts.fetch_add(1, Ordering::Relaxed);
    sink.timers.lock().expect("sink").insert(timer_id);
    StatusCode::OK
}

/// Appends queued receipts in batches, one fdatasync per batch, then lets them be answered.
async fn write_receipts(
    file: std::fs::File,
    mut queue: mpsc::Receiver<(String, oneshot::Sender<()>)>,
) {
    let file = Arc::new(file);
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_SINK_BATCH {
            match queue.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let text: String = batch.iter().map(|(l, _)| l.as_str()).collect();
        let f = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            (&*f).write_all(text.as_bytes())?;
            f.sync_data()
        })
        .await;
        match written {
            Ok(Ok(())) => batch.into_iter().for_each(|(_, done)| {
                let _ = done.send(());
            }),
            // Unanswered receipts get 500 and are retried by the server.
            other => tracing::error!(?other, "crash sink: cannot write receipts"),
        }
    }
}

async fn start_sink(path: &Path) -> anyhow::Result<(Arc<Sink>, String)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let (tx, rx) = mpsc::channel(SINK_QUEUE);
    tokio::spawn(write_receipts(file, rx));
    let sink = Arc::new(Sink {
        queue: tx,
        timers: Mutex::new(HashSet::new()),
        receipts: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((sink, url))
}

/// What the client knows of the run's timers: id → fire time, and failures.
#[derive(Default)]
struct Client {
    acked: Mutex<HashMap<String, i64>>,
    /// Requests answered with a status other than 200/201 (500s are findings).
    statuses: Mutex<HashMap<u16, u64>>,
    /// Requests that got no answer (server down, connection reset).
    no_answer: AtomicU64,
    /// Creates that never got acknowledged before the run's deadline, with the last error.
    failed: Mutex<Vec<String>>,
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", key)
            .timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    /// Creates timer `i`, retrying (same idempotency key) until it is acknowledged.
    async fn create(&self, client: &Client, run: &str, i: usize, body: String, deadline: Instant) {
        let mut last = String::new();
        while Instant::now() < deadline {
            let sent = self
                .http
                .post(format!("{}/timers", self.base))
                .header("X-API-Key", &self.key)
                .header("Idempotency-Key", format!("{run}-{i}"))
                .header("content-type", "application/json")
                .timeout(REQUEST_TIMEOUT)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().as_u16() == 201 || resp.status().as_u16() == 200 => {
                    let Ok(bytes) = resp.bytes().await else {
                        client.no_answer.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let t: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    let (Some(id), Some(at)) = (
                        t["id"].as_str(),
                        t["fireAt"].as_str().and_then(|s| parse_rfc3339_us(s).ok()),
                    ) else {
                        last = format!("an answer without id or fireAt: {t}");
                        break;
                    };
                    client
                        .acked
                        .lock()
                        .expect("acked")
                        .insert(id.to_string(), at);
                    return;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    *client
                        .statuses
                        .lock()
                        .expect("statuses")
                        .entry(status)
                        .or_default() += 1;
                    last = format!("{status}: {}", resp.text().await.unwrap_or_default());
                    // 429 and 503 are transient; so is a 5xx while the server stops. Any
                    // other answer will not change by retrying.
                    if status != 429 && status < 500 {
                        break;
                    }
                }
                Err(e) => {
                    client.no_answer.fetch_add(1, Ordering::Relaxed);
                    last = e.to_string();
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        client
            .failed
            .lock()
            .expect("failed")
            .push(format!("timer {i}: {last}"));
    }

    /// True when no timer of the run is still to fire or to be delivered.
    async fn none_open(&self, run: &str) -> anyhow::Result<bool> {
        for status in ["scheduled", "fired"] {
            let path = format!("/timers?label=run:{run}&status={status}&limit=1");
            let (code, page) = self
                .call(reqwest::Method::GET, &path, &self.key, None)
                .await?;
            anyhow::ensure!(code == 200, "listing timers answered {code}: {page}");
            if page["timers"].as_array().is_some_and(|t| !t.is_empty()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every timer of the run that the server holds: id → (fire time, status).
    async fn list_run(&self, run: &str) -> anyhow::Result<HashMap<String, (i64, String)>> {
        let mut out = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/timers?label=run:{run}&limit={PAGE}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self
                .call(reqwest::Method::GET, &path, &self.key, None)
                .await?;
            anyhow::ensure!(status == 200, "listing timers answered {status}: {page}");
            for t in page["timers"].as_array().into_iter().flatten() {
                let id = t["id"].as_str().unwrap_or_default().to_string();
                let at = t["fireAt"]
                    .as_str()
                    .and_then(|s| parse_rfc3339_us(s).ok())
                    .unwrap_or(i64::MAX);
                out.insert(
                    id,
                    (at, t["status"].as_str().unwrap_or_default().to_string()),
                );
            }
            match page["nextCursor"].as_str() {
                Some(c) => {
                    cursor = Some(url::form_urlencoded::byte_serialize(c.as_bytes()).collect())
                }
                None => return Ok(out),
            }
        }
    }
}

/// One receipt from the sink's file.
struct Receipt {
    webhook_id: String,
    timer_id: String,
    at_us: i64,
}

fn read_receipts(path: &Path) -> anyhow::Result<Vec<Receipt>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(|l| {
            let mut w = l.split(' ');
            let (Some(a), Some(b), Some(c)) = (w.next(), w.next(), w.next()) else {
                anyhow::bail!("a malformed receipt line: {l:?}");
            };
            Ok(Receipt {
                webhook_id: a.to_string(),
                timer_id: b.to_string(),
                at_us: c.parse()?,
            })
        })
        .collect()
}

pub async fn run(b: CrashBench) -> anyhow::Result<()> {
    anyhow::ensure!(b.timers > 0, "--timers must be at least 1");
    anyhow::ensure!(b.kills > 0, "--kills must be at least 1");
    anyhow::ensure!(
        (1..=10_000).contains(&b.rate),
        "--rate must be 1 to 10000 per second"
    );
    anyhow::ensure!(
        b.min_duration_ms >= 1
            && b.min_duration_ms <= b.max_duration_ms
            && b.max_duration_ms <= 600_000,
        "--min-duration-ms must be at least 1 and at most --max-duration-ms (at most 600000)"
    );
    anyhow::ensure!(
        b.lease_ttl_ms
            .is_none_or(|ms| (1_000..=3_600_000).contains(&ms)),
        "--lease-ttl-ms must be 1000 to 3600000"
    );
    let lease_ttl_ms = b.lease_ttl_ms.unwrap_or(DEFAULT_LEASE_TTL_MS);
    anyhow::ensure!(
        (1..=4_096).contains(&b.max_in_flight),
        "--max-in-flight must be 1 to 4096"
    );
    let seed = b.seed.unwrap_or_else(|| SystemClock.now_us() as u64);
    // The seed first, so a failing run can be repeated even if it never finishes.
    eprintln!("minoots bench crash: seed {seed}");
    let mut rng = Rng(seed);
    let run = format!("r{seed:x}");
    let tmp = tempfile::tempdir()?;
    let base = b.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let base = super::section_dir(&base, "crash")?;
    let receipts_path = base.join("receipts.log");
    let free_port = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let mut server = Server {
        data_dir: base.join("data"),
        log: base.join("server.log"),
        http_port: free_port()?,
        grpc_port: free_port()?,
        lease_ttl_ms: b.lease_ttl_ms,
        max_in_flight: b.max_in_flight,
        child: None,
        companions: Vec::new(),
        target: b.kill,
    };
    let (sink, hook_url) = start_sink(&receipts_path).await?;
    let started = Instant::now();
    tokio::task::block_in_place(|| server.start_companions())?;
    let mut ready_ms = vec![tokio::task::block_in_place(|| server.start())?.as_millis() as u64];

    // A tenant without limits and a key for it.
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut api = Api {
        http,
        base: format!("http://127.0.0.1:{}", server.http_port),
        key: String::new(),
    };
    let (s, t) = api
        .call(
            reqwest::Method::POST,
            "/admin/tenants",
            ADMIN_KEY,
            Some(json!({"id": TENANT, "name": "crash harness", "tier": "unlimited"})),
        )
        .await?;
    anyhow::ensure!(s == 201, "creating the tenant answered {s}: {t}");
    let (s, k) = api
        .call(
            reqwest::Method::POST,
            "/admin/keys",
            ADMIN_KEY,
            Some(json!({"tenantId": TENANT, "name": "crash", "roles": ["timers:read", "timers:write"]})),
        )
        .await?;
    anyhow::ensure!(s == 201, "creating the key answered {s}: {k}");
    api.key = k["key"]
        .as_str()
        .context("the key's plaintext")?
        .to_string();
    let api = Arc::new(api);

    // The client: timer i is created at start + i / rate, whatever happens to the server.
    let client = Arc::new(Client::default());
    let create_secs = b.timers as f64 / f64::from(b.rate);
    let create_deadline = Instant::now()
        + Duration::from_secs_f64(create_secs)
        + SETTLE_TIMEOUT
        + Duration::from_secs(60);
    let durations: Vec<u64> = (0..b.timers)
        .map(|_| rng.between(b.min_duration_ms, b.max_duration_ms))
        .collect();
    let creator = {
        let (api, client, run, hook_url) =
            (api.clone(), client.clone(), run.clone(), hook_url.clone());
        let rate = b.rate;
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_CLIENT_IN_FLIGHT));
            let begin = tokio::time::Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for (i, d) in durations.into_iter().enumerate() {
                tokio::time::sleep_until(
                    begin + Duration::from_secs_f64(i as f64 / f64::from(rate)),
                )
                .await;
                let permit = slots.clone().acquire_owned().await.expect("open");
                let body = json!({
                    "name": format!("crash-{i}"),
                    "duration": format!("{d}ms"),
                    "labels": {"run": run},
                    "actionBundle": {
                        "actions": [{"type": "webhook", "url": hook_url, "timeoutMs": WEBHOOK_TIMEOUT_MS}],
                        "retryPolicy": {"maxAttempts": 100, "initialBackoffMs": 100, "maxBackoffMs": 1000}
                    }
                })
                .to_string();
                let (api, client, run) = (api.clone(), client.clone(), run.clone());
                tasks.spawn(async move {
                    api.create(&client, &run, i, body, create_deadline).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };

    // The killer: kills spread over the creating phase at random moments.
    let mean_up = (create_secs / b.kills as f64).max(0.3);
    let mut kills: Vec<(i64, i64)> = Vec::with_capacity(b.kills);
    let mut downtime_ms = Vec::with_capacity(b.kills);
    // When each restarted server was spawned: a delivery in flight at the kill may come back
    // before the harness has read the new server's ready line.
    let mut restarted_us: Vec<i64> = Vec::with_capacity(b.kills);
    for _ in 0..b.kills {
        let up = mean_up * (0.2 + 1.6 * (rng.next() % 1_000) as f64 / 1_000.0);
        tokio::time::sleep(Duration::from_secs_f64(up)).await;
        kills.push(tokio::task::block_in_place(|| server.kill())?);
        let down = rng.between(0, MAX_DOWNTIME_MS);
        downtime_ms.push(down);
        tokio::time::sleep(Duration::from_millis(down)).await;
        restarted_us.push(SystemClock.now_us());
        ready_ms.push(tokio::task::block_in_place(|| server.start())?.as_millis() as u64);
    }
    creator.await?;
    let created_s = started.elapsed().as_secs_f64();

    // Reconcile: a timer that exists was acknowledged, whether or not its answer arrived.
    let listed = api.list_run(&run).await?;
    let mut acked = client.acked.lock().expect("acked").clone();
    let client_acked = acked.len();
    let mut reconciled = 0usize;
    for (id, (at, _)) in &listed {
        if !acked.contains_key(id) {
            acked.insert(id.clone(), *at);
            reconciled += 1;
        }
    }
    let not_listed = acked.keys().filter(|id| !listed.contains_key(*id)).count();

    // Wait (bounded) until every acknowledged timer was received and none is left to run.
    let settle_deadline =
        Instant::now() + SETTLE_TIMEOUT + Duration::from_millis(lease_ttl_ms + b.max_duration_ms);
    let settled = loop {
        let all_received = {
            let got = sink.timers.lock().expect("sink");
            acked.keys().all(|id| got.contains(id))
        };
        if all_received && api.none_open(&run).await? {
            break true;
        }
        if Instant::now() > settle_deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (exit, stop) = tokio::task::block_in_place(|| server.terminate())?;
    let elapsed_s = started.elapsed().as_secs_f64();

    // The verdict, from the sink's file.
    let receipts = read_receipts(&receipts_path)?;
    let mut by_webhook: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut received: HashSet<&str> = HashSet::new();
    let mut early = 0usize;
    let mut unknown = 0usize;
    for r in &receipts {
        by_webhook.entry(&r.webhook_id).or_default().push(r.at_us);
        received.insert(&r.timer_id);
        match acked.get(&r.timer_id) {
            Some(at) if r.at_us < *at => early += 1,
            Some(_) => {}
            None => unknown += 1,
        }
    }
    let delivered = acked
        .keys()
        .filter(|id| received.contains(id.as_str()))
        .count();
    let lost = acked.len() - delivered;
    let duplicates = receipts.len() - by_webhook.len();
    // A repeat is explained only by a kill between it and the previous receipt.
    let mut unexplained = 0usize;
    let mut per_kill = vec![0usize; kills.len()];
    // For each repeat across a kill: how long after the restart it was received again.
    let mut after_restart_us: Vec<i64> = Vec::new();
    for times in by_webhook.values_mut().filter(|t| t.len() > 1) {
        times.sort_unstable();
        for pair in times.windows(2) {
            let straddled: Vec<usize> = kills
                .iter()
                .enumerate()
                .filter(|(_, (sent, dead))| {
                    pair[0] <= *dead && pair[0] >= sent - IN_FLIGHT_WINDOW_US && pair[1] >= *sent
                })
                .map(|(k, _)| k)
                .collect();
            match straddled.first() {
                Some(k) => {
                    per_kill[*k] += 1;
                    after_restart_us.push(pair[1] - restarted_us[*k]);
                }
                None => unexplained += 1,
            }
        }
    }
    let bound = kills.len() * b.max_in_flight as usize;
    let failed = client.failed.lock().expect("failed").clone();
    let statuses: serde_json::Map<String, serde_json::Value> = client
        .statuses
        .lock()
        .expect("statuses")
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    ready_ms.sort_unstable();
    let mut violations = Vec::new();
    if lost > 0 {
        violations.push(format!("{lost} acknowledged timers never delivered"));
    }
    if early > 0 {
        violations.push(format!("{early} deliveries before their fireAt"));
    }
    if unexplained > 0 {
        violations.push(format!(
            "{unexplained} duplicates with no kill between the receipts"
        ));
    }
    if let Some(k) = per_kill.iter().position(|&n| n > b.max_in_flight as usize) {
        violations.push(format!(
            "{} duplicates across kill {k}, above --max-in-flight {}",
            per_kill[k], b.max_in_flight
        ));
    }
    if duplicates > bound {
        violations.push(format!("{duplicates} duplicates above the bound {bound}"));
    }
    if unknown > 0 {
        violations.push(format!(
            "{unknown} receipts for timers the run does not know"
        ));
    }
    if not_listed > 0 {
        violations.push(format!(
            "{not_listed} acknowledged timers missing from the listing"
        ));
    }
    if !failed.is_empty() {
        violations.push(format!(
            "{} creates never acknowledged, first: {}",
            failed.len(),
            failed[0]
        ));
    }
    after_restart_us.sort_unstable();
    let slow_redeliveries = after_restart_us
        .iter()
        .filter(|&&us| us > REDELIVERY_LIMIT_US)
        .count();
    if slow_redeliveries > 0 {
        violations.push(format!(
            "{slow_redeliveries} deliveries in flight at a kill were received again more than {} s after the restart",
            REDELIVERY_LIMIT_US / 1_000_000
        ));
    }
    if !settled {
        violations.push("timers still open at the end of the wait".into());
    }
    if !exit.success() {
        violations.push(format!("the final SIGTERM ended with {exit}"));
    }
    emit(json!({
        "section": "crash",
        "seed": seed,
        "timers": b.timers,
        "rate_per_s": b.rate,
        "acknowledged": acked.len(),
        "acknowledged_by_answer": client_acked,
        "acknowledged_by_listing": reconciled,
        "delivered": delivered,
        "lost": lost,
        "early": early,
        "receipts": receipts.len(),
        "duplicates": duplicates,
        "duplicates_per_kill": per_kill,
        "duplicates_without_a_kill_between": unexplained,
        "in_flight_at_kills_bound": bound,
        "killed": format!("{:?}", b.kill).to_lowercase(),
        "lease_ttl_ms": b.lease_ttl_ms.map_or_else(|| json!("default"), |ms| json!(ms)),
        "redelivered_after_restart_ms": {
            "p50": after_restart_us.get(after_restart_us.len() / 2).map(|us| us / 1_000),
            "max": after_restart_us.last().map(|us| us / 1_000),
        },
        "unknown_receipts": unknown,
        "kills": kills.len(),
        "downtime_ms": downtime_ms,
        "ready_ms": {"min": ready_ms.first(), "max": ready_ms.last(), "p50": ready_ms.get(ready_ms.len() / 2)},
        "create_failures": failed.len(),
        "requests_without_answer": client.no_answer.load(Ordering::Relaxed),
        "answers_by_status": statuses,
        "sink_receipts_answered": sink.receipts.load(Ordering::Relaxed),
        "creating_s": (created_s * 10.0).round() / 10.0,
        "sigterm_exit_code": exit.code(),
        "sigterm_stop_ms": stop.as_millis() as u64,
        "elapsed_s": (elapsed_s * 10.0).round() / 10.0,
        "violations": violations,
    }));
    anyhow::ensure!(
        violations.is_empty(),
        "crash guarantees violated (seed {seed}): {}",
        violations.join("; ")
    );
    Ok(())
}
