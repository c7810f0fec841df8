//! `POST /webhooks/stripe`: Stripe's events, applied only once verified. The raw body
//! (at most [`MAX_WEBHOOK_BODY_BYTES`]) is checked against the `Stripe-Signature` header
//! before it is parsed ([`super::signature`]); a verified event becomes a
//! [`BillingEvent`] that the kernel records once, with its effect, in one transaction.
//!
//! Stripe retries for days, repeats events and does not keep their order, so: an event id
//! recorded before is answered 200 with no effect; a subscription event carries the
//! subscription's state at the event's time and is applied only if it is not older than
//! the state applied (`minoots_core::billing::plan_account`); a checkout or invoice event
//! says only that something changed, so the subscription's current state is fetched from
//! Stripe and applied. Bad input is a 400 naming what is wrong, never a 500; a storage or
//! Stripe failure is a 5xx, so Stripe tries again later.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use minoots_core::billing::{BillingApplied, BillingChange, BillingEvent, SubscriptionStatus};
use serde_json::{Value, json};

use super::stripe::{StripeError, Subscription, id_of};
use super::{BillingConfig, billing_of, signature, stripe_error};
use crate::AppState;
use crate::problem::{ApiError, ApiResult};
use crate::timers::json_response;

/// Largest webhook body read, in bytes (Stripe's events are a few KiB; 413 beyond).
pub const MAX_WEBHOOK_BODY_BYTES: usize = 256 * 1024;

/// The parts of a verified event that MINOOTS reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub created_s: i64,
    pub object: Value,
}

/// Reads a verified body; the sentence says what is missing.
pub fn parse_event(body: &[u8]) -> Result<StripeEvent, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let text = |k: &str| {
        v[k].as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("the event has no \"{k}\" string"))
    };
    Ok(StripeEvent {
        id: text("id")?,
        event_type: text("type")?,
        created_s: v["created"]
            .as_i64()
            .ok_or("the event has no \"created\" time")?,
        object: v["data"]["object"].clone(),
    })
}

/// What to fetch from Stripe before the event can be applied: the subscription whose
/// current state a checkout or invoice event stands for.
pub fn subscription_to_fetch(e: &StripeEvent) -> Option<String> {
    match e.event_type.as_str() {
        "checkout.session.completed" => id_of(&e.object["subscription"]),
        "invoice.paid" | "invoice.payment_failed" => id_of(&e.object["subscription"])
            .or_else(|| id_of(&e.object["parent"]["subscription_details"]["subscription"])),
        _ => None,
    }
}

fn valid_tenant(t: Option<String>) -> Option<String> {
    t.filter(|t| minoots_core::request::check_tenant_id(t).is_ok())
}

/// The billing change `e` stands for, given the subscription fetched for it (if any);
/// `None` for an event with no effect on billing.
pub fn change_of(
    e: &StripeEvent,
    fetched: Option<&Subscription>,
    config: &BillingConfig,
) -> Option<BillingChange> {
    let from_object;
    let (tenant, sub) = match e.event_type.as_str() {
        "checkout.session.completed" => (
            e.object["client_reference_id"].as_str().map(str::to_string),
            fetched,
        ),
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            from_object = Subscription::from_json(&e.object)?;
            (None, Some(&from_object))
        }
        "invoice.paid" | "invoice.payment_failed" => (None, fetched),
        _ => return None,
    };
    let mut status = sub
        .and_then(|s| s.status.as_deref())
        .and_then(|s| s.parse::<SubscriptionStatus>().ok());
    if e.event_type == "customer.subscription.deleted" {
        status = Some(SubscriptionStatus::Canceled);
    }
    let us = |s: Option<i64>| s.map(|s| s.saturating_mul(1_000_000));
    Some(BillingChange {
        tenant_id: valid_tenant(tenant.or_else(|| sub.and_then(|s| s.tenant_id.clone()))),
        customer_id: sub
            .and_then(|s| s.customer.clone())
            .or_else(|| id_of(&e.object["customer"])),
        subscription_id: sub.map(|s| s.id.clone()),
        paid_tier: sub
            .and_then(|s| s.price_id.as_deref())
            .and_then(|p| config.tier_of_price(p))
            .map(str::to_string),
        status,
        current_period_start_us: us(sub.and_then(|s| s.current_period_start_s)),
        current_period_end_us: us(sub.and_then(|s| s.current_period_end_s)),
        event_created_us: e.created_s.saturating_mul(1_000_000),
        grace_us: config.grace.as_micros().min(i64::MAX as u128) as i64,
    })
}

fn bad(detail: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-webhook", detail)
}

async fn read_body(req: Request) -> ApiResult<(axum::http::HeaderMap, Bytes)> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_WEBHOOK_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("a Stripe event is at most {MAX_WEBHOOK_BODY_BYTES} bytes"),
            )
        })?;
    Ok((parts.headers, bytes))
}

pub async fn receive(State(st): State<AppState>, req: Request) -> ApiResult<Response> {
    // A request without a signature is refused as such, billing configured or not.
    if !req.headers().contains_key("stripe-signature") {
        return Err(bad(signature::SignatureError::Missing.to_string()));
    }
    let billing = billing_of(&st)?.clone();
    let (headers, body) = read_body(req).await?;
    let header = match headers.get("stripe-signature") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            bad("the Stripe-Signature header is malformed: it is not ASCII text".into())
        })?),
    };
    let now_s = st.clock.now_us().div_euclid(1_000_000);
    signature::verify(header, &body, &billing.config.webhook_secrets, now_s)
        .map_err(|e| bad(e.to_string()))?;
    let event = parse_event(&body).map_err(bad)?;
    let fetched = match subscription_to_fetch(&event) {
        Some(id) => match billing.stripe.subscription(&id).await {
            Ok(s) => Some(s),
            // A subscription Stripe does not know cannot become known by retrying.
            Err(StripeError::Refused { status: 404, .. }) => None,
            Err(e) => return Err(stripe_error(e)),
        },
        None => None,
    };
    let record = BillingEvent {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        change: change_of(&event, fetched.as_ref(), &billing.config),
    };
    let applied = st
        .kernel_call(st.kernel.record_billing_event(record))
        .await?;
    if applied == BillingApplied::Applied {
        billing.wake.notify_one();
    }
    let effect = match applied {
        BillingApplied::Applied => "applied",
        BillingApplied::Ignored => "ignored",
        BillingApplied::Duplicate => "duplicate",
    };
    tracing::info!(event = %event.id, kind = %event.event_type, effect, "billing: Stripe event");
    Ok(json_response(
        StatusCode::OK,
        &json!({"received": true, "effect": effect}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> BillingConfig {
        BillingConfig {
            secret_key: "sk_test".into(),
            webhook_secrets: vec!["whsec_x".into()],
            prices: [
                ("pro".to_string(), "price_pro".to_string()),
                ("team".into(), "price_team".into()),
            ]
            .into(),
            grace: Duration::from_secs(10),
            api_base: "http://127.0.0.1:1".into(),
            return_url: "http://localhost/ui".into(),
            send_interval: Duration::from_secs(1),
        }
    }

    fn event(kind: &str, object: Value) -> StripeEvent {
        StripeEvent {
            id: "evt_1".into(),
            event_type: kind.into(),
            created_s: 100,
            object,
        }
    }

    #[test]
    fn a_subscription_event_carries_its_state_and_tier() {
        let e = event(
            "customer.subscription.updated",
            json!({"id": "sub_1", "customer": "cus_1", "status": "past_due",
                   "metadata": {"tenant_id": "acme"},
                   "items": {"data": [{"price": {"id": "price_team"}, "current_period_end": 200}]}}),
        );
        let c = change_of(&e, None, &config()).unwrap();
        assert_eq!(c.tenant_id.as_deref(), Some("acme"));
        assert_eq!(c.customer_id.as_deref(), Some("cus_1"));
        assert_eq!(c.paid_tier.as_deref(), Some("team"));
        assert_eq!(c.status, Some(SubscriptionStatus::PastDue));
        assert_eq!(c.current_period_end_us, Some(200_000_000));
        assert_eq!(c.event_created_us, 100_000_000);
        assert_eq!(c.grace_us, 10_000_000);
        let deleted = event("customer.subscription.deleted", e.object.clone());
        assert_eq!(
            change_of(&deleted, None, &config()).unwrap().status,
            Some(SubscriptionStatus::Canceled)
        );
    }

    #[test]
    fn checkout_and_invoices_apply_the_fetched_state() {
        let checkout = event(
            "checkout.session.completed",
            json!({"client_reference_id": "acme", "customer": "cus_1", "subscription": "sub_1"}),
        );
        assert_eq!(subscription_to_fetch(&checkout).as_deref(), Some("sub_1"));
        let sub = Subscription {
            id: "sub_1".into(),
            customer: Some("cus_1".into()),
            status: Some("active".into()),
            price_id: Some("price_pro".into()),
            current_period_start_s: Some(1),
            current_period_end_s: Some(2),
            tenant_id: None,
        };
        let c = change_of(&checkout, Some(&sub), &config()).unwrap();
        assert_eq!(c.tenant_id.as_deref(), Some("acme"));
        assert_eq!(c.paid_tier.as_deref(), Some("pro"));
        assert_eq!(c.status, Some(SubscriptionStatus::Active));
        let invoice = event(
            "invoice.payment_failed",
            json!({"customer": "cus_1", "parent": {"subscription_details": {"subscription": "sub_1"}}}),
        );
        assert_eq!(subscription_to_fetch(&invoice).as_deref(), Some("sub_1"));
        // A bad tenant id in client_reference_id is dropped, not sent to the kernel.
        let odd = event(
            "checkout.session.completed",
            json!({"client_reference_id": "no spaces allowed", "customer": "cus_1"}),
        );
        assert_eq!(change_of(&odd, None, &config()).unwrap().tenant_id, None);
        assert_eq!(
            change_of(&event("charge.refunded", json!({})), None, &config()),
            None
        );
    }

    #[test]
    fn an_event_without_its_fields_is_named() {
        assert!(parse_event(b"nope").unwrap_err().contains("not JSON"));
        assert!(
            parse_event(br#"{"type": "x", "created": 1}"#)
                .unwrap_err()
                .contains("\"id\"")
        );
        assert!(
            parse_event(br#"{"id": "evt", "type": "x"}"#)
                .unwrap_err()
                .contains("created")
        );
        let ok = parse_event(
            br#"{"id": "evt", "type": "x", "created": 5, "data": {"object": {"a": 1}}}"#,
        )
        .unwrap();
        assert_eq!(ok.object["a"], 1);
    }
}
