//! Counters and the firing-lateness histogram, kept in atomics so the firing thread never
//! blocks on them, and their Prometheus text ([`render_kernel_metrics`]), which the
//! control plane's `/metrics` shows for a kernel in its process and `minoots kernel` shows
//! at its own. The alert rules (`deploy/prometheus/alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/minoots.json`) read these names, and a test checks that each name they
//! use is exported: rename one here and there together.
//!
//! A scrape costs two store reads (the stats and the earliest due delivery) and one brief
//! lock of the firing window (its first entry); it must never walk the window or a table.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use minoots_core::WriteTrouble;
use minoots_kernel_api::metrics::{LATENCY_BOUNDS_US, LatencyHistogram};
use minoots_store::StoreError;

use crate::Kernel;

/// The process's own gauges, for the binary's `/metrics` of `minoots kernel` and
/// `minoots orchestrator`.
pub use minoots_kernel_api::metrics::write_process_metrics;

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
    /// Lease sessions open now: executors (orchestrators) attached to this kernel.
    pub lease_sessions: AtomicI64,
    /// When the retention pass last finished without an error, in microseconds since the
    /// epoch; the kernel's start until the first pass (so a young kernel is not "behind").
    pub retention_last_success_us: AtomicI64,
}

/// Writes the disk refused ([`StoreError::CannotWrite`]), by reason: disk full, read-only,
/// I/O error. Process-wide rather than per kernel because the one mapping of store errors
/// ([`crate::error::from_store`]) is a free function called at every store call; a process
/// runs one kernel (its data directory is locked), so the two are the same in production.
pub static STORE_WRITE_REFUSALS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// The `reason` label of each [`STORE_WRITE_REFUSALS`] counter, in its order.
const WRITE_REFUSAL_REASONS: [&str; 3] = ["disk_full", "read_only", "io"];

/// Counts a store error that is a refused write; any other error is not counted.
pub fn note_store_error(e: &StoreError) {
    if let StoreError::CannotWrite(trouble) = e {
        let i = match trouble {
            WriteTrouble::DiskFull => 0,
            WriteTrouble::ReadOnly => 1,
            WriteTrouble::Io(_) => 2,
        };
        STORE_WRITE_REFUSALS[i].fetch_add(1, Ordering::Relaxed);
    }
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

    /// Counts a lease session as open until the returned guard is dropped.
    pub(crate) fn lease_session(self: &std::sync::Arc<Self>) -> LeaseSessionGuard {
        self.lease_sessions.fetch_add(1, Ordering::Relaxed);
        LeaseSessionGuard(self.clone())
    }

    pub fn inc(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Holds one count of [`KernelMetrics::lease_sessions`] while a session's stream lives.
pub(crate) struct LeaseSessionGuard(std::sync::Arc<KernelMetrics>);

impl Drop for LeaseSessionGuard {
    fn drop(&mut self) {
        self.0.lease_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Appends one gauge with its `# HELP` and `# TYPE` lines.
fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// The kernel's counters, firing-lateness histogram and store gauges as Prometheus text
/// (for the control plane's `/metrics` and `minoots kernel`'s own).
pub async fn render_kernel_metrics(kernel: &Kernel) -> String {
    let mut out = String::new();
    render_kernel(&mut out, kernel.metrics());
    let now_us = kernel.clock().now_us();
    gauge(
        &mut out,
        "minoots_kernel_ready",
        "1 while the kernel fires timers (overdue ones from before a start are queued, no part of the scheduler died), else 0.",
        u8::from(kernel.is_ready()),
    );
    gauge(
        &mut out,
        "minoots_firing_backlog_seconds",
        "How long the earliest timer of the firing window has been due and not fired (0 when none is overdue).",
        seconds(kernel.firing_overdue_us(now_us)),
    );
    let m = kernel.metrics();
    gauge(
        &mut out,
        "minoots_lease_sessions",
        "Lease streams open: executors (orchestrators) attached to this kernel.",
        m.lease_sessions.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "minoots_retention_last_success_timestamp_seconds",
        "When the event log's retention pass last finished without an error (the kernel's start before its first pass), in seconds since the epoch.",
        seconds(m.retention_last_success_us.load(Ordering::Relaxed)),
    );
    if let Some(cluster) = kernel.cluster() {
        gauge(
            &mut out,
            "minoots_shards_held",
            "Shards of timers this kernel holds (several kernels on one PostgreSQL database).",
            cluster.shards_held(),
        );
    }
    let store = kernel.store();
    store.writer_stats().write_prometheus(&mut out);
    if let Ok(stats) = store.stats().await {
        gauge(
            &mut out,
            "minoots_timers_pending",
            "Timers scheduled and not yet fired.",
            stats.scheduled_timers,
        );
        gauge(
            &mut out,
            "minoots_deliveries_pending",
            "Deliveries waiting for an attempt (due now, or retrying later).",
            stats.pending_deliveries,
        );
        gauge(
            &mut out,
            "minoots_deliveries_in_flight",
            "Deliveries leased to an executor.",
            stats.in_flight_deliveries,
        );
    }
    // One indexed read: the earliest due time of a pending delivery.
    if let Ok(next) = store.next_delivery_due_us().await {
        let waited = next.map_or(0, |due| (now_us - due).max(0));
        gauge(
            &mut out,
            "minoots_delivery_backlog_seconds",
            "How long the longest-waiting due delivery has waited for an executor (0 when none is due).",
            seconds(waited),
        );
    }
    out
}

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

fn render_kernel(out: &mut String, m: &KernelMetrics) {
    let g = KernelMetrics::get;
    let counters: [(&str, &str, &AtomicU64); 13] = [
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
            "minoots_fire_errors_total",
            "Fire transactions that failed (the timers are retried after a pause).",
            &m.fire_errors,
        ),
        (
            "minoots_events_pruned_total",
            "Events deleted from the log by the retention pass.",
            &m.events_pruned,
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
    out.push_str("# HELP minoots_store_write_refusals_total Writes the disk refused, by reason (nothing of a refused write is stored).\n# TYPE minoots_store_write_refusals_total counter\n");
    for (i, reason) in WRITE_REFUSAL_REASONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "minoots_store_write_refusals_total{{reason=\"{reason}\"}} {}",
            g(&STORE_WRITE_REFUSALS[i])
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
