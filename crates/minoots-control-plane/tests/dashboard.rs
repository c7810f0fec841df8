//! The overview endpoints and the list filters the dashboard reads, over real HTTP on
//! loopback against an in-process kernel on SQLite: `GET /timers/counts`,
//! `GET /deliveries/per-minute`, `GET /events?after=latest`, and `GET /timers` by name
//! and fire time; each with tenant isolation and its refusals of bad input.

mod common;
use common::*;

use std::time::{Duration, Instant};

use minoots_control_plane::ControlPlaneConfig;
use minoots_core::timefmt::{format_us, parse_rfc3339_us};
use minoots_core::{AttemptOutcome, Clock, SystemClock};
use serde_json::{Value, json};

const HOOK: &str = r#"{"type": "webhook", "url": "https://example.com/hook"}"#;

/// Creates a timer from `body`, answering its id.
async fn create(s: &Server, key: &str, body: &str) -> String {
    let r = s.call("POST", "/timers", Some(key), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// Waits until the timer is no longer scheduled.
async fn wait_fired(s: &Server, key: &str, id: &str) {
    let r = s
        .call(
            "GET",
            &format!("/timers/{id}/wait?timeout=20s"),
            Some(key),
            None,
        )
        .await;
    assert_ne!(r.body["status"], "scheduled", "{}", r.text);
}

/// A timer with one webhook that fires at once, taken through one attempt.
async fn delivered(s: &Server, key: &str, outcome: AttemptOutcome, retries: u32) -> String {
    let id = create(
        s,
        key,
        &format!(
            r#"{{"duration": "1ms", "actionBundle": {{"actions": [{HOOK}], "retryPolicy": {{"maxAttempts": {retries}, "initialBackoffMs": 3600000}}}}}}"#
        ),
    )
    .await;
    wait_fired(s, key, &id).await;
    s.report_one(outcome).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_status_are_the_tenants_own() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let other = s
        .tenant_with_key("beta", "unlimited", &["timers:read", "timers:write"])
        .await;
    let reader = s.key_for("acme", &["timers:read"]).await;
    let writer = s.key_for("acme", &["timers:write"]).await;
    for _ in 0..3 {
        create(&s, &k, r#"{"duration": "1h"}"#).await;
    }
    let cancelled = create(&s, &k, r#"{"duration": "1h"}"#).await;
    let r = s
        .call("DELETE", &format!("/timers/{cancelled}"), Some(&k), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let settled = create(&s, &k, r#"{"duration": "1ms"}"#).await;
    wait_fired(&s, &k, &settled).await;
    for _ in 0..2 {
        delivered(&s, &k, AttemptOutcome::Permanent, 3).await; // failed
    }
    let fired = create(
        &s,
        &k,
        &format!(r#"{{"duration": "1ms", "actionBundle": {{"actions": [{HOOK}]}}}}"#),
    )
    .await;
    wait_fired(&s, &k, &fired).await;
    create(&s, &other, r#"{"duration": "1h"}"#).await;

    let r = s.call("GET", "/timers/counts", Some(&reader), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"scheduled": 3, "fired": 1, "settled": 1, "failed": 2, "cancelled": 1,
               "capped": false, "cap": 100_000})
    );
    let b = s.call("GET", "/timers/counts", Some(&other), None).await;
    assert_eq!(
        (b.body["scheduled"].as_u64(), b.body["fired"].as_u64()),
        (Some(1), Some(0))
    );
    // The role timers:read is needed; a key is needed.
    s.call("GET", "/timers/counts", Some(&writer), None)
        .await
        .assert_problem(403, None);
    s.call("GET", "/timers/counts", None, None)
        .await
        .assert_problem(401, None);
    s.call("GET", "/timers/counts?status=fired", Some(&k), None)
        .await
        .assert_problem(400, Some("status"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_per_minute_count_the_last_minutes() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let other = s
        .tenant_with_key("beta", "unlimited", &["timers:read", "timers:write"])
        .await;
    let before = SystemClock.now_us();
    delivered(&s, &k, AttemptOutcome::Succeeded, 3).await;
    delivered(&s, &k, AttemptOutcome::Succeeded, 3).await;
    delivered(&s, &k, AttemptOutcome::Retryable, 1).await; // dead at its last attempt
    delivered(&s, &other, AttemptOutcome::Succeeded, 3).await;
    // Last, so that its retry (up to an hour away, with jitter) is never leased here.
    delivered(&s, &k, AttemptOutcome::Retryable, 3).await;

    let r = s
        .call("GET", "/deliveries/per-minute?minutes=5", Some(&k), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["complete"], true);
    let minutes = r.body["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 5);
    let sum = |f: &str| minutes.iter().map(|m| m[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("succeeded"), sum("retried"), sum("dead")), (2, 1, 1));
    // Whole minutes, oldest first, the current one last.
    let starts: Vec<i64> = minutes
        .iter()
        .map(|m| parse_rfc3339_us(m["minute"].as_str().unwrap()).unwrap())
        .collect();
    assert!(starts.iter().all(|s| s % 60_000_000 == 0), "{starts:?}");
    assert!(starts.windows(2).all(|w| w[1] - w[0] == 60_000_000));
    let now = SystemClock.now_us();
    assert!(starts[4] <= now && now - starts[4] < 60_000_000);
    assert!(starts[4] >= before - before.rem_euclid(60_000_000));
    // The default is the last hour; another tenant sees only its own.
    let hour = s
        .call("GET", "/deliveries/per-minute", Some(&k), None)
        .await;
    assert_eq!(hour.body["minutes"].as_array().unwrap().len(), 60);
    let b = s
        .call(
            "GET",
            "/deliveries/per-minute?minutes=60",
            Some(&other),
            None,
        )
        .await;
    let b_sum = |f: &str| {
        b.body["minutes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[f].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (b_sum("succeeded"), b_sum("retried"), b_sum("dead")),
        (1, 0, 0)
    );
    for bad in ["0", "61", "x", "-5", "1.5"] {
        s.call(
            "GET",
            &format!("/deliveries/per-minute?minutes={bad}"),
            Some(&k),
            None,
        )
        .await
        .assert_problem(400, Some("minutes"));
    }
    s.call("GET", "/deliveries/per-minute?hours=1", Some(&k), None)
        .await
        .assert_problem(400, Some("hours"));
    s.call("GET", "/deliveries/per-minute", None, None)
        .await
        .assert_problem(401, None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_list_by_name_prefix_and_fire_time() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let other = s
        .tenant_with_key("beta", "unlimited", &["timers:read", "timers:write"])
        .await;
    let base = SystemClock.now_us() - SystemClock.now_us().rem_euclid(1_000_000) + 3_600_000_000;
    let at = |hours: i64| format_us(base + hours * 3_600_000_000);
    let mut ids = Vec::new();
    for (i, name) in [
        "backup-db",
        "report",
        "backup-files",
        "Backup-x",
        "backup-logs",
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"name": name, "fireAt": at(i as i64)}).to_string();
        ids.push(create(&s, &k, &body).await);
    }
    create(
        &s,
        &other,
        &json!({"name": "backup-db", "fireAt": at(0)}).to_string(),
    )
    .await;
    s.call("DELETE", &format!("/timers/{}", ids[4]), Some(&k), None)
        .await;
    let list = |q: String| {
        let s = &s;
        let k = k.clone();
        async move {
            let r = s.call("GET", &format!("/timers?{q}"), Some(&k), None).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            r.body
        }
    };
    let names = |b: &Value| {
        b["timers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&list("name=backup".into()).await),
        ["backup-db", "backup-files", "backup-logs"]
    );
    assert_eq!(names(&list("name=backup-db".into()).await), ["backup-db"]);
    // fireAfter is inclusive, fireBefore exclusive.
    let window = format!("fireAfter={}&fireBefore={}", enc(&at(1)), enc(&at(3)));
    assert_eq!(
        names(&list(window.clone()).await),
        ["report", "backup-files"]
    );
    // Combined with name, status and pages of one, the cursor walks the same set.
    let mut q = format!(
        "name=backup&status=scheduled&fireAfter={}&limit=1",
        enc(&at(0))
    );
    let mut seen = Vec::new();
    loop {
        let b = list(q.clone()).await;
        seen.extend(names(&b));
        match b["nextCursor"].as_str() {
            Some(c) => {
                q = format!(
                    "name=backup&status=scheduled&fireAfter={}&limit=1&cursor={c}",
                    enc(&at(0))
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ["backup-db", "backup-files"]);
    // Empty values are no filter.
    assert_eq!(
        names(&list("name=&fireAfter=&fireBefore=".into()).await).len(),
        5
    );

    for (q, field) in [
        ("fireAfter=tomorrow".to_string(), "fireAfter"),
        ("fireBefore=2026-11-27T10:00:00".to_string(), "fireBefore"),
        (
            format!("fireAfter={}&fireBefore={}", enc(&at(2)), enc(&at(1))),
            "fireBefore",
        ),
        (
            format!("fireAfter={}&fireBefore={}", enc(&at(1)), enc(&at(1))),
            "fireBefore",
        ),
        ("name=%01x".to_string(), "name"),
        (format!("name={}", "n".repeat(201)), "name"),
    ] {
        s.call("GET", &format!("/timers?{q}"), Some(&k), None)
            .await
            .assert_problem(400, Some(field));
    }
    s.stop().await;
}

/// Percent-encodes the `+` and `:` of a time for a query string.
fn enc(t: &str) -> String {
    url::form_urlencoded::byte_serialize(t.as_bytes()).collect()
}

/// The next SSE event's (id, data), within `wait`; `None` when none arrives.
async fn next_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    wait: Duration,
) -> Option<(i64, Value)> {
    let deadline = Instant::now() + wait;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str::<Value>(v.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                return Some((id, data));
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        let chunk = tokio::time::timeout(left, resp.chunk()).await.ok()?;
        buf.push_str(std::str::from_utf8(&chunk.ok()??).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_latest_skip_the_log_before_the_request() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(create(&s, &k, r#"{"duration": "1h"}"#).await);
    }
    let open = |extra: Option<String>| {
        let mut req = s
            .http
            .get(format!("{}/events?after=latest", s.url))
            .header("x-api-key", &k);
        if let Some(id) = extra {
            req = req.header("last-event-id", id);
        }
        req.send()
    };
    let mut sse = open(None).await.unwrap();
    assert_eq!(sse.status(), 200);
    let mut buf = String::new();
    // Nothing of the log arrives: the stream waits for new events.
    assert!(
        next_event(&mut sse, &mut buf, Duration::from_millis(500))
            .await
            .is_none()
    );
    let new = create(&s, &k, r#"{"duration": "1h"}"#).await;
    let (seq, data) = next_event(&mut sse, &mut buf, Duration::from_secs(20))
        .await
        .expect("the new event");
    assert_eq!(data["timerId"], new.as_str());
    assert_eq!(data["type"], "timer.scheduled");
    drop(sse);
    // A browser that reconnects with Last-Event-ID resumes there, not from now.
    let mut resumed = open(Some((seq - 2).to_string())).await.unwrap();
    let mut buf = String::new();
    let (_, first) = next_event(&mut resumed, &mut buf, Duration::from_secs(20))
        .await
        .expect("a replayed event");
    assert_eq!(first["timerId"], old[2].as_str());
    // Anything else that is not a sequence number is refused, naming `after`.
    s.call("GET", "/events?after=newest", Some(&k), None)
        .await
        .assert_problem(400, Some("after"));
    s.stop().await;
}
