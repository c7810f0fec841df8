//! `minoots bench kernel`: the kernel's own numbers, measured in one process on this
//! machine's disk, with an fsync calibration printed first because disks vary run to run.
//!
//! * schedules: durable creates per second through `KernelApi::schedule_timer` (validation,
//!   group commit, window update) from many concurrent callers, with per-call latency.
//! * lateness: timers due uniformly within a few seconds; lateness of the firing thread
//!   (fired − due, as stored on each timer) and of the durable `timer.fired` event as seen
//!   by a live subscriber (commit + broadcast included).
//! * rss: resident memory per pending timer for timers due 1 h – 7 d out, store bytes,
//!   and the time to ready after a restart with all of them pending (vs. an empty store).
//!
//! `minoots bench delivery`: webhook deliveries per second through the kernel and the
//! orchestrator in this process, to a local receiver, checking that every timer's webhook
//! arrived exactly once. The receiver is deliberately minimal (a raw keep-alive HTTP/1.1
//! sink, see [`Receiver`]) so that it takes little of the CPU it shares with what is
//! measured.
//!
//! Each section prints one JSON object per line; nothing here asserts timings.

mod churn;
mod cluster;
mod crash;
mod curve;
mod cycle;
mod flood;
mod http;
mod otlp_sink;
mod recovery;
mod recurring;
mod takeover;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_core::{Clock, EventType, SystemClock, TimerRequest};
use minoots_kernel::{Kernel, KernelApi, KernelConfig};
use minoots_store::{
    EventQuery, PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, Store, TimerQuery,
};
use serde_json::json;
use tokio_stream::StreamExt;

/// The workloads. W1–W6 are the project's reference workloads (docs/benchmarks.md has
/// their targets); each can be named by number or by what it measures.
#[derive(clap::Subcommand)]
pub enum Workload {
    /// W1: durable creates/s through `POST /timers` and gRPC next to a no-storage
    /// baseline endpoint, and latency at a fixed offered rate.
    #[command(visible_aliases = ["w1", "create"])]
    Http(http::HttpBench),
    /// W2: 100,000 timers with webhooks due within 10 s: lateness at the kernel (fired −
    /// due) and at a local webhook receiver (received − due), missed and duplicated.
    #[command(visible_alias = "w2")]
    Lateness(LatenessBench),
    /// W3: resident memory and store bytes per far-future timer (1,000,000 due 1 h – 7 d).
    #[command(visible_alias = "w3")]
    Memory(MemoryBench),
    /// W4: webhook deliveries/s through kernel + orchestrator to a local keep-alive
    /// receiver, with all responses 200 and again with 5 % of them 500.
    #[command(visible_alias = "w4")]
    Delivery(DeliveryBench),
    /// W5: many pending and some overdue timers, SIGKILL, restart: ready time, time to fire
    /// the overdue ones, lost and duplicated.
    #[command(visible_alias = "w5")]
    Recovery(recovery::RecoveryBench),
    /// W5 on PostgreSQL (`--database-url`): two `minoots kernel` processes, one SIGKILLed
    /// with timers of its shards due; time until the other took its shards and fired them.
    Takeover(takeover::TakeoverBench),
    /// Schedules firing every minute, all at second 0: slots fired per second, slot
    /// lateness, missing and doubled slots, memory per schedule.
    Recurring(recurring::RecurringBench),
    /// W6: create timers, cancel 90 % before they fire; cancels/s and memory afterwards.
    #[command(visible_alias = "w6")]
    Churn(churn::ChurnBench),
    /// The kernel alone: durable schedules/s, firing lateness, memory per pending timer.
    Kernel(KernelBench),
    /// The embedded store's part of each delivery alone (fire, lease, report), without
    /// HTTP: the single writer's throughput, for comparing changes to the write path.
    Cycle(cycle::CycleBench),
    /// The delivery path's latency curve: W2 at 1k, 2k, 5k, 10k, 15k and 20k webhooks/s in
    /// one sitting; lateness, achieved rate, lost/doubled/early per step (`--svg` plots it).
    Curve(curve::CurveBench),
    /// W1 to W6 one after another, each in its own process (so one workload's memory does
    /// not inflate the next one's baseline), in one sitting.
    All(AllBench),
    /// Firing lateness while clients flood the REST API with guessed keys, against quiet
    /// runs (alternating).
    Flood(flood::FloodBench),
    /// Timers created at a steady rate while `minoots serve` is SIGKILLed and
    /// restarted; lost, early and duplicated deliveries, then a SIGTERM that must exit 0.
    Crash(crash::CrashBench),
    /// An OTLP/gRPC receiver that counts the spans it is sent and drops them: the collector
    /// of a workload run with `--otlp-endpoint`, to measure what tracing costs.
    OtlpSink(otlp_sink::OtlpSinkBench),
}

#[derive(clap::Args, Clone)]
pub struct LatenessBench {
    /// Timers, one webhook each.
    #[arg(long, default_value_t = 100_000)]
    timers: usize,
    /// Seconds over which the timers fall due (uniformly).
    #[arg(long, default_value_t = 10)]
    spread_s: u64,
    /// Deliveries executing at once in the orchestrator.
    #[arg(long, default_value_t = 256)]
    concurrency: u32,
    /// Run the orchestrator with `serve`'s default limits (256 in flight, a lease buffer of
    /// 32, 32 at once per host) instead of `--concurrency` for all three.
    #[arg(long, conflicts_with = "concurrency")]
    serve_defaults: bool,
    /// Small size for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct MemoryBench {
    /// Far-future timers (due 1 h – 7 d out).
    #[arg(long, default_value_t = 1_000_000)]
    timers: usize,
    /// Small size for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct AllBench {
    /// Small sizes for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the stores are created (default: a temporary directory per workload).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct DeliveryBench {
    /// Timers, one webhook each, all due within `--spread-ms`.
    #[arg(long, default_value_t = 100_000)]
    timers: usize,
    /// Milliseconds over which the timers fall due.
    #[arg(long, default_value_t = 1_000)]
    spread_ms: u64,
    /// Deliveries executing at once in the orchestrator.
    #[arg(long, default_value_t = 256)]
    concurrency: u32,
    /// Run the orchestrator with `serve`'s default limits (256 in flight, a lease buffer of
    /// 32, 32 at once per host) instead of `--concurrency` for all three.
    #[arg(long, conflicts_with = "concurrency")]
    serve_defaults: bool,
    /// Share of responses that are 500 (retried), in percent: one run per value given.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 5])]
    fail_percent: Vec<u32>,
    /// With --database-url: this many kernels in this process share the scratch schema's
    /// shards, each with its own orchestrator (`bench/cluster.rs`).
    #[arg(long)]
    kernels: Option<usize>,
    /// Small size for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One run of the delivery path (W2 and W4 differ in load, not in what is measured).
struct DeliveryRun {
    workload: &'static str,
    timers: usize,
    spread_ms: u64,
    /// In flight, lease buffer and per-host limit alike, unless `serve_defaults`.
    concurrency: u32,
    /// The orchestrator keeps `serve`'s default limits instead of `concurrency`.
    serve_defaults: bool,
    fail_percent: u32,
}

#[derive(clap::Args, Clone)]
pub struct KernelBench {
    /// Timers created in the schedule-throughput run.
    #[arg(long, default_value_t = 100_000)]
    schedules: usize,
    /// Concurrent callers in the schedule-throughput run.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Timers in the lateness run.
    #[arg(long, default_value_t = 100_000)]
    lateness_timers: usize,
    /// Seconds over which the lateness timers fall due.
    #[arg(long, default_value_t = 10)]
    lateness_spread_s: u64,
    /// Far-future timers in the memory run.
    #[arg(long, default_value_t = 1_000_000)]
    rss_timers: usize,
    /// Small sizes for a smoke test (each section takes about a second).
    #[arg(long)]
    quick: bool,
    /// Where the stores are created (default: a temporary directory). Measures that disk.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only these sections (comma-separated: schedules, lateness, rss).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

pub async fn run(w: Workload) -> anyhow::Result<()> {
    match w {
        Workload::Kernel(mut b) => {
            if b.quick {
                b.schedules = b.schedules.min(2_000);
                b.lateness_timers = b.lateness_timers.min(2_000);
                b.lateness_spread_s = b.lateness_spread_s.min(1);
                b.rss_timers = b.rss_timers.min(20_000);
            }
            kernel_bench(b).await
        }
        Workload::Delivery(mut b) => {
            if b.quick {
                b.timers = b.timers.min(2_000);
            }
            let (_tmp, base) = bench_base(b.dir.as_deref())?;
            for &fail_percent in &b.fail_percent {
                let run = DeliveryRun {
                    workload: "W4",
                    timers: b.timers,
                    spread_ms: b.spread_ms,
                    concurrency: b.concurrency,
                    serve_defaults: b.serve_defaults,
                    fail_percent: fail_percent.min(100),
                };
                emit(match b.kernels {
                    Some(n) => cluster::delivery_run(&base, run, n).await?,
                    None => delivery_run(&base, run).await?,
                });
            }
            emit(fsync_calibration(&base)?);
            Ok(())
        }
        Workload::Lateness(mut b) => {
            if b.quick {
                b.timers = b.timers.min(2_000);
                b.spread_s = b.spread_s.min(1);
            }
            let (_tmp, base) = bench_base(b.dir.as_deref())?;
            let run = DeliveryRun {
                workload: "W2",
                timers: b.timers,
                spread_ms: b.spread_s.max(1) * 1_000,
                concurrency: b.concurrency,
                serve_defaults: b.serve_defaults,
                fail_percent: 0,
            };
            emit(delivery_run(&base, run).await?);
            emit(fsync_calibration(&base)?);
            Ok(())
        }
        Workload::Memory(b) => {
            kernel_bench(KernelBench {
                rss_timers: if b.quick {
                    b.timers.min(20_000)
                } else {
                    b.timers
                },
                only: vec!["rss".into()],
                dir: b.dir,
                ..defaults()
            })
            .await
        }
        Workload::Http(b) => http::run(b).await,
        Workload::Recovery(_) if DATABASE.get().is_some() => {
            anyhow::bail!("on PostgreSQL, W5 is `minoots bench --database-url URL takeover`")
        }
        Workload::Recovery(b) => recovery::run(b).await,
        Workload::Takeover(b) => takeover::run(b).await,
        Workload::Churn(b) => churn::run(b).await,
        Workload::Recurring(b) => recurring::run(b).await,
        Workload::Cycle(b) => cycle::run(b).await,
        Workload::Curve(b) => curve::run(b).await,
        Workload::Crash(b) => crash::run(b).await,
        Workload::OtlpSink(b) => otlp_sink::run(b).await,
        Workload::Flood(b) => flood::run(b).await,
        Workload::All(b) => run_all(b),
    }
}

/// A workload's settings as its flags' defaults, so they are written in one place.
fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let matches = T::augment_args(clap::Command::new("bench")).get_matches_from(["bench"]);
    T::from_arg_matches(&matches).expect("the defaults parse")
}

/// Runs W1–W6 in order, each as a child `minoots bench wN` whose JSON lines go straight to
/// this process's stdout. A failed workload is reported and the others still run.
fn run_all(b: AllBench) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut failed = Vec::new();
    for w in ["w1", "w2", "w3", "w4", "w5", "w6"] {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["bench", w]);
        if b.quick {
            cmd.arg("--quick");
        }
        if let Some(dir) = &b.dir {
            cmd.arg("--dir").arg(dir.join(w));
        }
        eprintln!("== minoots bench {w}");
        let started = Instant::now();
        let status = cmd.status()?;
        emit(
            json!({"section": "workload_done", "workload": w.to_uppercase(),
            "ok": status.success(), "seconds": started.elapsed().as_secs_f64()}),
        );
        if !status.success() {
            failed.push(w);
        }
    }
    anyhow::ensure!(failed.is_empty(), "workloads failed: {}", failed.join(", "));
    Ok(())
}

/// What [`closed_loop`] measured.
struct ClosedLoop {
    /// Per-operation latency, µs.
    latency_us: Vec<i64>,
    errors: usize,
    secs: f64,
}

/// Runs operations `0..n` from `concurrency` tasks, each starting its next operation when
/// the last one finished; `op(i)` is true on success.
async fn closed_loop<F, Fut>(n: usize, concurrency: usize, op: F) -> ClosedLoop
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let s = Instant::now();
                if !op(i).await {
                    errors += 1;
                }
                lat.push(s.elapsed().as_micros() as i64);
            }
            (lat, errors)
        }));
    }
    let mut out = ClosedLoop {
        latency_us: Vec::with_capacity(n),
        errors: 0,
        secs: 0.0,
    };
    for t in tasks {
        let (l, e) = t.await.expect("benchmark task");
        out.latency_us.extend(l);
        out.errors += e;
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Prints one result: a JSON line on stdout (for scripts) and a readable line on stderr.
fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
    eprintln!("{}", human(&v));
}

/// One line a person can read: the section, then each figure; latency distributions as
/// p50 / p99 / p99.9 / max in milliseconds.
fn human(v: &serde_json::Value) -> String {
    let Some(map) = v.as_object() else {
        return v.to_string();
    };
    let section = map
        .get("section")
        .and_then(|s| s.as_str())
        .unwrap_or("result");
    let mut parts = Vec::new();
    for (k, val) in map.iter().filter(|(k, _)| *k != "section") {
        let shown = match val {
            serde_json::Value::Object(d) if d.contains_key("p50_us") => {
                let ms = |key: &str| {
                    let us = d.get(key).and_then(|x| x.as_i64()).unwrap_or(0);
                    format!("{:.2}", us as f64 / 1_000.0)
                };
                format!(
                    "{} / {} / {} / {} ms",
                    ms("p50_us"),
                    ms("p99_us"),
                    ms("p999_us"),
                    ms("max_us")
                )
            }
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() >= 10_000.0 => thousands(f as i64),
                Some(f) if f.fract() != 0.0 => format!("{f:.2}"),
                _ => n.to_string(),
            },
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        parts.push(format!("{k} {shown}"));
    }
    format!("[{section}] {}", parts.join(", "))
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// The anonymous part of the resident set: the process's own memory, without the pages
/// of the binary and the libraries it has run (which stay resident once touched).
fn rss_anon_bytes() -> u64 {
    status_bytes("RssAnon:")
}

fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Returns freed heap to the OS so RSS reflects live memory, not allocator caches.
fn trim_heap() {
    // SAFETY: mi_collect only releases free memory held by the allocator (the binary's
    // global allocator is mimalloc).
    unsafe { libmimalloc_sys::mi_collect(true) };
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn dist_us(mut v: Vec<i64>) -> serde_json::Value {
    v.sort_unstable();
    json!({
        "count": v.len(),
        "p50_us": percentile(&v, 0.50),
        "p90_us": percentile(&v, 0.90),
        "p99_us": percentile(&v, 0.99),
        "p999_us": percentile(&v, 0.999),
        "max_us": v.last().copied().unwrap_or(0),
        "min_us": v.first().copied().unwrap_or(0),
    })
}

/// Appends 4 KiB and fdatasyncs, repeatedly for about a second: the disk's durable-write rate.
fn fsync_calibration(dir: &Path) -> anyhow::Result<serde_json::Value> {
    use std::os::unix::io::AsRawFd;
    // The first thing a workload does with its `--dir`, which may not exist yet.
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-calibration.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let block = vec![0x5au8; 4096];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) && lat.len() < 100_000 {
        let t = Instant::now();
        f.write_all(&block)?;
        // SAFETY: fdatasync on a file descriptor we own.
        if unsafe { libc::fdatasync(f.as_raw_fd()) } != 0 {
            anyhow::bail!("fdatasync failed: {}", std::io::Error::last_os_error());
        }
        lat.push(t.elapsed().as_micros() as i64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(
        json!({"section": "fsync_calibration", "fdatasyncs_per_s": (lat.len() as f64 / elapsed).round(), "latency": dist_us(lat)}),
    )
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    json!({
        "section": "machine",
        "store": store_kind(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "minoots": env!("CARGO_PKG_VERSION"),
        "transparent_huge_pages": huge_pages_state(),
    })
}

/// Whether this process may use transparent huge pages ("on", "off"), as the kernel reports
/// it in `/proc/self/status`; `None` where the kernel does not say.
fn huge_pages_state() -> Option<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))?;
    match value.trim() {
        "0" => Some("off"),
        "1" => Some("on"),
        _ => None,
    }
}

/// The PostgreSQL database of `bench --database-url`, and the scratch schemas made in it
/// (by store directory, so a workload that reopens its store finds it again).
static DATABASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static SCHEMAS: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

/// Runs a workload on the embedded store, or on PostgreSQL when `database_url` is given;
/// drops the scratch schemas afterwards, whatever the outcome.
pub async fn run_on(database_url: Option<String>, w: Workload) -> anyhow::Result<()> {
    if let Some(url) = database_url {
        let probe = PostgresConfig::new(url.clone());
        probe
            .check()
            .map_err(|e| anyhow::anyhow!("--database-url: {e}"))?;
        let _ = DATABASE.set(url);
    }
    let outcome = run(w).await;
    if minoots_kernel_api::trace::enabled() {
        // Spans still queued when the run ends are flushed at exit; the collector's own
        // count (`bench otlp-sink`) is the complete one.
        use std::sync::atomic::Ordering::Relaxed;
        emit(json!({
            "section": "traces",
            "spans_exported_so_far": minoots_kernel_api::trace::SPANS_EXPORTED.load(Relaxed),
            "spans_dropped": minoots_kernel_api::trace::SPANS_DROPPED.load(Relaxed),
        }));
    }
    let schemas = std::mem::take(&mut *SCHEMAS.lock().expect("schemas poisoned"));
    for (_, schema) in schemas {
        if let Some(url) = DATABASE.get() {
            let mut config = PostgresConfig::new(url.clone());
            config.schema = Some(schema.clone());
            if let Err(e) = config.drop_schema().await {
                eprintln!("could not drop the scratch schema {schema}: {e}");
            }
        }
    }
    outcome
}

/// Which store the in-process workloads run on, for their JSON.
fn store_kind() -> &'static str {
    if DATABASE.get().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// The store of a workload: the embedded store in `dir`, or with `bench --database-url`
/// the scratch schema of `dir` in PostgreSQL (the defaults of `serve --database-url`).
async fn open_store(dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn Store>> {
    let Some(url) = DATABASE.get() else {
        return Ok(Arc::new(SqliteStore::open(SqliteConfig::new(dir), clock)?));
    };
    let mut config = PostgresConfig::new(url.clone());
    config.schema = Some(scratch_schema(dir));
    config.kernel = Some(format!("bench-{}", std::process::id()));
    Ok(Arc::new(PostgresStore::open(config, clock).await?))
}

/// The scratch schema of the store in `dir` (named on first use, dropped by [`run_on`]).
fn scratch_schema(dir: &Path) -> String {
    let mut schemas = SCHEMAS.lock().expect("schemas poisoned");
    match schemas.iter().find(|(d, _)| d == dir) {
        Some((_, s)) => s.clone(),
        None => {
            let s = format!("minoots_bench_{}_{}", std::process::id(), schemas.len());
            schemas.push((dir.to_path_buf(), s.clone()));
            s
        }
    }
}

/// The kernel settings of every in-process workload.
fn kernel_config() -> KernelConfig {
    KernelConfig {
        // For comparing runs: MINOOTS_BENCH_NORMAL_PRIORITY=1 keeps the firing thread normal.
        realtime_firing_thread: std::env::var_os("MINOOTS_BENCH_NORMAL_PRIORITY").is_none(),
        min_fire_interval: std::env::var("MINOOTS_BENCH_MIN_FIRE_INTERVAL_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(
                KernelConfig::default().min_fire_interval,
                Duration::from_micros,
            ),
        ..KernelConfig::default()
    }
}

async fn start_kernel(dir: &Path) -> anyhow::Result<Arc<Kernel>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(dir, clock.clone()).await?;
    let k = Kernel::start(store, clock, kernel_config())?;
    k.wait_ready(Duration::from_secs(30)).await;
    Ok(k)
}

fn webhook_request(fire: &str) -> TimerRequest {
    TimerRequest::from_json(
        format!(
            r#"{{"requestedBy": "bench", "name": "bench-timer", {fire},
                "actionBundle": {{"actions": [{{"type": "webhook", "url": "https://example.com/hook"}}]}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid request")
}

/// Schedules `(due time, request)` pairs in one transaction; returns each id with its due time.
async fn schedule_due(
    k: &Kernel,
    chunk: Vec<(i64, TimerRequest)>,
) -> anyhow::Result<Vec<(minoots_core::TimerId, i64)>> {
    let ats: Vec<i64> = chunk.iter().map(|(a, _)| *a).collect();
    let timers = k
        .schedule_many("bench", chunk.into_iter().map(|(_, r)| r).collect())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(timers.iter().map(|t| t.id).zip(ats).collect())
}

/// Where a workload puts its stores (`--dir`, else a temporary directory that lives as long
/// as the returned guard), after printing the machine and the fsync calibration of that
/// directory's disk, which every workload reports first.
fn bench_base(dir: Option<&Path>) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let base = dir.map_or_else(|| tmp.path().to_path_buf(), Path::to_path_buf);
    emit(machine());
    emit(fsync_calibration(&base)?);
    Ok((tmp, base))
}

fn section_dir(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = base.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

async fn kernel_bench(b: KernelBench) -> anyhow::Result<()> {
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let wants = |s: &str| b.only.is_empty() || b.only.iter().any(|o| o == s);
    // Memory first: the allocator keeps memory that earlier sections used, which would
    // inflate the baseline of a later memory measurement.
    if wants("rss") {
        emit(bench_rss(&section_dir(&base, "rss")?, b.rss_timers).await?);
    }
    if wants("schedules") {
        emit(
            bench_schedules(
                &section_dir(&base, "schedules")?,
                b.schedules,
                b.concurrency,
            )
            .await?,
        );
    }
    if wants("lateness") {
        emit(
            bench_lateness(
                &section_dir(&base, "lateness")?,
                b.lateness_timers,
                b.lateness_spread_s,
            )
            .await?,
        );
    }
    emit(fsync_calibration(&base)?);
    Ok(())
}

async fn bench_schedules(
    dir: &Path,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let k = start_kernel(dir).await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let k = k.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let req = webhook_request(&format!(r#""duration": "{}s""#, 3_600 + i % 86_400));
                let t = Instant::now();
                k.schedule_timer("bench", req)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                lat.push(t.elapsed().as_micros() as i64);
            }
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    let stored = k.store().stats().await?.scheduled_timers;
    k.shutdown().await;
    anyhow::ensure!(
        stored as usize == n,
        "expected {n} stored timers, found {stored}"
    );
    Ok(json!({
        "section": "schedules",
        "timers": n,
        "concurrency": concurrency,
        "seconds": secs,
        "schedules_per_s": (n as f64 / secs).round(),
        "call_latency": dist_us(lat),
        "note": "closed loop: each caller waits for its commit before the next create",
    }))
}

async fn bench_lateness(dir: &Path, n: usize, spread_s: u64) -> anyhow::Result<serde_json::Value> {
    let k = start_kernel(dir).await?;
    let clock = SystemClock;
    // Create everything first (in large batches, which is fast), due from 2 s after that.
    let setup = Instant::now();
    let lead_us = 2_000_000 + (n as i64) * 20; // room for the setup itself (~50k/s)
    let base = clock.now_us() + lead_us;
    let spread_us = (spread_s as i64) * 1_000_000;
    let mut due = std::collections::HashMap::with_capacity(n);
    let mut i = 0usize;
    while i < n {
        let chunk: Vec<(i64, TimerRequest)> = (i..(i + 1_000).min(n))
            .map(|j| {
                // A deterministic spread over the interval, not in creation order.
                let offset = ((j as i64).wrapping_mul(7_919) % (n as i64)) * spread_us / (n as i64);
                let at = base + offset;
                (
                    at,
                    webhook_request(&format!(
                        r#""fireAt": "{}""#,
                        minoots_core::timefmt::format_us(at)
                    )),
                )
            })
            .collect();
        for (id, at) in schedule_due(&k, chunk).await? {
            due.insert(id, at);
        }
        i += 1_000;
    }
    let setup_s = setup.elapsed().as_secs_f64();
    anyhow::ensure!(
        clock.now_us() < base,
        "setup took longer than the lead time; lower --lateness-timers"
    );

    // A live subscriber sees each durable timer.fired event.
    let mut events = k
        .stream_events(EventQuery {
            after_seq: 0,
            limit: 1_000,
            types: vec![EventType::TimerFired],
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut event_late = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let deadline =
        Instant::now() + Duration::from_secs(spread_s + 60) + Duration::from_micros(lead_us as u64);
    while seen.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(e)) = tokio::time::timeout(left, events.next()).await else {
            break;
        };
        let e = e.map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = clock.now_us();
        if let Some(at) = due.get(&e.timer_id)
            && seen.insert(e.timer_id)
        {
            event_late.push(now - at);
        }
    }
    let missed = n - seen.len();

    let (fire_late, early) = stored_fire_lateness(&k).await?;
    k.shutdown().await;
    Ok(json!({
        "section": "lateness",
        "timers": n,
        "spread_s": spread_s,
        "setup_s": setup_s,
        "missed": missed,
        "fired_early": early,
        "firing_thread": dist_us(fire_late),
        "durable_event": dist_us(event_late),
    }))
}

/// The firing thread's own measurement (fired − due, as stored on each timer of tenant
/// `bench`), and how many fired early.
async fn stored_fire_lateness(k: &Kernel) -> anyhow::Result<(Vec<i64>, usize)> {
    let mut fire_late = Vec::new();
    let mut early = 0usize;
    let mut after = None;
    loop {
        let page = k
            .list_timers(TimerQuery {
                tenant_id: "bench".into(),
                status: None,
                label: None,
                limit: 500,
                after,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for t in &page.timers {
            if let Some(l) = t.fired_late_us() {
                if l < 0 {
                    early += 1;
                }
                fire_late.push(l);
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok((fire_late, early)),
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn bench_rss(dir: &Path, n: usize) -> anyhow::Result<serde_json::Value> {
    let t = Instant::now();
    let k = start_kernel(dir).await?;
    let ready_empty_ms = t.elapsed().as_secs_f64() * 1e3;
    // Warm up: the first timers allocate the runtime's and SQLite's steady-state buffers.
    let warm: Vec<TimerRequest> = (0..1_000)
        .map(|i| webhook_request(&format!(r#""duration": "{}s""#, 3_600 + i)))
        .collect();
    k.schedule_many("bench", warm)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    trim_heap();
    let before = rss_bytes();
    let start = Instant::now();
    let mut i = 0usize;
    while i < n {
        let chunk: Vec<TimerRequest> = (i..(i + 1_000).min(n))
            .map(|j| {
                webhook_request(&format!(
                    r#""duration": "{}s""#,
                    3_600 + (j * 7_919) % (7 * 86_400 - 3_600)
                ))
            })
            .collect();
        k.schedule_many("bench", chunk)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        i += 1_000;
    }
    let create_s = start.elapsed().as_secs_f64();
    let after_untrimmed = rss_bytes();
    trim_heap();
    let after = rss_bytes();
    let window = k.window_len();
    k.shutdown().await;
    let store_bytes = dir_bytes(dir);
    // Restart on the full store: time until the kernel is ready (store open, window loaded).
    let t = Instant::now();
    let k = start_kernel(dir).await?;
    let ready_full_ms = t.elapsed().as_secs_f64() * 1e3;
    k.shutdown().await;
    Ok(json!({
        "section": "rss",
        "timers": n,
        "create_s": create_s,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_after_untrimmed_bytes": after_untrimmed,
        "rss_per_timer_bytes": (after.saturating_sub(before)) as f64 / n as f64,
        "rss_per_timer_untrimmed_bytes": (after_untrimmed.saturating_sub(before)) as f64 / n as f64,
        "timers_in_memory_window": window,
        "ready_empty_store_ms": ready_empty_ms,
        "ready_with_pending_ms": ready_full_ms,
        "store_bytes": store_bytes,
        "store_bytes_per_timer": store_bytes as f64 / (n + 1_000) as f64,
    }))
}

/// The delivery benchmark's webhook receiver: a deliberately minimal HTTP/1.1 keep-alive
/// sink on loopback, so that it costs little of the two cores it shares with the kernel and
/// the orchestrator (a full HTTP server framework took about 15 % of the CPU of a run, which
/// measured the receiver rather than MINOOTS). It is the measurement harness, not a product:
/// it reads each request's line and headers (at most [`RECEIVER_MAX_HEAD`] bytes), reads the
/// `Content-Length` body in full, records when the request arrived with its `webhook-id`
/// (the delivery, for the exactly-once check) and `x-minoots-timer-id` (for the due time),
/// and answers `200` with an empty body, or `500` for a deterministic share of requests.
/// Chunked bodies are refused with `501` (MINOOTS always sends a length).
struct Receiver {
    arrivals: std::sync::Mutex<Vec<Arrival>>,
    /// Requests answered 200, for the wait loop.
    accepted: std::sync::atomic::AtomicUsize,
    requests: std::sync::atomic::AtomicUsize,
    fail_percent: u32,
}

/// One webhook answered 200: its delivery id, its timer id, and when it arrived.
struct Arrival {
    webhook_id: String,
    timer_id: String,
    at_us: i64,
}

/// Largest request line plus headers the receiver reads; a longer head closes the
/// connection with `431`.
const RECEIVER_MAX_HEAD: usize = 64 * 1024;

impl Receiver {
    /// Serves one keep-alive connection until the client closes it.
    async fn serve(&self, mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        const FAIL: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n";
        const TOO_LARGE: &[u8] =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        const CHUNKED: &[u8] =
            b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        sock.set_nodelay(true)?;
        let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
        loop {
            // The request line and headers (the body may already have arrived behind them).
            let (head_len, body_len, close, webhook_id, timer_id) = loop {
                let mut headers = [httparse::EMPTY_HEADER; 48];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&buf) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let mut body_len = 0usize;
                        let mut close = req.version == Some(0);
                        let mut chunked = false;
                        let (mut webhook_id, mut timer_id) = (String::new(), String::new());
                        for h in req.headers.iter() {
                            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                            if h.name.eq_ignore_ascii_case("content-length") {
                                body_len = value.parse().map_err(std::io::Error::other)?;
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = true;
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                close = value.eq_ignore_ascii_case("close");
                            } else if h.name.eq_ignore_ascii_case("webhook-id") {
                                webhook_id = value.to_string();
                            } else if h.name.eq_ignore_ascii_case("x-minoots-timer-id") {
                                timer_id = value.to_string();
                            }
                        }
                        if chunked {
                            sock.write_all(CHUNKED).await?;
                            return Ok(());
                        }
                        break (head_len, body_len, close, webhook_id, timer_id);
                    }
                    Ok(httparse::Status::Partial) if buf.len() < RECEIVER_MAX_HEAD => {
                        if sock.read_buf(&mut buf).await? == 0 {
                            // Closed between requests (or mid-head: nothing to answer).
                            return Ok(());
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        sock.write_all(TOO_LARGE).await?;
                        return Ok(());
                    }
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            };
            // The whole body, so the connection is at the next request.
            let end = head_len + body_len;
            while buf.len() < end {
                buf.reserve(end - buf.len());
                if sock.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            let at_us = SystemClock.now_us();
            let n = self.requests.fetch_add(1, Relaxed);
            // Deterministic share of failures: every k-th request answers 500.
            let fail = self.fail_percent > 0
                && (n as u64 * u64::from(self.fail_percent)) % 100 < u64::from(self.fail_percent);
            if fail {
                sock.write_all(FAIL).await?;
            } else {
                self.arrivals.lock().expect("arrivals").push(Arrival {
                    webhook_id,
                    timer_id,
                    at_us,
                });
                self.accepted.fetch_add(1, Relaxed);
                sock.write_all(OK).await?;
            }
            buf.drain(..end);
            if close {
                return Ok(());
            }
        }
    }
}

async fn start_receiver(fail_percent: u32) -> anyhow::Result<(Arc<Receiver>, String)> {
    let r = Arc::new(Receiver {
        arrivals: std::sync::Mutex::new(Vec::new()),
        accepted: std::sync::atomic::AtomicUsize::new(0),
        requests: std::sync::atomic::AtomicUsize::new(0),
        fail_percent,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let me = r.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let me = me.clone();
            tokio::spawn(async move {
                if let Err(e) = me.serve(sock).await {
                    tracing::warn!(error = %e, "bench receiver: connection failed");
                }
            });
        }
    });
    Ok((r, url))
}

async fn delivery_run(base: &Path, b: DeliveryRun) -> anyhow::Result<serde_json::Value> {
    let dir = section_dir(base, &format!("delivery-{}-{}", b.workload, b.fail_percent))?;
    delivery_on(&[start_kernel(&dir).await?], b).await
}

/// The delivery path on `kernels` (one, or several sharing a PostgreSQL schema: see
/// `cluster.rs`), each with an orchestrator in this process; creates go to each in turn.
async fn delivery_on(kernels: &[Arc<Kernel>], b: DeliveryRun) -> anyhow::Result<serde_json::Value> {
    use minoots_orchestrator::executor::{Orchestrator, OrchestratorConfig};
    use minoots_orchestrator::ssrf::TargetPolicy;
    let (receiver, url) = start_receiver(b.fail_percent).await?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut running = Vec::new();
    let mut limits = json!(null);
    let mut orchestrator_metrics = Vec::new();
    for (i, k) in kernels.iter().enumerate() {
        let mut config = OrchestratorConfig::new(match kernels.len() {
            1 => "bench-orchestrator".to_string(),
            _ => format!("bench-orchestrator-{i}"),
        });
        config.targets = TargetPolicy {
            allow_private: true,
            allowed_cidrs: vec![],
        };
        if !b.serve_defaults {
            config.max_in_flight = b.concurrency;
            config.prefetch = b.concurrency;
            config.max_per_host = b.concurrency as usize;
        }
        limits = json!({
            "max_in_flight": config.max_in_flight,
            "prefetch": config.prefetch,
            "max_per_host": config.max_per_host,
        });
        let orchestrator = Orchestrator::new(k.clone(), config)?;
        orchestrator_metrics.push(orchestrator.metrics().clone());
        running.push(tokio::spawn(orchestrator.run(stop_rx.clone())));
    }

    // Create every timer first, due shortly after creation ends, spread over spread_ms.
    let n = b.timers;
    let lead_us = 1_000_000 + (n as i64) * 25;
    let base_us = SystemClock.now_us() + lead_us;
    let spread_us = (b.spread_ms as i64) * 1_000;
    let mut due = std::collections::HashMap::with_capacity(n);
    let retry =
        r#""retryPolicy": {"maxAttempts": 10, "initialBackoffMs": 100, "maxBackoffMs": 1000}"#;
    let mut i = 0;
    while i < n {
        let chunk: Vec<(i64, TimerRequest)> = (i..(i + 1_000).min(n))
            .map(|j| {
                let at = base_us + (j as i64) * spread_us / (n as i64);
                let json = format!(
                    r#"{{"fireAt": "{}", "actionBundle": {{"actions": [{{"type": "webhook", "url": "{url}"}}], {retry}}}}}"#,
                    minoots_core::timefmt::format_us(at)
                );
                (at, TimerRequest::from_json(json.as_bytes()).expect("valid"))
            })
            .collect();
        for (id, at) in schedule_due(&kernels[(i / 1_000) % kernels.len()], chunk).await? {
            due.insert(id.to_string(), at);
        }
        i += 1_000;
    }
    anyhow::ensure!(
        SystemClock.now_us() < base_us,
        "setup took longer than the lead time; lower --timers"
    );

    let deadline = Instant::now() + Duration::from_secs(170);
    let accepted = || receiver.accepted.load(std::sync::atomic::Ordering::Relaxed);
    while accepted() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    for r in running {
        let _ = r.await;
    }
    let (fire_late, fired_early) = stored_fire_lateness(&kernels[0]).await?;
    let arrivals = std::mem::take(&mut *receiver.arrivals.lock().expect("arrivals"));
    let stages = lateness_stages(&kernels[0], &arrivals, &due).await;
    for k in kernels {
        k.shutdown().await;
    }

    // Exactly once: every delivery (webhook-id) answered 200 once, and every timer reached.
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut timers_reached = std::collections::HashSet::with_capacity(n);
    let mut duplicates = 0usize;
    let mut unknown = 0usize;
    let mut lateness = Vec::with_capacity(n);
    // The first second separately: it includes the start (connections to the receiver
    // opened, the tenant's signing secret created and cached, cold caches).
    let mut lateness_after_first_s = Vec::with_capacity(n);
    let mut last = i64::MIN;
    for a in &arrivals {
        if !seen.insert(a.webhook_id.as_str()) {
            duplicates += 1;
            continue;
        }
        match due.get(&a.timer_id) {
            Some(d) => {
                timers_reached.insert(a.timer_id.as_str());
                lateness.push(a.at_us - d);
                if *d >= base_us + 1_000_000 {
                    lateness_after_first_s.push(a.at_us - d);
                }
            }
            None => unknown += 1,
        }
        last = last.max(a.at_us);
    }
    let window_s = (last - base_us).max(1) as f64 / 1e6;
    let mut summary = json!({
        "section": if b.workload == "W2" { "webhook_lateness" } else { "delivery" },
        "workload": b.workload,
        "timers": n,
        "spread_ms": b.spread_ms,
        "concurrency": b.concurrency,
        "orchestrator": limits,
        // Deliveries handed back unexecuted: their host had no free slot and its queue
        // was full (due again after 0.5–1 s), or their lease was nearly gone.
        "deferred_host_busy": orchestrator_metrics.iter().map(|m| m.deferred.get()).sum::<u64>(),
        "released_unexecuted": orchestrator_metrics.iter().map(|m| m.released.get()).sum::<u64>(),
        "fail_percent": b.fail_percent,
        "requests": receiver.requests.load(std::sync::atomic::Ordering::Relaxed),
        "delivered": seen.len(),
        "missing": n.saturating_sub(timers_reached.len()),
        "duplicates": duplicates,
        "unknown": unknown,
        "seconds_from_first_due_to_last_delivery": window_s,
        "deliveries_per_s": (seen.len() as f64 / window_s).round(),
        "fired_early": fired_early,
        "firing_thread": dist_us(fire_late),
        "due_to_receipt": dist_us(lateness),
        "due_to_receipt_after_first_s": dist_us(lateness_after_first_s),
    });
    if let Some(fields) = summary.as_object_mut() {
        fields.extend(stages);
    }
    Ok(summary)
}

/// Where the lateness of a webhook arose, read back from the store: the firing (fired −
/// due), the way to the executor (first attempt started − fired: the fire's commit, the
/// lease claim, the hand-out, a free slot) and the request (received − start of the
/// attempt that was received: the HTTP client and the receiver). For the latest 1 % of
/// deliveries (at most 1,000; `tail_*`) next to an even sample of as many (`sample_*`),
/// so that a tail can be placed on one stage.
async fn lateness_stages(
    k: &Kernel,
    arrivals: &[Arrival],
    due: &std::collections::HashMap<String, i64>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut first: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for a in arrivals {
        first.entry(a.timer_id.as_str()).or_insert(a.at_us);
    }
    let mut late: Vec<(i64, &str, i64)> = first
        .iter()
        .filter_map(|(id, at)| due.get(*id).map(|d| (at - d, *id, *at)))
        .collect();
    late.sort_unstable_by(|a, b| b.cmp(a));
    let tail = (late.len() / 100).clamp(1, 1_000).min(late.len());
    let step = (late.len() / tail.max(1)).max(1);
    let sample: Vec<_> = late
        .iter()
        .skip(step / 2)
        .step_by(step)
        .take(tail)
        .copied()
        .collect();
    let mut out = serde_json::Map::new();
    for (name, group) in [("tail", &late[..tail]), ("sample", &sample[..])] {
        let (mut fire, mut to_attempt, mut request) = (Vec::new(), Vec::new(), Vec::new());
        for (_, id, received) in group {
            let Ok(id) = id.parse::<minoots_core::TimerId>() else {
                continue;
            };
            // A timer that cannot be read back leaves the figures, not the whole run.
            let (Ok(timer), Ok(deliveries)) = (
                k.get_timer("bench", id).await,
                k.list_deliveries("bench", id).await,
            ) else {
                continue;
            };
            let starts: Vec<i64> = deliveries
                .iter()
                .flat_map(|d| d.attempts.iter())
                .map(|a| a.started_at_us)
                .collect();
            let (Some(fired), Some(first_start), Some(received_start)) = (
                timer.fired_at_us,
                starts.iter().min(),
                starts.iter().filter(|s| **s <= *received).max(),
            ) else {
                continue;
            };
            fire.push(fired - timer.fire_at_us);
            to_attempt.push(first_start - fired);
            request.push(received - received_start);
        }
        out.insert(format!("{name}_fire"), dist_us(fire));
        out.insert(format!("{name}_fired_to_attempt"), dist_us(to_attempt));
        out.insert(format!("{name}_attempt_to_receipt"), dist_us(request));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_shows_distributions_in_ms_and_large_counts_grouped() {
        let line = human(&json!({
            "section": "delivery",
            "deliveries_per_s": 18_500.0,
            "timers": 100_000,
            "due_to_receipt": {"p50_us": 1_500, "p99_us": 4_800, "p999_us": 9_000, "max_us": 51_000},
        }));
        assert!(line.starts_with("[delivery] "), "{line}");
        assert!(line.contains("deliveries_per_s 18,500"), "{line}");
        assert!(line.contains("timers 100,000"), "{line}");
        assert!(
            line.contains("due_to_receipt 1.50 / 4.80 / 9.00 / 51.00 ms"),
            "{line}"
        );
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn workload_defaults_come_from_the_flags() {
        let k: KernelBench = defaults();
        assert_eq!(
            (k.rss_timers, k.schedules, k.quick),
            (1_000_000, 100_000, false)
        );
        let d: DeliveryBench = defaults();
        assert_eq!(d.fail_percent, vec![0, 5]);
    }
}
