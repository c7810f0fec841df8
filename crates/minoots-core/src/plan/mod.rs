//! Pure planners: every decision a store's write makes, taken out of the backends.
//!
//! A write of a backend reads what it needs, asks a planner what to do, writes exactly
//! that and appends the events [`crate::event::NewEvent`] builds. Retry and backoff,
//! settling, failing and quarantining, the rescue of expired leases, redrive and release,
//! and the change of a scheduled timer (`plan_update`)
//! are decided here once, so that a second backend (PostgreSQL) cannot drift from the
//! first and each rule has a table test beside it.
//!
//! What this module must never do: I/O, reading a clock or drawing randomness. The caller
//! passes the batch's time and a uniform random number (drawn by it, chosen by tests).
//! An input that only some branches need and that costs a read (a timer's retry policy,
//! its status) comes as a closure the planner calls at most once, so the busiest write, a
//! report, reads no more than it did when the rules lived in SQL code.
//!
//! Every planner checks the status changes it decides against the state machines of
//! [`crate::model`] and returns [`ForbiddenTransition`] instead of a plan that breaks
//! them. A backend calls a planner before its first write, so that a refusal leaves its
//! transaction untouched (the rule of the store's group commit).

mod fire;
mod handout;
mod kill;
mod redrive;
mod report;
mod rescue;
mod update;

pub use fire::{FirePlan, FireTiming, plan_fire};
pub use handout::{Quarantine, plan_handout};
pub use kill::{KillPlan, plan_kill};
pub use redrive::{RedrivePlan, RedriveRefusal, ReleasePlan, plan_redrive, plan_release};
pub use report::{ReportPlan, ReportRead, plan_report};
pub use rescue::{RescuePlan, lease_expired_reason, plan_rescue};
pub use update::{UpdatePlan, UpdateRefusal, plan_update};

pub use crate::model::ForbiddenTransition;
