//! Billing in the store: what [`BillingStore`] asks of every backend. A backend records
//! each verified Stripe event id once, in the same transaction as its effect (the
//! tenant's account and tier, as [`minoots_core::billing::plan_account`] decides); reads
//! a tenant's account and metered usage; ends grace periods that ran out; and hands out
//! the usage buckets that are ready to be sent to Stripe, then marks them sent.
//!
//! Usage itself is counted by the writes that cause it (a create, a successful delivery
//! report), in their own transactions, one upsert per tenant, meter and bucket per group
//! commit. Backends never decide a tier, a grace period or which bucket is ready: the
//! core's pure functions do, with the store's time.

use async_trait::async_trait;
use minoots_core::billing::{BillingApplied, BillingEvent, BillingState, GraceSweep, MeterUsage};

use crate::types::*;

/// Most usage rows one call to [`BillingStore::meter_usage_ready`] hands out.
pub const MAX_METER_ROWS_PER_READ: usize = 1_000;
/// Most grace periods one call to [`BillingStore::expire_billing_grace`] ends.
pub const MAX_GRACE_EXPIRIES_PER_SWEEP: usize = 1_000;
/// Longest Stripe id or event type stored (Stripe's ids are about 30 characters).
pub const MAX_STRIPE_ID_BYTES: usize = 255;

/// Billing of a backend; a supertrait of [`crate::Store`], so `Arc<dyn Store>` has it.
#[async_trait]
pub trait BillingStore: Send + Sync + 'static {
    /// Records `event` and applies its change, in one transaction at the store's now:
    /// `Duplicate` (nothing written) when its id was recorded before. The tenant is the
    /// change's `tenant_id` when that tenant exists, else the owner of its `customer_id`;
    /// without one, the event is recorded with no effect (`Ignored`). When the account
    /// changes, the tenant's tier becomes the account's effective tier now.
    async fn record_billing_event(&self, event: BillingEvent) -> StoreResult<BillingApplied>;

    /// The tenant's account (if any) and its usage per meter since the start of its
    /// current period, or since `default_since_us` when no period is known.
    async fn billing_state(
        &self,
        tenant_id: &str,
        default_since_us: i64,
    ) -> StoreResult<BillingState>;

    /// Moves to the free tier, at the store's now, the tenants whose subscription is past
    /// due and whose grace period ended (at most `limit` of them, capped at
    /// [`MAX_GRACE_EXPIRIES_PER_SWEEP`]); says how many, and when the next grace ends.
    async fn expire_billing_grace(&self, limit: usize) -> StoreResult<GraceSweep>;

    /// Unsent usage of buckets that ended at or before `ended_before_us`, oldest bucket
    /// first, at most `limit` rows (capped at [`MAX_METER_ROWS_PER_READ`]), each with its
    /// tenant's Stripe customer as of now.
    async fn meter_usage_ready(
        &self,
        ended_before_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<MeterUsage>>;

    /// Marks usage rows, given as (tenant, meter, bucket start), as sent (or as having no
    /// customer to send to) at the store's now; rows already marked keep their time.
    /// Returns how many were marked now.
    async fn mark_meter_sent(&self, rows: Vec<(String, String, i64)>) -> StoreResult<usize>;

    /// Deletes up to `limit` usage rows whose bucket ended before `ended_before_us`, sent or
    /// not (retention); returns how many.
    async fn prune_meter_usage(&self, ended_before_us: i64, limit: usize) -> StoreResult<usize>;
}

/// The effect recorded with an event id, as stored in `billing_events.effect`.
pub(crate) fn effect_name(applied: BillingApplied) -> &'static str {
    match applied {
        BillingApplied::Applied => "applied",
        BillingApplied::Ignored | BillingApplied::Duplicate => "ignored",
    }
}

/// Whether the event's ids and names fit what the store keeps; the sentence says what
/// does not. The kernel checks this before anything is written.
pub fn check_event(event: &BillingEvent) -> Result<(), String> {
    let too_long = |s: &str| s.len() > MAX_STRIPE_ID_BYTES;
    let change = event.change.as_ref();
    let ids = [
        Some(event.id.as_str()),
        Some(event.event_type.as_str()),
        change.and_then(|c| c.tenant_id.as_deref()),
        change.and_then(|c| c.customer_id.as_deref()),
        change.and_then(|c| c.subscription_id.as_deref()),
        change.and_then(|c| c.paid_tier.as_deref()),
    ];
    if event.id.is_empty() || ids.into_iter().flatten().any(too_long) {
        return Err(format!(
            "a Stripe event id must be 1 to {MAX_STRIPE_ID_BYTES} bytes, as must its type and ids"
        ));
    }
    Ok(())
}
