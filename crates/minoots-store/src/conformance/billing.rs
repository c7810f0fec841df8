//! Conformance of billing: a Stripe event is recorded once with its effect (a second
//! delivery has none), subscription states apply in event order whatever the arrival
//! order, a tenant is found by its customer, grace periods end at the store's time, and
//! usage is counted per tenant, meter and bucket by the writes themselves (creates and
//! successful deliveries, not attempts), handed out once its bucket closed, and never
//! again once marked sent.

use minoots_core::billing::{
    BillingApplied, BillingChange, BillingEvent, DEFAULT_METER_BUCKET_US,
    METER_DELIVERIES_SUCCEEDED, METER_TIMERS_CREATED, SubscriptionStatus, meter_bucket,
};
use minoots_core::{AttemptOutcome, Clock};

use super::{Harness, SEC, T0, create, fire, report, timer};
use crate::*;

const GRACE_US: i64 = 60 * SEC;

async fn tenant(h: &Harness, id: &str) {
    let now = h.clock.now_us();
    h.store
        .create_tenant(Tenant {
            id: id.into(),
            name: id.into(),
            tier: "free".into(),
            created_at_us: now,
            updated_at_us: now,
        })
        .await
        .unwrap();
}

async fn tier(h: &Harness, id: &str) -> String {
    h.store.get_tenant(id).await.unwrap().unwrap().tier
}

fn event(id: &str, kind: &str, change: Option<BillingChange>) -> BillingEvent {
    BillingEvent {
        id: id.into(),
        event_type: kind.into(),
        change,
    }
}

fn state(
    tenant: Option<&str>,
    status: SubscriptionStatus,
    paid: Option<&str>,
    created_s: i64,
) -> BillingChange {
    BillingChange {
        tenant_id: tenant.map(str::to_string),
        customer_id: Some("cus_acme".into()),
        subscription_id: Some("sub_acme".into()),
        paid_tier: paid.map(str::to_string),
        status: Some(status),
        current_period_start_us: Some(T0 - 3_600 * SEC),
        current_period_end_us: Some(T0 + 30 * 86_400 * SEC),
        event_created_us: created_s * SEC,
        grace_us: GRACE_US,
    }
}

pub async fn billing_events_apply_once_in_order_with_grace(h: &Harness) {
    use SubscriptionStatus::*;
    tenant(h, "acme").await;
    tenant(h, "other").await;
    let s = &h.store;
    let checkout = event(
        "evt_1",
        "checkout.session.completed",
        Some(state(Some("acme"), Active, Some("pro"), 10)),
    );
    assert_eq!(
        s.record_billing_event(checkout.clone()).await.unwrap(),
        BillingApplied::Applied
    );
    assert_eq!(tier(h, "acme").await, "pro");
    // The same event again: no effect, even after the tier was changed by hand.
    s.update_tenant(
        "acme",
        TenantUpdate {
            name: None,
            tier: Some("free".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.record_billing_event(checkout).await.unwrap(),
        BillingApplied::Duplicate
    );
    assert_eq!(tier(h, "acme").await, "free");
    // team, then an older pro: team stays. The tenant is found by its customer.
    let team = event(
        "evt_2",
        "customer.subscription.updated",
        Some(state(None, Active, Some("team"), 20)),
    );
    assert_eq!(
        s.record_billing_event(team).await.unwrap(),
        BillingApplied::Applied
    );
    let older = event(
        "evt_3",
        "customer.subscription.updated",
        Some(state(None, Active, Some("pro"), 15)),
    );
    assert_eq!(
        s.record_billing_event(older).await.unwrap(),
        BillingApplied::Ignored
    );
    assert_eq!(tier(h, "acme").await, "team");
    assert_eq!(
        tier(h, "other").await,
        "free",
        "another tenant is untouched"
    );

    // A failed payment keeps the tier until the grace period ends at the store's time.
    let failed_at = h.clock.now_us();
    let failed = event(
        "evt_4",
        "invoice.payment_failed",
        Some(state(None, PastDue, Some("team"), 30)),
    );
    assert_eq!(
        s.record_billing_event(failed).await.unwrap(),
        BillingApplied::Applied
    );
    assert_eq!(tier(h, "acme").await, "team");
    let account = s.billing_state("acme", 0).await.unwrap().account.unwrap();
    assert_eq!(account.grace_until_us, Some(failed_at + GRACE_US));
    assert_eq!(account.status, Some(PastDue));
    let early = s.expire_billing_grace(100).await.unwrap();
    assert_eq!(early.downgraded, 0);
    assert_eq!(early.next_grace_end_us, Some(failed_at + GRACE_US));
    h.clock.advance_us(GRACE_US);
    let ended = s.expire_billing_grace(100).await.unwrap();
    assert_eq!((ended.downgraded, ended.next_grace_end_us), (1, None));
    assert_eq!(tier(h, "acme").await, "free");
    assert_eq!(
        s.expire_billing_grace(100).await.unwrap().downgraded,
        0,
        "once"
    );

    // Paid: the tier is back; deleted: free.
    let paid = event(
        "evt_5",
        "invoice.paid",
        Some(state(None, Active, Some("team"), 40)),
    );
    assert_eq!(
        s.record_billing_event(paid).await.unwrap(),
        BillingApplied::Applied
    );
    assert_eq!(tier(h, "acme").await, "team");
    assert_eq!(
        s.billing_state("acme", 0)
            .await
            .unwrap()
            .account
            .unwrap()
            .grace_until_us,
        None
    );
    let deleted = event(
        "evt_6",
        "customer.subscription.deleted",
        Some(state(None, Canceled, Some("team"), 50)),
    );
    assert_eq!(
        s.record_billing_event(deleted).await.unwrap(),
        BillingApplied::Applied
    );
    assert_eq!(tier(h, "acme").await, "free");

    // Unknown customers and tenants, and events with no change, are recorded only.
    let mut stranger = state(Some("nobody"), Active, Some("pro"), 60);
    stranger.customer_id = Some("cus_nobody".into());
    let e = event("evt_7", "customer.subscription.created", Some(stranger));
    assert_eq!(
        s.record_billing_event(e.clone()).await.unwrap(),
        BillingApplied::Ignored
    );
    assert_eq!(
        s.record_billing_event(e).await.unwrap(),
        BillingApplied::Duplicate
    );
    let other = event("evt_8", "charge.refunded", None);
    assert_eq!(
        s.record_billing_event(other.clone()).await.unwrap(),
        BillingApplied::Ignored
    );
    assert_eq!(
        s.record_billing_event(other).await.unwrap(),
        BillingApplied::Duplicate
    );
    assert_eq!(s.billing_state("other", 0).await.unwrap().account, None);
}

pub async fn usage_is_metered_per_bucket_and_handed_out_once(h: &Harness) {
    tenant(h, "acme").await;
    let s = &h.store;
    let (start, end) = meter_bucket(h.clock.now_us(), DEFAULT_METER_BUCKET_US);
    // 3 creates for acme, 1 for other; an idempotent replay counts nothing.
    let mut timers = Vec::new();
    for _ in 0..3 {
        timers.push(create(h, timer(h, "acme", T0 + SEC, 1)).await);
    }
    create(h, timer(h, "other", T0 + SEC, 0)).await;
    // 2 deliveries succeed; a third fails once (an attempt, not a success).
    h.clock.advance_us(SEC);
    for t in &timers {
        fire(h, t.id).await;
    }
    let claimed = s.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let now = h.clock.now_us();
    for (i, d) in claimed.iter().enumerate() {
        let outcome = if i < 2 {
            AttemptOutcome::Succeeded
        } else {
            AttemptOutcome::Retryable
        };
        s.report_attempt(report(d, outcome, now)).await.unwrap();
    }
    // Nothing is ready while the bucket is open.
    assert!(s.meter_usage_ready(end - 1, 100).await.unwrap().is_empty());
    let mut ready = s.meter_usage_ready(end, 100).await.unwrap();
    ready.sort_by(|a, b| (&a.tenant_id, &a.meter).cmp(&(&b.tenant_id, &b.meter)));
    let got: Vec<(&str, &str, i64, i64, i64)> = ready
        .iter()
        .map(|u| {
            (
                u.tenant_id.as_str(),
                u.meter.as_str(),
                u.bucket_start_us,
                u.bucket_end_us,
                u.value,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("acme", METER_DELIVERIES_SUCCEEDED, start, end, 2),
            ("acme", METER_TIMERS_CREATED, start, end, 3),
            ("other", METER_TIMERS_CREATED, start, end, 1),
        ]
    );
    assert!(
        ready.iter().all(|u| u.customer_id.is_none()),
        "no account yet"
    );
    let usage = s.billing_state("acme", start).await.unwrap();
    assert_eq!(
        usage.usage,
        vec![
            (METER_TIMERS_CREATED.to_string(), 3),
            (METER_DELIVERIES_SUCCEEDED.to_string(), 2)
        ]
    );
    assert_eq!(
        s.billing_state("acme", end).await.unwrap().usage[0].1,
        0,
        "since the period start"
    );

    // The customer shows once linked; a limit bounds a read.
    let link = BillingChange {
        tenant_id: Some("acme".into()),
        customer_id: Some("cus_acme".into()),
        event_created_us: 1,
        ..Default::default()
    };
    s.record_billing_event(event("evt_link", "checkout.session.completed", Some(link)))
        .await
        .unwrap();
    let two = s.meter_usage_ready(end, 2).await.unwrap();
    assert_eq!(two.len(), 2);
    assert!(
        two.iter()
            .filter(|u| u.tenant_id == "acme")
            .all(|u| u.customer_id.as_deref() == Some("cus_acme"))
    );

    // Marked sent: never handed out again; marking twice marks nothing more.
    let keys: Vec<(String, String, i64)> = ready
        .iter()
        .map(|u| (u.tenant_id.clone(), u.meter.clone(), u.bucket_start_us))
        .collect();
    assert_eq!(s.mark_meter_sent(keys[..2].to_vec()).await.unwrap(), 2);
    assert_eq!(s.mark_meter_sent(keys.clone()).await.unwrap(), 1);
    assert!(s.meter_usage_ready(end, 100).await.unwrap().is_empty());
    // A success in the next bucket is a new row.
    h.clock.set_us(end + SEC);
    let retry = s.claim_deliveries("w1", 30 * SEC, 10).await.unwrap();
    assert_eq!(retry.len(), 1, "the failed delivery, due again");
    s.report_attempt(report(
        &retry[0],
        AttemptOutcome::Succeeded,
        h.clock.now_us(),
    ))
    .await
    .unwrap();
    let next = s
        .meter_usage_ready(end + DEFAULT_METER_BUCKET_US, 100)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        (
            next[0].meter.as_str(),
            next[0].bucket_start_us,
            next[0].value
        ),
        (METER_DELIVERIES_SUCCEEDED, end, 1)
    );

    // Retention: rows of buckets ended before the cutoff go, sent or not, a bounded
    // batch at a time; newer ones stay.
    assert_eq!(s.prune_meter_usage(end, 100).await.unwrap(), 0);
    assert_eq!(s.prune_meter_usage(end + 1, 2).await.unwrap(), 2);
    assert_eq!(s.prune_meter_usage(end + 1, 100).await.unwrap(), 1);
    let left = s
        .meter_usage_ready(end + DEFAULT_METER_BUCKET_US, 100)
        .await
        .unwrap();
    assert_eq!(left, next, "the newer bucket is kept");
}
