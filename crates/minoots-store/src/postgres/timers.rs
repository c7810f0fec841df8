//! Timers in PostgreSQL: creating them (idempotency keys and quotas, exact when several
//! handles create at once), reading, listing and cancelling them, and the reads of the
//! scheduler and of operators (due timers, deliveries, counts). Each write function runs
//! inside one attempt of a transaction (`tx.rs`); every refusal leaves the transaction to
//! be rolled back, so a refused write stores nothing.
//!
//! **Quotas under concurrency.** A create bumps its tenant's usage rows with one
//! conditional upsert each (`... DO UPDATE ... WHERE created + n <= limit`). The upsert
//! locks the row and judges the condition against its latest committed version, so two
//! creates near the limit (on any connection, in any process) queue on the row and the
//! second sees the first's count: exactly the limit is admitted. Usage rows are taken in
//! one order (every day row by (tenant, day), then every pending row by tenant) before
//! any timer is inserted, so creates cannot deadlock on them.
//!
//! **Idempotency under concurrency.** Two creates with one key may both find it free and
//! both insert; the unique index `timers_idempotency` makes the second wait for the
//! first and fail, and that failure runs the second create again, which then finds the
//! first's timer and returns it.

use std::collections::{BTreeMap, HashMap};

use minoots_core::limits::{MAX_CANCEL_REASON_BYTES, MAX_PAGE_SIZE};
use minoots_core::{AttemptRecord, Delivery, DeliveryId, EventType, Timer, TimerId, TimerStatus};
use uuid::Uuid;

use super::errors::{TxError, TxResult, unique_violation};
use super::events;
use super::rows::{
    TIMER_COLUMNS, col, delivery_cols, delivery_from_row, timer_cols, timer_from_row, uuid_of,
};
use super::tx::{Db, WriteTx};
use crate::plan::check_new_timer;
use crate::types::*;

fn to_json<T: serde::Serialize>(v: &T) -> TxResult<String> {
    serde_json::to_string(v).map_err(|e| TxError::Store(StoreError::Corrupt(e.to_string())))
}

fn limit_i64(limit: Option<u64>) -> i64 {
    limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// Creates `timers` in order (each as `Store::create_timer_with` describes), all or none.
pub(super) async fn create_timers(
    w: &mut WriteTx<'_>,
    timers: &[Timer],
    options: &CreateOptions,
) -> TxResult<Vec<CreateOutcome>> {
    timers.iter().try_for_each(check_new_timer)?;
    let mut outcomes: Vec<Option<CreateOutcome>> = vec![None; timers.len()];
    let mut fresh: Vec<usize> = Vec::new();
    // Keys taken by earlier timers of this call: a repeat returns that timer.
    let mut keys_in_call: HashMap<(&str, &str), usize> = HashMap::new();
    let mut expired_holders: Vec<Uuid> = Vec::new();
    for (i, t) in timers.iter().enumerate() {
        if let Some(key) = &t.idempotency_key {
            if let Some(&first) = keys_in_call.get(&(t.tenant_id.as_str(), key.as_str())) {
                outcomes[i] = Some(CreateOutcome {
                    timer: timers[first].clone(),
                    created: false,
                });
                continue;
            }
            match key_holder(&mut w.db(), &t.tenant_id, key).await? {
                Some((existing, stored))
                    if existing.created_at_us > w.now_us - IDEMPOTENCY_KEY_TTL_US =>
                {
                    let same = match (&stored, &options.idempotency_fingerprint) {
                        (Some(stored), Some(given)) => stored.as_slice() == given.as_slice(),
                        // A key stored without a fingerprint, or a caller that gives none,
                        // cannot be compared: the original is returned.
                        _ => true,
                    };
                    if !same {
                        return Err(StoreError::IdempotencyMismatch {
                            timer_id: existing.id,
                        }
                        .into());
                    }
                    outcomes[i] = Some(CreateOutcome {
                        timer: existing,
                        created: false,
                    });
                    continue;
                }
                // Expired: the key will name the new timer.
                Some((expired, _)) => expired_holders.push(expired.id.0),
                None => {}
            }
            keys_in_call.insert((t.tenant_id.as_str(), key.as_str()), i);
        }
        fresh.push(i);
    }
    if fresh.is_empty() {
        return Ok(outcomes.into_iter().flatten().collect());
    }
    count_usage(w, timers, &fresh, options).await?;
    if !expired_holders.is_empty() {
        w.db()
            .execute(
                "UPDATE timers SET idempotency_key = NULL, idempotency_fingerprint = NULL
                  WHERE id = ANY ($1)",
                &[&expired_holders],
            )
            .await?;
    }
    let new: Vec<&Timer> = fresh.iter().map(|&i| &timers[i]).collect();
    insert_timers(w, &new, options.idempotency_fingerprint.as_ref()).await?;
    for t in &new {
        w.append_event(
            EventType::TimerScheduled,
            &t.tenant_id,
            t.id,
            None,
            events::timer_scheduled(t.fire_at_us),
        );
    }
    for i in fresh {
        outcomes[i] = Some(CreateOutcome {
            timer: timers[i].clone(),
            created: true,
        });
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// The timer holding `key` for the tenant, with the fingerprint stored with the key.
async fn key_holder(
    db: &mut Db<'_>,
    tenant_id: &str,
    key: &str,
) -> TxResult<Option<(Timer, Option<Vec<u8>>)>> {
    let row = db
        .query_opt(
            concat!(
                "SELECT ",
                timer_cols!(),
                ", idempotency_fingerprint FROM timers WHERE tenant_id = $1 AND idempotency_key = $2"
            ),
            &[&tenant_id, &key],
        )
        .await?;
    row.map(|r| Ok((timer_from_row(&r)?, col(&r, TIMER_COLUMNS)?)))
        .transpose()
}

/// Counts the new timers towards their tenants' day and pending usage, refusing the
/// whole call when a quota would be exceeded (see the module comment).
async fn count_usage(
    w: &mut WriteTx<'_>,
    timers: &[Timer],
    fresh: &[usize],
    options: &CreateOptions,
) -> TxResult<()> {
    let mut per_day: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    let mut per_tenant: BTreeMap<&str, i64> = BTreeMap::new();
    for &i in fresh {
        let t = &timers[i];
        *per_day
            .entry((t.tenant_id.as_str(), utc_day(t.created_at_us)))
            .or_default() += 1;
        *per_tenant.entry(t.tenant_id.as_str()).or_default() += 1;
    }
    let max_per_day = limit_i64(options.max_per_day);
    for ((tenant, day), n) in per_day {
        let admitted = w
            .db()
            .query_opt(
                "INSERT INTO tenant_daily AS d (tenant_id, day, created)
                 SELECT $1::text, $2::bigint, $3::bigint WHERE $3::bigint <= $4::bigint
                 ON CONFLICT (tenant_id, day) DO UPDATE SET created = d.created + EXCLUDED.created
                  WHERE d.created + EXCLUDED.created <= $4::bigint
                 RETURNING created",
                &[&tenant, &day, &n, &max_per_day],
            )
            .await?;
        if admitted.is_none() {
            return Err(quota_exceeded(Quota::TimersPerDay, options.max_per_day));
        }
    }
    let max_pending = limit_i64(options.max_pending);
    for (tenant, n) in per_tenant {
        let admitted = w
            .db()
            .query_opt(
                "INSERT INTO tenant_pending AS p (tenant_id, pending)
                 SELECT $1::text, $2::bigint WHERE $2::bigint <= $3::bigint
                 ON CONFLICT (tenant_id) DO UPDATE SET pending = p.pending + EXCLUDED.pending
                  WHERE p.pending + EXCLUDED.pending <= $3::bigint
                 RETURNING pending",
                &[&tenant, &n, &max_pending],
            )
            .await?;
        if admitted.is_none() {
            return Err(quota_exceeded(Quota::PendingTimers, options.max_pending));
        }
    }
    Ok(())
}

fn quota_exceeded(quota: Quota, limit: Option<u64>) -> TxError {
    StoreError::QuotaExceeded {
        quota,
        limit: limit.unwrap_or(u64::MAX),
    }
    .into()
}

/// Inserts timers in one statement. A key taken meanwhile by a concurrent create runs
/// the whole create again.
async fn insert_timers(
    w: &mut WriteTx<'_>,
    new: &[&Timer],
    fingerprint: Option<&[u8; 32]>,
) -> TxResult<()> {
    let ids: Vec<Uuid> = new.iter().map(|t| t.id.0).collect();
    let tenants: Vec<&str> = new.iter().map(|t| t.tenant_id.as_str()).collect();
    let names: Vec<&str> = new.iter().map(|t| t.name.as_str()).collect();
    let requested_by: Vec<Option<&str>> = new.iter().map(|t| t.requested_by.as_deref()).collect();
    let statuses: Vec<&str> = new.iter().map(|t| t.status.as_str()).collect();
    let created_at: Vec<i64> = new.iter().map(|t| t.created_at_us).collect();
    let fire_at: Vec<i64> = new.iter().map(|t| t.fire_at_us).collect();
    let duration_ms: Vec<Option<i64>> = new.iter().map(|t| t.duration_ms).collect();
    let fired_at: Vec<Option<i64>> = new.iter().map(|t| t.fired_at_us).collect();
    let settled_at: Vec<Option<i64>> = new.iter().map(|t| t.settled_at_us).collect();
    let cancelled_at: Vec<Option<i64>> = new.iter().map(|t| t.cancelled_at_us).collect();
    let reasons: Vec<Option<&str>> = new.iter().map(|t| t.cancel_reason.as_deref()).collect();
    let metadata = new
        .iter()
        .map(|t| to_json(&t.metadata))
        .collect::<TxResult<Vec<_>>>()?;
    let labels = new
        .iter()
        .map(|t| to_json(&t.labels))
        .collect::<TxResult<Vec<_>>>()?;
    let bundles = new
        .iter()
        .map(|t| to_json(&t.action_bundle))
        .collect::<TxResult<Vec<_>>>()?;
    let keys: Vec<Option<&str>> = new.iter().map(|t| t.idempotency_key.as_deref()).collect();
    let fingerprints: Vec<Option<&[u8]>> = new
        .iter()
        .map(|t| {
            t.idempotency_key
                .as_ref()
                .and(fingerprint.map(|f| f.as_slice()))
        })
        .collect();
    let versions: Vec<i64> = new.iter().map(|t| t.version).collect();
    let inserted = w
        .db()
        .execute(
            "INSERT INTO timers (id, tenant_id, name, requested_by, status, created_at, fire_at,
                    duration_ms, fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels,
                    action_bundle, idempotency_key, idempotency_fingerprint, version)
             SELECT id, tenant_id, name, requested_by, status, created_at, fire_at, duration_ms,
                    fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels::jsonb,
                    action_bundle, idempotency_key, idempotency_fingerprint, version
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                           $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
                           $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                           $17::bytea[], $18::bigint[])
                 AS t(id, tenant_id, name, requested_by, status, created_at, fire_at, duration_ms,
                      fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels,
                      action_bundle, idempotency_key, idempotency_fingerprint, version)",
            &[
                &ids,
                &tenants,
                &names,
                &requested_by,
                &statuses,
                &created_at,
                &fire_at,
                &duration_ms,
                &fired_at,
                &settled_at,
                &cancelled_at,
                &reasons,
                &metadata,
                &labels,
                &bundles,
                &keys,
                &fingerprints,
                &versions,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) => match unique_violation(&e) {
            Some("timers_idempotency") => Err(TxError::Retry(
                "a concurrent create took the same idempotency key",
            )),
            Some("timers_pkey") => Err(StoreError::AlreadyExists(format!(
                "a timer with the id {}",
                if new.len() == 1 {
                    new[0].id.to_string()
                } else {
                    "of one of these timers".to_string()
                }
            ))
            .into()),
            _ => Err(e),
        },
    }
}

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

pub(super) async fn list_timers(db: &mut Db<'_>, q: &TimerQuery) -> TxResult<TimerPage> {
    let limit = q.limit.clamp(1, MAX_PAGE_SIZE);
    let status = q.status.map(|s| s.as_str());
    let (label_key, label_value) = match &q.label {
        Some((k, v)) => (Some(k.as_str()), Some(v.as_str())),
        None => (None, None),
    };
    let fetch = (limit + 1) as i64;
    // Two statements, so that with a cursor the tenant index seeks straight to it.
    let rows = match q.after {
        None => {
            db.query(
                concat!(
                    "SELECT ",
                    timer_cols!(),
                    " FROM timers WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
                       AND ($3::text IS NULL OR labels ->> $3::text = $4::text)
                     ORDER BY fire_at, id LIMIT $5"
                ),
                &[&q.tenant_id, &status, &label_key, &label_value, &fetch],
            )
            .await?
        }
        Some(after) => {
            db.query(
                concat!(
                    "SELECT ",
                    timer_cols!(),
                    " FROM timers WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
                       AND ($3::text IS NULL OR labels ->> $3::text = $4::text)
                       AND (fire_at, id) > ($6::bigint, $7::uuid)
                     ORDER BY fire_at, id LIMIT $5"
                ),
                &[
                    &q.tenant_id,
                    &status,
                    &label_key,
                    &label_value,
                    &fetch,
                    &after.fire_at_us,
                    &after.id.0,
                ],
            )
            .await?
        }
    };
    let mut timers = rows
        .iter()
        .map(timer_from_row)
        .collect::<TxResult<Vec<_>>>()?;
    let next = if timers.len() > limit {
        timers.truncate(limit);
        timers.last().map(|t| DueTimer {
            fire_at_us: t.fire_at_us,
            id: t.id,
        })
    } else {
        None
    };
    Ok(TimerPage { timers, next })
}

pub(super) async fn cancel_timer(
    w: &mut WriteTx<'_>,
    tenant_id: &str,
    id: TimerId,
    reason: Option<String>,
) -> TxResult<Timer> {
    // The row lock makes a concurrent cancel or fire wait, then see this one's result.
    let row = w
        .db()
        .query_opt(
            concat!(
                "SELECT ",
                timer_cols!(),
                " FROM timers WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
            ),
            &[&id.0, &tenant_id],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    let timer = timer_from_row(&row)?;
    if timer.status != TimerStatus::Scheduled {
        return Err(StoreError::Conflict {
            status: timer.status,
        }
        .into());
    }
    if !timer.status.can_transition_to(TimerStatus::Cancelled) {
        return Err(StoreError::Corrupt(format!(
            "invariant violated: timer {id} cannot go from {} to cancelled",
            timer.status
        ))
        .into());
    }
    let reason = reason.map(|r| r[..r.floor_char_boundary(MAX_CANCEL_REASON_BYTES)].to_string());
    let now_us = w.now_us;
    w.db()
        .execute(
            "UPDATE timers SET status = 'cancelled', cancelled_at = $2, cancel_reason = $3,
                    version = version + 1
              WHERE id = $1",
            &[&id.0, &now_us, &reason],
        )
        .await?;
    w.db()
        .execute(
            "UPDATE tenant_pending SET pending = GREATEST(pending - 1, 0) WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?;
    w.append_event(
        EventType::TimerCancelled,
        tenant_id,
        id,
        None,
        events::timer_cancelled(reason.as_deref()),
    );
    Ok(Timer {
        status: TimerStatus::Cancelled,
        cancelled_at_us: Some(now_us),
        cancel_reason: reason,
        version: timer.version + 1,
        ..timer
    })
}

pub(super) async fn load_due_timers(
    db: &mut Db<'_>,
    after: Option<DueTimer>,
    until_us: i64,
    limit: usize,
) -> TxResult<Vec<DueTimer>> {
    let limit = limit as i64;
    let rows = match after {
        None => {
            db.query(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= $1
                  ORDER BY fire_at, id LIMIT $2",
                &[&until_us, &limit],
            )
            .await?
        }
        Some(a) => {
            db.query(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= $1
                    AND (fire_at, id) > ($2::bigint, $3::uuid)
                  ORDER BY fire_at, id LIMIT $4",
                &[&until_us, &a.fire_at_us, &a.id.0, &limit],
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

pub(super) async fn next_delivery_due_us(db: &mut Db<'_>) -> TxResult<Option<i64>> {
    let row = db
        .query_one(
            "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'",
            &[],
        )
        .await?;
    col(&row, 0)
}

pub(super) async fn get_delivery(db: &mut Db<'_>, id: DeliveryId) -> TxResult<Option<Delivery>> {
    db.query_opt(
        concat!(
            "SELECT ",
            delivery_cols!(),
            " FROM deliveries WHERE id = $1"
        ),
        &[&id.0],
    )
    .await?
    .map(|r| delivery_from_row(&r))
    .transpose()
}

/// A timer's deliveries with their attempts; run in one snapshot, so the attempts are
/// those of the deliveries as read.
pub(super) async fn list_deliveries(
    db: &mut Db<'_>,
    tenant_id: &str,
    timer_id: TimerId,
) -> TxResult<Vec<DeliveryWithAttempts>> {
    if get_timer(db, tenant_id, timer_id).await?.is_none() {
        return Err(StoreError::NotFound.into());
    }
    let deliveries = db
        .query(
            concat!(
                "SELECT ",
                delivery_cols!(),
                " FROM deliveries WHERE timer_id = $1 ORDER BY occurrence, action_index"
            ),
            &[&timer_id.0],
        )
        .await?
        .iter()
        .map(delivery_from_row)
        .collect::<TxResult<Vec<_>>>()?;
    let attempts = db
        .query(
            "SELECT a.delivery_id, a.attempt, a.lease_owner, a.started_at, a.duration_us, a.outcome,
                    a.http_status, a.exit_code, a.error, a.response_excerpt
               FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
              WHERE d.timer_id = $1 ORDER BY a.delivery_id, a.attempt",
            &[&timer_id.0],
        )
        .await?;
    let mut by_delivery: HashMap<Uuid, Vec<AttemptRecord>> = HashMap::new();
    for r in &attempts {
        let outcome: &str = col(r, 5)?;
        let http_status: Option<i32> = col(r, 6)?;
        let record = AttemptRecord {
            delivery_id: DeliveryId(uuid_of(r, 0)?),
            attempt: u32::try_from(col::<i32>(r, 1)?)
                .map_err(|_| StoreError::Corrupt("negative attempt number".into()))?,
            lease_owner: col(r, 2)?,
            started_at_us: col(r, 3)?,
            duration_us: col(r, 4)?,
            outcome: outcome.parse().map_err(StoreError::Corrupt)?,
            http_status: http_status
                .map(u16::try_from)
                .transpose()
                .map_err(|_| StoreError::Corrupt("HTTP status out of range".into()))?,
            exit_code: col(r, 7)?,
            error: col(r, 8)?,
            response_excerpt: col(r, 9)?,
        };
        by_delivery
            .entry(record.delivery_id.0)
            .or_default()
            .push(record);
    }
    Ok(deliveries
        .into_iter()
        .map(|d| DeliveryWithAttempts {
            attempts: by_delivery.remove(&d.id.0).unwrap_or_default(),
            delivery: d,
        })
        .collect())
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
    })
}
