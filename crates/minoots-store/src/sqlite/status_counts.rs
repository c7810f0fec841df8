//! Each tenant's timers by status, kept by the writes themselves for the overview's counts
//! (`tenant_status_counts`, migration 8; scheduled timers are `tenant_pending`'s count).
//!
//! A write records each status change it makes as a [`StatusMove`]; the group commit adds
//! them up and moves each tenant's row once, just before the commit ([`flush_moves`]), so
//! a fire batch or a burst of reports pays one statement per tenant, not one per timer.
//! The index this replaces, `timers_tenant_status` (migration 7), was changed by every
//! create and every status change and cost 10.6 % of a store cycle's instructions
//! (docs/benchmarks.md).
//!
//! Moves are recorded only next to the change they count, after every refusal has been
//! decided (see `group_commit`), and dropped with the events when a write is refused, so
//! the counts change exactly when the timers do: in the same transaction, or not at all.
//! Nothing in the write path reads these counts (quotas read `tenant_pending`), so adding
//! them up at the end of the batch changes no decision.

use minoots_core::TimerStatus;
use rusqlite::{Connection, OptionalExtension, params};

use super::write_ctx::RunHeld;
use crate::types::StoreResult;

/// One timer of `tenant_id` that went from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMove {
    pub tenant_id: String,
    pub from: TimerStatus,
    pub to: TimerStatus,
}

/// The counted statuses' columns, in the order of [`Deltas`]; scheduled timers are not
/// among them (`tenant_pending` counts those, moved by each write as quotas need).
const COLUMNS: [TimerStatus; 4] = [
    TimerStatus::Fired,
    TimerStatus::Settled,
    TimerStatus::Failed,
    TimerStatus::Cancelled,
];

/// How a batch moves one tenant's row: fired, settled, failed, cancelled.
type Deltas = [i64; 4];

fn column(status: TimerStatus) -> Option<usize> {
    COLUMNS.iter().position(|s| *s == status)
}

/// Adds `moves` up per tenant: each tenant once, with the net change of each column.
fn net_per_tenant(moves: &mut [StatusMove]) -> Vec<(&str, Deltas)> {
    moves.sort_unstable_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    let mut out: Vec<(&str, Deltas)> = Vec::new();
    for m in moves.iter() {
        if out.last().is_none_or(|(t, _)| *t != m.tenant_id) {
            out.push((&m.tenant_id, [0; 4]));
        }
        let deltas = &mut out.last_mut().expect("pushed above").1;
        if let Some(i) = column(m.from) {
            deltas[i] -= 1;
        }
        if let Some(i) = column(m.to) {
            deltas[i] += 1;
        }
    }
    out.retain(|(_, d)| d.iter().any(|n| *n != 0));
    out
}

/// Moves the count rows by the batch's `moves` (which it empties), one statement per
/// tenant, in the batch's transaction.
pub(super) fn flush_moves(held: &dyn RunHeld, moves: &mut Vec<StatusMove>) -> rusqlite::Result<()> {
    for (tenant_id, d) in net_per_tenant(moves) {
        held.with(
            "INSERT INTO tenant_status_counts (tenant_id, fired, settled, failed, cancelled)
             VALUES (?1, MAX(?2, 0), MAX(?3, 0), MAX(?4, 0), MAX(?5, 0))
             ON CONFLICT (tenant_id) DO UPDATE SET
                 fired = MAX(fired + ?2, 0), settled = MAX(settled + ?3, 0),
                 failed = MAX(failed + ?4, 0), cancelled = MAX(cancelled + ?5, 0)",
            &mut |stmt| {
                stmt.execute(params![tenant_id, d[0], d[1], d[2], d[3]])?;
                Ok(())
            },
        )?;
    }
    moves.clear();
    Ok(())
}

/// The tenant's counts of scheduled, fired, settled, failed and cancelled timers, in the
/// order of `crate::dashboard::COUNTED_STATUSES`.
pub(super) fn read_counts(conn: &Connection, tenant_id: &str) -> StoreResult<[i64; 5]> {
    let scheduled = super::timers::pending_count(conn, tenant_id)?;
    let rest: Option<Deltas> = conn
        .prepare_cached(
            "SELECT fired, settled, failed, cancelled FROM tenant_status_counts WHERE tenant_id = ?1",
        )?
        .query_row(params![tenant_id], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
        })
        .optional()?;
    let [fired, settled, failed, cancelled] = rest.unwrap_or_default();
    Ok([scheduled, fired, settled, failed, cancelled])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use minoots_core::{Clock, ManualClock};

    use super::*;
    use crate::sqlite::schema::MIGRATIONS;
    use crate::{DashboardStore, SqliteConfig, SqliteStore, Store as _, TimerCounts};
    use TimerStatus::*;

    /// A store written by the version before these counts (schema 7): its timers are
    /// counted by migration 8, and the index it replaces is gone.
    #[tokio::test]
    async fn migration_8_counts_the_timers_a_schema_7_store_holds() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(super::super::DB_FILE)).unwrap();
            for sql in &MIGRATIONS[..7] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch("PRAGMA user_version = 7").unwrap();
            let statuses = [
                ("acme", "scheduled", 3),
                ("acme", "fired", 2),
                ("acme", "settled", 5),
                ("acme", "failed", 1),
                ("acme", "cancelled", 4),
                ("other", "settled", 2),
            ];
            let mut n = 0u8;
            for (tenant, status, count) in statuses {
                for _ in 0..count {
                    n += 1;
                    conn.execute(
                        "INSERT INTO timers (id, tenant_id, name, status, created_at, fire_at,
                                             metadata, labels, action_bundle, version)
                         VALUES (?1, ?2, 't', ?3, 0, 0, '{}', '{}', '{}', 1)",
                        params![[n; 16].as_slice(), tenant, status],
                    )
                    .unwrap();
                }
            }
            conn.execute(
                "INSERT INTO tenant_pending (tenant_id, pending) VALUES ('acme', 3)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(
            SqliteConfig::new(dir.path()),
            ManualClock::new(0) as Arc<dyn Clock>,
        )
        .unwrap();
        assert_eq!(
            store.timer_counts("acme", 1_000).await.unwrap(),
            TimerCounts {
                scheduled: 3,
                fired: 2,
                settled: 5,
                failed: 1,
                cancelled: 4,
                capped: false,
            }
        );
        let other = store.timer_counts("other", 1_000).await.unwrap();
        assert_eq!((other.scheduled, other.settled), (0, 2));
        store.close().await;
        let conn = Connection::open(dir.path().join(super::super::DB_FILE)).unwrap();
        let index: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE name = 'timers_tenant_status'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        assert_eq!(index, None, "migration 8 drops the index it replaces");
    }

    fn mv(tenant: &str, from: TimerStatus, to: TimerStatus) -> StatusMove {
        StatusMove {
            tenant_id: tenant.into(),
            from,
            to,
        }
    }

    #[test]
    fn moves_add_up_to_one_net_change_per_tenant() {
        let mut moves = vec![
            mv("b", Scheduled, Fired),
            mv("a", Scheduled, Fired),
            mv("b", Fired, Settled),
            mv("a", Scheduled, Cancelled),
            mv("b", Scheduled, Settled),
            mv("a", Fired, Failed),
            mv("a", Failed, Fired),
            // A redrive and its second end: fired, failed, fired again, settled.
            mv("c", Scheduled, Fired),
            mv("c", Fired, Failed),
            mv("c", Failed, Fired),
            mv("c", Fired, Settled),
        ];
        let net = net_per_tenant(&mut moves);
        assert_eq!(
            net,
            vec![
                ("a", [1, 0, 0, 1]),
                ("b", [0, 2, 0, 0]),
                ("c", [0, 1, 0, 0]),
            ]
        );
        // Changes that come back where they started move nothing.
        let mut balanced = vec![mv("d", Fired, Failed), mv("d", Failed, Fired)];
        assert!(net_per_tenant(&mut balanced).is_empty());
    }
}
