//! `minoots control-plane` (the REST API against a kernel reached over gRPC) and `minoots
//! serve` (kernel, orchestrator and REST API in one process on the embedded store).
//! Both stop on SIGTERM or SIGINT: no new requests, work in progress finished or handed
//! back, store closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use minoots_control_plane::{AppState, Bootstrap, ControlPlaneConfig, bootstrap};
use minoots_kernel::KernelApi;
use minoots_kernel::grpc::{GrpcKernelClient, GrpcServerConfig};
use minoots_orchestrator::executor::{Orchestrator, OrchestratorConfig, lease_owner};
use tokio::net::TcpListener;

use crate::KernelArgs;
use crate::actions::TargetArgs;

#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address of the REST API.
    #[arg(long, env = "MINOOTS_HTTP_ADDR", default_value = "127.0.0.1:3000")]
    pub http_addr: SocketAddr,
    /// The bootstrap admin key (at least 32 characters). Without it, the first start on an
    /// empty store creates one and prints it once.
    #[arg(long, env = "MINOOTS_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Demo mode: tenant `test` with key `mnt_demo_key_free` (free tier), and webhooks
    /// may reach loopback. Never for production.
    #[arg(long, env = "MINOOTS_DEMO")]
    pub demo: bool,
    /// Tiers as JSON (`{"free": {"requestsPerMinute": 60, ...}}`), replacing or adding to
    /// the built-in ones; usually from `[tiers.NAME]` tables of the configuration file.
    #[arg(long, env = "MINOOTS_TIERS")]
    pub tiers: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "MINOOTS_BODY_LIMIT_BYTES", default_value_t = minoots_control_plane::config::DEFAULT_BODY_LIMIT_BYTES)]
    pub body_limit_bytes: usize,
    /// How long a dashboard session lasts (1m to 7d), like 12h; never past its key's expiry.
    #[arg(long, env = "MINOOTS_UI_SESSION_TTL", default_value = "12h")]
    pub ui_session_ttl: String,
    /// The API is served over HTTPS (a proxy terminates TLS): the dashboard's session
    /// cookie is marked Secure and cookie writes must come from an https:// origin.
    #[arg(long, env = "MINOOTS_SECURE_COOKIES")]
    pub secure_cookies: bool,
    #[command(flatten)]
    pub mcp: crate::mcp_cmd::McpHttpArgs,
    /// Boxed: the billing settings would make every subcommand's argument enum as large
    /// as these.
    #[command(flatten)]
    pub billing: Box<BillingArgs>,
}

/// Billing with Stripe; off unless a secret key is set (docs/operations.md, "Billing with Stripe").
#[derive(clap::Args, Debug, Clone)]
pub struct BillingArgs {
    /// Stripe secret key (sk_... or rk_...): turns billing on.
    #[arg(long, env = "MINOOTS_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe webhook signing secrets (whsec_...), comma-separated: any of them verifies
    /// an event, so a rotation loses nothing.
    #[arg(long, env = "MINOOTS_STRIPE_WEBHOOK_SECRETS", hide_env_values = true)]
    pub stripe_webhook_secrets: Option<String>,
    /// Stripe price of the pro tier (price_...).
    #[arg(long, env = "MINOOTS_STRIPE_PRICE_PRO")]
    pub stripe_price_pro: Option<String>,
    /// Stripe price of the team tier.
    #[arg(long, env = "MINOOTS_STRIPE_PRICE_TEAM")]
    pub stripe_price_team: Option<String>,
    /// Stripe price of the enterprise tier.
    #[arg(long, env = "MINOOTS_STRIPE_PRICE_ENTERPRISE")]
    pub stripe_price_enterprise: Option<String>,
    /// Days a tenant keeps its paid tier after a failed payment (fractions allowed).
    #[arg(long, env = "MINOOTS_BILLING_GRACE_DAYS", default_value_t = minoots_control_plane::billing::DEFAULT_GRACE_DAYS)]
    pub billing_grace_days: f64,
    /// Stripe's API base URL.
    #[arg(long, env = "MINOOTS_STRIPE_API_BASE", default_value = minoots_control_plane::billing::DEFAULT_STRIPE_API_BASE)]
    pub stripe_api_base: String,
    /// Where Stripe sends tenants back after checkout and from the customer portal.
    #[arg(long, env = "MINOOTS_BILLING_RETURN_URL", default_value = minoots_control_plane::billing::DEFAULT_RETURN_URL)]
    pub billing_return_url: String,
    /// How often closed usage buckets are looked for and sent to Stripe, like 1m.
    #[arg(long, env = "MINOOTS_BILLING_SEND_INTERVAL", default_value = "1m")]
    pub billing_send_interval: String,
}

impl BillingArgs {
    /// The billing settings, or `None` without a secret key.
    fn config(&self) -> anyhow::Result<Option<minoots_control_plane::billing::BillingConfig>> {
        use minoots_control_plane::billing::BillingConfig;
        let Some(secret_key) = self.stripe_secret_key.clone().filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let list = |s: &Option<String>| -> Vec<String> {
            s.as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut prices = std::collections::BTreeMap::new();
        for (tier, price) in [
            ("pro", &self.stripe_price_pro),
            ("team", &self.stripe_price_team),
            ("enterprise", &self.stripe_price_enterprise),
        ] {
            if let Some(p) = price.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                prices.insert(tier.to_string(), p.to_string());
            }
        }
        let interval_ms = minoots_core::duration::parse_duration_ms(&self.billing_send_interval)
            .map_err(|e| {
                anyhow::anyhow!("--billing-send-interval (MINOOTS_BILLING_SEND_INTERVAL): {e}")
            })?;
        Ok(Some(BillingConfig {
            secret_key,
            webhook_secrets: list(&self.stripe_webhook_secrets),
            prices,
            grace: BillingConfig::grace_of_days(self.billing_grace_days)?,
            api_base: self.stripe_api_base.clone(),
            return_url: self.billing_return_url.clone(),
            send_interval: Duration::from_millis(interval_ms.max(0) as u64),
        }))
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ControlPlaneArgs {
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
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Deliveries executing at once.
    #[arg(long, env = "MINOOTS_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: u32,
    /// Webhook requests executing at once against one host (by name or address, without
    /// the port); at most `--max-in-flight`. Raise it for one busy destination that can
    /// take more: beyond it (and four times as many waiting), deliveries to that host are
    /// handed back and come due again 0.5–1 s later.
    #[arg(long, env = "MINOOTS_MAX_PER_HOST", default_value_t = 32)]
    pub max_per_host: u32,
    /// How long a delivery is leased; the executor renews the leases it holds every third
    /// of this while it works. After a crash of another executor, what it had in flight
    /// runs again once this has passed (`serve`'s own executor hands back at once on
    /// restart).
    #[arg(long, env = "MINOOTS_LEASE_TTL_MS", default_value_t = 6_000)]
    pub lease_ttl_ms: u64,
}

/// On a graceful stop, how long `serve` waits for leased deliveries to be handed back
/// before it closes the store.
const LEASES_BACK_WAIT: Duration = Duration::from_secs(5);

fn config_of(http: &HttpArgs) -> anyhow::Result<ControlPlaneConfig> {
    let mut config = ControlPlaneConfig {
        body_limit_bytes: http.body_limit_bytes,
        demo: http.demo,
        secure_cookies: http.secure_cookies,
        billing: http.billing.config()?,
        ui_session_ttl: Duration::from_millis(
            minoots_core::duration::parse_duration_ms(&http.ui_session_ttl)
                .map_err(|e| anyhow::anyhow!("--ui-session-ttl (MINOOTS_UI_SESSION_TTL): {e}"))?
                .max(0) as u64,
        ),
        ..ControlPlaneConfig::default()
    };
    if let Some(json) = http.tiers.as_deref().filter(|t| !t.trim().is_empty()) {
        let tiers: std::collections::BTreeMap<String, minoots_control_plane::TierLimits> =
            serde_json::from_str(json)
                .context("reading the tiers (MINOOTS_TIERS / [tiers.NAME])")?;
        config.tiers.extend(tiers);
    }
    config.check()?;
    Ok(config)
}

/// Runs bootstrap and tells the operator what they must know.
async fn prepare(kernel: &dyn KernelApi, http: &HttpArgs) -> anyhow::Result<()> {
    let outcome = bootstrap(
        kernel,
        Bootstrap {
            admin_key: http.admin_key.clone(),
            demo: http.demo,
        },
    )
    .await
    .context("preparing tenants and keys")?;
    if let Some(key) = outcome.generated_admin_key {
        // Shown once: only its hash is stored.
        println!("MINOOTS created an admin key (shown once; store it safely):\n  {key}");
    }
    if http.demo {
        tracing::warn!(
            "DEMO MODE: tenant \"test\" with the public key mnt_demo_key_free, and webhooks may reach loopback; never expose this server"
        );
        println!(
            "DEMO MODE: key mnt_demo_key_free (tenant \"test\"); webhooks may reach loopback. Not for production."
        );
    }
    Ok(())
}

/// Serves the REST API with the MCP endpoint (`/mcp`) beside it until `shutdown`
/// completes; MCP sessions and streams end then too.
fn serve_http(
    state: AppState,
    listener: TcpListener,
    http: &HttpArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
    let api = minoots_control_plane::router(state.clone());
    let (mcp, mcp_stop) = minoots_mcp::http::router(state.clone(), api.clone(), &http.mcp.config());
    let app = mcp.merge(api);
    let listener = minoots_control_plane::listener::LimitedListener::new(
        listener,
        state.config.max_connections,
    );
    async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<minoots_control_plane::auth::ClientAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            mcp_stop.stop();
        })
        .await
    }
}

/// Registers for SIGTERM and SIGINT at once (before readiness is announced, so a
/// supervisor's early SIGTERM stops the server gracefully instead of killing it) and
/// returns a future that completes at the first of them.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}

pub async fn run_control_plane(args: ControlPlaneArgs) -> anyhow::Result<()> {
    let kernel: Arc<dyn KernelApi> = Arc::new(
        GrpcKernelClient::connect_lazy(&args.kernel_url, args.kernel_token.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    // The kernel may still be starting: retry the bootstrap for a while.
    let mut attempt = 0;
    loop {
        match prepare(kernel.as_ref(), &args.http).await {
            Ok(()) => break,
            Err(e) if attempt < 30 => {
                attempt += 1;
                tracing::warn!(error = %e, "kernel not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let state = AppState::new(kernel, config_of(&args.http)?, None)?;
    let (billing_stop, billing_stopped) = tokio::sync::watch::channel(false);
    let billing = tokio::spawn(minoots_control_plane::billing::meter::run(
        state.clone(),
        billing_stopped,
    ));
    let listener = TcpListener::bind(args.http.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", args.http.http_addr))?;
    let addr = listener.local_addr()?;
    let stop = stop_signal()?;
    tracing::info!(http = %addr, kernel = %args.kernel_url, "MINOOTS control plane ready");
    println!("minoots control plane ready on http://{addr}");
    serve_http(state, listener, &args.http, stop).await?;
    // A pass cut short sends nothing twice: its rows are sent again under the same
    // identifiers, which Stripe counts once.
    let _ = billing_stop.send(true);
    billing.abort();
    tracing::info!("MINOOTS control plane stopped");
    Ok(())
}

/// The first part of the lease owner of `serve`'s embedded executor; owners of earlier
/// versions (`serve-PID`) start with it too.
const SERVE_LEASE_OWNER_KIND: &str = "serve";

pub async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let kernel = crate::kernel_cmd::start_kernel(&args.kernel, SERVE_LEASE_OWNER_KIND).await?;
    let api: Arc<dyn KernelApi> = kernel.clone();
    prepare(api.as_ref(), &args.http).await?;

    // gRPC, for orchestrators and control planes in other processes.
    let grpc_listener = TcpListener::bind(args.kernel.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {}", args.kernel.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let (grpc_stop, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let grpc = tokio::spawn(minoots_kernel::grpc::serve(
        api.clone(),
        grpc_listener,
        GrpcServerConfig {
            token: args.kernel.kernel_token.clone(),
        },
        async {
            let _ = grpc_stopped.await;
        },
    ));

    // The orchestrator, through the in-process kernel.
    let mut targets = args.targets.policy()?;
    if args.http.demo {
        targets
            .allowed_cidrs
            .extend(crate::actions::loopback_cidrs()?);
    }
    // The embedded executor of an earlier process on this store is gone (the data
    // directory's lock proves it): what it had in flight is due again now, not when its
    // leases expire. Leases of orchestrators in other processes are theirs, and stay. On
    // PostgreSQL, shared with other kernels, nothing proves it and nothing is handed back.
    kernel
        .hand_back_leases_of(SERVE_LEASE_OWNER_KIND)
        .await
        .context("handing back the leases of the previous process")?;
    let mut ocfg = OrchestratorConfig::new(lease_owner(SERVE_LEASE_OWNER_KIND));
    ocfg.max_in_flight = args.max_in_flight.clamp(1, 4_096);
    ocfg.max_per_host = args.max_per_host.clamp(1, ocfg.max_in_flight) as usize;
    ocfg.lease_ttl = Duration::from_millis(args.lease_ttl_ms.clamp(1_000, 3_600_000));
    ocfg.targets = targets;
    ocfg.commands = args.kernel.actions.commands()?;
    ocfg.files = args.kernel.actions.files()?;
    let orchestrator = Orchestrator::new(api.clone(), ocfg)?;
    let orch_metrics = orchestrator.metrics().clone();
    let (orch_stop, orch_stop_rx) = tokio::sync::watch::channel(false);
    let orch = tokio::spawn(orchestrator.run(orch_stop_rx));

    // The REST API; its `/metrics` shows the kernel's and the orchestrator's too.
    let state = AppState::new(api, config_of(&args.http)?, Some(kernel.clone()))?
        .with_metrics(Arc::new(move || orch_metrics.render()));
    let listener = TcpListener::bind(args.http.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", args.http.http_addr))?;
    let http_addr = listener.local_addr()?;
    let (billing_stop, billing_stopped) = tokio::sync::watch::channel(false);
    let billing = tokio::spawn(minoots_control_plane::billing::meter::run(
        state.clone(),
        billing_stopped,
    ));
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(serve_http(state, listener, &args.http, async {
        let _ = http_stopped.await;
    }));
    crate::kernel_cmd::wait_ready_or_failed(&kernel, Duration::from_secs(30)).await;
    let stop = stop_signal()?;
    tracing::info!(
        http = %http_addr,
        grpc = %grpc_addr,
        store = %crate::kernel_cmd::store_description(&args.kernel),
        ready_ms = started.elapsed().as_millis() as u64,
        "MINOOTS ready"
    );
    println!("minoots ready on http://{http_addr} (gRPC {grpc_addr})");

    // A kernel whose scheduler died stops the process with an error (after the same
    // graceful stop), so that its supervisor restarts it; `/readyz` says why meanwhile.
    let failure = tokio::select! {
        _ = stop => None,
        reason = kernel.failed() => {
            crate::kernel_cmd::log_failure(&reason);
            Some(reason)
        }
    };
    // Stop taking requests, let deliveries in progress finish (or hand them back), then
    // stop the kernel and close the store.
    let _ = http_stop.send(());
    // A pass cut short sends nothing twice: its rows are sent again under the same
    // identifiers, which Stripe counts once.
    let _ = billing_stop.send(true);
    billing.abort();
    let _ = orch_stop.send(true);
    let _ = orch.await;
    let _ = grpc_stop.send(());
    // Long-lived streams (SSE, waits, leases) would hold the servers open: at most 5 s.
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), grpc).await;
    // A lease session that was committing a claim when the orchestrator left hands that
    // claim back on its own: wait (bounded) for no lease to be left before closing the
    // store, or those deliveries would wait for their leases to expire after a restart.
    // Orchestrators of other processes may hold leases too; they only cost the bound.
    let leases_back = tokio::time::Instant::now() + LEASES_BACK_WAIT;
    while tokio::time::Instant::now() < leases_back
        && kernel
            .store()
            .stats()
            .await
            .is_ok_and(|s| s.in_flight_deliveries > 0)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kernel.shutdown().await;
    if let Some(reason) = failure {
        anyhow::bail!("the kernel stopped firing timers: {reason}");
    }
    tracing::info!("MINOOTS stopped");
    Ok(())
}
