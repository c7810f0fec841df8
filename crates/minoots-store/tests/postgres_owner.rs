//! One kernel per PostgreSQL database (or schema): a kernel's handle owns it alone. A
//! second kernel is refused while the first holds the session lock; a kernel whose lock
//! another kernel took over writes nothing (its fencing epoch is old); a lock whose
//! connection dropped is taken again when nobody took over.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; see `pg/mod.rs`.

#[allow(dead_code)]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_core::{Clock, ManualClock};
use minoots_store::conformance::{T0, timer};
use minoots_store::{PostgresConfig, PostgresStore, Store, StoreError, StoreResult};
use pg::{TestSchema, admin, database_url, harness};

const SEC: i64 = 1_000_000;
/// The first key of the kernel's advisory lock ("MNTK").
const KERNEL_LOCK_CLASS: i64 = 0x4d4e_544b;

fn kernel_config(schema: &TestSchema, name: &str) -> PostgresConfig {
    let mut c = schema.config();
    c.kernel = Some(name.into());
    c
}

async fn open(config: PostgresConfig, clock: &Arc<ManualClock>) -> StoreResult<PostgresStore> {
    PostgresStore::open(config, clock.clone() as Arc<dyn Clock>).await
}

/// The server process of the session holding the kernel lock of `schema`, if any.
async fn lock_holder(client: &tokio_postgres::Client, schema: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_locks
              WHERE locktype = 'advisory' AND granted
                AND classid::bigint = $1
                AND objid::bigint = (hashtext($2)::bigint & 4294967295)
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&KERNEL_LOCK_CLASS, &schema],
        )
        .await
        .expect("read pg_locks")
        .map(|r| r.get(0))
}

/// Ends the session holding the kernel lock of `schema` (as a network cut or a server
/// restart would); returns its process id.
async fn drop_lock_session(client: &tokio_postgres::Client, schema: &str) -> i32 {
    let pid = lock_holder(client, schema)
        .await
        .expect("a kernel holds the lock");
    let ended: bool = client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate")
        .get(0);
    assert!(ended);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock_holder(client, schema).await == Some(pid) {
        assert!(Instant::now() < deadline, "the session {pid} ends");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_kernel_is_refused_naming_the_first_until_it_closes() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let first = open(kernel_config(&schema, "kernel-a"), &clock)
        .await
        .expect("the first kernel opens");
    let err = open(kernel_config(&schema, "kernel-b"), &clock)
        .await
        .err()
        .expect("a second kernel on the same schema is refused");
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("kernel-a") && text.contains("one kernel"),
        "{text}"
    );
    // Handles that are not kernels (tools, tests) still open beside it, and a kernel
    // of another schema of the same database is not in its way.
    let tool = open(schema.config(), &clock).await.expect("a tool opens");
    let other = TestSchema::new(&url);
    let elsewhere = open(kernel_config(&other, "kernel-c"), &clock)
        .await
        .expect("a kernel of another schema opens");
    elsewhere.close().await;
    tool.close().await;
    // Once the first kernel closed, the next one takes over at once.
    first.close().await;
    let second = open(kernel_config(&schema, "kernel-b"), &clock)
        .await
        .expect("the second kernel opens once the first closed");
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_whose_database_was_taken_over_writes_nothing() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let client = admin(&url).await;
    let old = open(kernel_config(&schema, "kernel-old"), &clock)
        .await
        .expect("open");
    let h = harness(&old, &clock, Box::new(()));
    let before = timer(&h, "t1", T0 + 60 * SEC, 1);
    old.create_timer(before.clone())
        .await
        .expect("the owner writes");

    // Its lock's session ends while the process lives on; a new kernel takes over before
    // the old one's watcher takes the lock again (if the watcher wins, try again).
    let mut new = None;
    for _ in 0..20 {
        drop_lock_session(&client, &schema.name).await;
        match open(kernel_config(&schema, "kernel-new"), &clock).await {
            Ok(store) => {
                new = Some(store);
                break;
            }
            Err(StoreError::Locked(_)) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let new = new.expect("the new kernel takes the database");

    let late = timer(&h, "t1", T0 + 61 * SEC, 1);
    let err = old
        .create_timer(late.clone())
        .await
        .expect_err("the old kernel's write is refused");
    assert!(matches!(err, StoreError::Superseded(_)), "{err:?}");
    assert!(err.to_string().contains("kernel-new"), "{err}");
    let err = old
        .cancel_timer("t1", before.id, None)
        .await
        .expect_err("every write of the old kernel is refused");
    assert!(matches!(err, StoreError::Superseded(_)), "{err:?}");
    // Nothing of the refused writes is stored; the new owner writes and sees the rest.
    assert_eq!(new.get_timer("t1", late.id).await.unwrap(), None);
    let kept = new.get_timer("t1", before.id).await.unwrap().expect("kept");
    assert_eq!(kept.status, minoots_core::TimerStatus::Scheduled);
    new.create_timer(timer(&h, "t1", T0 + 62 * SEC, 1))
        .await
        .expect("the new owner writes");
    new.close().await;
    old.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_takes_its_lock_again_when_its_session_drops() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let client = admin(&url).await;
    let kernel = open(kernel_config(&schema, "kernel-a"), &clock)
        .await
        .expect("open");
    let gone = drop_lock_session(&client, &schema.name).await;
    // The watcher looks every second; give it a few.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match lock_holder(&client, &schema.name).await {
            Some(pid) if pid != gone => break,
            _ => {
                assert!(Instant::now() < deadline, "the kernel takes its lock again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let err = open(kernel_config(&schema, "kernel-b"), &clock)
        .await
        .err()
        .expect("a second kernel is refused again");
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
    let h = harness(&kernel, &clock, Box::new(()));
    kernel
        .create_timer(timer(&h, "t1", T0 + 60 * SEC, 1))
        .await
        .expect("its epoch is still the database's: it writes");
    kernel.close().await;
}
