//! Overview reads in SQLite ([`DashboardStore`]), each on one reader connection: counts
//! from the rows the writes keep per tenant (`status_counts.rs`: two rows read), and
//! delivery activity from the tail of the event log, found by [`SeqSearch`] on the
//! `seq` primary key. Bounds and their reasons are in [`crate::dashboard`].

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, status_counts};
use crate::dashboard::{
    COUNTED_STATUSES, DashboardStore, MINUTE_US, MinuteRow, SeqSearch, activity_of_rows, set_count,
};
use crate::types::*;

fn timer_counts(conn: &Connection, tenant_id: &str, cap: u64) -> StoreResult<TimerCounts> {
    let counts = status_counts::read_counts(conn, tenant_id)?;
    let mut out = TimerCounts::default();
    for (status, n) in COUNTED_STATUSES.into_iter().zip(counts) {
        set_count(&mut out, status, n, cap);
    }
    Ok(out)
}

/// The first event at or after `from_us`, by `seq`.
fn first_seq(conn: &Connection, from_us: i64) -> StoreResult<Option<i64>> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT MIN(seq), MAX(seq) FROM events")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(None);
    };
    let mut probe = conn.prepare_cached(
        "SELECT seq, occurred_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    let mut search = SeqSearch::new(lo, hi, from_us);
    while let Some(mid) = search.probe() {
        let event = probe
            .query_row(params![mid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        search.observe(mid, event);
    }
    Ok(search.found())
}

fn delivery_activity(
    conn: &Connection,
    tenant_id: &str,
    from_us: i64,
    minutes: u32,
    max_scanned: usize,
) -> StoreResult<DeliveryActivity> {
    let first = first_seq(conn, from_us)?;
    let Some(first_seq) = first else {
        return Ok(activity_of_rows(from_us, minutes, None, max_scanned, []));
    };
    // The most recent `max_scanned` events of the window, of every tenant, grouped by
    // minute; `json_extract` runs only on the tenant's `delivery.attempted` events.
    let mut stmt = conn.prepare_cached(
        "SELECT CASE WHEN occurred_at >= ?2 THEN (occurred_at - ?2) / ?5 ELSE -1 END AS m,
                IFNULL(SUM(tenant_id = ?3 AND type = 'delivery.attempted'
                           AND json_extract(data, '$.outcome') = 'succeeded'), 0),
                IFNULL(SUM(tenant_id = ?3 AND type = 'delivery.retrying'), 0),
                IFNULL(SUM(tenant_id = ?3 AND type = 'delivery.dead'), 0),
                MIN(seq), COUNT(*)
           FROM (SELECT seq, type, tenant_id, occurred_at, data FROM events
                  WHERE seq >= ?1 ORDER BY seq DESC LIMIT ?4)
          GROUP BY m",
    )?;
    let rows = stmt
        .query_map(
            params![first_seq, from_us, tenant_id, max_scanned as i64, MINUTE_US],
            |r| {
                Ok(MinuteRow {
                    minute: r.get(0)?,
                    succeeded: r.get(1)?,
                    retried: r.get(2)?,
                    dead: r.get(3)?,
                    lowest_seq: r.get(4)?,
                    events: r.get(5)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(activity_of_rows(from_us, minutes, first, max_scanned, rows))
}

#[async_trait]
impl DashboardStore for SqliteStore {
    async fn timer_counts(&self, tenant_id: &str, cap: u64) -> StoreResult<TimerCounts> {
        let tenant_id = tenant_id.to_string();
        self.read(move |c| timer_counts(c, &tenant_id, cap)).await
    }

    async fn delivery_activity(
        &self,
        tenant_id: &str,
        from_us: i64,
        minutes: u32,
        max_scanned: usize,
    ) -> StoreResult<DeliveryActivity> {
        let tenant_id = tenant_id.to_string();
        self.read(move |c| delivery_activity(c, &tenant_id, from_us, minutes, max_scanned))
            .await
    }
}
