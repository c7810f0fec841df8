//! `minoots kernel`: the kernel with its embedded store behind the gRPC API, until SIGTERM
//! or SIGINT, then a graceful stop (no new calls, fires in progress committed, store closed).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use minoots_core::{Clock, SystemClock};
use minoots_kernel::grpc::{GrpcServerConfig, serve};
use minoots_kernel::{Kernel, KernelApi, KernelConfig};
use minoots_store::{SqliteConfig, SqliteStore, Store};
use tokio::net::TcpListener;

use crate::KernelArgs;

#[derive(clap::Args, Debug, Clone)]
pub struct KernelCmdArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long = "http-addr",
        env = "MINOOTS_KERNEL_HTTP_ADDR",
        default_value = "127.0.0.1:9094"
    )]
    pub health_addr: std::net::SocketAddr,
}

/// Opens the embedded store in `args.data_dir` and starts the kernel on it (also used by
/// `minoots serve`).
pub fn start_kernel(args: &KernelArgs) -> anyhow::Result<Arc<Kernel>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = SqliteStore::open(SqliteConfig::new(&args.data_dir), clock.clone())
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let config = KernelConfig {
        event_retention: Duration::from_secs(u64::from(args.event_retention_days.max(1)) * 86_400),
        actions: args.actions.policy()?,
        ..KernelConfig::default()
    };
    Kernel::start(store, clock, config).map_err(anyhow::Error::msg)
}

pub async fn run(cmd: KernelCmdArgs) -> anyhow::Result<()> {
    let args = cmd.kernel;
    let started = std::time::Instant::now();
    let kernel = start_kernel(&args)?;
    let listener = TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {}", args.grpc_addr))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api: Arc<dyn KernelApi> = kernel.clone();
    let mut grpc = tokio::spawn(serve(
        api,
        listener,
        GrpcServerConfig {
            token: args.kernel_token.clone(),
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let (health_stop, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let health_addr = {
        let (k1, k2) = (kernel.clone(), kernel.clone());
        crate::health::serve(
            cmd.health_addr,
            Arc::new(move || k1.is_ready()),
            Arc::new(move || {
                let k = k2.clone();
                Box::pin(
                    async move { minoots_control_plane::metrics::render_kernel_metrics(&k).await },
                )
            }),
            async {
                let _ = health_stopped.await;
            },
        )
        .await?
    };
    kernel.wait_ready(Duration::from_secs(30)).await;
    tracing::info!(
        grpc = %addr,
        health = %health_addr,
        data_dir = %args.data_dir.display(),
        ready_ms = started.elapsed().as_millis() as u64,
        "MINOOTS kernel ready"
    );
    // One line on stdout for scripts and tests that wait for readiness.
    println!("minoots kernel ready on {addr}");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        r = &mut grpc => {
            // The server stopped by itself: that is a failure (e.g. refused to start).
            r.context("gRPC server task")?.map_err(anyhow::Error::msg)?;
            anyhow::bail!("gRPC server stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(());
    let _ = health_stop.send(());
    if tokio::time::timeout(Duration::from_secs(10), grpc)
        .await
        .is_err()
    {
        tracing::warn!("gRPC calls still open after 10 s; closing anyway");
    }
    kernel.shutdown().await;
    tracing::info!("MINOOTS kernel stopped");
    Ok(())
}
