//! What an orchestrator counts, in atomics so executing tasks never wait on them, and
//! their exposition, written by `prometheus_client` (served by `minoots orchestrator` at
//! `/metrics`, and by `minoots serve` for its embedded orchestrator). The alert rules and
//! the Grafana dashboard under `deploy/` read these names; a test checks that each one
//! they use is exported.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use minoots_core::AttemptOutcome;
use minoots_kernel_api::metrics::{
    HistogramMetric, LabelledCounters, LatencyHistogram, OneLabel, encode_part,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Histogram bounds for attempt durations, in microseconds.
const BOUNDS_US: [u64; 12] = [
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    30_000_000,
    120_000_000,
];

/// The action types, in the order of [`OrchestratorMetrics::attempt`]'s `kind`.
const ACTIONS: [&str; 3] = ["webhook", "command", "file"];

pub struct OrchestratorMetrics {
    /// Attempts by outcome: succeeded, retryable, permanent.
    pub attempts: LabelledCounters<3>,
    /// Attempts by action kind: webhook, command, file.
    pub attempts_by_kind: LabelledCounters<3>,
    /// How long attempts took, by action kind: the family shown at `/metrics`, and the
    /// histogram of each kind (webhook, command, file), taken from it once.
    attempt_duration: Family<OneLabel, HistogramMetric, fn() -> HistogramMetric>,
    attempt_duration_by_kind: [Arc<LatencyHistogram>; 3],
    /// 1 while a lease stream to the kernel is open (deliveries can reach this
    /// orchestrator), 0 while it connects or reconnects.
    pub lease_stream_up: AtomicI64,
    /// Attempts running now.
    pub in_flight: AtomicI64,
    /// Deliveries handed back unexecuted (lease nearly gone, or a graceful stop).
    pub released: Counter,
    /// Deliveries handed back, due again shortly, because their host had no free slot.
    pub deferred: Counter,
    /// Reports the kernel refused (fenced: the lease was lost) or that could not be sent.
    pub reports_lost: Counter,
    /// Attempts stopped because their lease was lost or could not be renewed in time.
    pub leases_lost: Counter,
}

fn attempt_duration_metric() -> HistogramMetric {
    HistogramMetric::seconds(Arc::default(), &BOUNDS_US)
}

impl Default for OrchestratorMetrics {
    fn default() -> Self {
        let attempt_duration: Family<OneLabel, HistogramMetric, fn() -> HistogramMetric> =
            Family::new_with_constructor(attempt_duration_metric);
        let attempt_duration_by_kind = ACTIONS.map(|a| {
            attempt_duration
                .get_or_create(&[("action", a)])
                .histogram()
                .clone()
        });
        Self {
            attempts: LabelledCounters::new("outcome", ["succeeded", "retryable", "permanent"]),
            attempts_by_kind: LabelledCounters::new("action", ACTIONS),
            attempt_duration,
            attempt_duration_by_kind,
            lease_stream_up: AtomicI64::default(),
            in_flight: AtomicI64::default(),
            released: Counter::default(),
            deferred: Counter::default(),
            reports_lost: Counter::default(),
            leases_lost: Counter::default(),
        }
    }
}

impl OrchestratorMetrics {
    pub fn released(&self) {
        self.released.inc();
    }

    pub fn deferred(&self) {
        self.deferred.inc();
    }

    pub fn lease_lost(&self) {
        self.leases_lost.inc();
    }

    pub fn report_lost(&self) {
        self.reports_lost.inc();
    }

    /// Counts an attempt as running until the returned guard is dropped.
    pub fn running(&self) -> impl Drop + '_ {
        struct Running<'a>(&'a AtomicI64);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Running(&self.in_flight)
    }

    pub fn attempt(&self, kind: usize, outcome: AttemptOutcome, duration_us: i64) {
        let i = match outcome {
            AttemptOutcome::Succeeded => 0,
            AttemptOutcome::Retryable => 1,
            AttemptOutcome::Permanent => 2,
        };
        self.attempts.get(i).inc();
        self.attempts_by_kind.get(kind.min(2)).inc();
        self.attempt_duration_by_kind[kind.min(2)].record(duration_us);
    }

    /// Records whether the lease stream to the kernel is open.
    pub fn lease_stream(&self, open: bool) {
        self.lease_stream_up
            .store(i64::from(open), Ordering::Relaxed);
    }

    /// The exposition of everything above, without the closing `# EOF`.
    pub fn render(&self) -> String {
        let mut r = Registry::default();
        self.attempts.register(
            &mut r,
            "minoots_orchestrator_attempts",
            "Attempts by outcome.",
        );
        self.attempts_by_kind.register(
            &mut r,
            "minoots_orchestrator_attempts_by_action",
            "Attempts by action type.",
        );
        r.register(
            "minoots_orchestrator_in_flight",
            "Attempts running now.",
            ConstGauge::new(self.in_flight.load(Ordering::Relaxed)),
        );
        let counters = [
            (
                "minoots_orchestrator_released",
                "Deliveries handed back unexecuted.",
                &self.released,
            ),
            (
                "minoots_orchestrator_deferred",
                "Deliveries handed back for later because their host was saturated.",
                &self.deferred,
            ),
            (
                "minoots_orchestrator_reports_lost",
                "Reports refused or not delivered.",
                &self.reports_lost,
            ),
            (
                "minoots_orchestrator_leases_lost",
                "Attempts stopped because their lease was lost or not renewed in time.",
                &self.leases_lost,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "minoots_orchestrator_lease_stream_up",
            "1 while the lease stream to the kernel is open, 0 while connecting.",
            ConstGauge::new(self.lease_stream_up.load(Ordering::Relaxed)),
        );
        r.register(
            "minoots_orchestrator_attempt_duration_seconds",
            "How long attempts took, by action type.",
            self.attempt_duration.clone(),
        );
        let mut out = String::new();
        encode_part(&mut out, &r);
        out
    }
}
