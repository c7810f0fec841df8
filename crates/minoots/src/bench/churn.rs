//! `minoots bench churn` (W6): timers created, then 90 % of them cancelled before they fire —
//! what agents do when they set a timeout and the work finishes first. Reports creates/s,
//! cancels/s with per-cancel latency, and whether memory returns to where it started: the
//! timers are due within the in-memory window (30–50 s out), so each create adds an index
//! entry and each cancel must remove it. After the rounds it waits for the store to go idle
//! and release its caches, measures, cancels the timers the rounds kept, and measures again
//! once idle: the last figure against the first says whether memory came back.

use std::sync::Arc;
use std::time::Instant;

use minoots_core::timefmt::format_us;
use minoots_core::{Clock, SystemClock, TimerRequest};
use minoots_kernel::KernelApi;
use serde_json::json;

use super::{
    bench_base, closed_loop, dist_us, emit, rss_anon_bytes, rss_bytes, section_dir, start_kernel,
    trim_heap,
};

#[derive(clap::Args, Clone)]
pub struct ChurnBench {
    /// Timers created, due 30–50 s out (inside the in-memory window).
    #[arg(long, default_value_t = 100_000)]
    timers: usize,
    /// Share of them cancelled before they fire, in percent.
    #[arg(long, default_value_t = 90)]
    cancel_percent: u32,
    /// Concurrent cancellers.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Rounds of create-then-cancel, so a leak shows as growth from round to round while
    /// bounded caches (SQLite's page caches) show as a plateau.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Small size for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Timers per create transaction.
const CREATE_CHUNK: usize = 1_000;

pub async fn run(mut b: ChurnBench) -> anyhow::Result<()> {
    if b.quick {
        b.timers = b.timers.min(5_000);
        b.rounds = b.rounds.min(2);
    }
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let kernel = start_kernel(&section_dir(&base, "churn")?).await?;

    trim_heap();
    let rss_start = rss_bytes();
    let start = Memory::now();
    let mut kept = Vec::new();

    for round in 1..=b.rounds.max(1) {
        let window_start = kernel.window_len();
        let now = SystemClock.now_us();
        let started = Instant::now();
        let mut ids = Vec::with_capacity(b.timers);
        let mut i = 0;
        while i < b.timers {
            let n = CREATE_CHUNK.min(b.timers - i);
            let requests: Vec<TimerRequest> = (i..i + n)
                .map(|k| {
                    let at = now + 30_000_000 + (k as i64 * 20_000_000 / b.timers.max(1) as i64);
                    TimerRequest::from_json(
                        format!(r#"{{"fireAt": "{}", "name": "churn"}}"#, format_us(at)).as_bytes(),
                    )
                    .expect("valid request")
                })
                .collect();
            let made = kernel
                .schedule_many("churn", requests)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ids.extend(made.into_iter().map(|t| t.id));
            i += n;
        }
        let create_s = started.elapsed().as_secs_f64();
        trim_heap();
        let rss_created = rss_bytes();
        let window_created = kernel.window_len();

        let to_cancel = b.timers * b.cancel_percent.min(100) as usize / 100;
        kept.extend_from_slice(&ids[to_cancel..]);
        let ids = Arc::new(ids);
        let k = kernel.clone();
        let r = closed_loop(to_cancel, b.concurrency, move |i| {
            let (k, ids) = (k.clone(), ids.clone());
            async move { k.cancel_timer("churn", ids[i], None).await.is_ok() }
        })
        .await;
        let (lat, failed, cancel_s) = (r.latency_us, r.errors, r.secs);
        trim_heap();
        let rss_cancelled = rss_bytes();
        let window_cancelled = kernel.window_len();
        let stats = kernel.store().stats().await?;
        emit(json!({
            "section": "churn",
            "round": round,
            "timers": b.timers,
            "creates_per_s": (b.timers as f64 / create_s).round(),
            "cancelled": to_cancel,
            "cancel_failures": failed,
            "cancels_per_s": (to_cancel as f64 / cancel_s).round(),
            "cancel_latency": dist_us(lat),
            "window": {"start": window_start, "after_create": window_created, "after_cancel": window_cancelled},
            "rss_bytes": {"start": rss_start, "after_create": rss_created, "after_cancel": rss_cancelled},
            "rss_after_cancel_minus_start": rss_cancelled as i64 - rss_start as i64,
            "window_start_of_round": window_start,
            "scheduled_in_store": stats.scheduled_timers,
        }));
    }
    // Idle with the kept timers still pending, then with none.
    let idle_kept = wait_idle(&kernel).await?;
    let pending = kernel.window_len();
    let k = kernel.clone();
    let kept = Arc::new(kept);
    let ids = kept.clone();
    let r = closed_loop(kept.len(), b.concurrency, move |i| {
        let (k, ids) = (k.clone(), ids.clone());
        async move { k.cancel_timer("churn", ids[i], None).await.is_ok() }
    })
    .await;
    let idle_empty = wait_idle(&kernel).await?;
    let ratio = |m: &Memory, start: u64, f: fn(&Memory) -> u64| {
        (f(m) as f64 / start.max(1) as f64 * 1000.0).round() / 1000.0
    };
    emit(json!({
        "section": "churn_idle",
        "caches_released": idle_kept.released && idle_empty.released,
        "waited_for_release_ms": [idle_kept.waited_ms, idle_empty.waited_ms],
        "pending_timers_while_kept": pending,
        "kept_cancel_failures": r.errors,
        "window_at_end": kernel.window_len(),
        "start": start.json(),
        "idle_with_kept_timers": idle_kept.json(),
        "idle_after_all_cancelled": idle_empty.json(),
        "rss_end_over_start": ratio(&idle_empty, start.rss, |m| m.rss),
        "rss_anon_end_over_start": ratio(&idle_empty, start.anon, |m| m.anon),
    }));
    kernel.shutdown().await;
    Ok(())
}

/// Memory of the process at one moment (after returning the allocator's free memory).
struct Memory {
    rss: u64,
    anon: u64,
    sqlite_heap: i64,
    released: bool,
    waited_ms: u64,
}

impl Memory {
    fn now() -> Self {
        trim_heap();
        Self {
            rss: rss_bytes(),
            anon: rss_anon_bytes(),
            sqlite_heap: minoots_store::sqlite::sqlite_heap_bytes(),
            released: false,
            waited_ms: 0,
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({"rss_bytes": self.rss, "rss_anon_bytes": self.anon, "sqlite_heap_bytes": self.sqlite_heap})
    }
}

/// Waits until the store has released its caches (it does after 5 s without a change;
/// the store counts it), then measures. PostgreSQL keeps no caches here: no wait.
async fn wait_idle(kernel: &minoots_kernel::Kernel) -> anyhow::Result<Memory> {
    let started = Instant::now();
    let before = kernel.store().stats().await?.idle_cache_releases;
    let mut released = false;
    if super::DATABASE.get().is_none() {
        while started.elapsed() < IDLE_WAIT_LIMIT {
            if kernel.store().stats().await?.idle_cache_releases > before {
                released = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok(Memory {
        released,
        waited_ms: started.elapsed().as_millis() as u64,
        ..Memory::now()
    })
}

/// How long the idle measurement waits for the store to release its caches.
const IDLE_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);
