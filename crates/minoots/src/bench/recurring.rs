//! `minoots bench recurring`: many schedules firing every minute (`0 * * * * *`), all at
//! the same second — the worst case for the dispatcher, which must record every slot and
//! create every run's timer before (or at) the minute. Reports schedules created per
//! second, memory per schedule, and for each minute: slots fired, the rate they fired at,
//! slot lateness (fired − the minute) at the kernel, and missing or doubled slots.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use minoots_core::records::EventQuery;
use minoots_core::schedule::ScheduleRequest;
use minoots_core::timefmt::parse_rfc3339_us;
use minoots_core::{Clock, EventType, SystemClock};
use minoots_kernel::KernelApi;
use serde_json::json;
use tokio_stream::StreamExt;

use super::{bench_base, dist_us, emit, rss_bytes, section_dir, start_kernel, trim_heap};

#[derive(clap::Args, Clone)]
pub struct RecurringBench {
    /// Schedules, each firing at second 0 of every minute.
    #[arg(long, default_value_t = 100_000)]
    schedules: usize,
    /// Minutes to watch them fire.
    #[arg(long, default_value_t = 2)]
    minutes: u32,
    /// Concurrent creators.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Small size for a smoke test (2,000 schedules, one minute).
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const MINUTE_US: i64 = 60_000_000;

pub async fn run(mut b: RecurringBench) -> anyhow::Result<()> {
    if b.quick {
        b.schedules = b.schedules.min(2_000);
        b.minutes = 1;
    }
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let kernel = start_kernel(&section_dir(&base, "recurring")?).await?;
    trim_heap();
    let rss_start = rss_bytes();

    let request = ScheduleRequest::from_json(br#"{"cron": "0 * * * * *"}"#)?;
    let started = Instant::now();
    let per_task = b.schedules.div_ceil(b.concurrency.max(1));
    let mut tasks = Vec::new();
    for t in 0..b.concurrency.max(1) {
        let (k, r) = (kernel.clone(), request.clone());
        let n = per_task.min(b.schedules.saturating_sub(t * per_task));
        tasks.push(tokio::spawn(async move {
            let mut errors = 0usize;
            for _ in 0..n {
                if k.create_schedule("bench", r.clone(), Default::default())
                    .await
                    .is_err()
                {
                    errors += 1;
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await?;
    }
    let create_s = started.elapsed().as_secs_f64();
    trim_heap();
    let rss_created = rss_bytes();
    emit(json!({
        "section": "recurring_create",
        "schedules": b.schedules,
        "errors": errors,
        "creates_per_s": (b.schedules as f64 / create_s).round(),
        "rss_bytes_per_schedule": (rss_created.saturating_sub(rss_start)) as f64 / b.schedules.max(1) as f64,
        "queued": kernel.schedules_queued(),
    }));

    // Watch the fires of the next `minutes` minutes.
    let mut fired = kernel
        .stream_events(EventQuery {
            after_seq: -1, // from now on (EVENTS_FROM_NOW)
            limit: 1_000,
            types: vec![EventType::TimerFired],
            ..Default::default()
        })
        .await?;
    let now = SystemClock.now_us();
    let first_minute = (now / MINUTE_US + 1) * MINUTE_US;
    let last_minute = first_minute + (i64::from(b.minutes.max(1)) - 1) * MINUTE_US;
    let deadline = Instant::now()
        + Duration::from_micros((last_minute + MINUTE_US - 5_000_000 - now).max(0) as u64);
    let mut late: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut fired_at: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut doubled = 0usize;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline.into(), fired.next()).await {
        let e = e?;
        if !seen.insert(e.timer_id) {
            doubled += 1;
            continue;
        }
        let Some(at) = e.data["firedAt"]
            .as_str()
            .and_then(|t| parse_rfc3339_us(t).ok())
        else {
            continue;
        };
        let minute = at.div_euclid(MINUTE_US) * MINUTE_US;
        late.entry(minute).or_default().push(at - minute);
        let span = fired_at.entry(minute).or_insert((at, at));
        span.0 = span.0.min(at);
        span.1 = span.1.max(at);
    }
    trim_heap();
    let rss_after = rss_bytes();
    let mut minute = first_minute;
    while minute <= last_minute {
        let l = late.remove(&minute).unwrap_or_default();
        let n = l.len();
        let (first, last) = fired_at.get(&minute).copied().unwrap_or((minute, minute));
        let span_s = ((last - minute).max(1)) as f64 / 1e6;
        emit(json!({
            "section": "recurring_minute",
            "minute": minoots_core::timefmt::format_us(minute),
            "slots_fired": n,
            "missing": b.schedules.saturating_sub(n),
            "doubled": doubled,
            "slots_per_s": (n as f64 / span_s).round(),
            "first_fire_late_ms": (first - minute) as f64 / 1e3,
            "lateness": dist_us(l),
        }));
        minute += MINUTE_US;
    }
    emit(json!({
        "section": "recurring_memory",
        "rss_start_bytes": rss_start,
        "rss_after_create_bytes": rss_created,
        "rss_after_firing_bytes": rss_after,
        "window": kernel.window_len(),
    }));
    kernel.shutdown().await;
    Ok(())
}
