//! The schedule dispatcher: one task that keeps the schedules due soon in a queue ordered
//! by wake time, asks the store to dispatch each when its time comes, and hands the runs'
//! timers to the scheduler, which fires them from its window like any timer.
//!
//! **Why nothing is lost or doubled.** The queue is only a cache of `schedules.wake_at`:
//! every dispatch is one store transaction that records each due slot exactly once and
//! advances the schedule's cursor (`minoots_store::schedules`), so a dispatch that runs
//! twice, late, or after a crash writes nothing twice, and one that never ran is found
//! again by the next load of the queue ([`LOAD_INTERVAL`]) or at start. The dispatcher
//! decides nothing: which slot fires, is skipped or waits is the core's planner.
//!
//! **When it runs.** A schedule's timer is created [`DISPATCH_LEAD_US`] (10 s) before its
//! slot (when no run is active), so neither the dispatcher's wake-up precision nor a burst
//! of slots at one instant shows in the slot's firing time: the kernel fires the timer
//! from memory. A run that reaches its final status while slots wait for it (buffered)
//! wakes its schedule at once; the dispatcher learns it from the event log, and checks the
//! store again at the schedule's own wake time in any case.
//!
//! **Several kernels.** Only the kernel holding a schedule's shard dispatches it (its
//! runs' timers are in the same shard), and a dispatch locks the schedule's row, so even a
//! race during a shard handover records each slot once.
//!
//! It never blocks the firing thread, holds no lock across a store call, and its queue is
//! bounded by [`MAX_QUEUED`]: schedules beyond it wait for the next load.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minoots_core::schedule::plan::DISPATCH_LEAD_US;
use minoots_core::{Clock, Event, EventType, ScheduleId, TimerId};
use minoots_store::{DueTimer, Store, StoreError};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{Notify, watch};

use crate::scheduler::Scheduler;

/// How far ahead the queue is filled from the store.
const LOOKAHEAD_US: i64 = 60_000_000;
/// How often the queue is filled again from the store.
pub const LOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Schedules queued at most (a load takes the earliest this many).
pub const MAX_QUEUED: usize = 100_000;
/// After a failed dispatch (the store refused to write), try again this much later.
const RETRY_AFTER_US: i64 = 1_000_000;
/// Dispatches taken from the queue at once, and run at the same time: enough for the
/// store to commit them in large groups (one dispatch is a few statements).
const MAX_DISPATCH_BATCH: usize = 4_096;
const MAX_CONCURRENT_DISPATCHES: usize = 256;
/// Longest sleep between looks at the clock when nothing is due sooner.
const MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    by_wake: BTreeSet<(i64, ScheduleId)>,
    wake_of: HashMap<ScheduleId, i64>,
    /// The timers of runs dispatched here, so their end wakes their schedule.
    runs: HashMap<TimerId, ScheduleId>,
}

impl Queue {
    fn put(&mut self, id: ScheduleId, wake_us: i64) {
        if let Some(old) = self.wake_of.insert(id, wake_us) {
            self.by_wake.remove(&(old, id));
        }
        self.by_wake.insert((wake_us, id));
    }

    fn remove(&mut self, id: ScheduleId) {
        if let Some(old) = self.wake_of.remove(&id) {
            self.by_wake.remove(&(old, id));
        }
    }
}

/// The dispatcher's shared state: the queue, and what wakes its task.
pub(crate) struct Dispatcher {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Dispatcher {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Dispatcher {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        })
    }

    /// Dispatch `id` at `wake_us` (a new or changed schedule).
    pub(crate) fn enqueue(&self, id: ScheduleId, wake_us: i64) {
        self.queue.lock().expect("queue poisoned").put(id, wake_us);
        self.wake.notify_one();
    }

    /// Wake `id` when the run of `timer` ends (slots are buffered behind it).
    pub(crate) fn watch_run(&self, timer: TimerId, id: ScheduleId) {
        let mut q = self.queue.lock().expect("queue poisoned");
        if q.runs.len() < MAX_QUEUED {
            q.runs.insert(timer, id);
        }
    }

    /// Schedules queued now (for metrics and tests).
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().expect("queue poisoned").by_wake.len()
    }
}

/// Runs the dispatcher until `stop` changes.
pub(crate) async fn run(
    dispatcher: Arc<Dispatcher>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    scheduler: Arc<Scheduler>,
    mut stop: watch::Receiver<bool>,
) {
    let cluster = store.cluster();
    let owns = |id: ScheduleId| cluster.as_ref().is_none_or(|c| c.owns_timer(TimerId(id.0)));
    {
        let d = dispatcher.clone();
        clock.on_change(Box::new(move || d.wake.notify_one()));
    }
    let mut events = store.subscribe_events();
    let mut shards = cluster.as_ref().map(|c| c.shard_changes());
    let mut next_load = tokio::time::Instant::now();
    // The clock time up to which the last load looked: a clock that jumped past half of
    // it (a suspended machine, a stepped clock, a test's manual clock) loads again at once.
    let mut loaded_until = i64::MIN;
    loop {
        let now = clock.now_us();
        if tokio::time::Instant::now() >= next_load || now > loaded_until - LOOKAHEAD_US / 2 {
            next_load = tokio::time::Instant::now() + LOAD_INTERVAL;
            loaded_until = now + LOOKAHEAD_US;
            load(&dispatcher, store.as_ref(), now, &owns).await;
        }
        // Dispatch everything due, many at once so that the store commits them in groups.
        loop {
            let now = clock.now_us();
            let due: Vec<ScheduleId> = {
                let mut q = dispatcher.queue.lock().expect("queue poisoned");
                let ids: Vec<ScheduleId> = q
                    .by_wake
                    .iter()
                    .take_while(|(wake, _)| *wake <= now)
                    .take(MAX_DISPATCH_BATCH)
                    .map(|(_, id)| *id)
                    .collect();
                for id in &ids {
                    q.remove(*id);
                }
                ids
            };
            if due.is_empty() {
                break;
            }
            let mut running = tokio::task::JoinSet::new();
            for id in due.into_iter().filter(|id| owns(*id)) {
                if running.len() >= MAX_CONCURRENT_DISPATCHES {
                    let _ = running.join_next().await;
                }
                let (d, st, sc) = (dispatcher.clone(), store.clone(), scheduler.clone());
                running.spawn(async move { dispatch(&d, st.as_ref(), &sc, id, now).await });
            }
            while running.join_next().await.is_some() {}
        }
        let now = clock.now_us();
        let sleep = {
            let q = dispatcher.queue.lock().expect("queue poisoned");
            q.by_wake.first().map_or(MAX_SLEEP, |(wake, _)| {
                Duration::from_micros((wake - now).max(0) as u64).min(MAX_SLEEP)
            })
        };
        let shard_change = async {
            match shards.as_mut() {
                Some(s) => s.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = dispatcher.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = tokio::time::sleep_until(next_load) => {}
            changed = shard_change => {
                if changed {
                    next_load = tokio::time::Instant::now();
                }
            }
            e = events.recv() => match e {
                Ok(e) => {
                    if take_events(&dispatcher, clock.as_ref(), &e, &mut events) {
                        next_load = tokio::time::Instant::now();
                    }
                }
                // Missed some: the schedules' own wake times still hold; look again now.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => next_load = tokio::time::Instant::now(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    events = store.subscribe_events();
                }
            },
        }
    }
}

/// Events taken from the store's feed in one turn of the loop, beyond the first.
const MAX_EVENTS_PER_TURN: usize = 1_024;

/// Notes `first` and up to [`MAX_EVENTS_PER_TURN`] more events already queued. Every
/// event of the store comes here (four or five per delivered webhook); taking what is
/// queued without going round the dispatcher's loop spares the loop's sleeps, two timer
/// registrations a turn. True when events were missed (the caller loads again).
fn take_events(
    dispatcher: &Dispatcher,
    clock: &dyn Clock,
    first: &Event,
    events: &mut tokio::sync::broadcast::Receiver<minoots_store::LiveEvent>,
) -> bool {
    note_event(dispatcher, clock, first);
    let mut missed = false;
    for _ in 0..MAX_EVENTS_PER_TURN {
        match events.try_recv() {
            Ok(e) => note_event(dispatcher, clock, &e),
            Err(TryRecvError::Lagged(_)) => missed = true,
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    missed
}

/// A run that ended (its timer settled, failed or was cancelled) makes its schedule due
/// now, so its next slot or buffered run starts without waiting for its wake time.
fn note_event(dispatcher: &Dispatcher, clock: &dyn Clock, e: &Event) {
    if !matches!(
        e.event_type,
        EventType::TimerSettled | EventType::TimerFailed | EventType::TimerCancelled
    ) {
        return;
    }
    let mut q = dispatcher.queue.lock().expect("queue poisoned");
    if let Some(id) = q.runs.remove(&e.timer_id) {
        q.put(id, clock.now_us());
    }
}

/// Fills the queue with the schedules due within the lookahead.
async fn load(
    dispatcher: &Dispatcher,
    store: &dyn Store,
    now_us: i64,
    owns: &impl Fn(ScheduleId) -> bool,
) {
    match store.schedules_due(now_us + LOOKAHEAD_US, MAX_QUEUED).await {
        Ok(due) => {
            let mut q = dispatcher.queue.lock().expect("queue poisoned");
            for (wake, id) in due {
                if owns(id) && !q.wake_of.contains_key(&id) {
                    q.put(id, wake);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "loading the schedules due failed; trying again soon"),
    }
}

async fn dispatch(
    dispatcher: &Dispatcher,
    store: &dyn Store,
    scheduler: &Scheduler,
    id: ScheduleId,
    now_us: i64,
) {
    match store.dispatch_schedule(id).await {
        Ok(d) => {
            let mut q = dispatcher.queue.lock().expect("queue poisoned");
            if q.runs.len() >= MAX_QUEUED {
                // Only a shortcut (each schedule's wake time still holds): start afresh.
                q.runs.clear();
            }
            for t in &d.created {
                scheduler.on_scheduled(DueTimer {
                    fire_at_us: t.fire_at_us,
                    id: t.id,
                });
            }
            // Slots waiting for the active run fire when it ends: watch for its end.
            if let Some(active) = d.schedule.active_timer
                && !d.schedule.progress.buffered.is_empty()
            {
                q.runs.insert(active, id);
            }
            if let Some(wake) = d.schedule.wake_at_us
                && wake <= now_us + LOOKAHEAD_US
            {
                q.put(id, wake);
            }
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => {
            tracing::warn!(schedule = %id, error = %e, "dispatching a schedule failed; trying again");
            dispatcher
                .queue
                .lock()
                .expect("queue poisoned")
                .put(id, now_us + RETRY_AFTER_US);
        }
    }
}

#[allow(dead_code)]
const _LEAD_IS_WITHIN_LOOKAHEAD: () = assert!(DISPATCH_LEAD_US < LOOKAHEAD_US);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use minoots_core::{ManualClock, NewEvent};

    use super::*;

    fn event(e: NewEvent, seq: i64) -> minoots_store::LiveEvent {
        Arc::new(e.into_event(seq, 0))
    }

    #[test]
    fn every_run_ending_in_a_burst_of_events_wakes_its_schedule() {
        let dispatcher = Dispatcher::new();
        let clock = ManualClock::new(5_000_000);
        let (a, b) = (TimerId::new_v7(), TimerId::new_v7());
        dispatcher.watch_run(a, ScheduleId::new_v7());
        dispatcher.watch_run(b, ScheduleId::new_v7());
        let (tx, mut rx) = tokio::sync::broadcast::channel(16);
        let other = TimerId::new_v7();
        let burst = [
            NewEvent::timer_settled("acme", other),
            NewEvent::timer_fired("acme", a, 0, 1, 1),
            NewEvent::timer_settled("acme", a),
            NewEvent::timer_settled("acme", b),
        ];
        for (seq, e) in burst.into_iter().enumerate() {
            tx.send(event(e, seq as i64 + 1)).unwrap();
        }
        let first = rx.try_recv().unwrap();
        assert!(!take_events(&dispatcher, clock.as_ref(), &first, &mut rx));
        // Both runs ended after the first event of the burst: both schedules are due now.
        assert_eq!(dispatcher.queued(), 2);
        let q = dispatcher.queue.lock().unwrap();
        assert!(q.runs.is_empty());
        assert!(q.by_wake.iter().all(|(wake, _)| *wake == 5_000_000));
    }

    #[test]
    fn a_burst_larger_than_the_feed_says_events_were_missed() {
        let dispatcher = Dispatcher::new();
        let clock = ManualClock::new(0);
        let (tx, mut rx) = tokio::sync::broadcast::channel(2);
        let first = NewEvent::timer_settled("acme", TimerId::new_v7()).into_event(1, 0);
        for seq in 2..6 {
            let e = NewEvent::timer_settled("acme", TimerId::new_v7());
            tx.send(event(e, seq)).unwrap();
        }
        assert!(take_events(&dispatcher, clock.as_ref(), &first, &mut rx));
    }
}
