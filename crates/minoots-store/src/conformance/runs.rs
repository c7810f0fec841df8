//! Conformance case about a schedule's runs: a timer that names its schedule and slot
//! keeps them through create, get, list and the lease an executor gets
//! (which signs its webhook with them), on every backend.

use minoots_core::records::TimerQuery;
use minoots_core::{Clock as _, ScheduleId, ScheduleLink};

use super::{Harness, SEC, T0, create, fire, timer};
use crate::*;

pub async fn a_run_keeps_its_schedule_and_slot(h: &Harness) {
    let link = ScheduleLink {
        id: ScheduleId::new_v7(),
        scheduled_at_us: T0 + SEC,
    };
    let mut run = timer(h, "acme", T0 + SEC + 250_000, 1);
    run.schedule = Some(link);
    let run = create(h, run).await;
    let plain = create(h, timer(h, "acme", T0 + 2 * SEC, 1)).await;

    let got = h.store.get_timer("acme", run.id).await.unwrap().unwrap();
    assert_eq!(got.schedule, Some(link));
    assert_eq!(got, run);
    let other = h.store.get_timer("acme", plain.id).await.unwrap().unwrap();
    assert_eq!(other.schedule, None);
    let page = h
        .store
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            status: None,
            label: None,
            limit: 10,
            after: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.timers[0].schedule, Some(link));
    assert_eq!(page.timers[1].schedule, None);

    h.clock.advance_us(2 * SEC);
    assert!(matches!(fire(h, run.id).await, FireOutcome::Fired { .. }));
    let leased = h.store.claim_deliveries("w1", 60 * SEC, 10).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].timer.schedule, Some(link));
    assert_eq!(h.clock.now_us(), T0 + 2 * SEC);
}
