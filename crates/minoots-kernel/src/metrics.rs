//! Counters and the firing-lateness histogram, kept in atomics so the firing thread never
//! blocks on them, and their exposition ([`render_kernel_metrics`], written by
//! `prometheus_client` from a registry filled at each scrape), which the
//! control plane's `/metrics` shows for a kernel in its process and `minoots kernel` shows
//! at its own. The alert rules (`deploy/prometheus/alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/minoots.json`) read these names, and a test checks that each name they
//! use is exported: rename one here and there together.
//!
//! A scrape costs two store reads (the stats and the earliest due delivery) and one brief
//! lock of the firing window (its first entry); it must never walk the window or a table.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};

use minoots_core::WriteTrouble;
use minoots_kernel_api::metrics::{
    HistogramMetric, LATENCY_BOUNDS_US, LabelledCounters, LatencyHistogram, encode_part,
};
use minoots_store::StoreError;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::Kernel;

/// The process's own gauges, for the binary's `/metrics` of `minoots kernel` and
/// `minoots orchestrator`.
pub use minoots_kernel_api::metrics::write_process_metrics;

/// What the kernel counts. Each counter is a `prometheus_client` counter: one atomic add,
/// no lock.
pub struct KernelMetrics {
    /// Fired − due, in microseconds, measured by the firing thread as it fires.
    pub firing_lateness: Arc<LatencyHistogram>,
    pub timers_scheduled: Counter,
    pub timers_fired: Counter,
    pub timers_cancelled: Counter,
    /// Fire transactions that failed and were retried.
    pub fire_errors: Counter,
    pub leases_rescued: Counter,
    /// Leases an executor asked to renew but no longer held (rescued or fenced meanwhile).
    pub leases_lost: Counter,
    /// Leases ended at start-up because the executor holding them was a previous process.
    pub leases_handed_back: Counter,
    pub events_pruned: Counter,
    pub deliveries_leased: Counter,
    /// Of those, deliveries claimed for a waiting executor in the transaction that fired
    /// their timer (the rest were claimed by the lease session on its own).
    pub deliveries_claimed_at_fire: Counter,
    pub attempts_reported: Counter,
    /// Attempts by outcome: succeeded, retryable, permanent.
    pub attempts_by_outcome: LabelledCounters<3>,
    /// Deliveries that ended dead (retries exhausted or a permanent failure).
    pub deliveries_dead: Counter,
    /// API key lookups by hash that reached the store (authentications answered by
    /// neither the cache of known keys nor that of unknown ones).
    pub store_key_lookups: Counter,
    /// Fires the store refused because the timer's shard belongs to another kernel now.
    pub fires_fenced: Counter,
    /// Scheduled timers changed (`PATCH`, fire now).
    pub timers_updated: Counter,
    /// Fires the store refused because the timer had been moved later since the window
    /// read it (it fires at its new time).
    pub fires_not_due: Counter,
    /// Lease sessions open now: executors (orchestrators) attached to this kernel.
    pub lease_sessions: AtomicI64,
    /// When the retention pass last finished without an error, in microseconds since the
    /// epoch; the kernel's start until the first pass (so a young kernel is not "behind").
    pub retention_last_success_us: AtomicI64,
}

impl Default for KernelMetrics {
    fn default() -> Self {
        Self {
            firing_lateness: Arc::default(),
            timers_scheduled: Counter::default(),
            timers_fired: Counter::default(),
            timers_cancelled: Counter::default(),
            fire_errors: Counter::default(),
            leases_rescued: Counter::default(),
            leases_lost: Counter::default(),
            leases_handed_back: Counter::default(),
            events_pruned: Counter::default(),
            deliveries_leased: Counter::default(),
            deliveries_claimed_at_fire: Counter::default(),
            attempts_reported: Counter::default(),
            attempts_by_outcome: LabelledCounters::new(
                "outcome",
                ["succeeded", "retryable", "permanent"],
            ),
            deliveries_dead: Counter::default(),
            store_key_lookups: Counter::default(),
            fires_fenced: Counter::default(),
            timers_updated: Counter::default(),
            fires_not_due: Counter::default(),
            lease_sessions: AtomicI64::default(),
            retention_last_success_us: AtomicI64::default(),
        }
    }
}

/// Writes the disk refused ([`StoreError::CannotWrite`]), by reason: disk full, read-only,
/// I/O error. Process-wide rather than per kernel because the one mapping of store errors
/// ([`crate::error::from_store`]) is a free function called at every store call; a process
/// runs one kernel (its data directory is locked), so the two are the same in production.
pub static STORE_WRITE_REFUSALS: LazyLock<LabelledCounters<3>> =
    LazyLock::new(|| LabelledCounters::new("reason", ["disk_full", "read_only", "io"]));

/// Counts a store error that is a refused write; any other error is not counted.
pub fn note_store_error(e: &StoreError) {
    if let StoreError::CannotWrite(trouble) = e {
        let i = match trouble {
            WriteTrouble::DiskFull => 0,
            WriteTrouble::ReadOnly => 1,
            WriteTrouble::Io(_) => 2,
        };
        STORE_WRITE_REFUSALS.get(i).inc();
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
        Self::inc(self.attempts_by_outcome.get(i), 1);
        if delivery == minoots_core::DeliveryStatus::Dead {
            Self::inc(&self.deliveries_dead, 1);
        }
    }

    /// Counts a lease session as open until the returned guard is dropped.
    pub(crate) fn lease_session(self: &std::sync::Arc<Self>) -> LeaseSessionGuard {
        self.lease_sessions.fetch_add(1, Ordering::Relaxed);
        LeaseSessionGuard(self.clone())
    }

    pub fn inc(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }
    pub fn get(counter: &Counter) -> u64 {
        counter.get()
    }
}

/// Holds one count of [`KernelMetrics::lease_sessions`] while a session's stream lives.
pub(crate) struct LeaseSessionGuard(std::sync::Arc<KernelMetrics>);

impl Drop for LeaseSessionGuard {
    fn drop(&mut self) {
        self.0.lease_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shows one gauge, read now, in `registry`.
fn gauge<V>(registry: &mut Registry, name: &str, help: &str, value: V)
where
    ConstGauge<V>: prometheus_client::registry::Metric,
{
    registry.register(name, help, ConstGauge::new(value));
}

/// The kernel's counters, firing-lateness histogram and store gauges as Prometheus text
/// (for the control plane's `/metrics` and `minoots kernel`'s own), without the closing
/// `# EOF`.
pub async fn render_kernel_metrics(kernel: &Kernel) -> String {
    let mut registry = Registry::default();
    let m = kernel.metrics();
    register_kernel(&mut registry, m);
    let now_us = kernel.clock().now_us();
    gauge(
        &mut registry,
        "minoots_kernel_ready",
        "1 while the kernel fires timers (overdue ones from before a start are queued, no part of the scheduler died), else 0.",
        i64::from(kernel.is_ready()),
    );
    gauge(
        &mut registry,
        "minoots_firing_backlog_seconds",
        "How long the earliest timer of the firing window has been due and not fired (0 when none is overdue).",
        seconds(kernel.firing_overdue_us(now_us)),
    );
    gauge(
        &mut registry,
        "minoots_lease_sessions",
        "Lease streams open: executors (orchestrators) attached to this kernel.",
        m.lease_sessions.load(Ordering::Relaxed),
    );
    gauge(
        &mut registry,
        "minoots_retention_last_success_timestamp_seconds",
        "When the event log's retention pass last finished without an error (the kernel's start before its first pass), in seconds since the epoch.",
        seconds(m.retention_last_success_us.load(Ordering::Relaxed)),
    );
    if let Some(cluster) = kernel.cluster() {
        gauge(
            &mut registry,
            "minoots_shards_held",
            "Shards of timers this kernel holds (several kernels on one PostgreSQL database).",
            cluster.shards_held() as i64,
        );
    }
    let store = kernel.store();
    store.writer_stats().register(&mut registry);
    if let Ok(stats) = store.stats().await {
        gauge(
            &mut registry,
            "minoots_timers_pending",
            "Timers scheduled and not yet fired.",
            stats.scheduled_timers as i64,
        );
        gauge(
            &mut registry,
            "minoots_deliveries_pending",
            "Deliveries waiting for an attempt (due now, or retrying later).",
            stats.pending_deliveries as i64,
        );
        gauge(
            &mut registry,
            "minoots_deliveries_in_flight",
            "Deliveries leased to an executor.",
            stats.in_flight_deliveries as i64,
        );
    }
    // One indexed read: the earliest due time of a pending delivery.
    if let Ok(next) = store.next_delivery_due_us().await {
        let waited = next.map_or(0, |due| (now_us - due).max(0));
        gauge(
            &mut registry,
            "minoots_delivery_backlog_seconds",
            "How long the longest-waiting due delivery has waited for an executor (0 when none is due).",
            seconds(waited),
        );
    }
    let mut out = String::new();
    encode_part(&mut out, &registry);
    out
}

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Shows the kernel's counters and its firing-lateness histogram in `registry`. Counter
/// names are given without `_total`: the library adds it.
fn register_kernel(registry: &mut Registry, m: &KernelMetrics) {
    let counters: [(&str, &str, &Counter); 14] = [
        (
            "minoots_timers_created",
            "Timers scheduled.",
            &m.timers_scheduled,
        ),
        ("minoots_timers_fired", "Timers fired.", &m.timers_fired),
        (
            "minoots_timers_cancelled",
            "Timers cancelled.",
            &m.timers_cancelled,
        ),
        (
            "minoots_leases_rescued",
            "Expired leases returned to pending.",
            &m.leases_rescued,
        ),
        (
            "minoots_leases_lost",
            "Leases an executor tried to renew after losing them (its attempts were stopped).",
            &m.leases_lost,
        ),
        (
            "minoots_leases_handed_back",
            "Leases of a previous process's executor ended at start-up.",
            &m.leases_handed_back,
        ),
        (
            "minoots_deliveries_dead",
            "Deliveries that exhausted their retries or failed permanently.",
            &m.deliveries_dead,
        ),
        (
            "minoots_store_key_lookups",
            "API key lookups that reached the store (not answered by the kernel's key caches).",
            &m.store_key_lookups,
        ),
        (
            "minoots_fires_fenced",
            "Timers this kernel did not fire because their shard belongs to another kernel now.",
            &m.fires_fenced,
        ),
        (
            "minoots_timers_updated",
            "Scheduled timers changed (new fire time, actions, labels or metadata; fire now).",
            &m.timers_updated,
        ),
        (
            "minoots_fire_errors",
            "Fire transactions that failed (the timers are retried after a pause).",
            &m.fire_errors,
        ),
        (
            "minoots_events_pruned",
            "Events deleted from the log by the retention pass.",
            &m.events_pruned,
        ),
        (
            "minoots_deliveries_claimed_at_fire",
            "Deliveries claimed for a waiting executor in the transaction that fired their timer.",
            &m.deliveries_claimed_at_fire,
        ),
        (
            "minoots_fires_not_due",
            "Fires of window entries refused because the timer was moved later meanwhile (it fires at its new time).",
            &m.fires_not_due,
        ),
    ];
    for (name, help, counter) in counters {
        registry.register(name, help, counter.clone());
    }
    m.attempts_by_outcome.register(
        registry,
        "minoots_delivery_attempts",
        "Delivery attempts by outcome.",
    );
    STORE_WRITE_REFUSALS.register(
        registry,
        "minoots_store_write_refusals",
        "Writes the disk refused, by reason (nothing of a refused write is stored).",
    );
    registry.register(
        "minoots_firing_lateness_seconds",
        "Fired minus due time of each timer.",
        HistogramMetric::seconds(m.firing_lateness.clone(), &LATENCY_BOUNDS_US),
    );
}
