//! Attempt reports in PostgreSQL, every report of a group commit as one: a handful of
//! statements whatever their number — lock the reported deliveries, lock their timers,
//! read the timers' sibling deliveries, decide each report in memory with
//! `minoots_core::plan::plan_report` (in the order the group holds them, each seeing what
//! the ones before it decided), then write every attempt, delivery change and timer change
//! with one multi-row statement each. One report's refusal (not found, fenced, unreadable)
//! is decided before anything is written and leaves the others untouched.
//!
//! One statement per report and step made a busy executor's reports the writer's largest
//! cost: six round trips each, in series on the writer's connection, held deliveries to
//! about 900 a second on this machine (docs/benchmarks.md, W2 on PostgreSQL).
//!
//! **Locks.** The deliveries are locked in id order, then their timers in id order, as a
//! single report, a release and the rescuer lock them (delivery, then timer), so a
//! report and a rescue on another handle find each other's result: a report after a
//! rescue is fenced, a rescue after a report finds nothing to rescue. Siblings are counted
//! only once their timers are locked, so two siblings succeeding at once on two handles
//! cannot both miss settling their timer.

use minoots_core::billing::METER_DELIVERIES_SUCCEEDED;
use std::collections::{BTreeMap, HashMap};

use minoots_core::limits::{MAX_ATTEMPT_ERROR_BYTES, MAX_ATTEMPT_RESPONSE_BYTES, stored_text};
use minoots_core::plan::{ReportPlan, ReportRead, plan_report};
use minoots_core::{
    ActionBundle, Delivery, DeliveryStatus, NewEvent, RetryCause, TimerId, TimerStatus,
};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::errors::{TxError, TxResult};
use super::rows::{col, delivery_cols, delivery_from_row, uuid_of};
use super::tx::{OpFuture, Reply, WriteOp, WriteTx};
use crate::types::*;

/// One executor's report, queued for the writer.
pub(super) struct ReportJob {
    report: AttemptReport,
    reply: Reply<ReportOutcome>,
}

impl ReportJob {
    pub(super) fn new(
        report: AttemptReport,
    ) -> (Box<Self>, oneshot::Receiver<StoreResult<ReportOutcome>>) {
        let (reply, rx) = Reply::new();
        (Box::new(Self { report, reply }), rx)
    }

    /// The delivery it reports on: the row a group orders it by.
    pub(super) fn delivery_id(&self) -> Uuid {
        self.report.delivery_id.0
    }
}

impl WriteOp for ReportJob {
    /// Alone: the report as a group of one.
    fn run<'w, 'c>(&'w mut self, w: &'w mut WriteTx<'c>) -> OpFuture<'w, ()> {
        Box::pin(async move {
            let result = match run_reports(w, &mut [&mut *self]).await {
                Ok(()) => self.reply.kept.take().unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "a report ended without a result".into(),
                    ))
                }),
                Err(e) => return self.reply.keep(Err(e)),
            };
            self.reply.keep(result.map_err(TxError::Store))
        })
    }

    fn answer(self: Box<Self>, ended: StoreResult<()>) {
        self.reply.send(ended);
    }
}

/// A timer of the reported deliveries, as locked and then as the reports change it.
struct TimerState {
    status: TimerStatus,
    bundle: String,
    /// Status changes the reports made (its version rises by as many).
    changes: i64,
}

/// What the reports write, built report by report.
#[derive(Default)]
struct Writes {
    /// Attempt rows: delivery, attempt, owner, start, duration, outcome, HTTP status,
    /// exit code, error, response excerpt.
    attempts: Vec<AttemptRow>,
    /// Delivery changes by id: new status, next attempt time (retries), last error.
    deliveries: BTreeMap<Uuid, (DeliveryStatus, Option<i64>, Option<String>)>,
    /// Deliveries that succeeded, per tenant (metered usage).
    succeeded: BTreeMap<String, i64>,
}

struct AttemptRow {
    delivery_id: Uuid,
    attempt: i32,
    lease_owner: String,
    started_at_us: i64,
    duration_us: i64,
    outcome: &'static str,
    http_status: Option<i32>,
    exit_code: Option<i32>,
    error: Option<String>,
    excerpt: Option<String>,
}

/// Runs `jobs` as one (see the module comment); each keeps its outcome or refusal. An
/// error means the transaction cannot go on (the writer then runs each report alone).
pub(super) async fn run_reports(w: &mut WriteTx<'_>, jobs: &mut [&mut ReportJob]) -> TxResult<()> {
    let mut ids: Vec<Uuid> = jobs.iter().map(|j| j.delivery_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = w
        .db()
        .query(
            concat!(
                "SELECT ",
                delivery_cols!(),
                " FROM deliveries WHERE id = ANY ($1) ORDER BY id FOR UPDATE"
            ),
            &[&ids],
        )
        .await?;
    // `Err` for a row that cannot be decoded: its reports are refused as corrupt.
    let mut deliveries: HashMap<Uuid, Result<Delivery, StoreError>> = HashMap::new();
    for r in &rows {
        let id = uuid_of(r, 0)?;
        let decoded = delivery_from_row(r).map_err(|e| match e {
            TxError::Store(e) => e,
            other => StoreError::Corrupt(format!("delivery {id}: {other:?}")),
        });
        deliveries.insert(id, decoded);
    }

    // Timers and siblings of the deliveries that can be reported on.
    let mut timer_ids: Vec<Uuid> = deliveries
        .values()
        .filter_map(|d| d.as_ref().ok().map(|d| d.timer_id.0))
        .collect();
    timer_ids.sort_unstable();
    timer_ids.dedup();
    let mut timers: HashMap<TimerId, Result<TimerState, StoreError>> = HashMap::new();
    // Statuses of every delivery of those timers, by (timer, occurrence).
    let mut siblings: HashMap<(TimerId, i64), Vec<(Uuid, DeliveryStatus)>> = HashMap::new();
    if !timer_ids.is_empty() {
        for r in w
            .db()
            .query(
                "SELECT id, status, action_bundle FROM timers WHERE id = ANY ($1)
                  ORDER BY id FOR UPDATE",
                &[&timer_ids],
            )
            .await?
        {
            let id = TimerId(uuid_of(&r, 0)?);
            let status: String = col(&r, 1)?;
            let state = status
                .parse()
                .map_err(StoreError::Corrupt)
                .and_then(|status| {
                    Ok(TimerState {
                        status,
                        bundle: col::<String>(&r, 2).map_err(|e| match e {
                            TxError::Store(e) => e,
                            other => StoreError::Corrupt(format!("{other:?}")),
                        })?,
                        changes: 0,
                    })
                });
            timers.insert(id, state);
        }
        for r in w
            .db()
            .query(
                "SELECT id, timer_id, occurrence, status FROM deliveries WHERE timer_id = ANY ($1)",
                &[&timer_ids],
            )
            .await?
        {
            let status: String = col(&r, 3)?;
            let status = status.parse().map_err(StoreError::Corrupt)?;
            siblings
                .entry((TimerId(uuid_of(&r, 1)?), col(&r, 2)?))
                .or_default()
                .push((uuid_of(&r, 0)?, status));
        }
    }

    let now_us = w.now_us;
    let mut writes = Writes::default();
    for job in jobs.iter_mut() {
        let outcome = plan_one(
            w,
            &job.report,
            &mut deliveries,
            &mut timers,
            &mut siblings,
            &mut writes,
            now_us,
        );
        job.reply.kept = Some(outcome);
    }
    write_all(w, &writes, &timers, now_us).await
}

/// Decides one report on the state the reports before it left, records what it writes,
/// and updates that state; `Err` is its refusal (nothing of it is written).
fn plan_one(
    w: &mut WriteTx<'_>,
    r: &AttemptReport,
    deliveries: &mut HashMap<Uuid, Result<Delivery, StoreError>>,
    timers: &mut HashMap<TimerId, Result<TimerState, StoreError>>,
    siblings: &mut HashMap<(TimerId, i64), Vec<(Uuid, DeliveryStatus)>>,
    writes: &mut Writes,
    now_us: i64,
) -> StoreResult<ReportOutcome> {
    let d = match deliveries.get(&r.delivery_id.0) {
        None => return Err(StoreError::NotFound(Missing::Delivery(r.delivery_id))),
        Some(Err(e)) => return Err(e.clone()),
        Some(Ok(d)) => d.clone(),
    };
    if !d.is_leased_to(&r.lease_owner, r.attempt) {
        return Err(StoreError::Fenced {
            delivery_id: r.delivery_id,
        });
    }
    let timer = match timers.get_mut(&d.timer_id) {
        None => {
            return Err(StoreError::Corrupt(format!(
                "timer {} of a delivery is missing",
                d.timer_id
            )));
        }
        Some(Err(e)) => return Err(e.clone()),
        Some(Ok(t)) => t,
    };
    let others = siblings.get(&(d.timer_id, d.occurrence)).map_or(0, |s| {
        s.iter()
            .filter(|(id, status)| *id != d.id.0 && *status != DeliveryStatus::Succeeded)
            .count()
    });
    let read = ReportRead {
        delivery: &d,
        timer_status: timer.status,
        others_unfinished: others as u64,
    };
    let bundle = &timer.bundle;
    let plan = plan_report(
        &read,
        r.outcome,
        r.retry_after_ms,
        now_us,
        fastrand::f64(),
        || {
            serde_json::from_str::<ActionBundle>(bundle)
                .map(|b| b.retry_policy())
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        },
    )?;

    // Decided: from here on it is written.
    let error = r
        .error
        .clone()
        .map(|e| stored_text(e, MAX_ATTEMPT_ERROR_BYTES));
    let excerpt = r
        .response_excerpt
        .clone()
        .map(|e| stored_text(e, MAX_ATTEMPT_RESPONSE_BYTES));
    writes.attempts.push(AttemptRow {
        delivery_id: d.id.0,
        attempt: r.attempt as i32,
        lease_owner: r.lease_owner.clone(),
        started_at_us: r.started_at_us,
        duration_us: r.duration_us,
        outcome: r.outcome.as_str(),
        http_status: r.http_status.map(i32::from),
        exit_code: r.exit_code,
        error: error.clone(),
        excerpt,
    });
    w.append_event(NewEvent::delivery_attempted(
        &d,
        r.outcome,
        r.http_status,
        r.exit_code,
        error.as_deref(),
        r.duration_us,
    ));
    let timer_before = timer.status;
    match &plan {
        ReportPlan::Succeed { settles_timer } => {
            writes
                .deliveries
                .insert(d.id.0, (DeliveryStatus::Succeeded, None, None));
            *writes.succeeded.entry(d.tenant_id.clone()).or_default() += 1;
            if *settles_timer {
                timer.status = TimerStatus::Settled;
                timer.changes += 1;
                w.append_event(NewEvent::timer_settled(&d.tenant_id, d.timer_id));
            }
        }
        ReportPlan::Retry {
            next_attempt_at_us,
            delay_ms,
        } => {
            writes.deliveries.insert(
                d.id.0,
                (
                    DeliveryStatus::Pending,
                    Some(*next_attempt_at_us),
                    error.clone(),
                ),
            );
            let cause = RetryCause::Backoff {
                delay_ms: *delay_ms,
            };
            // Due later, but a session elsewhere that computed its sleep before this
            // commit must learn the new earliest due time.
            w.announce_ready();
            w.append_event(NewEvent::delivery_retrying(&d, *next_attempt_at_us, cause));
        }
        ReportPlan::Kill(kill) => {
            let last_error = error.clone().unwrap_or_else(|| kill.reason.as_str().into());
            writes
                .deliveries
                .insert(d.id.0, (DeliveryStatus::Dead, None, Some(last_error)));
            w.append_event(NewEvent::delivery_dead(&d, kill.reason, error.as_deref()));
            if kill.fail_timer {
                timer.status = TimerStatus::Failed;
                timer.changes += 1;
                w.append_event(NewEvent::timer_failed(&d, kill.reason));
            }
        }
    }
    // The reports after this one see the delivery as it is now: out of its lease (a
    // second report of it is fenced) and, among its siblings, with its new status.
    let status = plan.delivery_status();
    if let Some(Ok(stored)) = deliveries.get_mut(&d.id.0) {
        stored.status = status;
        stored.lease_owner = None;
        stored.lease_expires_at_us = None;
    }
    if let Some(s) = siblings.get_mut(&(d.timer_id, d.occurrence))
        && let Some(entry) = s.iter_mut().find(|(id, _)| *id == d.id.0)
    {
        entry.1 = status;
    }
    Ok(ReportOutcome {
        delivery_status: status,
        next_attempt_at_us: plan.next_attempt_at_us(),
        timer_status: plan.timer_status_after(timer_before),
    })
}

/// Writes what the reports decided: one statement for the attempts, one for the
/// deliveries, one for the timers.
async fn write_all(
    w: &mut WriteTx<'_>,
    writes: &Writes,
    timers: &HashMap<TimerId, Result<TimerState, StoreError>>,
    now_us: i64,
) -> TxResult<()> {
    if writes.attempts.is_empty() {
        return Ok(());
    }
    let a = &writes.attempts;
    let ids: Vec<Uuid> = a.iter().map(|x| x.delivery_id).collect();
    let attempts: Vec<i32> = a.iter().map(|x| x.attempt).collect();
    let owners: Vec<&str> = a.iter().map(|x| x.lease_owner.as_str()).collect();
    let started: Vec<i64> = a.iter().map(|x| x.started_at_us).collect();
    let durations: Vec<i64> = a.iter().map(|x| x.duration_us).collect();
    let outcomes: Vec<&str> = a.iter().map(|x| x.outcome).collect();
    let http: Vec<Option<i32>> = a.iter().map(|x| x.http_status).collect();
    let exits: Vec<Option<i32>> = a.iter().map(|x| x.exit_code).collect();
    let errors: Vec<Option<&str>> = a.iter().map(|x| x.error.as_deref()).collect();
    let excerpts: Vec<Option<&str>> = a.iter().map(|x| x.excerpt.as_deref()).collect();
    w.db()
        .execute(
            "INSERT INTO attempts (delivery_id, attempt, lease_owner, started_at, duration_us,
                    outcome, http_status, exit_code, error, response_excerpt)
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::int8[], $5::int8[],
                    $6::text[], $7::int4[], $8::int4[], $9::text[], $10::text[])
             ON CONFLICT (delivery_id, attempt) DO UPDATE SET
                    lease_owner = EXCLUDED.lease_owner, started_at = EXCLUDED.started_at,
                    duration_us = EXCLUDED.duration_us, outcome = EXCLUDED.outcome,
                    http_status = EXCLUDED.http_status, exit_code = EXCLUDED.exit_code,
                    error = EXCLUDED.error, response_excerpt = EXCLUDED.response_excerpt",
            &[
                &ids, &attempts, &owners, &started, &durations, &outcomes, &http, &exits, &errors,
                &excerpts,
            ],
        )
        .await?;

    let d = &writes.deliveries;
    let ids: Vec<Uuid> = d.keys().copied().collect();
    let statuses: Vec<&str> = d.values().map(|(s, _, _)| s.as_str()).collect();
    let next: Vec<Option<i64>> = d.values().map(|(_, n, _)| *n).collect();
    let last_errors: Vec<Option<&str>> = d.values().map(|(_, _, e)| e.as_deref()).collect();
    w.db()
        .execute(
            "UPDATE deliveries AS d
                SET status = u.status, next_attempt_at = COALESCE(u.next_at, d.next_attempt_at),
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = $5,
                    last_error = u.last_error
               FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[])
                    AS u(id, status, next_at, last_error)
              WHERE d.id = u.id",
            &[&ids, &statuses, &next, &last_errors, &now_us],
        )
        .await?;
    let succeeded: Vec<(&str, i64)> = writes
        .succeeded
        .iter()
        .map(|(t, n)| (t.as_str(), *n))
        .collect();
    super::billing::add_metered(w, METER_DELIVERIES_SUCCEEDED, &succeeded).await?;

    let changed: Vec<(Uuid, &str, i64)> = timers
        .iter()
        .filter_map(|(id, t)| match t {
            Ok(t) if t.changes > 0 => Some((id.0, t.status.as_str(), t.changes)),
            _ => None,
        })
        .collect();
    if !changed.is_empty() {
        let ids: Vec<Uuid> = changed.iter().map(|c| c.0).collect();
        let statuses: Vec<&str> = changed.iter().map(|c| c.1).collect();
        let counts: Vec<i64> = changed.iter().map(|c| c.2).collect();
        w.db()
            .execute(
                "UPDATE timers AS t
                    SET status = u.status, settled_at = $4, version = t.version + u.changes
                   FROM unnest($1::uuid[], $2::text[], $3::int8[]) AS u(id, status, changes)
                  WHERE t.id = u.id",
                &[&ids, &statuses, &counts, &now_us],
            )
            .await?;
    }
    Ok(())
}
