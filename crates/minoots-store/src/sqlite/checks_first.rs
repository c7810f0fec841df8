//! Every refusal of a store write is decided before the write's first change: run directly
//! in a transaction, a refused operation leaves SQLite's change counter where it was. The
//! writer relies on it: a write that fails after a change fails its whole group commit
//! (see `group_commit.rs`), so these tests keep a refusal from ever costing other callers.

use minoots_core::{Timer, TimerId, TimerRequest, TimerStatus};
use rusqlite::Connection;

use super::WriteCtx;
use super::timers::create_timer;
use super::write_ctx::{BatchLog, HeldStatements};
use crate::types::*;

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600_000_000;
const SEC: i64 = 1_000_000;

fn store() -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    super::migrate(&mut conn).unwrap();
    conn
}

fn keyed_timer(tenant: &str, now_us: i64) -> Timer {
    let request = TimerRequest::from_json(br#"{"name": "t", "duration": "1h"}"#).unwrap();
    let mut t = request
        .validate(tenant, now_us)
        .unwrap()
        .into_timer(TimerId::new_v7(), now_us);
    t.idempotency_key = Some("k".into());
    t
}

/// Runs `f` at `now_us` in a transaction that is committed; returns its result and
/// whether it changed anything.
fn run<T>(
    conn: &mut Connection,
    now_us: i64,
    f: impl FnOnce(&mut WriteCtx<'_>) -> StoreResult<T>,
) -> (StoreResult<T>, bool) {
    let tx = conn.transaction().unwrap();
    let before = tx.total_changes();
    let mut log = BatchLog::default();
    let out = f(&mut WriteCtx::new(&tx, now_us, &mut log));
    let changed = tx.total_changes() != before;
    log.flush_counts(
        &HeldStatements::new(&tx),
        now_us,
        minoots_core::billing::DEFAULT_METER_BUCKET_US,
    )
    .unwrap();
    tx.commit().unwrap();
    (out, changed)
}

/// A key created at T0 and expired by the time of the second create.
fn expired_key(conn: &mut Connection) -> i64 {
    let first = keyed_timer("acme", T0);
    let (out, _) = run(conn, T0, |ctx| {
        create_timer(ctx, first, &CreateOptions::default())
    });
    assert!(out.unwrap().created);
    T0 + IDEMPOTENCY_KEY_TTL_US + SEC
}

#[test]
fn a_create_over_quota_whose_key_expired_changes_nothing() {
    let mut conn = store();
    let later = expired_key(&mut conn);
    let options = CreateOptions {
        max_pending: Some(1),
        ..CreateOptions::default()
    };
    let (out, changed) = run(&mut conn, later, |ctx| {
        create_timer(ctx, keyed_timer("acme", later), &options)
    });
    assert_eq!(
        out.unwrap_err(),
        StoreError::QuotaExceeded {
            quota: Quota::PendingTimers,
            limit: 1
        }
    );
    assert!(!changed, "the refusal came after a write");
}

#[test]
fn a_create_breaking_an_invariant_whose_key_expired_changes_nothing() {
    let mut conn = store();
    let later = expired_key(&mut conn);
    let mut broken = keyed_timer("acme", later);
    broken.status = TimerStatus::Fired;
    let (out, changed) = run(&mut conn, later, |ctx| {
        create_timer(ctx, broken, &CreateOptions::default())
    });
    assert!(matches!(out, Err(StoreError::Corrupt(_))), "{out:?}");
    assert!(!changed, "the refusal came after a write");
}

#[test]
fn a_create_whose_key_expired_moves_the_key() {
    let mut conn = store();
    let later = expired_key(&mut conn);
    let (out, changed) = run(&mut conn, later, |ctx| {
        create_timer(ctx, keyed_timer("acme", later), &CreateOptions::default())
    });
    assert!(out.unwrap().created);
    assert!(changed);
    let keyed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM timers WHERE idempotency_key = 'k'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keyed, 1, "only the new timer holds the key");
}
