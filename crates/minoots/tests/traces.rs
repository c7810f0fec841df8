//! Traces end to end, with real `minoots serve` processes: an OTLP/gRPC receiver inside
//! the test (on loopback) collects the spans `--otlp-endpoint` exports, and a loopback
//! webhook receiver records what the attempts send. One timer, created with a client's
//! `traceparent`, must give the create, store commit, fire, lease and attempt spans, all
//! with the client's trace id and the timer's id, and its webhook must carry a
//! `traceparent` of the same trace (the attempt span's own). The trace survives a restart
//! (it is stored with the timer), and without `--otlp-endpoint` nothing is exported.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::HeaderMap;
use common::{KillOnDrop, WAIT, free_port, scrape, start_serve, terminate, wait_exit};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::Notify;

/// The client's trace: trace id `4bf9…4736`, calling span `00f0…02b7`, sampled.
const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";
const DEMO_KEY: &str = "mnt_demo_key_free";
/// The spans of one timer's life, from create to webhook answer.
const LIFE: [&str; 5] = [
    "timer.create",
    "store.commit",
    "timer.fire",
    "delivery.lease",
    "delivery.attempt",
];

/// One exported span with the resource attributes of the process that sent it.
#[derive(Clone, Debug)]
struct Got {
    span: Span,
    resource: Vec<KeyValue>,
}

impl Got {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

fn attr(kvs: &[KeyValue], key: &str) -> Option<String> {
    let v = kvs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OTLP/gRPC trace receiver: keeps every span it is sent.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<Got>>,
    arrived: Notify,
}

struct Receiver(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Got {
                        span,
                        resource: resource.clone(),
                    });
                }
            }
        }
        drop(spans);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Received {
    fn all(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (bounded by [`WAIT`]) until the spans of `timer_id` include every name of
    /// `names` (from a resource with `resource_mark`, when given); returns them by name.
    async fn wait_for(
        &self,
        timer_id: &str,
        names: &[&str],
        resource_mark: Option<(&str, &str)>,
    ) -> Vec<Got> {
        let mut have = BTreeSet::new();
        until(&self.arrived, || {
            let mine: Vec<Got> = self
                .all()
                .into_iter()
                .filter(|g| g.attr("timer.id").as_deref() == Some(timer_id))
                .filter(|g| {
                    resource_mark.is_none_or(|(k, v)| attr(&g.resource, k).as_deref() == Some(v))
                })
                .collect();
            have = mine.iter().map(|g| g.span.name.clone()).collect();
            names.iter().all(|n| have.contains(*n)).then_some(mine)
        })
        .await
        .unwrap_or_else(|| {
            panic!("spans {names:?} of timer {timer_id} did not all arrive; got {have:?}")
        })
    }
}

/// Waits, bounded by [`WAIT`], until `check` finds what it looks for, checking again each
/// time `arrived` is notified; `None` when the time ran out.
async fn until<T>(arrived: &Notify, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        let notified = arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(found) = check() {
            return Some(found);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let _ = tokio::time::timeout(left, notified).await;
    }
}

/// Starts the OTLP receiver on loopback; returns it and its endpoint URL.
async fn start_receiver() -> (Arc<Received>, String) {
    let received = Arc::new(Received::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(Receiver(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    (received, endpoint)
}

/// The webhook receiver: records each request's headers.
#[derive(Default)]
struct Hooks {
    got: Mutex<Vec<HeaderMap>>,
    arrived: Notify,
}

impl Hooks {
    /// Waits (bounded by [`WAIT`]) for the first webhook of `timer_id`; returns its headers.
    async fn wait_for(&self, timer_id: &str) -> HeaderMap {
        until(&self.arrived, || {
            self.got
                .lock()
                .unwrap()
                .iter()
                .find(|h| h.get("x-minoots-timer-id").is_some_and(|v| v == timer_id))
                .cloned()
        })
        .await
        .unwrap_or_else(|| panic!("the webhook of timer {timer_id} did not arrive"))
    }
}

async fn start_hooks() -> (Arc<Hooks>, String) {
    let hooks = Arc::new(Hooks::default());
    let app = {
        let hooks = hooks.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let hooks = hooks.clone();
                async move {
                    hooks.got.lock().unwrap().push(headers);
                    hooks.arrived.notify_waiters();
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hooks, url)
}

/// Creates a timer firing after `duration` with a webhook to `hook`, sending `traceparent`
/// as a header when given; returns the HTTP status and the timer's id.
async fn create(
    base: &str,
    hook: &str,
    duration: &str,
    traceparent: Option<&str>,
) -> (u16, String) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = serde_json::json!({
        "duration": duration,
        "actionBundle": {"actions": [{"type": "webhook", "url": hook}]},
    });
    let mut req = http
        .post(format!("{base}/timers"))
        .header("X-API-Key", DEMO_KEY)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let timer: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
    (status, timer["id"].as_str().unwrap_or_default().to_string())
}

fn stop(mut serve: KillOnDrop) {
    terminate(&serve.0);
    let exit = wait_exit(&mut serve.0, WAIT);
    assert!(exit.success(), "serve stops cleanly on SIGTERM: {exit:?}");
}

/// The webhook's `traceparent`: in the client's trace, and naming the attempt span.
fn check_webhook_traceparent(headers: &HeaderMap, attempt: &Got) {
    let tp = headers
        .get("traceparent")
        .expect("the webhook carries a traceparent")
        .to_str()
        .unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(
        parts[1], CLIENT_TRACE_ID,
        "the receiver joins the caller's trace"
    );
    assert_eq!(
        parts[2],
        hex(&attempt.span.span_id),
        "the webhook's parent is the attempt span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_covers_a_timer_from_create_to_webhook_answer() {
    let (received, endpoint) = start_receiver().await;
    let (hooks, hook) = start_hooks().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--demo", "--otlp-endpoint", &endpoint],
        &[],
    );
    let serve = KillOnDrop(child);

    let (status, id) = create(&base, &hook, "1s", Some(CLIENT_TRACEPARENT)).await;
    assert_eq!(status, 201);
    let headers = hooks.wait_for(&id).await;
    let spans = received.wait_for(&id, &LIFE, None).await;

    for g in &spans {
        assert_eq!(
            g.trace_id(),
            CLIENT_TRACE_ID,
            "span {} is in the client's trace",
            g.span.name
        );
        assert_eq!(g.attr("timer.id").as_deref(), Some(id.as_str()));
        assert_eq!(
            attr(&g.resource, "service.name").as_deref(),
            Some("minoots-serve")
        );
    }
    let named = |name: &str| spans.iter().find(|g| g.span.name == name).unwrap().clone();
    let create_span = named("timer.create");
    assert_eq!(
        hex(&create_span.span.parent_span_id),
        CLIENT_SPAN_ID,
        "the create is a child of the client's span"
    );
    assert_eq!(
        create_span.attr("http.response.status_code").as_deref(),
        Some("201")
    );
    // The later steps are children of the create span, whose context the timer stored.
    for later in [
        "store.commit",
        "timer.fire",
        "delivery.lease",
        "delivery.attempt",
    ] {
        assert_eq!(
            named(later).span.parent_span_id,
            create_span.span.span_id,
            "{later} is a child of the create span"
        );
    }
    let attempt = named("delivery.attempt");
    assert_eq!(
        attempt.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    check_webhook_traceparent(&headers, &attempt);

    // A malformed traceparent is dropped, never refused: the timer is created in a trace
    // of its own.
    for bad in [
        "garbage",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    ] {
        let (status, other) = create(&base, &hook, "1h", Some(bad)).await;
        assert_eq!(status, 201, "{bad:?} is dropped");
        let spans = received
            .wait_for(&other, &["timer.create", "store.commit"], None)
            .await;
        let root = spans
            .iter()
            .find(|g| g.span.name == "timer.create")
            .unwrap();
        assert_ne!(root.trace_id(), CLIENT_TRACE_ID);
        assert!(root.span.parent_span_id.is_empty(), "a new trace's root");
        assert!(spans.iter().all(|g| g.trace_id() == root.trace_id()));
    }
    stop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_survives_a_restart() {
    let (received, endpoint) = start_receiver().await;
    let (hooks, hook) = start_hooks().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (http_port, grpc_port) = (free_port(), free_port());
    let args = ["--demo", "--otlp-endpoint", endpoint.as_str()];
    let (child, base) = start_serve(&data, http_port, grpc_port, &args, &[]);
    let first = KillOnDrop(child);
    // Long enough to fire only after the restart.
    let (status, id) = create(&base, &hook, "6s", Some(CLIENT_TRACEPARENT)).await;
    assert_eq!(status, 201);
    received
        .wait_for(&id, &["timer.create", "store.commit"], None)
        .await;
    stop(first);
    assert!(hooks.got.lock().unwrap().is_empty(), "not fired yet");

    let mark = ("minoots.test.run", "second");
    let (child, _) = start_serve(
        &data,
        http_port,
        grpc_port,
        &args,
        &[("OTEL_RESOURCE_ATTRIBUTES", "minoots.test.run=second")],
    );
    let second = KillOnDrop(child);
    let headers = hooks.wait_for(&id).await;
    let spans = received
        .wait_for(
            &id,
            &["timer.fire", "delivery.lease", "delivery.attempt"],
            Some(mark),
        )
        .await;
    for g in &spans {
        assert_eq!(
            g.trace_id(),
            CLIENT_TRACE_ID,
            "{} after the restart is in the create's trace",
            g.span.name
        );
    }
    let attempt = spans
        .iter()
        .find(|g| g.span.name == "delivery.attempt")
        .unwrap();
    check_webhook_traceparent(&headers, attempt);
    stop(second);
}

/// Without `--otlp-endpoint` nothing is exported, even with the SDK's own environment
/// variable pointing at a receiver, and the client's `traceparent` reaches the webhook
/// unchanged (the timer keeps it; there is no attempt span to replace it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported() {
    let (received, endpoint) = start_receiver().await;
    let (hooks, hook) = start_hooks().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--demo"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    let serve = KillOnDrop(child);
    let (status, id) = create(&base, &hook, "1s", Some(CLIENT_TRACEPARENT)).await;
    assert_eq!(status, 201);
    let headers = hooks.wait_for(&id).await;
    assert_eq!(headers["traceparent"], CLIENT_TRACEPARENT);
    // A stopping process sends what it queued: after the exit, anything would be here.
    stop(serve);
    assert!(received.all().is_empty(), "nothing is exported");
}

/// With the collector down, timers are delivered as usual, the spans are dropped and
/// counted on `/metrics`, and the process still stops promptly on SIGTERM (its last flush
/// is bounded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_spans_not_deliveries() {
    let (hooks, hook) = start_hooks().await;
    // A loopback port nothing listens on.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--demo", "--otlp-endpoint", &endpoint],
        &[],
    );
    let serve = KillOnDrop(child);
    let (status, id) = create(&base, &hook, "1s", Some(CLIENT_TRACEPARENT)).await;
    assert_eq!(status, 201);
    hooks.wait_for(&id).await;

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let dropped = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("minoots_trace_spans_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(&http, &base).await;
        assert!(
            text.contains("minoots_trace_spans_exported_total 0"),
            "{text}"
        );
        // The create, commit, fire, lease and attempt spans, at the least.
        if dropped(&text) >= LIFE.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans were not counted as dropped"
        );
        // Spans leave once a second; the next scrape after the next export.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    stop(serve);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "stopping waited {:?} on the collector",
        started.elapsed()
    );
}
