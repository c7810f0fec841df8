//! Counters and the firing-lateness histogram, kept in atomics so the firing thread never
//! blocks on them. The control plane renders them as Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

use minoots_kernel_api::metrics::LatencyHistogram;

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
