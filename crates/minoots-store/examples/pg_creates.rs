//! Durable creates per second on the PostgreSQL backend: many concurrent callers, each
//! creating one timer at a time with quotas set (as a REST create does), against a
//! schema of its own that is dropped afterwards. Reports numbers; asserts none.
//!
//! ```text
//! MINOOTS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p minoots-store --example pg_creates -- [creates] [callers]
//! ```
//!
//! Three runs: every create for one tenant, creates spread over 1,000 tenants, and every
//! create for a tenant of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use minoots_core::{ActionBundle, Clock, SystemClock, Timer, TimerId, TimerStatus};
use minoots_store::{CreateOptions, PostgresConfig, PostgresStore, Store};

const SEC: i64 = 1_000_000;

fn timer(tenant: String, now: i64) -> Timer {
    Timer {
        id: TimerId::new_v7(),
        tenant_id: tenant,
        name: "bench".into(),
        requested_by: None,
        status: TimerStatus::Scheduled,
        created_at_us: now,
        fire_at_us: now + 3_600 * SEC,
        duration_ms: Some(3_600_000),
        fired_at_us: None,
        settled_at_us: None,
        cancelled_at_us: None,
        cancel_reason: None,
        metadata: serde_json::Map::new(),
        labels: BTreeMap::new(),
        action_bundle: ActionBundle {
            actions: Vec::new(),
            retry_policy: None,
        },
        idempotency_key: None,
        version: 1,
        schedule: None,
        traceparent: None,
    }
}

/// Runs `creates` creates from `callers` concurrent tasks; returns creates per second.
async fn run(store: &PostgresStore, creates: usize, callers: usize, tenants: usize) -> f64 {
    let options = CreateOptions {
        max_per_day: Some(10_000_000),
        max_pending: Some(10_000_000),
        idempotency_fingerprint: None,
    };
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (store, next, options) = (store.clone(), next.clone(), options.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= creates {
                        return;
                    }
                    let t = timer(format!("tenant-{}", i % tenants), SystemClock.now_us());
                    let out = store.create_timer_with(t, options.clone()).await;
                    assert!(out.expect("create").created);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller");
    }
    creates as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("MINOOTS_TEST_DATABASE_URL")
        .expect("set MINOOTS_TEST_DATABASE_URL to a PostgreSQL database");
    let mut args = std::env::args().skip(1);
    let creates: usize = args.next().map_or(20_000, |a| a.parse().expect("creates"));
    let callers: usize = args.next().map_or(128, |a| a.parse().expect("callers"));
    let schema = format!("minoots_bench_{:08x}", fastrand::u32(..));
    let mut config = PostgresConfig::new(&url);
    config.schema = Some(schema.clone());
    let store = PostgresStore::open(config, Arc::new(SystemClock))
        .await
        .expect("open");
    // Warm up the connections and their prepared statements.
    run(&store, 1_000, callers, 1_000).await;
    for (label, tenants) in [
        ("1 tenant", 1),
        ("1,000 tenants", 1_000),
        ("a tenant each", creates),
    ] {
        let rate = run(&store, creates, callers, tenants).await;
        println!("{label}: {creates} creates from {callers} callers: {rate:.0} creates/s");
    }
    store.close().await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop the schema");
}
