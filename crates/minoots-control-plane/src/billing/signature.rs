//! The `Stripe-Signature` check of `POST /webhooks/stripe`: the header
//! `t=<unix seconds>,v1=<hex>[,v1=<hex>...]` is parsed keeping every `v1` (Stripe sends one
//! per signing secret while a secret is being rotated), and the request is genuine when any
//! `v1` equals HMAC-SHA256(secret, "{t}.{raw body}") under any configured `whsec_` secret,
//! compared in constant time, and `t` is within [`SIGNATURE_TOLERANCE_S`] of now (either
//! way). Other schemes (`v0`, Stripe's test scheme) are ignored.
//!
//! What this must never do: parse the body before it is verified, accept a signature
//! computed over a re-serialised body, or stop at the first `v1` that does not match.

use minoots_kernel_api::api::constant_time_eq;

/// How far a signature's timestamp may be from now, in seconds (Stripe's own default).
pub const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Longest `Stripe-Signature` header read, in bytes (a few signatures are ~200 bytes).
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 4_096;
/// Most `v1` signatures read from one header.
pub const MAX_SIGNATURES: usize = 8;

/// Why a webhook's signature was refused; each says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "no v1 signature of the Stripe-Signature header matches the body under any configured webhook secret"
    )]
    NoMatch,
    #[error(
        "the Stripe-Signature timestamp is {0} s away from now, more than the {SIGNATURE_TOLERANCE_S} s allowed (a replayed or delayed event)"
    )]
    OutsideTolerance(i64),
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp_s: i64,
    /// Every `v1` signature, decoded from hex (each 32 bytes).
    pub v1: Vec<[u8; 32]>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Parses the header, keeping every `v1`. A `v1` that is not 64 hex digits cannot match
/// and is skipped; unknown schemes are ignored.
pub fn parse_header(header: &str) -> Result<SignatureHeader, SignatureError> {
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(SignatureError::Malformed("it is too long"));
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            return Err(SignatureError::Malformed(
                "every item must be key=value, like t=1700000000,v1=<hex>",
            ));
        };
        match key {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t must be a Unix time in seconds"))?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed("it has more than one t"));
                }
            }
            "v1" if v1.len() < MAX_SIGNATURES => {
                if let Some(sig) = hex32(value) {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    let Some(timestamp_s) = timestamp else {
        return Err(SignatureError::Malformed("it has no t=<timestamp>"));
    };
    if v1.is_empty() {
        return Err(SignatureError::Malformed(
            "it has no v1 signature (only v1 is accepted)",
        ));
    }
    Ok(SignatureHeader { timestamp_s, v1 })
}

/// The `v1` signature of `body` sent at `timestamp_s` under `secret`.
pub fn sign(secret: &str, timestamp_s: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = minoots_core::digest::Keyed::new(secret.as_bytes());
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
}

/// Verifies `header` (the `Stripe-Signature` value, `None` when absent) over the raw
/// `body` against `secrets` at `now_s`. Every (secret, `v1`) pair is compared, so the time
/// taken does not tell which one matched.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now_s: i64,
) -> Result<(), SignatureError> {
    let header = parse_header(header.ok_or(SignatureError::Missing)?)?;
    let mut matched = false;
    for secret in secrets {
        let expected = sign(secret, header.timestamp_s, body);
        for given in &header.v1 {
            matched |= constant_time_eq(&expected, given);
        }
    }
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    let age = now_s.saturating_sub(header.timestamp_s);
    if age.abs() > SIGNATURE_TOLERANCE_S {
        return Err(SignatureError::OutsideTolerance(age));
    }
    Ok(())
}

/// `Stripe-Signature` for `body` at `timestamp_s` under each of `secrets` (tests, and the
/// operator's `minoots` tools that replay an event).
pub fn header_for(secrets: &[&str], timestamp_s: i64, body: &[u8]) -> String {
    let mut h = format!("t={timestamp_s}");
    for s in secrets {
        let sig = sign(s, timestamp_s, body);
        h.push_str(",v1=");
        for b in sig {
            h.push_str(&format!("{b:02x}"));
        }
    }
    h
}
