//! Schedules in a PostgreSQL cluster of two kernels, on a manual clock: a schedule lands in
//! a shard of the kernel that accepted it, each kernel dispatches and fires its own, every
//! slot gets one record and fires once, and when one kernel stops, the other takes its
//! shards and its schedules go on. Needs `MINOOTS_TEST_DATABASE_URL`; without it the test
//! passes as skipped.

use std::time::Instant;

use minoots_core::schedule::{RunStatus, ScheduleRequest};
use minoots_core::{ManualClock, TimerId};
use minoots_kernel::KernelApi;

#[allow(dead_code)]
mod common;
use common::pg::{T0, WAIT, two_nodes};
use common::{fired_events, next_item};

const SEC: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kernel_fires_its_schedules_once_and_the_survivor_takes_over() {
    // A second past the minute, so the first slot is T0 + 60 s.
    let clock = ManualClock::new(T0 + SEC);
    let Some((_schema, a, b)) = two_nodes(&clock).await else {
        println!("skipped: no database");
        return;
    };
    let every_minute = ScheduleRequest::from_json(br#"{"every": "1m"}"#).unwrap();
    let sa = a
        .kernel
        .create_schedule("acme", every_minute.clone(), Default::default())
        .await
        .unwrap();
    let sb = b
        .kernel
        .create_schedule("acme", every_minute.clone(), Default::default())
        .await
        .unwrap();
    assert!(
        a.cluster.owns_timer(TimerId(sa.id.0)),
        "in a shard of the accepting kernel"
    );
    assert!(b.cluster.owns_timer(TimerId(sb.id.0)));
    let mut fired = fired_events(a.kernel.as_ref()).await;

    clock.set_us(T0 + 59 * SEC);
    clock.set_us(T0 + 60 * SEC);
    let mut got = vec![
        next_item(&mut fired).await.timer_id,
        next_item(&mut fired).await.timer_id,
    ];
    got.sort();
    let mut runs = Vec::new();
    for (k, s) in [(&a, &sa), (&b, &sb)] {
        let r = k
            .kernel
            .list_schedule_runs("acme", s.id, None, 10)
            .await
            .unwrap();
        assert_eq!(r.len(), 1, "one record for the slot");
        assert_eq!(
            (r[0].scheduled_at_us, r[0].status),
            (T0 + 60 * SEC, RunStatus::Fired)
        );
        runs.push(r[0].timer_id.unwrap());
    }
    runs.sort();
    assert_eq!(got, runs, "each slot's run fired");
    let fired_by = |k: &minoots_kernel::Kernel| k.metrics().timers_fired.get();
    // Each kernel fired (its own run: neither tried the other's, which its fence would
    // have refused).
    let fenced = |k: &minoots_kernel::Kernel| k.metrics().fires_fenced.get();
    assert!(fired_by(&a.kernel) >= 1 && fired_by(&b.kernel) >= 1);
    assert_eq!((fenced(&a.kernel), fenced(&b.kernel)), (0, 0));

    // Kernel A stops and gives its shards back; B takes them and A's schedule goes on.
    a.kernel.shutdown().await;
    drop(a);
    let start = Instant::now();
    while b.cluster.shards_held() < 64 {
        assert!(start.elapsed() < WAIT, "the survivor takes every shard");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut fired = fired_events(b.kernel.as_ref()).await;
    for _ in 0..2 {
        next_item(&mut fired).await; // the two fires of the first minute, from the log
    }
    clock.set_us(T0 + 119 * SEC);
    clock.set_us(T0 + 120 * SEC);
    let _ = (next_item(&mut fired).await, next_item(&mut fired).await);
    for s in [&sa, &sb] {
        let r = b
            .kernel
            .list_schedule_runs("acme", s.id, None, 10)
            .await
            .unwrap();
        let slots: Vec<(i64, RunStatus)> =
            r.iter().map(|r| (r.scheduled_at_us, r.status)).collect();
        assert_eq!(
            slots,
            [
                (T0 + 60 * SEC, RunStatus::Fired),
                (T0 + 120 * SEC, RunStatus::Fired)
            ],
            "one record per slot across the takeover"
        );
    }
    assert_eq!(fenced(&b.kernel), 0);
    b.kernel.shutdown().await;
}
