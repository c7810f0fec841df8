//! Every SQL statement of the SQLite backend. Each function is one logical operation; the
//! write functions run inside the writer's group-committed transaction (see `mod.rs`) and
//! append their events through [`WriteCtx`]. Status changes are checked against the
//! state machines of `minoots_core::model` before they are written. Every refusal of a
//! write (not found, conflict, fenced, quota, idempotency mismatch) is decided before its
//! first write, so the other writes of its group commit are untouched by it.

use std::collections::HashMap;

use minoots_core::limits::{
    MAX_ATTEMPT_ERROR_BYTES, MAX_ATTEMPT_RESPONSE_BYTES, MAX_CANCEL_REASON_BYTES,
};
use minoots_core::timefmt::format_us;
use minoots_core::{
    ActionBundle, AttemptOutcome, AttemptRecord, Delivery, DeliveryId, DeliveryStatus, Event,
    EventType, Timer, TimerId, TimerStatus,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use crate::types::*;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
            // The disk refusing a write: callers get a clear reason and retry later.
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
                StoreError::CannotWrite(WriteTrouble::DiskFull)
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ReadOnly => {
                StoreError::CannotWrite(WriteTrouble::ReadOnly)
            }
            rusqlite::Error::SqliteFailure(f, ref m) if f.code == ErrorCode::SystemIoFailure => {
                StoreError::CannotWrite(WriteTrouble::Io(
                    m.clone()
                        .unwrap_or_else(|| format!("extended code {}", f.extended_code)),
                ))
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// The open transaction of one write, the batch's time, and the events it appends.
pub struct WriteCtx<'a> {
    pub conn: &'a Connection,
    /// The time of this batch, read once from the store's clock.
    pub now_us: i64,
    events: &'a mut Vec<Event>,
}

impl<'a> WriteCtx<'a> {
    pub fn new(conn: &'a Connection, now_us: i64, events: &'a mut Vec<Event>) -> Self {
        Self {
            conn,
            now_us,
            events,
        }
    }

    /// Appends an event to the log in this transaction.
    fn append_event(
        &mut self,
        event_type: EventType,
        tenant_id: &str,
        timer_id: TimerId,
        delivery_id: Option<DeliveryId>,
        data: serde_json::Value,
    ) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO events (type, tenant_id, timer_id, delivery_id, occurred_at, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        stmt.execute(params![
            event_type.as_str(),
            tenant_id,
            timer_id.as_bytes(),
            delivery_id.as_ref().map(|d| d.as_bytes().to_vec()),
            self.now_us,
            data.to_string(),
        ])?;
        self.events.push(Event {
            seq: self.conn.last_insert_rowid(),
            event_type,
            tenant_id: tenant_id.to_string(),
            timer_id,
            delivery_id,
            occurred_at_us: self.now_us,
            data,
        });
        Ok(())
    }
}

const TIMER_COLS: &str = "id, tenant_id, name, requested_by, status, created_at, fire_at, duration_ms, \
    fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels, action_bundle, idempotency_key, version";

const DELIVERY_COLS: &str = "id, timer_id, tenant_id, occurrence, action_index, status, attempt, max_attempts, \
    next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at, last_error";
/// How many columns `DELIVERY_COLS` names: the index of the first column after them.
const DELIVERY_COLUMNS: usize = 14;

fn corrupt<E: std::error::Error + Send + Sync + 'static>(idx: usize, e: E) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

fn parse_col<T: std::str::FromStr<Err = String>>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    s.parse::<T>()
        .map_err(|e| corrupt(idx, std::io::Error::other(e)))
}

fn json_col<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    serde_json::from_str(&s).map_err(|e| corrupt(idx, e))
}

fn id_col<T>(row: &Row<'_>, idx: usize, make: fn(&[u8]) -> Option<T>) -> rusqlite::Result<T> {
    let b: Vec<u8> = row.get(idx)?;
    make(&b).ok_or_else(|| corrupt(idx, std::io::Error::other("bad id length")))
}

fn timer_from_row(row: &Row<'_>) -> rusqlite::Result<Timer> {
    Ok(Timer {
        id: id_col(row, 0, TimerId::from_slice)?,
        tenant_id: row.get(1)?,
        name: row.get(2)?,
        requested_by: row.get(3)?,
        status: parse_col(row, 4)?,
        created_at_us: row.get(5)?,
        fire_at_us: row.get(6)?,
        duration_ms: row.get(7)?,
        fired_at_us: row.get(8)?,
        settled_at_us: row.get(9)?,
        cancelled_at_us: row.get(10)?,
        cancel_reason: row.get(11)?,
        metadata: json_col(row, 12)?,
        labels: json_col(row, 13)?,
        action_bundle: json_col(row, 14)?,
        idempotency_key: row.get(15)?,
        version: row.get(16)?,
    })
}

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: id_col(row, 0, DeliveryId::from_slice)?,
        timer_id: id_col(row, 1, TimerId::from_slice)?,
        tenant_id: row.get(2)?,
        occurrence: row.get(3)?,
        action_index: row.get(4)?,
        status: parse_col(row, 5)?,
        attempt: row.get(6)?,
        max_attempts: row.get(7)?,
        next_attempt_at_us: row.get(8)?,
        lease_owner: row.get(9)?,
        lease_expires_at_us: row.get(10)?,
        created_at_us: row.get(11)?,
        updated_at_us: row.get(12)?,
        last_error: row.get(13)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let delivery: Option<Vec<u8>> = row.get(4)?;
    Ok(Event {
        seq: row.get(0)?,
        event_type: parse_col(row, 1)?,
        tenant_id: row.get(2)?,
        timer_id: id_col(row, 3, TimerId::from_slice)?,
        delivery_id: delivery.and_then(|b| DeliveryId::from_slice(&b)),
        occurred_at_us: row.get(5)?,
        data: json_col(row, 6)?,
    })
}

/// Truncates text to at most `max` bytes on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Refuses a status change the state machine forbids: that is a bug, surfaced as an error.
fn check_transition(
    kind: &str,
    id: impl std::fmt::Display,
    from: impl std::fmt::Display,
    to: impl std::fmt::Display,
    allowed: bool,
) -> StoreResult<()> {
    if allowed {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "invariant violated: {kind} {id} cannot go from {from} to {to}"
        )))
    }
}

fn check_timer_transition(id: TimerId, from: TimerStatus, to: TimerStatus) -> StoreResult<()> {
    check_transition("timer", id, from, to, from.can_transition_to(to))
}

fn check_delivery_transition(
    id: DeliveryId,
    from: DeliveryStatus,
    to: DeliveryStatus,
) -> StoreResult<()> {
    check_transition("delivery", id, from, to, from.can_transition_to(to))
}

// ---------------------------------------------------------------------------------------
// Timers

/// The invariant of a timer about to be created: it is `scheduled`. Checked for every timer
/// of a call before the first is written.
pub fn check_new_timer(timer: &Timer) -> StoreResult<()> {
    if timer.status != TimerStatus::Scheduled {
        return Err(StoreError::Corrupt(format!(
            "invariant violated: new timer {} is {}",
            timer.id, timer.status
        )));
    }
    Ok(())
}

pub fn create_timer(
    ctx: &mut WriteCtx<'_>,
    timer: Timer,
    options: &CreateOptions,
) -> StoreResult<CreateOutcome> {
    // Every refusal (idempotency mismatch, quota, invariant) comes before the first write.
    let mut expired_key_holder = None;
    if let Some(key) = &timer.idempotency_key {
        let mut stmt = ctx.conn.prepare_cached(&format!(
            "SELECT {TIMER_COLS}, idempotency_fingerprint FROM timers WHERE tenant_id = ?1 AND idempotency_key = ?2"
        ))?;
        let found = stmt
            .query_row(params![timer.tenant_id, key], |r| {
                Ok((timer_from_row(r)?, r.get::<_, Option<Vec<u8>>>(17)?))
            })
            .optional()?;
        if let Some((existing, fingerprint)) = found {
            if existing.created_at_us > ctx.now_us - IDEMPOTENCY_KEY_TTL_US {
                let same = match (&fingerprint, &options.idempotency_fingerprint) {
                    (Some(stored), Some(given)) => stored.as_slice() == given.as_slice(),
                    // A key stored without a fingerprint, or a caller that gives none,
                    // cannot be compared: the original is returned, as before.
                    _ => true,
                };
                if !same {
                    return Err(StoreError::IdempotencyMismatch {
                        timer_id: existing.id,
                    });
                }
                return Ok(CreateOutcome {
                    timer: existing,
                    created: false,
                });
            }
            // The key has expired: it will name the new timer, once every check passed.
            expired_key_holder = Some(existing.id);
        }
    }
    let day = utc_day(timer.created_at_us);
    check_quotas(ctx, &timer.tenant_id, day, options)?;
    check_new_timer(&timer)?;
    let json = |v: serde_json::Result<String>| v.map_err(|e| StoreError::Corrupt(e.to_string()));
    let metadata = json(serde_json::to_string(&timer.metadata))?;
    let labels = json(serde_json::to_string(&timer.labels))?;
    let bundle = json(serde_json::to_string(&timer.action_bundle))?;

    if let Some(old) = expired_key_holder {
        // The old timer keeps no key.
        ctx.conn
            .prepare_cached("UPDATE timers SET idempotency_key = NULL, idempotency_fingerprint = NULL WHERE id = ?1")?
            .execute(params![old.as_bytes()])?;
    }
    let mut stmt = ctx.conn.prepare_cached(&format!(
        "INSERT INTO timers ({TIMER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?;
    stmt.execute(params![
        timer.id.as_bytes(),
        timer.tenant_id,
        timer.name,
        timer.requested_by,
        timer.status.as_str(),
        timer.created_at_us,
        timer.fire_at_us,
        timer.duration_ms,
        timer.fired_at_us,
        timer.settled_at_us,
        timer.cancelled_at_us,
        timer.cancel_reason,
        metadata,
        labels,
        bundle,
        timer.idempotency_key,
        timer.version,
    ])?;
    if timer.idempotency_key.is_some()
        && let Some(fp) = &options.idempotency_fingerprint
    {
        ctx.conn
            .prepare_cached("UPDATE timers SET idempotency_fingerprint = ?2 WHERE id = ?1")?
            .execute(params![timer.id.as_bytes(), fp.as_slice()])?;
    }
    ctx.conn
        .prepare_cached(
            "INSERT INTO tenant_daily (tenant_id, day, created) VALUES (?1, ?2, 1)
             ON CONFLICT (tenant_id, day) DO UPDATE SET created = created + 1",
        )?
        .execute(params![timer.tenant_id, day])?;
    add_pending(ctx, &timer.tenant_id, 1)?;
    ctx.append_event(
        EventType::TimerScheduled,
        &timer.tenant_id,
        timer.id,
        None,
        json!({"fireAt": format_us(timer.fire_at_us)}),
    )?;
    Ok(CreateOutcome {
        timer,
        created: true,
    })
}

/// Refuses a create that would exceed the tenant's quotas. Runs before anything is
/// written, so a refused create leaves the batch untouched.
fn check_quotas(
    ctx: &WriteCtx<'_>,
    tenant_id: &str,
    day: i64,
    options: &CreateOptions,
) -> StoreResult<()> {
    if options.max_per_day.is_none() && options.max_pending.is_none() {
        return Ok(());
    }
    let usage = tenant_usage(ctx.conn, tenant_id, day)?;
    if let Some(limit) = options.max_per_day
        && usage.created_today >= limit
    {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::TimersPerDay,
            limit,
        });
    }
    if let Some(limit) = options.max_pending
        && usage.pending >= limit
    {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::PendingTimers,
            limit,
        });
    }
    Ok(())
}

/// Moves the tenant's count of scheduled timers by `delta`.
pub fn add_pending(ctx: &WriteCtx<'_>, tenant_id: &str, delta: i64) -> StoreResult<()> {
    ctx.conn
        .prepare_cached(
            "INSERT INTO tenant_pending (tenant_id, pending) VALUES (?1, MAX(?2, 0))
             ON CONFLICT (tenant_id) DO UPDATE SET pending = MAX(pending + ?2, 0)",
        )?
        .execute(params![tenant_id, delta])?;
    Ok(())
}

pub fn tenant_usage(conn: &Connection, tenant_id: &str, day: i64) -> StoreResult<TenantUsage> {
    let created: Option<i64> = conn
        .prepare_cached("SELECT created FROM tenant_daily WHERE tenant_id = ?1 AND day = ?2")?
        .query_row(params![tenant_id, day], |r| r.get(0))
        .optional()?;
    let pending: Option<i64> = conn
        .prepare_cached("SELECT pending FROM tenant_pending WHERE tenant_id = ?1")?
        .query_row(params![tenant_id], |r| r.get(0))
        .optional()?;
    Ok(TenantUsage {
        created_today: created.unwrap_or(0).max(0) as u64,
        pending: pending.unwrap_or(0).max(0) as u64,
    })
}

pub fn get_timer(
    conn: &Connection,
    tenant_id: Option<&str>,
    id: TimerId,
) -> StoreResult<Option<Timer>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {TIMER_COLS} FROM timers WHERE id = ?1"))?;
    let timer = stmt
        .query_row(params![id.as_bytes()], timer_from_row)
        .optional()?;
    Ok(timer.filter(|t| tenant_id.is_none_or(|tenant| t.tenant_id == tenant)))
}

pub fn list_timers(conn: &Connection, q: &TimerQuery) -> StoreResult<TimerPage> {
    let limit = q.limit.clamp(1, minoots_core::limits::MAX_PAGE_SIZE);
    // Two statements, so that with a cursor the tenant index seeks straight to it instead
    // of scanning the tenant's earlier timers on every page.
    let filters = "tenant_id = ?1
           AND (?2 IS NULL OR status = ?2)
           AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(timers.labels) AS l WHERE l.key = ?3 AND l.value = ?4))";
    let sql = if q.after.is_some() {
        format!(
            "SELECT {TIMER_COLS} FROM timers WHERE {filters} AND (fire_at, id) > (?5, ?6) ORDER BY fire_at, id LIMIT ?7"
        )
    } else {
        format!(
            "SELECT {TIMER_COLS} FROM timers WHERE {filters} AND ?5 IS NULL AND ?6 IS NULL ORDER BY fire_at, id LIMIT ?7"
        )
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let (label_key, label_value) = match &q.label {
        Some((k, v)) => (Some(k.as_str()), Some(v.as_str())),
        None => (None, None),
    };
    let rows = stmt.query_map(
        params![
            q.tenant_id,
            q.status.map(|s| s.as_str()),
            label_key,
            label_value,
            q.after.map(|a| a.fire_at_us),
            q.after.map(|a| a.id.as_bytes().to_vec()),
            (limit + 1) as i64,
        ],
        timer_from_row,
    )?;
    let mut timers = rows.collect::<Result<Vec<_>, _>>()?;
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

pub fn cancel_timer(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    id: TimerId,
    reason: Option<String>,
) -> StoreResult<Timer> {
    let timer = get_timer(ctx.conn, Some(tenant_id), id)?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    if timer.status != TimerStatus::Scheduled {
        return Err(StoreError::Conflict {
            status: timer.status,
        });
    }
    check_timer_transition(id, timer.status, TimerStatus::Cancelled)?;
    let reason = reason.map(|r| truncate(r, MAX_CANCEL_REASON_BYTES));
    let mut stmt = ctx.conn.prepare_cached(
        "UPDATE timers SET status = 'cancelled', cancelled_at = ?2, cancel_reason = ?3, version = version + 1
         WHERE id = ?1 AND status = 'scheduled'",
    )?;
    stmt.execute(params![id.as_bytes(), ctx.now_us, reason])?;
    add_pending(ctx, tenant_id, -1)?;
    ctx.append_event(
        EventType::TimerCancelled,
        tenant_id,
        id,
        None,
        json!({"reason": reason}),
    )?;
    Ok(Timer {
        status: TimerStatus::Cancelled,
        cancelled_at_us: Some(ctx.now_us),
        cancel_reason: reason,
        version: timer.version + 1,
        ..timer
    })
}

pub fn load_due_timers(
    conn: &Connection,
    after: Option<DueTimer>,
    until_us: i64,
    limit: usize,
) -> StoreResult<Vec<DueTimer>> {
    let map = |row: &Row<'_>| {
        Ok(DueTimer {
            fire_at_us: row.get(0)?,
            id: id_col(row, 1, TimerId::from_slice)?,
        })
    };
    let rows = match after {
        None => {
            let mut stmt = conn.prepare_cached(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= ?1
                 ORDER BY fire_at, id LIMIT ?2",
            )?;
            stmt.query_map(params![until_us, limit as i64], map)?
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(a) => {
            let mut stmt = conn.prepare_cached(
                "SELECT fire_at, id FROM timers WHERE status = 'scheduled' AND fire_at <= ?1
                   AND (fire_at, id) > (?2, ?3)
                 ORDER BY fire_at, id LIMIT ?4",
            )?;
            stmt.query_map(
                params![until_us, a.fire_at_us, a.id.as_bytes(), limit as i64],
                map,
            )?
            .collect::<Result<Vec<_>, _>>()?
        }
    };
    Ok(rows)
}

/// Fires each timer. A timer whose stored data cannot be read is reported as `Failed` and
/// left as it is, without holding back the others: `fire_timer` reads and checks
/// everything before its first write, so such a failure leaves nothing to undo. Anything
/// that fails after a write fails the whole call, which the caller retries.
pub fn fire_timers(ctx: &mut WriteCtx<'_>, fires: &[FireRequest]) -> StoreResult<Vec<FireOutcome>> {
    let mut out = Vec::with_capacity(fires.len());
    for f in fires {
        let changes_before = ctx.conn.total_changes();
        match fire_timer(ctx, *f) {
            Ok(o) => out.push(o),
            Err(StoreError::Corrupt(error)) if ctx.conn.total_changes() == changes_before => {
                tracing::error!(timer = %f.timer_id, %error, "cannot fire a timer whose stored data is unreadable");
                out.push(FireOutcome::Failed {
                    timer_id: f.timer_id,
                    error,
                });
            }
            Err(other) => return Err(other),
        }
    }
    Ok(out)
}

fn fire_timer(ctx: &mut WriteCtx<'_>, fire: FireRequest) -> StoreResult<FireOutcome> {
    let row: Option<(String, String, i64, String)> = {
        let mut stmt = ctx.conn.prepare_cached(
            "SELECT status, tenant_id, fire_at, action_bundle FROM timers WHERE id = ?1",
        )?;
        stmt.query_row(params![fire.timer_id.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?
    };
    let Some((status, tenant_id, fire_at_us, bundle)) = row else {
        return Ok(FireOutcome::NotFound {
            timer_id: fire.timer_id,
        });
    };
    let status: TimerStatus = status.parse().map_err(StoreError::Corrupt)?;
    if status != TimerStatus::Scheduled {
        return Ok(FireOutcome::Skipped {
            timer_id: fire.timer_id,
            status,
        });
    }
    let bundle: ActionBundle =
        serde_json::from_str(&bundle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let fired_at = fire.fired_at_us;
    let late_us = fired_at - fire_at_us;
    let n = bundle.actions.len();
    if n == 0 {
        check_timer_transition(fire.timer_id, status, TimerStatus::Settled)?;
        ctx.conn
            .prepare_cached(
                "UPDATE timers SET status = 'settled', fired_at = ?2, settled_at = ?2, version = version + 1 WHERE id = ?1",
            )?
            .execute(params![fire.timer_id.as_bytes(), fired_at])?;
        add_pending(ctx, &tenant_id, -1)?;
        ctx.append_event(
            EventType::TimerFired,
            &tenant_id,
            fire.timer_id,
            None,
            json!({"firedAt": format_us(fired_at), "firedLateUs": late_us, "deliveries": 0}),
        )?;
        ctx.append_event(
            EventType::TimerSettled,
            &tenant_id,
            fire.timer_id,
            None,
            json!({}),
        )?;
        return Ok(FireOutcome::Settled {
            timer_id: fire.timer_id,
            tenant_id,
            fire_at_us,
        });
    }
    check_timer_transition(fire.timer_id, status, TimerStatus::Fired)?;
    ctx.conn
        .prepare_cached("UPDATE timers SET status = 'fired', fired_at = ?2, version = version + 1 WHERE id = ?1")?
        .execute(params![fire.timer_id.as_bytes(), fired_at])?;
    add_pending(ctx, &tenant_id, -1)?;
    let max_attempts = bundle.retry_policy().max_attempts();
    let mut insert = ctx.conn.prepare_cached(&format!(
        "INSERT INTO deliveries ({DELIVERY_COLS}) VALUES (?1, ?2, ?3, 0, ?4, 'pending', 0, ?5, ?6, NULL, NULL, ?7, ?7, NULL)"
    ))?;
    for index in 0..n {
        let id = DeliveryId::new_v7();
        insert.execute(params![
            id.as_bytes(),
            fire.timer_id.as_bytes(),
            tenant_id,
            index as i64,
            max_attempts,
            fired_at,
            ctx.now_us,
        ])?;
    }
    drop(insert);
    ctx.append_event(
        EventType::TimerFired,
        &tenant_id,
        fire.timer_id,
        None,
        json!({"firedAt": format_us(fired_at), "firedLateUs": late_us, "deliveries": n}),
    )?;
    Ok(FireOutcome::Fired {
        timer_id: fire.timer_id,
        tenant_id,
        deliveries: n,
        fire_at_us,
    })
}

// ---------------------------------------------------------------------------------------
// Deliveries and leases

pub fn claim_deliveries(
    ctx: &mut WriteCtx<'_>,
    owner: &str,
    lease_ttl_us: i64,
    limit: usize,
) -> StoreResult<Vec<LeasedDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = ctx.conn.prepare_cached(&format!(
        "UPDATE deliveries
            SET status = 'in_flight', attempt = attempt + 1, lease_owner = ?1,
                lease_expires_at = ?2, updated_at = ?3
          WHERE id IN (SELECT id FROM deliveries
                        WHERE status = 'pending' AND next_attempt_at <= ?3
                        ORDER BY next_attempt_at LIMIT ?4)
        RETURNING {DELIVERY_COLS}"
    ))?;
    let rows = stmt
        .query_map(
            params![owner, ctx.now_us + lease_ttl_us, ctx.now_us, limit as i64],
            |row| Ok((row.get::<_, Vec<u8>>(0)?, delivery_from_row(row))),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    // A delivery that cannot be handed out (unreadable row, missing timer or action) is
    // set aside as dead with the reason, so it cannot block the deliveries behind it.
    let mut deliveries = Vec::with_capacity(rows.len());
    let mut quarantine = Vec::new();
    for (raw_id, d) in rows {
        match d {
            Ok(d) => deliveries.push(d),
            Err(e) => quarantine.push((raw_id, format!("unreadable delivery: {e}"))),
        }
    }
    deliveries.sort_by_key(|d| (d.next_attempt_at_us, d.id));
    let mut timers: HashMap<TimerId, Option<Timer>> = HashMap::new();
    let mut secret_versions: HashMap<String, i64> = HashMap::new();
    let mut out = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let timer = match timers.entry(d.timer_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let t = match get_timer(ctx.conn, None, d.timer_id) {
                    Ok(t) => t,
                    Err(StoreError::Corrupt(_)) => None,
                    Err(other) => return Err(other),
                };
                e.insert(t).clone()
            }
        };
        let Some(timer) = timer else {
            quarantine.push((
                d.id.as_bytes().to_vec(),
                format!("timer {} is missing or unreadable", d.timer_id),
            ));
            continue;
        };
        let Some(action) = timer
            .action_bundle
            .actions
            .get(d.action_index as usize)
            .cloned()
        else {
            quarantine.push((
                d.id.as_bytes().to_vec(),
                format!("timer {} has no action {}", d.timer_id, d.action_index),
            ));
            continue;
        };
        let secrets_version = match secret_versions.get(&d.tenant_id) {
            Some(v) => *v,
            None => {
                let v = signing_secrets_version(ctx.conn, &d.tenant_id)?;
                secret_versions.insert(d.tenant_id.clone(), v);
                v
            }
        };
        out.push(LeasedDelivery {
            delivery: d,
            action,
            timer,
            secrets_version,
        });
    }
    for (raw_id, why) in quarantine {
        tracing::error!(error = %why, "a delivery could not be handed out and is set aside as dead");
        ctx.conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![raw_id, ctx.now_us, why])?;
    }
    Ok(out)
}

pub fn get_delivery(conn: &Connection, id: DeliveryId) -> StoreResult<Option<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1"
    ))?;
    Ok(stmt
        .query_row(params![id.as_bytes()], delivery_from_row)
        .optional()?)
}

fn timer_status(conn: &Connection, id: TimerId) -> StoreResult<TimerStatus> {
    let s: Option<String> = conn
        .prepare_cached("SELECT status FROM timers WHERE id = ?1")?
        .query_row(params![id.as_bytes()], |r| r.get(0))
        .optional()?;
    delivery_timer_status(id, s)
}

/// The status of a delivery's timer as read from the store; a delivery whose timer is
/// missing is corrupt data.
fn delivery_timer_status(id: TimerId, status: Option<String>) -> StoreResult<TimerStatus> {
    status
        .ok_or_else(|| StoreError::Corrupt(format!("timer {id} of a delivery is missing")))?
        .parse()
        .map_err(StoreError::Corrupt)
}

/// Writes a timer's new terminal status with its event. The transition must have been
/// checked by the caller before its first write (see `report_attempt`).
fn write_timer_status(
    ctx: &mut WriteCtx<'_>,
    timer_id: TimerId,
    tenant_id: &str,
    to: TimerStatus,
    data: serde_json::Value,
) -> StoreResult<()> {
    ctx.conn
        .prepare_cached(
            "UPDATE timers SET status = ?2, settled_at = ?3, version = version + 1 WHERE id = ?1",
        )?
        .execute(params![timer_id.as_bytes(), to.as_str(), ctx.now_us])?;
    let event = if to == TimerStatus::Settled {
        EventType::TimerSettled
    } else {
        EventType::TimerFailed
    };
    ctx.append_event(event, tenant_id, timer_id, None, data)
}

/// What a report will do, decided (and checked) before anything is written, so a refused
/// report has nothing to roll back.
enum ReportPlan {
    Succeed { settles: bool },
    Retry { next_us: i64, delay_ms: u64 },
    Kill { why: &'static str },
}

pub fn report_attempt(ctx: &mut WriteCtx<'_>, r: AttemptReport) -> StoreResult<ReportOutcome> {
    // One statement reads the delivery, its timer's status and how many of the timer's
    // other deliveries are unfinished. The report is the writer's busiest write; one
    // statement instead of three saved 4 % of its instructions (docs/benchmarks.md).
    let row = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLS},
                    (SELECT status FROM timers WHERE timers.id = deliveries.timer_id),
                    (SELECT COUNT(*) FROM deliveries AS o
                      WHERE o.timer_id = deliveries.timer_id AND o.occurrence = deliveries.occurrence
                        AND o.status != 'succeeded' AND o.id != deliveries.id)
               FROM deliveries WHERE id = ?1"
        ))?
        .query_row(params![r.delivery_id.as_bytes()], |row| {
            Ok((
                delivery_from_row(row)?,
                row.get::<_, Option<String>>(DELIVERY_COLUMNS)?,
                row.get::<_, i64>(DELIVERY_COLUMNS + 1)?,
            ))
        })
        .optional()?;
    let (d, timer_now, others_unfinished) =
        row.ok_or(StoreError::NotFound(Missing::Delivery(r.delivery_id)))?;
    if d.status != DeliveryStatus::InFlight
        || d.lease_owner.as_deref() != Some(r.lease_owner.as_str())
        || d.attempt != r.attempt
    {
        return Err(StoreError::Fenced {
            delivery_id: r.delivery_id,
        });
    }
    let timer_now = delivery_timer_status(d.timer_id, timer_now)?;
    let plan = match r.outcome {
        AttemptOutcome::Succeeded => {
            check_delivery_transition(d.id, d.status, DeliveryStatus::Succeeded)?;
            // A failed timer stays failed when another of its actions succeeds later.
            let settles = others_unfinished == 0 && timer_now != TimerStatus::Failed;
            if settles {
                check_timer_transition(d.timer_id, timer_now, TimerStatus::Settled)?;
            }
            ReportPlan::Succeed { settles }
        }
        AttemptOutcome::Retryable if d.attempt < d.max_attempts => {
            let bundle: String = ctx
                .conn
                .prepare_cached("SELECT action_bundle FROM timers WHERE id = ?1")?
                .query_row(params![d.timer_id.as_bytes()], |row| row.get(0))?;
            let bundle: ActionBundle =
                serde_json::from_str(&bundle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let delay_ms =
                bundle
                    .retry_policy()
                    .backoff_ms(d.attempt, fastrand::f64(), r.retry_after_ms);
            check_delivery_transition(d.id, d.status, DeliveryStatus::Pending)?;
            ReportPlan::Retry {
                next_us: ctx.now_us + (delay_ms as i64) * 1_000,
                delay_ms,
            }
        }
        AttemptOutcome::Retryable | AttemptOutcome::Permanent => {
            check_kill(&d, Some(timer_now))?;
            ReportPlan::Kill {
                why: if r.outcome == AttemptOutcome::Permanent {
                    "permanent failure"
                } else {
                    "retries exhausted"
                },
            }
        }
    };

    let error = r.error.map(|e| truncate(e, MAX_ATTEMPT_ERROR_BYTES));
    let excerpt = r
        .response_excerpt
        .map(|e| truncate(e, MAX_ATTEMPT_RESPONSE_BYTES));
    ctx.conn
        .prepare_cached(
            "INSERT OR REPLACE INTO attempts (delivery_id, attempt, lease_owner, started_at, duration_us, outcome,
                                   http_status, exit_code, error, response_excerpt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            d.id.as_bytes(),
            r.attempt,
            r.lease_owner,
            r.started_at_us,
            r.duration_us,
            r.outcome.as_str(),
            r.http_status,
            r.exit_code,
            error,
            excerpt,
        ])?;
    ctx.append_event(
        EventType::DeliveryAttempted,
        &d.tenant_id,
        d.timer_id,
        Some(d.id),
        json!({"attempt": r.attempt, "outcome": r.outcome.as_str(), "httpStatus": r.http_status,
               "exitCode": r.exit_code, "error": error, "durationUs": r.duration_us}),
    )?;

    match plan {
        ReportPlan::Succeed { settles } => {
            ctx.conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'succeeded', lease_owner = NULL, lease_expires_at = NULL,
                            updated_at = ?2, last_error = NULL WHERE id = ?1",
                )?
                .execute(params![d.id.as_bytes(), ctx.now_us])?;
            let timer_status = if settles {
                write_timer_status(
                    ctx,
                    d.timer_id,
                    &d.tenant_id,
                    TimerStatus::Settled,
                    json!({}),
                )?;
                TimerStatus::Settled
            } else {
                timer_now
            };
            Ok(ReportOutcome {
                delivery_status: DeliveryStatus::Succeeded,
                next_attempt_at_us: None,
                timer_status,
            })
        }
        ReportPlan::Retry { next_us, delay_ms } => {
            ctx.conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, lease_owner = NULL,
                            lease_expires_at = NULL, updated_at = ?3, last_error = ?4 WHERE id = ?1",
                )?
                .execute(params![d.id.as_bytes(), next_us, ctx.now_us, error])?;
            ctx.append_event(
                EventType::DeliveryRetrying,
                &d.tenant_id,
                d.timer_id,
                Some(d.id),
                json!({"attempt": d.attempt, "nextAttemptAt": format_us(next_us), "delayMs": delay_ms}),
            )?;
            Ok(ReportOutcome {
                delivery_status: DeliveryStatus::Pending,
                next_attempt_at_us: Some(next_us),
                timer_status: timer_now,
            })
        }
        ReportPlan::Kill { why } => {
            let timer_status = kill_delivery(ctx, &d, why, error, Some(timer_now))?;
            Ok(ReportOutcome {
                delivery_status: DeliveryStatus::Dead,
                next_attempt_at_us: None,
                timer_status,
            })
        }
    }
}

/// Checks, before any write, that a delivery may die and its timer (if readable) fail.
fn check_kill(d: &Delivery, timer_now: Option<TimerStatus>) -> StoreResult<()> {
    check_delivery_transition(d.id, d.status, DeliveryStatus::Dead)?;
    if let Some(ts) = timer_now.filter(|ts| *ts != TimerStatus::Failed) {
        check_timer_transition(d.timer_id, ts, TimerStatus::Failed)?;
    }
    Ok(())
}

/// Marks a delivery dead and its timer failed, with events. `check_kill` must have passed.
/// `timer_now` is None when the timer cannot be read: the delivery still dies.
fn kill_delivery(
    ctx: &mut WriteCtx<'_>,
    d: &Delivery,
    why: &str,
    error: Option<String>,
    timer_now: Option<TimerStatus>,
) -> StoreResult<TimerStatus> {
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = ?2, last_error = ?3 WHERE id = ?1",
        )?
        .execute(params![
            d.id.as_bytes(),
            ctx.now_us,
            error.as_deref().or(Some(why))
        ])?;
    ctx.append_event(
        EventType::DeliveryDead,
        &d.tenant_id,
        d.timer_id,
        Some(d.id),
        json!({"attempt": d.attempt, "reason": why, "error": error}),
    )?;
    match timer_now {
        Some(TimerStatus::Failed) | None => Ok(TimerStatus::Failed),
        Some(_) => {
            write_timer_status(
                ctx,
                d.timer_id,
                &d.tenant_id,
                TimerStatus::Failed,
                json!({"deliveryId": d.id.to_string(), "reason": why}),
            )?;
            Ok(TimerStatus::Failed)
        }
    }
}

pub fn rescue_expired_leases(ctx: &mut WriteCtx<'_>, limit: usize) -> StoreResult<usize> {
    let rows = {
        let mut stmt = ctx.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE status = 'in_flight' AND lease_expires_at < ?1
             ORDER BY lease_expires_at LIMIT ?2"
        ))?;
        stmt.query_map(params![ctx.now_us, limit as i64], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, delivery_from_row(row)))
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let n = rows.len();
    for (raw_id, d) in rows {
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                // Unreadable: set aside as dead so it cannot block the rescue of others.
                tracing::error!(error = %e, "an expired delivery is unreadable and is set aside as dead");
                ctx.conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL,
                                updated_at = ?2, last_error = ?3 WHERE id = ?1",
                    )?
                    .execute(params![raw_id, ctx.now_us, format!("unreadable delivery: {e}")])?;
                continue;
            }
        };
        let why = format!(
            "lease of {} expired during attempt {}",
            d.lease_owner.as_deref().unwrap_or("?"),
            d.attempt
        );
        if d.attempt >= d.max_attempts {
            let timer_now = match timer_status(ctx.conn, d.timer_id) {
                Ok(ts) => Some(ts),
                Err(StoreError::Corrupt(_)) => None,
                Err(other) => return Err(other),
            };
            if check_kill(&d, timer_now).is_err() {
                // A state the machine does not allow: leave the timer, still end the delivery.
                kill_delivery(ctx, &d, "retries exhausted", Some(why), None)?;
            } else {
                kill_delivery(ctx, &d, "retries exhausted", Some(why), timer_now)?;
            }
        } else {
            check_delivery_transition(d.id, d.status, DeliveryStatus::Pending)?;
            ctx.conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, lease_owner = NULL,
                            lease_expires_at = NULL, updated_at = ?2, last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![d.id.as_bytes(), ctx.now_us, why])?;
            ctx.append_event(
                EventType::DeliveryRetrying,
                &d.tenant_id,
                d.timer_id,
                Some(d.id),
                json!({"attempt": d.attempt, "nextAttemptAt": format_us(ctx.now_us), "reason": why}),
            )?;
        }
    }
    Ok(n)
}

pub fn next_delivery_due_us(conn: &Connection) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

pub fn list_deliveries(
    conn: &Connection,
    tenant_id: &str,
    timer_id: TimerId,
) -> StoreResult<Vec<DeliveryWithAttempts>> {
    if get_timer(conn, Some(tenant_id), timer_id)?.is_none() {
        return Err(StoreError::NotFound(Missing::Timer(timer_id)));
    }
    let deliveries = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE timer_id = ?1 ORDER BY occurrence, action_index"
        ))?
        .query_map(params![timer_id.as_bytes()], delivery_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT delivery_id, attempt, lease_owner, started_at, duration_us, outcome, http_status, exit_code, error,
                response_excerpt
           FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let mut out = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let attempts = stmt
            .query_map(params![d.id.as_bytes()], |row| {
                let outcome: String = row.get(5)?;
                Ok(AttemptRecord {
                    delivery_id: id_col(row, 0, DeliveryId::from_slice)?,
                    attempt: row.get(1)?,
                    lease_owner: row.get(2)?,
                    started_at_us: row.get(3)?,
                    duration_us: row.get(4)?,
                    outcome: outcome
                        .parse::<AttemptOutcome>()
                        .map_err(|e| corrupt(5, std::io::Error::other(e)))?,
                    http_status: row.get(6)?,
                    exit_code: row.get(7)?,
                    error: row.get(8)?,
                    response_excerpt: row.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(DeliveryWithAttempts {
            delivery: d,
            attempts,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Events

/// Most events one `read_events` call returns; larger limits are lowered to this.
pub const MAX_EVENTS_PER_READ: usize = 10_000;

pub fn read_events(conn: &Connection, q: &EventQuery) -> StoreResult<Vec<Event>> {
    let limit = q.limit.clamp(1, MAX_EVENTS_PER_READ);
    let mut out = Vec::new();
    let mut after = q.after_seq;
    // Filters other than the tenant are applied here, scanning in chunks until `limit`
    // matches or the end of the log: a caller that gets fewer than `limit` events knows it
    // has seen everything committed so far (event streams rely on this).
    let mut stmt = conn.prepare_cached(
        "SELECT seq, type, tenant_id, timer_id, delivery_id, occurred_at, data FROM events
          WHERE seq > ?1 AND (?2 IS NULL OR tenant_id = ?2) ORDER BY seq LIMIT ?3",
    )?;
    loop {
        let chunk = stmt
            .query_map(
                params![after, q.tenant_id, (limit * 4).min(10_000) as i64],
                event_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let exhausted = chunk.len() < (limit * 4).min(10_000);
        for e in chunk {
            after = e.seq;
            if q.matches(&e) {
                out.push(e);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(out)
}

pub fn latest_event_seq(conn: &Connection) -> StoreResult<i64> {
    // sqlite_sequence keeps the highest seq ever handed out, even after pruning.
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0))
}

pub fn prune_events(ctx: &mut WriteCtx<'_>, before_us: i64, limit: usize) -> StoreResult<usize> {
    // Only the head of the log is examined: events are appended in time order, so the
    // oldest ones are at the front and the statement touches at most `limit` rows.
    let n = ctx
        .conn
        .prepare_cached(
            "DELETE FROM events WHERE seq IN (
                SELECT seq FROM (SELECT seq, occurred_at FROM events ORDER BY seq LIMIT ?2)
                 WHERE occurred_at < ?1)",
        )?
        .execute(params![before_us, limit as i64])?;
    Ok(n)
}

pub fn stats(conn: &Connection) -> StoreResult<StoreStats> {
    let count = |sql: &str| -> StoreResult<u64> {
        let n: i64 = conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
        Ok(n as u64)
    };
    Ok(StoreStats {
        scheduled_timers: count("SELECT COUNT(*) FROM timers WHERE status = 'scheduled'")?,
        pending_deliveries: count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")?,
        in_flight_deliveries: count("SELECT COUNT(*) FROM deliveries WHERE status = 'in_flight'")?,
        latest_event_seq: latest_event_seq(conn)?,
    })
}

// ---------------------------------------------------------------------------------------
// Redrive, release, signing secrets

pub fn redrive_timer(ctx: &mut WriteCtx<'_>, tenant_id: &str, id: TimerId) -> StoreResult<Timer> {
    let timer = get_timer(ctx.conn, Some(tenant_id), id)?
        .ok_or(StoreError::NotFound(Missing::Timer(id)))?;
    let dead = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE timer_id = ?1 AND status = 'dead'"
        ))?
        .query_map(params![id.as_bytes()], delivery_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    if dead.is_empty() {
        return Err(StoreError::Conflict {
            status: timer.status,
        });
    }
    // Every check before the first write.
    for d in &dead {
        check_delivery_transition(d.id, d.status, DeliveryStatus::Pending)?;
    }
    let refire = timer.status == TimerStatus::Failed;
    if refire {
        check_timer_transition(id, timer.status, TimerStatus::Fired)?;
    }
    let budget = timer.action_bundle.retry_policy().max_attempts();
    for d in &dead {
        // The attempt number keeps growing (it fences reports); the budget grows with it.
        ctx.conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, max_attempts = ?3,
                        updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![d.id.as_bytes(), ctx.now_us, d.attempt + budget])?;
        ctx.append_event(
            EventType::DeliveryRetrying,
            tenant_id,
            id,
            Some(d.id),
            json!({"attempt": d.attempt, "nextAttemptAt": format_us(ctx.now_us), "reason": "redrive"}),
        )?;
    }
    if refire {
        ctx.conn
            .prepare_cached("UPDATE timers SET status = 'fired', settled_at = NULL, version = version + 1 WHERE id = ?1")?
            .execute(params![id.as_bytes()])?;
    }
    get_timer(ctx.conn, Some(tenant_id), id)?.ok_or(StoreError::NotFound(Missing::Timer(id)))
}

pub fn release_delivery(
    ctx: &mut WriteCtx<'_>,
    id: DeliveryId,
    owner: &str,
    attempt: u32,
    delay_us: i64,
) -> StoreResult<()> {
    let d = get_delivery(ctx.conn, id)?.ok_or(StoreError::NotFound(Missing::Delivery(id)))?;
    if d.status != DeliveryStatus::InFlight
        || d.lease_owner.as_deref() != Some(owner)
        || d.attempt != attempt
    {
        return Err(StoreError::Fenced { delivery_id: id });
    }
    check_delivery_transition(id, d.status, DeliveryStatus::Pending)?;
    // Not executed: the claim's attempt number is taken back, so `attempt` counts only
    // attempts that started and the budget is unchanged. Fencing still holds: the lease
    // owner carries its process's boot identity, and an owner that handed a delivery back
    // has no attempt of it left to report.
    ctx.conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, attempt = attempt - 1,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![
            id.as_bytes(),
            ctx.now_us.saturating_add(delay_us.max(0)),
            ctx.now_us
        ])?;
    Ok(())
}

pub fn ensure_signing_secret(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    candidate: String,
    grace_us: i64,
) -> StoreResult<Vec<String>> {
    let has_current: bool = ctx
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM signing_secrets WHERE tenant_id = ?1 AND retired_at IS NULL)")?
        .query_row(params![tenant_id], |r| r.get(0))?;
    if !has_current {
        ctx.conn
            .prepare_cached("INSERT INTO signing_secrets (tenant_id, secret, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)")?
            .execute(params![tenant_id, candidate, ctx.now_us])?;
    }
    signing_secrets_at(ctx.conn, tenant_id, ctx.now_us, grace_us)
}

/// The creation time of the tenant's current signing secret (0 when it has none): it grows
/// with every rotation.
pub fn signing_secrets_version(conn: &Connection, tenant_id: &str) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(MAX(created_at), 0) FROM signing_secrets
              WHERE tenant_id = ?1 AND retired_at IS NULL",
        )?
        .query_row(params![tenant_id], |r| r.get(0))?)
}

/// The current secret (never retired) first, then those retired within the grace period.
pub fn signing_secrets_at(
    conn: &Connection,
    tenant_id: &str,
    now_us: i64,
    grace_us: i64,
) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT secret FROM signing_secrets
          WHERE tenant_id = ?1 AND (retired_at IS NULL OR retired_at > ?2 - ?3)
          ORDER BY retired_at IS NOT NULL, created_at DESC",
    )?;
    let rows = stmt.query_map(params![tenant_id, now_us, grace_us], |r| {
        r.get::<_, String>(0)
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn rotate_signing_secret(
    ctx: &mut WriteCtx<'_>,
    tenant_id: &str,
    new_secret: String,
) -> StoreResult<()> {
    ctx.conn
        .prepare_cached("UPDATE signing_secrets SET retired_at = ?2 WHERE tenant_id = ?1 AND retired_at IS NULL")?
        .execute(params![tenant_id, ctx.now_us])?;
    ctx.conn
        .prepare_cached("INSERT INTO signing_secrets (tenant_id, secret, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)")?
        .execute(params![tenant_id, new_secret, ctx.now_us])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_column_count_matches_the_column_list() {
        assert_eq!(DELIVERY_COLS.split(',').count(), DELIVERY_COLUMNS);
    }
}
