//! `minoots orchestrator`: executes the deliveries of a kernel reached over gRPC, until
//! SIGTERM or SIGINT, then stops gracefully (no new leases, unstarted deliveries handed
//! back, started ones finished and reported).

use std::sync::Arc;
use std::time::Duration;

use minoots_kernel::KernelApi;
use minoots_kernel::grpc::GrpcKernelClient;
use minoots_orchestrator::executor::{Orchestrator, OrchestratorConfig, lease_owner};

use crate::actions::{ActionArgs, TargetArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct OrchestratorArgs {
    /// The kernel's gRPC address.
    #[arg(
        long,
        env = "MINOOTS_KERNEL_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub kernel_url: String,
    /// Bearer token for the kernel.
    #[arg(long, env = "MINOOTS_KERNEL_TOKEN", hide_env_values = true)]
    pub kernel_token: Option<String>,
    /// How long a delivery is leased; held leases are renewed every third of this, so
    /// after a SIGKILL the deliveries in flight run again elsewhere once it has passed.
    #[arg(long, env = "MINOOTS_LEASE_TTL_MS", default_value_t = 6_000)]
    pub lease_ttl_ms: u64,
    /// Deliveries executing at once.
    #[arg(long, env = "MINOOTS_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: u32,
    /// Webhook requests executing at once against one host (by name or address, without
    /// the port); at most `--max-in-flight`. Raise it for one busy destination that can
    /// take more: beyond it (and four times as many waiting), deliveries to that host are
    /// handed back and come due again 0.5–1 s later.
    #[arg(long, env = "MINOOTS_MAX_PER_HOST", default_value_t = 32)]
    pub max_per_host: u32,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long = "http-addr",
        env = "MINOOTS_ORCHESTRATOR_HTTP_ADDR",
        default_value = "127.0.0.1:9095"
    )]
    pub health_addr: std::net::SocketAddr,
    /// Demo mode: webhooks may reach loopback (as `minoots serve --demo` allows).
    #[arg(long, env = "MINOOTS_DEMO")]
    pub demo: bool,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub actions: ActionArgs,
}

pub async fn run(args: OrchestratorArgs) -> anyhow::Result<()> {
    let kernel: Arc<dyn KernelApi> = Arc::new(
        GrpcKernelClient::connect_lazy(&args.kernel_url, args.kernel_token.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let mut config = OrchestratorConfig::new(lease_owner("orch"));
    config.lease_ttl = Duration::from_millis(args.lease_ttl_ms.clamp(1_000, 3_600_000));
    config.max_in_flight = args.max_in_flight.clamp(1, 4_096);
    config.max_per_host = args.max_per_host.clamp(1, config.max_in_flight) as usize;
    config.targets = args.targets.policy()?;
    if args.demo {
        config
            .targets
            .allowed_cidrs
            .extend(crate::actions::loopback_cidrs()?);
    }
    config.commands = args.actions.commands()?;
    config.files = args.actions.files()?;
    let orchestrator = Orchestrator::new(kernel, config)?;
    let (health_stop, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = orchestrator.metrics().clone();
    let health_addr = crate::health::serve(
        args.health_addr,
        Arc::new(|| true),
        Arc::new(move || {
            let m = metrics.clone();
            Box::pin(async move { m.render() })
        }),
        async {
            let _ = health_stopped.await;
        },
    )
    .await?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(orchestrator.run(stop_rx));
    tracing::info!(kernel = %args.kernel_url, health = %health_addr, "MINOOTS orchestrator running");
    println!("minoots orchestrator running against {}", args.kernel_url);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing deliveries in progress"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing deliveries in progress"),
    }
    let _ = stop.send(true);
    running.await?;
    let _ = health_stop.send(());
    tracing::info!("MINOOTS orchestrator stopped");
    Ok(())
}
