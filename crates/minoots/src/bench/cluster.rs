//! `minoots bench --database-url URL delivery --kernels N`: W4 on a PostgreSQL cluster.
//! N kernels in this process share one scratch schema, each through a `PostgresStore`
//! handle of its own with a distinct kernel name (so each leases its share of the 64
//! shards and fires only their timers, as separate processes would), each with an
//! orchestrator in this process; one local keep-alive receiver takes every webhook.
//! Once the shards are split (every kernel holds its fair share) the load and the
//! measurement are W4's own (`delivery_on` in `bench.rs`): with N = 1 this is W4 on
//! PostgreSQL. Added to W4's figures: how long the split took and what each kernel did
//! (shards held, timers fired, fires refused by the fence, deliveries leased).
//!
//! The kernels share this process (and its two cores' scheduler) rather than running as
//! separate processes; the JSON says so (`"processes": 1`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_core::{Clock, SystemClock};
use minoots_kernel::Kernel;
use minoots_store::{PostgresConfig, PostgresStore, SHARD_COUNT, Store};
use serde_json::json;

use super::{DATABASE, DeliveryRun, delivery_on, kernel_config, scratch_schema, section_dir};

/// The longest wait for the kernels to split the shards (a kernel joining takes its
/// share one or two shard rounds, about a second each, after it opened).
const SPLIT_WAIT: Duration = Duration::from_secs(60);

/// One W4 run on `kernels` kernels sharing a scratch schema.
pub(super) async fn delivery_run(
    base: &Path,
    b: DeliveryRun,
    kernels: usize,
) -> anyhow::Result<serde_json::Value> {
    let Some(url) = DATABASE.get() else {
        anyhow::bail!("--kernels needs PostgreSQL: minoots bench --database-url URL delivery");
    };
    anyhow::ensure!(
        (1..=SHARD_COUNT as usize).contains(&kernels),
        "--kernels must be 1 to {SHARD_COUNT}"
    );
    let dir = section_dir(
        base,
        &format!("delivery-{}-{}-k{kernels}", b.workload, b.fail_percent),
    )?;
    let schema = scratch_schema(&dir);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut members = Vec::with_capacity(kernels);
    let mut names = Vec::with_capacity(kernels);
    for i in 0..kernels {
        let name = format!("bench-{}-{i}", std::process::id());
        let mut config = PostgresConfig::new(url.clone());
        config.schema = Some(schema.clone());
        config.kernel = Some(name.clone());
        let store: Arc<dyn Store> = Arc::new(PostgresStore::open(config, clock.clone()).await?);
        let k = Kernel::start(store, clock.clone(), kernel_config())?;
        k.wait_ready(Duration::from_secs(30)).await;
        members.push(k);
        names.push(name);
    }
    let split = Instant::now();
    let shards = wait_split(&members).await?;
    let split_ms = split.elapsed().as_millis() as u64;

    let mut out = delivery_on(&members, b).await?;
    let per_kernel: Vec<serde_json::Value> = members
        .iter()
        .zip(&names)
        .zip(&shards)
        .map(|((k, name), held)| {
            let m = k.metrics();
            json!({
                "kernel": name,
                "shards_held": held,
                "timers_fired": m.timers_fired.get(),
                "fires_fenced": m.fires_fenced.get(),
                "deliveries_leased": m.deliveries_leased.get(),
                "attempts_reported": m.attempts_reported.get(),
            })
        })
        .collect();
    let fired: u64 = members.iter().map(|k| k.metrics().timers_fired.get()).sum();
    let extra = json!({
        "store": "postgres",
        "kernels": kernels,
        "processes": 1,
        "orchestrators": kernels,
        "concurrency_is_per_orchestrator": true,
        "shard_split_ms": split_ms,
        "timers_fired_all_kernels": fired,
        "per_kernel": per_kernel,
        "settings": "defaults (10 s shard lease, 10 connections per kernel); kernels and orchestrators in this one process",
    });
    if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    Ok(out)
}

/// Waits until every kernel holds its fair share (⌈64 / N⌉ at most, all 64 held, none
/// empty); returns how many each holds.
async fn wait_split(members: &[Arc<Kernel>]) -> anyhow::Result<Vec<usize>> {
    let clusters = members
        .iter()
        .map(|k| k.store().cluster())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow::anyhow!("a kernel's store is not part of a cluster"))?;
    let deadline = Instant::now() + SPLIT_WAIT;
    loop {
        let held: Vec<usize> = clusters.iter().map(|c| c.shards_held()).collect();
        if split_done(&held) {
            return Ok(held);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the kernels did not split the shards within {SPLIT_WAIT:?} (held: {held:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every shard held, by kernels that each hold some and none more than its fair share.
fn split_done(held: &[usize]) -> bool {
    let fair = (SHARD_COUNT as usize).div_ceil(held.len().max(1));
    held.iter().sum::<usize>() == SHARD_COUNT as usize && held.iter().all(|&h| h > 0 && h <= fair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_are_split_when_each_kernel_holds_its_fair_share() {
        assert!(split_done(&[64]));
        assert!(split_done(&[32, 32]));
        assert!(split_done(&[22, 22, 20]));
        assert!(
            !split_done(&[64, 0]),
            "the second has not taken its share yet"
        );
        assert!(!split_done(&[32, 0]), "shards given back, not yet taken");
        assert!(
            !split_done(&[40, 24]),
            "the first holds more than its share"
        );
    }
}
