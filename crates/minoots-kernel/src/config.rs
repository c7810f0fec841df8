//! The kernel's settings, with documented defaults and a check of them.

use std::time::Duration;

use minoots_core::ConfigError;

/// Settings of the scheduler, the lease dispatcher and the maintenance services.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// How far ahead the in-memory index holds due timers. Timers further out live only
    /// in the store and are loaded as this window advances.
    pub window: Duration,
    /// How often the loader extends the window. Must be well under `window`, so a timer is
    /// in memory long before it is due.
    pub refill_interval: Duration,
    /// Most timers loaded into memory by one refill query.
    pub load_batch: usize,
    /// The loader stops loading when the index holds this many timers; the rest is loaded
    /// as the index drains. Timers created inside the window are still added directly, so
    /// this bounds memory except for what clients create within the window itself.
    pub max_window_timers: usize,
    /// Most timers fired in one store transaction.
    pub fire_batch: usize,
    /// Fired timers waiting to be committed are bounded by `fire_batch` times this. When
    /// that many wait, the firing thread waits too, so a slow disk slows firing instead of
    /// growing memory.
    pub max_fire_batches_in_flight: usize,
    /// How often expired delivery leases are looked for.
    pub rescue_interval: Duration,
    /// Most expired leases returned per rescue pass.
    pub rescue_batch: usize,
    /// Events older than this are deleted.
    pub event_retention: Duration,
    /// How often old events are pruned.
    pub retention_interval: Duration,
    /// Live events buffered towards one stream subscriber.
    pub event_stream_buffer: usize,
    /// The longest the firing thread sleeps without looking at the wall clock again, so a
    /// forward jump of the clock fires what became due within this bound.
    pub max_sleep: Duration,
    /// Run the firing thread at real-time priority when the process may (Linux, with
    /// CAP_SYS_NICE). Measured effect in docs/benchmarks.md.
    pub realtime_firing_thread: bool,
    /// The least time between two pops of due timers by the firing thread. When timers
    /// fall due every few tens of microseconds, the thread pops what fell due meanwhile in
    /// one go instead of waking once per timer: each wake, at real-time priority,
    /// preempts the store's writer or an executor, and at 10,000 timers/s that cost the
    /// webhooks far more than this adds to the firing lateness (docs/benchmarks.md,
    /// ninth round). Adds at most this much to a timer's firing lateness while fewer than
    /// `fire_batch` timers fall due per interval, and nothing to a timer due more than
    /// this long after the previous pop. 750 µs by default: under the 1 ms bound of the
    /// firing-lateness histogram, so its p99 as Prometheus reads it stays under 1 ms.
    pub min_fire_interval: Duration,
    /// Commands and file actions the operator enabled; timers using others are refused
    /// at creation.
    pub actions: minoots_core::ActionPolicy,
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            refill_interval: Duration::from_secs(5),
            load_batch: 10_000,
            max_window_timers: 1_000_000,
            fire_batch: 2_048,
            max_fire_batches_in_flight: 8,
            rescue_interval: Duration::from_secs(1),
            rescue_batch: 1_000,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(600),
            event_stream_buffer: 1_024,
            max_sleep: Duration::from_millis(500),
            realtime_firing_thread: true,
            min_fire_interval: Duration::from_micros(750),
            actions: minoots_core::ActionPolicy::default(),
        }
    }
}

/// The longest window: kernels sharing a PostgreSQL store announce to each other only the
/// timers due within it (`minoots_store::ANNOUNCE_DUE_WITHIN_US`).
pub const MAX_WINDOW: Duration = Duration::from_secs(3_600);

impl KernelConfig {
    /// Refuses settings that would break the scheduler's assumptions, naming the setting.
    pub fn check(&self) -> Result<(), ConfigError> {
        let refuse = |setting: &str, fix: &str| Err(ConfigError::new(setting, fix));
        if self.window < Duration::from_secs(1) || self.window > MAX_WINDOW {
            return refuse("window", "must be 1 s to 1 h");
        }
        if self.refill_interval.is_zero() || self.refill_interval * 2 > self.window {
            return refuse(
                "refill_interval",
                "must be positive and at most half the window",
            );
        }
        for (setting, n) in [
            ("load_batch", self.load_batch),
            ("fire_batch", self.fire_batch),
            (
                "max_fire_batches_in_flight",
                self.max_fire_batches_in_flight,
            ),
            ("rescue_batch", self.rescue_batch),
        ] {
            if n == 0 {
                return refuse(setting, "must be positive");
            }
        }
        if self.max_window_timers < self.load_batch {
            return refuse("max_window_timers", "must be at least load_batch");
        }
        if self.event_retention < Duration::from_secs(60) {
            return refuse("event_retention", "must be at least 1 minute");
        }
        if self.max_sleep.is_zero() || self.max_sleep > Duration::from_secs(10) {
            return refuse("max_sleep", "must be between 0 and 10 s");
        }
        if self.min_fire_interval > Duration::from_millis(100) {
            return refuse("min_fire_interval", "must be at most 100 ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_the_check_and_bad_values_do_not() {
        KernelConfig::default().check().unwrap();
        let bad = KernelConfig {
            refill_interval: Duration::from_secs(40),
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().setting, "refill_interval");
        let bad = KernelConfig {
            max_window_timers: 10,
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().setting, "max_window_timers");
    }
}
