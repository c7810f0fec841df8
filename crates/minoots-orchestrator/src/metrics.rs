//! What an orchestrator counts, in atomics so executing tasks never wait on them, and
//! their Prometheus text (served by `minoots orchestrator` at `/metrics`, and by `minoots
//! serve` for its embedded orchestrator). The alert rules and the Grafana dashboard under
//! `deploy/` read these names; a test checks that each one they use is exported.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use minoots_core::AttemptOutcome;
use minoots_kernel_api::metrics::LatencyHistogram;

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

#[derive(Default)]
pub struct OrchestratorMetrics {
    /// Attempts by outcome: succeeded, retryable, permanent.
    pub attempts: [AtomicU64; 3],
    /// Attempts by action kind: webhook, command, file.
    pub attempts_by_kind: [AtomicU64; 3],
    /// How long attempts took, by action kind: webhook, command, file.
    pub attempt_duration: [LatencyHistogram; 3],
    /// 1 while a lease stream to the kernel is open (deliveries can reach this
    /// orchestrator), 0 while it connects or reconnects.
    pub lease_stream_up: AtomicI64,
    /// Attempts running now.
    pub in_flight: AtomicI64,
    /// Deliveries handed back unexecuted (lease nearly gone, or a graceful stop).
    pub released: AtomicU64,
    /// Deliveries handed back, due again shortly, because their host had no free slot.
    pub deferred: AtomicU64,
    /// Reports the kernel refused (fenced: the lease was lost) or that could not be sent.
    pub reports_lost: AtomicU64,
    /// Attempts stopped because their lease was lost or could not be renewed in time.
    pub leases_lost: AtomicU64,
}

impl OrchestratorMetrics {
    pub fn released(&self) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }

    pub fn deferred(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }

    pub fn lease_lost(&self) {
        self.leases_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report_lost(&self) {
        self.reports_lost.fetch_add(1, Ordering::Relaxed);
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
        self.attempts[i].fetch_add(1, Ordering::Relaxed);
        self.attempts_by_kind[kind.min(2)].fetch_add(1, Ordering::Relaxed);
        self.attempt_duration[kind.min(2)].record(duration_us);
    }

    /// Records whether the lease stream to the kernel is open.
    pub fn lease_stream(&self, open: bool) {
        self.lease_stream_up
            .store(i64::from(open), Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP minoots_orchestrator_attempts_total Attempts by outcome.\n# TYPE minoots_orchestrator_attempts_total counter\n");
        for (i, o) in ["succeeded", "retryable", "permanent"].iter().enumerate() {
            let _ = writeln!(
                out,
                "minoots_orchestrator_attempts_total{{outcome=\"{o}\"}} {}",
                g(&self.attempts[i])
            );
        }
        out.push_str("# HELP minoots_orchestrator_attempts_by_action_total Attempts by action type.\n# TYPE minoots_orchestrator_attempts_by_action_total counter\n");
        for (i, k) in ["webhook", "command", "file"].iter().enumerate() {
            let _ = writeln!(
                out,
                "minoots_orchestrator_attempts_by_action_total{{action=\"{k}\"}} {}",
                g(&self.attempts_by_kind[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP minoots_orchestrator_in_flight Attempts running now.\n# TYPE minoots_orchestrator_in_flight gauge\nminoots_orchestrator_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP minoots_orchestrator_released_total Deliveries handed back unexecuted.\n# TYPE minoots_orchestrator_released_total counter\nminoots_orchestrator_released_total {}",
            g(&self.released)
        );
        let _ = writeln!(
            out,
            "# HELP minoots_orchestrator_deferred_total Deliveries handed back for later because their host was saturated.\n# TYPE minoots_orchestrator_deferred_total counter\nminoots_orchestrator_deferred_total {}",
            g(&self.deferred)
        );
        let _ = writeln!(
            out,
            "# HELP minoots_orchestrator_reports_lost_total Reports refused or not delivered.\n# TYPE minoots_orchestrator_reports_lost_total counter\nminoots_orchestrator_reports_lost_total {}",
            g(&self.reports_lost)
        );
        let _ = writeln!(
            out,
            "# HELP minoots_orchestrator_leases_lost_total Attempts stopped because their lease was lost or not renewed in time.\n# TYPE minoots_orchestrator_leases_lost_total counter\nminoots_orchestrator_leases_lost_total {}",
            g(&self.leases_lost)
        );
        let _ = writeln!(
            out,
            "# HELP minoots_orchestrator_lease_stream_up 1 while the lease stream to the kernel is open, 0 while connecting.\n# TYPE minoots_orchestrator_lease_stream_up gauge\nminoots_orchestrator_lease_stream_up {}",
            self.lease_stream_up.load(Ordering::Relaxed)
        );
        out.push_str("# HELP minoots_orchestrator_attempt_duration_seconds How long attempts took, by action type.\n# TYPE minoots_orchestrator_attempt_duration_seconds histogram\n");
        for (i, k) in ["webhook", "command", "file"].iter().enumerate() {
            self.attempt_duration[i].write_prometheus(
                &mut out,
                "minoots_orchestrator_attempt_duration_seconds",
                &format!("action=\"{k}\""),
                &BOUNDS_US,
            );
        }
        out
    }
}
