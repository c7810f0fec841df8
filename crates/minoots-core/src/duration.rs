//! The one parser of durations.
//!
//! Accepted forms: an integer number of milliseconds (`30000`, also as a JSON number),
//! compact unit strings (`500ms`, `30s`, `1h30m`, `1.5h`, `2d`, `1w`) and ISO 8601
//! durations (`PT30S`, `P1DT2H`, `P2W`). Years and months are refused because their length
//! depends on the calendar; use `fireAt` for calendar times. The result is whole
//! milliseconds; fractions below a millisecond are refused rather than rounded.

/// Why a duration text was refused, as a sentence that says what to write instead.
pub type DurationError = String;

const HINT: &str =
    "write it like \"30s\", \"1h30m\", \"500ms\", \"PT30S\" or a number of milliseconds";

/// Parses a duration text into milliseconds (may be 0; range checks are the caller's).
pub fn parse_duration_ms(text: &str) -> Result<i64, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("is empty; {HINT}"));
    }
    if s.len() > 64 {
        return Err(format!("is too long; {HINT}"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map_err(|_| format!("is too large; {HINT}"));
    }
    if s.starts_with('P') || s.starts_with('p') {
        return parse_iso8601(s);
    }
    parse_compact(s)
}

fn unit_ms(unit: &str) -> Option<f64> {
    Some(match unit {
        "ms" => 1.0,
        "s" | "sec" | "secs" => 1_000.0,
        "m" | "min" | "mins" => 60_000.0,
        "h" | "hr" | "hrs" => 3_600_000.0,
        "d" => 86_400_000.0,
        "w" => 604_800_000.0,
        _ => return None,
    })
}

/// Adds `value * scale` to `total`, refusing fractions of a millisecond and overflow.
fn accumulate(total: &mut f64, number: &str, scale: f64) -> Result<(), DurationError> {
    let value: f64 = number
        .parse()
        .map_err(|_| format!("has a malformed number \"{number}\"; {HINT}"))?;
    let ms = value * scale;
    if (ms - ms.round()).abs() > 1e-6 {
        return Err(format!(
            "is not a whole number of milliseconds (\"{number}\" at this unit); {HINT}"
        ));
    }
    *total += ms.round();
    if *total > i64::MAX as f64 / 2.0 {
        return Err(format!("is too large; {HINT}"));
    }
    Ok(())
}

fn parse_compact(s: &str) -> Result<i64, DurationError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0.0;
    let mut seen_any = false;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(format!("\"{s}\" is not a duration; {HINT}"));
        }
        let number = &s[start..i];
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = s[unit_start..i].to_ascii_lowercase();
        if unit.is_empty() {
            return Err(format!("\"{s}\" has a number without a unit; {HINT}"));
        }
        let scale = unit_ms(&unit)
            .ok_or_else(|| format!("\"{s}\" has an unknown unit \"{unit}\"; {HINT}"))?;
        accumulate(&mut total, number, scale)?;
        seen_any = true;
    }
    if !seen_any {
        return Err(format!("\"{s}\" is not a duration; {HINT}"));
    }
    Ok(total as i64)
}

fn parse_iso8601(s: &str) -> Result<i64, DurationError> {
    let upper = s.to_ascii_uppercase();
    let body = &upper[1..];
    if body.is_empty() {
        return Err(format!("\"{s}\" has no components; {HINT}"));
    }
    let mut total = 0.0;
    let mut in_time = false;
    let mut number = String::new();
    let mut seen_any = false;
    for c in body.chars() {
        match c {
            'T' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            _ => {
                if number.is_empty() {
                    return Err(format!("\"{s}\" has a unit without a number; {HINT}"));
                }
                let scale = match (in_time, c) {
                    (false, 'W') => 604_800_000.0,
                    (false, 'D') => 86_400_000.0,
                    (true, 'H') => 3_600_000.0,
                    (true, 'M') => 60_000.0,
                    (true, 'S') => 1_000.0,
                    (false, 'Y') | (false, 'M') => {
                        return Err(format!(
                            "\"{s}\" uses years or months, whose length depends on the calendar; use days, or give a fireAt time"
                        ));
                    }
                    _ => return Err(format!("\"{s}\" is not an ISO 8601 duration; {HINT}")),
                };
                accumulate(&mut total, &number, scale)?;
                number.clear();
                seen_any = true;
            }
        }
    }
    if !number.is_empty() || !seen_any {
        return Err(format!("\"{s}\" is not an ISO 8601 duration; {HINT}"));
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_inputs() {
        let table: &[(&str, i64)] = &[
            ("30s", 30_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("PT30S", 30_000),
            ("pt30s", 30_000),
            ("PT1.5S", 1_500),
            ("P1DT2H", 93_600_000),
            ("P2W", 1_209_600_000),
            ("PT1H30M", 5_400_000),
            ("30000", 30_000),
            ("0", 0),
            ("1.5h", 5_400_000),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            ("1m30s250ms", 90_250),
            (" 45s ", 45_000),
            ("10min", 600_000),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration_ms(text), Ok(*want), "input {text:?}");
        }
    }

    #[test]
    fn refuses_bad_inputs_with_a_hint() {
        let table = [
            "", "   ", "abc", "s30", "30x", "1h30", "P", "PT", "P1Y", "P1M", "PT1.5", "1.0001ms",
            "-5s", "30 s", "1..5s", "P1H", "PTS",
        ];
        for text in table {
            let err = parse_duration_ms(text).expect_err(text);
            assert!(
                err.contains("30s") || err.contains("fireAt") || err.contains("milliseconds"),
                "error for {text:?} should say what to write: {err}"
            );
        }
    }

    #[test]
    fn refuses_absurdly_large_numbers() {
        assert!(parse_duration_ms("99999999999999999999").is_err());
        assert!(parse_duration_ms("9999999999999999w").is_err());
    }
}
