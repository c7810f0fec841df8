//! Timers in PostgreSQL: reading, listing, changing and cancelling them, the scheduler's window of
//! due timers, firing and redrive, and the counts for metrics (creating them is
//! `create.rs`). Each write reads and locks what it needs, asks a planner
//! (`minoots_core::plan`) before its first change, then writes what the plan says with
//! the events of `minoots_core::event`; it decides nothing itself.
//!
//! **Locks.** A write that changes a timer locks its row (`FOR UPDATE`) as it reads it, so
//! that a concurrent change, cancel, fire or redrive on any handle waits and then sees this one's
//! result. Firing locks its timers in id order, so two handles firing overlapping sets
//! cannot deadlock; a timer's deliveries are locked before the timer itself wherever both
//! are (reports, rescues, redrive), so those cannot deadlock either.

use std::collections::{BTreeMap, HashMap, HashSet};

use minoots_core::limits::{MAX_CANCEL_REASON_BYTES, MAX_PAGE_SIZE, stored_text};
use minoots_core::plan::{FirePlan, FireTiming, plan_fire, plan_redrive, plan_update};
use minoots_core::{
    ActionBundle, Delivery, DeliveryId, NewEvent, RetryCause, Timer, TimerChange, TimerChanged,
    TimerId, TimerStatus,
};
use uuid::Uuid;

use super::create::to_json;
use super::errors::TxResult;
use super::rows::{col, delivery_cols, delivery_from_row, timer_cols, timer_from_row, uuid_of};
use super::shards::{ShardBook, shard_of};
use super::tx::{Db, WriteTx};
use crate::types::*;

pub(super) async fn get_timer(
    db: &mut Db<'_>,
    tenant_id: &str,
    id: TimerId,
) -> TxResult<Option<Timer>> {
    db.query_opt(
        concat!(
            "SELECT ",
            timer_cols!(),
            " FROM timers WHERE id = $1 AND tenant_id = $2"
        ),
        &[&id.0, &tenant_id],
    )
    .await?
    .map(|r| timer_from_row(&r))
    .transpose()
}

/// The filters of a listing: tenant ($1), status ($2), label key and value ($3, $4),
/// fire-time bounds ($8 inclusive, $9 exclusive; never NULL, so the tenant index seeks to
/// the first) and name prefix ($10, empty for any).
macro_rules! list_filters {
    () => {
        " FROM timers WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR labels ->> $3::text = $4::text)
           AND fire_at >= $8::bigint AND fire_at < $9::bigint
           AND ($10::text = '' OR starts_with(name, $10::text))"
    };
}

pub(super) async fn list_timers(db: &mut Db<'_>, q: &TimerQuery) -> TxResult<TimerPage> {
    let limit = q.limit.clamp(1, MAX_PAGE_SIZE);
    let status = q.status.map(|s| s.as_str());
    let (label_key, label_value) = match &q.label {
        Some((k, v)) => (Some(k.as_str()), Some(v.as_str())),
        None => (None, None),
    };
    let fetch = (limit + 1) as i64;
    let fire_from = q.fire_from_us.unwrap_or(i64::MIN);
    let fire_before = q.fire_before_us.unwrap_or(i64::MAX);
    let name_prefix = q.name_prefix.as_deref().unwrap_or("");
    // Two statements, so that with a cursor the tenant index seeks straight to it.
    let rows = match q.after {
        None => {
            db.query(
                concat!(
                    "SELECT ",
                    timer_cols!(),
                    list_filters!(),
                    " AND $6::bigint IS NULL AND $7::uuid IS NULL ORDER BY fire_at, id LIMIT $5"
                ),
                &[
                    &q.tenant_id,
                    &status,
                    &label_key,
                    &label_value,
                    &fetch,
                    &None::<i64>,
                    &None::<uuid::Uuid>,
                    &fire_from,
                    &fire_before,
                    &name_prefix,
                ],
            )
            .await?
        }
        Some(after) => {
            db.query(
                concat!(
                    "SELECT ",
                    timer_cols!(),
                    list_filters!(),
                    " AND (fire_at, id) > ($6::bigint, $7::uuid) ORDER BY fire_at, id LIMIT $5"
                ),
                &[
                    &q.tenant_id,
                    &status,
                    &label_key,
                    &label_value,
                    &fetch,
                    &after.fire_at_us,
                    &after.id.0,
                    &fire_from,
                    &fire_before,
                    &name_prefix,
                ],
            )
            .await?
        }
    };
    let timers = rows
        .iter()
        .map(timer_from_row)
        .collect::<TxResult<Vec<_>>>()?;
    Ok(TimerPage::from_rows(timers, limit))
}

/// The timer, locked until the write ends, if it exists and belongs to `tenant_id`.
async fn lock_timer(w: &mut WriteTx<'_>, tenant_id: &str, id: TimerId) -> TxResult<Option<Timer>> {
    w.db()
        .query_opt(
            concat!(
                "SELECT ",
                timer_cols!(),
                " FROM timers WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
            ),
            &[&id.0, &tenant_id],
        )
        .await?
        .map(|r| timer_from_row(&r))
        .transpose()
}

pub(super) async fn cancel_timer(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    id: TimerId,
    reason: Option<String>,
) -> TxResult<Timer> {
    let timer = lock_timer(w, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    if timer.status != TimerStatus::Scheduled {
        return Err(StoreError::Conflict {
            status: timer.status,
        }
        .into());
    }
    timer
        .status
        .check_transition(id, TimerStatus::Cancelled)
        .map_err(StoreError::from)?;
    let reason = reason.map(|r| stored_text(r, MAX_CANCEL_REASON_BYTES));
    let now_us = w.now_us;
    w.db()
        .execute(
            "UPDATE timers SET status = 'cancelled', cancelled_at = $2, cancel_reason = $3,
                    version = version + 1
              WHERE id = $1",
            &[&id.0, &now_us, &reason],
        )
        .await?;
    lower_pending(w, &[(tenant_id, 1)]).await?;
    w.append_event(NewEvent::timer_cancelled(tenant_id, id, reason.as_deref()));
    Ok(Timer {
        status: TimerStatus::Cancelled,
        cancelled_at_us: Some(now_us),
        cancel_reason: reason,
        version: timer.version + 1,
        ..timer
    })
}

/// Changes a scheduled timer as `plan_update` says, its row locked as it is read; a new
/// fire time due soon is announced to the kernel holding its shard (as a create's is).
pub(super) async fn update_timer(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    id: TimerId,
    change: &TimerChange,
) -> TxResult<TimerChanged> {
    let current = lock_timer(w, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    let plan = plan_update(&current, change).map_err(StoreError::from)?;
    let t = &plan.timer;
    let (metadata, labels, bundle) = (
        to_json(&t.metadata)?,
        to_json(&t.labels)?,
        to_json(&t.action_bundle)?,
    );
    w.db()
        .execute(
            "UPDATE timers SET fire_at = $2, duration_ms = $3, metadata = $4, labels = $5::text::jsonb,
                    action_bundle = $6, version = $7
              WHERE id = $1",
            &[
                &id.0,
                &t.fire_at_us,
                &t.duration_ms,
                &metadata,
                &labels,
                &bundle,
                &t.version,
            ],
        )
        .await?;
    if t.fire_at_us != current.fire_at_us {
        w.announce_due(t.fire_at_us, id.0);
    }
    w.append_event(plan.event);
    Ok(TimerChanged {
        timer: plan.timer,
        previous_fire_at_us: current.fire_at_us,
    })
}

/// Lowers the tenants' counts of scheduled timers (a missing row counts as 0 already).
async fn lower_pending(w: &mut WriteTx<'_>, by: &[(&str, i64)]) -> TxResult<()> {
    if by.is_empty() {
        return Ok(());
    }
    let (tenants, counts): (Vec<&str>, Vec<i64>) = by.iter().copied().unzip();
    w.db()
        .execute(
            "UPDATE tenant_pending AS p SET pending = GREATEST(p.pending - u.n, 0)
               FROM unnest($1::text[], $2::bigint[]) AS u(tenant_id, n)
              WHERE p.tenant_id = u.tenant_id",
            &[&tenants, &counts],
        )
        .await?;
    Ok(())
}

pub(super) async fn load_due_timers(
    db: &mut Db<'_>,
    after: Option<DueTimer>,
    until_us: i64,
    limit: usize,
    shards: Option<&[i32]>,
) -> TxResult<Vec<DueTimer>> {
    let limit = limit as i64;
    let (after_at, after_id) = match after {
        Some(a) => (a.fire_at_us, a.id.0),
        None => (i64::MIN, Uuid::nil()),
    };
    // The shard of a timer as `shards::shard_of` computes it.
    let rows = match shards {
        None => {
            db.query(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= $1
                    AND (fire_at, id) > ($2::bigint, $3::uuid)
                  ORDER BY fire_at, id LIMIT $4",
                &[&until_us, &after_at, &after_id, &limit],
            )
            .await?
        }
        Some(shards) => {
            db.query(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= $1
                    AND (fire_at, id) > ($2::bigint, $3::uuid)
                    AND (get_byte(uuid_send(id), 15) % 64) = ANY ($5::int[])
                  ORDER BY fire_at, id LIMIT $4",
                &[&until_us, &after_at, &after_id, &limit, &shards],
            )
            .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok(DueTimer {
                fire_at_us: col(r, 0)?,
                id: TimerId(uuid_of(r, 1)?),
            })
        })
        .collect()
}

/// A timer as firing reads it.
struct ToFire {
    status: Result<TimerStatus, String>,
    tenant_id: String,
    fire_at_us: i64,
    bundle: String,
    traceparent: Option<String>,
}

/// What firing one timer will write.
struct Firing<'a> {
    id: TimerId,
    tenant_id: &'a str,
    fire_at_us: i64,
    fired_at_us: i64,
    /// `None`: it settles at once; else its deliveries and their budget.
    deliveries: Option<(usize, u32)>,
}

/// Fires each timer: every timer is read, locked (in id order) and planned before the
/// first write, then all are written with one statement per table. A timer whose stored
/// data cannot be read is reported `Failed` and left as it is, without holding back the
/// others; one no longer scheduled (cancelled, fired before — also earlier in this call,
/// or by another handle that held its lock first) is skipped.
pub(super) async fn fire_timers(
    w: &mut WriteTx<'_>,
    fires: &[FireRequest],
    fence: Option<&ShardBook>,
) -> TxResult<Vec<FireOutcome>> {
    // A kernel sharing the database fires only the timers of the shards it still holds,
    // at the epoch it took them: the epochs are read and held in share mode first, so a
    // takeover waits for this fire's COMMIT, and a fire after it sees the new epoch.
    let allowed: Option<HashSet<i32>> = match fence {
        None => None,
        Some(book) => {
            let wanted: HashSet<i32> = fires.iter().map(|f| shard_of(f.timer_id)).collect();
            let (shards, epochs) = book.epochs_of(&wanted);
            let rows = if shards.is_empty() {
                Vec::new()
            } else {
                w.db()
                    .query(
                        "SELECT s.shard FROM shards AS s
                           JOIN unnest($1::int[], $2::bigint[]) AS h(shard, epoch)
                             ON s.shard = h.shard AND s.epoch = h.epoch
                          ORDER BY s.shard FOR SHARE OF s",
                        &[&shards, &epochs],
                    )
                    .await?
            };
            Some(
                rows.iter()
                    .map(|r| col::<i32>(r, 0))
                    .collect::<TxResult<_>>()?,
            )
        }
    };
    let fenced = |id: TimerId| allowed.as_ref().is_some_and(|a| !a.contains(&shard_of(id)));
    let mut ids: Vec<Uuid> = fires
        .iter()
        .filter(|f| !fenced(f.timer_id))
        .map(|f| f.timer_id.0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = w
        .db()
        .query(
            "SELECT id, status, tenant_id, fire_at, action_bundle, traceparent FROM timers
              WHERE id = ANY ($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?;
    let mut found: HashMap<Uuid, ToFire> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let status: String = col(r, 1)?;
        found.insert(
            uuid_of(r, 0)?,
            ToFire {
                status: status.parse(),
                tenant_id: col(r, 2)?,
                fire_at_us: col(r, 3)?,
                bundle: col(r, 4)?,
                traceparent: col(r, 5)?,
            },
        );
    }
    // Plan every timer first.
    let mut out = Vec::with_capacity(fires.len());
    let mut firings: Vec<Firing<'_>> = Vec::new();
    let mut now_status: HashMap<Uuid, TimerStatus> = HashMap::new();
    for f in fires {
        let id = f.timer_id;
        if fenced(id) {
            out.push(FireOutcome::Fenced { timer_id: id });
            continue;
        }
        let Some(t) = found.get(&id.0) else {
            out.push(FireOutcome::NotFound { timer_id: id });
            continue;
        };
        let status = match now_status.get(&id.0) {
            Some(s) => Ok(*s),
            None => t.status.clone(),
        };
        let plan = status.map_err(StoreError::Corrupt).and_then(|status| {
            let timing = FireTiming {
                fire_at_us: t.fire_at_us,
                fired_at_us: f.fired_at_us,
                refuse_early: f.refuse_early,
            };
            plan_fire(id, status, timing, || {
                serde_json::from_str::<ActionBundle>(&t.bundle)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
        });
        let (deliveries, after) = match plan {
            Err(e) => {
                let error = e.to_string();
                tracing::error!(timer = %id, %error, "cannot fire a timer whose stored data is unreadable");
                out.push(FireOutcome::Failed {
                    timer_id: id,
                    error,
                });
                continue;
            }
            Ok(FirePlan::Skip { status }) => {
                out.push(FireOutcome::Skipped {
                    timer_id: id,
                    status,
                });
                continue;
            }
            Ok(FirePlan::NotDue { fire_at_us }) => {
                out.push(FireOutcome::NotDue {
                    timer_id: id,
                    fire_at_us,
                });
                continue;
            }
            Ok(FirePlan::Settle) => (None, TimerStatus::Settled),
            Ok(FirePlan::Fire {
                deliveries,
                max_attempts,
            }) => (Some((deliveries, max_attempts)), TimerStatus::Fired),
        };
        now_status.insert(id.0, after);
        out.push(match deliveries {
            None => FireOutcome::Settled {
                timer_id: id,
                tenant_id: t.tenant_id.clone(),
                fire_at_us: t.fire_at_us,
                traceparent: t.traceparent.clone(),
            },
            Some((n, _)) => FireOutcome::Fired {
                timer_id: id,
                tenant_id: t.tenant_id.clone(),
                deliveries: n,
                fire_at_us: t.fire_at_us,
                traceparent: t.traceparent.clone(),
            },
        });
        firings.push(Firing {
            id,
            tenant_id: &t.tenant_id,
            fire_at_us: t.fire_at_us,
            fired_at_us: f.fired_at_us,
            deliveries,
        });
    }
    if !firings.is_empty() {
        write_firings(w, &firings).await?;
    }
    Ok(out)
}

/// Writes planned firings: statuses, deliveries, pending counts and events.
async fn write_firings(w: &mut WriteTx<'_>, firings: &[Firing<'_>]) -> TxResult<()> {
    let ids: Vec<Uuid> = firings.iter().map(|f| f.id.0).collect();
    let fired_at: Vec<i64> = firings.iter().map(|f| f.fired_at_us).collect();
    let settles: Vec<bool> = firings.iter().map(|f| f.deliveries.is_none()).collect();
    w.db()
        .execute(
            "UPDATE timers AS t
                SET status = CASE WHEN f.settles THEN 'settled' ELSE 'fired' END,
                    fired_at = f.fired_at,
                    settled_at = CASE WHEN f.settles THEN f.fired_at ELSE t.settled_at END,
                    version = t.version + 1
               FROM unnest($1::uuid[], $2::bigint[], $3::bool[]) AS f(id, fired_at, settles)
              WHERE t.id = f.id",
            &[&ids, &fired_at, &settles],
        )
        .await?;
    let mut delivery_ids = Vec::new();
    let mut timer_ids = Vec::new();
    let mut tenants = Vec::new();
    let mut indexes = Vec::new();
    let mut budgets = Vec::new();
    let mut due = Vec::new();
    for f in firings {
        let Some((n, max_attempts)) = f.deliveries else {
            continue;
        };
        for index in 0..n {
            delivery_ids.push(DeliveryId::new_v7().0);
            timer_ids.push(f.id.0);
            tenants.push(f.tenant_id);
            indexes.push(index as i32);
            budgets.push(max_attempts as i32);
            due.push(f.fired_at_us);
        }
    }
    if !delivery_ids.is_empty() {
        let now_us = w.now_us;
        w.db()
            .execute(
                "INSERT INTO deliveries (id, timer_id, tenant_id, occurrence, action_index, status,
                        attempt, max_attempts, next_attempt_at, created_at, updated_at)
                 SELECT id, timer_id, tenant_id, 0, action_index, 'pending', 0, max_attempts,
                        next_attempt_at, $7, $7
                   FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::int4[], $6::bigint[])
                     AS d(id, timer_id, tenant_id, action_index, max_attempts, next_attempt_at)",
                &[&delivery_ids, &timer_ids, &tenants, &indexes, &budgets, &due, &now_us],
            )
            .await?;
        w.announce_ready();
    }
    let mut per_tenant: BTreeMap<&str, i64> = BTreeMap::new();
    for f in firings {
        *per_tenant.entry(f.tenant_id).or_default() += 1;
    }
    lower_pending(w, &per_tenant.into_iter().collect::<Vec<_>>()).await?;
    for f in firings {
        let n = f.deliveries.map_or(0, |(n, _)| n);
        w.append_event(NewEvent::timer_fired(
            f.tenant_id,
            f.id,
            f.fire_at_us,
            f.fired_at_us,
            n,
        ));
        if f.deliveries.is_none() {
            w.append_event(NewEvent::timer_settled(f.tenant_id, f.id));
        }
    }
    Ok(())
}

/// Writes a timer's new terminal status (settled or failed) with its event. The
/// transition must have been planned and checked before the write's first change.
pub(super) async fn write_timer_status(
    w: &mut WriteTx<'_>,
    timer_id: TimerId,
    to: TimerStatus,
    event: NewEvent,
) -> TxResult<()> {
    let now_us = w.now_us;
    w.db()
        .execute(
            "UPDATE timers SET status = $2, settled_at = $3, version = version + 1 WHERE id = $1",
            &[&timer_id.0, &to.as_str(), &now_us],
        )
        .await?;
    w.append_event(event);
    Ok(())
}

/// Gives a failed timer's dead deliveries a fresh budget (as `plan_redrive` says). The
/// dead deliveries are locked before the timer, the order of reports and rescues.
pub(super) async fn redrive_timer(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    id: TimerId,
) -> TxResult<Timer> {
    if get_timer(&mut w.db(), tenant_id, id).await?.is_none() {
        return Err(StoreError::NotFound(Missing::Timer(id)).into());
    }
    let dead = w
        .db()
        .query(
            concat!(
                "SELECT ",
                delivery_cols!(),
                " FROM deliveries WHERE timer_id = $1 AND status = 'dead' ORDER BY id FOR UPDATE"
            ),
            &[&id.0],
        )
        .await?
        .iter()
        .map(delivery_from_row)
        .collect::<TxResult<Vec<Delivery>>>()?;
    let timer = lock_timer(w, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    let plan = plan_redrive(&timer, &dead).map_err(StoreError::from)?;
    let now_us = w.now_us;
    let ids: Vec<Uuid> = dead.iter().map(|d| d.id.0).collect();
    let budgets: Vec<i32> = dead
        .iter()
        .map(|d| plan.max_attempts_of(d) as i32)
        .collect();
    w.db()
        .execute(
            "UPDATE deliveries AS d SET status = 'pending', next_attempt_at = $3,
                    max_attempts = r.max_attempts, updated_at = $3
               FROM unnest($1::uuid[], $2::int4[]) AS r(id, max_attempts)
              WHERE d.id = r.id",
            &[&ids, &budgets, &now_us],
        )
        .await?;
    w.announce_ready();
    for d in &dead {
        w.append_event(NewEvent::delivery_retrying(d, now_us, RetryCause::Redrive));
    }
    if !plan.refire_timer {
        return Ok(timer);
    }
    w.db()
        .execute(
            "UPDATE timers SET status = 'fired', settled_at = NULL, version = version + 1
              WHERE id = $1",
            &[&id.0],
        )
        .await?;
    Ok(Timer {
        status: TimerStatus::Fired,
        settled_at_us: None,
        version: timer.version + 1,
        ..timer
    })
}

pub(super) async fn stats(db: &mut Db<'_>) -> TxResult<StoreStats> {
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM timers WHERE status = 'scheduled'),
                    (SELECT count(*) FROM deliveries WHERE status = 'pending'),
                    (SELECT count(*) FROM deliveries WHERE status = 'in_flight'),
                    (SELECT last_seq FROM event_log_head)",
            &[],
        )
        .await?;
    let count = |i| col::<i64>(&row, i).map(|n| n.max(0) as u64);
    Ok(StoreStats {
        scheduled_timers: count(0)?,
        pending_deliveries: count(1)?,
        in_flight_deliveries: count(2)?,
        latest_event_seq: col(&row, 3)?,
        idle_cache_releases: 0,
    })
}
