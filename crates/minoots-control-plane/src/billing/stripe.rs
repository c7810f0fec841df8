//! The few calls MINOOTS makes to Stripe's API: a Checkout Session, a Customer Portal
//! session, a subscription's current state, and a Billing Meter event. Form-encoded POSTs
//! with the secret key as a bearer token and an `Idempotency-Key`, each bounded by
//! [`STRIPE_CALL_TIMEOUT`]. Answers are told apart as Stripe documents them: 2xx done,
//! 409 / 429 / 5xx / a timeout or connection error worth retrying, another 4xx refused for
//! good.
//!
//! What this must never do: follow redirects, log the secret key, or retry on its own
//! (the callers decide: a webhook answers 5xx so Stripe retries, the meter sender retries
//! with the same identifier).

use std::time::Duration;

use serde_json::Value;

/// Longest a call to Stripe may take.
pub const STRIPE_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from Stripe, in bytes (a subscription is a few KiB).
pub const MAX_STRIPE_ANSWER_BYTES: usize = 1024 * 1024;

/// Why a call to Stripe did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// Worth retrying: a timeout, a connection error, 409, 429 or 5xx.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (another 4xx), with Stripe's error code and message.
    #[error("Stripe refused the request ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

impl StripeError {
    /// A meter event whose identifier Stripe has already counted.
    pub fn is_duplicate_meter_event(&self) -> bool {
        match self {
            StripeError::Refused { code, message, .. } => {
                code == "resource_already_exists"
                    || code == "duplicate_meter_event"
                    || message.contains("already exists")
                    || message.contains("duplicate")
            }
            StripeError::Unavailable(_) => false,
        }
    }
}

/// The state of a subscription as MINOOTS uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub customer: Option<String>,
    pub status: Option<String>,
    pub price_id: Option<String>,
    pub current_period_start_s: Option<i64>,
    pub current_period_end_s: Option<i64>,
    /// `metadata.tenant_id`, set by MINOOTS's checkout.
    pub tenant_id: Option<String>,
}

/// The id of an expandable field: a string, or an object with an `id`.
pub fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Subscription {
    /// Reads a subscription object (of an event, or fetched). The period is on the
    /// subscription in older API versions and on its first item in newer ones.
    pub fn from_json(o: &Value) -> Option<Self> {
        let item = &o["items"]["data"][0];
        let int = |k: &str| o[k].as_i64().or_else(|| item[k].as_i64());
        Some(Subscription {
            id: o["id"].as_str()?.to_string(),
            customer: id_of(&o["customer"]),
            status: o["status"].as_str().map(str::to_string),
            price_id: id_of(&item["price"]).or_else(|| id_of(&o["plan"])),
            current_period_start_s: int("current_period_start"),
            current_period_end_s: int("current_period_end"),
            tenant_id: o["metadata"]["tenant_id"].as_str().map(str::to_string),
        })
    }
}

/// A client of Stripe's API at `base` (Stripe's own, or a local fake in tests).
#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    secret_key: String,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").field("base", &self.base).finish()
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

impl Stripe {
    pub fn new(base: &str, secret_key: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "MINOOTS/",
                env!("CARGO_PKG_VERSION"),
                " (+billing)"
            ))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STRIPE_CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the Stripe client: {e}"))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            secret_key: secret_key.to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| StripeError::Unavailable(format!("{path}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| StripeError::Unavailable(format!("{path}: reading the answer: {e}")))?;
        let bytes = &bytes[..bytes.len().min(MAX_STRIPE_ANSWER_BYTES)];
        let json: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = json["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        if worth_retrying(status.as_u16()) {
            return Err(StripeError::Unavailable(format!(
                "{path}: {status}: {message}"
            )));
        }
        Err(StripeError::Refused {
            status: status.as_u16(),
            code: json["error"]["code"].as_str().unwrap_or("").to_string(),
            message,
        })
    }

    fn url_of(v: &Value, what: &str) -> Result<String, StripeError> {
        v["url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| StripeError::Unavailable(format!("the {what} answer has no url")))
    }

    /// A Checkout Session in subscription mode for `price`, for `tenant_id` (as
    /// `client_reference_id` and in the subscription's metadata), reusing `customer`.
    pub async fn checkout_session(
        &self,
        tenant_id: &str,
        customer: Option<&str>,
        price: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<String, StripeError> {
        let mut pairs = vec![
            ("mode", "subscription"),
            ("line_items[0][price]", price),
            ("line_items[0][quantity]", "1"),
            ("client_reference_id", tenant_id),
            ("metadata[tenant_id]", tenant_id),
            ("subscription_data[metadata][tenant_id]", tenant_id),
            ("success_url", return_url),
            ("cancel_url", return_url),
        ];
        if let Some(c) = customer {
            pairs.push(("customer", c));
        }
        let v = self
            .call(
                reqwest::Method::POST,
                "/v1/checkout/sessions",
                Some(form(&pairs)),
                Some(idempotency_key),
            )
            .await?;
        Self::url_of(&v, "checkout session")
    }

    /// A Customer Portal session for `customer`.
    pub async fn portal_session(
        &self,
        customer: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<String, StripeError> {
        let pairs = [("customer", customer), ("return_url", return_url)];
        let v = self
            .call(
                reqwest::Method::POST,
                "/v1/billing_portal/sessions",
                Some(form(&pairs)),
                Some(idempotency_key),
            )
            .await?;
        Self::url_of(&v, "portal session")
    }

    /// The subscription's current state.
    pub async fn subscription(&self, id: &str) -> Result<Subscription, StripeError> {
        let path = format!(
            "/v1/subscriptions/{}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        );
        let v = self.call(reqwest::Method::GET, &path, None, None).await?;
        Subscription::from_json(&v)
            .ok_or_else(|| StripeError::Unavailable("the subscription answer has no id".into()))
    }

    /// One Billing Meter event: `value` units of `event_name` for `customer` at
    /// `timestamp_s`, counted once by Stripe per `identifier` (also the idempotency key).
    pub async fn meter_event(
        &self,
        event_name: &str,
        customer: &str,
        value: i64,
        identifier: &str,
        timestamp_s: i64,
    ) -> Result<(), StripeError> {
        let (value, timestamp) = (value.to_string(), timestamp_s.to_string());
        let pairs = [
            ("event_name", event_name),
            ("payload[stripe_customer_id]", customer),
            ("payload[value]", value.as_str()),
            ("identifier", identifier),
            ("timestamp", timestamp.as_str()),
        ];
        self.call(
            reqwest::Method::POST,
            "/v1/billing/meter_events",
            Some(form(&pairs)),
            Some(identifier),
        )
        .await
        .map(drop)
    }
}

/// Whether an answer with this status is worth sending again: 429 (rate limited), 5xx,
/// and 409, which Stripe answers while another request with the same idempotency key is
/// in progress (two control planes sending one bucket): the retry gets that request's
/// answer once it is done.
fn worth_retrying(status: u16) -> bool {
    status == 409 || status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::worth_retrying;

    #[test]
    fn a_conflict_a_rate_limit_and_server_errors_are_retried_other_refusals_are_not() {
        for status in [409, 429, 500, 502, 503] {
            assert!(worth_retrying(status), "{status}");
        }
        for status in [400, 401, 402, 403, 404] {
            assert!(!worth_retrying(status), "{status}");
        }
    }
}
