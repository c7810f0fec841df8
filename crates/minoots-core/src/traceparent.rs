//! The W3C Trace Context `traceparent` value (<https://www.w3.org/TR/trace-context/>): the
//! one place that decides whether a text is a trace parent that MINOOTS keeps with a timer,
//! carries between its planes and sends with a webhook.
//!
//! A value that is not a valid trace parent is dropped (`None`), never refused: the
//! standard says a receiver ignores a malformed `traceparent` and starts a new trace, and a
//! client's tracing header must never turn a good create into a 4xx or 5xx. What is kept is
//! always the canonical version-00 form, [`TRACEPARENT_BYTES`] long, so the stored column
//! and the gRPC field are bounded whatever a client sends. This module does no I/O and
//! knows nothing of OpenTelemetry.

use std::fmt;

/// Length of a version-00 `traceparent`: `00-` + 32 hex + `-` + 16 hex + `-` + 2 hex.
pub const TRACEPARENT_BYTES: usize = 55;
/// The longest header text that is looked at: a later version may append fields after the
/// version-00 part, but nothing longer than this is parsed at all.
pub const MAX_TRACEPARENT_HEADER_BYTES: usize = 512;

/// A valid trace parent: the trace it belongs to, the calling span and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` for anything the standard says to
    /// ignore: wrong length or separators, upper-case or non-hex digits, version `ff`, an
    /// all-zero trace or parent id, or a version-00 value with extra text. A later version
    /// is read by its version-00 prefix when the next character is `-`, as the standard asks.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let b = text.as_bytes();
        if b.len() < TRACEPARENT_BYTES || b.len() > MAX_TRACEPARENT_HEADER_BYTES {
            return None;
        }
        let version = hex_bytes::<1>(&b[0..2])?[0];
        if version == 0xff {
            return None;
        }
        if version == 0 && b.len() != TRACEPARENT_BYTES {
            return None;
        }
        if b.len() > TRACEPARENT_BYTES && b[TRACEPARENT_BYTES] != b'-' {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&b[3..35])?;
        let parent_id = hex_bytes::<8>(&b[36..52])?;
        let flags = hex_bytes::<1>(&b[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The canonical version-00 text of `text` when it is a valid trace parent, else `None`:
    /// what is stored with a timer and put in the gRPC messages.
    pub fn normalize(text: &str) -> Option<String> {
        TraceParent::parse(text).map(|t| t.to_string())
    }

    /// The trace id as 32 lowercase hex digits, as logs and OTLP viewers show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Whether the caller sampled this trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `N` bytes from `2 * N` lowercase hex digits (the standard allows no upper case).
fn hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_value_round_trips() {
        let t = TraceParent::parse(GOOD).unwrap();
        assert_eq!(t.to_string(), GOOD);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(t.sampled());
        let unsampled = TraceParent::normalize(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!TraceParent::parse(&unsampled).unwrap().sampled());
    }

    #[test]
    fn a_later_version_is_read_by_its_version_00_prefix() {
        let later = format!("cc{}-what-comes-next", &GOOD[2..]);
        assert_eq!(TraceParent::normalize(&later).as_deref(), Some(GOOD));
        let later_exact = format!("cc{}", &GOOD[2..]);
        assert_eq!(TraceParent::normalize(&later_exact).as_deref(), Some(GOOD));
        // Without a dash after the known part the value is not understood.
        assert_eq!(TraceParent::normalize(&format!("cc{}x", &GOOD[2..])), None);
    }

    #[test]
    fn bad_values_are_dropped() {
        let long = format!("{GOOD}{}", "-a".repeat(MAX_TRACEPARENT_HEADER_BYTES));
        let bad = [
            "",
            "garbage",
            &GOOD[..54],
            &format!("{GOOD}-"),
            &format!("{GOOD}0"),
            &GOOD.to_uppercase(),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{e9}",
            &long,
        ];
        for b in bad {
            assert_eq!(TraceParent::parse(b), None, "{b:?} must be dropped");
        }
    }

    #[test]
    fn multibyte_text_never_panics() {
        for text in [
            "é".repeat(28),
            "€".repeat(19),
            format!("00-{}", "é".repeat(30)),
        ] {
            assert_eq!(TraceParent::parse(&text), None);
        }
    }
}
