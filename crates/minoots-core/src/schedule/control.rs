//! Changes made to a schedule through the API — pause, resume, a change of its spec — as
//! pure plans over its progress, in the same terms as the dispatch planner (`plan.rs`), so
//! the slot records stay exactly one per slot through every change. A backend reads the
//! schedule and its withdrawable runs, asks here, writes the answer in one transaction,
//! then dispatches the changed schedule in the same transaction.
//!
//! **Withdrawable runs.** A run's timer may exist before it fires: created up to
//! `DISPATCH_LEAD_US` ahead of its slot, or held back by jitter. A change that stops or
//! redefines the slots withdraws such runs: their timers are cancelled while still
//! `scheduled`, and their records change (pause) or go (a new spec). A run whose timer
//! fired is never withdrawn: it runs to its end.
//!
//! **Rules.**
//! - *Pause* (an active schedule): every withdrawable run becomes `skipped(paused)`, and so
//!   does every slot waiting for the active run (`buffered`); from then on each slot that
//!   passes is recorded `skipped(paused)` by the dispatcher.
//! - *Resume* (a paused schedule): the slots that passed since the last record are first
//!   recorded `skipped(paused)`, so every slot up to the resume keeps exactly one record.
//!   Without `catchUp` nothing of the pause runs. With it, the slots recorded
//!   `skipped(paused)` within `misfire.window` are caught up by the misfire policy
//!   (`latest`: the newest; `all`: the newest `maxBurst`; `none`: none) under the overlap
//!   rule, and their records change to what they became.
//! - *A new spec* (PATCH): a slot is a slot of the spec in force when it passes. Slots up
//!   to the change keep their records (those the dispatcher had not yet written are
//!   decided by the old spec first); withdrawable runs of slots after it are withdrawn and
//!   their records removed (those slots have not happened), and the new spec's slots
//!   follow from the change on (or from its `startAt`, when later). A completed schedule
//!   becomes active again from the change on (the time it stood completed is not caught
//!   up); the dispatcher completes it again when the new spec has no slot left.

use super::plan::{Progress, Run, ScheduleStatus, SkipReason, decide};
use super::slots::Slot;
use serde_json::Value;

use super::spec::{MisfirePolicy, Overlap, ScheduleRequest, ScheduleSpec};
use crate::error::ValidationErrors;

/// A run whose timer has not fired yet (created ahead of its slot, or delayed by jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withdrawable {
    pub slot_us: i64,
    /// The schedule's active run is this one.
    pub active: bool,
}

/// What a change writes (before the dispatch that follows it in the same transaction).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlPlan {
    /// Slots whose run's timer is cancelled (when still scheduled).
    pub withdrawn: Vec<i64>,
    /// Records whose status changes, as they become, in slot order.
    pub changed: Vec<Run>,
    /// New records (slots that passed while paused), in slot order.
    pub recorded: Vec<Run>,
    /// Records removed (withdrawn slots after a change of spec).
    pub removed: Vec<i64>,
    /// The active run was withdrawn: the schedule has none now.
    pub active_withdrawn: bool,
    /// The active run's timer to cancel first (`cancelOther` during a catch-up).
    pub cancel_active: bool,
}

/// Pauses `p` (an active schedule; a paused or completed one is left as it is).
pub fn plan_pause(p: &mut Progress, withdrawable: &[Withdrawable]) -> ControlPlan {
    let mut plan = ControlPlan::default();
    if p.status != ScheduleStatus::Active {
        return plan;
    }
    p.status = ScheduleStatus::Paused;
    let mut slots: Vec<i64> = withdrawable.iter().map(|w| w.slot_us).collect();
    plan.withdrawn = slots.clone();
    p.runs_fired = p.runs_fired.saturating_sub(withdrawable.len() as u64);
    if withdrawable.iter().any(|w| w.active) {
        plan.active_withdrawn = true;
        p.run_active = false;
    }
    slots.append(&mut p.buffered);
    slots.sort_unstable();
    plan.changed = slots
        .into_iter()
        .map(|slot_us| Run::Skip {
            slot_us,
            reason: SkipReason::Paused,
        })
        .collect();
    plan
}

/// Resumes `p` (a paused schedule; an active or completed one is left as it is) at
/// `now_us`. `paused_slots` are the newest slots recorded `skipped(paused)` up to now,
/// oldest first — as many as the misfire policy may keep (see [`catch_up_keep`]); only
/// read when `catch_up`.
pub fn plan_resume(
    spec: &ScheduleSpec,
    key: &[u8],
    p: &mut Progress,
    paused_slots: &[i64],
    catch_up: bool,
    now_us: i64,
) -> ControlPlan {
    let mut plan = ControlPlan::default();
    if p.status != ScheduleStatus::Paused {
        return plan;
    }
    // The slots that passed since the dispatcher's last look are still paused ones.
    let passed = super::plan::plan_dispatch(spec, key, p, now_us);
    plan.recorded = passed.runs;
    p.cursor_us = passed.progress.cursor_us;
    if passed.progress.status == ScheduleStatus::Completed {
        // Its last slot passed during the pause.
        p.status = ScheduleStatus::Completed;
        return plan;
    }
    p.status = ScheduleStatus::Active;
    if !catch_up {
        return plan;
    }
    let mut candidates: Vec<i64> = paused_slots
        .iter()
        .copied()
        .chain(plan.recorded.iter().map(Run::slot_us))
        .filter(|at| *at >= now_us - spec.misfire.window_us && *at <= now_us)
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let keep = catch_up_keep(spec);
    let chosen = &candidates[candidates.len().saturating_sub(keep)..];
    let mut decided: Vec<Run> = Vec::new();
    for (i, &at) in chosen.iter().enumerate() {
        if spec.overlap == Overlap::CancelOther
            && let Some(pos) = decided.iter().rposition(|r| matches!(r, Run::Fire { .. }))
        {
            decided[pos] = Run::Skip {
                slot_us: decided[pos].slot_us(),
                reason: SkipReason::Overlap,
            };
            p.runs_fired -= 1;
        }
        let slot = Slot {
            at_us: at,
            gap_shifted: false,
        };
        let following = chosen.get(i + 1).copied();
        let run = decide(
            spec,
            key,
            p,
            &slot,
            now_us,
            following,
            &mut plan.cancel_active,
        );
        decided.push(run);
    }
    // A caught-up slot is either one recorded just now (its new record changes) or an
    // older one (its stored record changes).
    for run in decided {
        match plan
            .recorded
            .iter_mut()
            .find(|r| r.slot_us() == run.slot_us())
        {
            Some(r) => *r = run,
            None => plan.changed.push(run),
        }
    }
    plan
}

/// How many `skipped(paused)` slots a catch-up on resume may fire at most.
pub fn catch_up_keep(spec: &ScheduleSpec) -> usize {
    match spec.misfire.policy {
        MisfirePolicy::Latest => 1,
        MisfirePolicy::All => spec.misfire.max_burst as usize,
        MisfirePolicy::None => 0,
    }
}

/// Puts `new` in force at `now_us` for a schedule at `p` that followed `old`.
/// `withdrawable` are its runs whose timers have not fired; `latest_kept_us` is its newest
/// record after now that stays (a run fired early by hand), if any.
pub fn plan_respec(
    old: &ScheduleSpec,
    new: &ScheduleSpec,
    key: &[u8],
    p: &mut Progress,
    withdrawable: &[Withdrawable],
    latest_kept_us: Option<i64>,
    now_us: i64,
) -> ControlPlan {
    let mut plan = ControlPlan::default();
    for w in withdrawable.iter().filter(|w| w.slot_us > now_us) {
        plan.withdrawn.push(w.slot_us);
        plan.removed.push(w.slot_us);
        p.runs_fired = p.runs_fired.saturating_sub(1);
        if w.active {
            plan.active_withdrawn = true;
            p.run_active = false;
        }
    }
    let kept = latest_kept_us.unwrap_or(i64::MIN);
    p.cursor_us = p.cursor_us.min(now_us).max(kept);
    let status = p.status;
    if status != ScheduleStatus::Completed {
        // The old spec's slots up to the change that have no record yet (the dispatcher
        // had not looked, or the schedule is paused) are decided by the old spec.
        let mut bounded = old.clone();
        bounded.end_at_us = Some(old.end_at_us.map_or(now_us, |e| e.min(now_us)));
        for _ in 0..MAX_CATCH_UP_DISPATCHES {
            let passed = super::plan::plan_dispatch(&bounded, key, p, now_us);
            let full = passed.runs.len() >= super::plan::MAX_RECORDS_PER_DISPATCH;
            plan.recorded.extend(passed.runs);
            plan.cancel_active |= passed.cancel_active;
            *p = passed.progress;
            if !full {
                break;
            }
        }
    }
    p.status = match status {
        ScheduleStatus::Paused => ScheduleStatus::Paused,
        _ => ScheduleStatus::Active,
    };
    p.cursor_us = p.cursor_us.max(now_us).max(kept);
    if let Some(start) = new.start_at_us {
        p.cursor_us = p.cursor_us.max(start - 1);
    }
    plan
}

/// Dispatches a change of spec runs at most to record the old spec's slots up to it
/// (each records at most `MAX_RECORDS_PER_DISPATCH`): more only after a dispatcher that
/// stood still for that many slots, whose oldest then count as recorded by the new spec.
const MAX_CATCH_UP_DISPATCHES: usize = 100;

/// The request of a schedule changed by `patch`, whose fields replace the stored ones
/// whole (`labels`, `metadata`, `misfire` and `actionBundle` included, as a timer's PATCH
/// does) and whose `null`s remove them. Giving `cron` drops a stored `every` and `phase`,
/// and giving `every` drops a stored `cron`, so a schedule can change kind. The result is
/// checked like a new request's body (unknown fields, types) and must then be validated.
pub fn patched_request(
    stored: &ScheduleRequest,
    patch: &serde_json::Map<String, Value>,
) -> Result<ScheduleRequest, ValidationErrors> {
    let mut merged = match serde_json::to_value(stored) {
        Ok(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    if patch.get("cron").is_some_and(|v| !v.is_null()) {
        merged.remove("every");
        merged.remove("phase");
    }
    if patch.get("every").is_some_and(|v| !v.is_null()) {
        merged.remove("cron");
    }
    for (k, v) in patch {
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    let body = serde_json::to_vec(&Value::Object(merged)).unwrap_or_default();
    ScheduleRequest::from_json(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_789_999_980_000_000; // 2026-09-21T14:13:00Z, a whole minute

    fn spec(json: &str) -> ScheduleSpec {
        ScheduleRequest::from_json(json.as_bytes())
            .unwrap()
            .stored_spec("t")
            .unwrap()
    }

    fn progress(status: ScheduleStatus, cursor_us: i64, runs_fired: u64) -> Progress {
        Progress {
            status,
            cursor_us,
            runs_fired,
            run_active: false,
            buffered: Vec::new(),
        }
    }

    #[test]
    fn pause_withdraws_runs_not_fired_and_buffered_slots() {
        let mut p = progress(ScheduleStatus::Active, T0 + 10_000_000, 7);
        p.run_active = true;
        p.buffered = vec![T0 + 2_000_000];
        let w = [
            Withdrawable {
                slot_us: T0 + 9_000_000,
                active: false,
            },
            Withdrawable {
                slot_us: T0 + 10_000_000,
                active: true,
            },
        ];
        let plan = plan_pause(&mut p, &w);
        assert_eq!(plan.withdrawn, vec![T0 + 9_000_000, T0 + 10_000_000]);
        let changed: Vec<(i64, SkipReason)> = plan
            .changed
            .iter()
            .map(|r| match *r {
                Run::Skip { slot_us, reason } => (slot_us, reason),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            changed,
            vec![
                (T0 + 2_000_000, SkipReason::Paused),
                (T0 + 9_000_000, SkipReason::Paused),
                (T0 + 10_000_000, SkipReason::Paused)
            ]
        );
        assert!(plan.active_withdrawn);
        assert_eq!(p.status, ScheduleStatus::Paused);
        assert_eq!(p.runs_fired, 5);
        assert!(p.buffered.is_empty() && !p.run_active);
        // Pausing again changes nothing.
        let before = p.clone();
        assert_eq!(plan_pause(&mut p, &[]), ControlPlan::default());
        assert_eq!(p, before);
    }

    #[test]
    fn resume_records_the_pause_and_catches_up_only_when_asked() {
        let s = spec(r#"{"every": "1m", "misfire": {"policy": "latest", "window": "5m"}}"#);
        // Paused since T0 (its slot recorded); now 10 minutes and 30 s later.
        let now = T0 + 630_000_000;
        let mut p = progress(ScheduleStatus::Paused, T0 + 480_000_000, 0);
        let plan = plan_resume(&s, b"k", &mut p, &[T0 + 480_000_000], false, now);
        let recorded: Vec<i64> = plan.recorded.iter().map(Run::slot_us).collect();
        assert_eq!(recorded, vec![T0 + 540_000_000, T0 + 600_000_000]);
        assert!(plan.recorded.iter().all(|r| matches!(
            r,
            Run::Skip {
                reason: SkipReason::Paused,
                ..
            }
        )));
        assert!(plan.changed.is_empty());
        assert_eq!(p.status, ScheduleStatus::Active);
        assert_eq!(p.cursor_us, T0 + 600_000_000);
        assert_eq!(p.runs_fired, 0);

        // With catchUp, policy latest: the newest paused slot within the window fires now.
        let mut p = progress(ScheduleStatus::Paused, T0 + 480_000_000, 0);
        let plan = plan_resume(&s, b"k", &mut p, &[T0 + 480_000_000], true, now);
        assert!(plan.changed.is_empty());
        assert!(matches!(
            plan.recorded[1],
            Run::Fire { slot_us, fire_at_us, .. } if slot_us == T0 + 600_000_000 && fire_at_us == now
        ));
        assert_eq!(p.runs_fired, 1);
        assert!(p.run_active);

        // Policy all with allowAll: every paused slot within the window (5 minutes) fires,
        // the stored ones by changing their records; the older ones stay paused.
        let s = spec(
            r#"{"every": "1m", "overlap": "allowAll", "misfire": {"policy": "all", "window": "5m"}}"#,
        );
        let mut p = progress(ScheduleStatus::Paused, T0 + 480_000_000, 0);
        let stored = [
            T0 + 300_000_000,
            T0 + 360_000_000,
            T0 + 420_000_000,
            T0 + 480_000_000,
        ];
        let plan = plan_resume(&s, b"k", &mut p, &stored, true, now);
        let changed: Vec<i64> = plan.changed.iter().map(Run::slot_us).collect();
        assert_eq!(
            changed,
            vec![T0 + 360_000_000, T0 + 420_000_000, T0 + 480_000_000]
        );
        assert!(plan.changed.iter().all(|r| matches!(r, Run::Fire { .. })));
        assert!(plan.recorded.iter().all(|r| matches!(r, Run::Fire { .. })));
        assert_eq!(p.runs_fired, 5);

        // Policy none: nothing.
        let s = spec(r#"{"every": "1m", "misfire": {"policy": "none"}}"#);
        let mut p = progress(ScheduleStatus::Paused, T0 + 480_000_000, 0);
        let plan = plan_resume(&s, b"k", &mut p, &[T0 + 480_000_000], true, now);
        assert!(plan.changed.is_empty());
        assert!(plan.recorded.iter().all(|r| matches!(r, Run::Skip { .. })));
    }

    #[test]
    fn resume_catch_up_obeys_overlap_and_max_runs() {
        let now = T0 + 630_000_000;
        let stored = [T0 + 540_000_000, T0 + 600_000_000];
        // skip: of two caught-up slots only the first fires (the second overlaps it).
        let s = spec(r#"{"every": "1m", "misfire": {"policy": "all"}}"#);
        let mut p = progress(ScheduleStatus::Paused, T0 + 600_000_000, 0);
        let plan = plan_resume(&s, b"k", &mut p, &stored, true, now);
        assert!(matches!(plan.changed[0], Run::Fire { .. }));
        assert!(matches!(
            plan.changed[1],
            Run::Skip {
                reason: SkipReason::Overlap,
                ..
            }
        ));
        // maxRuns 1 already reached: nothing fires, and the schedule completes.
        let s = spec(r#"{"every": "1m", "maxRuns": 1, "misfire": {"policy": "all"}}"#);
        let mut p = progress(ScheduleStatus::Paused, T0 + 600_000_000, 1);
        let plan = plan_resume(&s, b"k", &mut p, &stored, true, now);
        assert!(plan.changed.iter().all(|r| matches!(
            r,
            Run::Skip {
                reason: SkipReason::MaxRuns,
                ..
            }
        )));
        assert_eq!(p.status, ScheduleStatus::Completed);
    }

    #[test]
    fn a_new_spec_withdraws_future_runs_and_starts_from_the_change() {
        let s = spec(r#"{"every": "30s"}"#);
        let now = T0 + 5_000_000;
        let mut p = progress(ScheduleStatus::Completed, T0 + 10_000_000, 4);
        p.run_active = true;
        let w = [
            // Jitter holds this one back: its slot has passed, it stays.
            Withdrawable {
                slot_us: T0,
                active: false,
            },
            Withdrawable {
                slot_us: T0 + 10_000_000,
                active: true,
            },
        ];
        let plan = plan_respec(&s, &s, b"k", &mut p, &w, None, now);
        assert_eq!(plan.withdrawn, vec![T0 + 10_000_000]);
        assert_eq!(plan.removed, vec![T0 + 10_000_000]);
        assert!(plan.recorded.is_empty());
        assert!(plan.active_withdrawn && !p.run_active);
        assert_eq!(p.runs_fired, 3);
        assert_eq!(p.cursor_us, now);
        assert_eq!(p.status, ScheduleStatus::Active);

        // A paused schedule: the old spec's slots up to the change are recorded paused
        // first; the new spec starts after the change and stays paused.
        let old = spec(r#"{"every": "1m"}"#);
        let new = spec(r#"{"every": "2m"}"#);
        let mut p = progress(ScheduleStatus::Paused, T0, 0);
        let now = T0 + 150_000_000;
        let plan = plan_respec(&old, &new, b"k", &mut p, &[], None, now);
        let recorded: Vec<i64> = plan.recorded.iter().map(Run::slot_us).collect();
        assert_eq!(recorded, vec![T0 + 60_000_000, T0 + 120_000_000]);
        assert_eq!((p.status, p.cursor_us), (ScheduleStatus::Paused, now));

        // A completed schedule made active again starts from the change, not from where it
        // stopped (no catch-up of the time it was completed).
        let mut p = progress(ScheduleStatus::Completed, T0, 1);
        let plan = plan_respec(&old, &old, b"k", &mut p, &[], None, now);
        assert!(plan.recorded.is_empty());
        assert_eq!((p.status, p.cursor_us), (ScheduleStatus::Active, now));

        // A later startAt moves the cursor to it; a kept later record is never re-used.
        let s = spec(r#"{"every": "30s", "startAt": "2026-09-21T15:00:00Z"}"#);
        let start = s.start_at_us.unwrap();
        let mut p = progress(ScheduleStatus::Active, now, 0);
        plan_respec(&s, &s, b"k", &mut p, &[], None, now);
        assert_eq!(p.cursor_us, start - 1);
        let s = spec(r#"{"every": "30s"}"#);
        let mut p = progress(ScheduleStatus::Active, T0 + 200_000_000, 1);
        plan_respec(&s, &s, b"k", &mut p, &[], Some(T0 + 200_000_000), now);
        assert_eq!(p.cursor_us, T0 + 200_000_000);
    }

    #[test]
    fn a_patch_replaces_fields_and_can_change_the_kind() {
        let stored = ScheduleRequest::from_json(
            br#"{"cron": "0 * * * * *", "timezone": "Europe/Berlin", "labels": {"a": "1", "b": "2"},
                 "misfire": {"policy": "all", "maxBurst": 5}}"#,
        )
        .unwrap();
        let patch = |json: &str| {
            let v: Value = serde_json::from_str(json).unwrap();
            patched_request(&stored, v.as_object().unwrap())
        };
        let r = patch(
            r#"{"every": "90s", "labels": {"a": "1", "c": "3"}, "misfire": {"window": "5m"}}"#,
        )
        .unwrap();
        assert_eq!(r.cron, None);
        assert!(r.every.is_some());
        assert_eq!(r.timezone.as_deref(), Some("Europe/Berlin"));
        let labels: Vec<(&str, &str)> = r
            .labels
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, vec![("a", "1"), ("c", "3")]);
        // misfire is replaced whole: its policy and maxBurst are back to their defaults.
        let m = r.misfire.unwrap();
        assert_eq!((m.policy, m.max_burst), (None, None));
        assert!(m.window.is_some());
        // Fields not named stay.
        let r = patch(r#"{"name": "nightly"}"#).unwrap();
        assert_eq!(r.cron.as_deref(), Some("0 * * * * *"));
        assert_eq!(r.labels.unwrap().len(), 2);
        // An unknown field or a wrong type is named.
        assert_eq!(
            patch(r#"{"crontab": "x"}"#).unwrap_err().errors[0].field,
            "crontab"
        );
        assert_eq!(
            patch(r#"{"maxRuns": "ten"}"#).unwrap_err().errors[0].field,
            "maxRuns"
        );
        // null removes an optional field.
        assert_eq!(patch(r#"{"timezone": null}"#).unwrap().timezone, None);
    }
}
