//! A cluster of real processes on one PostgreSQL database, with default settings: three
//! `minoots kernel`s, two `minoots orchestrator`s and one `minoots control-plane`.
//! 10,000 timers are created through the control plane, due evenly over 20 s; during
//! that span one kernel is SIGKILLed and the kernel running the cluster's maintenance
//! (the holder of shard 0) is SIGSTOPped past its shard lease, then SIGCONTed. The
//! control plane and one orchestrator talk to the kernel that stays up, the other
//! orchestrator to the one that is stopped. Webhooks go to a loopback receiver in the
//! test, which records each arrival's timer, delivery id and time. The test proves that
//!
//! - every timer is delivered, and none before its fire time;
//! - the survivor takes over every shard within one shard lease and a few rounds, and
//!   with shard 0 the maintenance: it, which rescued nothing before, rescues the leases
//!   of the orchestrator stuck behind the stopped kernel while that kernel sleeps;
//! - a timer arrives more than once only when the lease of its delivery was lost: each
//!   duplicate carries the same delivery id as the first arrival, and that delivery was
//!   rescued from an expired lease; duplicates never outnumber the rescued leases;
//! - the stopped kernel, woken with a stale window, tries to fire timers its successor
//!   owns and is refused by the fence (`minoots_fires_fenced_total` > 0), then rejoins:
//!   the shards are split again.
//!
//! It prints the figures (takeover time, lateness, duplicates, leases lost, fenced fires)
//! so they can be quoted.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; it uses a schema of its own, dropped at the end.
//! Without it the test prints "skipped: no database" and passes.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use common::pg::{self, Answer, Receiver, Schema, metric, signal, until_metric};
use common::{KillOnDrop, WAIT, free_port, start_process};
use minoots_core::timefmt::{format_us, parse_rfc3339_us};

const KEY: &str = "mnt_demo_key_free";
/// The demo tenant's tier without limits: the test creates far more timers, far faster,
/// than the free tier allows.
const TIERS: &str = r#"{"free": {"requestsPerMinute": null, "createsPerMinute": null, "timersPerDay": null, "pendingTimers": null, "maxDurationMs": null}}"#;
/// A kernel's shard lease with default settings.
const SHARD_LEASE: Duration = Duration::from_secs(10);
/// The shards of a database (`minoots_store::postgres::shards::SHARD_COUNT`).
const SHARDS: f64 = 64.0;
const TIMERS: usize = 10_000;
/// The fire times are spread evenly over this span.
const SPAN: Duration = Duration::from_secs(20);
/// Create requests in flight at once.
const CREATES_IN_FLIGHT: usize = 48;
/// The time allowed for creating every timer: the span starts this long after the first
/// create, so that every timer is acknowledged before the first one is due. Creates run
/// at 1,600-2,700/s in a debug build on a 2-core machine (4-6 s), at half that while the
/// machine compiles, and at 700-820/s on a slow evening of the same machine (12-15 s); the
/// test fails with a clear message if they do not fit.
const CREATE_BUDGET: Duration = Duration::from_secs(25);
/// When, into the span, one kernel is SIGKILLed and the maintainer SIGSTOPped: early
/// enough that the takeover and the rejoin happen while timers are still due.
const KILL_AT: Duration = Duration::from_secs(2);
const STOP_AT: Duration = Duration::from_secs(4);
/// How long `/hold` keeps a webhook before answering. Every 40th timer due in the
/// [`HOLD`] before the SIGSTOP goes there, so that the orchestrator behind the stopped
/// kernel surely has attempts under way when its kernel stops: they complete, their
/// reports cannot reach the kernel, and their leases are lost — the case the maintainer
/// must rescue, and the only one where a timer may arrive twice. (About 25 held at
/// once in all: an orchestrator runs at most 32 attempts per host, so more would queue
/// every other webhook behind them.)
const HOLD: Duration = Duration::from_secs(2);
/// How long after the span's end the last timer may still arrive. The takeover ends
/// 14-15 s into the span, and the survivor then fires the ~3,500 timers of the other two
/// kernels' shards at once: in a debug build on 2 cores the orchestrators need from a
/// few seconds to about 30 s beyond the span to work off that backlog, all of it to one
/// host (each runs at most 32 attempts per host, each holding its slot until the kernel
/// has its report). On a machine half as fast that takes longer, so past the grace the
/// test waits on while timers keep arriving (see [`DELIVERY_STALL`]), up to
/// [`DELIVERY_CAP`]: what it asserts is that every timer arrives, not how fast a debug
/// build works off the backlog.
const DELIVERY_GRACE: Duration = Duration::from_secs(45);
/// Past [`DELIVERY_GRACE`], the wait ends when no new timer arrived for this long.
const DELIVERY_STALL: Duration = Duration::from_secs(10);
/// The longest wait beyond the span's end, however the timers keep arriving.
const DELIVERY_CAP: Duration = Duration::from_secs(150);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as i64
}

/// A `minoots kernel` process with its addresses.
struct KernelProc {
    proc: KillOnDrop,
    grpc_url: String,
    /// `/metrics` and `/readyz`.
    http_url: String,
}

impl KernelProc {
    fn start(schema: &Schema) -> Self {
        let (proc, grpc_url, http_url) = pg::start_kernel(schema, &[]);
        Self {
            proc,
            grpc_url,
            http_url,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

/// Starts `minoots orchestrator --demo` (webhooks may reach loopback) against a kernel;
/// returns it and the base URL of its `/metrics`.
fn start_orchestrator(kernel_url: &str) -> (KillOnDrop, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let (child, _) = start_process(
        &[
            "orchestrator",
            "--kernel-url",
            kernel_url,
            "--http-addr",
            &http,
            "--demo",
        ],
        &[],
        "minoots orchestrator running",
    );
    (KillOnDrop(child), format!("http://{http}"))
}

/// Starts `minoots control-plane --demo` against a kernel; returns it and its REST base.
fn start_control_plane(kernel_url: &str) -> (KillOnDrop, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let (child, _) = start_process(
        &[
            "control-plane",
            "--kernel-url",
            kernel_url,
            "--http-addr",
            &http,
            "--demo",
        ],
        &[("MINOOTS_TIERS", TIERS)],
        "minoots control plane ready on ",
    );
    (KillOnDrop(child), format!("http://{http}"))
}

/// The counters and gauges of a process's `/metrics` that say where deliveries are, on
/// one line (for failure messages).
async fn counters(http: &reqwest::Client, base: &str) -> String {
    let Ok(resp) = http.get(format!("{base}/metrics")).send().await else {
        return "no answer".into();
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            !l.starts_with('#')
                && [
                    "minoots_timers_",
                    "minoots_deliveries_",
                    "minoots_leases_",
                    "minoots_fires_",
                    "minoots_orchestrator_in_flight",
                    "minoots_orchestrator_released",
                    "minoots_orchestrator_deferred",
                    "minoots_orchestrator_reports_lost",
                    "minoots_orchestrator_leases_lost",
                    "minoots_orchestrator_attempts_total",
                ]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The process id in a kernel's or executor's name (`kind/host/pid/random`, see
/// `minoots_orchestrator::executor::lease_owner`): the test knows its children by pid.
fn pid_of(name: &str) -> Option<u32> {
    name.rsplit('/').nth(1)?.parse().ok()
}

/// The pid of the kernel holding `shard`, as the database says.
async fn shard_holder(db: &tokio_postgres::Client, schema: &Schema, shard: i32) -> Option<u32> {
    let owner: String = db
        .query_one(
            &format!("SELECT owner FROM {}.shards WHERE shard = $1", schema.name),
            &[&shard],
        )
        .await
        .unwrap()
        .get(0);
    pid_of(&owner)
}

/// Creates the timers through the control plane, `CREATES_IN_FLIGHT` at a time, timer
/// `i` due at `span_start_us + i × SPAN / TIMERS`, calling the receiver at `hooks`
/// (`/hold` for every 40th timer due in the [`HOLD`] before the SIGSTOP, else `/hook`);
/// returns each id with the fire time the control plane acknowledged.
async fn create_all(
    http: &reqwest::Client,
    base: &str,
    hooks: &str,
    span_start_us: i64,
) -> HashMap<String, i64> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CREATES_IN_FLIGHT {
        let (http, base, hooks, next) = (
            http.clone(),
            base.to_string(),
            hooks.to_string(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TIMERS {
                    return made;
                }
                let after_us = (SPAN.as_micros() as i64) * i as i64 / TIMERS as i64;
                let fire_us = span_start_us + after_us;
                let held = (STOP_AT - HOLD).as_micros() as i64..STOP_AT.as_micros() as i64;
                let path = if held.contains(&after_us) && i % 40 == 0 {
                    "hold"
                } else {
                    "hook"
                };
                let hook = format!("{hooks}/{path}");
                let body = serde_json::json!({
                    "tenantId": "test", "name": "cluster", "fireAt": format_us(fire_us),
                    "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
                });
                let timer = common::create_timer(&http, &base, KEY, body).await;
                let id = timer["id"].as_str().unwrap().to_string();
                let fire_at = parse_rfc3339_us(timer["fireAt"].as_str().unwrap()).unwrap();
                assert_eq!(fire_at, fire_us, "the fire time asked for");
                made.push((id, fire_at));
            }
        });
    }
    let mut timers = HashMap::with_capacity(TIMERS);
    while let Some(made) = workers.join_next().await {
        timers.extend(made.expect("a create worker"));
    }
    timers
}

/// What keeps shards from the survivor, for the failure message: the shards it does not
/// hold, and the sessions of this schema's kernels that sit in an open transaction (a
/// process stopped inside one keeps its row locks).
async fn takeover_blockers(
    db: &tokio_postgres::Client,
    schema: &Schema,
    survivor: u32,
    processes: &[(u32, &str)],
) -> String {
    let mut out = String::new();
    for r in db
        .query(
            &format!(
                "SELECT shard, owner, epoch, lease_until,
                        (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
                   FROM {}.shards ORDER BY shard",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
    {
        let owner: String = r.get(1);
        if pid_of(&owner) != Some(survivor) {
            let (shard, epoch, until, now): (i32, i64, i64, i64) =
                (r.get(0), r.get(2), r.get(3), r.get(4));
            out += &format!(
                "shard {shard}: owner {owner:?}, epoch {epoch}, lease ended {} ms ago\n",
                (now - until) / 1_000
            );
        }
    }
    out + &open_transactions(db, processes).await
}

/// The sessions of this test's processes that sit in an open transaction, each with the
/// process it belongs to, what it waits for and whom, and the tables it holds locks on
/// (for failure messages: a process stopped inside a transaction keeps its row locks).
async fn open_transactions(db: &tokio_postgres::Client, processes: &[(u32, &str)]) -> String {
    // A session's client port names its process: the process holds that socket.
    let mut port_owner: HashMap<i32, &str> = HashMap::new();
    for (pid, role) in processes {
        for port in local_ports(*pid) {
            port_owner.insert(i32::from(port), role);
        }
    }
    let mut out = String::new();
    for r in db
        .query(
            "SELECT a.pid, coalesce(a.client_port, 0), a.state, a.query,
                    (extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint,
                    coalesce(a.wait_event_type || ':' || a.wait_event, ''),
                    pg_blocking_pids(a.pid)::text,
                    coalesce((SELECT string_agg(DISTINCT c.relname, ', ')
                                FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                               WHERE l.pid = a.pid AND l.granted AND c.relkind = 'r'), '')
               FROM pg_stat_activity a
              WHERE a.xact_start IS NOT NULL AND a.application_name LIKE 'minoots-%'
                AND a.pid <> pg_backend_pid()
              ORDER BY a.xact_start",
            &[],
        )
        .await
        .unwrap()
    {
        let (pid, port, state, query): (i32, i32, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let (open_ms, waits, blockers, tables): (i64, String, String, String) =
            (r.get(4), r.get(5), r.get(6), r.get(7));
        // Other tests' processes may share the database: only this test's are shown.
        let Some(owner) = port_owner.get(&port).copied() else {
            continue;
        };
        out += &format!(
            "session {pid} of the {owner}: {state} in a transaction open {open_ms} ms, waiting {waits:?} on sessions {blockers}, tables locked: {tables}; last query {:?}\n",
            query
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(160)
                .collect::<String>()
        );
    }
    out
}

/// The local TCP ports of the sockets a process holds (Linux: its fds in `/proc`, the
/// sockets' inodes in `/proc/net/tcp*`).
fn local_ports(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap_or_default();
                if let Ok(port) = u16::from_str_radix(port, 16) {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

/// The shard of a timer: the last byte of its id modulo 64 (as
/// `minoots_store::postgres::shards::shard_of` computes it).
fn shard_of(id: &str) -> i32 {
    i32::from(u8::from_str_radix(&id[id.len() - 2..], 16).expect("a UUID")) % 64
}

/// The value at quantile `q` of sorted values.
fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_delivers_every_timer_through_a_kill_and_a_stall() {
    let url = or_skip!(pg::database_url());
    let test_started = Instant::now();
    let schema = Schema::new(&url, "minoots_cluster");
    let db = pg::admin(&url).await;
    let (receiver, hooks) = Receiver::answering(|path, _| match path {
        "hold" => Answer::After(HOLD),
        _ => Answer::Now(StatusCode::OK),
    })
    .await;
    // A timeout on every call: no request of the test may hang on a stopped process.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Three kernels; the first creates the schema, so they start one after the other.
    let mut kernels: Vec<KernelProc> = (0..3).map(|_| KernelProc::start(&schema)).collect();
    // Joining kernels get their share as the others give shards back at their rounds:
    // wait until each holds its share (⌈64 / 3⌉ = 22 at most) and together all 64.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut held = Vec::new();
        for k in &kernels {
            held.push(metric(&http, &k.http_url, "minoots_shards_held").await);
        }
        if held.iter().all(|h| *h >= 20.0) && held.iter().sum::<f64>() == SHARDS {
            println!("shards split {held:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the shards are split: {held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The holder of shard 0 runs the maintenance: that one is stopped (so maintenance
    // must move), one of the others is killed, the third stays up.
    let maintainer_pid = shard_holder(&db, &schema, 0)
        .await
        .expect("shard 0 is held");
    let stopped_at = kernels
        .iter()
        .position(|k| k.pid() == maintainer_pid)
        .expect("the holder of shard 0 is one of the test's kernels");
    let stopped = kernels.remove(stopped_at);
    let mut killed = kernels.remove(0);
    let survivor = kernels.remove(0);
    // Which kernel held each shard before the faults, to report the lateness of each
    // kernel's timers apart.
    let first_holder: HashMap<i32, u32> = db
        .query(
            &format!("SELECT shard, owner FROM {}.shards", schema.name),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), pid_of(r.get(1)).expect("every shard held")))
        .collect();

    let (cp_proc, api) = start_control_plane(&survivor.grpc_url);
    let (orch1_proc, orch1) = start_orchestrator(&survivor.grpc_url);
    let (orch2_proc, orch2) = start_orchestrator(&stopped.grpc_url);
    let orch2_pid = orch2_proc.0.id();
    // Who is who, for the failure messages that name the sessions of each process.
    let processes = [
        (survivor.pid(), "survivor kernel"),
        (stopped.pid(), "stopped kernel"),
        (killed.pid(), "killed kernel"),
        (cp_proc.0.id(), "control plane"),
        (orch1_proc.0.id(), "orchestrator 1"),
        (orch2_pid, "orchestrator 2"),
    ];

    // Creation, with every fire time after its end.
    let create_started = Instant::now();
    let span_start_us = now_us() + CREATE_BUDGET.as_micros() as i64;
    let span_start = create_started + CREATE_BUDGET;
    let timers = create_all(&http, &api, &hooks, span_start_us).await;
    let create_took = create_started.elapsed();
    assert_eq!(timers.len(), TIMERS, "every timer acknowledged once");
    assert!(
        Instant::now() < span_start,
        "{TIMERS} creates took {create_took:?}, beyond the budget of {CREATE_BUDGET:?}"
    );
    println!(
        "created {TIMERS} timers in {create_took:?} ({:.0}/s), due over {SPAN:?} from {}",
        TIMERS as f64 / create_took.as_secs_f64(),
        format_us(span_start_us)
    );

    // During the span: kill one kernel, stop the maintainer.
    tokio::time::sleep_until((span_start + KILL_AT).into()).await;
    killed.proc.0.kill().unwrap();
    killed.proc.0.wait().unwrap();
    let kill_time = Instant::now();
    tokio::time::sleep_until((span_start + STOP_AT).into()).await;
    // Only the holder of shard 0 rescues: the survivor has rescued nothing so far.
    let survivor_share = metric(&http, &survivor.http_url, "minoots_shards_held").await;
    assert_eq!(
        metric(&http, &survivor.http_url, "minoots_leases_rescued_total").await,
        0.0,
        "a kernel that is not the maintainer rescues nothing"
    );
    signal(&stopped.proc.0, libc::SIGSTOP);
    let stop_time = Instant::now();
    // The survivor takes every shard once both leases ended: within one lease of the
    // stop and a round or two (the stopped kernel's last round may have been just
    // before the signal).
    let takeover_by = stop_time + SHARD_LEASE + Duration::from_secs(5);
    // When the survivor first held more than its share: the killed kernel's shards.
    let mut first_rise = None;
    loop {
        let held = metric(&http, &survivor.http_url, "minoots_shards_held").await;
        if held > survivor_share && first_rise.is_none() {
            first_rise = Some(kill_time.elapsed());
        }
        if held == SHARDS {
            break;
        }
        if Instant::now() >= takeover_by {
            let why = takeover_blockers(&db, &schema, survivor.pid(), &processes).await;
            panic!(
                "the survivor holds {held} of {SHARDS} shards {:?} after the SIGSTOP\n{why}",
                stop_time.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_from_stop = stop_time.elapsed();
    let took_from_kill = kill_time.elapsed();
    println!(
        "takeover: the survivor took its first shard of the others {:?} after the SIGKILL, and holds all {SHARDS} shards {took_from_kill:?} after the SIGKILL, {took_from_stop:?} after the SIGSTOP",
        first_rise.unwrap_or(took_from_kill)
    );
    assert_eq!(
        shard_holder(&db, &schema, 0).await,
        Some(survivor.pid()),
        "shard 0, and the maintenance with it, moved to the survivor"
    );
    // What the orchestrator behind the stopped kernel still holds: leased before the
    // stop, never reported since (its kernel sleeps), so expired by now. The new
    // maintainer must rescue them while the old one sleeps.
    let stuck: i64 = db
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.deliveries WHERE status = 'in_flight' AND lease_owner LIKE $1",
                schema.name
            ),
            &[&format!("orch/%/{orch2_pid}/%")],
        )
        .await
        .unwrap()
        .get(0);
    println!("{stuck} deliveries stuck with the orchestrator behind the stopped kernel");
    assert!(
        stuck > 0,
        "the orchestrator behind the stopped kernel had held webhooks under way"
    );
    // One rescue pass (every second) after the survivor took shard 0.
    let rescue_by = Instant::now() + Duration::from_secs(5);
    let rescued_by_survivor = loop {
        let r = metric(&http, &survivor.http_url, "minoots_leases_rescued_total").await;
        if r > 0.0 {
            break r;
        }
        if Instant::now() >= rescue_by {
            let why = open_transactions(&db, &processes).await;
            panic!("the survivor took shard 0 but rescued no lease in 5 s\n{why}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "the survivor, maintainer now, rescued {rescued_by_survivor} leases {:?} after the SIGSTOP",
        stop_time.elapsed()
    );

    // Woken past its lease, the stale kernel tries to fire what its window still holds:
    // the fence refuses it.
    signal(&stopped.proc.0, libc::SIGCONT);
    let fenced = until_metric(
        &http,
        &stopped.http_url,
        "minoots_fires_fenced_total",
        |f| f > 0.0,
        WAIT,
    )
    .await;
    println!("the woken kernel's fires refused by the fence: {fenced}");
    // It rejoins: two kernels alive, 32 shards each.
    for k in [&survivor, &stopped] {
        until_metric(
            &http,
            &k.http_url,
            "minoots_shards_held",
            |h| h == SHARDS / 2.0,
            WAIT,
        )
        .await;
    }
    let rejoined = stop_time.elapsed();
    println!("the woken kernel holds its share again {rejoined:?} after the SIGSTOP");

    // Every timer arrives.
    // Polled: the receiver's own waits are bounded by `WAIT`, this one by the span.
    let grace_end = span_start + SPAN + DELIVERY_GRACE;
    let cap = span_start + SPAN + DELIVERY_CAP;
    let (mut seen, mut last_arrival) = (receiver.distinct(), Instant::now());
    while receiver.distinct() < TIMERS {
        let now = Instant::now();
        let got = receiver.distinct();
        if got > seen {
            (seen, last_arrival) = (got, now);
        }
        let stalled = now.duration_since(last_arrival) >= DELIVERY_STALL;
        if now < grace_end || (now < cap && !stalled) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut why = format!(
            "(the last new arrival {:?} ago, {:?} after the span's end)\n",
            now.duration_since(last_arrival),
            now.duration_since(span_start + SPAN)
        );
        for (name, base) in [
            ("survivor kernel", &survivor.http_url),
            ("woken kernel", &stopped.http_url),
            ("orchestrator 1", &orch1),
            ("orchestrator 2", &orch2),
        ] {
            why += &format!("{name}: {}\n", counters(&http, base).await);
        }
        why += &open_transactions(&db, &processes).await;
        panic!("{got} of {TIMERS} timers arrived in time\n{why}");
    }
    let all_arrived = span_start.elapsed();
    // Then the cluster settles: every delivery succeeded and no attempt runs, so no
    // redelivery can still arrive when the duplicates are counted.
    let deadline = Instant::now() + WAIT;
    loop {
        let row = db
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE status <> 'succeeded'), count(*)
                       FROM {}.deliveries",
                    schema.name
                ),
                &[],
            )
            .await
            .unwrap();
        let (unsettled, deliveries): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(deliveries, TIMERS as i64, "one delivery per timer");
        let running = metric(&http, &orch1, "minoots_orchestrator_in_flight").await
            + metric(&http, &orch2, "minoots_orchestrator_in_flight").await;
        if unsettled == 0 && running == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster settles ({unsettled} deliveries unsettled, {running} attempts running)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The leases lost: what the maintainers rescued, and the deliveries whose lease
    // expired, from the event log.
    let mut rescued = 0.0;
    for k in [&survivor, &stopped] {
        rescued += metric(&http, &k.http_url, "minoots_leases_rescued_total").await;
    }
    let survivor_rescued = metric(&http, &survivor.http_url, "minoots_leases_rescued_total").await;
    let expired_rows = db
        .query(
            &format!(
                "SELECT delivery_id::text FROM {}.events
                  WHERE type = 'delivery.retrying' AND data LIKE '%lease of % expired%'",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let lost_leases: HashSet<String> = expired_rows.iter().map(|r| r.get(0)).collect();
    let orch_leases_lost = metric(&http, &orch1, "minoots_orchestrator_leases_lost_total").await
        + metric(&http, &orch2, "minoots_orchestrator_leases_lost_total").await;
    let reports_lost = metric(&http, &orch1, "minoots_orchestrator_reports_lost_total").await
        + metric(&http, &orch2, "minoots_orchestrator_reports_lost_total").await;

    let arrivals: Vec<(pg::Arrival, i64)> = receiver
        .arrivals()
        .into_iter()
        .map(|a| {
            let at_us = a.at.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
            (a, at_us)
        })
        .collect();
    assert_eq!(
        receiver.distinct(),
        TIMERS,
        "no webhook of an unknown timer"
    );
    // None early, and how late.
    let mut lateness_us = Vec::with_capacity(arrivals.len());
    // Lateness of the timers due before the kill: the cluster's pace undisturbed.
    let mut before_kill_us = Vec::new();
    let kill_due_us = span_start_us + KILL_AT.as_micros() as i64;
    for (a, at_us) in &arrivals {
        let fire_us = *timers
            .get(&a.timer)
            .unwrap_or_else(|| panic!("timer {} is one of the test's", a.timer));
        assert!(
            *at_us >= fire_us,
            "timer {} arrived {} µs before its fire time",
            a.timer,
            fire_us - *at_us
        );
        lateness_us.push(*at_us - fire_us);
        if fire_us < kill_due_us {
            before_kill_us.push(*at_us - fire_us);
        }
    }
    lateness_us.sort_unstable();
    before_kill_us.sort_unstable();
    // Duplicates: each is a redelivery of the same delivery, whose lease was lost.
    let mut first: HashMap<&str, &str> = HashMap::new();
    let mut duplicates = 0;
    // The lateness of each timer's first arrival, by the kernel that held its shard.
    let mut by_kernel: HashMap<u32, Vec<i64>> = HashMap::new();
    // The survivor's own timers due while the other two were down (after the stop,
    // before the takeover): only the survivor and orchestrator 1 stood between them and
    // their webhooks.
    let mut survivor_alone_us = Vec::new();
    let alone_us = span_start_us + (STOP_AT + Duration::from_secs(1)).as_micros() as i64
        ..span_start_us + (STOP_AT + SHARD_LEASE - Duration::from_secs(1)).as_micros() as i64;
    for (a, at_us) in &arrivals {
        match first.get(a.timer.as_str()) {
            None => {
                first.insert(&a.timer, &a.delivery);
                let holder = first_holder[&shard_of(&a.timer)];
                let fire_us = timers[&a.timer];
                by_kernel.entry(holder).or_default().push(*at_us - fire_us);
                if holder == survivor.pid() && alone_us.contains(&fire_us) {
                    survivor_alone_us.push(*at_us - fire_us);
                }
            }
            Some(delivery) => {
                duplicates += 1;
                assert_eq!(
                    *delivery, a.delivery,
                    "timer {} arrived twice under one delivery id",
                    a.timer
                );
                assert!(
                    lost_leases.contains(&a.delivery),
                    "timer {} arrived twice, but the lease of its delivery {} was never lost",
                    a.timer,
                    a.delivery
                );
            }
        }
    }
    println!(
        "figures: {TIMERS} timers, {} arrivals, {duplicates} duplicates; leases lost: {} rescued by the maintainers ({survivor_rescued} by the survivor), {} expired leases of {} deliveries in the event log, {orch_leases_lost} attempts stopped and {reports_lost} reports refused at the orchestrators; {fenced} fires fenced",
        arrivals.len(),
        rescued,
        expired_rows.len(),
        lost_leases.len()
    );
    println!(
        "lateness (arrival - fire time): before the kill p50 {} ms, p99 {} ms; all timers p50 {} ms, p99 {} ms, max {} ms; every timer arrived {all_arrived:?} after the span began; the test took {:?}",
        quantile(&before_kill_us, 0.5) / 1_000,
        quantile(&before_kill_us, 0.99) / 1_000,
        quantile(&lateness_us, 0.5) / 1_000,
        quantile(&lateness_us, 0.99) / 1_000,
        lateness_us[lateness_us.len() - 1] / 1_000,
        test_started.elapsed()
    );
    for (name, k) in [
        ("survivor", &survivor),
        ("killed", &killed),
        ("stopped", &stopped),
    ] {
        let mut late = by_kernel.remove(&k.pid()).unwrap_or_default();
        late.sort_unstable();
        println!(
            "timers of the {name} kernel's shards: {}, first arrival p50 {} ms, p99 {} ms, max {} ms late",
            late.len(),
            quantile(&late, 0.5) / 1_000,
            quantile(&late, 0.99) / 1_000,
            quantile(&late, 1.0) / 1_000
        );
    }
    survivor_alone_us.sort_unstable();
    println!(
        "the survivor's timers due while the others were down: {}, first arrival p50 {} ms, p99 {} ms, max {} ms late",
        survivor_alone_us.len(),
        quantile(&survivor_alone_us, 0.5) / 1_000,
        quantile(&survivor_alone_us, 0.99) / 1_000,
        quantile(&survivor_alone_us, 1.0) / 1_000
    );
    assert!(
        duplicates as f64 <= rescued,
        "{duplicates} duplicates, more than the {rescued} leases lost"
    );
    assert_eq!(
        expired_rows.len() as f64,
        rescued,
        "every rescued lease is in the event log"
    );
}
