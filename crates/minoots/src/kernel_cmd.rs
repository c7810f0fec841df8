//! `minoots kernel`: the kernel with its embedded store behind the gRPC API, until SIGTERM
//! or SIGINT, then a graceful stop (no new calls, fires in progress committed, store closed).
//!
//! When a part of the scheduler dies (timers no longer fire), the process logs why at
//! error level, answers `/readyz` with 503 `{"status":"failed","reason":...}` while it
//! stops the same way, and exits with an error so that its supervisor restarts it: a new
//! process reloads the window from the store, where nothing was lost (see
//! [`Kernel::failed`] for why exiting is preferred to restarting the part in place).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use minoots_core::{Clock, SystemClock};
use minoots_kernel::grpc::{GrpcServerConfig, serve};
use minoots_kernel::{Kernel, KernelApi, KernelConfig};
use minoots_store::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, Store};
use tokio::net::TcpListener;

use crate::KernelArgs;
use crate::health::Readiness;

/// After a failure, how long the kernel's stop may take before the process exits anyway:
/// the failure may have left the scheduler in a state no one should wait on for long.
const FAILED_STOP_WAIT: Duration = Duration::from_secs(10);

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

/// Opens the store (PostgreSQL with `--database-url`, else the embedded store in
/// `args.data_dir`) and starts the kernel on it (also used by `minoots serve`). `name` is
/// what the kernel is (`kernel` or `serve`), the start of its name among the kernels of
/// a PostgreSQL database.
pub async fn start_kernel(args: &KernelArgs, name: &str) -> anyhow::Result<Arc<Kernel>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(args, name, clock.clone()).await?;
    let config = KernelConfig {
        event_retention: Duration::from_secs(u64::from(args.event_retention_days.max(1)) * 86_400),
        actions: args.actions.policy()?,
        ..KernelConfig::default()
    };
    let kernel = Kernel::start(store, clock, config)?;
    #[cfg(debug_assertions)]
    arm_test_faults(&kernel)?;
    Ok(kernel)
}

/// Where the kernel keeps its timers, for logs: the data directory, or the PostgreSQL
/// database without its password.
pub fn store_description(args: &KernelArgs) -> String {
    match &args.database_url {
        None => args.data_dir.display().to_string(),
        Some(url) => postgres_config(args, url, "kernel").target(),
    }
}

fn postgres_config(args: &KernelArgs, url: &str, name: &str) -> PostgresConfig {
    let mut config = PostgresConfig::new(url);
    config.schema = args.database_schema.clone();
    config.max_connections = usize::from(args.database_max_connections);
    // The same boot identity as a lease owner: no two processes share one.
    config.kernel = Some(minoots_orchestrator::executor::lease_owner(name));
    config.application_name = format!("minoots-{name}");
    config
}

/// The store's settings beyond its location.
fn sqlite_config(args: &KernelArgs) -> anyhow::Result<SqliteConfig> {
    Ok(SqliteConfig {
        meter_bucket_us: args.meter_bucket_us()?,
        ..SqliteConfig::new(&args.data_dir)
    })
}

async fn open_store(
    args: &KernelArgs,
    name: &str,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn Store>> {
    let Some(url) = &args.database_url else {
        let store = SqliteStore::open(sqlite_config(args)?, clock)
            .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
        return Ok(Arc::new(store));
    };
    let mut config = postgres_config(args, url, name);
    config.meter_bucket_us = args.meter_bucket_us()?;
    let store = PostgresStore::open(config, clock)
        .await
        .with_context(|| format!("opening the store in {}", store_description(args)))?;
    Ok(Arc::new(store))
}

/// Debug builds only (release builds never read it): `MINOOTS_TEST_PANIC_FIRING_AFTER=N`
/// makes the firing thread panic once it has popped N timers, so the end-to-end tests
/// can prove that a process whose firing died reports it and exits.
#[cfg(debug_assertions)]
fn arm_test_faults(kernel: &Kernel) -> anyhow::Result<()> {
    const VAR: &str = "MINOOTS_TEST_PANIC_FIRING_AFTER";
    if let Ok(text) = std::env::var(VAR) {
        let n: u64 = text
            .parse()
            .with_context(|| format!("{VAR} must be a whole number of timers, not {text:?}"))?;
        tracing::warn!(
            timers = n,
            "{VAR}: the firing thread will panic (a test fault)"
        );
        kernel.inject_fault(minoots_kernel::Fault::PanicFiringAfter(n));
    }
    Ok(())
}

/// What `/readyz` says about an in-process kernel.
pub fn kernel_readiness(kernel: &Kernel, stopping: &AtomicBool) -> Readiness {
    if let Some(reason) = kernel.failure() {
        Readiness::Failed(reason)
    } else if stopping.load(Ordering::Relaxed) {
        Readiness::Stopping
    } else if kernel.is_ready() {
        Readiness::Ready
    } else {
        Readiness::Starting
    }
}

/// Waits until the kernel is ready (bounded by `timeout`), or failed meanwhile.
pub async fn wait_ready_or_failed(kernel: &Kernel, timeout: Duration) {
    tokio::select! {
        _ = kernel.wait_ready(timeout) => {}
        _ = kernel.failed() => {}
    }
}

/// Logs a failure of the kernel at error level; the process then stops with an error.
pub fn log_failure(reason: &str) {
    tracing::error!(
        reason = %reason,
        "timers no longer fire: stopping with an error so that a supervisor restarts MINOOTS"
    );
}

pub async fn run(cmd: KernelCmdArgs) -> anyhow::Result<()> {
    let args = cmd.kernel;
    let started = std::time::Instant::now();
    let kernel = start_kernel(&args, "kernel").await?;
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
    let stopping = Arc::new(AtomicBool::new(false));
    let health_addr = {
        let (k1, k2) = (kernel.clone(), kernel.clone());
        let stopping = stopping.clone();
        crate::health::serve_probe(
            cmd.health_addr,
            Arc::new(move || kernel_readiness(&k1, &stopping)),
            Arc::new(move || {
                let k = k2.clone();
                Box::pin(async move { minoots_kernel::metrics::render_kernel_metrics(&k).await })
            }),
            async {
                let _ = health_stopped.await;
            },
        )
        .await?
    };
    wait_ready_or_failed(&kernel, Duration::from_secs(30)).await;
    tracing::info!(
        grpc = %addr,
        health = %health_addr,
        store = %store_description(&args),
        ready_ms = started.elapsed().as_millis() as u64,
        "MINOOTS kernel ready"
    );
    // One line on stdout for scripts and tests that wait for readiness.
    println!("minoots kernel ready on {addr}");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut failure = None;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        reason = kernel.failed() => {
            log_failure(&reason);
            failure = Some(reason);
        }
        r = &mut grpc => {
            // The server stopped by itself: that is a failure (e.g. refused to start).
            r.context("gRPC server task")??;
            anyhow::bail!("gRPC server stopped unexpectedly");
        }
    }
    // `/readyz` answers 503 (stopping, or failed with its reason) until the end.
    stopping.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(10), grpc)
        .await
        .is_err()
    {
        tracing::warn!("gRPC calls still open after 10 s; closing anyway");
    }
    match &failure {
        None => kernel.shutdown().await,
        Some(_) => {
            if tokio::time::timeout(FAILED_STOP_WAIT, kernel.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("the failed kernel did not stop within 10 s; exiting anyway");
            }
        }
    }
    let _ = health_stop.send(());
    if let Some(reason) = failure {
        anyhow::bail!("the kernel stopped firing timers: {reason}");
    }
    tracing::info!("MINOOTS kernel stopped");
    Ok(())
}
