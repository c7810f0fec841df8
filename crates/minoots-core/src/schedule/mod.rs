//! Recurring schedules: the grammar (`cron.rs`), the slot generator with its time-zone and
//! DST rules (`slots.rs`), and a client's request validated into a [`ScheduleSpec`]
//! (`spec.rs`).
//!
//! A schedule names *slots*: nominal UTC instants, strictly increasing. Each slot that fires
//! becomes an ordinary timer due at the slot plus its jitter, so the kernel's firing window
//! and precision apply unchanged. Everything here is pure: no clock is read (the caller
//! passes "now"), nothing random is drawn (jitter is a hash of the schedule and the slot,
//! the same after a restart), and the preview endpoints and the dispatcher call the same
//! functions, so what a preview shows is what fires.

pub mod control;
pub mod cron;
pub mod plan;
pub mod record;
pub mod slots;
pub mod spec;

#[cfg(test)]
mod dst_tests;

pub use control::{
    ControlPlan, Withdrawable, catch_up_keep, patched_request, plan_pause, plan_respec, plan_resume,
};
pub use cron::{CronError, CronExpr};
pub use plan::{Plan, Progress, Run, ScheduleStatus, SkipReason, plan_dispatch, plan_run_ended};
pub use record::{RunStatus, Schedule, ScheduleFilter, ScheduleRun};
pub use slots::{Recurrence, Slot, Zone, tzdb_version};
pub use spec::{MAX_PREVIEW_COUNT, Misfire, MisfirePolicy, Overlap, ScheduleRequest, ScheduleSpec};

use crate::timefmt::format_us;

/// The delay added to a slot's fire time: a hash of `(key, slot)` below `jitter_us`, and
/// below the distance to the next slot, so jitter never reorders slots or reaches the next
/// one. `key` identifies the schedule (its id's bytes), which spreads schedules with the
/// same expression apart while each slot keeps its delay across restarts.
pub fn jitter_us(key: &[u8], slot_us: i64, jitter_us: i64, next_slot_us: Option<i64>) -> i64 {
    let bound = match next_slot_us {
        Some(next) => jitter_us.min(next.saturating_sub(slot_us)),
        None => jitter_us,
    };
    if bound <= 0 {
        return 0;
    }
    // FNV-1a over the key, then SplitMix64 with the slot: stable across versions and hosts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ (slot_us as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % bound as u64) as i64
}

/// One slot as the preview shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewRun {
    /// The nominal instant, RFC 3339 UTC.
    pub at: String,
    /// The same instant in the schedule's zone, with its offset.
    pub local: String,
    /// `gapShifted` when a DST gap moved the slot; otherwise absent (`null`).
    pub dst: Option<&'static str>,
    /// When its timer fires: the slot plus its jitter.
    pub fire_at: String,
}

/// The first `count` slots at or after `from_us` within the schedule's bounds, with the
/// jitter `key` gives them. `maxRuns` is not applied: a preview shows the calendar.
pub fn preview(spec: &ScheduleSpec, key: &[u8], from_us: i64, count: usize) -> Vec<PreviewRun> {
    let from_us = spec.start_at_us.map_or(from_us, |s| s.max(from_us));
    let mut slots = spec
        .recurrence
        .slots_from(from_us)
        .take_while(|s| spec.end_at_us.is_none_or(|end| s.at_us <= end))
        .take(count.min(MAX_PREVIEW_COUNT))
        .peekable();
    let mut runs = Vec::new();
    while let Some(slot) = slots.next() {
        let next = match slots.peek() {
            Some(n) => Some(n.at_us),
            None => spec.recurrence.next_after(slot.at_us).map(|n| n.at_us),
        };
        let fire = slot.at_us + jitter_us(key, slot.at_us, spec.jitter_us, next);
        runs.push(PreviewRun {
            at: format_us(slot.at_us),
            local: spec.recurrence.zone().local_text(slot.at_us),
            dst: slot.gap_shifted.then_some("gapShifted"),
            fire_at: format_us(fire),
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_stable_per_slot_and_stays_before_the_next_slot() {
        let key = b"0193-schedule";
        let a = jitter_us(key, 1_000_000, 30_000_000, Some(61_000_000));
        assert_eq!(a, jitter_us(key, 1_000_000, 30_000_000, Some(61_000_000)));
        assert!((0..30_000_000).contains(&a));
        // Different slots and different schedules get different delays.
        let spread: std::collections::BTreeSet<i64> = (0..64)
            .map(|i| jitter_us(key, i * 60_000_000, 30_000_000, None))
            .collect();
        assert!(spread.len() > 60, "{spread:?}");
        assert_ne!(
            a,
            jitter_us(b"another", 1_000_000, 30_000_000, Some(61_000_000))
        );
        // Never reaching the next slot, however large the jitter.
        for i in 0..1000 {
            let j = jitter_us(key, i, 3_600_000_000, Some(i + 1_000_000));
            assert!((0..1_000_000).contains(&j));
        }
        assert_eq!(jitter_us(key, 5, 0, None), 0);
    }
}
