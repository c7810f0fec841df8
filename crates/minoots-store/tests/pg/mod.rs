//! What the PostgreSQL test files share: the database they need, a schema of each test's
//! own (dropped when the test ends), harnesses and handles on it.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//! without it every test prints "skipped: no database" and passes.

use std::sync::Arc;

use minoots_core::{Clock, ManualClock};
use minoots_store::conformance::{Harness, T0};
use minoots_store::{PostgresConfig, PostgresStore};

pub fn database_url() -> Option<String> {
    std::env::var("MINOOTS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// A schema of one test's own; it and everything in it is dropped with this value.
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    /// A fresh name; the schema itself is created by the first store opened on it.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            name: format!("minoots_test_{:016x}", fastrand::u64(..)),
        }
    }

    pub fn config(&self) -> PostgresConfig {
        let mut c = PostgresConfig::new(&self.url);
        c.schema = Some(self.name.clone());
        c
    }

    pub async fn open(&self, clock: &Arc<ManualClock>) -> PostgresStore {
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
pub fn harness(
    store: &PostgresStore,
    clock: &Arc<ManualClock>,
    guard: Box<dyn std::any::Any + Send + Sync>,
) -> Harness {
    Harness {
        store: Arc::new(store.clone()),
        clock: clock.clone(),
        guard,
        hold_writes: Some(Arc::new(store.clone())),
    }
}

/// A kernel's handle alone on a fresh schema: it holds every shard, so every fire of the
/// suite also passes the shard fence.
pub async fn make() -> Option<Harness> {
    let schema = TestSchema::new(&database_url()?);
    let clock = ManualClock::new(T0);
    let mut config = schema.config();
    config.kernel = Some("conformance".into());
    let store = PostgresStore::open(config, clock.clone() as Arc<dyn Clock>)
        .await
        .expect("open the store");
    Some(harness(&store, &clock, Box::new(schema)))
}

/// Two handles on one fresh schema, reading one clock.
pub async fn two_handles() -> Option<(PostgresStore, PostgresStore, Harness)> {
    let schema = TestSchema::new(&database_url()?);
    let clock = ManualClock::new(T0);
    let a = schema.open(&clock).await;
    let b = schema.open(&clock).await;
    let h = harness(&a, &clock, Box::new(schema));
    Some((a, b, h))
}

#[macro_export]
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
