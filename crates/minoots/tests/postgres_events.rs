//! The event log across control planes, with real processes on a real PostgreSQL: two
//! `minoots kernel` processes share one schema, each behind its own `minoots
//! control-plane` (A on the first kernel, B on the second), and one `minoots
//! orchestrator` on the first kernel executes every delivery. An SSE client connected to
//! A sees, in `seq` order without a gap or a repeat, the events of the timers created
//! through both, most of them through B: `timer.scheduled`, `timer.fired`,
//! `delivery.attempted` and `timer.settled` of every one, although those events are
//! committed by two kernels in interleaved transactions. Then the client leaves after
//! some `seq` N while more timers are created through B and fire, and, back on A with
//! `Last-Event-ID: N`, continues at N + 1 without a gap until they all settled.
//!
//! The microservice wiring is the stronger case for the requirement: A's kernel learns of
//! B's commits only through the database (its live feed reads them back from the log),
//! never through memory shared with B's kernel.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; the test uses a schema of its own, dropped at the
//! end. Without it the test prints "skipped: no database" and passes.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::pg::{self, Receiver, Schema, metric, until_metric};
use common::{KillOnDrop, WAIT, free_port, start_process};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const KEY: &str = "mnt_demo_key_free";
/// The bootstrap admin key, set so that no process generates one of its own.
const ADMIN_KEY: &str = "mnt_events_admin_key_0123456789abcdef0123";
/// The demo tenant's tier without limits: the test creates more timers, faster, than the
/// free tier allows.
const TIERS: &str = r#"{"free": {"requestsPerMinute": null, "createsPerMinute": null, "timersPerDay": null, "pendingTimers": null, "maxDurationMs": null}}"#;
/// Shards of one database (`minoots_store::postgres::SHARD_COUNT`): two kernels hold
/// half each once they have balanced.
const SHARDS_EACH: f64 = 32.0;
/// Timers of the first phase; one in [`THROUGH_A_EVERY`] goes through A, the rest
/// through B.
const FIRST_TIMERS: usize = 200;
const THROUGH_A_EVERY: usize = 4;
/// Timers created through B in the resume phase: before the client leaves, and while it
/// is away.
const BEFORE_LEAVING: usize = 30;
const WHILE_AWAY: usize = 30;
/// Creates sent at once, so that the creates' commits through the two kernels
/// interleave (with each other and with the fires and reports of earlier timers).
const CREATORS: usize = 8;
/// What a timer with one webhook that answers 200 commits, in this order.
const LIFECYCLE: [&str; 4] = [
    "timer.scheduled",
    "timer.fired",
    "delivery.attempted",
    "timer.settled",
];

/// Starts `minoots control-plane --demo` on a kernel; returns it and its REST base URL.
fn start_control_plane(kernel_url: &str) -> (KillOnDrop, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let (child, _) = start_process(
        &[
            "control-plane",
            "--demo",
            "--kernel-url",
            kernel_url,
            "--http-addr",
            &http,
        ],
        &[("MINOOTS_TIERS", TIERS), ("MINOOTS_ADMIN_KEY", ADMIN_KEY)],
        "minoots control plane ready on ",
    );
    (KillOnDrop(child), format!("http://{http}"))
}

/// Starts `minoots orchestrator --demo` (loopback webhooks allowed) on a kernel.
fn start_orchestrator(kernel_url: &str) -> KillOnDrop {
    let health = format!("127.0.0.1:{}", free_port());
    let (child, _) = start_process(
        &[
            "orchestrator",
            "--demo",
            "--kernel-url",
            kernel_url,
            "--http-addr",
            &health,
        ],
        &[],
        "minoots orchestrator running",
    );
    KillOnDrop(child)
}

/// The control plane a timer was created through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plane {
    A,
    B,
}

/// Creates one timer per entry of `plan` (the plane to create it through, and when it is
/// due, in ms), [`CREATORS`] at a time; returns the ids in the plan's order.
async fn create_timers(
    http: reqwest::Client,
    a: String,
    b: String,
    hook: String,
    plan: Vec<(Plane, u64)>,
) -> Vec<String> {
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = JoinSet::new();
    for _ in 0..CREATORS {
        let (http, a, b, hook) = (http.clone(), a.clone(), b.clone(), hook.clone());
        let (plan, next) = (plan.clone(), next.clone());
        creators.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(plane, due_ms)) = plan.get(i) else {
                    return made;
                };
                let base = if plane == Plane::A { &a } else { &b };
                let body = serde_json::json!({
                    "tenantId": "test", "name": format!("events-{i}"),
                    "duration": format!("{due_ms}ms"),
                    "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
                });
                let timer = common::create_timer(&http, base, KEY, body).await;
                made.push((i, timer["id"].as_str().unwrap().to_string()));
            }
        });
    }
    let mut ids = vec![String::new(); plan.len()];
    while let Some(made) = creators.join_next().await {
        for (i, id) in made.expect("a creator finishes") {
            ids[i] = id;
        }
    }
    ids
}

/// One event as an SSE client reads it.
#[derive(Debug)]
struct Received {
    seq: i64,
    kind: String,
    timer: String,
}

/// Connects to `GET /events` of `base`, resuming after `last_event_id` if given, and
/// reads the stream on a task of its own: parsed events arrive on the channel, which
/// closes when the stream ends. Aborting the task disconnects the client.
async fn subscribe(
    http: &reqwest::Client,
    base: &str,
    last_event_id: Option<i64>,
) -> (
    mpsc::UnboundedReceiver<Received>,
    tokio::task::JoinHandle<()>,
) {
    let mut req = http.get(format!("{base}/events")).header("X-API-Key", KEY);
    if let Some(n) = last_event_id {
        req = req.header("Last-Event-ID", n.to_string());
    }
    let mut resp = req.send().await.expect("the control plane answers");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        // Bytes, not text: a chunk may end inside a UTF-8 character.
        let mut pending: Vec<u8> = Vec::new();
        let mut fields: HashMap<String, String> = HashMap::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8(line).expect("SSE is UTF-8");
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    // A blank line ends an event; keep-alive comments leave no fields.
                    if !fields.is_empty() {
                        let event = parse_event(std::mem::take(&mut fields));
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                } else if !line.starts_with(':') {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    // `data:` may span lines; the others are single.
                    let field = fields.entry(name.to_string()).or_default();
                    if !field.is_empty() {
                        field.push('\n');
                    }
                    field.push_str(value);
                }
            }
        }
    });
    (rx, reader)
}

/// Checks that an event's `id:`, `event:` and `data:` agree, and that it is the demo
/// tenant's.
fn parse_event(fields: HashMap<String, String>) -> Received {
    let seq: i64 = fields["id"].parse().expect("id: is a sequence number");
    let data: serde_json::Value = serde_json::from_str(&fields["data"]).expect("data: is JSON");
    assert_eq!(data["seq"], seq, "data.seq is the id: {data}");
    assert_eq!(data["type"], fields["event"].as_str(), "{data}");
    assert_eq!(data["tenantId"], "test", "{data}");
    if fields["event"] == "delivery.attempted" {
        assert_eq!(data["data"]["outcome"], "succeeded", "{data}");
    }
    Received {
        seq,
        kind: fields["event"].clone(),
        timer: data["timerId"].as_str().expect("a timer id").to_string(),
    }
}

/// What one client has read, checked as it arrives: every event is the one after the
/// last (`seq` + 1), so none is missing, repeated or out of order.
struct Seen {
    last: i64,
    count: usize,
    by_timer: HashMap<String, Vec<String>>,
}

impl Seen {
    fn after(last: i64) -> Self {
        Self {
            last,
            count: 0,
            by_timer: HashMap::new(),
        }
    }

    fn take(&mut self, e: Received) {
        assert_eq!(
            e.seq,
            self.last + 1,
            "the event after seq {} is the next one: {e:?}",
            self.last
        );
        self.last = e.seq;
        self.count += 1;
        self.by_timer.entry(e.timer).or_default().push(e.kind);
    }

    fn settled(&self, id: &str) -> bool {
        self.by_timer
            .get(id)
            .is_some_and(|kinds| kinds.iter().any(|k| k == "timer.settled"))
    }

    fn kinds(&self, id: &str) -> &[String] {
        self.by_timer.get(id).map_or(&[], |k| k.as_slice())
    }
}

/// The next event, or a panic at the deadline.
async fn next(
    events: &mut mpsc::UnboundedReceiver<Received>,
    deadline: tokio::time::Instant,
    waiting_for: &str,
) -> Received {
    tokio::time::timeout_at(deadline, events.recv())
        .await
        .unwrap_or_else(|_| panic!("an event arrives while waiting for {waiting_for}"))
        .expect("the stream stays open")
}

/// Reads events into `seen` until every timer in `ids` settled.
async fn until_settled(
    events: &mut mpsc::UnboundedReceiver<Received>,
    seen: &mut Seen,
    ids: &[String],
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(id) = ids.iter().find(|id| !seen.settled(id)) {
        let e = next(events, deadline, &format!("timer {id} to settle")).await;
        seen.take(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_control_plane_sees_every_event_of_the_other_in_order() {
    let url = or_skip!(pg::database_url());
    let started = Instant::now();
    let schema = Schema::new(&url, "minoots_events");
    let (receiver, hook) = Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (_k1, k1, k1_health) = pg::start_kernel(&schema, &[]);
    let (_k2, k2, k2_health) = pg::start_kernel(&schema, &[]);
    // Both kernels fire: each holds half the shards before the first timer is created.
    for health in [&k1_health, &k2_health] {
        until_metric(
            &http,
            health,
            "minoots_shards_held",
            |h| h == SHARDS_EACH,
            WAIT,
        )
        .await;
    }
    // One after the other: both bootstrap the same tenant and keys.
    let (_cp_a, a) = start_control_plane(&k1);
    let (_cp_b, b) = start_control_plane(&k2);
    let _orch = start_orchestrator(&k1);
    println!("five processes ready in {:?}", started.elapsed());

    // Connected before anything happened: the stream starts at the log's first event.
    let (mut events, reader) = subscribe(&http, &a, None).await;
    let mut seen = Seen::after(0);

    // Most through B, due 1 to 3 s from their creation, created concurrently through both
    // while the client reads, so that creates, fires and reports of the two kernels
    // commit interleaved.
    let plan: Vec<(Plane, u64)> = (0..FIRST_TIMERS)
        .map(|i| {
            let plane = if i % THROUGH_A_EVERY == 0 {
                Plane::A
            } else {
                Plane::B
            };
            (plane, 1_000 + (i as u64 * 37) % 2_000)
        })
        .collect();
    let mut creating = tokio::spawn(create_timers(
        http.clone(),
        a.clone(),
        b.clone(),
        hook.clone(),
        plan.clone(),
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    let first = loop {
        tokio::select! {
            ids = &mut creating => break ids.expect("the creates succeed"),
            e = next(&mut events, deadline, "the creates") => seen.take(e),
        }
    };
    until_settled(&mut events, &mut seen, &first).await;
    for (id, (plane, _)) in first.iter().zip(&plan) {
        assert_eq!(
            seen.kinds(id),
            LIFECYCLE,
            "timer {id} created through {plane:?}"
        );
    }
    assert_eq!(
        seen.by_timer.len(),
        FIRST_TIMERS,
        "events of the test's timers only"
    );
    assert_eq!(seen.count, 4 * FIRST_TIMERS);
    let through_b = plan.iter().filter(|(p, _)| *p == Plane::B).count();
    println!(
        "first phase: {} events (seq 1..={}), {through_b} of the {FIRST_TIMERS} timers through B, in {:?}",
        seen.count,
        seen.last,
        started.elapsed()
    );
    // Both kernels committed fires (and B's kernel every create through B).
    for (kernel, health) in [("first", &k1_health), ("second", &k2_health)] {
        let fired = metric(&http, health, "minoots_timers_fired_total").await;
        println!("the {kernel} kernel fired {fired} timers");
        assert!(fired > 0.0, "the {kernel} kernel fired some timers");
    }

    // Resume. Timers created through B, due after the client has left: it leaves once it
    // has read their `timer.scheduled`, at seq N.
    let plan: Vec<(Plane, u64)> = (0..BEFORE_LEAVING)
        .map(|i| (Plane::B, 2_000 + (i as u64 * 31) % 1_000))
        .collect();
    let before = create_timers(http.clone(), a.clone(), b.clone(), hook.clone(), plan).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while before.iter().any(|id| seen.kinds(id).is_empty()) {
        let e = next(&mut events, deadline, "the scheduled events").await;
        seen.take(e);
    }
    let left_at = seen.last;
    reader.abort();
    let _ = reader.await;
    drop(events);

    // While it is away, more timers through B; those of before fire and settle.
    let plan: Vec<(Plane, u64)> = (0..WHILE_AWAY)
        .map(|i| (Plane::B, 300 + (i as u64 * 29) % 700))
        .collect();
    let away = create_timers(http.clone(), a.clone(), b.clone(), hook.clone(), plan).await;
    receiver.until_all(&before).await;

    // Back on A after seq N: it continues at N + 1, and misses nothing until all settled.
    let (mut events, _reader) = subscribe(&http, &a, Some(left_at)).await;
    let mut resumed = Seen::after(left_at);
    let all: Vec<String> = before.iter().chain(&away).cloned().collect();
    until_settled(&mut events, &mut resumed, &all).await;
    for id in &before {
        // Its first events came before the client left (`timer.scheduled`, and in a slow
        // run perhaps more), the rest after it came back.
        let mut kinds = seen.kinds(id).to_vec();
        kinds.extend_from_slice(resumed.kinds(id));
        assert_eq!(kinds, LIFECYCLE, "timer {id} across the reconnection");
    }
    for id in &away {
        assert_eq!(
            resumed.kinds(id),
            LIFECYCLE,
            "timer {id} created while away"
        );
    }
    assert_eq!(
        resumed.by_timer.len(),
        all.len(),
        "events of the test's timers only"
    );
    assert_eq!(
        resumed.last as usize,
        4 * (FIRST_TIMERS + BEFORE_LEAVING + WHILE_AWAY),
        "every event of every timer, once"
    );
    println!(
        "resumed after seq {left_at}: {} events (seq {}..={}); {} events checked in all, in {:?}",
        resumed.count,
        left_at + 1,
        resumed.last,
        seen.count + resumed.count,
        started.elapsed()
    );

    // Live while A's kernel commits nothing at all: timers created through B, due in an
    // hour, reach the client on A only because B's commits are announced to A's live
    // feed (nothing of A's own wakes its feed now).
    let plan: Vec<(Plane, u64)> = (0..10).map(|_| (Plane::B, 3_600_000)).collect();
    let quiet = create_timers(http.clone(), a.clone(), b.clone(), hook.clone(), plan).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let heard = Instant::now();
    while quiet.iter().any(|id| resumed.kinds(id).is_empty()) {
        let e = next(&mut events, deadline, "the events of B alone").await;
        resumed.take(e);
    }
    println!(
        "events committed through B alone reached A's client {:?} after their creates",
        heard.elapsed()
    );
}
