//! The SQLite backend against the conformance suite, plus what only SQLite has:
//! reopening the same file, the directory lock, and migrations.

use std::sync::Arc;

use minoots_core::{Clock, ManualClock};
use minoots_store::conformance::{Harness, T0, sqlite_at_t0, timer};
use minoots_store::{SqliteConfig, SqliteStore, Store, StoreError};

async fn make() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let store = SqliteStore::open(
        SqliteConfig::new(dir.path()),
        clock.clone() as Arc<dyn Clock>,
    )
    .expect("open");
    Some(Harness {
        store: Arc::new(store.clone()),
        clock,
        guard: Box::new(dir),
        hold_writes: Some(Arc::new(store)),
    })
}

minoots_store::conformance_tests!(make);

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = ManualClock::new(T0);
    let a = SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone())
        .err()
        .expect("locked");
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
    a.close().await;
    let b = SqliteStore::open(SqliteConfig::new(dir.path()), clock).unwrap();
    b.close().await;
}

#[tokio::test]
async fn acknowledged_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (store, h) = sqlite_at_t0(dir.path());
    let clock = h.clock.clone();
    let t = timer(&h, "acme", T0 + 1_000_000, 1);
    store.create_timer(t.clone()).await.unwrap();
    let seq = store.latest_event_seq().await.unwrap();
    store.close().await;
    drop(h);
    let again = SqliteStore::open(SqliteConfig::new(dir.path()), clock as Arc<dyn Clock>).unwrap();
    assert_eq!(again.get_timer("acme", t.id).await.unwrap(), Some(t));
    assert_eq!(again.latest_event_seq().await.unwrap(), seq);
    again.close().await;
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite_conn(dir.path());
        c.execute_batch("PRAGMA user_version = 999;").unwrap();
    }
    let err = SqliteStore::open(
        SqliteConfig::new(dir.path()),
        ManualClock::new(T0) as Arc<dyn Clock>,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("newer"), "{err}");
}

fn rusqlite_conn(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("minoots.db")).unwrap()
}

#[tokio::test]
async fn writes_after_close_are_refused_cleanly() {
    let h = make().await.unwrap();
    h.store.close().await;
    let t = timer(&h, "acme", T0 + 1_000_000, 1);
    assert_eq!(
        h.store.create_timer(t).await.unwrap_err(),
        StoreError::Closed
    );
}

#[tokio::test]
async fn an_unreadable_timer_does_not_hold_back_the_others() {
    use minoots_store::{FireOutcome, FireRequest};
    let h = make().await.unwrap();
    let dir = h
        .guard
        .downcast_ref::<tempfile::TempDir>()
        .unwrap()
        .path()
        .to_path_buf();
    let a = h
        .store
        .create_timer(timer(&h, "acme", T0 + 1_000_000, 1))
        .await
        .unwrap()
        .timer;
    let bad = h
        .store
        .create_timer(timer(&h, "acme", T0 + 1_000_000, 1))
        .await
        .unwrap()
        .timer;
    let c = h
        .store
        .create_timer(timer(&h, "acme", T0 + 1_000_000, 1))
        .await
        .unwrap()
        .timer;
    // Damage one row behind the store's back, as a bug or a bad upgrade could.
    rusqlite_conn(&dir)
        .execute(
            "UPDATE timers SET action_bundle = '{not json' WHERE id = ?1",
            [bad.id.as_bytes().to_vec()],
        )
        .unwrap();
    h.clock.advance_us(1_000_000);
    let now = h.clock.now_us();
    let fires = [a.id, bad.id, c.id]
        .map(|timer_id| FireRequest {
            timer_id,
            fired_at_us: now,
            refuse_early: false,
        })
        .to_vec();
    let out = h.store.fire_timers(fires).await.unwrap();
    assert!(matches!(out[0], FireOutcome::Fired { .. }), "{out:?}");
    assert!(matches!(out[1], FireOutcome::Failed { .. }), "{out:?}");
    assert!(matches!(out[2], FireOutcome::Fired { .. }), "{out:?}");
    // The good timers' deliveries are handed out.
    let claimed = h
        .store
        .claim_deliveries("w1", 30_000_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);

    // A delivery whose timer became unreadable after firing is set aside, not handed out,
    // and does not block the ones behind it.
    let d = h
        .store
        .create_timer(timer(&h, "acme", now, 1))
        .await
        .unwrap()
        .timer;
    let e = h
        .store
        .create_timer(timer(&h, "acme", now, 1))
        .await
        .unwrap()
        .timer;
    h.store
        .fire_timers(vec![
            FireRequest {
                timer_id: d.id,
                fired_at_us: now,
                refuse_early: false,
            },
            FireRequest {
                timer_id: e.id,
                fired_at_us: now,
                refuse_early: false,
            },
        ])
        .await
        .unwrap();
    rusqlite_conn(&dir)
        .execute(
            "UPDATE timers SET labels = 'oops' WHERE id = ?1",
            [d.id.as_bytes().to_vec()],
        )
        .unwrap();
    let claimed = h
        .store
        .claim_deliveries("w1", 30_000_000, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|l| l.timer.id).collect::<Vec<_>>(),
        vec![e.id]
    );
    let dead: i64 = rusqlite_conn(&dir)
        .query_row("SELECT COUNT(*) FROM deliveries WHERE status = 'dead' AND last_error LIKE '%unreadable%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dead, 1);
    h.store.close().await;
}

#[tokio::test]
async fn a_report_that_cannot_be_applied_writes_nothing() {
    use minoots_core::{AttemptOutcome, DeliveryStatus};
    use minoots_store::{AttemptReport, FireRequest};
    let h = make().await.unwrap();
    let dir = h
        .guard
        .downcast_ref::<tempfile::TempDir>()
        .unwrap()
        .path()
        .to_path_buf();
    let t = h
        .store
        .create_timer(timer(&h, "acme", T0, 1))
        .await
        .unwrap()
        .timer;
    h.store
        .fire_timers(vec![FireRequest {
            timer_id: t.id,
            fired_at_us: T0,
            refuse_early: false,
        }])
        .await
        .unwrap();
    let d = h
        .store
        .claim_deliveries("w1", 30_000_000, 10)
        .await
        .unwrap()
        .remove(0);
    rusqlite_conn(&dir)
        .execute(
            "UPDATE timers SET action_bundle = 'garbage' WHERE id = ?1",
            [t.id.as_bytes().to_vec()],
        )
        .unwrap();
    let report = AttemptReport {
        delivery_id: d.delivery.id,
        lease_owner: "w1".into(),
        attempt: 1,
        started_at_us: T0,
        duration_us: 1,
        outcome: AttemptOutcome::Retryable,
        retry_after_ms: None,
        http_status: Some(503),
        exit_code: None,
        error: None,
        response_excerpt: None,
    };
    // The retry needs the (unreadable) policy: refused before anything is written, and a
    // concurrent, unrelated write in the same group commit still succeeds.
    let other = h.store.create_timer(timer(&h, "acme", T0 + 5_000_000, 1));
    let (refused, other) = tokio::join!(h.store.report_attempt(report), other);
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );
    assert!(other.unwrap().created);
    let ds = h.store.get_delivery(d.delivery.id).await.unwrap().unwrap();
    assert_eq!(ds.status, DeliveryStatus::InFlight, "unchanged");
    let attempts: i64 = rusqlite_conn(&dir)
        .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(attempts, 0, "no attempt row was left behind");
    h.store.close().await;
}
