//! Standard Webhooks signatures: how a receiver knows a webhook came from MINOOTS and was
//! not altered or replayed.
//!
//! Each tenant has a `whsec_` secret (base64 of 32 random bytes). A webhook carries
//! `webhook-id` (the delivery id, stable across retries, for deduplication),
//! `webhook-timestamp` (Unix seconds, so receivers can refuse stale replays) and
//! `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`. During a
//! secret rotation the old and the new secret both sign, space-separated, so receivers
//! holding either one accept the webhook.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::OrchestratorError;

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret.
pub const SECRET_BYTES: usize = 32;
/// Secrets signing one webhook at once (current and, during rotation, the previous one).
pub const MAX_SIGNING_SECRETS: usize = 2;

/// A tenant's signing key. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
    /// HMAC state with the key already absorbed, computed once per secret rather than per
    /// signature (the orchestrator caches secrets per tenant).
    keyed: minoots_core::digest::Keyed,
}

impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for WebhookSecret {}

impl WebhookSecret {
    /// A new secret from the operating system's random source.
    pub fn generate() -> Result<Self, OrchestratorError> {
        let mut key = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut key).map_err(|e| OrchestratorError::NoRandomness(e.to_string()))?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: Vec<u8>) -> Self {
        let keyed = minoots_core::digest::Keyed::new(&key);
        Self { key, keyed }
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, OrchestratorError> {
        let b64 = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(OrchestratorError::BadSecret(
                "a webhook secret starts with whsec_",
            ))?;
        let key = BASE64.decode(b64).map_err(|_| {
            OrchestratorError::BadSecret("a webhook secret is whsec_ followed by base64")
        })?;
        if key.len() < 24 || key.len() > 64 {
            return Err(OrchestratorError::BadSecret(
                "a webhook secret holds 24 to 64 bytes",
            ));
        }
        Ok(Self::from_key(key))
    }

    /// The text form, to show the tenant once and to store.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// `v1,<base64 signature>` of one message under this secret.
    /// The signed content `{id}.{timestamp}.{body}` is streamed into the MAC, not copied.
    pub fn sign(&self, msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let mut out = String::with_capacity(3 + 44);
        out.push_str("v1,");
        BASE64.encode_string(mac.finalize(), &mut out);
        out
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// The three Standard Webhooks headers for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub webhook_id: String,
    pub webhook_timestamp: String,
    pub webhook_signature: String,
}

/// Signs `body` with every given secret (at most [`MAX_SIGNING_SECRETS`], newest first).
pub fn sign_webhook(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> SignatureHeaders {
    let signature = secrets
        .iter()
        .take(MAX_SIGNING_SECRETS)
        .map(|s| s.sign(msg_id, timestamp_s, body))
        .collect::<Vec<_>>()
        .join(" ");
    SignatureHeaders {
        webhook_id: msg_id.to_string(),
        webhook_timestamp: timestamp_s.to_string(),
        webhook_signature: signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_s() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn headers(h: &SignatureHeaders) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        m.insert("webhook-id", h.webhook_id.parse().unwrap());
        m.insert("webhook-timestamp", h.webhook_timestamp.parse().unwrap());
        m.insert("webhook-signature", h.webhook_signature.parse().unwrap());
        m
    }

    #[test]
    fn the_reference_implementation_accepts_our_signature() {
        let secret = WebhookSecret::generate().unwrap();
        let body = br#"{"event":"timer.fired","deliveryId":"0193","attempt":1}"#;
        let h = sign_webhook(
            std::slice::from_ref(&secret),
            "0193-delivery",
            now_s(),
            body,
        );
        let verifier = standardwebhooks::Webhook::new(&secret.expose()).unwrap();
        verifier
            .verify(body, &headers(&h))
            .expect("valid signature");
        // A changed body, id or secret is refused.
        assert!(
            verifier
                .verify(b"{\"event\":\"timer.fired!\"}", &headers(&h))
                .is_err()
        );
        let mut other_id = h.clone();
        other_id.webhook_id = "another-delivery".into();
        assert!(verifier.verify(body, &headers(&other_id)).is_err());
        let stranger =
            standardwebhooks::Webhook::new(&WebhookSecret::generate().unwrap().expose()).unwrap();
        assert!(stranger.verify(body, &headers(&h)).is_err());
    }

    #[test]
    fn during_rotation_both_secrets_verify() {
        let old = WebhookSecret::generate().unwrap();
        let new = WebhookSecret::generate().unwrap();
        let body = b"{}";
        let h = sign_webhook(&[new.clone(), old.clone()], "d-1", now_s(), body);
        assert_eq!(h.webhook_signature.split(' ').count(), 2);
        for s in [&old, &new] {
            standardwebhooks::Webhook::new(&s.expose())
                .unwrap()
                .verify(body, &headers(&h))
                .expect("either secret verifies");
        }
        // After rotation ends only the new one signs: receivers still on the old one fail.
        let after = sign_webhook(std::slice::from_ref(&new), "d-2", now_s(), body);
        assert!(
            standardwebhooks::Webhook::new(&old.expose())
                .unwrap()
                .verify(body, &headers(&after))
                .is_err()
        );
    }

    #[test]
    fn a_stale_timestamp_is_refused_by_receivers() {
        let secret = WebhookSecret::generate().unwrap();
        let h = sign_webhook(std::slice::from_ref(&secret), "d-1", now_s() - 3_600, b"{}");
        assert!(
            standardwebhooks::Webhook::new(&secret.expose())
                .unwrap()
                .verify(b"{}", &headers(&h))
                .is_err()
        );
    }

    #[test]
    fn secrets_round_trip_and_stay_hidden() {
        let s = WebhookSecret::generate().unwrap();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&s.expose()).unwrap(), s);
        assert_ne!(WebhookSecret::generate().unwrap(), s, "random");
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
        for bad in ["", "whsec_", "whsec_!!!", "sk_abc", "whsec_c2hvcnQ="] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_answer() {
        // Fixed key and message: the signature must not change between versions.
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
