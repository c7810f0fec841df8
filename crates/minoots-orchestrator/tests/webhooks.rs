//! Webhook deliveries end to end: a real kernel on SQLite, the orchestrator, and a real
//! HTTP server on loopback that answers as each test scripts it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use minoots_core::{DeliveryStatus, TimerStatus};
use minoots_kernel::KernelApi;
use minoots_orchestrator::ssrf::TargetPolicy;
use tokio::sync::Notify;

mod common;
use common::{Setup, WAIT, loopback_allowed};

/// How the sink answers one request.
#[derive(Clone)]
enum Reply {
    Status(u16, Vec<(&'static str, String)>),
    /// Never answer (until the client gives up).
    Hang,
}

#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

#[derive(Default)]
struct Sink {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

impl Sink {
    /// Waits until `n` requests arrived.
    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                if self.received.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} requests did not arrive"));
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// A copy of what arrived so far (no lock is held afterwards).
    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn start_sink(script: Vec<Reply>) -> (Arc<Sink>, String) {
    let sink = Arc::new(Sink {
        script: Mutex::new(script.into()),
        ..Default::default()
    });
    let s = sink.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let s = s.clone();
        async move {
            let reply = s
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Reply::Status(200, vec![]));
            s.received.lock().unwrap().push(Received {
                headers,
                body,
                at: Instant::now(),
            });
            s.arrived.notify_waiters();
            match reply {
                Reply::Status(code, headers) => {
                    let mut h = HeaderMap::new();
                    for (k, v) in headers {
                        h.insert(k, v.parse().unwrap());
                    }
                    (StatusCode::from_u16(code).unwrap(), h, "sink says hi").into_response()
                }
                Reply::Hang => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    (StatusCode::OK, HeaderMap::new(), "late").into_response()
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sink, url)
}

async fn start(targets: TargetPolicy) -> Setup {
    common::start_with(|c| c.targets = targets).await
}

/// A webhook timer due in 10 ms, retried fast: 3 attempts, backoff from 50 ms up to 200 ms.
async fn schedule(s: &Setup, url: &str, extra: &str) -> minoots_core::Timer {
    schedule_with(s, url, extra, 200).await
}

/// [`schedule`] with another backoff ceiling.
async fn schedule_with(
    s: &Setup,
    url: &str,
    extra: &str,
    max_backoff_ms: u64,
) -> minoots_core::Timer {
    let retry = format!(
        r#"{{"maxAttempts": 3, "initialBackoffMs": 50, "maxBackoffMs": {max_backoff_ms}}}"#
    );
    s.schedule("10ms", url, extra, &retry).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_on_the_first_try_is_signed_and_settles_the_timer() {
    let (sink, url) = start_sink(vec![]).await;
    let s = start(loopback_allowed()).await;
    let t = schedule(&s, &url, r#", "headers": {"x-team": "ops"}"#).await;
    sink.wait_for(1).await;
    let t = s.wait_status(t.id, TimerStatus::Settled).await;
    let req = &sink.requests()[0];
    let ds = s.kernel.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(
        req.headers["webhook-id"],
        ds[0].delivery.id.to_string().as_str()
    );
    assert_eq!(req.headers["x-minoots-timer-id"], t.id.to_string().as_str());
    assert_eq!(req.headers["x-minoots-attempt"], "1");
    assert_eq!(req.headers["x-team"], "ops");
    assert!(
        req.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("MINOOTS/")
    );
    // The body is the event envelope, and the signature verifies with the tenant's secret.
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["event"], "timer.fired");
    assert_eq!(body["timer"]["id"], t.id.to_string());
    let secret = s.kernel.webhook_secrets("acme").await.unwrap().remove(0);
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&req.body, &req.headers)
        .expect("signature verifies");
    assert_eq!(ds[0].attempts.len(), 1);
    assert_eq!(ds[0].attempts[0].http_status, Some(200));
    assert_eq!(
        ds[0].attempts[0].response_excerpt.as_deref(),
        Some("sink says hi")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_type_set_by_the_tenant_replaces_the_default() {
    let (sink, url) = start_sink(vec![]).await;
    let s = start(loopback_allowed()).await;
    schedule(
        &s,
        &url,
        r#", "headers": {"Content-Type": "text/plain"}, "body": "hello""#,
    )
    .await;
    sink.wait_for(1).await;
    let req = &sink.requests()[0];
    let types: Vec<_> = req.headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["text/plain"], "one content type, the tenant's");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_then_a_200_is_two_attempts_with_the_same_webhook_id() {
    let (sink, url) = start_sink(vec![Reply::Status(500, vec![])]).await;
    let s = start(loopback_allowed()).await;
    let t = schedule(&s, &url, "").await;
    sink.wait_for(2).await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    let r = sink.requests();
    assert_eq!(r[0].headers["webhook-id"], r[1].headers["webhook-id"]);
    assert_eq!(r[0].headers["x-minoots-attempt"], "1");
    assert_eq!(r[1].headers["x-minoots-attempt"], "2");
    let ds = s.kernel.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(
        ds[0]
            .attempts
            .iter()
            .map(|a| a.http_status)
            .collect::<Vec<_>>(),
        vec![Some(500), Some(200)]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_waits_about_that_long() {
    let (sink, url) = start_sink(vec![Reply::Status(429, vec![("retry-after", "2".into())])]).await;
    let s = start(loopback_allowed()).await;
    // Retry-After is honoured up to maxBackoffMs (here 10 s, so 2 s is taken as given).
    let t = schedule_with(&s, &url, "", 10_000).await;
    sink.wait_for(2).await;
    let r = sink.requests();
    let gap = r[1].at - r[0].at;
    assert!(
        gap >= Duration::from_millis(1_950) && gap < Duration::from_secs(4),
        "waited {gap:?}"
    );
    s.wait_status(t.id, TimerStatus::Settled).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_stops_at_once() {
    let (sink, url) = start_sink(vec![Reply::Status(410, vec![])]).await;
    let s = start(loopback_allowed()).await;
    let t = schedule(&s, &url, "").await;
    let t = s.wait_status(t.id, TimerStatus::Failed).await;
    let ds = s.kernel.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].delivery.status, DeliveryStatus::Dead);
    assert_eq!(ds[0].attempts.len(), 1);
    assert_eq!(sink.count(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_times_out_and_is_retried() {
    let (sink, url) = start_sink(vec![Reply::Hang]).await;
    let s = start(loopback_allowed()).await;
    let t = schedule(&s, &url, r#", "timeoutMs": 300"#).await;
    sink.wait_for(2).await;
    let t = s.wait_status(t.id, TimerStatus::Settled).await;
    let ds = s.kernel.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts.len(), 2);
    assert_eq!(ds[0].attempts[0].http_status, None);
    assert!(
        ds[0].attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("300 ms"),
        "{:?}",
        ds[0].attempts[0].error
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_the_timer_and_a_redrive_runs_it_again() {
    let (sink, url) = start_sink(vec![
        Reply::Status(503, vec![]),
        Reply::Status(503, vec![]),
        Reply::Status(503, vec![]),
    ])
    .await;
    let s = start(loopback_allowed()).await;
    let t = schedule(&s, &url, "").await;
    let t = s.wait_status(t.id, TimerStatus::Failed).await;
    assert_eq!(sink.count(), 3, "maxAttempts 3");
    let ds = s.kernel.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].delivery.status, DeliveryStatus::Dead);
    s.kernel.redrive_timer("acme", t.id).await.unwrap();
    sink.wait_for(4).await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    let r = sink.requests();
    assert_eq!(
        r[3].headers["webhook-id"], r[0].headers["webhook-id"],
        "same delivery id after redrive"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_blocks_loopback_targets_unless_allowed() {
    let (sink, url) = start_sink(vec![]).await;
    let s = start(TargetPolicy::default()).await;
    let literal = schedule(&s, &url, "").await;
    let by_name = schedule(&s, &url.replace("127.0.0.1", "localhost"), "").await;
    for id in [literal.id, by_name.id] {
        let t = s.wait_status(id, TimerStatus::Failed).await;
        let ds = s.kernel.list_deliveries("acme", t.id).await.unwrap();
        assert_eq!(ds[0].attempts.len(), 1, "refused permanently, not retried");
        let err = ds[0].attempts[0].error.clone().unwrap_or_default();
        assert!(err.contains("loopback"), "{err}");
    }
    assert_eq!(sink.count(), 0, "nothing reached the server");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_is_recorded_with_its_location() {
    let (sink, url) = start_sink(vec![Reply::Status(
        302,
        vec![("location", "http://169.254.169.254/latest".into())],
    )])
    .await;
    let s = start(loopback_allowed()).await;
    let t = schedule(&s, &url, "").await;
    let t = s.wait_status(t.id, TimerStatus::Failed).await;
    let ds = s.kernel.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts.len(), 1, "not retried");
    assert_eq!(ds[0].attempts[0].http_status, Some(302));
    let err = ds[0].attempts[0].error.clone().unwrap_or_default();
    assert!(
        err.contains("169.254.169.254/latest") && err.contains("not followed"),
        "{err}"
    );
    assert_eq!(sink.count(), 1, "only the first URL was requested");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_run_names_its_schedule_and_slot_in_headers() {
    use minoots_core::{ScheduleId, ScheduleLink, WebhookAction};
    use minoots_orchestrator::signing::WebhookSecret;
    use minoots_orchestrator::webhook::{WebhookCall, WebhookClient};

    let (sink, url) = start_sink(vec![]).await;
    let client =
        WebhookClient::new(loopback_allowed(), 4, Arc::new(minoots_core::SystemClock)).unwrap();
    let action: WebhookAction = serde_json::from_value(serde_json::json!({"url": url})).unwrap();
    let secrets = [WebhookSecret::generate().unwrap()];
    let link = ScheduleLink {
        id: ScheduleId::new_v7(),
        scheduled_at_us: 1_796_860_800_000_000,
    };
    for schedule in [Some(link), None] {
        let result = client
            .deliver(WebhookCall {
                action: &action,
                url: None,
                delivery_id: "d-1",
                timer_id: "t-1",
                attempt: 1,
                schedule,
                secrets: &secrets,
                timestamp_s: 1_796_860_800,
                traceparent: None,
                body: b"{}".to_vec(),
            })
            .await;
        assert_eq!(result.outcome, minoots_core::AttemptOutcome::Succeeded);
    }
    sink.wait_for(2).await;
    let reqs = sink.requests();
    assert_eq!(
        reqs[0].headers["x-minoots-schedule-id"],
        link.id.to_string().as_str()
    );
    assert_eq!(
        reqs[0].headers["x-minoots-scheduled-at"],
        "2026-12-10T00:00:00Z"
    );
    assert!(reqs[1].headers.get("x-minoots-schedule-id").is_none());
    assert!(reqs[1].headers.get("x-minoots-scheduled-at").is_none());
}

/// The attempt's trace parent travels as `traceparent`, unless the tenant's own headers
/// set one; without one no `traceparent` is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_carries_its_traceparent() {
    use minoots_core::WebhookAction;
    use minoots_orchestrator::signing::WebhookSecret;
    use minoots_orchestrator::webhook::{WebhookCall, WebhookClient};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const THEIRS: &str = "00-11111111111111111111111111111111-2222222222222222-01";
    let (sink, url) = start_sink(vec![]).await;
    let client =
        WebhookClient::new(loopback_allowed(), 4, Arc::new(minoots_core::SystemClock)).unwrap();
    let plain: WebhookAction = serde_json::from_value(serde_json::json!({"url": url})).unwrap();
    let own: WebhookAction =
        serde_json::from_value(serde_json::json!({"url": url, "headers": {"traceparent": THEIRS}}))
            .unwrap();
    let secrets = [WebhookSecret::generate().unwrap()];
    for (action, traceparent) in [(&plain, Some(TP)), (&plain, None), (&own, Some(TP))] {
        let result = client
            .deliver(WebhookCall {
                action,
                url: None,
                delivery_id: "d-1",
                timer_id: "t-1",
                attempt: 1,
                schedule: None,
                secrets: &secrets,
                timestamp_s: 1_796_860_800,
                traceparent,
                body: b"{}".to_vec(),
            })
            .await;
        assert_eq!(result.outcome, minoots_core::AttemptOutcome::Succeeded);
    }
    sink.wait_for(3).await;
    let reqs = sink.requests();
    assert_eq!(reqs[0].headers["traceparent"], TP);
    assert!(reqs[1].headers.get("traceparent").is_none());
    let theirs: Vec<_> = reqs[2].headers.get_all("traceparent").iter().collect();
    assert_eq!(
        theirs,
        [THEIRS],
        "the tenant's own traceparent is sent alone"
    );
}
