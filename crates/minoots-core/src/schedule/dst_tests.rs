//! The DST vectors of the schedule contract, and a property test of the generator against
//! a brute-force oracle that walks every second of the UTC timeline.

use proptest::prelude::*;

use super::cron::CronExpr;
use super::slots::{Recurrence, Zone};
use crate::timefmt::{format_us, parse_rfc3339_us};

fn cron(expr: &str, zone: &str) -> Recurrence {
    Recurrence::Cron {
        expr: CronExpr::parse(expr).unwrap(),
        zone: Zone::lookup(zone).unwrap(),
    }
}

/// The slots in `[from, to)` as RFC 3339 text, with `*` after a gap-shifted one.
fn slots(r: &Recurrence, from: &str, to: &str) -> Vec<String> {
    let to = parse_rfc3339_us(to).unwrap();
    r.slots_from(parse_rfc3339_us(from).unwrap())
        .take_while(|s| s.at_us < to)
        .map(|s| {
            format!(
                "{}{}",
                format_us(s.at_us),
                if s.gap_shifted { "*" } else { "" }
            )
        })
        .collect()
}

#[test]
fn new_york_spring_gap_shifts_a_fixed_time_to_the_end_of_the_gap() {
    let r = cron("0 30 2 * * *", "America/New_York");
    assert_eq!(
        slots(&r, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z"),
        ["2026-03-08T07:00:00Z*", "2026-03-09T06:30:00Z"]
    );
    assert_eq!(
        r.zone()
            .local_text(parse_rfc3339_us("2026-03-08T07:00:00Z").unwrap()),
        "2026-03-08T03:00:00-04:00"
    );
}

#[test]
fn new_york_autumn_fold_fires_a_fixed_time_once_at_the_earlier_instant() {
    let r = cron("0 30 1 * * *", "America/New_York");
    assert_eq!(
        slots(&r, "2026-11-01T00:00:00Z", "2026-11-01T23:00:00Z"),
        ["2026-11-01T05:30:00Z"]
    );
}

#[test]
fn new_york_autumn_fold_fires_a_step_expression_in_both_passes() {
    let r = cron("0 */30 * * * *", "America/New_York");
    assert_eq!(
        slots(&r, "2026-11-01T05:00:00Z", "2026-11-01T07:00:01Z"),
        [
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z"
        ]
    );
}

#[test]
fn new_york_spring_gap_has_no_slot_for_a_wildcard_hour() {
    let r = cron("0 10 * * * *", "America/New_York");
    assert_eq!(
        slots(&r, "2026-03-08T06:00:00Z", "2026-03-08T07:59:59Z"),
        ["2026-03-08T06:10:00Z", "2026-03-08T07:10:00Z"]
    );
}

#[test]
fn berlin_gap_and_fold() {
    let r = cron("0 30 2 * * *", "Europe/Berlin");
    assert_eq!(
        slots(&r, "2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z"),
        ["2026-03-29T01:00:00Z*"]
    );
    assert_eq!(
        slots(&r, "2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z"),
        ["2026-10-25T00:30:00Z"]
    );
}

#[test]
fn lord_howe_half_hour_shift() {
    assert_eq!(
        slots(
            &cron("0 15 2 * * *", "Australia/Lord_Howe"),
            "2026-10-03T00:00:00Z",
            "2026-10-04T00:00:00Z"
        ),
        ["2026-10-03T15:30:00Z*"]
    );
    assert_eq!(
        slots(
            &cron("0 45 1 * * *", "Australia/Lord_Howe"),
            "2026-04-04T00:00:00Z",
            "2026-04-05T00:00:00Z"
        ),
        ["2026-04-04T14:45:00Z"]
    );
}

#[test]
fn cairo_midnight_gap() {
    assert_eq!(
        slots(
            &cron("0 0 0 * * *", "Africa/Cairo"),
            "2026-04-23T00:00:00Z",
            "2026-04-24T12:00:00Z"
        ),
        ["2026-04-23T22:00:00Z*"]
    );
}

#[test]
fn every_with_a_phase_ignores_dst() {
    let r = Recurrence::Every {
        every_s: 24 * 3600,
        phase_s: 7 * 3600 + 1800,
        zone: Zone::lookup("America/New_York").unwrap(),
    };
    assert_eq!(
        slots(&r, "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z"),
        [
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-09T07:30:00Z"
        ]
    );
}

#[test]
fn zone_names_are_canonical_and_unknown_ones_refused() {
    assert_eq!(Zone::lookup("europe/paris").unwrap().name(), "Europe/Paris");
    assert!(
        Zone::lookup("Europe/Atlantis")
            .unwrap_err()
            .contains("not a time zone")
    );
    assert!(
        super::tzdb_version().starts_with("20"),
        "{}",
        super::tzdb_version()
    );
}

/// The oracle: every whole second in `[from, to)`, kept when the expression matches its
/// civil time under the contract's rules, written the slow obvious way.
fn oracle(expr: &CronExpr, tz: &jiff::tz::TimeZone, from_s: i64, to_s: i64) -> Vec<(i64, bool)> {
    use jiff::Timestamp;
    let mut out: Vec<(i64, bool)> = Vec::new();
    for t in from_s..to_s {
        let ts = Timestamp::from_second(t).unwrap();
        let civil = tz.to_datetime(ts);
        let offset = tz.to_offset(ts);
        let earlier = tz.to_offset(Timestamp::from_second(t - 1).unwrap());
        // A gap ends at `t`: appointments inside it fire here.
        if expr.is_fixed_time() && earlier < offset {
            let (gap_from, gap_to) = (earlier.to_datetime(ts), civil);
            let mut c = gap_from;
            let mut inside = false;
            while c < gap_to {
                inside |= expr.matches(c);
                c = c.checked_add(jiff::SignedDuration::from_secs(1)).unwrap();
            }
            if inside {
                out.push((t, !expr.matches(civil)));
                continue;
            }
        }
        if !expr.matches(civil) {
            continue;
        }
        // Skip the second pass of a fold for an appointment: the same civil time already
        // happened at an earlier instant.
        if expr.is_fixed_time()
            && let jiff::tz::AmbiguousOffset::Fold { before, .. } =
                tz.to_ambiguous_timestamp(civil).offset()
            && before != offset
        {
            continue;
        }
        out.push((t, false));
    }
    out
}

const ZONES: [&str; 6] = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Africa/Cairo",
    "UTC",
    "America/Santiago",
];

/// Expressions dense enough that a day holds many slots, mixing fixed and wildcard times.
fn expression() -> impl Strategy<Value = String> {
    let second = prop_oneof![
        Just("0".to_string()),
        Just("*/20".to_string()),
        (0u32..60).prop_map(|s| s.to_string())
    ];
    let minute = prop_oneof![
        Just("*".to_string()),
        Just("*/15".to_string()),
        (0u32..60).prop_map(|m| m.to_string()),
        (0u32..30, 30u32..60).prop_map(|(a, b)| format!("{a},{b}")),
    ];
    let hour = prop_oneof![
        Just("*".to_string()),
        (0u32..24).prop_map(|h| h.to_string()),
        (0u32..4).prop_map(|h| format!("{h}-{}", h + 2)),
        (0u32..24, 0u32..24).prop_map(|(a, b)| format!("{a},{b}")),
        // The local hour a transition starts in (filled in by the test), often enough that
        // appointments land in gaps and folds.
        Just("T".to_string()),
        Just("T".to_string()),
        Just("T,23".to_string()),
    ];
    (second, minute, hour).prop_map(|(s, m, h)| format!("{s} {m} {h} * * *"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Around every 2026 transition of the zones above (and ordinary days), the generator
    /// gives exactly the oracle's slots, strictly increasing, none twice.
    #[test]
    fn the_generator_equals_the_oracle(
        expr in expression(),
        zone_i in 0..ZONES.len(),
        day in 0i64..365,
        hours in 1i64..30,
    ) {
        let zone = Zone::lookup(ZONES[zone_i]).unwrap();
        let tz = jiff::tz::db().get(zone.name()).unwrap();
        // Start near a transition half the time, else on an arbitrary day of 2026.
        let year_start = parse_rfc3339_us("2026-01-01T00:00:00Z").unwrap() / 1_000_000;
        let mut from_s = year_start + day * 86_400;
        let next = tz.following(jiff::Timestamp::from_second(from_s).unwrap()).next();
        if day % 2 == 0
            && let Some(tr) = &next
        {
            from_s = tr.timestamp().as_second() - hours * 1800;
        }
        let t_hour = next.map_or(2, |tr| {
            let before = tz.to_offset(tr.timestamp().checked_sub(jiff::SignedDuration::from_secs(1)).unwrap());
            // The first civil hour that is missing (gap) or repeated (fold).
            let after = tr.offset();
            before.min(after).to_datetime(tr.timestamp()).hour()
        });
        let expr = expr.replace('T', &t_hour.to_string());
        let parsed = CronExpr::parse(&expr).unwrap();
        let to_s = from_s + hours * 3600;
        let r = Recurrence::Cron { expr: parsed.clone(), zone };
        let got: Vec<(i64, bool)> = r
            .slots_from(from_s * 1_000_000)
            .take_while(|s| s.at_us < to_s * 1_000_000)
            .map(|s| (s.at_us / 1_000_000, s.gap_shifted))
            .collect();
        prop_assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "not strictly increasing: {:?}", got);
        prop_assert_eq!(got, oracle(&parsed, &tz, from_s, to_s), "{} in {}", expr, ZONES[zone_i]);
    }
}
