//! Per-key rate limits with GCRA (the generic cell rate algorithm): one "theoretical
//! arrival time" per key, so a limit of N per minute admits bursts of up to N (or a
//! burst of its own, [`RateLimiter::check_burst`]) and then one request every 60/N
//! seconds, with exact `Retry-After` and `RateLimit-*` values. [`RateLimiter::refund`]
//! gives back a request counted in advance, for limits on what turns out only afterwards
//! (failed authentications per client address: every authentication is counted before its
//! lookup and refunded when it succeeds, so lookups in flight are within the budget too).
//!
//! The state lives in this process only (the one thing the control plane keeps in memory);
//! several control planes each apply the full limit. Time comes from `tokio::time`, so
//! tests drive it with `tokio::time::pause()`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Keys tracked at once; beyond it, keys whose bucket is full again are forgotten first.
pub const MAX_TRACKED_KEYS: usize = 100_000;

const WINDOW: Duration = Duration::from_secs(60);

/// What a check decided, with the numbers for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The limit per minute.
    pub limit: u32,
    /// Requests that could be made right now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
    /// When refused: seconds until one request will be admitted.
    pub retry_after_s: u64,
}

#[derive(Default)]
pub struct RateLimiter {
    /// (key id, limit per minute) → theoretical arrival time.
    tat: Mutex<HashMap<(String, u32), Instant>>,
}

impl RateLimiter {
    /// Counts one request by `key` against `per_minute` (> 0), bursts up to the same number.
    pub fn check(&self, key: &str, per_minute: u32) -> Decision {
        self.check_burst(key, per_minute, per_minute)
    }

    /// Counts one request by `key` against `per_minute` (> 0) with bursts of up to `burst`
    /// (> 0) requests.
    pub fn check_burst(&self, key: &str, per_minute: u32, burst: u32) -> Decision {
        let per_minute = per_minute.max(1);
        let burst = burst.max(1);
        let now = Instant::now();
        let t = WINDOW / per_minute;
        // The bucket holds `burst` requests of `t` each (exactly WINDOW when they are equal).
        let capacity = WINDOW * burst / per_minute;
        let mut map = self.tat.lock().expect("poisoned");
        if map.len() >= MAX_TRACKED_KEYS {
            map.retain(|_, tat| *tat > now);
            if map.len() >= MAX_TRACKED_KEYS {
                // Every tracked key is mid-burst: forget all rather than grow without bound.
                map.clear();
            }
        }
        let slot = (key.to_string(), per_minute);
        let tat = map.get(&slot).copied().unwrap_or(now).max(now);
        let new_tat = tat + t;
        // Admitted while new_tat − now ≤ capacity.
        let ahead = new_tat - now;
        if ahead > capacity {
            let wait = ahead - capacity;
            let used = tat - now;
            return Decision {
                allowed: false,
                limit: per_minute,
                remaining: 0,
                reset_s: ceil_s(used),
                retry_after_s: ceil_s(wait).max(1),
            };
        }
        map.insert(slot, new_tat);
        let remaining = ((capacity - ahead).as_nanos() / t.as_nanos()) as u32;
        Decision {
            allowed: true,
            limit: per_minute,
            remaining,
            reset_s: ceil_s(ahead),
            retry_after_s: 0,
        }
    }

    /// Gives back one request counted by [`RateLimiter::check_burst`] with `per_minute`.
    pub fn refund(&self, key: &str, per_minute: u32) {
        let t = WINDOW / per_minute.max(1);
        let now = Instant::now();
        let mut map = self.tat.lock().expect("poisoned");
        let slot = (key.to_string(), per_minute.max(1));
        if let Some(tat) = map.get_mut(&slot) {
            match tat.checked_sub(t) {
                Some(earlier) if earlier > now => *tat = earlier,
                _ => {
                    map.remove(&slot);
                }
            }
        }
    }
}

fn ceil_s(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_to_the_limit_then_one_per_interval() {
        let rl = RateLimiter::default();
        for i in 0..60 {
            let d = rl.check("k", 60);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 59 - i);
        }
        let refused = rl.check("k", 60);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_s, 1);
        assert_eq!(refused.reset_s, 60);
        // Another key is not affected.
        assert!(rl.check("other", 60).allowed);
        // One interval later exactly one more is admitted.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(rl.check("k", 60).allowed);
        assert!(!rl.check("k", 60).allowed);
        // After a full window the whole burst is back.
        tokio::time::advance(WINDOW).await;
        let d = rl.check("k", 60);
        assert!(d.allowed);
        assert_eq!(d.remaining, 59);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_the_time_to_the_next_slot() {
        let rl = RateLimiter::default();
        for _ in 0..10 {
            assert!(rl.check("k", 10).allowed);
        }
        let d = rl.check("k", 10);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_s, 6, "10 per minute: one every 6 s");
        tokio::time::advance(Duration::from_millis(5_900)).await;
        assert!(!rl.check("k", 10).allowed);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(rl.check("k", 10).allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_its_own_refills_at_the_rate_and_a_refund_gives_one_back() {
        let rl = RateLimiter::default();
        // 5 at once, then one per second (60 per minute).
        for i in 0..5 {
            let d = rl.check_burst("ip", 60, 5);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 4 - i);
        }
        let refused = rl.check_burst("ip", 60, 5);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_s, 1);
        // A refund makes room for exactly one more.
        rl.refund("ip", 60);
        assert!(rl.check_burst("ip", 60, 5).allowed);
        assert!(!rl.check_burst("ip", 60, 5).allowed);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(rl.check_burst("ip", 60, 5).allowed);
        assert!(!rl.check_burst("ip", 60, 5).allowed);
        // Refunds never make more room than a full bucket, and forget a refilled key.
        for _ in 0..10 {
            rl.refund("ip", 60);
        }
        for _ in 0..5 {
            assert!(rl.check_burst("ip", 60, 5).allowed);
        }
        assert!(!rl.check_burst("ip", 60, 5).allowed);
        // A full bucket again after burst × interval.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(rl.check_burst("ip", 60, 5).remaining, 4);
    }
}
