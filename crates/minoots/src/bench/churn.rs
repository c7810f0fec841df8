//! `minoots bench churn` (W6): timers created, then 90 % of them cancelled before they fire —
//! what agents do when they set a timeout and the work finishes first. Reports creates/s,
//! cancels/s with per-cancel latency, and whether memory returns to where it started: the
//! timers are due within the in-memory window (30–50 s out), so each create adds an index
//! entry and each cancel must remove it.

use std::sync::Arc;
use std::time::Instant;

use minoots_core::timefmt::format_us;
use minoots_core::{Clock, SystemClock, TimerRequest};
use minoots_kernel::KernelApi;
use serde_json::json;

use super::{
    bench_base, closed_loop, dist_us, emit, rss_bytes, section_dir, start_kernel, trim_heap,
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
    kernel.shutdown().await;
    Ok(())
}
