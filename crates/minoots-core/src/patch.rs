//! A client's request to change a scheduled timer (`PATCH /timers/{id}` and its gRPC and
//! MCP equivalents), and its validation into a [`TimerChange`].
//!
//! A patch names the version it read and the fields it replaces. Each field passes exactly
//! the checks of a create ([`crate::request`]: the same fire-time rules, label, metadata
//! and action checks, with the same sentences); a patch that names nothing to change, or
//! no version, is refused. It must never decide whether the change applies to the timer
//! as stored: that is [`crate::plan::plan_update`]'s, under the store's lock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action::ActionBundle;
use crate::error::ValidationErrors;
use crate::records::TimerChange;
use crate::request::{DurationInput, check_labels, check_metadata, parse_json, resolve_fire_time};

/// The body of `PATCH /timers/{id}`, as the client sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimerPatch {
    /// The version the client read; may come in an `If-Match` header instead.
    #[serde(default, deserialize_with = "version_number")]
    pub version: Option<i64>,
    #[serde(default)]
    pub duration: Option<DurationInput>,
    #[serde(default)]
    pub fire_at: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub action_bundle: Option<ActionBundle>,
}

impl TimerPatch {
    /// Parses a JSON body; a syntax or type error names the field where it happened.
    pub fn from_json(body: &[u8]) -> Result<Self, ValidationErrors> {
        parse_json(body)
    }

    /// Whether the patch gives a new fire time.
    pub fn moves(&self) -> bool {
        self.duration.is_some() || self.fire_at.is_some()
    }

    /// The fire time this patch asks for at `now_us`, when it gives a valid one.
    pub fn fire_at_us(&self, now_us: i64) -> Option<i64> {
        if !self.moves() {
            return None;
        }
        let mut errors = ValidationErrors::new();
        let (at, _) = resolve_fire_time(
            self.duration.as_ref(),
            self.fire_at.as_ref(),
            now_us,
            &mut errors,
        );
        errors.is_empty().then_some(at)
    }

    /// Validates the patch at `now_us`. `if_match` is the version an `If-Match` header
    /// carried; the body's `version` must agree with it when both are given. All problems
    /// are reported together.
    pub fn validate(
        &self,
        if_match: Option<i64>,
        now_us: i64,
    ) -> Result<TimerChange, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let version = match (self.version, if_match) {
            (Some(v), Some(h)) if v != h => {
                errors.push(
                    "version",
                    format!("is {v} but the If-Match header says {h}; send one of them, or the same version in both"),
                );
                None
            }
            (Some(v), _) | (None, Some(v)) => Some(v),
            (None, None) => {
                errors.push(
                    "version",
                    "is required: send the version you read (GET the timer), in the body or as If-Match: \"3\"",
                );
                None
            }
        };
        if version.is_some_and(|v| v < 1) {
            errors.push(
                "version",
                "must be a whole number from 1, as the timer shows it",
            );
        }
        let fire_at = self.moves().then(|| {
            let (at, duration_ms) = resolve_fire_time(
                self.duration.as_ref(),
                self.fire_at.as_ref(),
                now_us,
                &mut errors,
            );
            (at, duration_ms)
        });
        let metadata = self
            .metadata
            .as_ref()
            .filter(|m| !m.is_null())
            .map(|m| check_metadata(Some(m), &mut errors));
        let labels = self.labels.clone().map(|l| check_labels(l, &mut errors));
        if let Some(bundle) = &self.action_bundle {
            bundle.validate("actionBundle", &mut errors);
        }
        if fire_at.is_none()
            && metadata.is_none()
            && labels.is_none()
            && self.action_bundle.is_none()
        {
            errors.push(
                "body",
                "changes nothing; give fireAt or duration, actionBundle, labels or metadata",
            );
        }
        errors.into_result()?;
        Ok(TimerChange {
            expected_version: version,
            fire_at,
            action_bundle: self.action_bundle.clone(),
            labels,
            metadata,
            cause: Default::default(),
        })
    }
}

/// A version as JSON gives it: a whole number, also when written `3.0` (JSON Schema counts
/// that as an integer, and so do some clients' encoders).
fn version_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v: Option<serde_json::Value> = Option::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => whole_number(&v).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{v} is not a whole number; send the version you read, like 3"
            ))
        }),
    }
}

/// An `i64` from a JSON number without a fraction (`3` or `3.0`).
pub fn whole_number(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::PAST_FIRE_AT_GRACE_MS;

    const NOW: i64 = 1_795_773_600_000_000; // 2026-11-27T10:00:00Z

    fn patch(json: &str) -> Result<TimerChange, ValidationErrors> {
        TimerPatch::from_json(json.as_bytes())?.validate(None, NOW)
    }

    fn fields(e: ValidationErrors) -> Vec<String> {
        e.errors.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_version_is_a_whole_number_also_written_with_a_zero_fraction() {
        assert_eq!(
            patch(r#"{"version": 12380.0, "duration": "30s"}"#)
                .unwrap()
                .expected_version,
            Some(12380)
        );
        for bad in [
            r#"{"version": 3.5}"#,
            r#"{"version": "3"}"#,
            r#"{"version": true}"#,
        ] {
            let e = TimerPatch::from_json(bad.as_bytes()).unwrap_err();
            assert_eq!(fields(e), ["version"], "{bad}");
        }
    }

    #[test]
    fn a_valid_patch_becomes_a_change_of_the_fields_given() {
        let c = patch(r#"{"version": 3, "duration": "30s", "labels": {"team": "ops"}}"#).unwrap();
        assert_eq!(c.expected_version, Some(3));
        assert_eq!(c.fire_at, Some((NOW + 30_000_000, Some(30_000))));
        assert_eq!(c.labels.unwrap()["team"], "ops");
        assert_eq!((c.metadata, c.action_bundle), (None, None));
        let c = patch(r#"{"version": 1, "fireAt": "2026-11-27T10:00:05Z"}"#).unwrap();
        assert_eq!(c.fire_at, Some((NOW + 5_000_000, None)));
        // The header carries the version instead; the same in both is fine.
        let p = TimerPatch::from_json(br#"{"metadata": {"a": 1}}"#).unwrap();
        assert_eq!(p.validate(Some(7), NOW).unwrap().expected_version, Some(7));
        let p = TimerPatch::from_json(br#"{"version": 7, "metadata": {"a": 1}}"#).unwrap();
        assert_eq!(p.validate(Some(7), NOW).unwrap().expected_version, Some(7));
    }

    #[test]
    fn a_bad_patch_names_each_field_to_fix() {
        let past = format!(
            r#"{{"version": 1, "fireAt": "{}"}}"#,
            crate::timefmt::format_us(NOW - (PAST_FIRE_AT_GRACE_MS + 1) * 1_000)
        );
        // (body, fields named)
        let table: [(&str, &[&str]); 10] = [
            (r#"{"fireAt": "2026-11-27T10:00:05Z"}"#, &["version"]),
            (r#"{"version": "3", "duration": "1s"}"#, &["version"]),
            (r#"{"version": 0, "duration": "1s"}"#, &["version"]),
            (r#"{"version": 3}"#, &["body"]),
            (r#"{"version": 3, "name": "x"}"#, &["name"]),
            (r#"{"version": 3, "fireAt": "tomorrow"}"#, &["fireAt"]),
            (&past, &["fireAt"]),
            (
                r#"{"version": 3, "duration": "1s", "fireAt": "2026-11-27T10:00:05Z"}"#,
                &["duration"],
            ),
            (r#"{"version": 3, "duration": "11000d"}"#, &["duration"]),
            (
                r#"{"version": 3, "labels": {"-x": "y"}, "metadata": [1]}"#,
                &["metadata", "labels.-x"],
            ),
        ];
        for (body, want) in table {
            let got = fields(patch(body).unwrap_err());
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            want.sort();
            assert_eq!(got_sorted, want, "{body}");
        }
        let p = TimerPatch::from_json(br#"{"version": 3, "duration": "1s"}"#).unwrap();
        assert_eq!(fields(p.validate(Some(4), NOW).unwrap_err()), ["version"]);
    }
}
