//! Real `minoots orchestrator` processes against a real `minoots kernel` process, and real
//! `minoots serve` processes, with a local HTTP receiver, all with default lease settings:
//! SIGKILL mid-delivery redelivers with the same id within 10 s (short leases, renewed
//! while an attempt runs; `serve` hands its previous process's leases back at start); a
//! webhook that outlasts the lease TTL runs once; SIGTERM mid-delivery finishes it and
//! nothing is delivered twice.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use common::{
    KillOnDrop, WAIT, call, free_port, start_kernel, start_orchestrator, start_serve, terminate,
};
use minoots_core::{EventType, TimerRequest, TimerStatus};
use minoots_kernel::KernelApi;
use minoots_kernel::grpc::GrpcKernelClient;
use minoots_store::EventQuery;
use tokio::sync::Notify;
use tokio_stream::StreamExt;

/// A receiver whose first answer takes `first_delay`; it records each request's headers.
struct Receiver {
    seen: Mutex<Vec<HeaderMap>>,
    arrived: Notify,
}

impl Receiver {
    async fn start(first_delay: Duration) -> (Arc<Self>, String) {
        let r = Arc::new(Self {
            seen: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let me = r.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let me = me.clone();
            async move {
                let n = {
                    let mut seen = me.seen.lock().unwrap();
                    seen.push(headers);
                    seen.len()
                };
                me.arrived.notify_waiters();
                if n == 1 {
                    tokio::time::sleep(first_delay).await;
                }
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                if self.seen.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("request {n} never arrived"));
    }

    fn headers(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

fn webhook_timer(url: &str) -> TimerRequest {
    TimerRequest::from_json(
        format!(r#"{{"duration": "100ms", "actionBundle": {{"actions": [{{"type": "webhook", "url": "{url}", "timeoutMs": 30000}}]}}}}"#)
            .as_bytes(),
    )
    .unwrap()
}

/// Waits until the timer reaches `status` (settled or failed), woken by its events.
async fn wait_status(c: &GrpcKernelClient, id: minoots_core::TimerId, status: TimerStatus) {
    let query = EventQuery {
        timer_id: Some(id),
        types: vec![EventType::TimerSettled, EventType::TimerFailed],
        ..Default::default()
    };
    let mut events = c.stream_events(query).await.unwrap();
    while c.get_timer("acme", id).await.unwrap().status != status {
        tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap_or_else(|_| panic!("timer never became {status}"))
            .expect("event stream open")
            .unwrap();
    }
}

/// Default settings, except that webhooks may reach the loopback receiver.
const ORCH_FLAGS: &[&str] = &["--allow-private-targets"];
/// The guarantee: work in flight in a killed process runs again within this.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);
/// The default lease TTL (`--lease-ttl-ms`).
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_killed_mid_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut kernel, kernel_url) = start_kernel(dir.path());
    let client = GrpcKernelClient::connect_lazy(&kernel_url, None).unwrap();
    let (receiver, url) = Receiver::start(Duration::from_secs(20)).await;
    let mut first = start_orchestrator(&kernel_url, ORCH_FLAGS);
    let t = client
        .schedule_timer("acme", webhook_timer(&url))
        .await
        .unwrap()
        .timer;
    receiver.wait_for(1).await;
    first.kill().unwrap(); // SIGKILL while the receiver is still answering
    let killed = std::time::Instant::now();
    first.wait().unwrap();
    let mut second = start_orchestrator(&kernel_url, ORCH_FLAGS);
    // The lease (6 s, no longer renewed) expires, the rescuer returns the delivery, the
    // new executor runs it.
    receiver.wait_for(2).await;
    let recovered = killed.elapsed();
    assert!(
        recovered < RECOVERY_LIMIT,
        "redelivered {recovered:?} after the SIGKILL"
    );
    wait_status(&client, t.id, TimerStatus::Settled).await;
    let h = receiver.headers();
    assert_eq!(
        h[0]["webhook-id"], h[1]["webhook-id"],
        "the same delivery id"
    );
    assert_eq!(h[0]["x-minoots-attempt"], "1");
    assert_eq!(h[1]["x-minoots-attempt"], "2");
    second.kill().unwrap();
    second.wait().unwrap();
    kernel.kill().unwrap();
    kernel.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_delivery_finishes_it_and_delivers_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (mut kernel, kernel_url) = start_kernel(dir.path());
    let client = GrpcKernelClient::connect_lazy(&kernel_url, None).unwrap();
    let (receiver, url) = Receiver::start(Duration::from_millis(1_000)).await;
    let first = start_orchestrator(&kernel_url, ORCH_FLAGS);
    let t = client
        .schedule_timer("acme", webhook_timer(&url))
        .await
        .unwrap()
        .timer;
    receiver.wait_for(1).await;
    terminate(&first);
    let status = first.wait_with_output().unwrap().status;
    assert!(status.success(), "exit status {status:?}");
    wait_status(&client, t.id, TimerStatus::Settled).await;
    // Another executor comes up; give a duplicate every chance to appear (a lease, then
    // the rescuer's 1 s). There is no event for "nothing happened", so wait bounded.
    let mut second = start_orchestrator(&kernel_url, ORCH_FLAGS);
    tokio::time::sleep(DEFAULT_LEASE_TTL + Duration::from_millis(1_500)).await;
    assert_eq!(receiver.headers().len(), 1, "delivered exactly once");
    let ds = client.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts.len(), 1);
    second.kill().unwrap();
    second.wait().unwrap();
    kernel.kill().unwrap();
    kernel.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_slower_than_the_lease_runs_once_while_its_lease_is_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut kernel, kernel_url) = start_kernel(dir.path());
    let client = GrpcKernelClient::connect_lazy(&kernel_url, None).unwrap();
    // Half again the lease TTL: without renewals the lease would end mid-request.
    let (receiver, url) = Receiver::start(DEFAULT_LEASE_TTL * 3 / 2).await;
    let mut orch = start_orchestrator(&kernel_url, ORCH_FLAGS);
    let t = client
        .schedule_timer("acme", webhook_timer(&url))
        .await
        .unwrap()
        .timer;
    wait_status(&client, t.id, TimerStatus::Settled).await;
    assert_eq!(receiver.headers().len(), 1, "delivered exactly once");
    let ds = client.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts.len(), 1);
    assert_eq!(ds[0].delivery.attempt, 1);
    orch.kill().unwrap();
    orch.wait().unwrap();
    kernel.kill().unwrap();
    kernel.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_delivery_hands_it_back_when_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, grpc_port) = (free_port(), free_port());
    let (receiver, url) = Receiver::start(Duration::from_secs(60)).await;
    let (first, base) = start_serve(dir.path(), http_port, grpc_port, &["--demo"], &[]);
    let mut first = KillOnDrop(first);
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "duration": "100ms",
        "actionBundle": {"actions": [{"type": "webhook", "url": url, "timeoutMs": 60000}]}
    });
    let (status, timer) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/timers"),
        DEMO_KEY,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{timer}");
    receiver.wait_for(1).await;
    first.0.kill().unwrap(); // SIGKILL while the webhook is being answered
    let killed = std::time::Instant::now();
    first.0.wait().unwrap();
    let (second, base) = start_serve(dir.path(), http_port, grpc_port, &["--demo"], &[]);
    let _second = KillOnDrop(second);
    receiver.wait_for(2).await;
    let recovered = killed.elapsed();
    assert!(
        recovered < RECOVERY_LIMIT,
        "redelivered {recovered:?} after the SIGKILL"
    );
    let h = receiver.headers();
    assert_eq!(
        h[0]["webhook-id"], h[1]["webhook-id"],
        "the same delivery id"
    );
    assert_eq!(h[1]["x-minoots-attempt"], "2");
    // It came back because the new process handed the old one's lease back at start, not
    // because the lease ran out.
    let metrics = http
        .get(format!("{base}/metrics"))
        .header("X-API-Key", DEMO_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "minoots_leases_handed_back_total 1"),
        "{metrics}"
    );
}

const DEMO_KEY: &str = "mnt_demo_key_free";
