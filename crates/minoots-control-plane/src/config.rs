//! The control plane's configuration: limits on requests, the tiers and their quotas.
//! Every field has a documented default; [`ControlPlaneConfig::check`] refuses values that
//! would make the service unsafe or useless.

use std::collections::BTreeMap;
use std::time::Duration;

use minoots_core::ConfigError;
use minoots_kernel_api::api::{MAX_UI_SESSION_TTL, MIN_UI_SESSION_TTL};
use serde::{Deserialize, Serialize};

/// Largest request body accepted by default (1 MiB): a timer is at most ~1.2 MiB only with
/// 16 actions carrying 64 KiB bodies each, which an operator may allow by raising this.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 1024 * 1024;
/// Most concurrent SSE streams served by one control plane.
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 4_096;
/// Most open client connections; more wait in the accept backlog. Below the usual
/// descriptor limit (often 1,024 soft / 20,000+ hard) with room for the store and clients.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
/// Failed authentications one client address may make at once before it is answered 429.
/// A client with a wrong key stops after one 401; a flood of guessed keys is cut off after
/// this many store lookups. Above the 3 failures per route that checking every route with
/// an unknown, a revoked and an expired key takes (about 75 today).
pub const DEFAULT_FAILED_AUTH_BURST: u32 = 100;
/// Failed authentications per client address per minute once the burst is spent (one a
/// second): the sustained rate of key lookups one address can cause.
pub const DEFAULT_FAILED_AUTH_PER_MINUTE: u32 = 60;
/// How long a dashboard session lasts by default: a working day, after which the
/// dashboard asks for the key again.
pub const DEFAULT_UI_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Longest long-poll `wait` a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// `wait` without a `timeout` parameter.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The limits of one tier. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierLimits {
    /// Requests per minute per API key (GCRA, bursts up to the same number).
    pub requests_per_minute: Option<u32>,
    /// `POST /timers` per minute per API key.
    pub creates_per_minute: Option<u32>,
    /// Timers created per tenant per UTC day.
    pub timers_per_day: Option<u64>,
    /// Scheduled (not yet fired or cancelled) timers per tenant.
    pub pending_timers: Option<u64>,
    /// Farthest fire time from now, in milliseconds.
    pub max_duration_ms: Option<i64>,
    /// Schedules per tenant (active and paused).
    #[serde(default)]
    pub schedules: Option<u64>,
    /// The shortest time between two slots of one schedule, in milliseconds: a schedule
    /// whose slots come closer anywhere in its first day is refused.
    #[serde(default)]
    pub min_schedule_interval_ms: Option<i64>,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl TierLimits {
    pub const UNLIMITED: TierLimits = TierLimits {
        requests_per_minute: None,
        creates_per_minute: None,
        timers_per_day: None,
        pending_timers: None,
        max_duration_ms: None,
        schedules: None,
        min_schedule_interval_ms: None,
    };

    const fn of(rpm: u32, cpm: u32, per_day: Option<u64>, pending: Option<u64>, days: i64) -> Self {
        TierLimits {
            requests_per_minute: Some(rpm),
            creates_per_minute: Some(cpm),
            timers_per_day: per_day,
            pending_timers: pending,
            max_duration_ms: Some(days * DAY_MS),
            schedules: None,
            min_schedule_interval_ms: None,
        }
    }

    /// The same limits with at most `schedules` schedules whose slots are at least
    /// `min_interval_s` apart.
    const fn with_schedules(mut self, schedules: Option<u64>, min_interval_s: i64) -> Self {
        self.schedules = schedules;
        self.min_schedule_interval_ms = Some(min_interval_s * 1000);
        self
    }
}

/// The tiers every MINOOTS knows, with the default limits of the API contract.
pub fn default_tiers() -> BTreeMap<String, TierLimits> {
    let mut t = BTreeMap::new();
    t.insert(
        "free".into(),
        TierLimits::of(60, 10, Some(100), Some(5), 7).with_schedules(Some(5), 60),
    );
    t.insert(
        "pro".into(),
        TierLimits::of(600, 100, Some(10_000), Some(1_000), 365).with_schedules(Some(100), 10),
    );
    t.insert(
        "team".into(),
        TierLimits::of(3_000, 500, Some(100_000), Some(10_000), 3_650)
            .with_schedules(Some(1_000), 1),
    );
    t.insert(
        "enterprise".into(),
        TierLimits::of(10_000, 2_000, None, None, 3_650).with_schedules(None, 1),
    );
    t.insert("unlimited".into(), TierLimits::UNLIMITED);
    t
}

#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Largest request body, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Tier name → limits. A tenant whose tier is not listed here is refused (403) until an
    /// operator fixes its tier, rather than silently served without limits.
    pub tiers: BTreeMap<String, TierLimits>,
    /// How long one call to the kernel may take before the client gets 503.
    pub kernel_timeout: Duration,
    /// Interval of SSE keep-alive comments.
    pub sse_keep_alive: Duration,
    /// Most concurrent SSE streams; more get 503 with `Retry-After`.
    pub max_event_streams: usize,
    /// Most open client connections at once.
    pub max_connections: usize,
    /// Demo mode: said in `/healthz` so nobody mistakes a demo for production.
    pub demo: bool,
    /// Failed authentications (a well-formed key that is unknown, revoked or expired) one
    /// client address may make per minute (GCRA) before its requests with a key are
    /// answered 429 without any lookup. IPv6 addresses count per /64.
    pub failed_auth_per_minute: u32,
    /// How many of them may come at once. Authentications of an address still being
    /// checked count against it until they succeed, so this is also the most one address
    /// may have checked at once (behind a proxy that carries many clients, raise it).
    pub failed_auth_burst: u32,
    /// How long a dashboard session lasts (never past its key's expiry), between
    /// [`MIN_UI_SESSION_TTL`] (1 min) and [`MAX_UI_SESSION_TTL`] (7 days).
    pub ui_session_ttl: Duration,
    /// Whether the API is served over HTTPS (a proxy terminates TLS in front of it): the
    /// session cookie is then `Secure` and a cookie write's `Origin` must be `https://`.
    /// Without it, only a request with `X-Forwarded-Proto: https` is taken for HTTPS.
    pub secure_cookies: bool,
    /// Billing with Stripe; `None` (the default) keeps tiers set by admins only.
    pub billing: Option<crate::billing::BillingConfig>,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            tiers: default_tiers(),
            kernel_timeout: Duration::from_secs(10),
            sse_keep_alive: Duration::from_secs(15),
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            demo: false,
            failed_auth_per_minute: DEFAULT_FAILED_AUTH_PER_MINUTE,
            failed_auth_burst: DEFAULT_FAILED_AUTH_BURST,
            ui_session_ttl: DEFAULT_UI_SESSION_TTL,
            secure_cookies: false,
            billing: None,
        }
    }
}

impl ControlPlaneConfig {
    /// Refuses settings that would make the service unsafe or useless, naming the setting
    /// as the operator writes it.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(1024..=64 * 1024 * 1024).contains(&self.body_limit_bytes) {
            return Err(ConfigError::new(
                "body_limit_bytes (--body-limit-bytes, MINOOTS_BODY_LIMIT_BYTES)",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        for (setting, zero) in [
            ("kernel_timeout", self.kernel_timeout.is_zero()),
            ("sse_keep_alive", self.sse_keep_alive.is_zero()),
            ("max_event_streams", self.max_event_streams == 0),
            ("max_connections", self.max_connections == 0),
            ("failed_auth_per_minute", self.failed_auth_per_minute == 0),
            ("failed_auth_burst", self.failed_auth_burst == 0),
        ] {
            if zero {
                return Err(ConfigError::new(setting, "must be positive"));
            }
        }
        if !(MIN_UI_SESSION_TTL..=MAX_UI_SESSION_TTL).contains(&self.ui_session_ttl) {
            return Err(ConfigError::new(
                "ui_session_ttl (--ui-session-ttl, MINOOTS_UI_SESSION_TTL)",
                "must be between 1m and 7d",
            ));
        }
        if let Some(b) = &self.billing {
            b.check(&self.tiers)?;
        }
        for (name, t) in &self.tiers {
            if t.requests_per_minute == Some(0) || t.creates_per_minute == Some(0) {
                return Err(ConfigError::new(
                    format!("tiers.{name} (MINOOTS_TIERS)"),
                    "a rate of 0 per minute would refuse everything; remove the tier instead",
                ));
            }
            if t.max_duration_ms.is_some_and(|d| d <= 0) {
                return Err(ConfigError::new(
                    format!("tiers.{name} (MINOOTS_TIERS)"),
                    "maxDurationMs must be positive",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract_and_pass_the_check() {
        let c = ControlPlaneConfig::default();
        c.check().unwrap();
        let free = c.tiers["free"];
        assert_eq!(free.requests_per_minute, Some(60));
        assert_eq!(free.creates_per_minute, Some(10));
        assert_eq!(free.timers_per_day, Some(100));
        assert_eq!(free.pending_timers, Some(5));
        assert_eq!(free.max_duration_ms, Some(7 * DAY_MS));
        assert_eq!(c.tiers["enterprise"].timers_per_day, None);
        assert_eq!(c.tiers["unlimited"], TierLimits::UNLIMITED);
        assert_eq!(c.failed_auth_burst, 100);
        assert_eq!(c.failed_auth_per_minute, 60);
        let mut no_failures = c.clone();
        no_failures.failed_auth_burst = 0;
        assert_eq!(
            no_failures.check().unwrap_err().setting,
            "failed_auth_burst"
        );
        let mut bad = c.clone();
        bad.tiers.get_mut("pro").unwrap().creates_per_minute = Some(0);
        assert_eq!(
            bad.check().unwrap_err().setting,
            "tiers.pro (MINOOTS_TIERS)"
        );
    }
}
