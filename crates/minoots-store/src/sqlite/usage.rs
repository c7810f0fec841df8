//! Each tenant's usage counters — timers created per UTC day (`tenant_daily`) and timers
//! scheduled now (`tenant_pending`) — moved once per tenant and group commit instead of
//! once per write: a batch adds up its creates, cancels and fires here ([`UsageDeltas`]),
//! and the group commit writes the sums just before its commit (`flush`). The two upserts
//! per create (and one per cancel) this replaces were 3.4 % of a store cycle's
//! instructions (docs/benchmarks.md).
//!
//! The quotas read these counters inside the batch, so a read of them in the writer adds
//! what the batch has not written yet ([`UsageDeltas::in_batch`]): a batch of creates
//! meets the same quota as the same creates one by one. A write records its usage only
//! after its first change, so a refused write (which changes nothing, see
//! `group_commit`) records none, and a write that fails after a change fails its whole
//! group, these sums with it.

use std::collections::HashMap;

use rusqlite::params;

use super::write_ctx::RunHeld;

/// One tenant's changes in a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct TenantDelta {
    /// Change of the count of scheduled timers.
    pending: i64,
    /// Timers created, per UTC day (a batch has one time, so almost always one day).
    created: Vec<(i64, i64)>,
    /// Metered units, per meter (`minoots_core::billing::METERS`), in the batch's bucket.
    metered: Vec<(&'static str, i64)>,
}

/// The usage changes of a batch's writes, per tenant.
#[derive(Debug, Default)]
pub struct UsageDeltas {
    by_tenant: HashMap<String, TenantDelta>,
}

impl UsageDeltas {
    fn tenant(&mut self, tenant_id: &str) -> &mut TenantDelta {
        if !self.by_tenant.contains_key(tenant_id) {
            self.by_tenant
                .insert(tenant_id.to_string(), TenantDelta::default());
        }
        self.by_tenant.get_mut(tenant_id).expect("inserted above")
    }

    /// The tenant's count of scheduled timers moves by `delta`.
    pub fn add_pending(&mut self, tenant_id: &str, delta: i64) {
        self.tenant(tenant_id).pending += delta;
    }

    /// The tenant created a timer on UTC day `day`.
    pub fn add_created(&mut self, tenant_id: &str, day: i64) {
        let created = &mut self.tenant(tenant_id).created;
        match created.iter_mut().find(|(d, _)| *d == day) {
            Some((_, n)) => *n += 1,
            None => created.push((day, 1)),
        }
    }

    /// The tenant used one unit of `meter` (in the batch's metering bucket).
    pub fn add_metered(&mut self, tenant_id: &str, meter: &'static str) {
        let metered = &mut self.tenant(tenant_id).metered;
        match metered.iter_mut().find(|(m, _)| *m == meter) {
            Some((_, n)) => *n += 1,
            None => metered.push((meter, 1)),
        }
    }

    /// What this batch has not written yet of the tenant's usage: timers created on
    /// `day`, and the change of its scheduled timers.
    pub fn in_batch(&self, tenant_id: &str, day: i64) -> (i64, i64) {
        self.by_tenant.get(tenant_id).map_or((0, 0), |d| {
            let created = d.created.iter().find(|(x, _)| *x == day).map_or(0, |c| c.1);
            (created, d.pending)
        })
    }

    /// Writes the sums, one statement per counter row changed, in the batch's
    /// transaction; empties them. Metered units go to the bucket of `now_us` (the batch's
    /// time) of `meter_bucket_us`.
    pub(super) fn flush(
        &mut self,
        held: &dyn RunHeld,
        now_us: i64,
        meter_bucket_us: i64,
    ) -> rusqlite::Result<()> {
        let (bucket_start, bucket_end) =
            minoots_core::billing::meter_bucket(now_us, meter_bucket_us);
        for (tenant_id, d) in self.by_tenant.drain() {
            if d.pending != 0 {
                held.with(
                    "INSERT INTO tenant_pending (tenant_id, pending) VALUES (?1, MAX(?2, 0))
                     ON CONFLICT (tenant_id) DO UPDATE SET pending = MAX(pending + ?2, 0)",
                    &mut |stmt| stmt.execute(params![tenant_id, d.pending]).map(drop),
                )?;
            }
            for (day, n) in d.created {
                held.with(
                    "INSERT INTO tenant_daily (tenant_id, day, created) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant_id, day) DO UPDATE SET created = created + ?3",
                    &mut |stmt| stmt.execute(params![tenant_id, day, n]).map(drop),
                )?;
            }
            for (meter, n) in d.metered {
                held.with(
                    "INSERT INTO meter_usage (tenant_id, meter, bucket_start, bucket_end, value)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id, meter, bucket_start) DO UPDATE SET value = value + ?5",
                    &mut |stmt| {
                        stmt.execute(params![tenant_id, meter, bucket_start, bucket_end, n])
                            .map(drop)
                    },
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_adds_up_each_tenant_and_day() {
        let mut u = UsageDeltas::default();
        for _ in 0..3 {
            u.add_created("acme", 20_000);
            u.add_pending("acme", 1);
        }
        u.add_created("acme", 20_001);
        u.add_pending("acme", -2);
        u.add_pending("other", -1);
        u.add_metered("acme", "m");
        u.add_metered("acme", "m");
        assert_eq!(u.by_tenant["acme"].metered, vec![("m", 2)]);
        assert_eq!(u.in_batch("acme", 20_000), (3, 1));
        assert_eq!(u.in_batch("acme", 20_001), (1, 1));
        assert_eq!(u.in_batch("acme", 19_999), (0, 1));
        assert_eq!(u.in_batch("other", 20_000), (0, -1));
        assert_eq!(u.in_batch("nobody", 20_000), (0, 0));
    }
}
