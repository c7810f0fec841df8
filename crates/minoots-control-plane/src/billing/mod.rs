//! Billing with Stripe, when the operator configures it: tenants buy and change their
//! tier through Stripe Checkout and the Customer Portal (`POST /billing/checkout`,
//! `POST /billing/portal`), see their plan and usage (`GET /billing`), and MINOOTS
//! applies what verified Stripe events say (`POST /webhooks/stripe`, [`webhook`]). Usage
//! counted by the store reaches Stripe's Billing Meters through [`meter`], the background
//! service of the control plane.
//!
//! This module holds no state: accounts, event ids and usage live in the kernel's store,
//! reached through the kernel API. Without a Stripe secret key billing is off: every
//! billing endpoint answers 404 `billing-not-configured`, and tiers are set by admins.
//! It must never change a tier on anything but a verified Stripe event (or a grace period
//! that a verified event opened and that ran out).

pub mod meter;
pub mod signature;
pub mod stripe;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use minoots_core::ConfigError;
use minoots_core::billing::{self as policy, BillingState, PAID_TIERS};
use minoots_core::timefmt::format_us;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Access, Caller};
use crate::body::Json;
use crate::problem::{ApiError, ApiResult};
use crate::routes::{RouteSpec, body, ok, op, problem, r};
use crate::timers::json_response;
use stripe::{Stripe, StripeError};

/// Stripe's API.
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
/// How long a tenant keeps its paid tier after a failed payment, by default.
pub const DEFAULT_GRACE_DAYS: f64 = 7.0;
/// Longest grace period an operator may set.
pub const MAX_GRACE_DAYS: f64 = 90.0;
/// How often the meter sender looks for closed buckets to send, by default.
pub const DEFAULT_SEND_INTERVAL: Duration = Duration::from_secs(60);
/// Where Stripe sends the tenant back after checkout or the portal, by default.
pub const DEFAULT_RETURN_URL: &str = "http://localhost:3000/ui";

/// Billing settings (`MINOOTS_STRIPE_*`, `MINOOTS_BILLING_*`); present only when the
/// operator set a Stripe secret key.
#[derive(Clone)]
pub struct BillingConfig {
    /// `sk_…` or `rk_…`: Stripe's API key. Never shown.
    pub secret_key: String,
    /// `whsec_…` webhook signing secrets; any of them verifies an event (two during a
    /// rotation).
    pub webhook_secrets: Vec<String>,
    /// Paid tier → Stripe price id (`price_…`); only these tiers can be bought.
    pub prices: BTreeMap<String, String>,
    /// How long a tenant keeps its paid tier while its subscription is past due.
    pub grace: Duration,
    /// Stripe's API base URL (a local fake in tests).
    pub api_base: String,
    /// Where Stripe sends the tenant back after checkout and from the portal.
    pub return_url: String,
    /// How often the meter sender looks for closed buckets.
    pub send_interval: Duration,
}

impl std::fmt::Debug for BillingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingConfig")
            .field("secret_key", &"(hidden)")
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("prices", &self.prices)
            .field("grace", &self.grace)
            .field("api_base", &self.api_base)
            .field("return_url", &self.return_url)
            .field("send_interval", &self.send_interval)
            .finish()
    }
}

impl BillingConfig {
    /// A grace period of `days` days (fractions allowed: 0.5 is twelve hours).
    pub fn grace_of_days(days: f64) -> Result<Duration, ConfigError> {
        if !(0.0..=MAX_GRACE_DAYS).contains(&days) {
            return Err(ConfigError::new(
                "billing_grace_days (--billing-grace-days, MINOOTS_BILLING_GRACE_DAYS)",
                format!("must be a number of days from 0 to {MAX_GRACE_DAYS}, like 7 or 0.5"),
            ));
        }
        Ok(Duration::from_secs_f64(days * 86_400.0))
    }

    /// Refuses settings that cannot work, naming the setting as the operator writes it.
    pub fn check(&self, tiers: &BTreeMap<String, crate::TierLimits>) -> Result<(), ConfigError> {
        if !(self.secret_key.starts_with("sk_") || self.secret_key.starts_with("rk_")) {
            return Err(ConfigError::new(
                "stripe_secret_key (--stripe-secret-key, MINOOTS_STRIPE_SECRET_KEY)",
                "must be a Stripe secret or restricted key (sk_… or rk_…)",
            ));
        }
        if self.webhook_secrets.is_empty()
            || self
                .webhook_secrets
                .iter()
                .any(|s| !s.starts_with("whsec_"))
        {
            return Err(ConfigError::new(
                "stripe_webhook_secrets (--stripe-webhook-secrets, MINOOTS_STRIPE_WEBHOOK_SECRETS)",
                "must be one or more comma-separated webhook signing secrets (whsec_…)",
            ));
        }
        if self.prices.is_empty() {
            return Err(ConfigError::new(
                "stripe_price_pro (MINOOTS_STRIPE_PRICE_PRO, _TEAM, _ENTERPRISE)",
                "at least one paid tier needs a Stripe price (price_…)",
            ));
        }
        for (tier, price) in &self.prices {
            if !PAID_TIERS.contains(&tier.as_str()) || !tiers.contains_key(tier) || price.is_empty()
            {
                return Err(ConfigError::new(
                    format!("stripe_price_{tier}"),
                    "must be a Stripe price of a paid tier this server knows (pro, team, enterprise)",
                ));
            }
        }
        for (setting, url) in [
            (
                "stripe_api_base (--stripe-api-base, MINOOTS_STRIPE_API_BASE)",
                &self.api_base,
            ),
            (
                "billing_return_url (--billing-return-url, MINOOTS_BILLING_RETURN_URL)",
                &self.return_url,
            ),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::new(
                    setting,
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3_600)).contains(&self.send_interval)
        {
            return Err(ConfigError::new(
                "billing_send_interval (--billing-send-interval, MINOOTS_BILLING_SEND_INTERVAL)",
                "must be between 100ms and 1h",
            ));
        }
        Ok(())
    }

    /// The paid tier a Stripe price buys.
    pub fn tier_of_price(&self, price: &str) -> Option<&str> {
        self.prices
            .iter()
            .find(|(_, p)| p.as_str() == price)
            .map(|(t, _)| t.as_str())
    }
}

/// Billing as the running control plane has it: its settings and its Stripe client.
#[derive(Debug)]
pub struct Billing {
    pub config: BillingConfig,
    pub stripe: Stripe,
    /// Wakes the billing service ([`meter::run`]) at once: a verified event may have
    /// opened a grace period that ends before its next pass.
    pub wake: Arc<tokio::sync::Notify>,
    /// What the billing service did, for `/metrics`.
    pub counters: meter::Counters,
}

impl Billing {
    pub fn new(config: BillingConfig) -> Result<Self, ConfigError> {
        let stripe = Stripe::new(&config.api_base, &config.secret_key)
            .map_err(|e| ConfigError::new("stripe_api_base", e))?;
        Ok(Self {
            config,
            stripe,
            wake: Arc::default(),
            counters: meter::Counters::default(),
        })
    }
}

/// 404 for every billing endpoint of a server without billing.
pub fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "billing-not-configured",
        "billing is not configured on this server (no Stripe secret key): tiers are set by an administrator",
    )
}

/// The server's billing, or the 404 that says there is none.
pub fn billing_of(st: &AppState) -> ApiResult<&Arc<Billing>> {
    st.billing.as_ref().ok_or_else(not_configured)
}

/// A Stripe failure as an answer: 503 (retry) when Stripe is unavailable, 502 when it
/// refused what MINOOTS asked (a configuration to fix, never the caller's input).
pub fn stripe_error(e: StripeError) -> ApiError {
    match e {
        StripeError::Unavailable(m) => {
            tracing::warn!(error = %m, "billing: Stripe is unavailable");
            ApiError::unavailable("Stripe did not answer; retry shortly", 5)
        }
        StripeError::Refused {
            status,
            code,
            message,
        } => {
            tracing::error!(status, code, message, "billing: Stripe refused a request");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "stripe-refused",
                format!(
                    "Stripe refused the request ({code}): {message}; an operator must check the billing settings"
                ),
            )
        }
    }
}

fn time_or_null(us: Option<i64>) -> Value {
    us.map_or(Value::Null, |t| format_us(t).into())
}

/// The `GET /billing` document.
pub fn state_json(tier: &str, s: &BillingState) -> Value {
    let a = s.account.as_ref();
    let usage = |meter: &str| {
        s.usage
            .iter()
            .find(|(m, _)| m == meter)
            .map_or(0, |(_, n)| *n)
    };
    json!({
        "tier": tier,
        "paidTier": a.and_then(|a| a.paid_tier.clone()),
        "status": a.and_then(|a| a.status).map(|s| s.as_str()),
        "currentPeriodEnd": time_or_null(a.and_then(|a| a.current_period_end_us)),
        "graceUntil": time_or_null(a.and_then(|a| a.grace_until_us)),
        "hasCustomer": a.is_some_and(|a| a.customer_id.is_some()),
        "usage": {
            "since": format_us(s.usage_since_us),
            "timersCreated": usage(policy::METER_TIMERS_CREATED),
            "deliveriesSucceeded": usage(policy::METER_DELIVERIES_SUCCEEDED),
        },
    })
}

pub async fn get_billing(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    billing_of(&st)?;
    let s = st
        .kernel_call(st.kernel.billing_state(caller.tenant_id()))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &state_json(&caller.tenant.tier, &s),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub tier: String,
}

/// A key for Stripe's `Idempotency-Key` that no other request uses.
fn fresh_key(what: &str, tenant: &str) -> String {
    format!("minoots-{what}-{tenant}-{}", uuid::Uuid::now_v7())
}

pub async fn checkout(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<CheckoutRequest>,
) -> ApiResult<Response> {
    let billing = billing_of(&st)?;
    let for_sale = || {
        billing
            .config
            .prices
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(req) = req else {
        return Err(ApiError::field(
            "body",
            format!(
                "is empty; send the tier to buy, like {{\"tier\": \"pro\"}} (for sale: {})",
                for_sale()
            ),
        ));
    };
    let Some(price) = billing.config.prices.get(&req.tier) else {
        return Err(ApiError::field(
            "tier",
            format!("must be a tier for sale on this server: {}", for_sale()),
        ));
    };
    let tenant = caller.tenant_id();
    let state = st.kernel_call(st.kernel.billing_state(tenant)).await?;
    let account = state.account.as_ref();
    if account.is_some_and(|a| {
        a.status.is_some_and(|s| {
            use policy::SubscriptionStatus::*;
            matches!(s, Active | Trialing | PastDue)
        })
    }) {
        return Err(ApiError::conflict(
            "the tenant already has a subscription; change or cancel it in the customer portal (POST /billing/portal)",
        ));
    }
    let customer = account.and_then(|a| a.customer_id.as_deref());
    let url = billing
        .stripe
        .checkout_session(
            tenant,
            customer,
            price,
            &billing.config.return_url,
            &fresh_key("checkout", tenant),
        )
        .await
        .map_err(stripe_error)?;
    Ok(json_response(StatusCode::OK, &json!({"url": url})))
}

pub async fn portal(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let billing = billing_of(&st)?;
    let tenant = caller.tenant_id();
    let state = st.kernel_call(st.kernel.billing_state(tenant)).await?;
    let Some(customer) = state.account.and_then(|a| a.customer_id) else {
        return Err(ApiError::conflict(
            "the tenant has no Stripe customer yet; buy a tier first with POST /billing/checkout",
        ));
    };
    let url = billing
        .stripe
        .portal_session(
            &customer,
            &billing.config.return_url,
            &fresh_key("portal", tenant),
        )
        .await
        .map_err(stripe_error)?;
    Ok(json_response(StatusCode::OK, &json!({"url": url})))
}

pub const BILLING_PATH: &str = "/billing";
pub const CHECKOUT_PATH: &str = "/billing/checkout";
pub const PORTAL_PATH: &str = "/billing/portal";
pub const WEBHOOK_PATH: &str = "/webhooks/stripe";

pub fn routes() -> Vec<RouteSpec> {
    let off = || {
        problem(
            "404",
            "Billing is not configured on this server (`billing-not-configured`)",
        )
    };
    let stripe_down = || {
        problem(
            "502",
            "Stripe refused the request: the billing settings need an operator",
        )
    };
    vec![
        r(
            Method::GET,
            BILLING_PATH,
            Access::Read,
            get(get_billing),
            op(
                "getBilling",
                "billing",
                "The tenant's plan, subscription status, period end, grace and usage this period",
                Access::Read,
                vec![ok("200", "The tenant's billing", "Billing"), off()],
                json!({}),
            ),
        ),
        r(
            Method::POST,
            CHECKOUT_PATH,
            Access::Write,
            post(checkout),
            op(
                "createCheckout",
                "billing",
                "A Stripe Checkout link to buy a tier",
                Access::Write,
                vec![
                    ok("200", "The Checkout Session's URL", "BillingLink"),
                    off(),
                    problem(
                        "409",
                        "The tenant already has a subscription: use the portal",
                    ),
                    stripe_down(),
                ],
                json!({"requestBody": body("CheckoutRequest", true)}),
            ),
        ),
        r(
            Method::POST,
            PORTAL_PATH,
            Access::Write,
            post(portal),
            op(
                "createPortal",
                "billing",
                "A Stripe Customer Portal link to change or cancel the plan",
                Access::Write,
                vec![
                    ok("200", "The portal session's URL", "BillingLink"),
                    off(),
                    problem(
                        "409",
                        "The tenant has no Stripe customer yet: buy a tier first",
                    ),
                    stripe_down(),
                ],
                json!({}),
            ),
        ),
        r(
            Method::POST,
            WEBHOOK_PATH,
            Access::Public,
            post(webhook::receive),
            op(
                "stripeWebhook",
                "billing",
                "Stripe events, verified by their Stripe-Signature (no API key)",
                Access::Public,
                vec![
                    ok(
                        "200",
                        "Recorded (or recorded before: no effect)",
                        "WebhookReceipt",
                    ),
                    off(),
                    stripe_down(),
                    problem("413", "Body over the webhook size limit"),
                ],
                json!({"parameters": [{"name": "Stripe-Signature", "in": "header", "required": true,
                        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]",
                        "schema": {"type": "string"}}],
                       "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}}}),
            ),
        ),
    ]
}

pub fn schemas() -> serde_json::Map<String, Value> {
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let tiers: Vec<&str> = PAID_TIERS.to_vec();
    let doc = json!({
        "Billing": {"type": "object", "required": ["tier", "status", "currentPeriodEnd", "graceUntil", "usage"], "properties": {
            "tier": {"type": "string", "description": "The tier whose limits apply now"},
            "paidTier": {"type": ["string", "null"], "description": "The tier the subscription buys"},
            "status": {"type": ["string", "null"], "description": "The Stripe subscription status (active, trialing, past_due, unpaid, canceled, ...); null without a subscription"},
            "currentPeriodEnd": time,
            "graceUntil": {"type": ["string", "null"], "format": "date-time", "description": "While past due: when the paid tier ends unless the payment succeeds"},
            "hasCustomer": {"type": "boolean"},
            "usage": {"type": "object", "properties": {
                "since": {"type": "string", "format": "date-time"},
                "timersCreated": {"type": "integer"},
                "deliveriesSucceeded": {"type": "integer"}}}}},
        "CheckoutRequest": {"type": "object", "required": ["tier"], "additionalProperties": false, "properties": {
            "tier": {"type": "string", "enum": tiers, "description": "A paid tier with a Stripe price on this server"}}},
        "BillingLink": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string", "format": "uri"}}},
        "WebhookReceipt": {"type": "object", "required": ["received"], "properties": {
            "received": {"type": "boolean"},
            "effect": {"type": "string", "enum": ["applied", "ignored", "duplicate"]}}},
    });
    match doc {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}
