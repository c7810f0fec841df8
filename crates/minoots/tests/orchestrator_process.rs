//! A real `minoots orchestrator` process against a real `minoots kernel` process and a
//! local HTTP receiver: SIGKILL mid-delivery redelivers with the same id after the lease
//! expires; SIGTERM mid-delivery finishes it and nothing is delivered twice.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use common::{WAIT, start_kernel, start_orchestrator, terminate};
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

const ORCH_FLAGS: &[&str] = &["--allow-private-targets", "--lease-ttl-ms", "2000"];

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
    first.wait().unwrap();
    let mut second = start_orchestrator(&kernel_url, ORCH_FLAGS);
    // The lease (2 s) expires, the rescuer returns the delivery, the new executor runs it.
    receiver.wait_for(2).await;
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
    // Another executor comes up; give a duplicate every chance to appear (lease 2 s,
    // rescuer every 1 s). There is no event for "nothing happened", so wait bounded.
    let mut second = start_orchestrator(&kernel_url, ORCH_FLAGS);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(receiver.headers().len(), 1, "delivered exactly once");
    let ds = client.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts.len(), 1);
    second.kill().unwrap();
    second.wait().unwrap();
    kernel.kill().unwrap();
    kernel.wait().unwrap();
}
