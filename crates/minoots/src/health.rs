//! The small HTTP face of `minoots kernel` and `minoots orchestrator` in microservice
//! mode: `/healthz` (the process answers), `/readyz` (it can do its work) and `/metrics`
//! (Prometheus text), so orchestrators and health checks need no gRPC client.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;
/// Readiness with its reason, for processes that can fail or stop while serving.
pub type ReadinessProbe = Arc<dyn Fn() -> Readiness + Send + Sync>;
pub type Metrics = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// 200 `{"status":"ready"}`.
    Ready,
    /// 503 `{"status":"starting"}`: not ready yet.
    Starting,
    /// 503 `{"status":"stopping"}`: a graceful stop is under way.
    Stopping,
    /// 503 `{"status":"failed","reason":...}`: the process can no longer do its work and
    /// is exiting so that its supervisor restarts it.
    Failed(String),
}

impl Readiness {
    fn response(&self) -> Response {
        let (status, body) = match self {
            Readiness::Ready => (StatusCode::OK, serde_json::json!({"status": "ready"})),
            Readiness::Starting => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "starting"}),
            ),
            Readiness::Stopping => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "stopping"}),
            ),
            Readiness::Failed(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "failed", "reason": reason}),
            ),
        };
        json(status, &body.to_string())
    }
}

fn json(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// Serves the three endpoints on `addr` until `stop` completes; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    ready: Ready,
    metrics: Metrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let probe: ReadinessProbe = Arc::new(move || {
        if ready() {
            Readiness::Ready
        } else {
            Readiness::Starting
        }
    });
    serve_probe(addr, probe, metrics, stop).await
}

/// [`serve`] with a readiness that says why the process is not ready.
pub async fn serve_probe(
    addr: SocketAddr,
    ready: ReadinessProbe,
    metrics: Metrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async { json(StatusCode::OK, r#"{"status":"ok"}"#) }),
        )
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = ready.clone();
                async move { ready().response() }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    let mut text = metrics().await;
                    minoots_kernel::metrics::write_process_metrics(&mut text);
                    minoots_kernel_api::metrics::finish(&mut text);
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static(
                                minoots_kernel_api::metrics::EXPOSITION_CONTENT_TYPE,
                            ),
                        )],
                        text,
                    )
                        .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the health address {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await;
    });
    Ok(bound)
}
