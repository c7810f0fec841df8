//! Background maintenance: the lease rescuer and the retention cleaner (old events, and
//! dashboard sessions past their expiry).
//!
//! Each runs on its own interval, does a bounded amount of work per pass, and logs and
//! carries on when the store is unavailable. When several kernels share the store, only
//! the one the store names maintainer runs them ([`minoots_store::Cluster::maintains`]):
//! maintenance runs once per cluster, and moves to another kernel when that one dies.

use std::sync::Arc;

use minoots_core::Clock;
use minoots_store::Store;
use tokio::sync::{Notify, watch};

use crate::config::KernelConfig;
use crate::metrics::KernelMetrics;

/// Returns deliveries whose lease expired to `pending`, so another executor gets them.
pub(crate) async fn run_rescuer(
    store: Arc<dyn Store>,
    config: KernelConfig,
    metrics: Arc<KernelMetrics>,
    notify: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let cluster = store.cluster();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.rescue_interval) => {}
            _ = stop.changed() => return,
        }
        if cluster.as_ref().is_some_and(|c| !c.maintains()) {
            continue;
        }
        loop {
            match store.rescue_expired_leases(config.rescue_batch).await {
                Ok(0) => break,
                Ok(n) => {
                    KernelMetrics::inc(&metrics.leases_rescued, n as u64);
                    tracing::info!(rescued = n, "returned deliveries with expired leases");
                    notify.notify_waiters();
                    if n < config.rescue_batch {
                        break;
                    }
                }
                Err(e) => {
                    crate::metrics::note_store_error(&e);
                    tracing::warn!(error = %e, "rescuing expired leases failed");
                    break;
                }
            }
        }
    }
}

/// Deletes events older than the retention period, expired dashboard sessions and usage
/// rows past [`minoots_core::billing::METER_USAGE_RETENTION_US`], a bounded batch at a time.
pub(crate) async fn run_retention(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: KernelConfig,
    metrics: Arc<KernelMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    const PRUNE_BATCH: usize = 10_000;
    /// Bound on the work of one pass; the rest waits for the next pass.
    const MAX_BATCHES_PER_PASS: usize = 100;
    let cluster = store.cluster();
    let succeeded = |at_us: i64| {
        metrics
            .retention_last_success_us
            .store(at_us, std::sync::atomic::Ordering::Relaxed)
    };
    succeeded(clock.now_us());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.retention_interval) => {}
            _ = stop.changed() => return,
        }
        if cluster.as_ref().is_some_and(|c| !c.maintains()) {
            continue;
        }
        let cutoff = clock.now_us() - config.event_retention.as_micros() as i64;
        let mut failed = false;
        for _ in 0..MAX_BATCHES_PER_PASS {
            match store.prune_events(cutoff, PRUNE_BATCH).await {
                Ok(n) => {
                    KernelMetrics::inc(&metrics.events_pruned, n as u64);
                    if n < PRUNE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    crate::metrics::note_store_error(&e);
                    tracing::warn!(error = %e, "pruning old events failed");
                    failed = true;
                    break;
                }
            }
        }
        // Expired sessions already authenticate nothing; this only frees their rows.
        let now = clock.now_us();
        for _ in 0..MAX_BATCHES_PER_PASS {
            match store.prune_ui_sessions(now, PRUNE_BATCH).await {
                Ok(n) if n < PRUNE_BATCH => break,
                Ok(_) => {}
                Err(e) => {
                    crate::metrics::note_store_error(&e);
                    tracing::warn!(error = %e, "pruning expired dashboard sessions failed");
                    failed = true;
                    break;
                }
            }
        }
        // Usage rows past their retention (sent, or never to be sent).
        let cutoff = clock.now_us() - minoots_core::billing::METER_USAGE_RETENTION_US;
        for _ in 0..MAX_BATCHES_PER_PASS {
            match store.prune_meter_usage(cutoff, PRUNE_BATCH).await {
                Ok(n) if n < PRUNE_BATCH => break,
                Ok(_) => {}
                Err(e) => {
                    crate::metrics::note_store_error(&e);
                    tracing::warn!(error = %e, "pruning old usage rows failed");
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            succeeded(clock.now_us());
        }
    }
}
