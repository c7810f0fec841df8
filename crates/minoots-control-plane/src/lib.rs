//! The MINOOTS control plane: the public REST API on port 3000.
//!
//! It owns HTTP concerns only — API keys, roles, tiers and rate limits, request parsing,
//! problem+json errors, SSE, long-poll waits, OpenAPI, Swagger UI and metrics — and holds
//! no state of its own: timers, tenants, keys, secrets and usage live in the kernel's
//! store, reached through [`KernelApi`] (in-process or gRPC; the same code either way).
//! The one thing in its memory is the rate limiters' buckets.
//!
//! Every route is declared once in [`routes::table`], with the access it needs and its
//! OpenAPI description, so the router and `/openapi.json` cannot disagree.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod body;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod ratelimit;
pub mod routes;
pub mod schedules;
pub mod session;
pub mod timers;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use minoots_kernel_api::{KernelApi, KernelResult, LocalKernel};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use admin::{Bootstrap, BootstrapOutcome, bootstrap};
pub use config::{ControlPlaneConfig, TierLimits};
pub use error::ControlPlaneError;
pub use problem::{ApiError, ApiResult};

/// Everything a handler needs; one reference count to clone (the router clones it for
/// every request).
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The exposition of a part of the process ([`minoots_kernel_api::metrics::encode_part`]:
/// each metric with its `# HELP` and `# TYPE`, no `# EOF`).
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

pub struct AppInner {
    pub kernel: Arc<dyn KernelApi>,
    pub config: Arc<ControlPlaneConfig>,
    /// Requests per minute per key.
    pub rate: Arc<ratelimit::RateLimiter>,
    /// Creates per minute per key.
    pub creates: Arc<ratelimit::RateLimiter>,
    /// Failed authentications per client address.
    pub failed_auth: Arc<ratelimit::RateLimiter>,
    pub metrics: Arc<metrics::HttpMetrics>,
    /// The kernel when it runs in this process: `/readyz` asks whether it still fires
    /// timers, and its counters and store gauges are rendered at `/metrics` too.
    pub local_kernel: Option<Arc<dyn LocalKernel>>,
    /// More Prometheus text for `/metrics`, rendered after the control plane's own and the
    /// kernel's: parts of this process that are neither (`minoots serve`'s orchestrator).
    pub more_metrics: Vec<MetricsText>,
    /// Permits for concurrent SSE streams.
    pub streams: Arc<Semaphore>,
    /// Where every wall-clock reading of the REST API comes from (tier horizons, quota
    /// `Retry-After`, key expiry, secret grace), so each time rule can be tested on a
    /// manual clock. Rate limits count on the monotonic clock instead.
    pub clock: Arc<dyn minoots_core::Clock>,
    /// Billing with Stripe, when the operator configured it.
    pub billing: Option<Arc<billing::Billing>>,
}

impl AppState {
    pub fn new(
        kernel: Arc<dyn KernelApi>,
        config: ControlPlaneConfig,
        local_kernel: Option<Arc<dyn LocalKernel>>,
    ) -> Result<Self, ControlPlaneError> {
        Self::with_clock(
            kernel,
            config,
            local_kernel,
            Arc::new(minoots_core::SystemClock),
        )
    }

    /// [`AppState::new`] reading the wall clock from `clock`.
    pub fn with_clock(
        kernel: Arc<dyn KernelApi>,
        config: ControlPlaneConfig,
        local_kernel: Option<Arc<dyn LocalKernel>>,
        clock: Arc<dyn minoots_core::Clock>,
    ) -> Result<Self, ControlPlaneError> {
        config.check()?;
        let billing = match &config.billing {
            Some(b) => Some(Arc::new(billing::Billing::new(b.clone())?)),
            None => None,
        };
        Ok(Self(Arc::new(AppInner {
            billing,
            kernel,
            streams: Arc::new(Semaphore::new(config.max_event_streams)),
            config: Arc::new(config),
            rate: Arc::default(),
            creates: Arc::default(),
            failed_auth: Arc::default(),
            metrics: Arc::default(),
            local_kernel,
            more_metrics: Vec::new(),
            clock,
        })))
    }

    /// Adds `render` to what `/metrics` shows. Only before the state is shared (cloned).
    pub fn with_metrics(mut self, render: MetricsText) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("metrics are added before the state is shared")
            .more_metrics
            .push(render);
        self
    }

    /// Awaits a kernel call, bounded by the configured timeout (503 when it passes).
    pub async fn kernel_call<T>(
        &self,
        call: impl Future<Output = KernelResult<T>>,
    ) -> ApiResult<T> {
        match tokio::time::timeout(self.config.kernel_timeout, call).await {
            Ok(r) => r.map_err(|e| ApiError::from_kernel(e, self.clock.now_us())),
            Err(_) => Err(ApiError::unavailable(
                format!(
                    "the kernel did not answer within {} ms; retry shortly",
                    self.config.kernel_timeout.as_millis()
                ),
                1,
            )),
        }
    }
}

/// The whole REST API as an axum router.
pub fn router(state: AppState) -> Router {
    routes::build(state)
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in progress
/// finish (SSE streams and waits end with the server). Each request carries its client's
/// address ([`auth::ClientAddr`]) for the limit on failed authentications.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = state.config.max_connections;
    axum::serve(
        listener::LimitedListener::new(listener, max),
        router(state).into_make_service_with_connect_info::<auth::ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
