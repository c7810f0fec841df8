//! Metrics that more than one plane keeps: the log-linear [`LatencyHistogram`] (firing
//! lateness, request latency, attempt durations), kept in atomics so that no recording
//! thread ever blocks, and its view as a Prometheus histogram ([`HistogramMetric`]); the
//! process's own gauges ([`write_process_metrics`]), which every `/metrics` shows once,
//! with the trace exporter's counts when `--otlp-endpoint` is set; and the two calls that
//! write an exposition ([`encode_part`], [`finish`]).
//!
//! Every plane registers its metrics in a `prometheus_client` registry and lets that library
//! write the text (OpenMetrics: names, `# HELP`/`# TYPE`, label escaping, the `_total` of
//! counters, the cumulative buckets of histograms); no plane writes the format by hand.
//! A `/metrics` answer is the parts of its process one after the other, then one `# EOF`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Histogram bounds for request latency and firing lateness, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// The `Content-Type` of every `/metrics` answer: the OpenMetrics text that
/// `prometheus_client` writes (Prometheus asks for it first when it scrapes).
pub const EXPOSITION_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Appends the metrics of `registry` to `out`, without the closing `# EOF` (see [`finish`]),
/// so that the parts of a process (control plane, kernel, orchestrator, store) make one
/// exposition.
pub fn encode_part(out: &mut String, registry: &Registry) {
    prometheus_client::encoding::text::encode_registry(out, registry)
        .expect("writing metrics into a String cannot fail");
}

/// Ends an exposition with its one `# EOF` line.
pub fn finish(out: &mut String) {
    prometheus_client::encoding::text::encode_eof(out)
        .expect("writing metrics into a String cannot fail");
}

/// Appends `process_resident_memory_bytes` (the name Prometheus client libraries use),
/// read from `/proc/self/status` (`VmRSS`, in KiB): one small file read per scrape, no
/// allocation beyond it. Shows no memory where `/proc` is missing (not Linux).
pub fn write_process_metrics(out: &mut String) {
    let mut registry = Registry::default();
    if crate::trace::enabled() {
        registry.register(
            "minoots_trace_spans_exported",
            "Spans the OTLP collector accepted.",
            ConstCounter::new(crate::trace::SPANS_EXPORTED.load(Ordering::Relaxed)),
        );
        registry.register(
            "minoots_trace_spans_dropped",
            "Spans dropped: export queue full, or the collector refused or did not answer.",
            ConstCounter::new(crate::trace::SPANS_DROPPED.load(Ordering::Relaxed)),
        );
    }
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<i64>().ok())
        });
    if let Some(kib) = rss_kib {
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process.",
            ConstGauge::new(kib * 1024),
        );
    }
    encode_part(out, &registry);
}

/// Sub-buckets per power of two: 8 gives about 9 % relative precision.
const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
/// Powers of two covered, in microseconds: up to 2^40 µs (≈ 12 days).
const OCTAVES: usize = 41;

/// A log-linear histogram of non-negative microsecond values.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..OCTAVES * SUBS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUBS as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = (us >> (octave - SUB_BITS)) as usize & (SUBS - 1);
    let idx = ((octave - SUB_BITS + 1) as usize) * SUBS + sub;
    idx.min(OCTAVES * SUBS - 1)
}

/// The largest value that falls in bucket `idx`.
fn bucket_upper(idx: usize) -> u64 {
    if idx < SUBS {
        return idx as u64;
    }
    let octave = (idx / SUBS) as u32 + SUB_BITS - 1;
    let sub = (idx % SUBS) as u64;
    let base = 1u64 << octave;
    let width = 1u64 << (octave - SUB_BITS);
    base + (sub + 1) * width - 1
}

impl LatencyHistogram {
    pub fn record(&self, value_us: i64) {
        let v = value_us.max(0) as u64;
        self.buckets[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(v, Ordering::Relaxed);
        self.max_us.fetch_max(v, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    pub fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }

    /// An upper bound of the `q` quantile (0..=1), within the bucket precision.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return bucket_upper(i).min(self.max_us());
            }
        }
        self.max_us()
    }

    /// Counts per bucket of Prometheus bounds (not cumulative; the encoder sums them):
    /// the values up to each of `bounds_us` and above the one before, then those above the
    /// last as `+Inf` (`f64::MAX`), each bound shown divided by `unit` (1e6 shows
    /// microseconds in seconds). Also the count, read from the same buckets so that it is
    /// never below them while other threads record.
    pub fn prometheus_buckets(&self, bounds_us: &[u64], unit: f64) -> (Vec<(f64, u64)>, u64) {
        let mut out: Vec<(f64, u64)> = bounds_us
            .iter()
            .map(|b| (*b as f64 / unit, 0))
            .chain(std::iter::once((f64::MAX, 0)))
            .collect();
        let mut total = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let upper = bucket_upper(i);
            let slot = bounds_us
                .iter()
                .position(|bound| upper <= *bound)
                .unwrap_or(bounds_us.len());
            out[slot].1 += n;
            total += n;
        }
        (out, total)
    }
}

/// A [`LatencyHistogram`] as a Prometheus histogram with fixed bounds, for a
/// `prometheus_client` registry or family. Recording stays lock-free (the histogram's
/// atomics); the bounds only apply when a scrape reads it.
#[derive(Debug, Clone)]
pub struct HistogramMetric {
    histogram: Arc<LatencyHistogram>,
    /// Upper bounds of the exported buckets, in the histogram's unit (microseconds).
    bounds_us: &'static [u64],
    /// What an exported bound and the sum are divided by: 1e6 shows microseconds as seconds.
    unit: f64,
}

impl HistogramMetric {
    /// Microsecond values shown in seconds at `bounds_us`.
    pub fn seconds(histogram: Arc<LatencyHistogram>, bounds_us: &'static [u64]) -> Self {
        Self {
            histogram,
            bounds_us,
            unit: 1e6,
        }
    }

    /// The histogram it shows.
    pub fn histogram(&self) -> &Arc<LatencyHistogram> {
        &self.histogram
    }
}

impl TypedMetric for HistogramMetric {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for HistogramMetric {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (buckets, count) = self.histogram.prometheus_buckets(self.bounds_us, self.unit);
        let sum = self.histogram.sum_us() as f64 / self.unit;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A label set of one label whose values are fixed in the code (`outcome="succeeded"`).
pub type OneLabel = [(&'static str, &'static str); 1];

/// Counters of one label with `N` values known in advance (outcomes, reasons, action
/// types): a `prometheus_client` family for the exposition, and a handle per value, taken
/// once, so that counting is one atomic add with no lookup in the family.
#[derive(Debug, Clone)]
pub struct LabelledCounters<const N: usize> {
    family: Family<OneLabel, Counter>,
    counters: [Counter; N],
}

impl<const N: usize> LabelledCounters<N> {
    /// One counter for each of `values` of `label`, all shown from the start (at 0).
    pub fn new(label: &'static str, values: [&'static str; N]) -> Self {
        let family = Family::<OneLabel, Counter>::default();
        let counters = values.map(|v| family.get_or_create(&[(label, v)]).clone());
        Self { family, counters }
    }

    /// The counter of the `i`-th value.
    pub fn get(&self, i: usize) -> &Counter {
        &self.counters[i]
    }

    /// Shows the family in `registry` as `name` (without `_total`, which the library adds).
    pub fn register(&self, registry: &mut Registry, name: &str, help: &str) {
        registry.register(name, help, self.family.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_contain_their_values() {
        let mut prev = None;
        for idx in 0..OCTAVES * SUBS - 1 {
            let up = bucket_upper(idx);
            if let Some(p) = prev {
                assert!(up > p, "bucket {idx}");
            }
            prev = Some(up);
            assert_eq!(bucket_of(up), idx, "upper bound of {idx} maps back");
        }
        for v in [
            0u64, 1, 7, 8, 9, 15, 16, 17, 100, 1_000, 123_456, 10_000_000,
        ] {
            assert!(bucket_upper(bucket_of(v)) >= v);
            assert!(
                bucket_upper(bucket_of(v)) <= v + v / 8 + 1,
                "precision at {v}"
            );
        }
    }

    #[test]
    fn the_process_reports_its_resident_memory() {
        let mut out = String::new();
        write_process_metrics(&mut out);
        let bytes: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .expect("exported on Linux")
            .parse()
            .unwrap();
        assert!(
            bytes > 1024 * 1024,
            "a test binary holds more than 1 MiB: {bytes}"
        );
    }

    #[test]
    fn a_histogram_is_exported_with_cumulative_buckets_in_seconds() {
        let h = Arc::new(LatencyHistogram::default());
        for us in [50, 90, 300, 2_000, 7_000_000] {
            h.record(us);
        }
        let mut registry = Registry::default();
        registry.register(
            "minoots_test_lateness_seconds",
            "A test histogram.",
            HistogramMetric::seconds(h, &[100, 1_000, 5_000]),
        );
        let mut text = String::new();
        encode_part(&mut text, &registry);
        finish(&mut text);
        for line in [
            "# TYPE minoots_test_lateness_seconds histogram",
            "minoots_test_lateness_seconds_bucket{le=\"0.0001\"} 2",
            "minoots_test_lateness_seconds_bucket{le=\"0.001\"} 3",
            "minoots_test_lateness_seconds_bucket{le=\"0.005\"} 4",
            "minoots_test_lateness_seconds_bucket{le=\"+Inf\"} 5",
            "minoots_test_lateness_seconds_count 5",
            "minoots_test_lateness_seconds_sum 7.00244",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn quantiles_are_close_upper_bounds() {
        let h = LatencyHistogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile_us(0.5);
        assert!((500..=570).contains(&p50), "p50 {p50}");
        let p99 = h.quantile_us(0.99);
        assert!((990..=1000).contains(&p99), "p99 {p99}");
        assert_eq!(h.max_us(), 1000);
        assert_eq!(h.count(), 1000);
        h.record(-5);
        assert_eq!(h.quantile_us(0.0), 0);
        let (buckets, total) = h.prometheus_buckets(&[0, 959, 1023], 1.0);
        let counts: Vec<u64> = buckets.iter().map(|b| b.1).collect();
        assert_eq!((counts, total), (vec![1, 959, 41, 0], 1001));
    }
}
