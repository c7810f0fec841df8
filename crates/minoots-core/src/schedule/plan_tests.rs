//! Table tests of the dispatch planner, and a simulation that drives it on a manual clock.

use proptest::prelude::*;

use super::*;
use crate::schedule::ScheduleRequest;
use crate::timefmt::parse_rfc3339_us;

const S: i64 = 1_000_000;
const MIN: i64 = 60 * S;

fn t0() -> i64 {
    parse_rfc3339_us("2026-12-10T00:00:00Z").unwrap()
}

fn spec(json: &str) -> ScheduleSpec {
    ScheduleRequest::from_json(json.as_bytes())
        .unwrap()
        .validate("acme", t0() - 3600 * S, 0)
        .unwrap()
}

fn progress(cursor_us: i64) -> Progress {
    Progress {
        status: ScheduleStatus::Active,
        cursor_us,
        runs_fired: 0,
        run_active: false,
        buffered: Vec::new(),
    }
}

/// The plan's records as (minutes after t0, what).
fn records(plan: &Plan) -> Vec<(i64, String)> {
    plan.runs
        .iter()
        .map(|r| {
            let what = match r {
                Run::Fire { fire_at_us, .. } => format!("fire@{}", (fire_at_us - t0()) / S),
                Run::Skip { reason, .. } => reason.as_str().to_string(),
                Run::Buffer { .. } => "buffer".to_string(),
            };
            ((r.slot_us() - t0()) / MIN, what)
        })
        .collect()
}

#[test]
fn a_slot_fires_ahead_of_time_when_no_run_is_active() {
    let s = spec(r#"{"every": "1m"}"#);
    // One second before the slot at t0 + 1 min.
    let plan = plan_dispatch(&s, b"k", &progress(t0()), t0() + MIN - S);
    assert_eq!(records(&plan), [(1, "fire@60".to_string())]);
    assert_eq!(plan.progress.cursor_us, t0() + MIN);
    assert!(plan.progress.run_active);
    // Its run is active: look again at the next slot's lead (it has usually ended by then).
    assert_eq!(plan.wake_at_us, Some(t0() + 2 * MIN - DISPATCH_LEAD_US));
    let ended = plan_run_ended(&s, &plan.progress, t0() + MIN + S);
    assert!(!ended.progress.run_active);
    assert_eq!(ended.wake_at_us, Some(t0() + 2 * MIN - DISPATCH_LEAD_US));
    // Too early: nothing yet, wake at the lead.
    let early = plan_dispatch(&s, b"k", &progress(t0()), t0() + 30 * S);
    assert!(early.runs.is_empty());
    assert_eq!(early.wake_at_us, Some(t0() + MIN - DISPATCH_LEAD_US));
}

#[test]
fn overlap_policies_at_a_slot_while_a_run_is_active() {
    let active = Progress {
        run_active: true,
        ..progress(t0())
    };
    let at_slot = t0() + MIN;
    // Ahead of the slot nothing is decided: the run may end in time.
    let ahead = plan_dispatch(&spec(r#"{"every": "1m"}"#), b"k", &active, at_slot - S);
    assert!(ahead.runs.is_empty());
    assert_eq!(ahead.wake_at_us, Some(at_slot));
    let cases = [
        ("skip", "overlap", false, false),
        ("bufferOne", "buffer", false, false),
        ("bufferAll", "buffer", false, false),
        ("cancelOther", "fire@60", true, true),
        ("allowAll", "fire@60", false, true),
    ];
    for (overlap, what, cancels, fires) in cases {
        let s = spec(&format!(r#"{{"every": "1m", "overlap": "{overlap}"}}"#));
        let plan = plan_dispatch(&s, b"k", &active, at_slot);
        assert_eq!(records(&plan), [(1, what.to_string())], "{overlap}");
        assert_eq!(plan.cancel_active, cancels, "{overlap}");
        assert_eq!(plan.progress.runs_fired, u64::from(fires), "{overlap}");
    }
    // bufferOne keeps the first waiting slot; bufferAll keeps both.
    let waiting = Progress {
        buffered: vec![at_slot],
        cursor_us: at_slot,
        ..active.clone()
    };
    let one = plan_dispatch(
        &spec(r#"{"every": "1m", "overlap": "bufferOne"}"#),
        b"k",
        &waiting,
        at_slot + MIN,
    );
    assert_eq!(records(&one), [(2, "overlap".to_string())]);
    let all = plan_dispatch(
        &spec(r#"{"every": "1m", "overlap": "bufferAll"}"#),
        b"k",
        &waiting,
        at_slot + MIN,
    );
    assert_eq!(records(&all), [(2, "buffer".to_string())]);
    assert_eq!(all.progress.buffered, [at_slot, at_slot + MIN]);
}

#[test]
fn the_end_of_a_run_fires_the_oldest_waiting_slot() {
    let s = spec(r#"{"every": "1m", "overlap": "bufferAll"}"#);
    let p = Progress {
        run_active: true,
        buffered: vec![t0() + MIN, t0() + 2 * MIN],
        cursor_us: t0() + 2 * MIN,
        runs_fired: 1,
        ..progress(0)
    };
    let now = t0() + 2 * MIN + 10 * S;
    let plan = plan_run_ended(&s, &p, now);
    assert_eq!(
        plan.unbuffered,
        [Run::Fire {
            slot_us: t0() + MIN,
            fire_at_us: now,
            gap_shifted: false
        }]
    );
    assert_eq!(plan.progress.buffered, [t0() + 2 * MIN]);
    assert!(plan.progress.run_active);
    assert_eq!(plan.progress.runs_fired, 2);
    // Past maxRuns, what waits is skipped and the schedule completes.
    let s = spec(r#"{"every": "1m", "overlap": "bufferAll", "maxRuns": 1}"#);
    let plan = plan_run_ended(&s, &p, now);
    assert_eq!(plan.unbuffered.len(), 2);
    assert!(plan.unbuffered.iter().all(|r| matches!(
        r,
        Run::Skip {
            reason: SkipReason::MaxRuns,
            ..
        }
    )));
    assert_eq!(plan.progress.status, ScheduleStatus::Completed);
    assert_eq!(plan.wake_at_us, None);
}

#[test]
fn catch_up_after_downtime_follows_the_policy() {
    // Down from t0 to t0 + 10 min 30 s: slots 1..=10 were missed.
    let now = t0() + 10 * MIN + 30 * S;
    let cases: [(&str, Vec<&str>); 4] = [
        (
            r#"{"every": "1m", "misfire": {"policy": "latest"}}"#,
            [vec!["superseded"; 9], vec!["fire@630"]].concat(),
        ),
        (
            r#"{"every": "1m", "misfire": {"policy": "none"}}"#,
            vec!["superseded"; 10],
        ),
        // The newest three fire (allowAll lets them run together).
        (
            r#"{"every": "1m", "overlap": "allowAll", "misfire": {"policy": "all", "maxBurst": 3}}"#,
            [vec!["superseded"; 7], vec!["fire@630"; 3]].concat(),
        ),
        // With the default overlap (skip) only the first of them runs.
        (
            r#"{"every": "1m", "misfire": {"policy": "all", "maxBurst": 3}}"#,
            [
                vec!["superseded"; 7],
                vec!["fire@630", "overlap", "overlap"],
            ]
            .concat(),
        ),
    ];
    for (body, want) in cases {
        let plan = plan_dispatch(&spec(body), b"k", &progress(t0()), now);
        let got: Vec<String> = records(&plan).into_iter().map(|(_, w)| w).collect();
        assert_eq!(got, want, "{body}");
        assert_eq!(plan.progress.cursor_us, t0() + 10 * MIN);
    }
}

#[test]
fn missed_slots_older_than_the_window_expire() {
    let s = spec(
        r#"{"every": "1m", "misfire": {"policy": "all", "window": "3m"}, "overlap": "allowAll"}"#,
    );
    let now = t0() + 10 * MIN + 30 * S;
    let plan = plan_dispatch(&s, b"k", &progress(t0()), now);
    let got: Vec<String> = records(&plan).into_iter().map(|(_, w)| w).collect();
    assert_eq!(
        got,
        [vec!["catchupExpired"; 7], vec!["fire@630"; 3]].concat()
    );
}

#[test]
fn a_long_backlog_is_worked_off_in_bounded_steps_with_one_latest_fire() {
    let s = spec(r#"{"every": "1s"}"#);
    let now = t0() + 7200 * S; // two hours of one-second slots missed
    let mut p = progress(t0());
    let (mut fires, mut records_total, mut steps) = (Vec::new(), 0, 0);
    loop {
        let plan = plan_dispatch(&s, b"k", &p, now);
        assert!(plan.runs.len() <= MAX_RECORDS_PER_DISPATCH);
        assert!(
            plan.runs
                .windows(2)
                .all(|w| w[0].slot_us() < w[1].slot_us())
        );
        assert!(plan.runs.first().is_none_or(|r| r.slot_us() > p.cursor_us));
        records_total += plan.runs.len();
        fires.extend(
            plan.runs
                .iter()
                .filter(|r| matches!(r, Run::Fire { .. }))
                .map(Run::slot_us),
        );
        steps += 1;
        let again = plan.wake_at_us == Some(now);
        p = plan.progress;
        if !again {
            break;
        }
    }
    // Slots t0+1 s ..= now: the missed ones, then the on-time ones (those within the lead
    // wait, as the caught-up run is active).
    assert!(steps >= 8, "{steps}");
    assert_eq!(
        fires[0],
        now - MISSED_AFTER_US - S,
        "the newest missed slot fires"
    );
    assert_eq!(records_total, 7200);
}

#[test]
fn paused_schedules_record_passed_slots_and_look_no_further() {
    let s = spec(r#"{"every": "1m"}"#);
    let p = Progress {
        status: ScheduleStatus::Paused,
        ..progress(t0())
    };
    let plan = plan_dispatch(&s, b"k", &p, t0() + 3 * MIN + S);
    let got: Vec<(i64, String)> = records(&plan);
    assert_eq!(
        got,
        [
            (1, "paused".into()),
            (2, "paused".into()),
            (3, "paused".into())
        ]
    );
    assert_eq!(plan.wake_at_us, Some(t0() + 4 * MIN));
    assert_eq!(plan.progress.runs_fired, 0);
}

#[test]
fn max_runs_and_end_at_complete_the_schedule() {
    let s = spec(
        r#"{"every": "1m", "maxRuns": 2, "overlap": "allowAll", "misfire": {"policy": "all"}}"#,
    );
    let plan = plan_dispatch(&s, b"k", &progress(t0()), t0() + 4 * MIN + 30 * S);
    let got: Vec<String> = records(&plan).into_iter().map(|(_, w)| w).collect();
    assert_eq!(got, ["fire@270", "fire@270", "maxRuns", "maxRuns"]);
    assert_eq!(plan.progress.status, ScheduleStatus::Completed);
    assert_eq!(plan.wake_at_us, None);

    let s = spec(r#"{"every": "1m", "endAt": "2026-12-10T00:02:00Z", "overlap": "allowAll"}"#);
    let plan = plan_dispatch(&s, b"k", &progress(t0()), t0() + 2 * MIN);
    assert_eq!(records(&plan).len(), 2);
    assert_eq!(plan.progress.status, ScheduleStatus::Completed);
    // A start in the future: nothing before it.
    let s = spec(r#"{"every": "1m", "startAt": "2026-12-10T01:00:00Z"}"#);
    let p = Progress::new(&s, t0());
    let plan = plan_dispatch(&s, b"k", &p, t0() + 30 * MIN);
    assert!(plan.runs.is_empty());
    assert_eq!(plan.wake_at_us, Some(t0() + 60 * MIN - DISPATCH_LEAD_US));
}

#[test]
fn cancel_other_within_one_catch_up_records_the_replaced_run_as_overlap() {
    let s = spec(
        r#"{"every": "1m", "overlap": "cancelOther", "misfire": {"policy": "all", "maxBurst": 2}}"#,
    );
    let plan = plan_dispatch(&s, b"k", &progress(t0()), t0() + 3 * MIN + 30 * S);
    let got: Vec<String> = records(&plan).into_iter().map(|(_, w)| w).collect();
    assert_eq!(got, ["superseded", "overlap", "fire@210"]);
    assert_eq!(plan.progress.runs_fired, 1);
}

const ZONES: [&str; 4] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A dispatcher that wakes when the plan says (a little late, never early) and whose
    /// runs end before the next slot fires exactly the preview's slots, each once, never
    /// before its slot, with one record per slot.
    #[test]
    fn on_a_simulated_clock_what_fires_is_the_preview(
        cron in prop_oneof![
            Just("0 */7 * * * *"), Just("0 30 2 * * *"), Just("0 0 * * * *"),
            Just("15 */20 1-3 * * *"), Just("0 0 9 * * MON-FRI"), Just("0 45 1 * * *")],
        zone in 0..ZONES.len(),
        start_day in 0i64..330,
        days in 1i64..4,
        late_ms in 0i64..1500,
        jitter in prop_oneof![Just("0s"), Just("45s")],
    ) {
        let year = parse_rfc3339_us("2026-01-01T00:00:00Z").unwrap();
        let start = year + start_day * 86_400 * S;
        let end = start + days * 86_400 * S;
        let s = ScheduleRequest::from_json(format!(r#"{{"cron": "{cron}", "timezone": "{}", "jitter": "{jitter}"}}"#, ZONES[zone]).as_bytes())
            .unwrap()
            .validate("acme", start, 0)
            .unwrap();
        let key = b"schedule-1";
        let mut p = Progress::new(&s, start);
        let mut now = start;
        let mut fired = Vec::new();
        let mut recorded = Vec::new();
        for _ in 0..100_000 {
            let plan = plan_dispatch(&s, key, &p, now);
            for r in &plan.runs {
                recorded.push(r.slot_us());
                if let Run::Fire { slot_us, fire_at_us, .. } = *r {
                    prop_assert!(fire_at_us >= slot_us, "early: {} < {}", fire_at_us, slot_us);
                    fired.push((slot_us, fire_at_us));
                }
            }
            p = plan.progress;
            let mut wake = plan.wake_at_us;
            // The run ends at once, well before the next slot.
            if p.run_active {
                let ended = plan_run_ended(&s, &p, now);
                p = ended.progress;
                wake = ended.wake_at_us;
            }
            match wake {
                Some(w) if w < end => now = w.max(now) + late_ms * 1000,
                _ => break,
            }
        }
        let preview: Vec<(i64, i64)> = crate::schedule::preview(&s, key, start, 1000)
            .into_iter()
            .map(|r| (parse_rfc3339_us(&r.at).unwrap(), parse_rfc3339_us(&r.fire_at).unwrap()))
            .filter(|(at, _)| *at <= recorded.last().copied().unwrap_or(i64::MIN))
            .collect();
        prop_assert!(recorded.windows(2).all(|w| w[0] < w[1]), "records not strictly increasing");
        prop_assert_eq!(fired.len(), recorded.len(), "a slot was not fired");
        prop_assert_eq!(fired, preview);
    }
}
