//! `minoots bench flood`: what a flood of requests with guessed API keys does to firing
//! lateness. Each run starts the kernel and the control plane (default settings) on a
//! fresh store, schedules `--timers` timers due within `--spread-s`, and measures the
//! firing thread's lateness (fired − due, as stored on each timer). Quiet runs and flood
//! runs alternate; in a flood run, clients from `--addresses` loopback addresses send
//! `GET /timers` with a new random well-formed key each, `--in-flight` at a time per
//! address, from before the first timer is due until every timer fired. Reported: lateness
//! of each run, the flood's answers by status and the key lookups that reached the store.
//!
//! Client and server share this machine's cores; nothing here asserts timings.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use minoots_control_plane::{AppState, ControlPlaneConfig};
use minoots_core::timefmt::format_us;
use minoots_core::{Clock, SystemClock, TimerRequest};
use minoots_kernel::KernelApi;
use minoots_kernel::metrics::KernelMetrics;
use serde_json::json;

use super::{bench_base, dist_us, emit, section_dir, start_kernel, stored_fire_lateness};

#[derive(clap::Args, Clone)]
pub struct FloodBench {
    /// Timers per run, without actions, due uniformly within `--spread-s`.
    #[arg(long, default_value_t = 10_000)]
    timers: usize,
    /// Seconds over which the timers fall due.
    #[arg(long, default_value_t = 5)]
    spread_s: u64,
    /// Client addresses of the flood (127.0.0.1 upwards).
    #[arg(long, default_value_t = 4)]
    addresses: u8,
    /// Flood requests in flight per address.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Runs of each kind, quiet and flood alternating.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Small sizes for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the stores are created (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// What the flood clients saw.
#[derive(Default)]
struct FloodCount {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

pub async fn run(mut b: FloodBench) -> anyhow::Result<()> {
    if b.quick {
        b.timers = b.timers.min(1_000);
        b.spread_s = b.spread_s.min(1);
        b.runs = b.runs.min(1);
    }
    anyhow::ensure!(b.addresses >= 1, "--addresses must be at least 1");
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let mut summary: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for i in 0..b.runs.max(1) * 2 {
        let flood = i % 2 == 1;
        let mode = if flood { "flood" } else { "quiet" };
        let dir = section_dir(&base, &format!("flood-{i}"))?;
        let mut result = one_run(&b, &dir, flood).await?;
        summary.entry(mode).or_default().push(json!({
            "p50_us": result["firing_thread"]["p50_us"],
            "p99_us": result["firing_thread"]["p99_us"],
            "max_us": result["firing_thread"]["max_us"],
        }));
        result["run"] = json!(i / 2 + 1);
        result["mode"] = json!(mode);
        emit(result);
    }
    emit(json!({"section": "flood_summary", "firing_lateness_by_run": summary}));
    Ok(())
}

async fn one_run(
    b: &FloodBench,
    dir: &std::path::Path,
    flood: bool,
) -> anyhow::Result<serde_json::Value> {
    let kernel = start_kernel(dir).await?;
    let api: Arc<dyn KernelApi> = kernel.clone();
    let state = AppState::new(api, ControlPlaneConfig::default(), Some(kernel.clone()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(minoots_control_plane::serve(state, listener, async {
        let _ = stopped.await;
    }));

    // Timers due from a lead time that covers the set-up, over the spread.
    let lead_us = 1_000_000 + b.timers as i64 * 20;
    let first_due = SystemClock.now_us() + lead_us;
    let spread_us = b.spread_s.max(1) as i64 * 1_000_000;
    let mut made = 0;
    while made < b.timers {
        let n = 1_000.min(b.timers - made);
        let chunk: Vec<TimerRequest> = (made..made + n)
            .map(|j| {
                let at = first_due + j as i64 * spread_us / b.timers.max(1) as i64;
                TimerRequest::from_json(
                    format!(
                        r#"{{"fireAt": "{}", "name": "flood-bench"}}"#,
                        format_us(at)
                    )
                    .as_bytes(),
                )
                .expect("valid request")
            })
            .collect();
        kernel
            .schedule_many("bench", chunk)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        made += n;
    }
    anyhow::ensure!(
        SystemClock.now_us() < first_due,
        "set-up took longer than the lead time; lower --timers"
    );

    let lookups_before = KernelMetrics::get(&kernel.metrics().store_key_lookups);
    let count = Arc::new(FloodCount::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    if flood {
        for a in 1..=b.addresses {
            let client = reqwest::Client::builder()
                .no_proxy()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, a)))
                .build()?;
            for _ in 0..b.in_flight.max(1) {
                let (client, url, count, stop) =
                    (client.clone(), url.clone(), count.clone(), stop.clone());
                clients.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(key) = minoots_control_plane::auth::generate_key() else {
                            return;
                        };
                        let status = client
                            .get(format!("{url}/timers"))
                            .header("x-api-key", key)
                            .send()
                            .await
                            .map(|r| r.status().as_u16());
                        count.requests.fetch_add(1, Ordering::Relaxed);
                        let slot = match status {
                            Ok(401) => &count.unauthorized,
                            Ok(429) => &count.limited,
                            _ => &count.other,
                        };
                        slot.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
    }
    let flood_start = Instant::now();

    // Until every timer fired (or well past the last due time).
    let deadline =
        Instant::now() + Duration::from_micros((lead_us + spread_us) as u64 + 60_000_000);
    while KernelMetrics::get(&kernel.metrics().timers_fired) < b.timers as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let flood_s = flood_start.elapsed().as_secs_f64();
    let lookups = KernelMetrics::get(&kernel.metrics().store_key_lookups) - lookups_before;

    let (late, early) = stored_fire_lateness(&kernel).await?;
    let fired = late.len();
    let _ = stop_server.send(());
    kernel.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let requests = count.requests.load(Ordering::Relaxed);
    Ok(json!({
        "section": "flood",
        "timers": b.timers,
        "spread_s": b.spread_s,
        "missed": b.timers - fired,
        "fired_early": early,
        "firing_thread": dist_us(late),
        "flood": if flood { json!({
            "addresses": b.addresses,
            "in_flight_per_address": b.in_flight,
            "requests": requests,
            "requests_per_s": (requests as f64 / flood_s).round(),
            "answered_401": count.unauthorized.load(Ordering::Relaxed),
            "answered_429": count.limited.load(Ordering::Relaxed),
            "answered_other": count.other.load(Ordering::Relaxed),
            "store_key_lookups": lookups,
        }) } else { json!(null) },
    }))
}
