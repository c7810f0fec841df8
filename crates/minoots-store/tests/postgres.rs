//! The PostgreSQL backend against the conformance cases it implements so far, and what
//! only a shared database has: several store handles on one database at once (quotas,
//! idempotency keys, the event order, migrations), lost connections and the pool's bound.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//! without it every test prints "skipped: no database" and passes. Each test works in a
//! schema of its own, dropped when the test ends.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minoots_core::{Clock, ManualClock, TimerStatus};
use minoots_store::conformance::{Harness, T0, timer};
use minoots_store::{
    CreateOptions, EventQuery, IDEMPOTENCY_KEY_TTL_US, PostgresConfig, PostgresStore, Quota, Store,
    StoreError, Tenant, TimerQuery, WriteTrouble, utc_day,
};

const SEC: i64 = 1_000_000;

fn database_url() -> Option<String> {
    std::env::var("MINOOTS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// A schema of one test's own; it and everything in it is dropped with this value.
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    /// A fresh name; the schema itself is created by the first store opened on it.
    fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            name: format!("minoots_test_{:016x}", fastrand::u64(..)),
        }
    }

    fn config(&self) -> PostgresConfig {
        let mut c = PostgresConfig::new(&self.url);
        c.schema = Some(self.name.clone());
        c
    }

    async fn open(&self, clock: &Arc<ManualClock>) -> PostgresStore {
        PostgresStore::open(self.config(), clock.clone() as Arc<dyn Clock>)
            .await
            .expect("open the store")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Best effort, on a runtime of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let client = admin(&url).await;
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await;
            });
        })
        .join();
    }
}

/// A harness around `store`; `guard` lives as long as it.
fn harness(
    store: &PostgresStore,
    clock: &Arc<ManualClock>,
    guard: Box<dyn std::any::Any + Send + Sync>,
) -> Harness {
    Harness {
        store: Arc::new(store.clone()),
        clock: clock.clone(),
        guard,
        hold_writes: None,
    }
}

async fn make() -> Option<Harness> {
    let schema = TestSchema::new(&database_url()?);
    let clock = ManualClock::new(T0);
    let store = schema.open(&clock).await;
    Some(harness(&store, &clock, Box::new(schema)))
}

// The cases whose operations exist on PostgreSQL so far; firing, claiming, reporting,
// rescuing, releasing, renewing and redrive come in the next parts.
minoots_store::conformance_tests!(@cases make;
    create_get_and_tenant_isolation,
    idempotency_key_returns_the_original,
    list_filters_and_pages,
    due_timers_load_in_order_and_skip_cancelled,
    events_resume_from_any_sequence_number,
    live_events_arrive_in_commit_order,
    old_events_are_pruned,
    concurrent_writes_all_commit,
    signing_secrets_rotate_with_a_grace_period,
    idempotency_fingerprint_and_expiry,
    quotas_refuse_without_writing,
    tenants_create_list_update,
    api_keys_lookup_revoke_and_touch,
    a_call_failing_part_way_is_undone_alone,
);

/// Two handles on one fresh schema, reading one clock.
async fn two_handles() -> Option<(PostgresStore, PostgresStore, Harness)> {
    let schema = TestSchema::new(&database_url()?);
    let clock = ManualClock::new(T0);
    let a = schema.open(&clock).await;
    let b = schema.open(&clock).await;
    let h = harness(&a, &clock, Box::new(schema));
    Some((a, b, h))
}

macro_rules! or_skip {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => {
                println!("skipped: no database");
                return;
            }
        }
    };
}

/// Runs `per_handle` creates on each handle at once; returns every result.
async fn create_on_both(
    a: &PostgresStore,
    b: &PostgresStore,
    h: &Harness,
    per_handle: usize,
    tenant: &str,
    key: Option<&str>,
    options: &CreateOptions,
) -> Vec<Result<minoots_store::CreateOutcome, StoreError>> {
    let mut tasks = Vec::new();
    for i in 0..per_handle * 2 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let mut t = timer(h, tenant, h.clock.now_us() + (i as i64 + 10) * SEC, 1);
        t.idempotency_key = key.map(str::to_string);
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            store.create_timer_with(t, options).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("create task"));
    }
    out
}

fn created(results: &[Result<minoots_store::CreateOutcome, StoreError>]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Ok(o) if o.created))
        .count()
}

/// How the creates ended, in a line: "5 created, 0 returned, 19 refused: …".
fn summary(results: &[Result<minoots_store::CreateOutcome, StoreError>]) -> String {
    let returned = results
        .iter()
        .filter(|r| matches!(r, Ok(o) if !o.created))
        .count();
    let errors: BTreeSet<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    format!(
        "{} created, {returned} returned, {} refused: {errors:?}",
        created(results),
        results.len() - created(results) - returned
    )
}

async fn scheduled(store: &PostgresStore, tenant: &str) -> Vec<minoots_core::Timer> {
    store
        .list_timers(TimerQuery {
            tenant_id: tenant.into(),
            status: Some(TimerStatus::Scheduled),
            label: None,
            limit: 500,
            after: None,
        })
        .await
        .unwrap()
        .timers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_admit_exactly_the_quota() {
    let (a, b, h) = or_skip!(two_handles().await);
    let day = utc_day(h.clock.now_us());
    // Pending quota: 24 creates race for 5 slots.
    let pending = CreateOptions {
        max_pending: Some(5),
        ..CreateOptions::default()
    };
    let results = create_on_both(&a, &b, &h, 12, "acme", None, &pending).await;
    assert_eq!(created(&results), 5, "{}", summary(&results));
    for r in &results {
        if let Err(e) = r {
            assert_eq!(
                *e,
                StoreError::QuotaExceeded {
                    quota: Quota::PendingTimers,
                    limit: 5
                }
            );
        }
    }
    let usage = b.tenant_usage("acme", day).await.unwrap();
    assert_eq!((usage.created_today, usage.pending), (5, 5));
    let stored = scheduled(&a, "acme").await;
    assert_eq!(stored.len(), 5, "a refused create stores nothing");
    let events = a
        .read_events(EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 5);

    // Daily quota: with the pending slots freed, 24 creates race for the 3 left today.
    for t in stored {
        a.cancel_timer("acme", t.id, None).await.unwrap();
    }
    let daily = CreateOptions {
        max_per_day: Some(8),
        max_pending: Some(100),
        ..CreateOptions::default()
    };
    let results = create_on_both(&a, &b, &h, 12, "acme", None, &daily).await;
    assert_eq!(created(&results), 3, "{}", summary(&results));
    assert!(results.iter().all(|r| match r {
        Ok(o) => o.created,
        Err(e) =>
            *e == StoreError::QuotaExceeded {
                quota: Quota::TimersPerDay,
                limit: 8
            },
    }));
    let usage = a.tenant_usage("acme", day).await.unwrap();
    assert_eq!((usage.created_today, usage.pending), (8, 3));
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_creating_with_one_key_store_one_timer() {
    let (a, b, h) = or_skip!(two_handles().await);
    let opts = CreateOptions {
        idempotency_fingerprint: Some([7; 32]),
        ..CreateOptions::default()
    };
    let results = create_on_both(&a, &b, &h, 8, "acme", Some("k"), &opts).await;
    assert_eq!(created(&results), 1, "{}", summary(&results));
    let ids: BTreeSet<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().timer.id)
        .collect();
    assert_eq!(ids.len(), 1, "every caller got the one timer");
    let first = *ids.iter().next().unwrap();
    let day = utc_day(h.clock.now_us());
    assert_eq!(a.tenant_usage("acme", day).await.unwrap().created_today, 1);
    assert_eq!(scheduled(&b, "acme").await.len(), 1);

    // Once the key expired, racing creates move it to exactly one new timer.
    h.clock.advance_us(IDEMPOTENCY_KEY_TTL_US + SEC);
    let results = create_on_both(&a, &b, &h, 8, "acme", Some("k"), &opts).await;
    assert_eq!(created(&results), 1, "{}", summary(&results));
    let ids: BTreeSet<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().timer.id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(!ids.contains(&first));
    let old = a.get_timer("acme", first).await.unwrap().unwrap();
    assert_eq!(old.idempotency_key, None, "the expired key moved");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_the_log_misses_nothing_while_two_handles_write() {
    let (a, b, h) = or_skip!(two_handles().await);
    const WRITES: usize = 300;
    let done = Arc::new(AtomicBool::new(false));
    // The reader resumes after the last seq it saw, as event streams do. Were seq not in
    // commit order, it would step over an event committed late and never see it. It
    // reads on a handle of its own, so it never queues behind the writers' connections.
    let schema = h.guard.downcast_ref::<TestSchema>().unwrap();
    let c = schema.open(&h.clock).await;
    let reader = {
        let (store, done) = (c.clone(), done.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = store
                    .read_events(EventQuery {
                        after_seq: last,
                        limit: 1_000,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                for e in &page {
                    assert!(e.seq > last);
                    last = e.seq;
                    seen.push(e.seq);
                }
                if finished && page.is_empty() {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    // Each create for a tenant of its own: creates of one tenant queue on its usage rows
    // and would commit in order anyway.
    let mut writers = Vec::new();
    for i in 0..WRITES {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let t = timer(&h, &format!("t{i}"), T0 + SEC, 1);
        writers.push(tokio::spawn(async move { store.create_timer(t).await }));
    }
    for w in writers {
        assert!(w.await.unwrap().unwrap().created);
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let missing: Vec<i64> = (1..=WRITES as i64)
        .filter(|s| seen.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "the reader stepped over {} events committed after a higher seq, such as {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(seen.len(), WRITES, "every event seen once, without a gap");
    assert_eq!(b.latest_event_seq().await.unwrap(), WRITES as i64);
    a.close().await;
    b.close().await;
    c.close().await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_of_later_parts_answer_unavailable() {
    let h = or_skip!(make().await);
    let err = h
        .store
        .claim_deliveries("w1", 30 * SEC, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("not implemented")),
        "{err:?}"
    );
    h.store.close().await;
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
async fn two_handles_racing_for_a_tenant_and_its_first_secret_agree() {
    let (a, b, h) = or_skip!(two_handles().await);
    let now = h.clock.now_us();
    let tenant = |name: &str| Tenant {
        id: "acme".into(),
        name: name.into(),
        tier: "free".into(),
        created_at_us: now,
        updated_at_us: now,
    };
    let (x, y) = tokio::join!(a.create_tenant(tenant("x")), b.create_tenant(tenant("y")));
    assert_eq!(
        [&x, &y].iter().filter(|r| r.is_ok()).count(),
        1,
        "{x:?} {y:?}"
    );
    assert!(matches!(
        [x, y].into_iter().find(|r| r.is_err()),
        Some(Err(StoreError::AlreadyExists(_)))
    ));
    let day = 86_400 * SEC;
    let (x, y) = tokio::join!(
        a.signing_secrets("acme", "whsec_a".into(), day),
        b.signing_secrets("acme", "whsec_b".into(), day)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len(), 1);
    assert_eq!(x, y, "one first secret, whichever won");
    a.close().await;
    b.close().await;
}
