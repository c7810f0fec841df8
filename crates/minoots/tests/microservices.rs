//! The three planes as three OS processes, started with the same arguments and environment
//! variables as `deploy/docker-compose.yml` (one environment handed to all three): a timer
//! created through REST fires a signed webhook, is `settled` through REST and on the SSE
//! stream; then the orchestrator is SIGKILLed during a slow delivery, started again, and
//! the delivery completes with the same webhook id.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::{WAIT, free_port, get_json, start_process, terminate, until_event};
use tokio::sync::Notify;

const ADMIN_KEY: &str = "mnt_compose_admin_key_0123456789abcdef0123";
const TOKEN: &str = "compose-kernel-token-0123456789";

/// A receiver that stalls the first request to `/slow` for a long time.
#[derive(Default)]
struct Sink {
    got: Mutex<Vec<(String, HeaderMap, Bytes)>>,
    arrived: Notify,
}

async fn start_sink() -> (Arc<Sink>, String) {
    let sink = Arc::new(Sink::default());
    let handler = {
        let sink = sink.clone();
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let first_slow = {
                    let mut got = sink.got.lock().unwrap();
                    let first = uri.path() == "/slow" && !got.iter().any(|(p, _, _)| p == "/slow");
                    got.push((uri.path().to_string(), headers, body));
                    first
                };
                sink.arrived.notify_waiters();
                if first_slow {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
                "ok"
            }
        }
    };
    let app = axum::Router::new()
        .route("/fast", axum::routing::post(handler.clone()))
        .route("/slow", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sink, base)
}

impl Sink {
    async fn wait_for(&self, path: &str, n: usize) -> Vec<HeaderMap> {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                let seen: Vec<HeaderMap> = self
                    .got
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(p, _, _)| p == path)
                    .map(|(_, h, _)| h.clone())
                    .collect();
                if seen.len() >= n {
                    return seen;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} requests to {path}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_deliver_and_survive_an_orchestrator_kill() {
    let (sink, hook_base) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let grpc = format!("127.0.0.1:{}", free_port());
    let http_addr = format!("127.0.0.1:{}", free_port());
    let kernel_health = format!("127.0.0.1:{}", free_port());
    let orch_health = format!("127.0.0.1:{}", free_port());
    let kernel_url = format!("http://{grpc}");
    let data_dir = dir.path().join("data");
    // The one environment of the compose file, handed to every process.
    let env: Vec<(&str, &str)> = vec![
        ("MINOOTS_DATA_DIR", data_dir.to_str().unwrap()),
        ("MINOOTS_GRPC_ADDR", &grpc),
        ("MINOOTS_HTTP_ADDR", &http_addr),
        ("MINOOTS_KERNEL_HTTP_ADDR", &kernel_health),
        ("MINOOTS_ORCHESTRATOR_HTTP_ADDR", &orch_health),
        ("MINOOTS_KERNEL_URL", &kernel_url),
        ("MINOOTS_KERNEL_TOKEN", TOKEN),
        ("MINOOTS_ADMIN_KEY", ADMIN_KEY),
        ("MINOOTS_DEMO", "true"),
        ("MINOOTS_LEASE_TTL_MS", "2000"),
    ];
    let (mut kernel, _) = start_process(&["kernel"], &env, "minoots kernel ready on ");
    let (mut orch, _) = start_process(&["orchestrator"], &env, "minoots orchestrator running");
    let (mut cp, _) = start_process(&["control-plane"], &env, "minoots control plane ready on ");

    let base = format!("http://{http_addr}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let key = "mnt_demo_key_free";
    assert_eq!(
        get_json(&http, &format!("{base}/readyz"), key).await["status"],
        "ready"
    );
    let mut events = http
        .get(format!("{base}/events?types=timer.settled"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let create = |path: &str| {
        format!(
            r#"{{"tenantId": "test", "requestedBy": "user", "name": "webhook-test", "duration": "200ms",
                "actionBundle": {{"actions": [{{"type": "webhook", "url": "{hook_base}{path}"}}]}}}}"#
        )
    };
    let r = http
        .post(format!("{base}/timers"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(create("/fast"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let id = t["id"].as_str().unwrap().to_string();
    let got = sink.wait_for("/fast", 1).await;
    assert_eq!(got[0]["x-minoots-timer-id"], id.as_str());
    assert!(got[0].contains_key("webhook-signature"));
    until_event(&mut events, "timer.settled").await;
    assert_eq!(
        get_json(&http, &format!("{base}/timers/{id}"), key).await["status"],
        "settled"
    );

    // A slow delivery: the orchestrator is killed while the receiver holds the request.
    let r = http
        .post(format!("{base}/timers"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(create("/slow"))
        .send()
        .await
        .unwrap();
    let slow: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let slow_id = slow["id"].as_str().unwrap().to_string();
    let first = sink.wait_for("/slow", 1).await;
    orch.kill().unwrap();
    orch.wait().unwrap();
    let (mut orch2, _) = start_process(&["orchestrator"], &env, "minoots orchestrator running");
    let both = sink.wait_for("/slow", 2).await;
    assert_eq!(
        both[1]["webhook-id"], first[0]["webhook-id"],
        "same delivery id"
    );
    until_event(&mut events, "timer.settled").await;
    assert_eq!(
        get_json(&http, &format!("{base}/timers/{slow_id}"), key).await["status"],
        "settled"
    );
    let deliveries = get_json(&http, &format!("{base}/timers/{slow_id}/deliveries"), key).await;
    assert_eq!(deliveries["deliveries"][0]["status"], "succeeded");
    // The overview reads cross the gRPC contract too: counts, outcomes per minute, and
    // the list by name prefix.
    let counts = get_json(&http, &format!("{base}/timers/counts"), key).await;
    assert_eq!(
        (counts["settled"].as_u64(), counts["scheduled"].as_u64()),
        (Some(2), Some(0))
    );
    let activity = get_json(
        &http,
        &format!("{base}/deliveries/per-minute?minutes=5"),
        key,
    )
    .await;
    let minutes = activity["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 5);
    let succeeded: u64 = minutes
        .iter()
        .map(|m| m["succeeded"].as_u64().unwrap())
        .sum();
    assert_eq!(succeeded, 2, "{activity}");
    let named = get_json(&http, &format!("{base}/timers?name=webhook-"), key).await;
    assert_eq!(named["timers"].as_array().unwrap().len(), 2);
    let none = get_json(&http, &format!("{base}/timers?name=other"), key).await;
    assert_eq!(none["timers"].as_array().unwrap().len(), 0);
    drop(events);
    // The orchestrator's and the kernel's metrics count what happened.
    let m = http
        .get(format!("http://{orch_health}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("minoots_orchestrator_attempts_total{outcome=\"succeeded\"} 1"),
        "{m}"
    );
    common::openmetrics_parses(&m);
    let k = http
        .get(format!("http://{kernel_health}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(k.contains("minoots_timers_fired_total 2"), "{k}");
    common::openmetrics_parses(&k);

    // Changing a timer and firing it now go through the gRPC contract as well.
    let send = |method: reqwest::Method, path: String, body: Option<String>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .header("x-api-key", key)
            .header("if-match", "\"1\"");
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        req.send()
    };
    let later = create("/fast").replace("200ms", "1h");
    let r = send(reqwest::Method::POST, "/timers".into(), Some(later))
        .await
        .unwrap();
    let later: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let later_id = later["id"].as_str().unwrap().to_string();
    let r = send(
        reqwest::Method::PATCH,
        format!("/timers/{later_id}"),
        Some(r#"{"duration": "2h"}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let moved: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(moved["version"], 2);
    let r = send(
        reqwest::Method::POST,
        format!("/timers/{later_id}/fire"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let fired: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(fired["status"], "fired", "{fired}");
    let got = sink.wait_for("/fast", 2).await;
    assert_eq!(got[1]["x-minoots-timer-id"], later_id.as_str());

    for child in [&mut orch2, &mut cp, &mut kernel] {
        terminate(child);
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}
