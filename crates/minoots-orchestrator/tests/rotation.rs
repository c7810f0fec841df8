//! A rotated signing secret signs at once: once `rotate_webhook_secret` has returned, the
//! next delivery is signed with the new secret too (alongside the old one, which keeps
//! verifying for its grace period), although the orchestrator had the old secrets cached
//! — in one process and with the orchestrator talking to the kernel over gRPC.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use minoots_core::{Clock, SystemClock, TimerRequest};
use minoots_kernel::grpc::{GrpcKernelClient, GrpcServerConfig};
use minoots_kernel::{Kernel, KernelApi, KernelConfig};
use minoots_orchestrator::executor::{Orchestrator, OrchestratorConfig};
use minoots_orchestrator::ssrf::TargetPolicy;
use minoots_store::{SqliteConfig, SqliteStore, Store};
use tokio::sync::{Notify, watch};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Sink {
    got: Mutex<Vec<(HeaderMap, Bytes)>>,
    arrived: Notify,
}

impl Sink {
    async fn start() -> (Arc<Self>, String) {
        let sink = Arc::new(Self::default());
        let me = sink.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let me = me.clone();
            async move {
                me.got.lock().unwrap().push((headers, body));
                me.arrived.notify_waiters();
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, url)
    }

    /// Waits for request `n` (1-based) and returns it.
    async fn request(&self, n: usize) -> (HeaderMap, Bytes) {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                if let Some(r) = self.got.lock().unwrap().get(n - 1) {
                    return r.clone();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("request {n} never arrived"))
    }
}

fn verifies(secret: &str, (headers, body): &(HeaderMap, Bytes)) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(body, headers)
        .is_ok()
}

async fn rotation_reaches_the_next_delivery(grpc: bool) {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap());
    let kernel = Kernel::start(store, clock, KernelConfig::default()).unwrap();
    let (grpc_stop, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let api: Arc<dyn KernelApi> = if grpc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(minoots_kernel::grpc::serve(
            kernel.clone(),
            listener,
            GrpcServerConfig { token: None },
            async {
                let _ = grpc_stopped.await;
            },
        ));
        Arc::new(GrpcKernelClient::connect_lazy(&format!("http://{addr}"), None).unwrap())
    } else {
        kernel.clone()
    };
    let mut config = OrchestratorConfig::new("orch-rotation");
    config.targets = TargetPolicy {
        allow_private: true,
        allowed_cidrs: vec![],
    };
    let orchestrator = Orchestrator::new(api, config).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(orchestrator.run(stop_rx));

    let (sink, url) = Sink::start().await;
    let timer = || {
        TimerRequest::from_json(
            format!(r#"{{"duration": "10ms", "actionBundle": {{"actions": [{{"type": "webhook", "url": "{url}"}}]}}}}"#)
                .as_bytes(),
        )
        .unwrap()
    };
    kernel.schedule_timer("acme", timer()).await.unwrap();
    let first = sink.request(1).await;
    let old = kernel.webhook_secrets("acme").await.unwrap().remove(0);
    assert!(verifies(&old, &first));

    // The orchestrator has the old secret cached (for up to 60 s by default).
    let new = kernel.rotate_webhook_secret("acme").await.unwrap();
    assert_ne!(new, old);
    kernel.schedule_timer("acme", timer()).await.unwrap();
    let second = sink.request(2).await;
    assert!(
        verifies(&new, &second),
        "the delivery after the rotation is signed with the new secret"
    );
    assert!(verifies(&old, &second), "and still with the old one");

    let _ = stop.send(true);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    let _ = grpc_stop.send(());
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_the_next_delivery_in_one_process() {
    rotation_reaches_the_next_delivery(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_the_next_delivery_over_grpc() {
    rotation_reaches_the_next_delivery(true).await;
}
