//! `minoots bench recovery` (W5): a store with many pending timers and some that fall due
//! while the kernel is down. The kernel runs as a real `minoots kernel` process, is killed
//! with SIGKILL, its timers become overdue during the outage, and it is started again.
//! Reports the time from start to ready (which should not grow with the number of pending
//! timers), the time until every overdue timer has fired, and how many were lost or fired
//! twice (counted from the `timer.fired` events in the log, read over gRPC).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_core::timefmt::format_us;
use minoots_core::{Clock, EventType, SystemClock, TimerId, TimerRequest};
use minoots_kernel::KernelApi;
use minoots_kernel::grpc::GrpcKernelClient;
use minoots_store::EventQuery;
use serde_json::json;
use tokio_stream::StreamExt;

use super::{bench_base, emit, section_dir, start_kernel};

#[derive(clap::Args, Clone)]
pub struct RecoveryBench {
    /// Timers pending far out (1 h – 7 d) when the kernel is killed.
    #[arg(long, default_value_t = 1_000_000)]
    pending: usize,
    /// Timers that fall due while the kernel is down.
    #[arg(long, default_value_t = 10_000)]
    overdue: usize,
    /// Small sizes for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const CHUNK: usize = 5_000;
const TENANT: &str = "recovery";

/// Starts `minoots kernel` on `dir`; returns it, its gRPC URL and the time to its ready line.
fn start_process(dir: &std::path::Path) -> anyhow::Result<(Child, String, Duration)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["kernel", "--data-dir"])
        .arg(dir)
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{port}"),
            "--http-addr",
            "127.0.0.1:0",
        ])
        .env("MINOOTS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("minoots kernel ready on ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .map_err(|_| anyhow::anyhow!("the kernel did not become ready"))?;
    Ok((child, format!("http://127.0.0.1:{port}"), started.elapsed()))
}

pub async fn run(mut b: RecoveryBench) -> anyhow::Result<()> {
    if b.quick {
        b.pending = b.pending.min(20_000);
        b.overdue = b.overdue.min(1_000);
    }
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let dir = section_dir(&base, "recovery")?;

    // Load the store in-process (fast), then hand it to a kernel process.
    let kernel = start_kernel(&dir).await?;
    let now = SystemClock.now_us();
    let load_started = Instant::now();
    let mut i = 0;
    while i < b.pending {
        let n = CHUNK.min(b.pending - i);
        let reqs: Vec<TimerRequest> = (i..i + n)
            .map(|k| {
                let at = now + 3_600_000_000 + (k as i64 % 604_800) * 1_000_000;
                TimerRequest::from_json(format!(r#"{{"fireAt": "{}"}}"#, format_us(at)).as_bytes())
                    .expect("valid")
            })
            .collect();
        kernel
            .schedule_many(TENANT, reqs)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        i += n;
    }
    // Overdue ones fall due a few seconds after the kill, spread over one second.
    let due_at = SystemClock.now_us() + 15_000_000;
    let mut overdue_ids: Vec<TimerId> = Vec::with_capacity(b.overdue);
    let mut i = 0;
    while i < b.overdue {
        let n = CHUNK.min(b.overdue - i);
        let reqs: Vec<TimerRequest> = (i..i + n)
            .map(|k| {
                let at = due_at + (k as i64 * 1_000_000 / b.overdue.max(1) as i64);
                TimerRequest::from_json(format!(r#"{{"fireAt": "{}"}}"#, format_us(at)).as_bytes())
                    .expect("valid")
            })
            .collect();
        let made = kernel
            .schedule_many(TENANT, reqs)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        overdue_ids.extend(made.iter().map(|t| t.id));
        i += n;
    }
    let load_s = load_started.elapsed().as_secs_f64();
    kernel.shutdown().await;
    drop(kernel);

    // A kernel process holds it; SIGKILL it before anything is due.
    let (mut first, _, first_ready) = start_process(&dir)?;
    first.kill()?;
    first.wait()?;
    let down_at = Instant::now();
    // Stay down until every overdue timer is past due.
    let last_due = due_at + 1_000_000;
    let wait_us = (last_due - SystemClock.now_us()).max(0) as u64 + 500_000;
    tokio::time::sleep(Duration::from_micros(wait_us)).await;
    let downtime = down_at.elapsed();

    let restart = Instant::now();
    let (mut second, url, ready) = start_process(&dir)?;
    let client: Arc<dyn KernelApi> =
        Arc::new(GrpcKernelClient::connect_lazy(&url, None).map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut fired = client
        .stream_events(EventQuery {
            after_seq: 0,
            limit: 1_000,
            tenant_id: Some(TENANT.into()),
            timer_id: None,
            types: vec![EventType::TimerFired],
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let wanted: std::collections::HashSet<TimerId> = overdue_ids.iter().copied().collect();
    let mut seen: HashMap<TimerId, u32> = HashMap::new();
    let mut early = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < wanted.len() && Instant::now() < deadline {
        let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(10), fired.next()).await
        else {
            break;
        };
        if wanted.contains(&e.timer_id) {
            *seen.entry(e.timer_id).or_default() += 1;
        } else {
            // A far-future timer fired: that would be early.
            early += 1;
        }
    }
    let all_fired_after_restart = restart.elapsed();
    // Read a little longer so a duplicate fire would be seen too.
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(2), fired.next()).await {
        if wanted.contains(&e.timer_id) {
            *seen.entry(e.timer_id).or_default() += 1;
        } else {
            early += 1;
        }
    }
    drop(fired);
    let lost = wanted.len() - seen.len();
    let duplicated: u32 = seen.values().map(|n| n.saturating_sub(1)).sum();
    second.kill()?;
    second.wait()?;
    emit(json!({
        "section": "recovery",
        "pending": b.pending,
        "overdue": b.overdue,
        "load_s": (load_s * 10.0).round() / 10.0,
        "first_start_ready_ms": first_ready.as_millis() as u64,
        "downtime_ms": downtime.as_millis() as u64,
        "restart_ready_ms": ready.as_millis() as u64,
        "restart_to_all_overdue_fired_ms": all_fired_after_restart.as_millis() as u64,
        "lost": lost,
        "duplicated": duplicated,
        "fired_early": early,
    }));
    Ok(())
}
