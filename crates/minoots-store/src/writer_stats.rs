//! What a store's writer measures of its group commits, for `/metrics`: how long each
//! group's transaction took, from its first statement to the commit's return (the flush to
//! disk included), and how many writes it held. Kept in atomics, so the writer never waits
//! on a reader of them; [`WriterStats::register`] shows them in a `prometheus_client`
//! registry as two histograms (`minoots_store_commit_duration_seconds`,
//! `minoots_store_commit_batch_size`), read only when a scrape encodes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Upper bounds of the commit-duration buckets, in microseconds: from a commit that
/// flushed nothing (well under a millisecond) to the multi-second stalls of a saturated
/// disk.
pub const COMMIT_BOUNDS_US: [u64; 14] = [
    250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 125_000, 250_000, 500_000,
    1_000_000, 4_000_000,
];

/// Upper bounds of the batch-size buckets, in writes per group commit; a group holds at
/// most `max_batch_ops` (4,096 by default on SQLite).
pub const BATCH_BOUNDS: [u64; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096];

/// A histogram with fixed bucket bounds `N`, each bucket counting observations up to its
/// bound (not cumulative: Prometheus' cumulative counts are summed when rendered).
struct Buckets<const N: usize> {
    /// One per bound, and one for the observations above the last.
    counts: [AtomicU64; N],
    over: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Buckets<N> {
    fn new() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn record(&self, bounds: &[u64; N], value: u64) {
        match bounds.iter().position(|b| value <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Counts per bound (not cumulative: the encoder sums them), the values above the
    /// last bound as `+Inf` (`f64::MAX`), each bound divided by `unit` (1e6 shows
    /// microseconds in seconds); and the total, read from the same buckets.
    fn prometheus(&self, bounds: &[u64; N], unit: f64) -> (Vec<(f64, u64)>, u64) {
        let mut out = Vec::with_capacity(N + 1);
        let mut total = 0;
        for (bound, c) in bounds.iter().zip(&self.counts) {
            let n = c.load(Ordering::Relaxed);
            total += n;
            out.push((*bound as f64 / unit, n));
        }
        let over = self.over.load(Ordering::Relaxed);
        out.push((f64::MAX, over));
        (out, total + over)
    }
}

/// A store writer's group commits: durations and sizes.
pub struct WriterStats {
    commit_us: Buckets<{ COMMIT_BOUNDS_US.len() }>,
    batch: Buckets<{ BATCH_BOUNDS.len() }>,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            commit_us: Buckets::new(),
            batch: Buckets::new(),
        }
    }
}

impl WriterStats {
    /// Records one group commit of `writes` writes that took `took`.
    pub fn record_commit(&self, writes: usize, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_us.record(&COMMIT_BOUNDS_US, us);
        self.batch.record(&BATCH_BOUNDS, writes as u64);
    }

    /// Group commits recorded.
    pub fn commits(&self) -> u64 {
        self.batch.prometheus(&BATCH_BOUNDS, 1.0).1
    }

    /// Shows both histograms in `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "minoots_store_commit_duration_seconds",
            "Time of each group commit's transaction, first statement to commit (the flush to disk included).",
            Histogram {
                stats: self.clone(),
                commit_duration: true,
            },
        );
        registry.register(
            "minoots_store_commit_batch_size",
            "Writes per group commit.",
            Histogram {
                stats: self.clone(),
                commit_duration: false,
            },
        );
    }
}

/// One of the two histograms of [`WriterStats`], as `prometheus_client` encodes it.
#[derive(Debug)]
struct Histogram {
    stats: Arc<WriterStats>,
    /// The commit durations (in seconds) if true, else the batch sizes.
    commit_duration: bool,
}

impl std::fmt::Debug for WriterStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterStats")
            .field("commits", &self.commits())
            .finish()
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let ((buckets, count), sum) = if self.commit_duration {
            let sum = s.commit_us.sum.load(Ordering::Relaxed) as f64 / 1e6;
            (s.commit_us.prometheus(&COMMIT_BOUNDS_US, 1e6), sum)
        } else {
            let sum = s.batch.sum.load(Ordering::Relaxed) as f64;
            (s.batch.prometheus(&BATCH_BOUNDS, 1.0), sum)
        };
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_land_in_their_buckets_and_render_cumulatively() {
        let s = Arc::new(WriterStats::default());
        s.record_commit(1, Duration::from_micros(100));
        s.record_commit(3, Duration::from_micros(1_500));
        s.record_commit(5_000, Duration::from_secs(9));
        assert_eq!(s.commits(), 3);
        let mut registry = Registry::default();
        s.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE minoots_store_commit_duration_seconds histogram",
            "minoots_store_commit_duration_seconds_bucket{le=\"0.00025\"} 1",
            "minoots_store_commit_duration_seconds_bucket{le=\"0.001\"} 1",
            "minoots_store_commit_duration_seconds_bucket{le=\"0.002\"} 2",
            "minoots_store_commit_duration_seconds_bucket{le=\"4.0\"} 2",
            "minoots_store_commit_duration_seconds_bucket{le=\"+Inf\"} 3",
            "minoots_store_commit_duration_seconds_sum 9.0016",
            "minoots_store_commit_duration_seconds_count 3",
            "minoots_store_commit_batch_size_bucket{le=\"1.0\"} 1",
            "minoots_store_commit_batch_size_bucket{le=\"4.0\"} 2",
            "minoots_store_commit_batch_size_bucket{le=\"4096.0\"} 2",
            "minoots_store_commit_batch_size_bucket{le=\"+Inf\"} 3",
            "minoots_store_commit_batch_size_sum 5004.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
