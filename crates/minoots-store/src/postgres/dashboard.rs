//! Overview reads in PostgreSQL ([`DashboardStore`]), as in SQLite: counts from the
//! `timers_tenant_status` index (an index-only scan where the visibility map allows), and
//! delivery activity from the tail of the event log, found by [`SeqSearch`] on the `seq`
//! primary key. With several kernels `occurred_at` may step back a little between
//! neighbouring events; an event older than the window is then skipped, never counted
//! in a wrong minute. Bounds and their reasons are in [`crate::dashboard`].

use async_trait::async_trait;

use super::PostgresStore;
use super::errors::TxResult;
use super::rows::col;
use super::tx::Db;
use crate::dashboard::{
    COUNTED_STATUSES, DashboardStore, MINUTE_US, MinuteRow, SeqSearch, activity_of_rows, set_count,
};
use crate::types::*;

async fn timer_counts(db: &mut Db<'_>, tenant_id: &str, cap: u64) -> TxResult<TimerCounts> {
    let limit = cap.min(i64::MAX as u64) as i64;
    let mut out = TimerCounts::default();
    for status in COUNTED_STATUSES {
        let row = db
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM timers
                  WHERE tenant_id = $1 AND status = $2 LIMIT $3) AS t",
                &[&tenant_id, &status.as_str(), &limit],
            )
            .await?;
        set_count(&mut out, status, col::<i64>(&row, 0)?, cap);
    }
    Ok(out)
}

/// The first event at or after `from_us`, by `seq`.
async fn first_seq(db: &mut Db<'_>, from_us: i64) -> TxResult<Option<i64>> {
    let row = db
        .query_one("SELECT min(seq), max(seq) FROM events", &[])
        .await?;
    let (Some(lo), Some(hi)) = (col::<Option<i64>>(&row, 0)?, col::<Option<i64>>(&row, 1)?) else {
        return Ok(None);
    };
    let mut search = SeqSearch::new(lo, hi, from_us);
    while let Some(mid) = search.probe() {
        let event = match db
            .query_opt(
                "SELECT seq, occurred_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1",
                &[&mid],
            )
            .await?
        {
            Some(r) => Some((col::<i64>(&r, 0)?, col::<i64>(&r, 1)?)),
            None => None,
        };
        search.observe(mid, event);
    }
    Ok(search.found())
}

async fn delivery_activity(
    db: &mut Db<'_>,
    tenant_id: &str,
    from_us: i64,
    minutes: u32,
    max_scanned: usize,
) -> TxResult<DeliveryActivity> {
    let first = first_seq(db, from_us).await?;
    let Some(first_seq) = first else {
        return Ok(activity_of_rows(from_us, minutes, None, max_scanned, []));
    };
    let limit = max_scanned.min(i64::MAX as usize) as i64;
    // The most recent `max_scanned` events of the window, of every tenant, by minute.
    let rows = db
        .query(
            "SELECT CASE WHEN occurred_at >= $2 THEN (occurred_at - $2) / $5 ELSE -1 END AS m,
                    count(*) FILTER (WHERE tenant_id = $3 AND type = 'delivery.attempted'
                                     AND data::jsonb ->> 'outcome' = 'succeeded'),
                    count(*) FILTER (WHERE tenant_id = $3 AND type = 'delivery.retrying'),
                    count(*) FILTER (WHERE tenant_id = $3 AND type = 'delivery.dead'),
                    min(seq), count(*)
               FROM (SELECT seq, type, tenant_id, occurred_at, data FROM events
                      WHERE seq >= $1 ORDER BY seq DESC LIMIT $4) AS e
              GROUP BY m",
            &[&first_seq, &from_us, &tenant_id, &limit, &MINUTE_US],
        )
        .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(MinuteRow {
                minute: col(r, 0)?,
                succeeded: col(r, 1)?,
                retried: col(r, 2)?,
                dead: col(r, 3)?,
                lowest_seq: col(r, 4)?,
                events: col(r, 5)?,
            })
        })
        .collect::<TxResult<Vec<_>>>()?;
    Ok(activity_of_rows(from_us, minutes, first, max_scanned, rows))
}

#[async_trait]
impl DashboardStore for PostgresStore {
    async fn timer_counts(&self, tenant_id: &str, cap: u64) -> StoreResult<TimerCounts> {
        let tenant_id = tenant_id.to_string();
        self.read(move |db| {
            let tenant_id = tenant_id.clone();
            Box::pin(async move { timer_counts(db, &tenant_id, cap).await })
        })
        .await
    }

    async fn delivery_activity(
        &self,
        tenant_id: &str,
        from_us: i64,
        minutes: u32,
        max_scanned: usize,
    ) -> StoreResult<DeliveryActivity> {
        let tenant_id = tenant_id.to_string();
        self.read(move |db| {
            let tenant_id = tenant_id.clone();
            Box::pin(async move {
                delivery_activity(db, &tenant_id, from_us, minutes, max_scanned).await
            })
        })
        .await
    }
}
