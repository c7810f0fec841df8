//! Conformance cases about schedules: create with the tenant's schedule quota, read and
//! list per tenant, the due queue, and dispatches that record each slot exactly once and
//! create the runs' timers — also when several dispatches of one schedule race.

use minoots_core::schedule::{RunStatus, Schedule, ScheduleRequest, ScheduleStatus, SkipReason};
use minoots_core::{Clock as _, Missing, Quota, ScheduleId, TimerStatus};

use super::{Harness, SEC, T0};
use crate::*;

/// A schedule of `tenant` from `json`, created now.
fn schedule(h: &Harness, tenant: &str, json: &str) -> Schedule {
    let request = ScheduleRequest::from_json(json.as_bytes()).unwrap();
    let now = h.clock.now_us();
    let spec = request.validate(tenant, now, 0).unwrap();
    Schedule::new(ScheduleId::new_v7(), tenant, &request, &spec, now)
}

/// Moves the clock to `t`.
fn at(h: &Harness, t: i64) {
    h.clock.advance_us(t - h.clock.now_us());
}

pub async fn schedules_dispatch_each_slot_once(h: &Harness) {
    // T0 is on a whole minute; the schedule starts a second later, so 10:00 is not a slot.
    at(h, T0 + SEC);
    let s = schedule(
        h,
        "acme",
        r#"{"every": "1m", "name": "tick", "labels": {"job": "tick"}}"#,
    );
    let stored = h.store.create_schedule(s.clone(), Some(1)).await.unwrap();
    assert_eq!(stored, s);
    // The tenant's quota of one schedule is used; another tenant's is its own.
    let refused = h
        .store
        .create_schedule(schedule(h, "acme", r#"{"every": "1m"}"#), Some(1))
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::QuotaExceeded {
                quota: Quota::Schedules,
                limit: 1
            })
        ),
        "{refused:?}"
    );
    h.store
        .create_schedule(schedule(h, "other", r#"{"every": "1h"}"#), Some(1))
        .await
        .unwrap();
    assert_eq!(
        h.store.get_schedule("acme", s.id).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(h.store.get_schedule("other", s.id).await.unwrap(), None);
    let listed = h
        .store
        .list_schedules("acme", &Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![s.clone()]);
    // Filters: by status, and by a label (a key with a dot is one key, not a path).
    let list = |status: Option<ScheduleStatus>, label: Option<(&str, &str)>| {
        let filter = minoots_core::schedule::ScheduleFilter {
            status,
            label: label.map(|(k, v)| (k.to_string(), v.to_string())),
        };
        let store = h.store.clone();
        async move {
            store
                .list_schedules("acme", &filter, None, 10)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(list(Some(ScheduleStatus::Active), None).await, 1);
    assert_eq!(list(Some(ScheduleStatus::Paused), None).await, 0);
    assert_eq!(list(None, Some(("job", "tick"))).await, 1);
    assert_eq!(
        list(Some(ScheduleStatus::Active), Some(("job", "tick"))).await,
        1
    );
    assert_eq!(list(None, Some(("job", "tock"))).await, 0);
    assert_eq!(list(None, Some(("job.x", "tick"))).await, 0);
    assert!(
        h.store
            .list_schedules("acme", &Default::default(), Some(s.id), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = h.store.schedules_due(T0 + SEC, 10).await.unwrap();
    assert!(due.contains(&(T0 + SEC, s.id)), "{due:?}");
    assert!(h.store.schedules_due(T0, 10).await.unwrap().is_empty());

    // First dispatch at creation: nothing due yet; the next wake is the lead before 10:01.
    let d = h.store.dispatch_schedule(s.id).await.unwrap();
    assert!(d.created.is_empty());
    let lead = minoots_core::schedule::plan::DISPATCH_LEAD_US;
    assert_eq!(d.schedule.wake_at_us, Some(T0 + 60 * SEC - lead));

    // Within the lead: the run's timer is created, due at the slot.
    at(h, T0 + 60 * SEC - lead);
    let d = h.store.dispatch_schedule(s.id).await.unwrap();
    assert_eq!(d.created.len(), 1);
    let run = d.created[0].clone();
    assert_eq!(run.fire_at_us, T0 + 60 * SEC);
    assert_eq!(
        run.schedule.map(|l| (l.id, l.scheduled_at_us)),
        Some((s.id, T0 + 60 * SEC))
    );
    assert_eq!(run.name, "tick");
    assert_eq!(run.labels.get("job").map(String::as_str), Some("tick"));
    assert_eq!(
        run.id.as_bytes()[15],
        s.id.as_bytes()[15],
        "the run is in the schedule's shard"
    );
    assert_eq!(
        h.store.get_timer("acme", run.id).await.unwrap().as_ref(),
        Some(&run)
    );
    assert_eq!(d.schedule.active_timer, Some(run.id));
    // Again at once: nothing more.
    let again = h.store.dispatch_schedule(s.id).await.unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.schedule, d.schedule);

    // The run fires and settles (no actions); at 10:02 (minus the lead) the next fires.
    at(h, T0 + 60 * SEC);
    let fired = h
        .store
        .fire_timers(vec![FireRequest {
            timer_id: run.id,
            fired_at_us: h.clock.now_us(),
            refuse_early: true,
        }])
        .await
        .unwrap();
    assert!(matches!(fired[0], FireOutcome::Settled { .. }));
    assert_eq!(
        h.store
            .get_timer("acme", run.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TimerStatus::Settled
    );
    at(h, T0 + 120 * SEC - lead);
    let d = h.store.dispatch_schedule(s.id).await.unwrap();
    assert_eq!(d.created.len(), 1);
    assert_eq!(d.created[0].fire_at_us, T0 + 120 * SEC);

    // Down until 10:05:30 with the run of 10:02 still pending: 10:03–10:05 are missed; the
    // newest is caught up, but the run of 10:02 is active, so it is skipped (overlap skip).
    at(h, T0 + 330 * SEC);
    h.store.dispatch_schedule(s.id).await.unwrap();
    let runs = h
        .store
        .list_schedule_runs("acme", s.id, None, 100)
        .await
        .unwrap();
    let got: Vec<(i64, RunStatus)> = runs
        .iter()
        .map(|r| ((r.scheduled_at_us - T0) / SEC, r.status))
        .collect();
    assert_eq!(
        got,
        [
            (60, RunStatus::Fired),
            (120, RunStatus::Fired),
            (180, RunStatus::Skipped(SkipReason::Superseded)),
            (240, RunStatus::Skipped(SkipReason::Superseded)),
            (300, RunStatus::Skipped(SkipReason::Overlap)),
        ]
    );
    assert_eq!(runs[0].timer_id, Some(run.id));
    // When a run's timer fired is read from the timer: the first fired at 10:01, the
    // second has not, a skipped slot has no timer.
    assert_eq!(runs[0].fired_at_us, Some(T0 + 60 * SEC));
    assert_eq!(runs[1].fired_at_us, None);
    assert_eq!(runs[2].fired_at_us, None);
    let later = h
        .store
        .list_schedule_runs("acme", s.id, Some(T0 + 120 * SEC), 100)
        .await
        .unwrap();
    assert_eq!(later.len(), 3);
    assert!(matches!(
        h.store.list_schedule_runs("other", s.id, None, 100).await,
        Err(StoreError::NotFound(Missing::Schedule(id))) if id == s.id
    ));
    assert!(matches!(
        h.store.dispatch_schedule(ScheduleId::new_v7()).await,
        Err(StoreError::NotFound(Missing::Schedule(_)))
    ));
    let now = h.store.get_schedule("acme", s.id).await.unwrap().unwrap();
    assert_eq!(now.progress.status, ScheduleStatus::Active);
    assert_eq!(now.progress.runs_fired, 2);
}

pub async fn racing_dispatches_of_one_schedule_create_one_run(h: &Harness) {
    at(h, T0 + SEC);
    let s = schedule(h, "acme", r#"{"every": "1m", "overlap": "allowAll"}"#);
    h.store.create_schedule(s.clone(), None).await.unwrap();
    at(h, T0 + 59 * SEC);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = h.store.clone();
            tokio::spawn(async move { store.dispatch_schedule(s.id).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += t.await.unwrap().unwrap().created.len();
    }
    assert_eq!(created, 1);
    let runs = h
        .store
        .list_schedule_runs("acme", s.id, None, 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Fired);
}

/// `(seconds after T0, status)` of each run record of `id`.
async fn records(h: &Harness, id: ScheduleId) -> Vec<(i64, RunStatus)> {
    h.store
        .list_schedule_runs("acme", id, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.scheduled_at_us - T0) / SEC, r.status))
        .collect()
}

pub async fn schedule_controls_keep_one_record_per_slot(h: &Harness) {
    use crate::schedule_control::ScheduleControl;
    let paused = RunStatus::Skipped(SkipReason::Paused);
    at(h, T0 + SEC);
    let s = schedule(h, "acme", r#"{"every": "1m"}"#);
    h.store.create_schedule(s.clone(), None).await.unwrap();
    // The run of 10:01 is created ahead; pausing withdraws it.
    at(h, T0 + 55 * SEC);
    let d = h.store.dispatch_schedule(s.id).await.unwrap();
    let ahead = d.created[0].id;
    let c = h
        .store
        .control_schedule("acme", s.id, ScheduleControl::Pause)
        .await
        .unwrap();
    assert_eq!(c.schedule.progress.status, ScheduleStatus::Paused);
    assert_eq!(c.schedule.version, 2);
    assert_eq!(
        c.cancelled.iter().map(|t| t.id).collect::<Vec<_>>(),
        [ahead]
    );
    assert_eq!(c.schedule.active_timer, None);
    let t = h.store.get_timer("acme", ahead).await.unwrap().unwrap();
    assert_eq!(t.status, TimerStatus::Cancelled);
    assert_eq!(records(h, s.id).await, [(60, paused)]);
    // Another tenant's schedule is not found and is left alone.
    assert!(matches!(
        h.store
            .control_schedule("other", s.id, ScheduleControl::Delete)
            .await,
        Err(StoreError::NotFound(Missing::Schedule(_)))
    ));

    // Resume at 10:03:30 with catch-up: 10:02 and 10:03 are recorded paused first, the
    // newest (10:03) is caught up at once (policy latest).
    at(h, T0 + 210 * SEC);
    let c = h
        .store
        .control_schedule("acme", s.id, ScheduleControl::Resume { catch_up: true })
        .await
        .unwrap();
    assert_eq!(c.schedule.progress.status, ScheduleStatus::Active);
    assert_eq!(c.created.len(), 1);
    assert_eq!(c.created[0].fire_at_us, T0 + 210 * SEC);
    assert_eq!(
        c.created[0].schedule.map(|l| l.scheduled_at_us),
        Some(T0 + 180 * SEC)
    );
    assert_eq!(
        records(h, s.id).await,
        [(60, paused), (120, paused), (180, RunStatus::Fired)]
    );
    assert_eq!(c.schedule.progress.runs_fired, 1);

    // Trigger: a timer due now, no record, the cursor and the count unchanged.
    let c = h
        .store
        .control_schedule("acme", s.id, ScheduleControl::Trigger)
        .await
        .unwrap();
    assert_eq!(c.created.len(), 1);
    assert_eq!(c.created[0].fire_at_us, T0 + 210 * SEC);
    assert_eq!(records(h, s.id).await.len(), 3);
    assert_eq!(c.schedule.progress.runs_fired, 1);

    // A new spec at a stale version is refused; at the right one, the future run created
    // ahead (10:04) is withdrawn and removed, and the new spec starts at the change.
    at(h, T0 + 235 * SEC);
    let d = h.store.dispatch_schedule(s.id).await.unwrap();
    assert_eq!(
        d.created.len(),
        0,
        "the run of 10:03 is active (overlap skip)"
    );
    let version = h
        .store
        .get_schedule("acme", s.id)
        .await
        .unwrap()
        .unwrap()
        .version;
    let request = ScheduleRequest::from_json(br#"{"every": "5m"}"#).unwrap();
    let respec = |version| ScheduleControl::Respec {
        version,
        request: Box::new(request.clone()),
        max_schedules: None,
    };
    assert!(matches!(
        h.store.control_schedule("acme", s.id, respec(version + 7)).await,
        Err(StoreError::ScheduleVersionMismatch { current, .. }) if current == version
    ));
    let c = h
        .store
        .control_schedule("acme", s.id, respec(version))
        .await
        .unwrap();
    assert_eq!(c.schedule.version, version + 1);
    assert_eq!(c.schedule.request.every, request.every);
    assert_eq!(c.schedule.progress.cursor_us, T0 + 235 * SEC);
    assert_eq!(
        c.schedule.wake_at_us,
        Some(T0 + 300 * SEC - minoots_core::schedule::plan::DISPATCH_LEAD_US)
    );

    // Delete: the schedule and its records go; a run not yet fired is cancelled.
    at(h, T0 + 295 * SEC);
    let d = h.store.dispatch_schedule(s.id).await.unwrap();
    let pending: Vec<_> = d.created.iter().map(|t| t.id).collect();
    let c = h
        .store
        .control_schedule("acme", s.id, ScheduleControl::Delete)
        .await
        .unwrap();
    assert_eq!(
        c.cancelled.iter().map(|t| t.id).collect::<Vec<_>>(),
        pending
    );
    assert_eq!(h.store.get_schedule("acme", s.id).await.unwrap(), None);
    assert!(
        h.store
            .schedules_due(i64::MAX, 10)
            .await
            .unwrap()
            .iter()
            .all(|(_, id)| *id != s.id)
    );
    assert!(matches!(
        h.store.list_schedule_runs("acme", s.id, None, 10).await,
        Err(StoreError::NotFound(_))
    ));

    // A completed schedule cannot be paused, and is made active again by a new spec
    // (within the tenant's schedule quota).
    let done = schedule(h, "acme", r#"{"every": "1m", "maxRuns": 1}"#);
    h.store.create_schedule(done.clone(), None).await.unwrap();
    at(h, T0 + 355 * SEC);
    h.store.dispatch_schedule(done.id).await.unwrap();
    let got = h
        .store
        .get_schedule("acme", done.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.progress.status, ScheduleStatus::Completed);
    assert!(matches!(
        h.store
            .control_schedule("acme", done.id, ScheduleControl::Pause)
            .await,
        Err(StoreError::ScheduleState { .. })
    ));
    let other = schedule(h, "acme", r#"{"every": "1h"}"#);
    h.store.create_schedule(other, None).await.unwrap();
    let more = ScheduleRequest::from_json(br#"{"every": "1m", "maxRuns": 2}"#).unwrap();
    let reopen = |max| ScheduleControl::Respec {
        version: got.version,
        request: Box::new(more.clone()),
        max_schedules: max,
    };
    assert!(matches!(
        h.store
            .control_schedule("acme", done.id, reopen(Some(1)))
            .await,
        Err(StoreError::QuotaExceeded {
            quota: Quota::Schedules,
            limit: 1
        })
    ));
    let c = h
        .store
        .control_schedule("acme", done.id, reopen(Some(2)))
        .await
        .unwrap();
    assert_eq!(c.schedule.progress.status, ScheduleStatus::Active);
}
