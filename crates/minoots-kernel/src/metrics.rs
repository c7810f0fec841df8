//! Counters and the firing-lateness histogram, kept in atomics so the firing thread never
//! blocks on them, and their Prometheus text ([`render_kernel_metrics`]), which the
//! control plane's `/metrics` shows for a kernel in its process and `minoots kernel` shows
//! at its own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use minoots_kernel_api::metrics::{LATENCY_BOUNDS_US, LatencyHistogram};

use crate::Kernel;

/// What the kernel counts.
#[derive(Default)]
pub struct KernelMetrics {
    /// Fired − due, in microseconds, measured by the firing thread as it fires.
    pub firing_lateness: LatencyHistogram,
    pub timers_scheduled: AtomicU64,
    pub timers_fired: AtomicU64,
    pub timers_cancelled: AtomicU64,
    /// Fire transactions that failed and were retried.
    pub fire_errors: AtomicU64,
    pub leases_rescued: AtomicU64,
    /// Leases an executor asked to renew but no longer held (rescued or fenced meanwhile).
    pub leases_lost: AtomicU64,
    /// Leases ended at start-up because the executor holding them was a previous process.
    pub leases_handed_back: AtomicU64,
    pub events_pruned: AtomicU64,
    pub deliveries_leased: AtomicU64,
    pub attempts_reported: AtomicU64,
    /// Attempts by outcome: succeeded, retryable, permanent.
    pub attempts_by_outcome: [AtomicU64; 3],
    /// Deliveries that ended dead (retries exhausted or a permanent failure).
    pub deliveries_dead: AtomicU64,
    /// API key lookups by hash that reached the store (authentications answered by
    /// neither the cache of known keys nor that of unknown ones).
    pub store_key_lookups: AtomicU64,
    /// Fires the store refused because the timer's shard belongs to another kernel now.
    pub fires_fenced: AtomicU64,
    /// Scheduled timers changed (`PATCH`, fire now).
    pub timers_updated: AtomicU64,
    /// Fires the store refused because the timer had been moved later since the window
    /// read it (it fires at its new time).
    pub fires_not_due: AtomicU64,
}

impl KernelMetrics {
    /// Counts one reported attempt and what it did to its delivery.
    pub fn record_attempt(
        &self,
        outcome: minoots_core::AttemptOutcome,
        delivery: minoots_core::DeliveryStatus,
    ) {
        Self::inc(&self.attempts_reported, 1);
        let i = match outcome {
            minoots_core::AttemptOutcome::Succeeded => 0,
            minoots_core::AttemptOutcome::Retryable => 1,
            minoots_core::AttemptOutcome::Permanent => 2,
        };
        Self::inc(&self.attempts_by_outcome[i], 1);
        if delivery == minoots_core::DeliveryStatus::Dead {
            Self::inc(&self.deliveries_dead, 1);
        }
    }

    pub fn inc(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The kernel's counters, firing-lateness histogram and store gauges as Prometheus text
/// (for the control plane's `/metrics` and `minoots kernel`'s own).
pub async fn render_kernel_metrics(kernel: &Kernel) -> String {
    let mut out = String::new();
    {
        render_kernel(&mut out, kernel.metrics());
        if let Some(cluster) = kernel.cluster() {
            let _ = writeln!(
                out,
                "# HELP minoots_shards_held Shards of timers this kernel holds (several kernels on one PostgreSQL database).\n# TYPE minoots_shards_held gauge\nminoots_shards_held {}",
                cluster.shards_held()
            );
        }
        if let Ok(stats) = kernel.store().stats().await {
            let _ = writeln!(
                out,
                "# HELP minoots_timers_pending Timers scheduled and not yet fired.\n# TYPE minoots_timers_pending gauge\nminoots_timers_pending {}",
                stats.scheduled_timers
            );
            let _ = writeln!(
                out,
                "# HELP minoots_deliveries_pending Deliveries waiting for an attempt.\n# TYPE minoots_deliveries_pending gauge\nminoots_deliveries_pending {}",
                stats.pending_deliveries
            );
            let _ = writeln!(
                out,
                "# HELP minoots_deliveries_in_flight Deliveries leased to an executor.\n# TYPE minoots_deliveries_in_flight gauge\nminoots_deliveries_in_flight {}",
                stats.in_flight_deliveries
            );
        }
    }
    out
}

fn render_kernel(out: &mut String, m: &KernelMetrics) {
    let g = KernelMetrics::get;
    let counters: [(&str, &str, &AtomicU64); 11] = [
        (
            "minoots_timers_created_total",
            "Timers scheduled.",
            &m.timers_scheduled,
        ),
        (
            "minoots_timers_fired_total",
            "Timers fired.",
            &m.timers_fired,
        ),
        (
            "minoots_timers_cancelled_total",
            "Timers cancelled.",
            &m.timers_cancelled,
        ),
        (
            "minoots_leases_rescued_total",
            "Expired leases returned to pending.",
            &m.leases_rescued,
        ),
        (
            "minoots_leases_lost_total",
            "Leases an executor tried to renew after losing them (its attempts were stopped).",
            &m.leases_lost,
        ),
        (
            "minoots_leases_handed_back_total",
            "Leases of a previous process's executor ended at start-up.",
            &m.leases_handed_back,
        ),
        (
            "minoots_deliveries_dead_total",
            "Deliveries that exhausted their retries or failed permanently.",
            &m.deliveries_dead,
        ),
        (
            "minoots_store_key_lookups_total",
            "API key lookups that reached the store (not answered by the kernel's key caches).",
            &m.store_key_lookups,
        ),
        (
            "minoots_fires_fenced_total",
            "Timers this kernel did not fire because their shard belongs to another kernel now.",
            &m.fires_fenced,
        ),
        (
            "minoots_timers_updated_total",
            "Scheduled timers changed (new fire time, actions, labels or metadata; fire now).",
            &m.timers_updated,
        ),
        (
            "minoots_fires_not_due_total",
            "Fires of window entries refused because the timer was moved later meanwhile (it fires at its new time).",
            &m.fires_not_due,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            g(value)
        );
    }
    out.push_str("# HELP minoots_delivery_attempts_total Delivery attempts by outcome.\n# TYPE minoots_delivery_attempts_total counter\n");
    for (i, outcome) in ["succeeded", "retryable", "permanent"].iter().enumerate() {
        let _ = writeln!(
            out,
            "minoots_delivery_attempts_total{{outcome=\"{outcome}\"}} {}",
            g(&m.attempts_by_outcome[i])
        );
    }
    out.push_str("# HELP minoots_firing_lateness_seconds Fired minus due time of each timer.\n# TYPE minoots_firing_lateness_seconds histogram\n");
    m.firing_lateness.write_prometheus(
        out,
        "minoots_firing_lateness_seconds",
        "",
        &LATENCY_BOUNDS_US,
    );
}
