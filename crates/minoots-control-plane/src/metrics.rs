//! What the control plane counts, shown at `/metrics`: requests by route, method and
//! status with a latency histogram per route, rate-limited requests by quota and tier, the
//! process's resident memory, and — when the kernel runs in this process — its timers,
//! deliveries, firing lateness and store gauges, as the kernel shows them
//! ([`minoots_kernel_api::LocalKernel::render_metrics`]), and what else the process added
//! ([`crate::AppState::with_metrics`]: `minoots serve`'s orchestrator). `prometheus_client`
//! writes the text; each part is a registry, and the answer ends with one `# EOF`.
//! Routes are the route table's patterns (`/timers/{id}`), never raw paths, and tiers are
//! the configured tiers' names (a tenant of another tier is refused before any limit), so
//! the number of series is bounded by the route table and the configuration. Tenant ids
//! are never labels: they come from users without a bound.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use minoots_kernel_api::metrics::{
    HistogramMetric, LATENCY_BOUNDS_US, encode_part, finish, write_process_metrics,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::AppState;

/// The labels of `minoots_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    status: u16,
}

/// The label of `minoots_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

/// The labels of `minoots_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    quota: &'static str,
    tier: String,
}

fn latency_metric() -> HistogramMetric {
    HistogramMetric::seconds(Arc::default(), &LATENCY_BOUNDS_US)
}

pub struct HttpMetrics {
    /// Each route pattern once, so that counting a request allocates nothing: the route
    /// table's patterns and `unmatched`, so bounded by the route table.
    routes: RwLock<HashMap<String, Arc<str>>>,
    /// (route, method, status) → requests.
    requests: Family<RequestLabels, Counter>,
    /// route → latency.
    latency: Family<RouteLabels, HistogramMetric, fn() -> HistogramMetric>,
    /// (quota name, tier) → refused requests.
    limited: Family<LimitLabels, Counter>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            routes: RwLock::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_metric),
            limited: Family::default(),
        }
    }
}

impl HttpMetrics {
    /// The shared name of `route`.
    fn route(&self, route: &str) -> Arc<str> {
        if let Some(r) = self.routes.read().expect("poisoned").get(route) {
            return r.clone();
        }
        self.routes
            .write()
            .expect("poisoned")
            .entry(route.to_string())
            .or_insert_with(|| Arc::from(route))
            .clone()
    }

    pub fn record(&self, route: &str, method: &'static str, status: u16, micros: u64) {
        let route = self.route(route);
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .histogram()
            .record(micros as i64);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// Counts a request refused by `quota` for a tenant of `tier` ([`NO_TIER`] when no
    /// tenant is known, as for failed authentications).
    pub fn rate_limited(&self, quota: &'static str, tier: &str) {
        self.limited
            .get_or_create(&LimitLabels {
                quota,
                tier: tier.to_string(),
            })
            .inc();
    }

    /// Shows the three families in `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "minoots_http_requests",
            "HTTP requests by route, method and status.",
            self.requests.clone(),
        );
        registry.register(
            "minoots_http_request_duration_seconds",
            "HTTP request latency by route.",
            self.latency.clone(),
        );
        registry.register(
            "minoots_rate_limited",
            "Requests refused by a per-minute limit, by quota and the tenant's tier.",
            self.limited.clone(),
        );
    }
}

/// Global middleware: times every request and counts it under its route pattern.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The pattern is shared (an `Arc` inside), so keeping it costs no allocation.
    let route = req.extensions().get::<MatchedPath>().cloned();
    // Known methods only, so a client inventing methods cannot add series without bound.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.record(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        resp.status().as_u16(),
        start.elapsed().as_micros() as u64,
    );
    resp
}

/// The `tier` label of refusals made before any tenant is known.
pub const NO_TIER: &str = "none";

/// The exposition of everything above, with its closing `# EOF`.
pub async fn render(state: &AppState) -> String {
    let mut registry = Registry::default();
    state.metrics.register(&mut registry);
    let mut out = String::new();
    if let Some(b) = &state.billing {
        b.counters.register(&mut registry);
    }
    encode_part(&mut out, &registry);
    write_process_metrics(&mut out);
    if let Some(kernel) = &state.local_kernel {
        out.push_str(&kernel.render_metrics().await);
    }
    for more in &state.more_metrics {
        out.push_str(&more());
    }
    finish(&mut out);
    out
}
