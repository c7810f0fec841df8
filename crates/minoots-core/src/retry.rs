//! Retry policy: how many times a delivery is tried and how long to wait in between.
//!
//! Backoff is exponential with full jitter (a uniformly random delay between zero and the
//! exponential ceiling), as recommended for avoiding synchronized retry storms. A server's
//! `Retry-After` is honoured as a lower bound, capped at the policy's maximum backoff.

use serde::{Deserialize, Serialize};

use crate::error::ValidationErrors;
use crate::limits::{MAX_BACKOFF_MS, MAX_RETRY_ATTEMPTS};

pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_INITIAL_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 3_600_000;
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
pub const MAX_MULTIPLIER: f64 = 10.0;

/// A timer's retry policy as the client wrote it; absent fields take the defaults above.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

impl RetryPolicy {
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }
    pub fn initial_backoff_ms(&self) -> u64 {
        self.initial_backoff_ms
            .unwrap_or(DEFAULT_INITIAL_BACKOFF_MS)
    }
    pub fn max_backoff_ms(&self) -> u64 {
        self.max_backoff_ms.unwrap_or(DEFAULT_MAX_BACKOFF_MS)
    }
    pub fn multiplier(&self) -> f64 {
        self.multiplier.unwrap_or(DEFAULT_MULTIPLIER)
    }

    pub fn validate(&self, path: &str, errors: &mut ValidationErrors) {
        if let Some(n) = self.max_attempts
            && (n == 0 || n > MAX_RETRY_ATTEMPTS)
        {
            errors.push(
                format!("{path}.maxAttempts"),
                format!("must be between 1 and {MAX_RETRY_ATTEMPTS}"),
            );
        }
        if let Some(ms) = self.initial_backoff_ms
            && (ms == 0 || ms > MAX_BACKOFF_MS)
        {
            errors.push(
                format!("{path}.initialBackoffMs"),
                format!("must be between 1 and {MAX_BACKOFF_MS} milliseconds"),
            );
        }
        if let Some(ms) = self.max_backoff_ms
            && (ms == 0 || ms > MAX_BACKOFF_MS)
        {
            errors.push(
                format!("{path}.maxBackoffMs"),
                format!("must be between 1 and {MAX_BACKOFF_MS} milliseconds (7 days)"),
            );
        }
        if self.initial_backoff_ms() > self.max_backoff_ms() {
            errors.push(
                format!("{path}.maxBackoffMs"),
                "must be at least initialBackoffMs",
            );
        }
        if let Some(m) = self.multiplier
            && !(1.0..=MAX_MULTIPLIER).contains(&m)
        {
            errors.push(
                format!("{path}.multiplier"),
                format!("must be between 1 and {MAX_MULTIPLIER}"),
            );
        }
    }

    /// The exponential ceiling before attempt `failed_attempt + 1`, in milliseconds.
    pub fn ceiling_ms(&self, failed_attempt: u32) -> u64 {
        let exp = self
            .multiplier()
            .powi(failed_attempt.saturating_sub(1).min(64) as i32);
        let ceiling = self.initial_backoff_ms() as f64 * exp;
        ceiling.min(self.max_backoff_ms() as f64) as u64
    }

    /// The delay before the next attempt after attempt number `failed_attempt` (1-based)
    /// failed. `unit_random` is uniform in `[0, 1)`; `retry_after_ms` is the server's hint.
    pub fn backoff_ms(
        &self,
        failed_attempt: u32,
        unit_random: f64,
        retry_after_ms: Option<u64>,
    ) -> u64 {
        let jittered =
            (self.ceiling_ms(failed_attempt) as f64 * unit_random.clamp(0.0, 1.0)) as u64;
        match retry_after_ms {
            Some(hint) => jittered.max(hint.min(self.max_backoff_ms())),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_api_contract() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.initial_backoff_ms(), 1_000);
        assert_eq!(p.max_backoff_ms(), 3_600_000);
        assert_eq!(p.ceiling_ms(1), 1_000);
        assert_eq!(p.ceiling_ms(2), 2_000);
        assert_eq!(p.ceiling_ms(4), 8_000);
        assert_eq!(p.ceiling_ms(40), 3_600_000);
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling_and_retry_after_is_a_capped_floor() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ms(3, 0.0, None), 0);
        assert_eq!(p.backoff_ms(3, 0.5, None), 2_000);
        assert!(p.backoff_ms(3, 0.999, None) < 4_000);
        assert_eq!(p.backoff_ms(1, 0.1, Some(30_000)), 30_000);
        assert_eq!(p.backoff_ms(1, 0.1, Some(99_999_999)), 3_600_000);
    }

    #[test]
    fn validation_names_each_bad_field() {
        let p = RetryPolicy {
            max_attempts: Some(0),
            initial_backoff_ms: Some(10_000),
            max_backoff_ms: Some(5_000),
            multiplier: Some(0.5),
        };
        let mut e = ValidationErrors::new();
        p.validate("actionBundle.retryPolicy", &mut e);
        for f in ["maxAttempts", "maxBackoffMs", "multiplier"] {
            assert!(e.has_field(&format!("actionBundle.retryPolicy.{f}")), "{e}");
        }
    }
}
