//! Billing in PostgreSQL ([`BillingStore`]). A Stripe event's id is inserted first: a
//! second delivery of the event, through any kernel, waits on that row and then finds it
//! (a duplicate); the tenant's row is locked before its account is read, so two events of
//! one tenant apply one after the other. Usage counts are added by the create and report
//! transactions through [`add_metered`], one statement for every tenant of a group. This
//! module reads and writes rows only: tiers, grace and readiness are the core's decisions.

use async_trait::async_trait;
use minoots_core::billing::{
    self, BillingAccount, BillingApplied, BillingChange, BillingEvent, BillingState, GraceSweep,
    METERS, MeterUsage,
};
use tokio_postgres::Row;

use super::PostgresStore;
use super::errors::{TxError, TxResult};
use super::rows::col;
use super::tx::{Db, WriteTx};
use crate::billing::{
    BillingStore, MAX_GRACE_EXPIRIES_PER_SWEEP, MAX_METER_ROWS_PER_READ, effect_name,
};
use crate::types::*;

/// Adds `counts` ((tenant, units)) of `meter` to the bucket of the write's time, in one
/// statement.
pub(super) async fn add_metered(
    w: &mut WriteTx<'_>,
    meter: &str,
    counts: &[(&str, i64)],
) -> TxResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let (start, end) = billing::meter_bucket(w.now_us, w.meter_bucket_us);
    let (tenants, values): (Vec<&str>, Vec<i64>) = counts.iter().copied().unzip();
    w.db()
        .execute(
            "INSERT INTO meter_usage AS m (tenant_id, meter, bucket_start, bucket_end, value)
             SELECT u.t, $3, $4, $5, u.v FROM unnest($1::text[], $2::int8[]) AS u(t, v)
             ON CONFLICT (tenant_id, meter, bucket_start) DO UPDATE SET value = m.value + EXCLUDED.value",
            &[&tenants, &values, &meter, &start, &end],
        )
        .await?;
    Ok(())
}

fn account_from_row(r: &Row) -> TxResult<BillingAccount> {
    let status: Option<String> = col(r, 4)?;
    let status = status
        .map(|s| s.parse())
        .transpose()
        .map_err(|e: String| TxError::Store(StoreError::Corrupt(e)))?;
    Ok(BillingAccount {
        tenant_id: col(r, 0)?,
        customer_id: col(r, 1)?,
        subscription_id: col(r, 2)?,
        paid_tier: col(r, 3)?,
        status,
        current_period_start_us: col(r, 5)?,
        current_period_end_us: col(r, 6)?,
        grace_until_us: col(r, 7)?,
        state_at_us: col(r, 8)?,
        updated_at_us: col(r, 9)?,
    })
}

macro_rules! account_cols {
    () => {
        "tenant_id, customer_id, subscription_id, paid_tier, subscription_status, current_period_start, \
         current_period_end, grace_until, state_at, updated_at"
    };
}

async fn account_of(db: &mut Db<'_>, tenant_id: &str) -> TxResult<Option<BillingAccount>> {
    db.query_opt(
        concat!(
            "SELECT ",
            account_cols!(),
            " FROM billing_accounts WHERE tenant_id = $1"
        ),
        &[&tenant_id],
    )
    .await?
    .map(|r| account_from_row(&r))
    .transpose()
}

async fn tenant_of_customer(db: &mut Db<'_>, customer_id: &str) -> TxResult<Option<String>> {
    db.query_opt(
        "SELECT tenant_id FROM billing_accounts WHERE customer_id = $1",
        &[&customer_id],
    )
    .await?
    .map(|r| col(&r, 0))
    .transpose()
}

/// Locks the tenant's row; `false` when there is no such tenant.
async fn lock_tenant(db: &mut Db<'_>, tenant_id: &str) -> TxResult<bool> {
    Ok(db
        .query_opt(
            "SELECT id FROM tenants WHERE id = $1 FOR UPDATE",
            &[&tenant_id],
        )
        .await?
        .is_some())
}

async fn record(w: &mut WriteTx<'_>, event: &BillingEvent) -> TxResult<BillingApplied> {
    let now_us = w.now_us;
    let inserted = w
        .db()
        .query_opt(
            "INSERT INTO billing_events (event_id, type, effect, received_at)
             VALUES ($1, $2, 'ignored', $3) ON CONFLICT DO NOTHING RETURNING event_id",
            &[&event.id, &event.event_type, &now_us],
        )
        .await?;
    if inserted.is_none() {
        return Ok(BillingApplied::Duplicate);
    }
    let applied = match &event.change {
        Some(change) => apply(w, change).await?,
        None => BillingApplied::Ignored,
    };
    if applied == BillingApplied::Applied {
        w.db()
            .execute(
                "UPDATE billing_events SET effect = $2 WHERE event_id = $1",
                &[&event.id, &effect_name(applied)],
            )
            .await?;
    }
    Ok(applied)
}

async fn apply(w: &mut WriteTx<'_>, change: &BillingChange) -> TxResult<BillingApplied> {
    let mut tenant = None;
    if let Some(t) = &change.tenant_id
        && lock_tenant(&mut w.db(), t).await?
    {
        tenant = Some(t.clone());
    }
    if tenant.is_none()
        && let Some(c) = &change.customer_id
        && let Some(t) = tenant_of_customer(&mut w.db(), c).await?
        && lock_tenant(&mut w.db(), &t).await?
    {
        tenant = Some(t);
    }
    let Some(tenant_id) = tenant else {
        return Ok(BillingApplied::Ignored);
    };
    let current = account_of(&mut w.db(), &tenant_id).await?;
    let now_us = w.now_us;
    let Some(next) = billing::plan_account(current.as_ref(), &tenant_id, change, now_us) else {
        return Ok(BillingApplied::Ignored);
    };
    if let Some(c) = &next.customer_id {
        w.db()
            .execute(
                "UPDATE billing_accounts SET customer_id = NULL
                  WHERE customer_id = $1 AND tenant_id <> $2",
                &[c, &tenant_id],
            )
            .await?;
    }
    let status = next.status.map(|s| s.as_str());
    w.db()
        .execute(
            concat!(
                "INSERT INTO billing_accounts (",
                account_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (tenant_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
                    subscription_id = EXCLUDED.subscription_id, paid_tier = EXCLUDED.paid_tier,
                    subscription_status = EXCLUDED.subscription_status, current_period_start = EXCLUDED.current_period_start,
                    current_period_end = EXCLUDED.current_period_end,
                    grace_until = EXCLUDED.grace_until, state_at = EXCLUDED.state_at,
                    updated_at = EXCLUDED.updated_at"
            ),
            &[
                &next.tenant_id,
                &next.customer_id,
                &next.subscription_id,
                &next.paid_tier,
                &status,
                &next.current_period_start_us,
                &next.current_period_end_us,
                &next.grace_until_us,
                &next.state_at_us,
                &next.updated_at_us,
            ],
        )
        .await?;
    set_tier(w, &tenant_id, billing::account_tier(&next, now_us)).await?;
    Ok(BillingApplied::Applied)
}

/// Gives the tenant `tier`; true when that changed it.
async fn set_tier(w: &mut WriteTx<'_>, tenant_id: &str, tier: &str) -> TxResult<bool> {
    let now_us = w.now_us;
    let n = w
        .db()
        .execute(
            "UPDATE tenants SET tier = $2, updated_at = $3 WHERE id = $1 AND tier <> $2",
            &[&tenant_id, &tier, &now_us],
        )
        .await?;
    if n > 0 {
        // Every kernel drops its cached keys, so the new tier's limits apply at once.
        w.announce_key_change();
    }
    Ok(n > 0)
}

async fn state(db: &mut Db<'_>, tenant_id: &str, default_since_us: i64) -> TxResult<BillingState> {
    let account = account_of(db, tenant_id).await?;
    let since = account
        .as_ref()
        .and_then(|a| a.current_period_start_us)
        .unwrap_or(default_since_us);
    let rows = db
        .query(
            "SELECT meter, SUM(value)::int8 FROM meter_usage
              WHERE tenant_id = $1 AND bucket_start >= $2 GROUP BY meter",
            &[&tenant_id, &since],
        )
        .await?;
    let mut usage: Vec<(String, i64)> = METERS.iter().map(|m| (m.to_string(), 0)).collect();
    for r in &rows {
        let meter: String = col(r, 0)?;
        if let Some(slot) = usage.iter_mut().find(|(m, _)| *m == meter) {
            slot.1 = col(r, 1)?;
        }
    }
    Ok(BillingState {
        account,
        usage,
        usage_since_us: since,
    })
}

async fn sweep(w: &mut WriteTx<'_>, limit: usize) -> TxResult<GraceSweep> {
    let limit = limit.min(MAX_GRACE_EXPIRIES_PER_SWEEP) as i64;
    let now_us = w.now_us;
    let candidates = w
        .db()
        .query(
            "SELECT a.tenant_id FROM billing_accounts a JOIN tenants x ON x.id = a.tenant_id
              WHERE a.grace_until <= $1 AND a.subscription_status = 'past_due' AND x.tier <> $2
              ORDER BY a.grace_until LIMIT $3",
            &[&now_us, &billing::FREE_TIER, &limit],
        )
        .await?;
    let mut downgraded = 0;
    for row in &candidates {
        let tenant_id: String = col(row, 0)?;
        // Locked as every billing write locks it, then read again by a new statement: an
        // event applied meanwhile (the payment that ends the grace period) is seen and
        // wins, where one statement would have judged by the account as it was.
        if !lock_tenant(&mut w.db(), &tenant_id).await? {
            continue;
        }
        let Some(account) = account_of(&mut w.db(), &tenant_id).await? else {
            continue;
        };
        if billing::account_tier(&account, now_us) == billing::FREE_TIER
            && set_tier(w, &tenant_id, billing::FREE_TIER).await?
        {
            downgraded += 1;
        }
    }
    let next: Option<i64> = col(
        &w.db()
            .query_one(
                "SELECT MIN(grace_until) FROM billing_accounts
                  WHERE grace_until > $1 AND subscription_status = 'past_due'",
                &[&now_us],
            )
            .await?,
        0,
    )?;
    Ok(GraceSweep {
        downgraded,
        next_grace_end_us: next,
    })
}

async fn ready(db: &mut Db<'_>, ended_before_us: i64, limit: usize) -> TxResult<Vec<MeterUsage>> {
    let limit = limit.min(MAX_METER_ROWS_PER_READ) as i64;
    let rows = db
        .query(
            "SELECT u.tenant_id, u.meter, u.bucket_start, u.bucket_end, u.value, a.customer_id
               FROM meter_usage u LEFT JOIN billing_accounts a ON a.tenant_id = u.tenant_id
              WHERE u.sent_at IS NULL AND u.bucket_end <= $1
              ORDER BY u.bucket_end, u.tenant_id, u.meter LIMIT $2",
            &[&ended_before_us, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(MeterUsage {
                tenant_id: col(r, 0)?,
                meter: col(r, 1)?,
                bucket_start_us: col(r, 2)?,
                bucket_end_us: col(r, 3)?,
                value: col(r, 4)?,
                customer_id: col(r, 5)?,
            })
        })
        .collect()
}

async fn mark(w: &mut WriteTx<'_>, rows: &[(String, String, i64)]) -> TxResult<usize> {
    let tenants: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let meters: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let starts: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let now_us = w.now_us;
    let n = w
        .db()
        .execute(
            "UPDATE meter_usage AS m SET sent_at = $4
               FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(t, meter, start)
              WHERE m.tenant_id = u.t AND m.meter = u.meter AND m.bucket_start = u.start
                AND m.sent_at IS NULL",
            &[&tenants, &meters, &starts, &now_us],
        )
        .await?;
    Ok(n as usize)
}

#[async_trait]
impl BillingStore for PostgresStore {
    async fn record_billing_event(&self, event: BillingEvent) -> StoreResult<BillingApplied> {
        self.write(move |w| {
            let event = event.clone();
            Box::pin(async move { record(w, &event).await })
        })
        .await
    }

    async fn billing_state(
        &self,
        tenant_id: &str,
        default_since_us: i64,
    ) -> StoreResult<BillingState> {
        let tenant_id = tenant_id.to_string();
        self.read(move |db| {
            let tenant_id = tenant_id.clone();
            Box::pin(async move { state(db, &tenant_id, default_since_us).await })
        })
        .await
    }

    async fn expire_billing_grace(&self, limit: usize) -> StoreResult<GraceSweep> {
        self.write(move |w| Box::pin(async move { sweep(w, limit).await }))
            .await
    }

    async fn meter_usage_ready(
        &self,
        ended_before_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<MeterUsage>> {
        self.read(move |db| Box::pin(async move { ready(db, ended_before_us, limit).await }))
            .await
    }

    async fn mark_meter_sent(&self, rows: Vec<(String, String, i64)>) -> StoreResult<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.write(move |w| {
            let rows = rows.clone();
            Box::pin(async move { mark(w, &rows).await })
        })
        .await
    }

    async fn prune_meter_usage(&self, ended_before_us: i64, limit: usize) -> StoreResult<usize> {
        let limit = limit as i64;
        self.write(move |w| {
            Box::pin(async move {
                let n = w
                    .db()
                    .execute(
                        "DELETE FROM meter_usage WHERE (tenant_id, meter, bucket_start) IN (
                             SELECT tenant_id, meter, bucket_start FROM meter_usage
                              WHERE bucket_end < $1 LIMIT $2)",
                        &[&ended_before_us, &limit],
                    )
                    .await?;
                Ok(n as usize)
            })
        })
        .await
    }
}
