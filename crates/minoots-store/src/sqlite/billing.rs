//! Billing in SQLite ([`BillingStore`]): a Stripe event is one group-committed write that
//! inserts its id (a known id stops there) and applies the planned account and tier; the
//! usage counts are written by the batch that causes them (`usage.rs`). This module
//! reads and writes rows only: tiers, grace and readiness are the core's decisions.

use async_trait::async_trait;
use minoots_core::billing::{
    self, BillingAccount, BillingApplied, BillingEvent, BillingState, GraceSweep, METERS,
    MeterUsage, SubscriptionStatus,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, WriteCtx};
use crate::billing::{
    BillingStore, MAX_GRACE_EXPIRIES_PER_SWEEP, MAX_METER_ROWS_PER_READ, effect_name,
};
use crate::types::*;

const ACCOUNT_COLS: &str = "tenant_id, customer_id, subscription_id, paid_tier, subscription_status, \
     current_period_start, current_period_end, grace_until, state_at, updated_at";

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<BillingAccount> {
    let status: Option<String> = r.get(4)?;
    let status = status
        .map(|s| s.parse::<SubscriptionStatus>())
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
        })?;
    Ok(BillingAccount {
        tenant_id: r.get(0)?,
        customer_id: r.get(1)?,
        subscription_id: r.get(2)?,
        paid_tier: r.get(3)?,
        status,
        current_period_start_us: r.get(5)?,
        current_period_end_us: r.get(6)?,
        grace_until_us: r.get(7)?,
        state_at_us: r.get(8)?,
        updated_at_us: r.get(9)?,
    })
}

fn account(conn: &Connection, column: &str, value: &str) -> StoreResult<Option<BillingAccount>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLS} FROM billing_accounts WHERE {column} = ?1"
        ))?
        .query_row(params![value], account_from_row)
        .optional()?)
}

fn tenant_exists(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
        .query_row(params![id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn record(ctx: &mut WriteCtx<'_>, event: &BillingEvent) -> StoreResult<BillingApplied> {
    let known = ctx
        .conn
        .prepare_cached("SELECT 1 FROM billing_events WHERE event_id = ?1")?
        .query_row(params![event.id], |_| Ok(()))
        .optional()?;
    if known.is_some() {
        return Ok(BillingApplied::Duplicate);
    }
    let applied = match &event.change {
        Some(change) => apply(ctx, change)?,
        None => BillingApplied::Ignored,
    };
    ctx.conn
        .prepare_cached(
            "INSERT INTO billing_events (event_id, type, effect, received_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![event.id, event.event_type, effect_name(applied), ctx.now_us])?;
    Ok(applied)
}

fn apply(ctx: &mut WriteCtx<'_>, change: &billing::BillingChange) -> StoreResult<BillingApplied> {
    let conn = ctx.conn;
    let named = match &change.tenant_id {
        Some(t) if tenant_exists(conn, t)? => Some((t.clone(), account(conn, "tenant_id", t)?)),
        _ => None,
    };
    let found = match (named, &change.customer_id) {
        (Some(found), _) => Some(found),
        (None, Some(c)) => account(conn, "customer_id", c)?.map(|a| (a.tenant_id.clone(), Some(a))),
        (None, None) => None,
    };
    let Some((tenant_id, current)) = found else {
        return Ok(BillingApplied::Ignored);
    };
    let Some(next) = billing::plan_account(current.as_ref(), &tenant_id, change, ctx.now_us) else {
        return Ok(BillingApplied::Ignored);
    };
    // Another tenant's link to this customer (a customer moved between tenants) goes.
    if let Some(c) = &next.customer_id {
        conn.prepare_cached(
            "UPDATE billing_accounts SET customer_id = NULL WHERE customer_id = ?1 AND tenant_id != ?2",
        )?
        .execute(params![c, tenant_id])?;
    }
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO billing_accounts ({ACCOUNT_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        next.tenant_id,
        next.customer_id,
        next.subscription_id,
        next.paid_tier,
        next.status.map(|s| s.as_str()),
        next.current_period_start_us,
        next.current_period_end_us,
        next.grace_until_us,
        next.state_at_us,
        next.updated_at_us,
    ])?;
    set_tier(ctx, &tenant_id, billing::account_tier(&next, ctx.now_us))?;
    Ok(BillingApplied::Applied)
}

fn set_tier(ctx: &WriteCtx<'_>, tenant_id: &str, tier: &str) -> StoreResult<()> {
    ctx.conn
        .prepare_cached(
            "UPDATE tenants SET tier = ?2, updated_at = ?3 WHERE id = ?1 AND tier != ?2",
        )?
        .execute(params![tenant_id, tier, ctx.now_us])?;
    Ok(())
}

fn state(conn: &Connection, tenant_id: &str, default_since_us: i64) -> StoreResult<BillingState> {
    let account = account(conn, "tenant_id", tenant_id)?;
    let since = account
        .as_ref()
        .and_then(|a| a.current_period_start_us)
        .unwrap_or(default_since_us);
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(SUM(value), 0) FROM meter_usage
          WHERE tenant_id = ?1 AND meter = ?2 AND bucket_start >= ?3",
    )?;
    let mut usage = Vec::with_capacity(METERS.len());
    for meter in METERS {
        let n: i64 = stmt.query_row(params![tenant_id, meter, since], |r| r.get(0))?;
        usage.push((meter.to_string(), n));
    }
    Ok(BillingState {
        account,
        usage,
        usage_since_us: since,
    })
}

fn sweep(ctx: &mut WriteCtx<'_>, limit: usize) -> StoreResult<GraceSweep> {
    let limit = limit.min(MAX_GRACE_EXPIRIES_PER_SWEEP) as i64;
    let ended: Vec<String> = ctx
        .conn
        .prepare_cached(
            "SELECT a.tenant_id FROM billing_accounts a JOIN tenants t ON t.id = a.tenant_id
              WHERE a.grace_until <= ?1 AND a.subscription_status = 'past_due' AND t.tier != ?2
              ORDER BY a.grace_until LIMIT ?3",
        )?
        .query_map(params![ctx.now_us, billing::FREE_TIER, limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for t in &ended {
        set_tier(ctx, t, billing::FREE_TIER)?;
    }
    let next: Option<i64> = ctx
        .conn
        .prepare_cached(
            "SELECT MIN(grace_until) FROM billing_accounts
              WHERE grace_until > ?1 AND subscription_status = 'past_due'",
        )?
        .query_row(params![ctx.now_us], |r| r.get(0))?;
    Ok(GraceSweep {
        downgraded: ended.len() as u64,
        next_grace_end_us: next,
    })
}

fn ready(conn: &Connection, ended_before_us: i64, limit: usize) -> StoreResult<Vec<MeterUsage>> {
    let limit = limit.min(MAX_METER_ROWS_PER_READ) as i64;
    let rows = conn
        .prepare_cached(
            "SELECT u.tenant_id, u.meter, u.bucket_start, u.bucket_end, u.value, a.customer_id
               FROM meter_usage u LEFT JOIN billing_accounts a ON a.tenant_id = u.tenant_id
              WHERE u.sent_at IS NULL AND u.bucket_end <= ?1
              ORDER BY u.bucket_end, u.tenant_id, u.meter LIMIT ?2",
        )?
        .query_map(params![ended_before_us, limit], |r| {
            Ok(MeterUsage {
                tenant_id: r.get(0)?,
                meter: r.get(1)?,
                bucket_start_us: r.get(2)?,
                bucket_end_us: r.get(3)?,
                value: r.get(4)?,
                customer_id: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn mark(ctx: &mut WriteCtx<'_>, rows: &[(String, String, i64)]) -> StoreResult<usize> {
    let mut stmt = ctx.conn.prepare_cached(
        "UPDATE meter_usage SET sent_at = ?4
          WHERE tenant_id = ?1 AND meter = ?2 AND bucket_start = ?3 AND sent_at IS NULL",
    )?;
    let mut n = 0;
    for (tenant, meter, start) in rows {
        n += stmt.execute(params![tenant, meter, start, ctx.now_us])?;
    }
    Ok(n)
}

#[async_trait]
impl BillingStore for SqliteStore {
    async fn record_billing_event(&self, event: BillingEvent) -> StoreResult<BillingApplied> {
        self.write(move |ctx| record(ctx, &event)).await
    }

    async fn billing_state(
        &self,
        tenant_id: &str,
        default_since_us: i64,
    ) -> StoreResult<BillingState> {
        let tenant_id = tenant_id.to_string();
        self.read(move |c| state(c, &tenant_id, default_since_us))
            .await
    }

    async fn expire_billing_grace(&self, limit: usize) -> StoreResult<GraceSweep> {
        self.write(move |ctx| sweep(ctx, limit)).await
    }

    async fn meter_usage_ready(
        &self,
        ended_before_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<MeterUsage>> {
        self.read(move |c| ready(c, ended_before_us, limit)).await
    }

    async fn mark_meter_sent(&self, rows: Vec<(String, String, i64)>) -> StoreResult<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.write(move |ctx| mark(ctx, &rows)).await
    }

    async fn prune_meter_usage(&self, ended_before_us: i64, limit: usize) -> StoreResult<usize> {
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached(
                    "DELETE FROM meter_usage WHERE (tenant_id, meter, bucket_start) IN (
                         SELECT tenant_id, meter, bucket_start FROM meter_usage
                          WHERE bucket_end < ?1 LIMIT ?2)",
                )?
                .execute(params![ended_before_us, limit as i64])?)
        })
        .await
    }
}
