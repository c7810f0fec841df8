//! The dashboard at 100,000 timers, measured in headless Chromium: a benchmark, not a test.
//! It is ignored by `cargo test` and asserts nothing about timings; run it with a release
//! build and read what it prints (one JSON object per line, then a summary):
//!
//! ```text
//! cargo test --release -p minoots --test dashboard_bench -- --ignored --nocapture
//! ```
//!
//! It lives beside the browser test rather than in `minoots bench` because it needs the
//! WebDriver client of `tests/common/webdriver.rs` and Debian's `chromium` and
//! `chromium-driver`: test tools the `minoots` binary should not carry.
//!
//! What it does, on default server settings (only the admin key is given):
//! 1. starts `minoots serve` (the release binary when run with `--release`) on a fresh
//!    store, makes a tenant on the `unlimited` tier and creates `MINOOTS_BENCH_TIMERS`
//!    (100,000) timers without actions, due 1 h to about 7 d out, so none fires;
//! 2. signs in through the page and waits until its event stream is live (a fresh tab
//!    asks for events from now on, `after=latest`, not for the whole log);
//! 3. opens `/ui/timers` several times, with the browser cache cleared and warm, and reads
//!    the page's `timers-rendered` performance mark (navigation start → first rows on
//!    screen: the mark is set in an effect, which Preact runs after the frame is painted),
//!    first-contentful-paint and how many rows the DOM holds;
//! 4. for `MINOOTS_BENCH_SECONDS` (30) drives about 200 events/s from a loopback load
//!    generator: creates of far-future timers, cancels of those, fire-now of timers the
//!    page has not loaded, and three *marker* timers a second, each due before every other
//!    scheduled timer (so it is inserted near the top of the list, in view of a 2,400 px
//!    window) and, a second later, cancelled (two in three) or fired. A script installed in the page records, for every row the DOM
//!    shows with a new status, `Date.now()` when the DOM changed (a MutationObserver) and
//!    after the next frame (a task queued from `requestAnimationFrame`), and whether the
//!    row was inside the window. A marker's delay is that "on screen" time minus the time
//!    the generator sent the request (`SystemTime::now()` just before sending). Both clocks
//!    are this machine's CLOCK_REALTIME (`Date.now()` has 1 ms resolution), so the figure
//!    spans HTTP, the durable commit, the event stream and the page. The harness also
//!    follows `/events` itself; its arrival times split the delay into server and page.
//! 5. reads the page's JS heap, DOM size, main-thread busy time and long tasks (Chrome
//!    DevTools `Performance.getMetrics` and a `longtask` observer).
//!
//! Webhooks are never used: every timer here only fires events.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{KillOnDrop, call, free_port, start_serve};
use reqwest::Method;
use serde_json::{Value, json};
use webdriver::Browser;

const ADMIN_KEY: &str = "mnt_dashboard_bench_admin_key_0123456789abcdef";
/// Timers in the store before the page is opened.
const DEFAULT_TIMERS: usize = 100_000;
/// Seconds of live load.
const DEFAULT_SECONDS: u64 = 30;
/// Concurrent creates while filling the store.
const FILL_CONCURRENCY: usize = 64;
/// Background load, per second: creates (one event each), cancels of those (one each),
/// fire-now of unloaded timers (timer.fired and timer.settled each), tuned with the
/// markers so that the harness's reader counts about 200 events/s (it prints the rate).
const CREATES_PER_S: f64 = 75.0;
const CANCELS_PER_S: f64 = 45.0;
const FIRES_PER_S: f64 = 26.0;
/// Marker timers created per second (each cancelled, or one in three fired, a second later).
const MARKERS_PER_S: f64 = 3.0;
/// The browser window: tall enough that the top 40-odd rows of the list are on screen. A
/// marker fired now takes the present as its fire time and stays at the top, so new
/// markers land below the fired ones (at most 30 in a 30 s run).
const WINDOW: (u32, u32) = (1280, 2400);
/// Page loads measured with the browser cache cleared, then with it warm.
const LOADS_EACH: usize = 3;
/// Fire-now targets start this far into the fire-time order (or half-way in a smaller
/// store), well past what the page loads (200 rows a page), so they change no row on
/// screen. (A timer fired now takes the present as its fire time and moves to the top.)
const FIRE_FROM_INDEX: usize = 20_000;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}

fn rfc3339(ms: f64) -> String {
    // Days-from-civil inverse (Howard Hinnant's algorithm), enough for RFC 3339 in UTC.
    let total_ms = ms as i64;
    let secs = total_ms.div_euclid(1000);
    let millis = total_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// p50 / p99 / max of `v` (nearest rank), or zeros when empty.
fn quantiles(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99), v[v.len() - 1])
}

fn median(v: &mut [f64]) -> f64 {
    quantiles(v).0
}

/// What the harness's own `/events` reader saw: the last sequence number, how many
/// events, and when each timer's events arrived (`timer id` → `[(type, ms)]`).
#[derive(Default)]
struct Seen {
    last_seq: AtomicU64,
    count: AtomicU64,
    arrivals: Mutex<HashMap<String, Vec<(String, f64)>>>,
    /// Whether arrival times are being kept (only during the live run).
    keep: AtomicBool,
}

/// Follows the tenant's event stream from the start, counting events and, while `keep`
/// is set, noting when each timer's events arrive.
async fn follow_events(base: String, key: String, seen: Arc<Seen>) {
    let http = reqwest::Client::new();
    let mut resp = http
        .get(format!("{base}/events?after=0"))
        .header("X-API-Key", key)
        .send()
        .await
        .expect("the event stream opens");
    assert_eq!(resp.status(), 200, "the event stream opens");
    let mut buf = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let at = now_ms();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let Ok(ev) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            seen.count.fetch_add(1, Ordering::Relaxed);
            if let Some(seq) = ev["seq"].as_u64() {
                seen.last_seq.fetch_max(seq, Ordering::Relaxed);
            }
            if seen.keep.load(Ordering::Relaxed)
                && let (Some(id), Some(ty)) = (ev["timerId"].as_str(), ev["type"].as_str())
            {
                seen.arrivals
                    .lock()
                    .unwrap()
                    .entry(id.to_string())
                    .or_default()
                    .push((ty.to_string(), at));
            }
        }
    }
}

/// The script installed in the page before the live run: for every table row that the
/// DOM shows with a status it had not shown before, `Date.now()` at the DOM change and
/// after the next frame, and whether it lay inside the window then.
const OBSERVER: &str = r#"
window.__seen = {};
window.__longTasks = [];
new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longTasks.push([e.startTime, e.duration]); })
  .observe({ type: 'longtask', buffered: false });
let pending = [];
const afterFrame = () => {
  const ch = new MessageChannel();
  ch.port1.onmessage = () => {
    const t = Date.now();
    for (const [k, row] of pending) {
      const r = row.getBoundingClientRect();
      window.__seen[k].frame = t;
      window.__seen[k].inWindow = r.top >= 0 && r.bottom <= innerHeight && row.isConnected;
    }
    pending = [];
  };
  ch.port2.postMessage(0);
};
const note = (row) => {
  if (!row || !row.dataset || !row.dataset.timerId) return;
  const k = row.dataset.timerId + ':' + row.dataset.status;
  if (window.__seen[k]) return;
  window.__seen[k] = { dom: Date.now() };
  if (!pending.length) requestAnimationFrame(afterFrame);
  pending.push([k, row]);
};
new MutationObserver((ms) => {
  for (const m of ms) {
    if (m.type === 'attributes') note(m.target);
    else for (const n of m.addedNodes) note(n);
  }
}).observe(document.querySelector('#timers-table tbody'), { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
for (const row of document.querySelectorAll('#timers-table tr[data-timer-id]')) {
  window.__seen[row.dataset.timerId + ':' + row.dataset.status] = { dom: 0, frame: 0, before: true };
}
return true;
"#;

/// One marker timer: when its create and its action were sent, and which action.
#[derive(Clone, Default)]
struct Marker {
    id: String,
    created_sent: f64,
    acted_sent: f64,
    cancelled: bool,
}

/// Offers `per_s` calls a second for `run` (open loop: each call is its own task, so a
/// slow answer does not lower the rate); returns how many answered 2xx.
async fn paced<F, Fut>(per_s: f64, run: Duration, f: F) -> u64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    loop {
        let at = started + Duration::from_secs_f64(n as f64 / per_s);
        if at >= started + run {
            break;
        }
        tokio::time::sleep_until(at).await;
        tasks.spawn(f(n));
        n += 1;
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        ok += u64::from(r.unwrap_or(false));
    }
    ok
}

async fn post_ok(http: &reqwest::Client, url: String, key: &str, body: Value) -> Option<Value> {
    let (code, v) = call(http, Method::POST, url, key, Some(body)).await;
    (200..300).contains(&code).then_some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
async fn dashboard_at_100k_timers() {
    if !webdriver::available() {
        println!("skipped: no chromium");
        return;
    }
    let timers: usize = env_or("MINOOTS_BENCH_TIMERS", DEFAULT_TIMERS);
    let seconds: u64 = env_or("MINOOTS_BENCH_SECONDS", DEFAULT_SECONDS);
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &[],
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY)],
    );
    let _child = KillOnDrop(child);
    let http = reqwest::Client::new();

    let key = webdriver::tenant_with_key(&http, &base, ADMIN_KEY, "bench", "unlimited").await;

    let seen = Arc::new(Seen::default());
    tokio::spawn(follow_events(base.clone(), key.clone(), seen.clone()));

    // 1. The store: `timers` timers, 1 h to about 7 d out, one every 6 s of fire time.
    let t0 = now_ms();
    let first_due = t0 + 3_600_000.0;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let ids: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; timers]));
    let mut fill = tokio::task::JoinSet::new();
    for _ in 0..FILL_CONCURRENCY {
        let (http, base, key, next, ids) = (
            http.clone(),
            base.clone(),
            key.clone(),
            next.clone(),
            ids.clone(),
        );
        fill.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= timers {
                    break;
                }
                let body = json!({
                    "name": format!("bulk-{i:06}"),
                    "fireAt": rfc3339(first_due + i as f64 * 6000.0),
                    "labels": {"bench": "bulk"},
                });
                let v = post_ok(&http, format!("{base}/timers"), &key, body)
                    .await
                    .expect("a bulk create answers 201");
                ids.lock().unwrap()[i] = Some(v["id"].as_str().unwrap().to_string());
            }
        });
    }
    while fill.join_next().await.is_some() {}
    let fill_s = started.elapsed().as_secs_f64();
    let bulk: Vec<String> = ids.lock().unwrap().iter().flatten().cloned().collect();
    assert_eq!(bulk.len(), timers);
    println!(
        "{}",
        json!({"step": "fill", "timers": timers, "seconds": fill_s, "createsPerS": timers as f64 / fill_s})
    );
    // The harness's reader has caught up when it has seen every create.
    let caught_up = Instant::now();
    while seen.count.load(Ordering::Relaxed) < timers as u64 {
        assert!(
            caught_up.elapsed() < Duration::from_secs(300),
            "the harness's event reader catches up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log_seq = seen.last_seq.load(Ordering::Relaxed);

    // 2. Sign in; a fresh tab starts its stream at the newest event (`after=latest`), so
    // the log's size (printed) should not delay going live.
    let b = Browser::start(WINDOW).await;
    b.cdp("Performance.enable", json!({})).await;
    b.goto(&format!("{base}/ui")).await;
    b.find("#sign-in").await;
    b.type_into("#api-key", &key).await;
    let signed = Instant::now();
    b.click("#sign-in button[type=submit]").await;
    b.find("#overview").await;
    b.wait_for(
        "the live stream",
        "document.querySelector('#live-state')?.innerText === 'Live'",
    )
    .await;
    println!(
        "{}",
        json!({"step": "sign-in", "eventsInLog": log_seq, "signInToLiveS": signed.elapsed().as_secs_f64()})
    );

    // 3. First render of /ui/timers, cold and warm.
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for i in 0..2 * LOADS_EACH {
        let is_cold = i < LOADS_EACH;
        if is_cold {
            b.cdp("Network.clearBrowserCache", json!({})).await;
        }
        b.goto(&format!("{base}/ui/timers")).await;
        b.wait_for(
            "the timers-rendered mark",
            "performance.getEntriesByName('timers-rendered').length > 0",
        )
        .await;
        let m = b
            .js(
                "const r = performance.getEntriesByName('timers-rendered')[0].startTime; \
                 const fcp = performance.getEntriesByName('first-contentful-paint')[0]; \
                 const list = performance.getEntriesByType('resource').find(e => e.name.includes('/timers?')); \
                 return {rendered: r, fcp: fcp ? fcp.startTime : null, \
                   listFetchMs: list ? list.duration : null, \
                   rowsInDom: document.querySelectorAll('#timers-table tr.row').length, \
                   rowsLoaded: Number((document.querySelector('#rows-count')?.innerText || '0').split(' ')[0]), \
                   firstRowInWindow: (() => { const r = document.querySelector('#timers-table tr.row')?.getBoundingClientRect(); return !!r && r.bottom <= innerHeight; })()}",
                json!([]),
            )
            .await;
        println!(
            "{}",
            json!({"step": "first-render", "cache": if is_cold {"cleared"} else {"warm"}, "page": m})
        );
        let ms = m["rendered"].as_f64().unwrap();
        if is_cold {
            cold.push(ms);
        } else {
            warm.push(ms);
        }
    }
    let rows_in_dom = b
        .js(
            "return document.querySelectorAll('#timers-table tr.row').length",
            json!([]),
        )
        .await;

    // 4. The live run.
    b.js(OBSERVER, json!([])).await;
    let before = metrics(&b).await;
    seen.keep.store(true, Ordering::Relaxed);
    let run = Duration::from_secs(seconds);
    let count_at_start = seen.count.load(Ordering::Relaxed);
    let run_started = Instant::now();
    let load_ids: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let markers: Arc<Mutex<Vec<Marker>>> = Arc::default();
    let (creates, cancels, fires, made) = {
        let creates = {
            let (http, base, key, load_ids) =
                (http.clone(), base.clone(), key.clone(), load_ids.clone());
            let span_ms = timers as f64 * 6000.0;
            paced(CREATES_PER_S, run, move |n| {
                let (http, base, key, load_ids) =
                    (http.clone(), base.clone(), key.clone(), load_ids.clone());
                async move {
                    let at = first_due + fastrand::f64() * span_ms;
                    let body = json!({"name": format!("load-{n:06}"), "fireAt": rfc3339(at), "labels": {"bench": "load"}});
                    match post_ok(&http, format!("{base}/timers"), &key, body).await {
                        Some(v) => {
                            load_ids
                                .lock()
                                .unwrap()
                                .push_back(v["id"].as_str().unwrap().to_string());
                            true
                        }
                        None => false,
                    }
                }
            })
        };
        let cancels = {
            let (http, base, key, load_ids) =
                (http.clone(), base.clone(), key.clone(), load_ids.clone());
            paced(CANCELS_PER_S, run, move |_| {
                let (http, base, key) = (http.clone(), base.clone(), key.clone());
                let id = load_ids.lock().unwrap().pop_front();
                async move {
                    let Some(id) = id else { return false };
                    post_ok(&http, format!("{base}/timers/{id}/cancel"), &key, json!({}))
                        .await
                        .is_some()
                }
            })
        };
        let fires = {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            let bulk = bulk.clone();
            paced(FIRES_PER_S, run, move |n| {
                let (http, base, key) = (http.clone(), base.clone(), key.clone());
                let from = FIRE_FROM_INDEX.min(bulk.len() / 2);
                let id = bulk[from + n as usize % (bulk.len() - from)].clone();
                async move {
                    post_ok(&http, format!("{base}/timers/{id}/fire"), &key, json!({}))
                        .await
                        .is_some()
                }
            })
        };
        let made = {
            let (http, base, key, markers) =
                (http.clone(), base.clone(), key.clone(), markers.clone());
            // Each marker is due before every other timer and before the markers made
            // earlier, so it lands at the top of the list.
            let top = first_due - 600_000.0;
            paced(MARKERS_PER_S, run, move |n| {
                let (http, base, key, markers) =
                    (http.clone(), base.clone(), key.clone(), markers.clone());
                async move {
                    let body = json!({"name": format!("marker-{n:04}"), "fireAt": rfc3339(top - n as f64 * 1000.0), "labels": {"bench": "marker"}});
                    let sent = now_ms();
                    let Some(v) = post_ok(&http, format!("{base}/timers"), &key, body).await else {
                        return false;
                    };
                    let id = v["id"].as_str().unwrap().to_string();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let cancelled = n % 3 != 2;
                    let (url, body) = if cancelled {
                        (
                            format!("{base}/timers/{id}/cancel"),
                            json!({"reason": "marker"}),
                        )
                    } else {
                        (format!("{base}/timers/{id}/fire"), json!({}))
                    };
                    let acted = now_ms();
                    let ok = post_ok(&http, url, &key, body).await.is_some();
                    markers.lock().unwrap().push(Marker {
                        id,
                        created_sent: sent,
                        acted_sent: acted,
                        cancelled,
                    });
                    ok
                }
            })
        };
        tokio::join!(creates, cancels, fires, made)
    };
    let run_s = run_started.elapsed().as_secs_f64();
    let events = seen.count.load(Ordering::Relaxed) - count_at_start;
    // Let the last updates reach the page.
    tokio::time::sleep(Duration::from_secs(2)).await;
    seen.keep.store(false, Ordering::Relaxed);
    let after = metrics(&b).await;
    let page_seen = b.js("return window.__seen", json!([])).await;
    let long_tasks = b.js("return window.__longTasks", json!([])).await;

    // 5. Join what the page showed with what was sent.
    let arrivals = seen.arrivals.lock().unwrap();
    let arrival = |id: &str, types: &[&str]| {
        arrivals.get(id).and_then(|v| {
            v.iter()
                .filter(|(t, _)| types.contains(&t.as_str()))
                .map(|(_, at)| *at)
                .reduce(f64::min)
        })
    };
    let shown = |id: &str, statuses: &[&str]| {
        statuses
            .iter()
            .filter_map(|s| page_seen.get(format!("{id}:{s}")))
            .filter(|e| e["before"].is_null())
            .filter_map(|e| {
                Some((
                    e["dom"].as_f64()?,
                    e["frame"].as_f64()?,
                    e["inWindow"] == true,
                ))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    let mut to_screen = Vec::new();
    let mut to_dom = Vec::new();
    let mut sse_to_screen = Vec::new();
    let mut by_kind: HashMap<&str, Vec<f64>> = HashMap::new();
    let (mut measured, mut missing, mut outside) = (0, 0, 0);
    let markers = markers.lock().unwrap().clone();
    for m in &markers {
        let changes: [(&str, f64, &[&str], &[&str]); 2] = [
            (
                "appear",
                m.created_sent,
                &["scheduled"],
                &["timer.scheduled"],
            ),
            if m.cancelled {
                ("cancel", m.acted_sent, &["cancelled"], &["timer.cancelled"])
            } else {
                (
                    "fire",
                    m.acted_sent,
                    &["fired", "settled"],
                    &["timer.fired"],
                )
            },
        ];
        for (kind, sent, statuses, types) in changes {
            let Some((dom, frame, in_window)) = shown(&m.id, statuses) else {
                missing += 1;
                continue;
            };
            if !in_window {
                outside += 1;
            }
            measured += 1;
            to_screen.push(frame - sent);
            to_dom.push(dom - sent);
            by_kind.entry(kind).or_default().push(frame - sent);
            if let Some(at) = arrival(&m.id, types) {
                sse_to_screen.push(frame - at);
            }
        }
    }
    let (p50, p99, max) = quantiles(&mut to_screen);
    let (d50, d99, dmax) = quantiles(&mut to_dom);
    let (s50, s99, smax) = quantiles(&mut sse_to_screen);
    let kinds: HashMap<&str, Value> = by_kind
        .into_iter()
        .map(|(k, mut v)| {
            let n = v.len();
            let (a, b, c) = quantiles(&mut v);
            (k, json!({"n": n, "p50": a, "p99": b, "max": c}))
        })
        .collect();
    let busy =
        |name: &str| after[name].as_f64().unwrap_or(0.0) - before[name].as_f64().unwrap_or(0.0);
    let long: Vec<f64> = long_tasks
        .as_array()
        .map(|a| a.iter().filter_map(|t| t[1].as_f64()).collect())
        .unwrap_or_default();
    let summary = json!({
        "step": "live",
        "seconds": run_s,
        "eventsPerS": events as f64 / run_s,
        "offered": {"creates": creates, "cancels": cancels, "fires": fires, "markers": made},
        "markerChanges": {"measured": measured, "notShown": missing, "outsideWindow": outside},
        "sentToScreenMs": {"p50": p50, "p99": p99, "max": max},
        "sentToDomMs": {"p50": d50, "p99": d99, "max": dmax},
        "harnessSseToScreenMs": {"p50": s50, "p99": s99, "max": smax},
        "byKind": kinds,
        "page": {
            "jsHeapUsedMB": after["JSHeapUsedSize"].as_f64().unwrap_or(0.0) / 1e6,
            "jsHeapTotalMB": after["JSHeapTotalSize"].as_f64().unwrap_or(0.0) / 1e6,
            "domNodes": after["Nodes"],
            "rowsInDom": rows_in_dom,
            "mainThreadBusyShare": busy("TaskDuration") / run_s,
            "scriptShare": busy("ScriptDuration") / run_s,
            "layoutShare": busy("LayoutDuration") / run_s,
            "styleShare": busy("RecalcStyleDuration") / run_s,
            "longTasks": long.len(),
            "longestTaskMs": long.iter().cloned().fold(0.0, f64::max),
        },
    });
    println!("{summary}");
    println!(
        "{}",
        json!({
            "step": "first-render-summary",
            "coldMedianMs": median(&mut cold),
            "coldMs": cold,
            "warmMedianMs": median(&mut warm),
            "warmMs": warm,
        })
    );
    println!(
        "dashboard at {timers} timers: first render {:.0} ms cold / {:.0} ms warm (median of {LOADS_EACH}); \
         {:.0} events/s for {run_s:.0} s; sent → on screen p50 {p50:.0} / p99 {p99:.0} / max {max:.0} ms \
         over {measured} marker changes ({missing} not shown); JS heap {:.1} MB",
        median(&mut cold),
        median(&mut warm),
        events as f64 / run_s,
        after["JSHeapUsedSize"].as_f64().unwrap_or(0.0) / 1e6,
    );
}

/// Chrome's `Performance.getMetrics` as a name → value object.
async fn metrics(b: &Browser) -> Value {
    let m = b.cdp("Performance.getMetrics", json!({})).await;
    let mut out = serde_json::Map::new();
    for e in m["metrics"].as_array().into_iter().flatten() {
        if let Some(name) = e["name"].as_str() {
            out.insert(name.to_string(), e["value"].clone());
        }
    }
    Value::Object(out)
}

#[test]
fn rfc3339_formats_utc() {
    assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_796_410_710_465.0), "2026-12-04T18:58:30.465Z");
    assert_eq!(rfc3339(951_782_400_000.0), "2000-02-29T00:00:00.000Z");
}

#[test]
fn quantiles_take_the_nearest_rank() {
    let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(quantiles(&mut v), (50.0, 99.0, 100.0));
    assert_eq!(quantiles(&mut []), (0.0, 0.0, 0.0));
}
