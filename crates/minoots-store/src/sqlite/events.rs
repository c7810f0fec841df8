//! The event log in the SQLite backend: reading it from a sequence number, its latest
//! sequence number, pruning its head, and the counts for metrics. Events are appended
//! by the writes themselves, through `WriteCtx::append_event`.

use minoots_core::Event;
use rusqlite::{Connection, OptionalExtension, params};

use super::WriteCtx;
use super::rows::event_from_row;
use crate::types::*;

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
        idle_cache_releases: 0,
    })
}
