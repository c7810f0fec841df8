//! What the control plane counts, rendered as Prometheus text at `/metrics`: requests by
//! route, method and status with a latency histogram per route, rate-limited requests by
//! quota and tier, the process's resident memory, and — when the kernel runs in this
//! process — its timers, deliveries, firing lateness and store gauges, as the kernel
//! renders them ([`minoots_kernel_api::LocalKernel::render_metrics`]), and what else the
//! process added ([`crate::AppState::with_metrics`]: `minoots serve`'s orchestrator).
//! Routes are the route table's patterns (`/timers/{id}`), never raw paths, and tiers are
//! the configured tiers' names (a tenant of another tier is refused before any limit), so
//! the number of series is bounded by the route table and the configuration. Tenant ids
//! are never labels: they come from users without a bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use minoots_kernel_api::metrics::{LATENCY_BOUNDS_US, LatencyHistogram};

use crate::AppState;

#[derive(Default)]
pub struct HttpMetrics {
    /// (route, method, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route → latency.
    latency: Mutex<BTreeMap<String, Arc<LatencyHistogram>>>,
    /// (quota name, tier) → refused requests.
    limited: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl HttpMetrics {
    pub fn record(&self, route: &str, method: &str, status: u16, micros: u64) {
        *self
            .requests
            .lock()
            .expect("poisoned")
            .entry((route.to_string(), method.to_string(), status))
            .or_insert(0) += 1;
        let h = self
            .latency
            .lock()
            .expect("poisoned")
            .entry(route.to_string())
            .or_default()
            .clone();
        h.record(micros as i64);
    }

    /// Counts a request refused by `quota` for a tenant of `tier` ([`NO_TIER`] when no
    /// tenant is known, as for failed authentications).
    pub fn rate_limited(&self, quota: &'static str, tier: &str) {
        let mut limited = self.limited.lock().expect("poisoned");
        match limited.get_mut(&(quota, tier.to_string())) {
            Some(n) => *n += 1,
            None => {
                limited.insert((quota, tier.to_string()), 1);
            }
        }
    }
}

/// Global middleware: times every request and counts it under its route pattern.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
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
        &route,
        method,
        resp.status().as_u16(),
        start.elapsed().as_micros() as u64,
    );
    resp
}

/// The `tier` label of refusals made before any tenant is known.
pub const NO_TIER: &str = "none";

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of everything above.
pub async fn render(state: &AppState) -> String {
    let mut out = String::new();
    out.push_str("# HELP minoots_http_requests_total HTTP requests by route, method and status.\n# TYPE minoots_http_requests_total counter\n");
    for ((route, method, status), n) in state.metrics.requests.lock().expect("poisoned").iter() {
        let _ = writeln!(
            out,
            "minoots_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
            escape(route)
        );
    }
    out.push_str("# HELP minoots_http_request_duration_seconds HTTP request latency by route.\n# TYPE minoots_http_request_duration_seconds histogram\n");
    let latency: Vec<_> = state
        .metrics
        .latency
        .lock()
        .expect("poisoned")
        .iter()
        .map(|(r, h)| (r.clone(), h.clone()))
        .collect();
    for (route, h) in latency {
        let labels = format!("route=\"{}\"", escape(&route));
        h.write_prometheus(
            &mut out,
            "minoots_http_request_duration_seconds",
            &labels,
            &LATENCY_BOUNDS_US,
        );
    }
    out.push_str("# HELP minoots_rate_limited_total Requests refused by a per-minute limit, by quota and the tenant's tier.\n# TYPE minoots_rate_limited_total counter\n");
    for ((quota, tier), n) in state.metrics.limited.lock().expect("poisoned").iter() {
        let _ = writeln!(
            out,
            "minoots_rate_limited_total{{quota=\"{quota}\",tier=\"{}\"}} {n}",
            escape(tier)
        );
    }
    if let Some(b) = &state.billing {
        b.counters.render(&mut out);
    }
    minoots_kernel_api::metrics::write_process_metrics(&mut out);
    if let Some(kernel) = &state.local_kernel {
        out.push_str(&kernel.render_metrics().await);
    }
    for more in &state.more_metrics {
        out.push_str(&more());
    }
    out
}
