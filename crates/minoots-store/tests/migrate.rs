//! Moving an embedded store into PostgreSQL (`minoots_store::migrate`): everything the
//! SQLite store holds reads back the same through the PostgreSQL store (timers of every
//! status, deliveries with attempts and leases, the event log with its numbers and its
//! head after pruning, tenants, keys, secrets, usage, idempotency keys), the source is
//! left byte for byte as it was, the target's schema has no table the map forgets, and
//! each refusal happens before anything is written.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; without it every test prints "skipped: no database".

#[allow(dead_code)]
mod pg;

use std::sync::Arc;

use minoots_core::{AttemptOutcome, Clock, ManualClock, TimerId};
use minoots_store::conformance::{Harness, T0, report, timer};
use minoots_store::migrate::{MigrateError, migrate_sqlite_to_postgres, unmapped_tables};
use minoots_store::*;

const SEC: i64 = 1_000_000;
const GRACE_US: i64 = 3_600 * SEC;

/// Everything a store answers about the data the test put in it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    timers: Vec<Option<minoots_core::Timer>>,
    deliveries: Vec<Vec<DeliveryWithAttempts>>,
    events: Vec<minoots_core::Event>,
    head: i64,
    stats: StoreStats,
    tenants: Vec<Tenant>,
    keys: Vec<ApiKey>,
    secrets: Vec<String>,
    usage: Vec<TenantUsage>,
}

async fn snapshot(store: &dyn Store, timers: &[(String, TimerId)]) -> Snapshot {
    let mut snap = Snapshot {
        timers: Vec::new(),
        deliveries: Vec::new(),
        events: store
            .read_events(EventQuery {
                after_seq: 0,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap(),
        head: store.latest_event_seq().await.unwrap(),
        stats: store.stats().await.unwrap(),
        tenants: store.list_tenants(None, 100).await.unwrap(),
        keys: store.list_api_keys(None, None, 100).await.unwrap(),
        secrets: store
            .signing_secrets("acme", "whsec_never_used".into(), GRACE_US)
            .await
            .unwrap(),
        usage: Vec::new(),
    };
    for (tenant, id) in timers {
        snap.timers
            .push(store.get_timer(tenant, *id).await.unwrap());
        snap.deliveries
            .push(store.list_deliveries(tenant, *id).await.unwrap());
    }
    for tenant in ["acme", "other"] {
        snap.usage
            .push(store.tenant_usage(tenant, utc_day(T0)).await.unwrap());
    }
    snap
}

fn key(id: &str, tenant: &str, hash: u8, roles: &[&str]) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant_id: tenant.into(),
        name: format!("key {id}"),
        key_hash: [hash; 32],
        prefix: "mnt_abcd".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        created_at_us: T0,
        expires_at_us: Some(T0 + 1_000 * SEC),
        revoked_at_us: None,
        last_used_at_us: None,
    }
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: format!("Tenant {id}"),
        tier: "free".into(),
        created_at_us: T0,
        updated_at_us: T0,
    }
}

/// Fills a SQLite store with one of everything; returns its timers (tenant, id), the
/// first with an idempotency key.
async fn fill(h: &Harness) -> Vec<(String, TimerId)> {
    let s = &h.store;
    s.create_tenant(tenant("acme")).await.unwrap();
    s.create_tenant(tenant("other")).await.unwrap();
    s.create_api_key(key("k1", "acme", 1, &["timers:read", "timers:write"]))
        .await
        .unwrap();
    s.create_api_key(key("k2", "acme", 2, &[])).await.unwrap();
    s.revoke_api_key("k2").await.unwrap();
    s.touch_api_keys(vec![("k1".into(), T0 + 5 * SEC)])
        .await
        .unwrap();
    s.signing_secrets("acme", "whsec_first".into(), GRACE_US)
        .await
        .unwrap();
    s.rotate_signing_secret("acme", "whsec_second".into())
        .await
        .unwrap();

    let mut ids = Vec::new();
    let mut create = async |tenant: &str, mut t: minoots_core::Timer, key: Option<&str>| {
        t.idempotency_key = key.map(str::to_string);
        let options = CreateOptions {
            idempotency_fingerprint: key.map(|_| [7; 32]),
            ..Default::default()
        };
        let out = s.create_timer_with(t, options).await.unwrap();
        ids.push((tenant.to_string(), out.timer.id));
        out.timer.id
    };
    // Pending after the migration, one with an idempotency key.
    create("acme", timer(h, "acme", T0 + 100 * SEC, 1), Some("idem-1")).await;
    create("other", timer(h, "other", T0 + 200 * SEC, 2), None).await;
    let cancelled = create("acme", timer(h, "acme", T0 + 300 * SEC, 1), None).await;
    s.cancel_timer("acme", cancelled, Some("not needed".into()))
        .await
        .unwrap();
    // Due now: settled, failed, retrying, in flight, and one without actions.
    let settled = create("acme", timer(h, "acme", T0 + SEC, 2), None).await;
    let failed = create("acme", timer(h, "acme", T0 + SEC, 1), None).await;
    let retrying = create("acme", timer(h, "acme", T0 + SEC, 1), None).await;
    let in_flight = create("other", timer(h, "other", T0 + SEC, 1), None).await;
    let silent = create("acme", timer(h, "acme", T0 + SEC, 0), None).await;
    h.clock.advance_us(SEC);
    let now = h.clock.now_us();
    let fire = |ids: &[TimerId]| {
        ids.iter()
            .map(|&timer_id| FireRequest {
                timer_id,
                fired_at_us: now,
                refuse_early: false,
            })
            .collect::<Vec<_>>()
    };
    // Leased by an executor that is gone, and never reported.
    s.fire_timers(fire(&[in_flight])).await.unwrap();
    let held = s
        .claim_deliveries("serve-gone", 30 * SEC, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "the in-flight timer's delivery is leased");
    s.fire_timers(fire(&[settled, failed, retrying, silent]))
        .await
        .unwrap();
    let claimed = s.claim_deliveries("worker", 30 * SEC, 10).await.unwrap();
    assert_eq!(claimed.len(), 4);
    for claimed in claimed {
        let outcome = match claimed.delivery.timer_id {
            t if t == settled => AttemptOutcome::Succeeded,
            t if t == failed => AttemptOutcome::Permanent,
            _ => AttemptOutcome::Retryable,
        };
        s.report_attempt(report(&claimed, outcome, now))
            .await
            .unwrap();
    }
    // The oldest events go; the numbers of those left must cross as they are.
    assert_eq!(s.prune_events(T0 + 1, 2).await.unwrap(), 2);
    ids
}

fn sqlite_harness(dir: &std::path::Path, clock: &Arc<ManualClock>) -> (SqliteStore, Harness) {
    let store = SqliteStore::open(SqliteConfig::new(dir), clock.clone() as Arc<dyn Clock>)
        .expect("open the SQLite store");
    let h = Harness {
        store: Arc::new(store.clone()),
        clock: clock.clone(),
        guard: Box::new(()),
        hold_writes: None,
    };
    (store, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_reads_back_the_same_and_the_log_goes_on_from_its_head() {
    let url = or_skip!(pg::database_url());
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (sqlite, h) = sqlite_harness(dir.path(), &clock);
    let ids = fill(&h).await;
    let before = snapshot(h.store.as_ref(), &ids).await;
    assert_eq!(before.stats.in_flight_deliveries, 1);
    assert_eq!(
        before.events.first().unwrap().seq,
        3,
        "the first two were pruned"
    );
    assert_eq!(before.events.last().unwrap().seq, before.head);
    sqlite.close().await;
    drop(h);
    let db_file = dir.path().join("minoots.db");
    let bytes = std::fs::read(&db_file).unwrap();

    let schema = pg::TestSchema::new(&url);
    let report = migrate_sqlite_to_postgres(dir.path(), schema.config())
        .await
        .expect("the migration");
    println!("{report}");
    assert_eq!(report.event_head, before.head);
    assert_eq!(report.in_flight_deliveries, 1);
    let rows = |name: &str| report.tables.iter().find(|t| t.name == name).unwrap().rows;
    assert_eq!(rows("timers"), ids.len() as u64);
    assert_eq!(rows("events"), before.events.len() as u64);
    assert_eq!(rows("api_keys"), 2);
    assert_eq!(
        std::fs::read(&db_file).unwrap(),
        bytes,
        "the source is unchanged"
    );

    let pg = schema.open(&clock).await;
    let after = snapshot(&pg, &ids).await;
    assert_eq!(
        after, before,
        "the PostgreSQL store answers as the SQLite one"
    );
    let admin = pg::admin(&url).await;
    admin
        .batch_execute(&format!("SET search_path TO {}", schema.name))
        .await
        .unwrap();
    assert_eq!(
        unmapped_tables(&admin).await.unwrap(),
        Vec::<String>::new(),
        "every PostgreSQL table is mapped or bookkeeping"
    );

    // The key, the idempotency key and the lease keep working; the log goes on after
    // its head.
    assert_eq!(pg.api_key_by_hash([1; 32]).await.unwrap().unwrap().id, "k1");
    let mut again = timer(&h_for(&pg, &clock), "acme", T0 + 100 * SEC, 1);
    again.idempotency_key = Some("idem-1".into());
    let out = pg
        .create_timer_with(
            again,
            CreateOptions {
                idempotency_fingerprint: Some([7; 32]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!out.created, "the idempotency key crossed");
    assert_eq!(out.timer.id, ids[0].1);
    pg.create_timer(timer(&h_for(&pg, &clock), "acme", T0 + 50 * SEC, 1))
        .await
        .unwrap();
    let next = pg
        .read_events(EventQuery {
            after_seq: before.head,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [before.head + 1]
    );
    clock.advance_us(31 * SEC);
    assert_eq!(
        pg.rescue_expired_leases(10).await.unwrap(),
        1,
        "the old lease ends and the rescuer hands the delivery back"
    );
    pg.close().await;

    // A second run finds data and refuses, changing nothing.
    let err = migrate_sqlite_to_postgres(dir.path(), schema.config())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MigrateError::TargetNotEmpty { what, .. } if what.contains("tenants")),
        "{err}"
    );
    assert!(err.to_string().contains("new --database-schema"), "{err}");
}

/// A harness on `store` only to build timers with the test's clock.
fn h_for(store: &PostgresStore, clock: &Arc<ManualClock>) -> Harness {
    Harness {
        store: Arc::new(store.clone()),
        clock: clock.clone(),
        guard: Box::new(()),
        hold_writes: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_any_write() {
    let url = or_skip!(pg::database_url());
    let schema = pg::TestSchema::new(&url);
    let admin = pg::admin(&url).await;
    let schema_exists = async || {
        admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&schema.name],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    };

    // No store: an empty directory, and one that does not exist.
    let empty = tempfile::tempdir().unwrap();
    let err = migrate_sqlite_to_postgres(empty.path(), schema.config())
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::NoSource { .. }), "{err}");
    assert!(err.to_string().contains("--data-dir"), "{err}");
    let missing = empty.path().join("nowhere");
    let err = migrate_sqlite_to_postgres(&missing, schema.config())
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::NoSource { .. }), "{err}");
    assert!(!missing.exists(), "nothing is created at the source");

    // A store open in a running process: refused while open, migrated once closed.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (open, h) = sqlite_harness(dir.path(), &clock);
    h.store.create_tenant(tenant("acme")).await.unwrap();
    let err = migrate_sqlite_to_postgres(dir.path(), schema.config())
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::SourceInUse { .. }), "{err}");
    assert!(err.to_string().contains("stop that process"), "{err}");
    assert!(!schema_exists().await, "the target was not touched");
    open.close().await;
    let report = migrate_sqlite_to_postgres(dir.path(), schema.config())
        .await
        .unwrap();
    assert_eq!(
        report.tables.iter().map(|t| t.rows).sum::<u64>(),
        1,
        "one tenant"
    );
    // And the source opens again afterwards: the lock was released.
    let (reopened, _) = sqlite_harness(dir.path(), &clock);
    reopened.close().await;

    // A target a kernel is running on is refused even when empty.
    let busy = pg::TestSchema::new(&url);
    let mut config = busy.config();
    config.kernel = Some("a-running-kernel".into());
    let kernel = PostgresStore::open(config, clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    let err = migrate_sqlite_to_postgres(dir.path(), busy.config())
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::TargetInUse { .. }), "{err}");
    kernel.close().await;
}
