//! Per-key rate limits with GCRA (the generic cell rate algorithm): one "theoretical
//! arrival time" per key, so a limit of N per minute admits bursts of up to N and then one
//! request every 60/N seconds, with exact `Retry-After` and `RateLimit-*` values.
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
    /// Counts one request by `key` against `per_minute` (> 0).
    pub fn check(&self, key: &str, per_minute: u32) -> Decision {
        let per_minute = per_minute.max(1);
        let now = Instant::now();
        let t = WINDOW / per_minute;
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
        // The bucket holds `per_minute` requests: admitted while new_tat − now ≤ WINDOW.
        let ahead = new_tat - now;
        if ahead > WINDOW {
            let wait = ahead - WINDOW;
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
        let remaining = ((WINDOW - ahead).as_nanos() / t.as_nanos()) as u32;
        Decision {
            allowed: true,
            limit: per_minute,
            remaining,
            reset_s: ceil_s(ahead),
            retry_after_s: 0,
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
}
