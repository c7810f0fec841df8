//! A client's schedule request (`POST /schedules`, `POST /schedules/preview`, the MCP and
//! CLI equivalents) and its validation into a [`ScheduleSpec`].
//!
//! What is stored is the civil spec — the expression as written and the zone's name —
//! never an offset, so a change of the zone's rules is followed. Every refusal names the
//! field (`cron`, `every`, `timezone`, `misfire.window`, …) and says what to write instead;
//! the run's labels, metadata and action bundle are checked by the timer request's own
//! validation, so a schedule accepts exactly the actions a timer accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cron::CronExpr;
use super::slots::{Recurrence, Zone};
use crate::action::ActionBundle;
use crate::duration::parse_duration_ms;
use crate::error::ValidationErrors;
use crate::request::{DurationInput, TimerRequest, TimerSpec, parse_json};
use crate::timefmt::parse_rfc3339_us;

/// Most slots one preview returns.
pub const MAX_PREVIEW_COUNT: usize = 1000;
/// Default and largest `misfire.maxBurst`: catch-up fires at most this many missed slots.
pub const DEFAULT_MAX_BURST: u32 = 100;
pub const MAX_MAX_BURST: u32 = 1000;
/// Default `misfire.window`: missed slots older than this are recorded `catchupExpired`.
pub const DEFAULT_MISFIRE_WINDOW_MS: i64 = 3_600_000;
/// Longest `misfire.window`, `every` and `jitter`.
pub const MAX_MISFIRE_WINDOW_MS: i64 = 366 * 24 * 3_600_000;
pub const MAX_EVERY_MS: i64 = 366 * 24 * 3_600_000;
pub const MAX_JITTER_MS: i64 = 24 * 3_600_000;
/// Largest `maxRuns`.
pub const MAX_MAX_RUNS: u64 = 1_000_000_000;
/// Slots looked at to find a cron expression's shortest interval (against the tier's
/// minimum): a day of an every-minute expression, enough to see any sub-daily pattern.
const INTERVAL_PROBE_SLOTS: usize = 1_441;

/// What to do with slots missed while MINOOTS was down (or the schedule's kernel was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum MisfirePolicy {
    /// Fire the newest missed slot; record the others `superseded`.
    #[default]
    Latest,
    /// Fire every missed slot in order, at most `maxBurst`.
    All,
    /// Fire none of them; record them `superseded`.
    None,
}

/// What to do when a slot comes while the previous run is still active (fired, not yet
/// settled, failed or cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Overlap {
    /// Record the slot `skipped(overlap)`.
    #[default]
    Skip,
    /// Keep the newest waiting slot and fire it when the active run ends.
    BufferOne,
    /// Keep every waiting slot and fire them in order.
    BufferAll,
    /// Cancel the active run, then fire.
    CancelOther,
    /// Fire regardless.
    AllowAll,
}

/// `misfire` as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MisfireRequest {
    #[serde(default)]
    pub policy: Option<MisfirePolicy>,
    #[serde(default)]
    pub window: Option<DurationInput>,
    #[serde(default)]
    pub max_burst: Option<u32>,
}

/// The body of `POST /schedules` (and `POST /schedules/preview`), as the client sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub every: Option<DurationInput>,
    #[serde(default)]
    pub phase: Option<DurationInput>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub start_at: Option<String>,
    #[serde(default)]
    pub end_at: Option<String>,
    #[serde(default)]
    pub max_runs: Option<u64>,
    #[serde(default)]
    pub misfire: Option<MisfireRequest>,
    #[serde(default)]
    pub overlap: Option<Overlap>,
    #[serde(default)]
    pub jitter: Option<DurationInput>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub action_bundle: Option<ActionBundle>,
}

/// Catch-up settings, with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misfire {
    pub policy: MisfirePolicy,
    pub window_us: i64,
    pub max_burst: u32,
}

/// A validated schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    /// The expression as stored (without a `CRON_TZ=` prefix), or `None` for `every`.
    pub cron: Option<String>,
    pub every_ms: Option<i64>,
    pub phase_ms: Option<i64>,
    pub recurrence: Recurrence,
    pub start_at_us: Option<i64>,
    pub end_at_us: Option<i64>,
    pub max_runs: Option<u64>,
    pub misfire: Misfire,
    pub overlap: Overlap,
    pub jitter_us: i64,
    /// What each run's timer carries: name, labels, metadata and action bundle.
    pub run: TimerSpec,
}

/// Milliseconds of a duration field, or an error message for it.
fn duration_ms(input: &DurationInput) -> Result<i64, String> {
    match input {
        DurationInput::Millis(ms) => Ok(*ms),
        DurationInput::Text(t) => parse_duration_ms(t).map_err(|e| e.to_string()),
    }
}

/// A duration field within `0..=max_ms` (or `1..` when `positive`), in whole seconds when
/// `whole_seconds`.
fn check_duration(
    input: &DurationInput,
    field: &str,
    max_ms: i64,
    whole_seconds: bool,
    positive: bool,
    errors: &mut ValidationErrors,
) -> Option<i64> {
    match duration_ms(input) {
        Err(e) => errors.push(field, e),
        Ok(ms) if ms < 0 || (positive && ms == 0) => {
            errors.push(field, "must be positive, like \"15m\"")
        }
        Ok(ms) if ms > max_ms => errors.push(
            field,
            format!("is longer than the {} days allowed", max_ms / 86_400_000),
        ),
        Ok(ms) if whole_seconds && ms % 1000 != 0 => errors.push(
            field,
            "must be a whole number of seconds (schedules count in seconds), like \"90s\"",
        ),
        Ok(ms) => return Some(ms),
    }
    None
}

impl ScheduleRequest {
    /// Parses a JSON body; a syntax or type error names the field where it happened.
    pub fn from_json(body: &[u8]) -> Result<Self, ValidationErrors> {
        parse_json(body)
    }

    /// Validates the request for `tenant_id` at `now_us`, with the tier's shortest
    /// allowed interval between slots. All problems are reported together.
    pub fn validate(
        &self,
        tenant_id: &str,
        now_us: i64,
        min_interval_ms: i64,
    ) -> Result<ScheduleSpec, ValidationErrors> {
        self.build(tenant_id, Some((now_us, min_interval_ms)))
    }

    /// The spec of a schedule accepted earlier (as stored): the same structure, without the
    /// checks that depend on the moment of creation (an end in the past, slots from now
    /// on, the tier's interval), which a stored schedule passed when it was created.
    pub fn stored_spec(&self, tenant_id: &str) -> Result<ScheduleSpec, ValidationErrors> {
        self.build(tenant_id, None)
    }

    fn build(
        &self,
        tenant_id: &str,
        admission: Option<(i64, i64)>,
    ) -> Result<ScheduleSpec, ValidationErrors> {
        let now_us = admission.map_or(0, |(now, _)| now);
        let mut errors = ValidationErrors::new();
        let recurrence = self.recurrence(&mut errors);
        let time = |field: &str, text: &Option<String>, errors: &mut ValidationErrors| {
            text.as_ref().and_then(|t| match parse_rfc3339_us(t) {
                Ok(us) => Some(us),
                Err(e) => {
                    errors.push(field, format!("is not an RFC 3339 time with an offset, like 2026-03-08T09:00:00Z ({e})"));
                    None
                }
            })
        };
        let start_at_us = time("startAt", &self.start_at, &mut errors);
        let end_at_us = time("endAt", &self.end_at, &mut errors);
        if let Some(end) = end_at_us {
            if start_at_us.is_some_and(|s| s > end) {
                errors.push(
                    "endAt",
                    "is before startAt; a schedule's end comes after its start",
                );
            } else if admission.is_some() && end < now_us {
                errors.push("endAt", "is in the past; the schedule would never fire");
            }
        }
        if let Some(n) = self.max_runs
            && !(1..=MAX_MAX_RUNS).contains(&n)
        {
            errors.push("maxRuns", format!("must be from 1 to {MAX_MAX_RUNS}"));
        }
        let misfire = self.misfire.clone().unwrap_or_default();
        let window_ms = misfire
            .window
            .as_ref()
            .map_or(Some(DEFAULT_MISFIRE_WINDOW_MS), |w| {
                check_duration(
                    w,
                    "misfire.window",
                    MAX_MISFIRE_WINDOW_MS,
                    false,
                    false,
                    &mut errors,
                )
            });
        let max_burst = misfire.max_burst.unwrap_or(DEFAULT_MAX_BURST);
        if !(1..=MAX_MAX_BURST).contains(&max_burst) {
            errors.push(
                "misfire.maxBurst",
                format!("must be from 1 to {MAX_MAX_BURST}"),
            );
        }
        let jitter_ms = self.jitter.as_ref().map_or(Some(0), |j| {
            check_duration(j, "jitter", MAX_JITTER_MS, false, false, &mut errors)
        });

        // The run's timer: the same checks as a timer request (the duration is a stand-in;
        // each run's fire time comes from its slot).
        let run_request = TimerRequest {
            name: self.name.clone(),
            duration: Some(DurationInput::Millis(1)),
            metadata: self.metadata.clone(),
            labels: self.labels.clone(),
            action_bundle: self.action_bundle.clone(),
            ..TimerRequest::default()
        };
        let run = match run_request.validate(tenant_id, now_us) {
            Ok(run) => Some(run),
            Err(e) => {
                for f in e.errors {
                    errors.push(f.field, f.message);
                }
                None
            }
        };

        if let (Some(r), Some((now_us, min_interval_ms))) = (&recurrence, admission) {
            let from = start_at_us.map_or(now_us, |s| s.max(now_us));
            match r.next_after(from - 1) {
                None => errors.push(
                    self.recurrence_field(),
                    "never matches a time from now on; check the day, month and year fields",
                ),
                Some(first) if end_at_us.is_some_and(|end| first.at_us > end) => errors.push(
                    "endAt",
                    "comes before the schedule's first slot; the schedule would never fire",
                ),
                // Slots are whole seconds apart at least: only a longer minimum needs a look.
                Some(first) if min_interval_ms > 1000 => {
                    let shortest = shortest_interval_us(r, first.at_us);
                    if shortest.is_some_and(|s| s < min_interval_ms * 1000) {
                        errors.push(
                            self.recurrence_field(),
                            format!(
                                "fires every {} s at its closest; the tenant's tier allows one run every {} s at most often",
                                shortest.unwrap_or(0) / 1_000_000,
                                min_interval_ms / 1000
                            ),
                        );
                    }
                }
                Some(_) => {}
            }
        }

        errors.into_result()?;
        let (Some(recurrence), Some(run), Some(window_ms), Some(jitter_ms)) =
            (recurrence, run, window_ms, jitter_ms)
        else {
            unreachable!("every None above pushed an error");
        };
        let (every_ms, phase_ms) = match &recurrence {
            Recurrence::Every {
                every_s, phase_s, ..
            } => (Some(every_s * 1000), Some(phase_s * 1000)),
            Recurrence::Cron { .. } => (None, None),
        };
        Ok(ScheduleSpec {
            name: self.name.clone().unwrap_or_default(),
            cron: self
                .cron
                .as_deref()
                .map(|c| strip_zone_prefix(c).1.to_string()),
            every_ms,
            phase_ms,
            recurrence,
            start_at_us,
            end_at_us,
            max_runs: self.max_runs,
            misfire: Misfire {
                policy: misfire.policy.unwrap_or_default(),
                window_us: window_ms * 1000,
                max_burst,
            },
            overlap: self.overlap.unwrap_or_default(),
            jitter_us: jitter_ms * 1000,
            run,
        })
    }

    /// The request as a schedule stores and shows it: the zone by its canonical name (out of
    /// a `CRON_TZ=` prefix), and the catch-up and overlap settings with their defaults.
    pub fn normalized(&self, spec: &ScheduleSpec) -> ScheduleRequest {
        ScheduleRequest {
            cron: spec.cron.clone(),
            timezone: Some(spec.recurrence.zone().name().to_string()),
            misfire: Some(MisfireRequest {
                policy: Some(spec.misfire.policy),
                window: Some(
                    self.misfire
                        .as_ref()
                        .and_then(|m| m.window.clone())
                        .unwrap_or(DurationInput::Millis(spec.misfire.window_us / 1000)),
                ),
                max_burst: Some(spec.misfire.max_burst),
            }),
            overlap: Some(spec.overlap),
            ..self.clone()
        }
    }

    fn recurrence_field(&self) -> &'static str {
        if self.cron.is_some() { "cron" } else { "every" }
    }

    fn recurrence(&self, errors: &mut ValidationErrors) -> Option<Recurrence> {
        let (prefix_zone, expr) = match &self.cron {
            Some(c) => {
                let (zone, expr) = strip_zone_prefix(c);
                (zone, Some(expr))
            }
            None => (None, None),
        };
        let zone_name = match (&self.timezone, prefix_zone) {
            (Some(z), Some(p)) if z.trim() != p => {
                errors.push("timezone", format!("is \"{z}\" but the cron expression starts with the zone {p}; give the zone once"));
                None
            }
            (Some(z), _) => Some(z.as_str()),
            (None, Some(p)) => Some(p),
            (None, None) => None,
        };
        let zone = match zone_name.map(Zone::lookup) {
            None => Some(Zone::utc()),
            Some(Ok(z)) => Some(z),
            Some(Err(e)) => {
                errors.push("timezone", e);
                None
            }
        };
        match (expr, &self.every) {
            (Some(_), Some(_)) => {
                errors.push("every", "give either cron or every, not both");
                None
            }
            (None, None) => {
                errors.push(
                    "cron",
                    "is missing: give a cron expression like \"0 30 2 * * *\" or an interval like \"every\": \"15m\"",
                );
                None
            }
            (Some(expr), None) => {
                if self.phase.is_some() {
                    errors.push("phase", "applies to every, not to cron");
                }
                match CronExpr::parse(expr) {
                    Ok(expr) => zone.map(|zone| Recurrence::Cron { expr, zone }),
                    Err(e) => {
                        errors.push("cron", format!("{e}"));
                        None
                    }
                }
            }
            (None, Some(every)) => {
                let every_ms = check_duration(every, "every", MAX_EVERY_MS, true, true, errors);
                let phase_ms = match &self.phase {
                    None => Some(0),
                    Some(p) => check_duration(p, "phase", MAX_EVERY_MS, true, false, errors),
                };
                let (every_ms, phase_ms) = (every_ms?, phase_ms?);
                if phase_ms >= every_ms {
                    errors.push(
                        "phase",
                        "must be shorter than every (slots fall at epoch + n·every + phase)",
                    );
                    return None;
                }
                zone.map(|zone| Recurrence::Every {
                    every_s: every_ms / 1000,
                    phase_s: phase_ms / 1000,
                    zone,
                })
            }
        }
    }
}

/// Splits a `CRON_TZ=Zone ` or `TZ=Zone ` prefix from an expression.
fn strip_zone_prefix(text: &str) -> (Option<&str>, &str) {
    let t = text.trim_start();
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = t.strip_prefix(prefix) {
            let (zone, expr) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return (Some(zone), expr.trim_start());
        }
    }
    (None, t)
}

/// The shortest distance between consecutive slots among the first few from `first_us`.
fn shortest_interval_us(r: &Recurrence, first_us: i64) -> Option<i64> {
    if let Recurrence::Every { every_s, .. } = r {
        return Some(every_s * 1_000_000);
    }
    let mut slots = r.slots_from(first_us).take(INTERVAL_PROBE_SLOTS);
    let mut prev = slots.next()?.at_us;
    let mut shortest = None::<i64>;
    for s in slots {
        let gap = s.at_us - prev;
        shortest = Some(shortest.map_or(gap, |m| m.min(gap)));
        prev = s.at_us;
    }
    shortest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::parse_rfc3339_us;

    const NOW: &str = "2026-03-01T00:00:00Z";

    fn validate(body: &str, min_interval_ms: i64) -> Result<ScheduleSpec, ValidationErrors> {
        ScheduleRequest::from_json(body.as_bytes())?.validate(
            "acme",
            parse_rfc3339_us(NOW).unwrap(),
            min_interval_ms,
        )
    }

    fn refused(body: &str, field: &str, text: &str) {
        let e = validate(body, 1000).unwrap_err();
        let hit = e.errors.iter().find(|f| f.field == field);
        assert!(
            hit.is_some_and(|f| f.message.contains(text)),
            "{body}: wanted {field} ~ {text}, got {e:?}"
        );
    }

    #[test]
    fn defaults_are_utc_latest_skip_no_jitter() {
        let s = validate(r#"{"cron": "0 30 2 * * *"}"#, 1000).unwrap();
        assert_eq!(s.recurrence.zone().name(), "UTC");
        assert_eq!(s.misfire.policy, MisfirePolicy::Latest);
        assert_eq!(s.misfire.window_us, DEFAULT_MISFIRE_WINDOW_MS * 1000);
        assert_eq!(s.misfire.max_burst, DEFAULT_MAX_BURST);
        assert_eq!(s.overlap, Overlap::Skip);
        assert_eq!(s.jitter_us, 0);
        assert_eq!(s.cron.as_deref(), Some("0 30 2 * * *"));
    }

    #[test]
    fn a_cron_tz_prefix_moves_into_the_timezone() {
        for body in [
            r#"{"cron": "CRON_TZ=America/New_York 0 30 2 * * *"}"#,
            r#"{"cron": "TZ=America/New_York 0 30 2 * * *", "timezone": "America/New_York"}"#,
        ] {
            let s = validate(body, 1000).unwrap();
            assert_eq!(s.recurrence.zone().name(), "America/New_York");
            assert_eq!(s.cron.as_deref(), Some("0 30 2 * * *"));
        }
        refused(
            r#"{"cron": "CRON_TZ=America/New_York 0 30 2 * * *", "timezone": "Europe/Paris"}"#,
            "timezone",
            "give the zone once",
        );
    }

    #[test]
    fn bad_specs_name_their_field() {
        refused(
            r#"{"cron": "0 61 * * * *"}"#,
            "cron",
            "minute: 61 is out of range",
        );
        refused(r#"{"cron": "0 0 0 30 2 *"}"#, "cron", "never matches");
        refused(
            r#"{"cron": "0 0 0 * * *", "timezone": "Mars/Olympus"}"#,
            "timezone",
            "not a time zone",
        );
        refused(r#"{}"#, "cron", "is missing");
        refused(r#"{"cron": "@daily", "every": "1h"}"#, "every", "not both");
        refused(r#"{"every": "1500ms"}"#, "every", "whole number of seconds");
        refused(r#"{"every": "0s"}"#, "every", "must be positive");
        refused(
            r#"{"every": "1h", "phase": "1h"}"#,
            "phase",
            "shorter than every",
        );
        refused(
            r#"{"cron": "@daily", "phase": "1h"}"#,
            "phase",
            "applies to every",
        );
        refused(
            r#"{"cron": "@daily", "endAt": "2026-02-01T00:00:00Z"}"#,
            "endAt",
            "in the past",
        );
        refused(
            r#"{"cron": "@daily", "startAt": "2026-05-01T00:00:00Z", "endAt": "2026-04-01T00:00:00Z"}"#,
            "endAt",
            "before startAt",
        );
        refused(r#"{"cron": "@daily", "maxRuns": 0}"#, "maxRuns", "from 1");
        refused(
            r#"{"cron": "@daily", "misfire": {"maxBurst": 5000}}"#,
            "misfire.maxBurst",
            "from 1 to 1000",
        );
        refused(
            r#"{"cron": "@daily", "misfire": {"window": "soon"}}"#,
            "misfire.window",
            "",
        );
        refused(
            r#"{"cron": "@daily", "jitter": "2d"}"#,
            "jitter",
            "longer than",
        );
        refused(r#"{"cron": "@daily", "labels": {"": "x"}}"#, "labels.", "");
        let e = validate(r#"{"cron": "@daily", "overlap": "sometimes"}"#, 1000).unwrap_err();
        assert!(e.has_field("overlap"), "{e:?}");
    }

    #[test]
    fn the_tier_sets_the_shortest_interval() {
        assert!(
            validate(r#"{"every": "30s"}"#, 60_000)
                .unwrap_err()
                .has_field("every")
        );
        assert!(validate(r#"{"every": "60s"}"#, 60_000).is_ok());
        let e = validate(r#"{"cron": "*/10 * * * * *"}"#, 60_000).unwrap_err();
        assert!(e.errors[0].message.contains("every 10 s"), "{e:?}");
        // Two runs a minute apart once a day is still "every 60 s at its closest".
        assert!(validate(r#"{"cron": "0 0,1 9 * * *"}"#, 60_000).is_ok());
        assert!(validate(r#"{"cron": "0,30 0 9 * * *"}"#, 60_000).is_err());
    }
}
