//! The PostgreSQL backend against the whole conformance suite (with its writer held, so
//! that the group-commit cases share one transaction as they claim), and what only a
//! database server has: migrations applied once by racing opens, a newer schema refused,
//! durable acknowledgements, lost connections, the pool's bound, a read-only server, and
//! statement errors (which abort a whole transaction) inside a group commit, and a payment
//! applied while the billing grace sweep runs.
//! Several handles writing at once are `postgres_handles.rs`.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; see `pg/mod.rs`.

#[allow(dead_code)]
mod pg;

use std::sync::Arc;

use minoots_core::{Clock, ManualClock};
use minoots_store::conformance::{GroupWrite, Harness, T0, in_one_group, timer};
use minoots_store::{PostgresStore, Store, StoreError, Tenant, WriteTrouble};
use pg::{TestSchema, admin, database_url, harness, make, two_handles};

const SEC: i64 = 1_000_000;

minoots_store::conformance_tests!(make);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_apply_the_migrations_once() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (config, clock) = (schema.config(), clock.clone() as Arc<dyn Clock>);
            tokio::spawn(async move { PostgresStore::open(config, clock).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("every open succeeds"));
    }
    let client = admin(&url).await;
    let versions: Vec<(i32, i64)> = client
        .query(
            &format!(
                "SELECT version, count(*) FROM {}.minoots_schema_version GROUP BY version ORDER BY version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!versions.is_empty());
    for (i, (version, count)) in versions.iter().enumerate() {
        assert_eq!(*version, i as i32 + 1);
        assert_eq!(*count, 1, "migration {version} applied once");
    }
    // Every handle works on the one schema.
    let t = timer(
        &harness(&stores[0], &clock, Box::new(())),
        "acme",
        T0 + SEC,
        1,
    );
    stores[1].create_timer(t.clone()).await.unwrap();
    assert_eq!(stores[3].get_timer("acme", t.id).await.unwrap(), Some(t));
    for s in stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_minoots_is_refused() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    schema.open(&clock).await.close().await;
    admin(&url)
        .await
        .batch_execute(&format!(
            "INSERT INTO {}.minoots_schema_version (version) VALUES (999)",
            schema.name
        ))
        .await
        .unwrap();
    let err = PostgresStore::open(schema.config(), clock as Arc<dyn Clock>)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_committed_and_durable() {
    let (a, b, h) = or_skip!(two_handles().await);
    assert_eq!(a.synchronous_commit().await.unwrap(), "on");
    let t = timer(&h, "acme", T0 + SEC, 1);
    a.create_timer(t.clone()).await.unwrap();
    // Answered after COMMIT: another handle (another connection) sees it at once.
    assert_eq!(b.get_timer("acme", t.id).await.unwrap(), Some(t.clone()));
    let seq = b.latest_event_seq().await.unwrap();
    assert_eq!(seq, 1);
    a.close().await;
    b.close().await;
    let schema = h.guard.downcast_ref::<TestSchema>().unwrap();
    let again = schema.open(&h.clock).await;
    assert_eq!(again.get_timer("acme", t.id).await.unwrap(), Some(t));
    assert_eq!(again.latest_event_seq().await.unwrap(), seq);
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_close_are_refused_cleanly() {
    let h = or_skip!(make().await);
    h.store.close().await;
    let t = timer(&h, "acme", T0 + SEC, 1);
    assert_eq!(
        h.store.create_timer(t).await.unwrap_err(),
        StoreError::Closed
    );
    assert_eq!(
        h.store.latest_event_seq().await.unwrap_err(),
        StoreError::Closed
    );
}

/// A store whose sessions carry a name of their own in `pg_stat_activity`.
async fn named_store(max_connections: usize) -> Option<(PostgresStore, Harness, String, String)> {
    let url = database_url()?;
    let schema = TestSchema::new(&url);
    let name = format!("minoots_t{:08x}", fastrand::u32(..));
    let mut config = schema.config();
    config.application_name = name.clone();
    config.max_connections = max_connections;
    let clock = ManualClock::new(T0);
    let store = PostgresStore::open(config, clock.clone() as Arc<dyn Clock>)
        .await
        .expect("open");
    let h = harness(&store, &clock, Box::new(schema));
    Some((store, h, name, url))
}

async fn sessions_named(client: &tokio_postgres::Client, name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_replaced() {
    let (store, h, name, url) = or_skip!(named_store(4).await);
    let t = timer(&h, "acme", T0 + SEC, 1);
    store.create_timer(t.clone()).await.unwrap();
    let client = admin(&url).await;
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    while sessions_named(&client, &name).await > 0 {
        tokio::task::yield_now().await;
    }
    // The pooled connection is dead; the next read and write run on a new one.
    assert_eq!(store.get_timer("acme", t.id).await.unwrap(), Some(t));
    let u = timer(&h, "acme", T0 + 2 * SEC, 1);
    assert!(store.create_timer(u).await.unwrap().created);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_never_opens_more_connections_than_its_bound() {
    let (store, h, name, url) = or_skip!(named_store(2).await);
    let client = admin(&url).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        let t = timer(&h, "acme", T0 + (i + 1) * SEC, 1);
        tasks.push(tokio::spawn(async move {
            store.create_timer(t).await.unwrap();
            store.stats().await.unwrap();
        }));
    }
    let mut most = 0;
    loop {
        most = most.max(sessions_named(&client, &name).await);
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!((1..=2).contains(&most), "{most} sessions were open");
    assert_eq!(store.stats().await.unwrap().scheduled_timers, 60);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_refuses_writes_as_cannot_write() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let writable = schema.open(&clock).await;
    let mut config = schema.config();
    let sep = if url.contains('?') { '&' } else { '?' };
    config.url = format!("{url}{sep}options=-c%20default_transaction_read_only%3Don");
    let read_only = PostgresStore::open(config, clock.clone() as Arc<dyn Clock>)
        .await
        .expect("an up-to-date schema opens without writing");
    let h = harness(&read_only, &clock, Box::new(()));
    let t = timer(&h, "acme", T0 + SEC, 1);
    assert_eq!(
        read_only.create_timer(t.clone()).await.unwrap_err(),
        StoreError::CannotWrite(WriteTrouble::ReadOnly)
    );
    assert_eq!(read_only.get_timer("acme", t.id).await.unwrap(), None);
    writable.create_timer(t.clone()).await.unwrap();
    assert_eq!(read_only.get_timer("acme", t.id).await.unwrap(), Some(t));
    read_only.close().await;
    writable.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_failing_with_a_statement_error_run_alone_and_their_group_commits() {
    let h = or_skip!(make().await);
    // A statement error aborts a PostgreSQL transaction as a whole: a create of an id that
    // exists, and a tenant whose name PostgreSQL's text cannot hold (NUL, which the
    // kernel's validation refuses before the store), fail in a group of good writes.
    let taken = timer(&h, "acme", T0 + SEC, 1);
    h.store.create_timer(taken.clone()).await.unwrap();
    let (y, mut z) = (
        timer(&h, "beta", T0 + SEC, 1),
        timer(&h, "acme", T0 + SEC, 0),
    );
    z.idempotency_key = Some("z".into());
    let now = h.clock.now_us();
    let tenant = |id: &str, name: &str| Tenant {
        id: id.into(),
        name: name.into(),
        tier: "free".into(),
        created_at_us: now,
        updated_at_us: now,
    };
    let store = &h.store;
    let writes: Vec<GroupWrite<'_, Result<String, StoreError>>> = vec![
        Box::pin(async {
            store
                .create_timer(taken.clone())
                .await
                .map(|_| "dup".into())
        }),
        Box::pin(async { store.create_timer(y.clone()).await.map(|_| "y".into()) }),
        Box::pin(async {
            store
                .create_tenant(tenant("nul", "a\0b"))
                .await
                .map(|t| t.id)
        }),
        Box::pin(async {
            store
                .cancel_timer("acme", taken.id, None)
                .await
                .map(|t| t.status.to_string())
        }),
        Box::pin(async {
            store
                .create_tenant(tenant("good", "Good"))
                .await
                .map(|t| t.id)
        }),
        Box::pin(async { store.create_timer(z.clone()).await.map(|_| "z".into()) }),
    ];
    let results = in_one_group(&h, writes).await;
    assert!(
        matches!(&results[0], Err(StoreError::AlreadyExists(_))),
        "{results:?}"
    );
    assert!(
        matches!(&results[2], Err(StoreError::Unavailable(_))),
        "{results:?}"
    );
    assert_eq!(results[1], Ok("y".to_string()));
    assert_eq!(results[3], Ok("cancelled".to_string()));
    assert_eq!(results[4], Ok("good".to_string()));
    assert_eq!(results[5], Ok("z".to_string()));
    assert!(h.store.get_timer("beta", y.id).await.unwrap().is_some());
    assert!(h.store.get_timer("acme", z.id).await.unwrap().is_some());
    assert!(h.store.get_tenant("good").await.unwrap().is_some());
    assert_eq!(h.store.get_tenant("nul").await.unwrap(), None);
    h.store.close().await;
}

/// A payment applied while the grace sweep runs wins: the sweep, which found the tenant
/// past due, waits for the payment's transaction and then reads the account again,
/// instead of downgrading a tenant who has just paid. (SQLite's single writer cannot
/// interleave the two.) The payment is played by a transaction of the test's own that
/// locks the tenant and marks its account active, as an applied `invoice.paid` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_during_the_grace_sweep_keeps_the_paid_tier() {
    use minoots_core::billing::{BillingChange, BillingEvent, SubscriptionStatus};
    use minoots_store::BillingStore;
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let store = schema.open(&clock).await;
    let now = clock.now_us();
    store
        .create_tenant(Tenant {
            id: "acme".into(),
            name: "acme".into(),
            tier: "free".into(),
            created_at_us: now,
            updated_at_us: now,
        })
        .await
        .unwrap();
    let change = |status, created_s: i64| BillingChange {
        tenant_id: Some("acme".into()),
        customer_id: Some("cus_acme".into()),
        subscription_id: Some("sub_acme".into()),
        paid_tier: Some("pro".into()),
        status: Some(status),
        current_period_start_us: None,
        current_period_end_us: None,
        event_created_us: created_s * SEC,
        grace_us: 60 * SEC,
    };
    for (id, status, at) in [
        ("evt_1", SubscriptionStatus::Active, 1),
        ("evt_2", SubscriptionStatus::PastDue, 2),
    ] {
        store
            .record_billing_event(BillingEvent {
                id: id.into(),
                event_type: "customer.subscription.updated".into(),
                change: Some(change(status, at)),
            })
            .await
            .unwrap();
    }
    assert_eq!(store.get_tenant("acme").await.unwrap().unwrap().tier, "pro");
    clock.advance_us(61 * SEC);

    // The payment: the tenant locked, the account active, not committed yet.
    let (mut payer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tx = payer.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL search_path TO {}", schema.name))
        .await
        .unwrap();
    let payer_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tx.execute("SELECT id FROM tenants WHERE id = 'acme' FOR UPDATE", &[])
        .await
        .unwrap();
    tx.execute(
        "UPDATE billing_accounts SET subscription_status = 'active', grace_until = NULL
          WHERE tenant_id = 'acme'",
        &[],
    )
    .await
    .unwrap();

    let sweeper = store.clone();
    let sweep = tokio::spawn(async move { sweeper.expire_billing_grace(100).await });
    // Wait until the sweep is blocked behind the payment.
    let watcher = admin(&url).await;
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let blocked: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    &[&payer_pid],
                )
                .await
                .unwrap()
                .get(0);
            if blocked > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the sweep waits for the payment's transaction");
    tx.commit().await.unwrap();

    let swept = sweep.await.unwrap().unwrap();
    assert_eq!(swept.downgraded, 0);
    assert_eq!(
        store.get_tenant("acme").await.unwrap().unwrap().tier,
        "pro",
        "a tenant who paid during the sweep keeps the paid tier"
    );
    store.close().await;
}
