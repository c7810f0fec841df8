//! `minoots bench --database-url URL takeover` (W5 on PostgreSQL): two real `minoots
//! kernel` processes with default settings share a scratch schema, one is SIGKILLed while
//! timers of every shard are about to fall due, and the survivor must take the killed
//! one's shards over and fire their timers: "a killed kernel's shards are taken over
//! within one shard lease (10 s by default), and what they held fires then, late but
//! never lost" (ARCHITECTURE.md, guarantee 6). The target is one lease TTL plus 1 s
//! (11 s with defaults) from the kill until every timer of the killed kernel's shards
//! has fired.
//!
//! Steps: far-future timers (1 h – 7 d out) are loaded in this process first (in bulk,
//! as `bench recovery` does), then the two kernels start one after the other and split
//! the 64 shards (each holds 32, read at their `/metrics`); the due timers are created
//! over gRPC through both kernels in turn, due from `--due-after-kill-ms` after the kill
//! over `--spread-ms`, so each shard has some; then one kernel is SIGKILLed. From the
//! kill the benchmark measures when the survivor holds all 64 shards, when every due
//! timer has fired (fire times read back over gRPC from the survivor), the lateness of
//! the killed kernel's shards' timers and of the survivor's own, and how many were lost,
//! fired twice (`timer.fired` events per timer) or fired early (before their due time,
//! or any far-future timer).
//!
//! Which shards the killed kernel held follows from how shards are leased
//! (`minoots-store/src/postgres/shards.rs`): the first kernel, alone, takes all 64; when
//! the second joins, the first gives back its highest 32 and the second takes them. So
//! the first holds 0–31 and the second 32–63. The benchmark checks this against what it
//! measured (`split_as_expected`: every survivor-shard timer fired within 1 s of its due
//! time); the headline figure, kill → every due timer fired, does not depend on it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minoots_core::timefmt::format_us;
use minoots_core::{Clock, EventType, SystemClock, TimerId, TimerRequest};
use minoots_kernel::KernelApi;
use minoots_kernel::grpc::GrpcKernelClient;
use minoots_store::{EventQuery, SHARD_COUNT, TimerQuery, shard_of};
use serde_json::json;
use tokio_stream::StreamExt;

use super::{
    DATABASE, bench_base, closed_loop, dist_us, emit, scratch_schema, section_dir, start_kernel,
};

#[derive(clap::Args, Clone)]
pub struct TakeoverBench {
    /// Timers due shortly after the kill, created over gRPC through both kernels.
    #[arg(long, default_value_t = 10_000)]
    timers: usize,
    /// Timers pending far out (1 h – 7 d), loaded before the kernels start.
    #[arg(long, default_value_t = 100_000)]
    pending: usize,
    /// Milliseconds from the kill to the first due time.
    #[arg(long, default_value_t = 500)]
    due_after_kill_ms: u64,
    /// Milliseconds over which the due timers fall due.
    #[arg(long, default_value_t = 1_000)]
    spread_ms: u64,
    /// Which kernel is SIGKILLed: `second` (the one that joined; shards 32–63) or `first`
    /// (shards 0–31, with shard 0 the cluster's maintenance).
    #[arg(long, default_value = "second", value_parser = ["first", "second"])]
    kill: String,
    /// gRPC creates in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Milliseconds from the start of the creates to the kill (default: 3 s plus 0.5 ms
    /// per timer); the creates must end within it.
    #[arg(long)]
    lead_ms: Option<u64>,
    /// Small sizes for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the workload's files go (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const TENANT: &str = "takeover";
const LOAD_CHUNK: usize = 5_000;
/// A kernel's shard lease with default settings (`PostgresConfig::shard_lease_ttl_ms`).
const SHARD_LEASE_MS: u64 = 10_000;
/// The guarantee: taken over within one lease plus a round (rounds run every second).
const TARGET_MS: u64 = SHARD_LEASE_MS + 1_000;
/// The longest wait for anything (a start, the split, the takeover, the fires) before
/// the benchmark gives up: not a target, a bound.
const WAIT: Duration = Duration::from_secs(90);
/// How often the kernels' `/metrics` are read while waiting for shards.
const POLL: Duration = Duration::from_millis(20);

/// A `minoots kernel` process, SIGKILLed if still running when dropped (an early error).
struct KernelProcess {
    child: Child,
    grpc: String,
    metrics: String,
    ready: Duration,
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl KernelProcess {
    /// Starts `minoots kernel` on the scratch schema with default settings (the database
    /// URL goes in the environment, not on the command line); returns once it is ready.
    fn start(url: &str, schema: &str) -> anyhow::Result<Self> {
        let port = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (grpc_port, http_port) = (port()?, port()?);
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "kernel",
                "--grpc-addr",
                &format!("127.0.0.1:{grpc_port}"),
                "--http-addr",
                &format!("127.0.0.1:{http_port}"),
            ])
            .env("MINOOTS_DATABASE_URL", url)
            .env("MINOOTS_DATABASE_SCHEMA", schema)
            .env("MINOOTS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut me = Self {
            child,
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            metrics: format!("http://127.0.0.1:{http_port}/metrics"),
            ready: Duration::ZERO,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("minoots kernel ready on ") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(WAIT)
            .map_err(|_| anyhow::anyhow!("a kernel process did not become ready"))?;
        me.ready = started.elapsed();
        Ok(me)
    }

    /// `minoots_shards_held` at the process's `/metrics`.
    async fn shards_held(&self, http: &reqwest::Client) -> anyhow::Result<usize> {
        let text = http.get(&self.metrics).send().await?.text().await?;
        text.lines()
            .find_map(|l| l.strip_prefix("minoots_shards_held "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as usize)
            .ok_or_else(|| anyhow::anyhow!("no minoots_shards_held at {}", self.metrics))
    }

    /// SIGTERM, then the wait for a graceful exit (SIGKILL after 30 s).
    async fn stop(mut self) -> anyhow::Result<bool> {
        // SAFETY: kill(2) on the id of a child this process started and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    }
}

/// Polls until every process holds `want` shards; returns how long it took.
async fn until_held(
    http: &reqwest::Client,
    procs: &[&KernelProcess],
    want: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let mut all = true;
        for p in procs {
            // A process still starting its HTTP side answers nothing yet: not there yet.
            all &= p.shards_held(http).await.ok() == Some(want);
        }
        if all {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < WAIT,
            "the kernels did not reach {want} shards each within {WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn fire_at_request(at_us: i64) -> TimerRequest {
    TimerRequest::from_json(format!(r#"{{"fireAt": "{}"}}"#, format_us(at_us)).as_bytes())
        .expect("valid request")
}

pub async fn run(mut b: TakeoverBench) -> anyhow::Result<()> {
    let Some(url) = DATABASE.get().cloned() else {
        anyhow::bail!(
            "takeover runs on PostgreSQL: minoots bench --database-url URL takeover \
             (on the embedded store, W5 is `minoots bench recovery`)"
        );
    };
    if b.quick {
        b.timers = b.timers.min(1_000);
        b.pending = b.pending.min(5_000);
    }
    anyhow::ensure!(b.timers > 0, "--timers must be at least 1");
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let dir = section_dir(&base, "takeover")?;
    let schema = scratch_schema(&dir);

    // Far-future timers, in bulk through a kernel in this process that leaves the
    // cluster (gives its shards back) before the kernel processes start.
    let load_started = Instant::now();
    if b.pending > 0 {
        let loader = start_kernel(&dir).await?;
        let now = SystemClock.now_us();
        let mut i = 0;
        while i < b.pending {
            let n = LOAD_CHUNK.min(b.pending - i);
            let reqs = (i..i + n)
                .map(|k| fire_at_request(now + 3_600_000_000 + (k as i64 % 604_800) * 1_000_000))
                .collect();
            loader
                .schedule_many(TENANT, reqs)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            i += n;
        }
        loader.shutdown().await;
    }
    let load_s = load_started.elapsed().as_secs_f64();

    // Two kernels, the second started once the first holds every shard.
    let first = KernelProcess::start(&url, &schema)?;
    let second = KernelProcess::start(&url, &schema)?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let half = SHARD_COUNT as usize / 2;
    let split = until_held(&http, &[&first, &second], half).await?;
    let clients: Vec<Arc<dyn KernelApi>> = [&first.grpc, &second.grpc]
        .into_iter()
        .map(|u| {
            GrpcKernelClient::connect_lazy(u, None)
                .map(|c| Arc::new(c) as Arc<dyn KernelApi>)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;

    // The due timers, through both kernels in turn; the kill comes `lead` after the start.
    let lead_us = b.lead_ms.unwrap_or(3_000 + b.timers as u64 / 2) as i64 * 1_000;
    let kill_plan_us = SystemClock.now_us() + lead_us;
    let first_due_us = kill_plan_us + b.due_after_kill_ms as i64 * 1_000;
    let spread_us = b.spread_ms as i64 * 1_000;
    let n = b.timers;
    let due_of = move |i: usize| first_due_us + i as i64 * spread_us / n as i64;
    let made: Arc<Mutex<Vec<(TimerId, i64)>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let creates = {
        let (clients, made) = (clients.clone(), made.clone());
        closed_loop(n, b.concurrency, move |i| {
            let (client, made) = (clients[i % clients.len()].clone(), made.clone());
            async move {
                let at = due_of(i);
                match client.schedule_timer(TENANT, fire_at_request(at)).await {
                    Ok(o) => {
                        made.lock().expect("made").push((o.timer.id, at));
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "takeover bench: a create failed");
                        false
                    }
                }
            }
        })
        .await
    };
    anyhow::ensure!(
        creates.errors == 0,
        "{} of {n} creates failed",
        creates.errors
    );
    anyhow::ensure!(
        SystemClock.now_us() < kill_plan_us,
        "the creates took longer than the lead ({} ms); lower --timers or raise --lead-ms",
        lead_us / 1_000
    );
    let due: HashMap<TimerId, i64> = made.lock().expect("made").iter().copied().collect();
    let last_due_us = due.values().copied().max().unwrap_or(first_due_us);

    // The kill, at the planned time.
    tokio::time::sleep(Duration::from_micros(
        (kill_plan_us - SystemClock.now_us()).max(0) as u64,
    ))
    .await;
    let kill_first = b.kill == "first";
    let (mut victim, survivor, client) = if kill_first {
        (first, second, clients[1].clone())
    } else {
        (second, first, clients[0].clone())
    };
    victim.child.kill()?;
    let kill_us = SystemClock.now_us();
    let killed = Instant::now();
    victim.child.wait()?;
    let victim_shards: HashSet<i32> = if kill_first {
        (0..half as i32).collect()
    } else {
        (half as i32..SHARD_COUNT).collect()
    };

    let holds_all = until_held(&http, &[&survivor], SHARD_COUNT as usize).await?;

    // Every due timer's `timer.fired` events, from the start of the log.
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
    let mut seen: HashMap<TimerId, u32> = HashMap::with_capacity(n);
    let mut far_future_fired = 0usize;
    while seen.len() < due.len() && killed.elapsed() < WAIT {
        let left = WAIT.saturating_sub(killed.elapsed());
        let Ok(Some(Ok(e))) = tokio::time::timeout(left, fired.next()).await else {
            break;
        };
        tally(&due, &mut seen, &mut far_future_fired, e.timer_id);
    }
    // A little longer, so that a second fire of any timer would be seen too.
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(2), fired.next()).await {
        tally(&due, &mut seen, &mut far_future_fired, e.timer_id);
    }
    drop(fired);

    // Fire times as stored, read back in due order (the far-future ones come after).
    let mut fired_at: HashMap<TimerId, i64> = HashMap::with_capacity(n);
    let mut after = None;
    loop {
        let page = client
            .list_timers(TimerQuery {
                tenant_id: TENANT.into(),
                status: None,
                label: None,
                limit: 500,
                after,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for t in &page.timers {
            if let (true, Some(f)) = (due.contains_key(&t.id), t.fired_at_us) {
                fired_at.insert(t.id, f);
            }
        }
        let beyond = page
            .timers
            .last()
            .is_some_and(|t| t.fire_at_us > last_due_us);
        match page.next {
            Some(next) if !beyond => after = Some(next),
            _ => break,
        }
    }
    let (first_ready, second_ready) = match kill_first {
        true => (victim.ready, survivor.ready),
        false => (survivor.ready, victim.ready),
    };
    let graceful = survivor.stop().await?;

    let (mut late_victim, mut late_survivor) = (Vec::new(), Vec::new());
    let (mut last_victim_fire, mut last_fire) = (i64::MIN, i64::MIN);
    let mut early = 0usize;
    for (id, at) in &due {
        let Some(f) = fired_at.get(id).copied() else {
            continue;
        };
        if f < *at {
            early += 1;
        }
        last_fire = last_fire.max(f);
        if victim_shards.contains(&shard_of(*id)) {
            late_victim.push(f - at);
            last_victim_fire = last_victim_fire.max(f);
        } else {
            late_survivor.push(f - at);
        }
    }
    let victim_timers = due
        .keys()
        .filter(|id| victim_shards.contains(&shard_of(**id)))
        .count();
    let lost = due
        .keys()
        .filter(|id| !fired_at.contains_key(id) && !seen.contains_key(id))
        .count();
    let fired_twice: u32 = seen.values().map(|c| c.saturating_sub(1)).sum();
    let max_late_us = late_victim
        .iter()
        .chain(&late_survivor)
        .copied()
        .max()
        .unwrap_or(0);
    let split_as_expected = late_survivor.iter().all(|&l| l < 1_000_000);
    let ms = |us: i64| (us.max(0) / 1_000) as u64;
    let to_victim_fired_ms = ms(last_victim_fire - kill_us);
    emit(json!({
        "section": "takeover",
        "workload": "W5",
        "store": "postgres",
        "kernels": 2,
        "processes": 2,
        "killed": if kill_first { "first (shards 0-31, maintenance)" } else { "second (shards 32-63)" },
        "timers": n,
        "pending": b.pending,
        "load_s": (load_s * 10.0).round() / 10.0,
        "first_ready_ms": first_ready.as_millis() as u64,
        "second_ready_ms": second_ready.as_millis() as u64,
        "shard_split_ms": split.as_millis() as u64,
        "creates_per_s": (n as f64 / creates.secs).round(),
        "create_call": dist_us(creates.latency_us),
        "due_from_kill_ms": [b.due_after_kill_ms, ms(last_due_us - kill_us)],
        "kill_to_survivor_holds_64_ms": holds_all.as_millis() as u64,
        "shards_polled_every_ms": POLL.as_millis() as u64,
        "kill_to_killed_shards_all_fired_ms": to_victim_fired_ms,
        "kill_to_all_fired_ms": ms(last_fire - kill_us),
        "target_ms": TARGET_MS,
        "target_met": lost == 0 && to_victim_fired_ms <= TARGET_MS,
        "killed_shard_timers": victim_timers,
        "lateness_killed_shards": dist_us(late_victim),
        "lateness_survivor_shards": dist_us(late_survivor),
        "max_lateness_ms": ms(max_late_us),
        "split_as_expected": split_as_expected,
        "lost": lost,
        "fired_twice": fired_twice,
        "fired_early": early + far_future_fired,
        "survivor_stopped_gracefully": graceful,
        "shard_lease_ttl_ms": SHARD_LEASE_MS,
        "settings": "defaults (both kernels: 10 s shard lease, 10 connections); no orchestrator, timers without actions",
    }));
    Ok(())
}

/// Counts one `timer.fired` event: per due timer, or as a far-future timer fired early.
fn tally(
    due: &HashMap<TimerId, i64>,
    seen: &mut HashMap<TimerId, u32>,
    far: &mut usize,
    id: TimerId,
) {
    if due.contains_key(&id) {
        *seen.entry(id).or_default() += 1;
    } else {
        *far += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_full_size_run() {
        let b: TakeoverBench = crate::bench::defaults();
        assert_eq!(
            (b.timers, b.pending, b.kill.as_str()),
            (10_000, 100_000, "second")
        );
        assert_eq!(
            (b.due_after_kill_ms, b.spread_ms, b.lead_ms),
            (500, 1_000, None)
        );
        assert_eq!(TARGET_MS, 11_000);
    }

    #[test]
    fn fired_events_count_per_due_timer_and_the_others_as_early() {
        let (a, b) = (TimerId::new_v7(), TimerId::new_v7());
        let due = HashMap::from([(a, 1), (b, 2)]);
        let (mut seen, mut far) = (HashMap::new(), 0);
        for id in [a, a, b, TimerId::new_v7()] {
            tally(&due, &mut seen, &mut far, id);
        }
        assert_eq!((seen[&a], seen[&b], far), (2, 1, 1));
    }
}
