//! The one way MINOOTS reads the time.
//!
//! Times are microseconds since the Unix epoch (UTC) in an `i64`. Everything that needs
//! "now" takes a [`Clock`], so tests can freeze, advance or jump time and the kernel's
//! promise "never early" can be checked against a clock that misbehaves.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time, microseconds since 1970-01-01T00:00:00Z.
    fn now_us(&self) -> i64;

    /// Registers a callback run whenever the clock is moved by something other than the
    /// passing of time (a manual clock being set). Sleepers use it to re-check their
    /// deadlines. The system clock never calls it: real time needs no wake-up.
    fn on_change(&self, _callback: Box<dyn Fn() + Send + Sync>) {}
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(now_us={})", self.now_us())
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i64,
            Err(e) => -(e.duration().as_micros() as i64),
        }
    }
}

/// A clock that only moves when told to: for tests of time-dependent logic.
#[derive(Default)]
pub struct ManualClock {
    now_us: AtomicI64,
    callbacks: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl ManualClock {
    pub fn new(now_us: i64) -> Arc<Self> {
        Arc::new(Self {
            now_us: AtomicI64::new(now_us),
            callbacks: Mutex::new(Vec::new()),
        })
    }

    /// Sets the time (forwards or backwards) and wakes every registered sleeper.
    pub fn set_us(&self, now_us: i64) {
        self.now_us.store(now_us, Ordering::SeqCst);
        for cb in self
            .callbacks
            .lock()
            .expect("clock callbacks poisoned")
            .iter()
        {
            cb();
        }
    }

    /// Moves the time forward by `delta_us` (or backward when negative).
    pub fn advance_us(&self, delta_us: i64) {
        let now = self.now_us.load(Ordering::SeqCst);
        self.set_us(now + delta_us);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        self.now_us.load(Ordering::SeqCst)
    }

    fn on_change(&self, callback: Box<dyn Fn() + Send + Sync>) {
        self.callbacks
            .lock()
            .expect("clock callbacks poisoned")
            .push(callback);
    }
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("now_us", &self.now_us())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn manual_clock_moves_only_when_told_and_wakes_sleepers() {
        let clock = ManualClock::new(1_000);
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        clock.on_change(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(clock.now_us(), 1_000);
        clock.advance_us(500);
        assert_eq!(clock.now_us(), 1_500);
        clock.set_us(10);
        assert_eq!(clock.now_us(), 10);
        assert_eq!(woken.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now_us() > 1_704_067_200_000_000);
    }
}
