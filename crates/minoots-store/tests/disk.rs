//! Disk trouble on the real SQLite backend: a full disk (the database reaching its page
//! cap, which SQLite reports as SQLITE_FULL exactly as for a full file system) and a
//! read-only one (SQLITE_READONLY on every write). Writes are refused with
//! `StoreError::CannotWrite` naming the reason, reads go on, queued writes are all answered,
//! nothing refused is half-stored, and writes succeed again once the disk recovers.

use std::sync::Arc;
use std::time::Duration;

use minoots_core::{Clock, EventType, ManualClock, TimerStatus};
use minoots_store::conformance::{Harness, T0, timer};
use minoots_store::{
    EventQuery, FireOutcome, FireRequest, SqliteConfig, SqliteStore, Store, StoreError, TimerQuery,
    WriteTrouble,
};

const SEC: i64 = 1_000_000;
/// The most timers written before the capped database must be full.
const MAX_FILL: usize = 5_000;
/// How long a write may take to be answered, even when refused.
const ANSWER: Duration = Duration::from_secs(10);

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> (SqliteStore, Harness) {
    let store = SqliteStore::open(SqliteConfig::new(dir), clock.clone() as Arc<dyn Clock>)
        .expect("open the store");
    let h = Harness {
        store: Arc::new(store.clone()),
        clock: clock.clone(),
        guard: Box::new(()),
        hold_writes: None,
    };
    (store, h)
}

fn all_events() -> EventQuery {
    EventQuery {
        after_seq: 0,
        limit: 10_000,
        ..Default::default()
    }
}

fn list(tenant: &str) -> TimerQuery {
    TimerQuery {
        tenant_id: tenant.into(),
        status: None,
        label: None,
        limit: 500,
        after: None,
        ..Default::default()
    }
}

/// Checks the event log: sequence numbers 1, 2, 3, … without a gap or a repeat.
async fn assert_contiguous_log(store: &SqliteStore) -> usize {
    let events = store.read_events(all_events()).await.unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "event log has a gap or repeat at {i}");
    }
    events.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_without_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (store, h) = open(dir.path(), &clock);
    let mut kept = Vec::new();
    for i in 0..5 {
        let t = timer(&h, "acme", T0 + (i + 1) * SEC, (i % 2) as usize);
        store.create_timer(t.clone()).await.unwrap();
        kept.push(t);
    }

    // Cap the file at its current size, then write until the disk is full.
    let cap = store.set_max_db_pages(Some(0)).await.unwrap();
    assert!(cap > 0, "the cap is the current size, {cap} pages");
    let mut refused = None;
    for _ in 0..MAX_FILL {
        let t = timer(&h, "acme", T0 + 3_600 * SEC, 1);
        match store.create_timer(t.clone()).await {
            Ok(_) => kept.push(t),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the capped database filled up");
    assert_eq!(refused, StoreError::CannotWrite(WriteTrouble::DiskFull));
    assert_eq!(
        refused.to_string(),
        "the store cannot write: disk full",
        "a clear reason, not a generic error"
    );
    let events_when_full = assert_contiguous_log(&store).await;

    // Every write queued while the disk is full is answered, and each is refused for the
    // disk: group commits that fail do not stall or poison the writer.
    let mut calls = Vec::new();
    for _ in 0..64 {
        let s = store.clone();
        let t = timer(&h, "acme", T0 + 3_600 * SEC, 1);
        calls.push(tokio::spawn(async move { s.create_timer(t).await }));
    }
    for c in calls {
        let answer = tokio::time::timeout(ANSWER, c)
            .await
            .expect("a queued write is answered while the disk is full")
            .unwrap();
        assert_eq!(
            answer.err(),
            Some(StoreError::CannotWrite(WriteTrouble::DiskFull))
        );
    }

    // Reads go on and see exactly what was acknowledged.
    let first = store.get_timer("acme", kept[0].id).await.unwrap();
    assert_eq!(first.as_ref(), Some(&kept[0]));
    let listed = store.list_timers(list("acme")).await.unwrap();
    assert_eq!(listed.timers.len(), kept.len().min(500));
    assert_eq!(
        assert_contiguous_log(&store).await,
        events_when_full,
        "refused writes appended no event"
    );
    assert_eq!(store.integrity_check().await.unwrap(), "ok");

    // The disk recovers: the same write succeeds, and the log goes on without a gap.
    store.set_max_db_pages(None).await.unwrap();
    let t = timer(&h, "acme", T0 + 3_600 * SEC, 1);
    store.create_timer(t.clone()).await.unwrap();
    kept.push(t);
    assert_eq!(assert_contiguous_log(&store).await, events_when_full + 1);
    assert_eq!(store.integrity_check().await.unwrap(), "ok");

    // After a restart: everything acknowledged is there, nothing refused is.
    store.close().await;
    drop(h);
    let (again, _h) = open(dir.path(), &clock);
    let usage = again
        .tenant_usage("acme", minoots_store::utc_day(T0))
        .await
        .unwrap();
    assert_eq!(usage.pending as usize, kept.len(), "pending = acknowledged");
    for t in &kept {
        assert!(again.get_timer("acme", t.id).await.unwrap().is_some());
    }
    assert_eq!(again.integrity_check().await.unwrap(), "ok");
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_disk_refuses_every_write_and_the_timer_fires_once_after_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (store, h) = open(dir.path(), &clock);
    let due = timer(&h, "acme", T0 + SEC, 1);
    let other = timer(&h, "acme", T0 + 2 * SEC, 0);
    store.create_timer(due.clone()).await.unwrap();
    store.create_timer(other.clone()).await.unwrap();
    let before = assert_contiguous_log(&store).await;

    store.set_writer_read_only(true).await.unwrap();
    let read_only = StoreError::CannotWrite(WriteTrouble::ReadOnly);
    clock.advance_us(2 * SEC);
    let fire = vec![FireRequest {
        timer_id: due.id,
        fired_at_us: clock.now_us(),
        refuse_early: false,
    }];
    assert_eq!(
        store.fire_timers(fire.clone()).await.err(),
        Some(read_only.clone())
    );
    assert_eq!(
        store.cancel_timer("acme", other.id, None).await.err(),
        Some(read_only.clone())
    );
    assert_eq!(
        store
            .create_timer(timer(&h, "acme", T0 + 9 * SEC, 0))
            .await
            .err(),
        Some(read_only.clone())
    );
    assert_eq!(
        store.claim_deliveries("w1", 30 * SEC, 8).await.err(),
        Some(read_only.clone())
    );
    assert_eq!(
        read_only.to_string(),
        "the store cannot write: the disk is read-only"
    );

    // Reads are untouched: both timers are still scheduled, no event was appended.
    for t in [&due, &other] {
        let got = store.get_timer("acme", t.id).await.unwrap().unwrap();
        assert_eq!(got.status, TimerStatus::Scheduled);
    }
    assert_eq!(assert_contiguous_log(&store).await, before);

    // Recovery: the fire that was refused now happens, once.
    store.set_writer_read_only(false).await.unwrap();
    let out = store.fire_timers(fire.clone()).await.unwrap();
    assert!(
        matches!(out[0], FireOutcome::Fired { deliveries: 1, .. }),
        "{out:?}"
    );
    let again = store.fire_timers(fire).await.unwrap();
    assert!(
        !matches!(again[0], FireOutcome::Fired { .. }),
        "a second fire is a no-op: {again:?}"
    );
    let fired = store
        .read_events(EventQuery {
            types: vec![EventType::TimerFired],
            ..all_events()
        })
        .await
        .unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].timer_id, due.id);
    let cancelled = store.cancel_timer("acme", other.id, None).await.unwrap();
    assert_eq!(cancelled.status, TimerStatus::Cancelled);
    assert_contiguous_log(&store).await;
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    store.close().await;
}

#[tokio::test]
async fn the_page_cap_is_an_operator_setting_applied_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // Far below what the schema alone needs: the cap is the file's size after migrations,
    // so the store opens, reads, and refuses to grow.
    let config = SqliteConfig {
        max_db_pages: Some(1),
        ..SqliteConfig::new(dir.path())
    };
    let store = SqliteStore::open(config, clock.clone() as Arc<dyn Clock>).unwrap();
    let h = Harness {
        store: Arc::new(store.clone()),
        clock: clock.clone(),
        guard: Box::new(()),
        hold_writes: None,
    };
    let mut refused = None;
    for _ in 0..MAX_FILL {
        if let Err(e) = store.create_timer(timer(&h, "acme", T0 + SEC, 1)).await {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(StoreError::CannotWrite(WriteTrouble::DiskFull))
    );
    assert!(store.list_timers(list("acme")).await.is_ok());
    store.close().await;
}
