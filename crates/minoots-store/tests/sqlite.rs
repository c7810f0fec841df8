//! The SQLite backend against the conformance suite, plus what only SQLite has:
//! reopening the same file, the directory lock, and migrations.

use std::sync::Arc;

use minoots_core::{Clock, ManualClock};
use minoots_store::conformance::{Harness, T0, timer};
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
        store: Arc::new(store),
        clock,
        guard: Box::new(dir),
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
    let clock = ManualClock::new(T0);
    let store = SqliteStore::open(
        SqliteConfig::new(dir.path()),
        clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    let h = Harness {
        store: Arc::new(store.clone()),
        clock: clock.clone(),
        guard: Box::new(()),
    };
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
