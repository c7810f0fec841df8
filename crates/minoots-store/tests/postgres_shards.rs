//! Several kernels on one PostgreSQL database (or schema): kernels lease shards of timers
//! in database time and share them fairly, a kernel that stops renewing loses its shards
//! to the others, a fire for a shard another kernel took is fenced and changes nothing,
//! each kernel loads only its shards' timers, and the handles hear each other's creates,
//! events and key changes. One kernel at a time runs maintenance.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; see `pg/mod.rs`.

#[allow(dead_code)]
mod pg;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_core::{Clock, ManualClock, TimerStatus};
use minoots_store::conformance::{T0, timer};
use minoots_store::{
    Cluster, FireOutcome, FireRequest, PostgresConfig, PostgresStore, SHARD_COUNT, Store, shard_of,
};
use pg::{TestSchema, admin, database_url, harness};

const SEC: i64 = 1_000_000;

fn kernel_config(schema: &TestSchema, name: &str, ttl_ms: u64) -> PostgresConfig {
    let mut c = schema.config();
    c.kernel = Some(name.into());
    c.shard_lease_ttl_ms = ttl_ms;
    c
}

async fn open(config: PostgresConfig, clock: &Arc<ManualClock>) -> PostgresStore {
    PostgresStore::open(config, clock.clone() as Arc<dyn Clock>)
        .await
        .expect("open the store")
}

fn cluster(s: &PostgresStore) -> Arc<dyn Cluster> {
    s.cluster().expect("a kernel's handle is part of a cluster")
}

/// Waits (at most `within`) until `done` holds; returns how long it took.
async fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Kernels "kernel-a" and "kernel-b" (default lease) on `schema`, once they hold 32 shards
/// each.
async fn two_kernels_split(
    schema: &TestSchema,
    clock: &Arc<ManualClock>,
) -> (
    PostgresStore,
    PostgresStore,
    Arc<dyn Cluster>,
    Arc<dyn Cluster>,
) {
    let a = open(kernel_config(schema, "kernel-a", 10_000), clock).await;
    let b = open(kernel_config(schema, "kernel-b", 10_000), clock).await;
    let (ca, cb) = (cluster(&a), cluster(&b));
    wait_until(Duration::from_secs(10), "an even split", || {
        ca.shards_held() == 32 && cb.shards_held() == 32
    })
    .await;
    (a, b, ca, cb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_share_the_shards_fairly_and_take_back_those_of_a_kernel_that_left() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let a = open(kernel_config(&schema, "kernel-a", 10_000), &clock).await;
    assert_eq!(
        cluster(&a).shards_held(),
        SHARD_COUNT as usize,
        "a kernel alone holds every shard from its first round"
    );
    let b = open(kernel_config(&schema, "kernel-b", 10_000), &clock).await;
    let (ca, cb) = (cluster(&a), cluster(&b));
    wait_until(Duration::from_secs(10), "an even split", || {
        ca.shards_held() == 32 && cb.shards_held() == 32
    })
    .await;
    // Never both: at every moment the database has one owner per shard.
    let client = admin(&url).await;
    let owners: Vec<String> = client
        .query(&format!("SELECT owner FROM {}.shards", schema.name), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners.len(), SHARD_COUNT as usize);
    assert_eq!(owners.iter().filter(|o| *o == "kernel-a").count(), 32);
    assert_eq!(owners.iter().filter(|o| *o == "kernel-b").count(), 32);
    // A graceful close gives the shards back at once: the other takes them at its next
    // round, not after a lease.
    b.close().await;
    let took = wait_until(Duration::from_secs(5), "every shard back on a", || {
        ca.shards_held() == SHARD_COUNT as usize
    })
    .await;
    println!("shards of a closed kernel taken over in {took:?}");
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_that_stops_renewing_loses_its_shards_within_one_lease() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let ttl = Duration::from_secs(2);
    // Kernel "a" on a runtime of its own, dropped without closing: its tasks and
    // connections end at once, as in a crash.
    let (config, c) = (kernel_config(&schema, "kernel-a", 2_000), clock.clone());
    let (opened, get_opened) = std::sync::mpsc::channel();
    let (kill, killed_rx) = std::sync::mpsc::channel::<()>();
    let runtime_a = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let a = rt.block_on(async move { open(config, &c).await });
        opened.send(cluster(&a)).unwrap();
        killed_rx.recv().unwrap();
        drop(rt);
        drop(a);
    });
    let ca = tokio::task::spawn_blocking(move || get_opened.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(ca.shards_held(), SHARD_COUNT as usize);
    let b = open(kernel_config(&schema, "kernel-b", 2_000), &clock).await;
    let cb = cluster(&b);
    wait_until(Duration::from_secs(10), "an even split", || {
        cb.shards_held() == 32
    })
    .await;
    let killed = Instant::now();
    kill.send(()).unwrap();
    tokio::task::spawn_blocking(move || runtime_a.join().unwrap())
        .await
        .unwrap();
    wait_until(ttl * 3, "the killed kernel's shards taken over", || {
        cb.shards_held() == SHARD_COUNT as usize
    })
    .await;
    let took = killed.elapsed();
    println!("shards of a killed kernel taken over {took:?} after the kill (lease {ttl:?})");
    assert!(
        took >= ttl / 2,
        "taken over only once its leases ended, not while they ran ({took:?})"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_for_a_shard_another_kernel_took_is_fenced_and_changes_nothing() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let kernel = open(kernel_config(&schema, "kernel-a", 10_000), &clock).await;
    let tool = schema.open(&clock).await;
    let h = harness(&tool, &clock, Box::new(()));
    // Two timers due now in different shards.
    let mut taken = timer(&h, "acme", T0, 1);
    let mut kept = timer(&h, "acme", T0, 1);
    while shard_of(kept.id) == shard_of(taken.id) {
        kept = timer(&h, "acme", T0, 1);
    }
    taken.fire_at_us = T0;
    for t in [&taken, &kept] {
        tool.create_timer(t.clone()).await.unwrap();
    }
    // Another kernel takes the first timer's shard (as after this kernel stalled).
    let client = admin(&url).await;
    let moved = client
        .execute(
            &format!(
                "UPDATE {}.shards SET owner = 'kernel-b', epoch = epoch + 1,
                        lease_until = lease_until + 600000000 WHERE shard = $1",
                schema.name
            ),
            &[&shard_of(taken.id)],
        )
        .await
        .unwrap();
    assert_eq!(moved, 1);
    clock.advance_us(SEC);
    let out = kernel
        .fire_timers(vec![
            FireRequest {
                timer_id: taken.id,
                fired_at_us: T0 + SEC,
                refuse_early: false,
            },
            FireRequest {
                timer_id: kept.id,
                fired_at_us: T0 + SEC,
                refuse_early: false,
            },
        ])
        .await
        .unwrap();
    assert_eq!(out[0], FireOutcome::Fenced { timer_id: taken.id });
    assert!(matches!(out[1], FireOutcome::Fired { timer_id, .. } if timer_id == kept.id));
    let stored = tool.get_timer("acme", taken.id).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        TimerStatus::Scheduled,
        "the fenced timer waits for its new owner"
    );
    assert_eq!(stored.version, taken.version);
    kernel.close().await;
    tool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kernel_loads_only_the_timers_of_its_shards() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let (a, b, ca, cb) = two_kernels_split(&schema, &clock).await;
    let h = harness(&a, &clock, Box::new(()));
    let timers: Vec<_> = (0..300).map(|i| timer(&h, "acme", T0 + i, 0)).collect();
    a.create_timers(timers.clone()).await.unwrap();
    let mut seen = HashSet::new();
    for (store, c) in [(&a, &ca), (&b, &cb)] {
        let loaded = store.load_due_timers(None, T0 + SEC, 1_000).await.unwrap();
        assert!(!loaded.is_empty());
        for d in &loaded {
            // The database computes a timer's shard as shard_of does.
            assert!(c.owns_timer(d.id), "a kernel loads only its own shards");
            assert!(seen.insert(d.id), "no timer is loaded by two kernels");
        }
    }
    assert_eq!(
        seen.len(),
        timers.len(),
        "every timer is loaded by one kernel"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_events_and_key_changes_of_one_handle_reach_the_others() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let kernel = open(kernel_config(&schema, "kernel-a", 10_000), &clock).await;
    let other = schema.open(&clock).await;
    let c = cluster(&kernel);
    let mut due = c.scheduled_elsewhere();
    let mut keys = c.key_changes();
    let mut live = kernel.subscribe_events();
    let h = harness(&other, &clock, Box::new(()));
    let soon = timer(&h, "acme", T0 + 5 * SEC, 1);
    let far = timer(&h, "acme", T0 + 2 * 3_600 * SEC, 1);
    other.create_timer(far.clone()).await.unwrap();
    other.create_timer(soon.clone()).await.unwrap();
    let announced = tokio::time::timeout(Duration::from_secs(5), due.recv())
        .await
        .expect("a create through another handle is announced")
        .unwrap();
    assert_eq!(
        (announced.id, announced.fire_at_us),
        (soon.id, soon.fire_at_us),
        "only timers due within the hour are announced"
    );
    // A timer moved into the hour is announced at its new time, as a create is.
    let moved_to = T0 + 7 * SEC;
    other
        .update_timer(
            "acme",
            far.id,
            minoots_core::TimerChange {
                expected_version: Some(1),
                fire_at: Some((moved_to, None)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let announced = tokio::time::timeout(Duration::from_secs(5), due.recv())
        .await
        .expect("a reschedule through another handle is announced")
        .unwrap();
    assert_eq!((announced.id, announced.fire_at_us), (far.id, moved_to));
    // The live feed of one handle carries the events another committed, in order.
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .expect("events of another handle reach the live feed")
            .unwrap();
        let want = if seqs.len() < 2 {
            "timer.scheduled"
        } else {
            "timer.updated"
        };
        assert_eq!(e.event_type.as_str(), want);
        seqs.push(e.seq);
    }
    assert_eq!(seqs[2], seqs[0] + 2, "in sequence, without a gap");
    other
        .create_tenant(minoots_store::Tenant {
            id: "globex".into(),
            name: "Globex".into(),
            tier: "free".into(),
            created_at_us: T0,
            updated_at_us: T0,
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), keys.recv())
        .await
        .expect("a tenant change through another handle is announced")
        .unwrap();
    kernel.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kernel_at_a_time_runs_maintenance() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let (a, b, ca, cb) = two_kernels_split(&schema, &clock).await;
    wait_until(Duration::from_secs(5), "a maintainer", || {
        ca.maintains() || cb.maintains()
    })
    .await;
    // Stays one for a while: the holder of shard 0.
    for _ in 0..15 {
        assert!(!(ca.maintains() && cb.maintains()), "never two maintainers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder: String = admin(&url)
        .await
        .query_one(
            &format!("SELECT owner FROM {}.shards WHERE shard = 0", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        holder,
        if ca.maintains() {
            "kernel-a"
        } else {
            "kernel-b"
        },
        "the maintainer holds shard 0"
    );
    let (first, second, other) = if ca.maintains() {
        (a, b, cb)
    } else {
        (b, a, ca)
    };
    first.close().await;
    let took = wait_until(Duration::from_secs(5), "the other kernel maintains", || {
        other.maintains()
    })
    .await;
    println!("maintenance moved in {took:?}");
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_one_kernel_fires_wake_the_lease_sessions_of_the_others() {
    let url = or_skip!(database_url());
    let schema = TestSchema::new(&url);
    let clock = ManualClock::new(T0);
    let (a, b, ca, cb) = two_kernels_split(&schema, &clock).await;
    let h = harness(&a, &clock, Box::new(()));
    let mut mine = timer(&h, "acme", T0, 1);
    while !ca.owns_timer(mine.id) {
        mine = timer(&h, "acme", T0, 1);
    }
    a.create_timer(mine.clone()).await.unwrap();
    let (mut at_a, mut at_b) = (ca.deliveries_ready(), cb.deliveries_ready());
    // Settle the bumps of the listeners' first connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    at_a.mark_unchanged();
    at_b.mark_unchanged();
    clock.advance_us(SEC);
    let out = a
        .fire_timers(vec![FireRequest {
            timer_id: mine.id,
            fired_at_us: T0 + SEC,
            refuse_early: false,
        }])
        .await
        .unwrap();
    assert!(matches!(out[0], FireOutcome::Fired { .. }), "{out:?}");
    tokio::time::timeout(Duration::from_secs(5), at_b.changed())
        .await
        .expect("the other kernel hears that deliveries are due")
        .unwrap();
    // The firing kernel woke its own sessions itself: its announcement is not echoed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !at_a.has_changed().unwrap(),
        "a kernel skips its own announcement"
    );
    a.close().await;
    b.close().await;
}
