//! Two kernels on one PostgreSQL schema of the test's own, on a manual clock: the cluster
//! the PostgreSQL kernel tests run on. Without `MINOOTS_TEST_DATABASE_URL` there is none.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_core::{Clock, ManualClock, TimerId};
use minoots_kernel::{Kernel, KernelConfig};
use minoots_store::{Cluster, PostgresConfig, PostgresStore, Store};

/// 2026-11-27T10:00:00Z.
pub const T0: i64 = 1_795_773_600_000_000;
/// The longest wait for anything the cluster should do at once (shard split included).
pub const WAIT: Duration = Duration::from_secs(20);

/// A schema of this test's own, dropped at the end.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await;
            });
        })
        .join();
    }
}

pub struct Node {
    pub kernel: Arc<Kernel>,
    pub cluster: Arc<dyn Cluster>,
}

pub async fn node(schema: &Schema, name: &str, clock: &Arc<ManualClock>) -> Node {
    let mut config = PostgresConfig::new(&schema.url);
    config.schema = Some(schema.name.clone());
    config.kernel = Some(name.into());
    let clock: Arc<dyn Clock> = clock.clone();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(config, clock.clone()).await.unwrap());
    let cluster = store.cluster().expect("a kernel's handle");
    let kernel_config = KernelConfig {
        window: Duration::from_secs(2),
        refill_interval: Duration::from_millis(100),
        ..KernelConfig::default()
    };
    let kernel = Kernel::start(store, clock, kernel_config).unwrap();
    Node { kernel, cluster }
}

/// Two kernels on a fresh schema, each holding half the shards and ready.
pub async fn two_nodes(clock: &Arc<ManualClock>) -> Option<(Schema, Node, Node)> {
    let url = std::env::var("MINOOTS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = Schema {
        url,
        name: format!("minoots_test_{}", TimerId::new_v7().0.simple()),
    };
    let a = node(&schema, "kernel-a", clock).await;
    let b = node(&schema, "kernel-b", clock).await;
    let start = Instant::now();
    while !(a.cluster.shards_held() == 32 && b.cluster.shards_held() == 32) {
        assert!(start.elapsed() < WAIT, "an even split of the shards");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.kernel.wait_ready(WAIT).await && b.kernel.wait_ready(WAIT).await);
    Some((schema, a, b))
}
