//! Changes of timers in a PostgreSQL cluster of two kernels, on a manual clock: a timer
//! changed through one kernel fires at its new time on the kernel holding its shard, never
//! at its old one, and fire-now through one kernel is fired (behind its shard's fence) by
//! the other. Needs `MINOOTS_TEST_DATABASE_URL`; without it the tests pass as skipped.

use minoots_core::{Event, ManualClock, Timer, TimerId, TimerPatch, TimerRequest, TimerStatus};
use minoots_kernel::{BoxStream, Kernel, KernelApi};

#[allow(dead_code)]
mod common;
use common::pg::{Node, T0, two_nodes};
use common::{fired_events, next_item};

const SEC: i64 = 1_000_000;

/// A timer created through `via` in a shard `owner` holds.
async fn timer_owned_by(via: &Node, owner: &Node, json: &str) -> Timer {
    loop {
        let t = via
            .kernel
            .schedule_timer("acme", TimerRequest::from_json(json.as_bytes()).unwrap())
            .await
            .unwrap()
            .timer;
        if owner.cluster.owns_timer(t.id) {
            return t;
        }
        via.kernel.cancel_timer("acme", t.id, None).await.unwrap();
    }
}

/// The next timer that fired.
async fn next_fired(stream: &mut BoxStream<Event>) -> TimerId {
    next_item(stream).await.timer_id
}

fn move_to(version: i64, us_after_t0: i64) -> TimerPatch {
    let at = minoots_core::timefmt::format_us(T0 + us_after_t0);
    TimerPatch::from_json(format!(r#"{{"version": {version}, "fireAt": "{at}"}}"#).as_bytes())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_kernel_reaches_the_kernel_holding_the_shard() {
    let clock = ManualClock::new(T0);
    let Some((_schema, a, b)) = two_nodes(&clock).await else {
        println!("skipped: no database");
        return;
    };
    let mut fired = fired_events(a.kernel.as_ref()).await;
    // Moved earlier, from beyond the window into it, through the kernel that does not
    // hold it: the holder hears of it and fires it at its new time.
    let earlier = timer_owned_by(&a, &b, r#"{"duration": "10s"}"#).await;
    // Moved later: the holder's window still has it at 1 s.
    let later = timer_owned_by(&a, &b, r#"{"duration": "1s"}"#).await;
    let sentinel = timer_owned_by(&a, &b, r#"{"duration": "1500ms"}"#).await;
    a.kernel
        .update_timer("acme", earlier.id, move_to(1, 1_200_000))
        .await
        .unwrap();
    a.kernel
        .update_timer("acme", later.id, move_to(1, 30 * SEC))
        .await
        .unwrap();
    // The announcements arrive at COMMIT; the next step waits on what they lead to.
    clock.advance_us(1_500_000);
    let mut first = vec![next_fired(&mut fired).await, next_fired(&mut fired).await];
    first.sort();
    let mut want = vec![earlier.id, sentinel.id];
    want.sort();
    assert_eq!(
        first, want,
        "the moved-earlier timer fired; the moved-later one did not"
    );
    let e = a.kernel.get_timer("acme", earlier.id).await.unwrap();
    assert!(
        e.fired_at_us.is_some_and(|f| f >= T0 + 1_200_000),
        "never early"
    );
    let l = a.kernel.get_timer("acme", later.id).await.unwrap();
    assert_eq!(
        l.status,
        TimerStatus::Scheduled,
        "not fired at its old time"
    );
    clock.set_us(T0 + 30 * SEC);
    assert_eq!(next_fired(&mut fired).await, later.id);
    let l = a.kernel.get_timer("acme", later.id).await.unwrap();
    assert_eq!(l.fired_at_us, Some(T0 + 30 * SEC));
    a.kernel.shutdown().await;
    b.kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_now_through_one_kernel_is_fired_by_the_shards_holder() {
    let clock = ManualClock::new(T0);
    let Some((_schema, a, b)) = two_nodes(&clock).await else {
        println!("skipped: no database");
        return;
    };
    let t = timer_owned_by(
        &a,
        &b,
        r#"{"duration": "1h", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}]}}"#,
    )
    .await;
    let fired = a.kernel.fire_timer_now("acme", t.id).await.unwrap();
    assert_eq!(
        fired.status,
        TimerStatus::Fired,
        "answered once the holder fired it"
    );
    assert_eq!((fired.fire_at_us, fired.fired_at_us), (T0, Some(T0)));
    assert_eq!(
        a.kernel.list_deliveries("acme", t.id).await.unwrap().len(),
        1
    );
    let fired_by = |k: &Kernel| k.metrics().timers_fired.get();
    assert_eq!(
        fired_by(&a.kernel),
        0,
        "the kernel that was asked fired nothing"
    );
    assert_eq!(fired_by(&b.kernel), 1, "the holder of its shard fired it");
    a.kernel.shutdown().await;
    b.kernel.shutdown().await;
}
