//! The billing service of the control plane: it ends grace periods that ran out and sends
//! metered usage to Stripe's Billing Meters. The usage is counted by the store in the
//! transaction of each create and each successful delivery, per tenant, meter and bucket
//! (an hour by default); once a bucket is closed, this service sends it as one meter event
//! whose `identifier` names tenant, meter and bucket, then marks it sent. A send that
//! fails is retried with the same identifier (at most [`MAX_SEND_ATTEMPTS`] times per
//! pass, then in the next pass), and Stripe counts an identifier once, so a crash between
//! the send and the mark sends the bucket again without counting it twice; a bucket not
//! yet sent is still in the store after any crash, so none is lost.
//!
//! It runs in every control plane with billing configured (`minoots serve`'s included):
//! the kernel owns the store but never talks to Stripe. Several control planes may send
//! the same bucket; Stripe counts it once all the same.
//!
//! What it must never do: send a bucket that is still open, send a value under another
//! identifier, or stop for good because one row is refused (a refused row is logged and
//! marked, so it cannot block the rows after it).

use std::time::Duration;

use minoots_core::billing::{self, MeterUsage};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::stripe::StripeError;
use crate::AppState;

/// Most usage rows one pass reads and sends; the rest wait for the next pass.
pub const MAX_ROWS_PER_PASS: u32 = 200;
/// Rows marked sent in one write: a crash re-sends at most this many rows (which Stripe
/// counts once), and a pass costs the store one write per this many rows, not one per row.
pub const MARK_CHUNK_ROWS: usize = 25;
/// Attempts per row and pass when Stripe is unavailable.
pub const MAX_SEND_ATTEMPTS: u32 = 3;
/// The first wait between two attempts; doubled after each.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Shortest wait before a pass that follows a grace period's end (so a clock a little
/// behind the store's does not make a busy loop).
const MIN_WAIT: Duration = Duration::from_millis(50);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub sent: u64,
    /// Rows with nothing to send (no Stripe customer, or a value of 0), marked done.
    pub skipped: u64,
    /// Rows Stripe refused for good (logged), marked done.
    pub refused: u64,
    /// Whether Stripe stayed unavailable: the rest waits for the next pass.
    pub stopped: bool,
    pub downgraded: u64,
    pub next_grace_end_us: Option<i64>,
}

/// The billing service's counters (`minoots_billing_*` in `/metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Passes finished (whether or not they sent anything).
    pub passes: Counter,
    /// Meter events Stripe took (or already had).
    pub sent: Counter,
    /// Meter events Stripe refused for good (dropped, logged).
    pub refused: Counter,
    /// Sends that failed and will be tried again.
    pub send_failures: Counter,
    /// Tenants moved to the free tier when their grace period ended.
    pub downgraded: Counter,
}

impl Counters {
    /// Shows the counters in `registry` (the library adds `_total` to each name).
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "minoots_billing_passes",
                "Passes of the billing service (grace sweep and meter send).",
                &self.passes,
            ),
            (
                "minoots_billing_meter_events_sent",
                "Usage buckets Stripe counted (a duplicate answer included).",
                &self.sent,
            ),
            (
                "minoots_billing_meter_events_refused",
                "Usage buckets Stripe refused for good; dropped and logged.",
                &self.refused,
            ),
            (
                "minoots_billing_meter_send_failures",
                "Sends to Stripe that failed and are retried with the same identifier.",
                &self.send_failures,
            ),
            (
                "minoots_billing_grace_downgrades",
                "Tenants moved to the free tier when their grace period ended.",
                &self.downgraded,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
    }
}

enum Outcome {
    Sent,
    Refused,
    Unavailable,
}

async fn send_one(st: &AppState, row: &MeterUsage, customer: &str) -> Outcome {
    let Some(b) = st.billing.as_ref() else {
        return Outcome::Unavailable;
    };
    let identifier = billing::meter_identifier(&row.tenant_id, &row.meter, row.bucket_start_us);
    let timestamp_s = row.bucket_start_us.div_euclid(1_000_000);
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=MAX_SEND_ATTEMPTS {
        match b
            .stripe
            .meter_event(&row.meter, customer, row.value, &identifier, timestamp_s)
            .await
        {
            Ok(()) => return Outcome::Sent,
            Err(e) if e.is_duplicate_meter_event() => return Outcome::Sent,
            Err(StripeError::Refused {
                status,
                code,
                message,
            }) => {
                tracing::error!(
                    identifier,
                    status,
                    code,
                    message,
                    "billing: Stripe refused a meter event; it is dropped"
                );
                return Outcome::Refused;
            }
            Err(StripeError::Unavailable(m)) => {
                b.counters.send_failures.inc();
                tracing::warn!(identifier, attempt, error = %m, "billing: meter event not sent");
                if attempt < MAX_SEND_ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
    Outcome::Unavailable
}

/// One pass: end the grace periods that ran out, then send the closed buckets.
pub async fn pass(st: &AppState) -> Result<Pass, String> {
    let mut p = Pass::default();
    let sweep = st
        .kernel
        .expire_billing_grace()
        .await
        .map_err(|e| e.to_string())?;
    p.downgraded = sweep.downgraded;
    p.next_grace_end_us = sweep.next_grace_end_us;
    if sweep.downgraded > 0 {
        tracing::info!(
            tenants = sweep.downgraded,
            "billing: grace ended; tenants moved to the free tier"
        );
    }
    let rows = st
        .kernel
        .meter_usage_ready(MAX_ROWS_PER_PASS)
        .await
        .map_err(|e| e.to_string())?;
    let mut done: Vec<(String, String, i64)> = Vec::with_capacity(MARK_CHUNK_ROWS);
    for row in rows {
        let outcome = match row.customer_id.as_deref() {
            Some(c) if row.value > 0 => send_one(st, &row, c).await,
            _ => {
                p.skipped += 1;
                Outcome::Sent
            }
        };
        match outcome {
            Outcome::Sent if row.customer_id.is_some() && row.value > 0 => p.sent += 1,
            Outcome::Sent => {}
            Outcome::Refused => p.refused += 1,
            Outcome::Unavailable => {
                p.stopped = true;
                break;
            }
        }
        done.push((row.tenant_id, row.meter, row.bucket_start_us));
        if done.len() >= MARK_CHUNK_ROWS {
            mark(st, &mut done).await?;
        }
    }
    mark(st, &mut done).await?;
    Ok(p)
}

/// Marks `done` sent and empties it.
async fn mark(st: &AppState, done: &mut Vec<(String, String, i64)>) -> Result<(), String> {
    if done.is_empty() {
        return Ok(());
    }
    st.kernel
        .mark_meter_sent(std::mem::take(done))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Runs passes every `send_interval` (sooner when a grace period ends first) until `stop`
/// turns true. Does nothing on a server without billing.
pub async fn run(st: AppState, mut stop: watch::Receiver<bool>) {
    let Some(b) = st.billing.clone() else {
        return;
    };
    let interval = b.config.send_interval;
    loop {
        let wait = match pass(&st).await {
            Ok(p) => {
                let c = &b.counters;
                c.sent.inc_by(p.sent);
                c.refused.inc_by(p.refused);
                c.downgraded.inc_by(p.downgraded);
                c.passes.inc();
                if p.sent + p.refused > 0 || p.stopped {
                    tracing::info!(
                        sent = p.sent,
                        refused = p.refused,
                        skipped = p.skipped,
                        stopped = p.stopped,
                        "billing: meter pass"
                    );
                }
                let until_grace = p.next_grace_end_us.map(|g| {
                    let left = g.saturating_sub(st.clock.now_us()).max(0) as u64;
                    Duration::from_micros(left).max(MIN_WAIT)
                });
                until_grace.map_or(interval, |g| g.min(interval))
            }
            Err(e) => {
                tracing::warn!(error = %e, "billing: pass failed; retrying at the next one");
                interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = b.wake.notified() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}
