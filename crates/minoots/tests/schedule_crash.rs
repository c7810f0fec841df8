//! Recurring schedules survive SIGKILL: a real `minoots serve` on its embedded store runs
//! two `every: 1s` schedules (misfire `latest`, window 1 h) of a `team` tenant whose
//! webhooks go to a loopback receiver, and is SIGKILLed at seeded random moments and
//! restarted on the same data directory — mostly after short outages (under the 5 s after
//! which a slot counts as missed) and once after a long one, so catch-up applies. Then
//! every run record is read back through `GET /schedules/{id}/runs` and checked against
//! what the receiver saw and when the kills happened:
//!
//! 1. the records' slots are the consecutive whole seconds from the schedule's first slot
//!    on: no gap, no duplicate, strictly increasing;
//! 2. each record is `fired` (with its own timer, due no earlier than its slot) or
//!    `skipped` with an allowed reason: `superseded` only, for the schedule with overlap
//!    `allowAll`; `superseded` or `overlap` for the one with the default overlap (`skip`),
//!    since a slot that passes while a run is active — the run due at the kill, fired
//!    again at the restart — is `skipped(overlap)` (docs/schedules.md, "Catch-up runs obey
//!    the same rule"). `superseded` slots lie inside an outage, `overlap` ones inside an
//!    outage or just after it;
//! 3. in each long outage, every slot that was certainly not dispatched before the kill
//!    and certainly missed at the restart (and is not the newest missed one) is
//!    `superseded`, and every run of superseded slots is followed by the slot the
//!    `latest` policy keeps: `fired` (or, with the default overlap, `skipped(overlap)`),
//!    its `fireAt` more than 5 s after its slot — caught up by the restart's dispatch,
//!    which distinguishes it from the first slot that was not missed;
//! 4. every `fired` slot due more than a few seconds before the records were read was
//!    delivered at least once (matched by `x-minoots-schedule-id` and
//!    `x-minoots-scheduled-at`, with the record's timer in `x-minoots-timer-id` and one
//!    `webhook-id` per slot), and no skipped slot was delivered;
//! 5. no delivery arrived before its slot or its record's `fireAt` (same machine clock),
//!    and a slot delivered twice had a kill between its two receipts.
//!
//! The seed is random and printed; `MINOOTS_SCHEDULE_CRASH_SEED` repeats a run's kill
//! moments and outage lengths (the machine's timing still differs).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use common::{KillOnDrop, WAIT, call, free_port, terminate, wait_exit};
use minoots_core::timefmt::{format_us, parse_rfc3339_us};
use serde_json::json;
use tokio::sync::Notify;

const ADMIN_KEY: &str = "mnt_schedule_crash_admin_key_0123456789abcdef";
const TENANT: &str = "schedule-crash";
/// SIGKILLs of `serve`.
const KILLS: usize = 6;
/// How long `serve` runs between its readiness (and a delivery after it) and the next
/// kill, in ms.
const UP_MS: std::ops::Range<u64> = 300..4_000;
/// Short outages: under the 5 s after which a slot counts as missed.
const SHORT_DOWN_MS: std::ops::Range<u64> = 200..4_500;
/// The long outage: longer than the 10 s a run's timer may be created ahead of its slot
/// plus the 5 s after which a slot is missed, so even the `allowAll` schedule, whose next
/// ten slots are already fired when the kill comes, has slots to catch up.
const LONG_DOWN_MS: std::ops::Range<u64> = 19_000..22_000;
/// How long the receiver holds each webhook before answering, so that some kills come
/// while a delivery is in flight.
const RECEIVER_DELAY: Duration = Duration::from_millis(250);
/// How long `serve` runs after its last restart before the records are read.
const SETTLE: Duration = Duration::from_secs(6);
/// A fired slot due this long before the records were read must have been delivered.
const MUST_BE_DELIVERED_AFTER_US: i64 = 3 * SEC;
const SEC: i64 = 1_000_000;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// One webhook as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    schedule_id: String,
    scheduled_at: String,
    webhook_id: String,
    timer_id: String,
    received_us: i64,
}

/// A loopback webhook receiver that records every request with its receive time.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Delivery>>,
    arrived: Notify,
}

impl Receiver {
    async fn start() -> (Arc<Self>, String) {
        let r = Arc::new(Self::default());
        let me = r.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let me = me.clone();
            async move {
                let received_us = now_us();
                let h = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                me.got.lock().unwrap().push(Delivery {
                    schedule_id: h("x-minoots-schedule-id"),
                    scheduled_at: h("x-minoots-scheduled-at"),
                    webhook_id: h("webhook-id"),
                    timer_id: h("x-minoots-timer-id"),
                    received_us,
                });
                me.arrived.notify_waiters();
                tokio::time::sleep(RECEIVER_DELAY).await;
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the deliveries so far; false after `limit`.
    async fn until(&self, limit: Duration, done: impl Fn(&[Delivery]) -> bool) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let notified = self.arrived.notified();
                if done(&self.got.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// A `serve` process on a fixed data directory and fixed ports, restarted at will.
struct Server {
    data_dir: std::path::PathBuf,
    http_port: u16,
    grpc_port: u16,
    process: Option<KillOnDrop>,
    base: String,
}

impl Server {
    fn new(data_dir: &Path) -> Self {
        let http_port = free_port();
        Server {
            data_dir: data_dir.to_path_buf(),
            http_port,
            grpc_port: free_port(),
            process: None,
            base: format!("http://127.0.0.1:{http_port}"),
        }
    }

    /// Starts `serve` (admin key, loopback webhooks allowed) and waits for its ready line
    /// and for `/readyz` to answer 200.
    async fn start(&mut self, http: &reqwest::Client) {
        let (child, base) = tokio::task::block_in_place(|| {
            common::start_serve(
                &self.data_dir,
                self.http_port,
                self.grpc_port,
                &["--allow-private-targets"],
                &[("MINOOTS_ADMIN_KEY", ADMIN_KEY)],
            )
        });
        assert_eq!(base, self.base);
        self.process = Some(KillOnDrop(child));
        let ready = tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                    && r.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "/readyz answered 200 within {WAIT:?}");
    }

    /// SIGKILLs `serve` and waits until it is gone; returns the instant just before the
    /// signal.
    fn kill(&mut self) -> i64 {
        let mut p = self.process.take().expect("serve runs");
        let at = now_us();
        p.0.kill().expect("SIGKILL serve"); // std sends SIGKILL
        tokio::task::block_in_place(|| p.0.wait()).expect("reap serve");
        at
    }

    /// SIGTERM, and the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut p = self.process.take().expect("serve runs");
        terminate(&p.0);
        tokio::task::block_in_place(|| wait_exit(&mut p.0, WAIT))
    }
}

/// One SIGKILL and the restart after it (wall-clock µs).
#[derive(Debug, Clone, Copy)]
struct Outage {
    killed_us: i64,
    /// Just before the new process was started.
    spawned_us: i64,
    /// When the new process answered `/readyz`.
    ready_us: i64,
}

impl Outage {
    fn down_ms(&self) -> i64 {
        (self.spawned_us - self.killed_us) / 1_000
    }
}

/// One run record as `GET /schedules/{id}/runs` shows it.
#[derive(Debug, Clone)]
struct Record {
    slot_us: i64,
    status: String,
    reason: Option<String>,
    timer_id: Option<String>,
    fire_at_us: Option<i64>,
}

/// The schedules under test.
struct Subject {
    label: &'static str,
    id: String,
    created_at_us: i64,
    /// `overlap: allowAll` (runs created up to 10 s ahead, no overlap skips).
    allow_all: bool,
}

/// Reads every run record of a schedule, page by page.
async fn read_runs(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            None => format!("{base}/schedules/{id}/runs?limit=25"),
            Some(c) => format!("{base}/schedules/{id}/runs?limit=25&cursor={c}"),
        };
        let (status, page) = call(http, reqwest::Method::GET, url, key, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        assert!(pages < 10_000, "the runs' pages end");
        for r in page["runs"].as_array().expect("runs") {
            let time = |f: &str| {
                r[f].as_str()
                    .map(|t| parse_rfc3339_us(t).unwrap_or_else(|e| panic!("{f} {t}: {e}")))
            };
            out.push(Record {
                slot_us: time("scheduledAt").expect("scheduledAt"),
                status: r["status"].as_str().unwrap_or("").to_string(),
                reason: r["reason"].as_str().map(str::to_string),
                timer_id: r["timerId"].as_str().map(str::to_string),
                fire_at_us: time("fireAt"),
            });
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// What the checks found about one schedule.
#[derive(Default)]
struct Tally {
    slots: usize,
    fired: usize,
    superseded: usize,
    overlap: usize,
    deliveries: usize,
    duplicate_deliveries: usize,
    max_lateness_us: i64,
    max_lateness_outside_outages_us: i64,
}

/// Checks a schedule's records against the kills and the deliveries; pushes every
/// violation found to `bad`.
fn check(
    s: &Subject,
    records: &[Record],
    deliveries: &[Delivery],
    outages: &[Outage],
    read_at_us: i64,
    bad: &mut Vec<String>,
) -> Tally {
    let mut t = Tally {
        slots: records.len(),
        ..Tally::default()
    };
    let mut fail = |m: String| bad.push(format!("[{}] {m}", s.label));
    let at = |us: i64| format_us(us);
    let Some(first) = records.first() else {
        fail("no run records".into());
        return t;
    };

    // (1) Consecutive whole seconds from the first slot on.
    let first_slot = (s.created_at_us + SEC - 1).div_euclid(SEC) * SEC;
    if first.slot_us != first_slot {
        fail(format!(
            "the first record is for {} but the first slot after the creation at {} is {}",
            at(first.slot_us),
            at(s.created_at_us),
            at(first_slot)
        ));
    }
    for w in records.windows(2) {
        if w[1].slot_us != w[0].slot_us + SEC {
            fail(format!(
                "record for {} follows record for {}: {}",
                at(w[1].slot_us),
                at(w[0].slot_us),
                if w[1].slot_us <= w[0].slot_us {
                    "a duplicate or out of order"
                } else {
                    "a gap"
                }
            ));
        }
    }
    for r in records {
        if r.slot_us.rem_euclid(SEC) != 0 {
            fail(format!("slot {} is not a whole second", at(r.slot_us)));
        }
    }

    // (2) Statuses and reasons, and where skips may lie.
    let allowed: &[&str] = if s.allow_all {
        &["superseded"]
    } else {
        &["superseded", "overlap"]
    };
    let mut timers = HashSet::new();
    for r in records {
        match (r.status.as_str(), r.reason.as_deref()) {
            ("fired", None) => {
                t.fired += 1;
                match (&r.timer_id, r.fire_at_us) {
                    (Some(id), Some(f)) => {
                        if !timers.insert(id.clone()) {
                            fail(format!("timer {id} serves two slots"));
                        }
                        if f < r.slot_us {
                            fail(format!("slot {} due early, at {}", at(r.slot_us), at(f)));
                        }
                    }
                    _ => fail(format!(
                        "fired slot {} without timer or fireAt",
                        at(r.slot_us)
                    )),
                }
            }
            ("skipped", Some(reason)) if allowed.contains(&reason) => {
                // A superseded slot was missed at a restart; an overlap one passed while
                // the run due at the kill was active, which may last a little past the
                // restart.
                let within = if reason == "superseded" {
                    t.superseded += 1;
                    0
                } else {
                    t.overlap += 1;
                    5 * SEC
                };
                let inside = outages
                    .iter()
                    .any(|o| r.slot_us > o.killed_us - 2 * SEC && r.slot_us < o.ready_us + within);
                if !inside {
                    fail(format!(
                        "slot {} skipped({reason}) outside every outage",
                        at(r.slot_us)
                    ));
                }
            }
            (status, reason) => fail(format!(
                "slot {} is {status} with reason {reason:?}",
                at(r.slot_us)
            )),
        }
    }

    // (3) Catch-up in the long outages. Before a kill, at most the slots up to the kill
    // plus the dispatch lead (10 s; 1 s when a run must end before the next is created)
    // can have been recorded; at the restart, the first dispatch comes after the spawn,
    // so every slot more than 5 s older than the spawn was missed, and of those only the
    // newest may fire.
    let lead = if s.allow_all { 10 * SEC } else { SEC };
    let by_slot: BTreeMap<i64, &Record> = records.iter().map(|r| (r.slot_us, r)).collect();
    for o in outages {
        let lo = o.killed_us + lead + SEC / 2;
        let hi = o.spawned_us - 6 * SEC;
        if lo >= hi {
            continue; // a short outage: nothing certainly missed
        }
        for (slot, r) in by_slot.range(lo..hi) {
            if r.reason.as_deref() != Some("superseded") {
                fail(format!(
                    "slot {} of the outage {}..{} ({} ms) was missed and not the newest, \
                     but is {} {:?}",
                    at(*slot),
                    at(o.killed_us),
                    at(o.spawned_us),
                    o.down_ms(),
                    r.status,
                    r.reason
                ));
            }
        }
    }
    let superseded = |r: &Record| r.reason.as_deref() == Some("superseded");
    for w in records.windows(2) {
        if superseded(&w[0]) && !superseded(&w[1]) {
            let kept_ok = w[1].status == "fired"
                || (!s.allow_all && w[1].reason.as_deref() == Some("overlap"));
            if !kept_ok {
                fail(format!(
                    "the slot after the superseded {} ({}) is not the one `latest` keeps: {} {:?}",
                    at(w[0].slot_us),
                    at(w[1].slot_us),
                    w[1].status,
                    w[1].reason
                ));
            }
            // The kept slot is the newest missed one: the restart's dispatch saw it more
            // than 5 s after it passed and created its timer due at once, so its record's
            // fireAt (the dispatch's time, on the server's clock) is more than 5 s after
            // its slot — unlike the first slot that was not missed. And that dispatch
            // came after the restart.
            if w[1].status == "fired" {
                match w[1].fire_at_us {
                    Some(f) if f - w[1].slot_us > 5 * SEC => {}
                    f => fail(format!(
                        "the slot {} after the superseded {} fired at {:?}, not caught up \
                         (more than 5 s after its slot) as the newest missed slot is",
                        at(w[1].slot_us),
                        at(w[0].slot_us),
                        f.map(format_us)
                    )),
                }
                let outage = outages
                    .iter()
                    .find(|o| w[0].slot_us > o.killed_us - 2 * SEC && w[0].slot_us < o.ready_us);
                if let (Some(o), Some(f)) = (outage, w[1].fire_at_us)
                    && f < o.spawned_us
                {
                    fail(format!(
                        "the kept slot {} was due at {}, before the restart at {}",
                        at(w[1].slot_us),
                        at(f),
                        at(o.spawned_us)
                    ));
                }
            }
        }
    }
    if t.superseded == 0 {
        fail("no slot was superseded: the long outage caught nothing up".into());
    }
    if superseded(records.last().unwrap()) {
        fail("the last record is superseded: the newest missed slot is missing".into());
    }

    // (4) and (5): the deliveries.
    let last_slot = records.last().unwrap().slot_us;
    let mut by_slot_deliveries: HashMap<i64, Vec<&Delivery>> = HashMap::new();
    for d in deliveries.iter().filter(|d| d.schedule_id == s.id) {
        let slot = match parse_rfc3339_us(&d.scheduled_at) {
            Ok(slot) => slot,
            Err(e) => {
                fail(format!("x-minoots-scheduled-at {:?}: {e}", d.scheduled_at));
                continue;
            }
        };
        if slot > last_slot {
            continue; // recorded after the read
        }
        t.deliveries += 1;
        by_slot_deliveries.entry(slot).or_default().push(d);
        let Some(r) = by_slot.get(&slot) else {
            fail(format!(
                "a delivery for {} which has no record",
                d.scheduled_at
            ));
            continue;
        };
        if r.status != "fired" {
            fail(format!(
                "slot {} was delivered but is {} {:?}",
                d.scheduled_at, r.status, r.reason
            ));
            continue;
        }
        if r.timer_id.as_deref() != Some(d.timer_id.as_str()) {
            fail(format!(
                "slot {} delivered from timer {:?}, recorded with {:?}",
                d.scheduled_at, d.timer_id, r.timer_id
            ));
        }
        let due = r.fire_at_us.unwrap_or(slot).max(slot);
        if d.received_us < due {
            fail(format!(
                "slot {} (fireAt {:?}) received early, at {} ({} µs before)",
                d.scheduled_at,
                r.fire_at_us.map(format_us),
                at(d.received_us),
                due - d.received_us
            ));
        }
    }
    for r in records.iter().filter(|r| r.status == "fired") {
        let Some(got) = by_slot_deliveries.get_mut(&r.slot_us) else {
            if r.fire_at_us.unwrap_or(r.slot_us) <= read_at_us - MUST_BE_DELIVERED_AFTER_US {
                fail(format!(
                    "fired slot {} (fireAt {:?}) was never delivered",
                    at(r.slot_us),
                    r.fire_at_us.map(format_us)
                ));
            }
            continue;
        };
        got.sort_by_key(|d| d.received_us);
        let lateness = got[0].received_us - r.slot_us;
        t.max_lateness_us = t.max_lateness_us.max(lateness);
        let near_an_outage = outages
            .iter()
            .any(|o| r.slot_us > o.killed_us - 2 * SEC && r.slot_us < o.ready_us + 2 * SEC);
        if !near_an_outage {
            t.max_lateness_outside_outages_us = t.max_lateness_outside_outages_us.max(lateness);
        }
        if got.iter().any(|d| d.webhook_id != got[0].webhook_id) {
            fail(format!(
                "slot {} delivered with several webhook-ids: {:?}",
                at(r.slot_us),
                got.iter().map(|d| &d.webhook_id).collect::<Vec<_>>()
            ));
        }
        for w in got.windows(2) {
            t.duplicate_deliveries += 1;
            let killed_between = outages.iter().any(|o| {
                o.killed_us > w[0].received_us - SEC / 2 && o.spawned_us < w[1].received_us
            });
            if !killed_between {
                fail(format!(
                    "slot {} delivered at {} and again at {} with no kill between",
                    at(r.slot_us),
                    at(w[0].received_us),
                    at(w[1].received_us)
                ));
            }
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_survive_sigkills_one_record_per_slot_caught_up_delivered_never_early() {
    let started = Instant::now();
    let seed: u64 = std::env::var("MINOOTS_SCHEDULE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("schedule crash seed {seed} (MINOOTS_SCHEDULE_CRASH_SEED={seed} repeats it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let long_at = rng.usize(..KILLS);
    let plan: Vec<(u64, u64)> = (0..KILLS)
        .map(|i| {
            let up = rng.u64(UP_MS);
            let down = if i == long_at {
                rng.u64(LONG_DOWN_MS)
            } else {
                rng.u64(SHORT_DOWN_MS)
            };
            (up, down)
        })
        .collect();
    println!("plan (up ms, down ms): {plan:?}");

    let (receiver, hook) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut server = Server::new(&dir.path().join("data"));
    server.start(&http).await;
    let base = server.base.clone();

    // A tenant on a tier whose shortest schedule interval is 1 s, and its key.
    let (status, tenant) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/tenants"),
        ADMIN_KEY,
        Some(json!({"id": TENANT, "tier": "team"})),
    )
    .await;
    assert_eq!(status, 201, "{tenant}");
    let (status, key) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/keys"),
        ADMIN_KEY,
        Some(json!({"tenantId": TENANT, "name": "schedule crash"})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_string();

    // The schedule as asked (default overlap: skip), and the same with overlap allowAll.
    let mut subjects = Vec::new();
    for (label, overlap) in [("allowAll", Some("allowAll")), ("default", None)] {
        let mut body = json!({
            "every": "1s",
            "actionBundle": {"actions": [{"type": "webhook", "url": hook}]},
            "misfire": {"policy": "latest", "window": "1h"},
        });
        if let Some(o) = overlap {
            body["overlap"] = o.into();
        }
        let (status, created) = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/schedules"),
            &key,
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        subjects.push(Subject {
            label,
            id: created["id"].as_str().unwrap().to_string(),
            created_at_us: parse_rfc3339_us(created["createdAt"].as_str().unwrap()).unwrap(),
            allow_all: overlap.is_some(),
        });
    }
    let ids: Vec<String> = subjects.iter().map(|s| s.id.clone()).collect();
    // Each schedule has delivered at least once since `since_us`.
    let each_delivered_since = |since_us: i64| {
        let ids = ids.clone();
        move |got: &[Delivery]| {
            ids.iter().all(|id| {
                got.iter()
                    .any(|d| &d.schedule_id == id && d.received_us >= since_us)
            })
        }
    };
    assert!(
        receiver.until(WAIT, each_delivered_since(i64::MIN)).await,
        "seed {seed}: both schedules deliver before the first kill"
    );

    let mut outages = Vec::new();
    for (i, &(up, down)) in plan.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(up)).await;
        let killed_us = server.kill();
        tokio::time::sleep(Duration::from_millis(down)).await;
        let spawned_us = now_us();
        server.start(&http).await;
        let ready_us = now_us();
        let o = Outage {
            killed_us,
            spawned_us,
            ready_us,
        };
        println!(
            "kill {}: at +{:.2} s, down {} ms, ready {} ms after the spawn",
            i + 1,
            started.elapsed().as_secs_f64() - (now_us() - killed_us) as f64 / 1e6,
            o.down_ms(),
            (ready_us - spawned_us) / 1_000
        );
        outages.push(o);
        // The restarted server works: each schedule delivers again.
        assert!(
            receiver.until(WAIT, each_delivered_since(ready_us)).await,
            "seed {seed}: both schedules deliver after restart {}",
            i + 1
        );
    }
    let last_ready = outages.last().unwrap().ready_us;
    // Normal operation for a while after the last restart (each schedule delivers a slot
    // this far after it).
    let settled = {
        let ids = ids.clone();
        move |got: &[Delivery]| {
            ids.iter().all(|id| {
                got.iter().any(|d| {
                    &d.schedule_id == id
                        && parse_rfc3339_us(&d.scheduled_at)
                            .is_ok_and(|s| s >= last_ready + SETTLE.as_micros() as i64)
                })
            })
        }
    };
    assert!(
        receiver.until(WAIT, settled).await,
        "seed {seed}: both schedules deliver {SETTLE:?} after the last restart"
    );

    let read_at_us = now_us();
    let mut all_records = Vec::new();
    for s in &subjects {
        all_records.push(read_runs(&http, &base, &key, &s.id).await);
    }
    // Every fired slot due long enough before the read arrives (a delivery in flight at
    // the last kill is handed back at the restart).
    let must_arrive: Vec<(String, String)> = subjects
        .iter()
        .zip(&all_records)
        .flat_map(|(s, records)| {
            records
                .iter()
                .filter(|r| {
                    r.status == "fired"
                        && r.fire_at_us.unwrap_or(r.slot_us)
                            <= read_at_us - MUST_BE_DELIVERED_AFTER_US
                })
                .map(|r| (s.id.clone(), format_us(r.slot_us)))
                .collect::<Vec<_>>()
        })
        .collect();
    let arrived = receiver
        .until(Duration::from_secs(10), |got| {
            let seen: HashSet<(&str, i64)> = got
                .iter()
                .filter_map(|d| {
                    parse_rfc3339_us(&d.scheduled_at)
                        .ok()
                        .map(|s| (d.schedule_id.as_str(), s))
                })
                .collect();
            must_arrive
                .iter()
                .all(|(id, slot)| seen.contains(&(id.as_str(), parse_rfc3339_us(slot).unwrap())))
        })
        .await;
    let exit = server.stop();
    let deliveries = receiver.deliveries();

    let mut bad = Vec::new();
    if !arrived {
        bad.push("some fired slots had not arrived 10 s after the read".into());
    }
    if !exit.success() {
        bad.push(format!("SIGTERM: serve exited with {exit:?}"));
    }
    let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
    for d in &deliveries {
        if !known.contains(d.schedule_id.as_str()) {
            bad.push(format!("a delivery of no schedule under test: {d:?}"));
        }
    }
    let mut summary = format!(
        "seed {seed}: {} kills (down ms {:?}), {:.1} s",
        outages.len(),
        outages.iter().map(Outage::down_ms).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    for (s, records) in subjects.iter().zip(&all_records) {
        let t = check(s, records, &deliveries, &outages, read_at_us, &mut bad);
        summary.push_str(&format!(
            "\n  {:<8} {} slots: {} fired, {} superseded, {} overlap; {} deliveries ({} repeated); \
             max lateness {} ms ({} ms away from outages)",
            s.label,
            t.slots,
            t.fired,
            t.superseded,
            t.overlap,
            t.deliveries,
            t.duplicate_deliveries,
            t.max_lateness_us / 1_000,
            t.max_lateness_outside_outages_us / 1_000
        ));
    }
    println!("{summary}");
    if !bad.is_empty() {
        let outages_text: Vec<String> = outages
            .iter()
            .map(|o| {
                format!(
                    "killed {} spawned {} ready {}",
                    format_us(o.killed_us),
                    format_us(o.spawned_us),
                    format_us(o.ready_us)
                )
            })
            .collect();
        let records_text: Vec<String> = subjects
            .iter()
            .zip(&all_records)
            .map(|(s, records)| {
                let lines: Vec<String> = records
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {}",
                            format_us(r.slot_us),
                            r.status,
                            r.reason.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                format!("{} ({}):\n{}", s.label, s.id, lines.join("\n"))
            })
            .collect();
        panic!(
            "{} violations (seed {seed}, MINOOTS_SCHEDULE_CRASH_SEED={seed}):\n{}\noutages:\n{}\n{}",
            bad.len(),
            bad.join("\n"),
            outages_text.join("\n"),
            records_text.join("\n")
        );
    }
}
