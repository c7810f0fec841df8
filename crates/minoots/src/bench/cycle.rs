//! `minoots bench cycle`: the embedded store's part of a delivery, alone — fire a timer,
//! lease its delivery, record a successful attempt — with no HTTP, no orchestrator and no
//! firing thread. W2 and W4 measure the whole pipeline on a machine whose two cores are
//! nearly all in use; this isolates the single writer thread, which every delivery passes
//! three times, so a change to the store's write path can be compared on its own (and,
//! under `valgrind --tool=callgrind`, by instructions rather than by noisy seconds).

use std::sync::Arc;
use std::time::Instant;

use minoots_core::{AttemptOutcome, Clock, SystemClock, TimerId, TimerRequest};
use minoots_store::{AttemptReport, FireRequest, SqliteConfig, SqliteStore, Store};
use serde_json::json;

use super::{bench_base, emit, section_dir};

#[derive(clap::Args, Clone)]
pub struct CycleBench {
    /// Timers, one webhook each, taken through fire, lease and report.
    #[arg(long, default_value_t = 50_000)]
    timers: usize,
    /// Reports in flight at once, as an orchestrator's executing deliveries.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Small size for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Timers per create and per fire transaction.
const CHUNK: usize = 1_000;

pub async fn run(mut b: CycleBench) -> anyhow::Result<()> {
    if b.quick {
        b.timers = b.timers.min(2_000);
    }
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(SqliteStore::open(
        SqliteConfig::new(section_dir(&base, "cycle")?),
        clock.clone(),
    )?);

    let now = clock.now_us();
    let request = TimerRequest::from_json(
        br#"{"name": "cycle", "duration": "1h",
             "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/hook"}]}}"#,
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let spec = request
        .validate("bench", now)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut ids: Vec<TimerId> = Vec::with_capacity(b.timers);
    let mut i = 0;
    while i < b.timers {
        let n = CHUNK.min(b.timers - i);
        let timers = (0..n)
            .map(|_| spec.clone().into_timer(TimerId::new_v7(), now))
            .collect();
        for o in store.create_timers(timers).await? {
            ids.push(o.timer.id);
        }
        i += n;
    }

    // Fire everything, a transaction per chunk, as the firing thread's batches.
    let pages_created = store.writer_pages_written().await?;
    let started = Instant::now();
    for chunk in ids.chunks(CHUNK) {
        let fired_at_us = clock.now_us();
        let fires = chunk
            .iter()
            .map(|&timer_id| FireRequest {
                timer_id,
                fired_at_us,
                refuse_early: false,
            })
            .collect();
        store.fire_timers(fires).await?;
    }
    let fire_s = started.elapsed().as_secs_f64();
    let pages_fired = store.writer_pages_written().await?;

    // Lease in batches of half the reports in flight, as a lease session does, and report
    // each delivery from its own task, as executors do.
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(b.concurrency.max(1)));
    let batch = (b.concurrency / 2).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut leased = 0usize;
    while leased < ids.len() {
        let mut permits = slots.clone().acquire_many_owned(batch as u32).await?;
        let claimed = store.claim_deliveries("cycle", 60_000_000, batch).await?;
        anyhow::ensure!(!claimed.is_empty(), "deliveries missing after firing");
        leased += claimed.len();
        for d in claimed {
            // Each report gives back its own slot; spare ones go back below.
            let one = permits.split(1);
            let store = store.clone();
            tasks.spawn(async move {
                let at = SystemClock.now_us();
                let outcome = store
                    .report_attempt(AttemptReport {
                        delivery_id: d.delivery.id,
                        lease_owner: "cycle".into(),
                        attempt: d.delivery.attempt,
                        started_at_us: at,
                        duration_us: 500,
                        outcome: AttemptOutcome::Succeeded,
                        retry_after_ms: None,
                        http_status: Some(200),
                        exit_code: None,
                        error: None,
                        response_excerpt: Some("ok".into()),
                    })
                    .await;
                drop(one);
                outcome.map(|_| ())
            });
        }
        drop(permits);
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let deliver_s = started.elapsed().as_secs_f64();
    let pages_reported = store.writer_pages_written().await?;
    store.close().await;

    let n = ids.len().max(1) as f64;
    let per = |pages: i64| (pages as f64 / n * 100.0).round() / 100.0;
    emit(json!({
        "section": "store_cycle",
        "timers": ids.len(),
        "concurrency": b.concurrency,
        "fires_per_s": (n / fire_s).round(),
        "lease_and_report_per_s": (n / deliver_s).round(),
        "deliveries_per_s": (n / (fire_s + deliver_s)).round(),
        // 4 KiB WAL frames the writer wrote, per timer.
        "wal_pages_per_timer": {
            "create": per(pages_created),
            "fire": per(pages_fired - pages_created),
            "lease_and_report": per(pages_reported - pages_fired),
        },
    }));
    Ok(())
}
