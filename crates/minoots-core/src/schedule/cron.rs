//! The cron grammar of schedules, and the next matching civil (wall-clock) time.
//!
//! An expression has 5, 6 or 7 fields: `[second] minute hour day-of-month month
//! day-of-week [year]` (5 fields mean second 0; no year field means every year). Each field
//! is a comma-separated list of `*`, `n`, `a-b`, with an optional `/step` (`*/15`, `5/10`,
//! `1-30/2`). Months and days of the week also take names (`JAN`, `MON`; case does not
//! matter); day-of-week counts from Sunday (0 or 7). `?` means `*` in the two day fields.
//! Day-of-month also takes `L` (the last day), `L-n` (n days before it), `nW` (the weekday
//! nearest to day n, never leaving the month) and `LW` (the last weekday); day-of-week takes
//! `nL` (the last such weekday of the month, `5L` or `FRIL`) and `n#k` (the k-th such
//! weekday, `MON#1`). The macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight` and `@hourly` stand for their usual expressions.
//!
//! **Day-of-month and day-of-week** combine as in Vixie cron: when both are restricted
//! (neither starts with `*` or `?`), a day matches if either matches (`0 0 1,15 * MON` is the
//! 1st, the 15th and every Monday); when one is unrestricted the other decides. A `+` before
//! day-of-week makes it AND (`0 0 1-7 * +MON` is the first Monday of the month).
//!
//! Everything here is civil time: no zone, no offsets, no DST. The slot generator
//! (`slots.rs`) maps civil matches to instants and owns the DST rules. This module never
//! reads a clock and never allocates per match.

use jiff::civil::{Date, DateTime, Time};

/// The first year an expression may name or match.
pub const MIN_YEAR: i16 = 1970;
/// The last year the generator searches; an expression with no match up to the end of
/// this year never fires. 2199 keeps a year set in four 64-bit words.
pub const MAX_YEAR: i16 = 2199;
/// Longest expression accepted, in bytes (a cron line is short; this bounds parsing work).
pub const MAX_CRON_BYTES: usize = 256;

const YEAR_WORDS: usize = ((MAX_YEAR - MIN_YEAR) as usize + 1).div_ceil(64);

/// A parsed cron expression: one bit set per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    seconds: u64,
    minutes: u64,
    hours: u32,
    months: u16,
    dom: DaysOfMonth,
    dow: DaysOfWeek,
    /// `+` before day-of-week: both day fields must match.
    days_and: bool,
    /// `None`: every year.
    years: Option<[u64; YEAR_WORDS]>,
    /// Second, minute and hour are each plain numbers or lists of them (no `*`, `/` or
    /// range): the expression names wall-clock times, which the DST rules treat as
    /// appointments (shifted out of a gap, fired once in a fold).
    fixed_time: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DaysOfMonth {
    unrestricted: bool,
    /// Bit d: day d (1–31).
    days: u32,
    /// Bit k: `L-k` (bit 0 is `L`).
    from_last: u32,
    /// Bit d: `dW`.
    nearest_weekday: u32,
    /// `LW`.
    last_weekday: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DaysOfWeek {
    unrestricted: bool,
    /// Bit w: weekday w (0 = Sunday).
    days: u8,
    /// `nth[w]` bit k: `w#k` (k 1–5).
    nth: [u8; 7],
    /// Bit w: `wL`.
    last: u8,
}

/// Why an expression was refused: the field it concerns and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CronError {
    /// `second`, `minute`, `hour`, `day-of-month`, `month`, `day-of-week`, `year`, or
    /// `expression` for the whole line.
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> CronError {
    CronError {
        field,
        message: message.into(),
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One numeric field's name, bounds and names for values.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of `names[0]`.
    names_from: u32,
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    names_from: 1,
};
/// 7 is Sunday too; it is folded into 0 after parsing.
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &WEEKDAYS,
    names_from: 0,
};
const YEAR: Field = Field {
    name: "year",
    min: MIN_YEAR as u32,
    max: MAX_YEAR as u32,
    names: &[],
    names_from: 0,
};

impl Field {
    fn value(&self, text: &str) -> Result<u32, CronError> {
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(i as u32 + self.names_from);
        }
        let v: u32 = text.parse().map_err(|_| {
            let names = if self.names.is_empty() {
                String::new()
            } else {
                format!(" or a name like {}", self.names[0])
            };
            err(
                self.name,
                format!(
                    "`{text}` is not a number from {} to {}{names}",
                    self.min, self.max
                ),
            )
        })?;
        if v < self.min || v > self.max {
            return Err(err(
                self.name,
                format!("{v} is out of range {}–{}", self.min, self.max),
            ));
        }
        Ok(v)
    }

    /// Parses a list of `*`, `n`, `a-b` with optional `/step`, calling `set` for each value.
    fn parse_list(&self, text: &str, mut set: impl FnMut(u32)) -> Result<(), CronError> {
        for item in text.split(',') {
            self.parse_item(item, &mut set)?;
        }
        Ok(())
    }

    fn parse_item(&self, item: &str, set: &mut impl FnMut(u32)) -> Result<(), CronError> {
        if item.is_empty() {
            return Err(err(
                self.name,
                "has an empty list item; remove the extra comma",
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| err(self.name, format!("step `{s}` is not a whole number")))?;
                if step == 0 || step > self.max {
                    return Err(err(
                        self.name,
                        format!("step {step} must be from 1 to {}", self.max),
                    ));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (self.min, self.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (self.value(a)?, self.value(b)?);
            if a > b {
                return Err(err(
                    self.name,
                    format!(
                        "range {a}-{b} goes downwards; write it as two ranges, like {a}-{},{}-{b}",
                        self.max, self.min
                    ),
                ));
            }
            (a, b)
        } else {
            let a = self.value(range)?;
            // `5/10` means from 5 to the end in steps of 10.
            (a, if step.is_some() { self.max } else { a })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            set(v);
            v += step;
        }
        Ok(())
    }
}

fn is_plain_numbers(text: &str) -> bool {
    !text.contains(['*', '/', '-', '?'])
}

fn parse_days_of_month(text: &str) -> Result<DaysOfMonth, CronError> {
    let mut dom = DaysOfMonth {
        unrestricted: text.starts_with('*') || text.starts_with('?'),
        ..DaysOfMonth::default()
    };
    if text == "?" {
        dom.days = !1;
        return Ok(dom);
    }
    for item in text.split(',') {
        let upper = item.to_ascii_uppercase();
        if upper == "L" {
            dom.from_last |= 1;
        } else if upper == "LW" {
            dom.last_weekday = true;
        } else if let Some(n) = upper.strip_prefix("L-") {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (1..=30).contains(n))
                .ok_or_else(|| {
                    err(
                        DAY_OF_MONTH.name,
                        format!("`{item}`: write L-n with n from 1 to 30"),
                    )
                })?;
            dom.from_last |= 1 << n;
        } else if let Some(n) = upper.strip_suffix('W') {
            let n = DAY_OF_MONTH.value(n).map_err(|_| {
                err(
                    DAY_OF_MONTH.name,
                    format!("`{item}`: write nW with n a day from 1 to 31"),
                )
            })?;
            dom.nearest_weekday |= 1 << n;
        } else {
            DAY_OF_MONTH.parse_item(item, &mut |d| dom.days |= 1 << d)?;
        }
    }
    Ok(dom)
}

fn parse_days_of_week(text: &str) -> Result<DaysOfWeek, CronError> {
    let mut dow = DaysOfWeek {
        unrestricted: text.starts_with('*') || text.starts_with('?'),
        ..DaysOfWeek::default()
    };
    if text == "?" {
        dow.days = 0x7f;
        return Ok(dow);
    }
    let weekday = |t: &str, item: &str| {
        DAY_OF_WEEK.value(t).map(|w| w % 7).map_err(|_| {
            err(
                DAY_OF_WEEK.name,
                format!("`{item}`: `{t}` is not a weekday (0–7 or SUN–SAT)"),
            )
        })
    };
    for item in text.split(',') {
        let upper = item.to_ascii_uppercase();
        if upper == "L" {
            return Err(err(
                DAY_OF_WEEK.name,
                "`L` alone is ambiguous here; write `6L` or `SATL` for the last Saturday, or SAT for every Saturday",
            ));
        } else if let Some((w, k)) = upper.split_once('#') {
            let w = weekday(w, item)?;
            let k: u32 = k
                .parse()
                .ok()
                .filter(|k| (1..=5).contains(k))
                .ok_or_else(|| {
                    err(
                        DAY_OF_WEEK.name,
                        format!("`{item}`: the week after # must be 1 to 5"),
                    )
                })?;
            dow.nth[w as usize] |= 1 << k;
        } else if upper.len() > 1 && upper.ends_with('L') && !upper.contains(['-', '/', '*']) {
            let w = weekday(&upper[..upper.len() - 1], item)?;
            dow.last |= 1 << w;
        } else {
            DAY_OF_WEEK.parse_item(item, &mut |w| dow.days |= 1 << (w % 7))?;
        }
    }
    Ok(dow)
}

impl CronExpr {
    /// Parses an expression (without a `CRON_TZ=` prefix; the schedule spec strips it).
    pub fn parse(text: &str) -> Result<Self, CronError> {
        if text.len() > MAX_CRON_BYTES {
            return Err(err(
                "expression",
                format!("is longer than {MAX_CRON_BYTES} bytes"),
            ));
        }
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            _ if text.starts_with('@') => {
                return Err(err(
                    "expression",
                    format!(
                        "`{text}` is not a known macro (@yearly, @monthly, @weekly, @daily, @hourly)"
                    ),
                ));
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 | 7 => (fields[0], &fields[1..]),
            n => {
                return Err(err(
                    "expression",
                    format!(
                        "has {n} fields; write 5 (minute hour day-of-month month day-of-week), 6 (with seconds first) or 7 (and a year last)"
                    ),
                ));
            }
        };
        let (min, hour, dom, mon, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let year = rest.get(5).copied();
        let mut e = CronExpr {
            seconds: 0,
            minutes: 0,
            hours: 0,
            months: 0,
            dom: DaysOfMonth::default(),
            dow: DaysOfWeek::default(),
            days_and: false,
            years: None,
            fixed_time: is_plain_numbers(sec) && is_plain_numbers(min) && is_plain_numbers(hour),
        };
        SECOND.parse_list(sec, |v| e.seconds |= 1 << v)?;
        MINUTE.parse_list(min, |v| e.minutes |= 1 << v)?;
        HOUR.parse_list(hour, |v| e.hours |= 1 << v)?;
        MONTH.parse_list(mon, |v| e.months |= 1 << v)?;
        e.dom = parse_days_of_month(dom)?;
        let dow = match dow.strip_prefix('+') {
            Some(d) => {
                e.days_and = true;
                d
            }
            None => dow,
        };
        e.dow = parse_days_of_week(dow)?;
        if let Some(year) = year {
            let mut words = [0u64; YEAR_WORDS];
            YEAR.parse_list(year, |y| {
                let i = (y - MIN_YEAR as u32) as usize;
                words[i / 64] |= 1 << (i % 64);
            })?;
            e.years = Some(words);
        }
        Ok(e)
    }

    /// Second, minute and hour name fixed wall-clock times (see the module comment).
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    fn year_ok(&self, y: i16) -> bool {
        match &self.years {
            None => (MIN_YEAR..=MAX_YEAR).contains(&y),
            Some(w) => {
                if !(MIN_YEAR..=MAX_YEAR).contains(&y) {
                    return false;
                }
                let i = (y - MIN_YEAR) as usize;
                w[i / 64] & (1 << (i % 64)) != 0
            }
        }
    }

    fn dom_matches(&self, date: Date) -> bool {
        let d = date.day() as u32;
        let dim = date.days_in_month() as u32;
        let dom = &self.dom;
        if dom.days & (1 << d) != 0 || dom.from_last & (1 << (dim - d)) != 0 {
            return true;
        }
        if dom.last_weekday && d == nearest_weekday(date, dim, dim) {
            return true;
        }
        let mut bits = dom.nearest_weekday;
        while bits != 0 {
            let n = bits.trailing_zeros();
            bits &= bits - 1;
            if n <= dim && d == nearest_weekday(date, n, dim) {
                return true;
            }
        }
        false
    }

    fn dow_matches(&self, date: Date) -> bool {
        let w = date.weekday().to_sunday_zero_offset() as usize;
        let d = date.day() as u32;
        let dim = date.days_in_month() as u32;
        self.dow.days & (1 << w) != 0
            || self.dow.nth[w] & (1 << ((d - 1) / 7 + 1)) != 0
            || (self.dow.last & (1 << w) != 0 && d + 7 > dim)
    }

    /// Whether the expression matches this day (before looking at the time of day).
    pub fn day_matches(&self, date: Date) -> bool {
        if !self.year_ok(date.year()) || self.months & (1 << date.month()) == 0 {
            return false;
        }
        let (dom, dow) = (self.dom_matches(date), self.dow_matches(date));
        if self.days_and || self.dom.unrestricted || self.dow.unrestricted {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether the expression matches this civil time (whole seconds).
    pub fn matches(&self, t: DateTime) -> bool {
        t.subsec_nanosecond() == 0
            && self.day_matches(t.date())
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
            && self.seconds & (1 << t.second()) != 0
    }

    /// The first civil time at or after `from` (rounded up to a whole second) that the
    /// expression matches, or `None` if there is none up to the end of [`MAX_YEAR`].
    pub fn next_civil(&self, from: DateTime) -> Option<DateTime> {
        let mut from = from;
        if from.subsec_nanosecond() != 0 {
            from = from
                .with()
                .subsec_nanosecond(0)
                .build()
                .ok()?
                .checked_add(jiff::SignedDuration::from_secs(1))
                .ok()?;
        }
        let (mut y, mut mo, mut d) = (from.year(), from.month(), from.day());
        let (mut h, mut mi, mut s) = (
            from.hour() as u32,
            from.minute() as u32,
            from.second() as u32,
        );
        // Each turn moves forward at least one field step; the bound is a backstop far above
        // what the walk needs (about 31 turns per month searched).
        for _ in 0..200_000 {
            if y > MAX_YEAR {
                return None;
            }
            if y < MIN_YEAR {
                (y, mo, d, h, mi, s) = (MIN_YEAR, 1, 1, 0, 0, 0);
            }
            if !self.year_ok(y) {
                (y, mo, d, h, mi, s) = (y + 1, 1, 1, 0, 0, 0);
                continue;
            }
            if mo > 12 {
                (y, mo, d, h, mi, s) = (y + 1, 1, 1, 0, 0, 0);
                continue;
            }
            if self.months & (1 << mo) == 0 {
                (mo, d, h, mi, s) = (mo + 1, 1, 0, 0, 0);
                continue;
            }
            let Ok(date) = Date::new(y, mo, d) else {
                // Past the month's last day.
                (mo, d, h, mi, s) = (mo + 1, 1, 0, 0, 0);
                continue;
            };
            if !self.day_matches(date) {
                (d, h, mi, s) = (d + 1, 0, 0, 0);
                continue;
            }
            match next_bit(u64::from(self.hours), h) {
                None => {
                    (d, h, mi, s) = (d + 1, 0, 0, 0);
                    continue;
                }
                Some(nh) if nh != h => (h, mi, s) = (nh, 0, 0),
                Some(_) => {}
            }
            match next_bit(self.minutes, mi) {
                None => {
                    (h, mi, s) = (h + 1, 0, 0);
                    continue;
                }
                Some(nm) if nm != mi => (mi, s) = (nm, 0),
                Some(_) => {}
            }
            match next_bit(self.seconds, s) {
                None => {
                    (mi, s) = (mi + 1, 0);
                    continue;
                }
                Some(ns) => s = ns,
            }
            let time = Time::new(h as i8, mi as i8, s as i8, 0).ok()?;
            return Some(DateTime::from_parts(date, time));
        }
        None
    }
}

/// The lowest set bit at or above `from`, if any (bits above 63 do not exist).
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let m = mask >> from;
    (m != 0).then(|| from + m.trailing_zeros())
}

/// The weekday nearest to day `n` of `date`'s month (of `dim` days), without leaving it.
fn nearest_weekday(date: Date, n: u32, dim: u32) -> u32 {
    let Ok(target) = date.with().day(n as i8).build() else {
        return 0;
    };
    match target.weekday().to_sunday_zero_offset() {
        6 if n == 1 => 3,
        6 => n - 1,
        0 if n == dim => n - 2,
        0 => n + 1,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn next(expr: &str, from: DateTime) -> Option<DateTime> {
        CronExpr::parse(expr).unwrap().next_civil(from)
    }

    fn dt(y: i16, m: i8, d: i8, h: i8, mi: i8, s: i8) -> DateTime {
        date(y, m, d).at(h, mi, s, 0)
    }

    #[test]
    fn fields_count_five_six_or_seven() {
        assert_eq!(
            next("30 2 * * *", dt(2026, 1, 1, 0, 0, 0)),
            Some(dt(2026, 1, 1, 2, 30, 0))
        );
        assert_eq!(
            next("15 30 2 * * *", dt(2026, 1, 1, 0, 0, 0)),
            Some(dt(2026, 1, 1, 2, 30, 15))
        );
        assert_eq!(
            next("0 0 0 1 1 * 2030", dt(2026, 1, 1, 0, 0, 1)),
            Some(dt(2030, 1, 1, 0, 0, 0))
        );
        let e = CronExpr::parse("* * * *").unwrap_err();
        assert_eq!(e.field, "expression");
        assert!(e.message.contains("4 fields"), "{e}");
    }

    #[test]
    fn refusals_name_the_field_and_the_fix() {
        let cases = [
            ("0 61 * * * *", "minute", "61 is out of range 0–59"),
            ("0 0 24 * * *", "hour", "24 is out of range 0–23"),
            ("0 0 0 0 * *", "day-of-month", "0 is out of range 1–31"),
            ("0 0 0 * FOO *", "month", "`FOO` is not a number"),
            ("0 0 0 * * 8", "day-of-week", "8 is out of range 0–7"),
            ("0 0 0 * * MON#6", "day-of-week", "must be 1 to 5"),
            ("0 0 0 * * L", "day-of-week", "ambiguous"),
            ("0 0 0 L-31 * *", "day-of-month", "L-n"),
            ("0 0 0 32W * *", "day-of-month", "nW"),
            ("0 0 22-2 * * *", "hour", "goes downwards"),
            ("0 */0 * * * *", "minute", "step 0"),
            ("0 1,,2 * * * *", "minute", "empty list item"),
            ("0 0 0 1 1 * 1969", "year", "out of range 1970–2199"),
            ("@often", "expression", "not a known macro"),
        ];
        for (expr, field, text) in cases {
            let e = CronExpr::parse(expr).unwrap_err();
            assert_eq!(e.field, field, "{expr}: {e}");
            assert!(e.message.contains(text), "{expr}: {e}");
        }
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        let from = dt(2026, 3, 2, 10, 7, 0); // a Monday
        assert_eq!(
            next("0 */15 * * * *", from),
            Some(dt(2026, 3, 2, 10, 15, 0))
        );
        assert_eq!(
            next("0 5/20 * * * *", from),
            Some(dt(2026, 3, 2, 10, 25, 0))
        );
        assert_eq!(
            next("0 0 9-17/4 * * *", from),
            Some(dt(2026, 3, 2, 13, 0, 0))
        );
        assert_eq!(
            next("0 0 0 * * SAT,sun", from),
            Some(dt(2026, 3, 7, 0, 0, 0))
        );
        assert_eq!(
            next("0 0 0 1 jun-aug *", from),
            Some(dt(2026, 6, 1, 0, 0, 0))
        );
        assert_eq!(next("0 0 0 * * 7", from), Some(dt(2026, 3, 8, 0, 0, 0)));
        assert_eq!(next("@hourly", from), Some(dt(2026, 3, 2, 11, 0, 0)));
        assert_eq!(next("@weekly", from), Some(dt(2026, 3, 8, 0, 0, 0)));
    }

    #[test]
    fn last_days_nearest_weekdays_and_nth_weekdays() {
        let from = dt(2026, 1, 1, 0, 0, 0);
        // The last day of February 2026 (not a leap year), and of 2028 (a leap year).
        assert_eq!(next("0 0 0 L 2 *", from), Some(dt(2026, 2, 28, 0, 0, 0)));
        assert_eq!(
            next("0 0 0 L 2 *", dt(2027, 3, 1, 0, 0, 0)),
            Some(dt(2028, 2, 29, 0, 0, 0))
        );
        assert_eq!(next("0 0 0 L-2 1 *", from), Some(dt(2026, 1, 29, 0, 0, 0)));
        // 2026-02-15 is a Sunday: 15W is Monday the 16th. 2026-08-01 is a Saturday: 1W is
        // Monday the 3rd (never back into July). 2026-05-31 is a Sunday: 31W is Friday 29th.
        assert_eq!(next("0 0 0 15W 2 *", from), Some(dt(2026, 2, 16, 0, 0, 0)));
        assert_eq!(next("0 0 0 1W 8 *", from), Some(dt(2026, 8, 3, 0, 0, 0)));
        assert_eq!(next("0 0 0 31W 5 *", from), Some(dt(2026, 5, 29, 0, 0, 0)));
        // LW: 2026-01-31 is a Saturday, so the 30th.
        assert_eq!(next("0 0 0 LW 1 *", from), Some(dt(2026, 1, 30, 0, 0, 0)));
        // The last Friday of January 2026 is the 30th; the second Monday is the 12th.
        assert_eq!(next("0 0 0 * 1 5L", from), Some(dt(2026, 1, 30, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? 1 FRIL", from), Some(dt(2026, 1, 30, 0, 0, 0)));
        assert_eq!(
            next("0 0 0 * 1 MON#2", from),
            Some(dt(2026, 1, 12, 0, 0, 0))
        );
        // A fifth Monday does not exist in February 2026; the next is in March (30th).
        assert_eq!(
            next("0 0 0 * 2-3 1#5", from),
            Some(dt(2026, 3, 30, 0, 0, 0))
        );
    }

    #[test]
    fn day_fields_combine_with_or_unless_plus() {
        let from = dt(2026, 3, 2, 0, 0, 1); // Monday 2 March
        // OR: the 15th or any Friday; the first is Friday 6 March.
        assert_eq!(next("0 0 0 15 * FRI", from), Some(dt(2026, 3, 6, 0, 0, 0)));
        // AND with `+`: a Friday that is the 13th (2026-03-13 is one).
        assert_eq!(
            next("0 0 0 13 * +FRI", from),
            Some(dt(2026, 3, 13, 0, 0, 0))
        );
        assert_eq!(
            next("0 0 0 13 * +FRI", dt(2026, 3, 14, 0, 0, 0)),
            Some(dt(2026, 11, 13, 0, 0, 0))
        );
        // `*/2` starts with `*`: day-of-month counts as unrestricted, so Mondays decide
        // together with it (Vixie cron's rule): odd days that are Mondays.
        assert_eq!(next("0 0 0 */2 * MON", from), Some(dt(2026, 3, 9, 0, 0, 0)));
    }

    #[test]
    fn impossible_dates_never_match() {
        assert_eq!(next("0 0 0 30 2 *", dt(2026, 1, 1, 0, 0, 0)), None);
        assert_eq!(next("0 0 0 29 2 * 2100", dt(2026, 1, 1, 0, 0, 0)), None);
    }

    #[test]
    fn fixed_time_means_plain_numbers_in_second_minute_and_hour() {
        for (expr, fixed) in [
            ("30 2 * * *", true),
            ("0 0,30 2 * * *", true),
            ("0 */30 * * * *", false),
            ("0 10 * * * *", false),
            ("0 0 1-3 * * *", false),
            ("* 0 2 * * *", false),
            ("@daily", true),
            ("@hourly", false),
        ] {
            assert_eq!(
                CronExpr::parse(expr).unwrap().is_fixed_time(),
                fixed,
                "{expr}"
            );
        }
    }

    #[test]
    fn sub_second_starts_round_up() {
        let from = date(2026, 1, 1).at(0, 0, 0, 1);
        assert_eq!(next("* * * * * *", from), Some(dt(2026, 1, 1, 0, 0, 1)));
    }
}
