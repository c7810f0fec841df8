//! Every bound on client input, in one place, with its unit in the name.
//!
//! Limits exist so that no single request can make the kernel store, index or send an
//! unbounded amount of data. Changing one here changes it for every entry point.

/// Longest accepted timer duration, and the furthest a `fireAt` may lie ahead: ten years.
pub const MAX_TIMER_HORIZON_MS: i64 = 10 * 366 * 24 * 3600 * 1000;
/// A `fireAt` this far in the past is still accepted (and fires at once): client clocks drift.
pub const PAST_FIRE_AT_GRACE_MS: i64 = 5_000;
/// Timer names are for humans and dashboards; longer text belongs in metadata.
pub const MAX_NAME_BYTES: usize = 200;
/// `requestedBy` is a short free-text attribution.
pub const MAX_REQUESTED_BY_BYTES: usize = 200;
/// Labels are indexed filters, so both their number and their size stay small.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_BYTES: usize = 63;
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Metadata is stored with the timer and echoed in every event; 16 KiB serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Actions per timer: each one becomes a delivery with its own retries.
pub const MAX_ACTIONS: usize = 16;
/// Webhook URL length; longer URLs are refused by many servers anyway.
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_WEBHOOK_HEADERS: usize = 32;
pub const MAX_HEADER_NAME_BYTES: usize = 256;
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// Webhook body as serialized JSON: 64 KiB.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u32 = 30_000;
pub const MAX_WEBHOOK_TIMEOUT_MS: u32 = 120_000;
pub const MAX_COMMAND_NAME_BYTES: usize = 64;
pub const MAX_COMMAND_ARGS: usize = 64;
pub const MAX_COMMAND_ARG_BYTES: usize = 4096;
pub const MAX_COMMAND_ENV: usize = 64;
pub const DEFAULT_COMMAND_TIMEOUT_MS: u32 = 60_000;
pub const MAX_COMMAND_TIMEOUT_MS: u32 = 3_600_000;
pub const MAX_FILE_PATH_BYTES: usize = 1024;
/// Retry policy bounds: a delivery is tried at most this many times.
pub const MAX_RETRY_ATTEMPTS: u32 = 100;
pub const MAX_BACKOFF_MS: u64 = 7 * 24 * 3600 * 1000;
/// Idempotency keys are opaque client strings.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Tenant ids appear in URLs and keys: short, plain characters.
pub const MAX_TENANT_ID_BYTES: usize = 64;
/// Cancel reasons are stored and shown; keep them a sentence long.
pub const MAX_CANCEL_REASON_BYTES: usize = 1024;
/// Stored response excerpt of an attempt.
pub const MAX_ATTEMPT_RESPONSE_BYTES: usize = 4096;
/// Stored error text of an attempt.
pub const MAX_ATTEMPT_ERROR_BYTES: usize = 2048;
/// Page size bounds for listings.
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;

/// Cuts `text` to at most `max_bytes` bytes, on a character boundary: how stored text
/// (errors, excerpts, cancel reasons) is held to the limits above.
pub fn truncate_to_bytes(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// What reported text (an attempt's error, a response excerpt, a cancel reason) becomes
/// before it is stored: every NUL replaced by U+FFFD, then cut to `max_bytes` like
/// [`truncate_to_bytes`]. PostgreSQL's `text` cannot hold NUL, and every backend must
/// store, list and put in events the same text, so the replacement is made here, once.
/// Text that reaches a store only after validation (names, keys, labels) never holds a
/// control character and needs none of this.
pub fn stored_text(text: String, max_bytes: usize) -> String {
    let text = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    };
    truncate_to_bytes(text, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_to_bytes("short".into(), 10), "short");
        assert_eq!(truncate_to_bytes("exactly".into(), 7), "exactly");
        assert_eq!(truncate_to_bytes("abcdef".into(), 3), "abc");
        // "é" is two bytes: a cut through it keeps the character out.
        assert_eq!(truncate_to_bytes("aé".into(), 2), "a");
        assert_eq!(truncate_to_bytes("aé".into(), 0), "");
    }

    #[test]
    fn stored_text_has_no_nul_and_keeps_to_its_limit() {
        assert_eq!(stored_text("plain".into(), 10), "plain");
        assert_eq!(stored_text("a\0b".into(), 10), "a\u{FFFD}b");
        // The replacement is 3 bytes: the cut comes after it, on a character boundary.
        assert_eq!(stored_text("\0\0".into(), 4), "\u{FFFD}");
        assert_eq!(stored_text("ab\0".into(), 3), "ab");
    }
}
