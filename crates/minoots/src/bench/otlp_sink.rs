//! `minoots bench otlp-sink`: an OTLP/gRPC trace receiver that decodes each export, counts
//! its spans and drops them, so that a workload run with `--otlp-endpoint` pointing at it
//! measures what exporting costs MINOOTS (the collector's own share is this process's).
//! It keeps nothing but two counters, and stops on SIGINT or SIGTERM, or after
//! `--seconds`, printing one JSON line with what it received.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde_json::json;

use super::emit;

#[derive(clap::Args, Clone)]
pub struct OtlpSinkBench {
    /// Where to listen (loopback only: a benchmark's collector).
    #[arg(long, default_value = "127.0.0.1:4317")]
    addr: std::net::SocketAddr,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
}

/// What the sink received.
#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    spans: AtomicU64,
}

struct Sink(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.0.exports.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

pub async fn run(b: OtlpSinkBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        b.addr.ip().is_loopback(),
        "--addr must be a loopback address (127.0.0.1:4317): the sink is a benchmark's collector"
    );
    let counts = Arc::new(Counts::default());
    let listener = tokio::net::TcpListener::bind(b.addr).await?;
    eprintln!("otlp-sink listening on http://{}", listener.local_addr()?);
    let started = Instant::now();
    let stop = async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let limit = b.seconds.map_or(Duration::MAX, Duration::from_secs);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = tokio::time::sleep(limit) => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink(counts.clone())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop,
        )
        .await?;
    emit(json!({
        "section": "otlp_sink",
        "seconds": started.elapsed().as_secs_f64(),
        "exports": counts.exports.load(Ordering::Relaxed),
        "spans": counts.spans.load(Ordering::Relaxed),
    }));
    Ok(())
}
