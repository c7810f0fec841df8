//! The dispatch planner: given a schedule, what the store holds of its progress and the
//! time, which slots get which run record, which timers to create and when to look again.
//! A backend reads the progress, asks here, and writes the answer in one transaction with
//! the cursor's advance, so a crash before the commit loses nothing and one after it
//! repeats nothing: exactly one run record per slot.
//!
//! **Rules, in the order they apply to each slot from the cursor on:**
//! 1. A paused schedule records every slot that has passed as `skipped(paused)`.
//! 2. A slot seen more than [`MISSED_AFTER_US`] after it passed was missed (MINOOTS, or
//!    this schedule's kernel, was down). Missed slots older than `misfire.window` are
//!    `catchupExpired`. Of the rest, `latest` keeps the newest, `all` the newest
//!    `maxBurst`, `none` nothing; the others are `superseded`. Kept slots fire now.
//! 3. A slot about to fire when `maxRuns` runs have fired is `skipped(maxRuns)`, and the
//!    schedule is `completed`.
//! 4. Overlap: a run is active from its timer's creation until its final outcome. A slot
//!    that comes while one is active is `skipped(overlap)` (`skip`), waits (`bufferOne`
//!    keeps the first waiting slot and skips newer ones; `bufferAll` keeps up to
//!    [`MAX_BUFFERED_SLOTS`]), cancels the active run and fires (`cancelOther`), or fires
//!    (`allowAll`). Catch-up runs obey the same rule, so `misfire: all` with `skip` fires
//!    one of them; use `bufferAll` or `allowAll` to run them all.
//! 5. Otherwise the slot fires: its timer is due at the slot plus its jitter (never before
//!    now: a missed slot's timer fires at once).
//!
//! **Ahead of time.** A slot's timer is created up to [`DISPATCH_LEAD_US`] before the slot,
//! so the kernel fires it from its in-memory window with its usual precision — but only
//! when no run is active, because nothing can make one active before the slot except this
//! run itself. While one is active the decision waits for the slot (or for the run's end),
//! so an active run that ends in time lets the slot fire.
//!
//! Every call handles at most [`MAX_RECORDS_PER_DISPATCH`] slots; a backlog is worked off
//! in several transactions, each correct on its own.

use super::jitter_us;
use super::slots::Slot;
use super::spec::{MisfirePolicy, Overlap, ScheduleSpec};

/// How early a slot's timer may be created (when no run is active). Long enough for a
/// burst of slots at one instant to be dispatched before it (measured: 100,000 schedules
/// at second 0 take 2.4–3.6 s on two cores; `minoots bench recurring`), short next to the
/// kernel's in-memory window (60 s), which holds the timers so created.
pub const DISPATCH_LEAD_US: i64 = 10_000_000;
/// A slot seen later than this after it passed counts as missed.
pub const MISSED_AFTER_US: i64 = 5_000_000;
/// Run records written by one dispatch.
pub const MAX_RECORDS_PER_DISPATCH: usize = 1_000;
/// Slots `bufferAll` keeps waiting; newer ones are `skipped(overlap)`.
pub const MAX_BUFFERED_SLOTS: usize = 100;

/// A schedule's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleStatus {
    Active,
    Paused,
    Completed,
}

impl ScheduleStatus {
    /// From [`ScheduleStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [
            ScheduleStatus::Active,
            ScheduleStatus::Paused,
            ScheduleStatus::Completed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleStatus::Active => "active",
            ScheduleStatus::Paused => "paused",
            ScheduleStatus::Completed => "completed",
        }
    }
}

/// Why a slot did not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    Paused,
    Overlap,
    CatchupExpired,
    Superseded,
    MaxRuns,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::Paused,
        SkipReason::Overlap,
        SkipReason::CatchupExpired,
        SkipReason::Superseded,
        SkipReason::MaxRuns,
    ];

    /// From [`SkipReason::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// As the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Paused => "paused",
            SkipReason::Overlap => "overlap",
            SkipReason::CatchupExpired => "catchupExpired",
            SkipReason::Superseded => "superseded",
            SkipReason::MaxRuns => "maxRuns",
        }
    }
}

/// What the store keeps of a schedule between dispatches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub status: ScheduleStatus,
    /// Every slot at or before this has its run record; none after it has.
    pub cursor_us: i64,
    /// Runs fired from slots (trigger-now runs do not count).
    pub runs_fired: u64,
    /// A run's timer exists and has not reached its final outcome.
    pub run_active: bool,
    /// Slots recorded `buffered`, waiting for the active run to end, oldest first.
    pub buffered: Vec<i64>,
}

impl Progress {
    /// A new schedule's progress: no slot before its start (creation, or `startAt` if later).
    pub fn new(spec: &ScheduleSpec, created_at_us: i64) -> Self {
        let start = spec
            .start_at_us
            .map_or(created_at_us, |s| s.max(created_at_us));
        Progress {
            status: ScheduleStatus::Active,
            cursor_us: start - 1,
            runs_fired: 0,
            run_active: false,
            buffered: Vec::new(),
        }
    }
}

/// The record of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Create a timer due at `fire_at_us` for this slot.
    Fire {
        slot_us: i64,
        fire_at_us: i64,
        gap_shifted: bool,
    },
    Skip {
        slot_us: i64,
        reason: SkipReason,
    },
    /// Record the slot as waiting for the active run.
    Buffer {
        slot_us: i64,
    },
}

impl Run {
    pub fn slot_us(&self) -> i64 {
        match *self {
            Run::Fire { slot_us, .. } | Run::Skip { slot_us, .. } | Run::Buffer { slot_us } => {
                slot_us
            }
        }
    }
}

/// What to write, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// New run records, in slot order (all after the old cursor, up to the new one).
    pub runs: Vec<Run>,
    /// Buffered slots whose record changes (to `Fire` or `Skip`), oldest first.
    pub unbuffered: Vec<Run>,
    /// Cancel the active run's timer first (`cancelOther`).
    pub cancel_active: bool,
    /// The progress after this plan.
    pub progress: Progress,
    /// When to dispatch again; `None` once completed (or never, with no further slot).
    pub wake_at_us: Option<i64>,
}

impl Plan {
    fn unchanged(p: &Progress) -> Self {
        Plan {
            runs: Vec::new(),
            unbuffered: Vec::new(),
            cancel_active: false,
            progress: p.clone(),
            wake_at_us: None,
        }
    }
}

/// The next dispatch of `spec` at `now_us`; `key` identifies the schedule for its jitter.
pub fn plan_dispatch(spec: &ScheduleSpec, key: &[u8], progress: &Progress, now_us: i64) -> Plan {
    let mut plan = Plan::unchanged(progress);
    if progress.status == ScheduleStatus::Completed {
        return plan;
    }
    let paused = progress.status == ScheduleStatus::Paused;
    let horizon = if paused {
        now_us
    } else {
        now_us + DISPATCH_LEAD_US
    };
    let in_bounds = |at: i64| spec.end_at_us.is_none_or(|end| at <= end);
    let mut slots = spec
        .recurrence
        .slots_from(progress.cursor_us + 1)
        .take_while(|s| in_bounds(s.at_us));
    let mut batch = Vec::new();
    let mut next = None;
    for s in slots.by_ref() {
        if s.at_us > horizon || batch.len() == MAX_RECORDS_PER_DISPATCH {
            next = Some(s);
            break;
        }
        batch.push(s);
    }
    // How many missed slots follow this batch, up to the number that can be kept.
    let keep = match spec.misfire.policy {
        MisfirePolicy::Latest => 1,
        MisfirePolicy::All => spec.misfire.max_burst as usize,
        MisfirePolicy::None => 0,
    };
    let missed = |at: i64| at < now_us - MISSED_AFTER_US;
    let missed_after_batch = match next {
        Some(n) if missed(n.at_us) => {
            1 + spec
                .recurrence
                .slots_from(n.at_us + 1)
                .take_while(|s| in_bounds(s.at_us) && missed(s.at_us))
                .take(keep.saturating_sub(1))
                .count()
        }
        _ => 0,
    };
    let missed_in_batch = batch.iter().filter(|s| missed(s.at_us)).count();

    let p = &mut plan.progress;
    for (i, slot) in batch.iter().enumerate() {
        let at = slot.at_us;
        if paused {
            plan.runs.push(Run::Skip {
                slot_us: at,
                reason: SkipReason::Paused,
            });
            p.cursor_us = at;
            continue;
        }
        if p.status == ScheduleStatus::Completed {
            if at > now_us {
                break;
            }
            plan.runs.push(Run::Skip {
                slot_us: at,
                reason: SkipReason::MaxRuns,
            });
            p.cursor_us = at;
            continue;
        }
        if missed(at) {
            let newer_missed = (missed_in_batch - 1 - i) + missed_after_batch;
            let reason = if at < now_us - spec.misfire.window_us {
                Some(SkipReason::CatchupExpired)
            } else if newer_missed >= keep {
                Some(SkipReason::Superseded)
            } else {
                None
            };
            if let Some(reason) = reason {
                plan.runs.push(Run::Skip {
                    slot_us: at,
                    reason,
                });
                p.cursor_us = at;
                continue;
            }
        }
        if at > now_us && p.run_active && spec.overlap != Overlap::AllowAll {
            // Ahead of its slot while a run is active: decide at the slot.
            next = Some(*slot);
            break;
        }
        if spec.overlap == Overlap::CancelOther
            && let Some(pos) = plan
                .runs
                .iter()
                .rposition(|r| matches!(r, Run::Fire { .. }))
        {
            // This plan's own earlier run would be cancelled before it starts: record it
            // skipped instead of creating a timer only to cancel it.
            plan.runs[pos] = Run::Skip {
                slot_us: plan.runs[pos].slot_us(),
                reason: SkipReason::Overlap,
            };
            p.runs_fired -= 1;
        }
        let following = batch.get(i + 1).map(|s| s.at_us);
        let run = decide(
            spec,
            key,
            p,
            slot,
            now_us,
            following,
            &mut plan.cancel_active,
        );
        plan.runs.push(run);
        p.cursor_us = at;
    }

    let p = &mut plan.progress;
    let more = next.or_else(|| {
        slots.next().or_else(|| {
            spec.recurrence
                .next_after(p.cursor_us)
                .filter(|s| in_bounds(s.at_us))
        })
    });
    if p.status != ScheduleStatus::Completed && more.is_none() && p.buffered.is_empty() {
        p.status = ScheduleStatus::Completed;
    }
    plan.wake_at_us = match (p.status, more) {
        (ScheduleStatus::Completed, _) | (_, None) => None,
        (ScheduleStatus::Paused, Some(s)) => Some(s.at_us),
        (ScheduleStatus::Active, Some(s)) => Some(wake_for(
            s.at_us,
            p.run_active && spec.overlap != Overlap::AllowAll,
            now_us,
        )),
    };
    // A backlog left for the next transaction: go on at once.
    if more.is_some_and(|s| s.at_us <= now_us) && p.status != ScheduleStatus::Completed {
        plan.wake_at_us = Some(now_us);
    }
    plan
}

/// The record of a slot that is due (or about to be, with no run active) and in bounds.
pub(super) fn decide(
    spec: &ScheduleSpec,
    key: &[u8],
    p: &mut Progress,
    slot: &Slot,
    now_us: i64,
    following_us: Option<i64>,
    cancel_active: &mut bool,
) -> Run {
    let (at, gap_shifted) = (slot.at_us, slot.gap_shifted);
    if spec.max_runs.is_some_and(|m| p.runs_fired >= m) {
        p.status = ScheduleStatus::Completed;
        return Run::Skip {
            slot_us: at,
            reason: SkipReason::MaxRuns,
        };
    }
    if p.run_active {
        match spec.overlap {
            Overlap::Skip => {
                return Run::Skip {
                    slot_us: at,
                    reason: SkipReason::Overlap,
                };
            }
            Overlap::BufferOne | Overlap::BufferAll => {
                let room = if spec.overlap == Overlap::BufferOne {
                    1
                } else {
                    MAX_BUFFERED_SLOTS
                };
                if p.buffered.len() >= room {
                    return Run::Skip {
                        slot_us: at,
                        reason: SkipReason::Overlap,
                    };
                }
                p.buffered.push(at);
                return Run::Buffer { slot_us: at };
            }
            Overlap::CancelOther => *cancel_active = true,
            Overlap::AllowAll => {}
        }
    }
    let next = following_us.or_else(|| spec.recurrence.next_after(at).map(|s| s.at_us));
    let fire_at_us = (at + jitter_us(key, at, spec.jitter_us, next)).max(now_us);
    fire(spec, p);
    Run::Fire {
        slot_us: at,
        fire_at_us,
        gap_shifted,
    }
}

fn fire(spec: &ScheduleSpec, p: &mut Progress) {
    p.runs_fired += 1;
    p.run_active = true;
    if spec.max_runs.is_some_and(|m| p.runs_fired >= m) {
        p.status = ScheduleStatus::Completed;
    }
}

/// The active run reached its final outcome at `now_us`: the oldest buffered slot fires
/// now (or, past `maxRuns`, every buffered slot is `skipped(maxRuns)`).
pub fn plan_run_ended(spec: &ScheduleSpec, progress: &Progress, now_us: i64) -> Plan {
    let mut plan = Plan::unchanged(progress);
    let p = &mut plan.progress;
    p.run_active = false;
    if !p.buffered.is_empty() {
        if spec.max_runs.is_some_and(|m| p.runs_fired >= m) {
            for slot_us in p.buffered.drain(..) {
                plan.unbuffered.push(Run::Skip {
                    slot_us,
                    reason: SkipReason::MaxRuns,
                });
            }
            p.status = ScheduleStatus::Completed;
        } else {
            let slot_us = p.buffered.remove(0);
            fire(spec, p);
            plan.unbuffered.push(Run::Fire {
                slot_us,
                fire_at_us: now_us,
                gap_shifted: false,
            });
        }
    }
    let next = spec
        .recurrence
        .next_after(p.cursor_us)
        .filter(|s| spec.end_at_us.is_none_or(|end| s.at_us <= end));
    if p.status == ScheduleStatus::Active && next.is_none() && p.buffered.is_empty() {
        p.status = ScheduleStatus::Completed;
    }
    plan.wake_at_us = match (p.status, next) {
        (ScheduleStatus::Active, Some(s)) => Some(wake_for(s.at_us, p.run_active, now_us)),
        (ScheduleStatus::Paused, Some(s)) => Some(s.at_us),
        _ => None,
    };
    plan
}

/// When to look at a slot at `slot_us` again: at the lead before it; but when a run is
/// active that the slot must wait for (`waits`) and the lead has begun, at the slot itself
/// (the run may end meanwhile; its end also wakes the schedule when slots are buffered).
fn wake_for(slot_us: i64, waits: bool, now_us: i64) -> i64 {
    let lead = slot_us - DISPATCH_LEAD_US;
    if waits && lead <= now_us {
        slot_us.max(now_us)
    } else {
        lead.max(now_us)
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
