//! Metrics that more than one plane keeps: the log-linear [`LatencyHistogram`] (firing
//! lateness, request latency, attempt durations), kept in atomics so that no recording
//! thread ever blocks, and its Prometheus text; and the process's own gauges
//! ([`write_process_metrics`]), which every `/metrics` shows once, with the trace
//! exporter's counts when `--otlp-endpoint` is set.

use std::sync::atomic::{AtomicU64, Ordering};

/// Histogram bounds for request latency and firing lateness, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Appends `process_resident_memory_bytes` (the name Prometheus client libraries use),
/// read from `/proc/self/status` (`VmRSS`, in KiB): one small file read per scrape, no
/// allocation beyond it. Writes nothing where `/proc` is missing (not Linux).
pub fn write_process_metrics(out: &mut String) {
    use std::fmt::Write as _;
    if crate::trace::enabled() {
        let _ = writeln!(
            out,
            "# HELP minoots_trace_spans_exported_total Spans the OTLP collector accepted.\n# TYPE minoots_trace_spans_exported_total counter\nminoots_trace_spans_exported_total {}\n# HELP minoots_trace_spans_dropped_total Spans dropped: export queue full, or the collector refused or did not answer.\n# TYPE minoots_trace_spans_dropped_total counter\nminoots_trace_spans_dropped_total {}",
            crate::trace::SPANS_EXPORTED.load(Ordering::Relaxed),
            crate::trace::SPANS_DROPPED.load(Ordering::Relaxed),
        );
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(kib) = rss_kib {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory of this process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            kib * 1024
        );
    }
}

/// Sub-buckets per power of two: 8 gives about 9 % relative precision.
const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
/// Powers of two covered, in microseconds: up to 2^40 µs (≈ 12 days).
const OCTAVES: usize = 41;

/// A log-linear histogram of non-negative microsecond values.
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

    /// Writes the histogram in the Prometheus text format under `name` with `labels`
    /// (`key="value",...`, possibly empty), with buckets at `bounds_us` shown in seconds.
    pub fn write_prometheus(&self, out: &mut String, name: &str, labels: &str, bounds_us: &[u64]) {
        use std::fmt::Write as _;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in bounds_us.iter().zip(self.cumulative(bounds_us)) {
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us() as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }

    /// Cumulative counts at the given upper bounds (for Prometheus `_bucket` lines).
    pub fn cumulative(&self, bounds_us: &[u64]) -> Vec<u64> {
        bounds_us
            .iter()
            .map(|&bound| {
                self.buckets
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bucket_upper(*i) <= bound)
                    .map(|(_, b)| b.load(Ordering::Relaxed))
                    .sum()
            })
            .collect()
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
        assert_eq!(h.cumulative(&[0, 959, 1023]), vec![1, 960, 1001]);
    }
}
