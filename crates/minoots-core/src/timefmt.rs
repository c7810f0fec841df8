//! Conversion between stored microseconds and RFC 3339 text.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats microseconds since the epoch as RFC 3339 in UTC (`2026-11-27T10:00:00.123456Z`).
pub fn format_us(us: i64) -> String {
    let nanos = i128::from(us) * 1_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t.format(&Rfc3339).unwrap_or_else(|_| format!("@{us}us")),
        Err(_) => format!("@{us}us"),
    }
}

/// Parses RFC 3339 text with an offset (`Z` or `+01:00`) into microseconds since the epoch.
pub fn parse_rfc3339_us(text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|e| e.to_string())?;
    let us = t.unix_timestamp_nanos() / 1_000;
    i64::try_from(us).map_err(|_| "time out of range".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_microseconds() {
        let us = 1_795_773_600_123_456; // 2026-11-27T10:00:00.123456Z
        let text = format_us(us);
        assert_eq!(text, "2026-11-27T10:00:00.123456Z");
        assert_eq!(parse_rfc3339_us(&text).unwrap(), us);
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let a = parse_rfc3339_us("2026-11-27T11:00:00+01:00").unwrap();
        let b = parse_rfc3339_us("2026-11-27T10:00:00Z").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn refuses_text_without_offset() {
        assert!(parse_rfc3339_us("2026-11-27T10:00:00").is_err());
        assert!(parse_rfc3339_us("tomorrow").is_err());
    }
}
