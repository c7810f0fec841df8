//! The scheduler: an in-memory window of the timers due soon, a loader that keeps the
//! window filled from the store, and a dedicated firing thread.
//!
//! The window is a `BTreeSet<(fire time, id)>` holding only scheduled timers due up to the
//! window's horizon (by default the next 60 s); timers further out cost no memory here.
//! The firing thread sleeps until the earliest entry is due, on a condition variable with
//! the thread's timer slack set to 1 ns, so it wakes within tens of microseconds rather
//! than the millisecond granularity of tokio's timer wheel. It is woken early when an
//! earlier timer arrives or the clock is moved. It never fires a timer before the clock
//! says it is due: that is checked right before each timer leaves the index. Between two
//! pops it lets at least `min_fire_interval` pass, so timers due closer together than
//! that are popped together rather than one wake each.
//!
//! Correctness of the window (no timer is ever missed):
//! * `covered` is the highest key such that every scheduled timer with a key at or below it
//!   is known to be in the index or already handed to the firing thread.
//! * Before a refill queries the store for keys in `(covered, target]`, it publishes
//!   `target` as `loading`. A newly created timer is inserted by `on_scheduled` (which runs
//!   after its commit) when its key is at or below `max(covered, loading)`; otherwise the
//!   refill query, which starts after `loading` was published, sees its committed row.
//!   The index is a set, so seeing a timer both ways is harmless.
//! * Firing is idempotent in the store (only `scheduled` timers fire), so a stale entry of
//!   a timer cancelled meanwhile is skipped there.
//! * A timer rescheduled leaves the index at its old key and enters at its new one under
//!   the rule of a create ([`Scheduler::on_rescheduled`]). A stale entry at an old key
//!   (a refill that read the row before the change, or a kernel that has not heard of a
//!   change made through another) fires with `refuse_early`: the store refuses it while
//!   the stored fire time is later (`NotDue`), and the timer is indexed again at that
//!   time, so a move never makes a timer fire early, nor lose it.
//! * When the timers this kernel fires change (several kernels share a PostgreSQL store
//!   and its shards moved, or announcements of other kernels' creates may have been
//!   missed), [`Scheduler::reload`] sets `covered` back to the start: the next refills
//!   read the whole window again (the index is a set, so what it holds is not doubled). A
//!   refill that was running meanwhile is discarded (`generation`), so it cannot set
//!   `covered` past what the reload must read. Entries of shards no longer held stay until
//!   due and are then refused by the store's fence (counted as fenced fires).
//!
//! Must never: spawn a task or OS timer per timer, hold the index lock across an await or
//! a store call, or fire early.
//!
//! Liveness: the firing thread, the dispatcher and the loader are each watched. When one
//! of them panics or ends while the scheduler is not shutting down, the first such failure
//! is recorded with its reason ([`Scheduler::failure`]), [`Scheduler::is_ready`] turns
//! false for good, and [`Scheduler::failed`] wakes, so the process can report it and exit
//! instead of answering "ready" while no timer fires any more.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use minoots_core::{Clock, TimerId};
use minoots_store::{DueTimer, FireOutcome, FireRequest, Store};
use tokio::sync::Notify;
use uuid_max::max_timer_id;

use crate::config::KernelConfig;
use crate::metrics::KernelMetrics;
use crate::outbox::Outbox;

/// The key before every timer: a window covering nothing yet.
fn start_key() -> DueTimer {
    DueTimer {
        fire_at_us: i64::MIN,
        id: TimerId::from_slice(&[0; 16]).expect("16 bytes"),
    }
}

mod uuid_max {
    use minoots_core::TimerId;
    /// The largest id, so `(t, MAX)` covers every timer due at `t`.
    pub fn max_timer_id() -> TimerId {
        TimerId::from_slice(&[0xff; 16]).expect("16 bytes")
    }
}

struct State {
    index: BTreeSet<DueTimer>,
    /// Every scheduled timer with a key at or below this is in `index` or being fired.
    covered: DueTimer,
    /// The upper key of a refill in progress.
    loading: Option<DueTimer>,
    /// Raised by every reload; a refill that started under an older one is discarded.
    generation: u64,
    shutdown: bool,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    clock: Arc<dyn Clock>,
    config: KernelConfig,
    metrics: Arc<KernelMetrics>,
    /// Set once the first refill has completed: overdue timers are then in the index.
    loaded_once: tokio::sync::watch::Sender<bool>,
    /// Wakes the loader early (the index drained below the low-water mark).
    loader_wake: Notify,
    /// Why the scheduler can no longer fire timers: set once, by the first part that died.
    failure: tokio::sync::watch::Sender<Option<String>>,
    /// Faults a test asked for (none unless [`Scheduler::inject_fault`] was called).
    faults: Faults,
}

/// The longest failure reason kept, in bytes: a panic message can be any size, and the
/// reason is logged and served at `/readyz`. 1 KiB holds any message MINOOTS writes.
const MAX_FAILURE_REASON_BYTES: usize = 1024;

impl Shared {
    /// The state, even when a panicking part poisoned its lock: the state is only read
    /// or cleared on the way down, so a poisoned lock must not turn a failure into a hang.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `key` in the index when it is at or below what the window covers (or what a
    /// refill in progress is loading), and wakes the firing thread for a new head. A key
    /// beyond that is left to the refills, which read the committed row.
    fn index_if_covered(&self, key: DueTimer) {
        let mut st = self.state();
        let horizon = st.loading.map_or(st.covered, |l| l.max(st.covered));
        if key <= horizon {
            let new_head = st.index.first().is_none_or(|h| key < *h);
            st.index.insert(key);
            if new_head {
                self.wake.notify_one();
            }
        }
    }

    fn shutting_down(&self) -> bool {
        self.state().shutdown
    }

    /// Records that a part of the scheduler died; only the first reason is kept.
    fn fail(&self, mut reason: String) {
        reason.truncate(reason.floor_char_boundary(MAX_FAILURE_REASON_BYTES));
        let first = self.failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            *f = Some(reason.clone());
            true
        });
        if first {
            tracing::error!(reason = %reason, "the scheduler stopped: timers no longer fire");
        }
    }

    /// What a part's end means: a panic or an end outside shutdown is a failure.
    fn part_ended(&self, part: &str, outcome: Result<(), String>) {
        match outcome {
            Err(message) => self.fail(format!("the {part} stopped: it panicked: {message}")),
            Ok(()) if !self.shutting_down() => self.fail(format!(
                "the {part} stopped: it ended while the kernel was running"
            )),
            Ok(()) => {}
        }
    }
}

/// A fault a test injects to prove that a dead part of the scheduler is noticed. Not for
/// production use: nothing in MINOOTS calls it except tests (and, in debug builds only,
/// the `MINOOTS_TEST_PANIC_FIRING_AFTER` variable of the binary).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The firing thread panics when it has popped this many more timers.
    PanicFiringAfter(u64),
    /// The dispatcher panics when it has taken this many more fires.
    PanicDispatcherAfter(u64),
    /// The loader panics at its next round.
    PanicLoader,
}

/// Countdowns of the injected faults; 0 means off. Checked once per batch (one relaxed
/// atomic load when off), never per timer.
#[derive(Default)]
struct Faults {
    firing_after: AtomicU64,
    dispatcher_after: AtomicU64,
    loader: AtomicBool,
}

impl Faults {
    /// Counts `n` more items down; true when this crossed zero (the fault fires once).
    fn trip(counter: &AtomicU64, n: usize) -> bool {
        let n = n as u64;
        counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 0 && n > 0).then(|| left.saturating_sub(n))
            })
            .is_ok_and(|left| left <= n)
    }
}

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a text message".to_string()
    }
}

/// Runs a future and turns a panic while polling it into `Err(message)`.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

/// Runs `f` when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Spawns a part of the scheduler that is watched: its panic, or its end outside
/// shutdown, is recorded as the scheduler's failure before `on_exit` runs. Aborting the
/// task (the loader at shutdown) records nothing.
fn spawn_watched(
    shared: Arc<Shared>,
    part: &'static str,
    work: impl Future<Output = ()> + Send + 'static,
    on_exit: impl FnMut() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _on_exit = OnDrop(on_exit);
        let outcome = CatchPanic(Box::pin(work)).await;
        shared.part_ended(part, outcome);
    })
}

/// Handle to the window and its threads. Dropping it does not stop them; call `shutdown`.
pub struct Scheduler {
    shared: Arc<Shared>,
    firing_thread: Mutex<Option<JoinHandle<()>>>,
    loader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Scheduler {
    /// Starts the loader and the firing thread. `delivery_notify` is woken whenever firing
    /// created deliveries.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: KernelConfig,
        metrics: Arc<KernelMetrics>,
        delivery_notify: Arc<Notify>,
        sessions: Arc<crate::leases::Sessions>,
    ) -> Arc<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                index: BTreeSet::new(),
                covered: start_key(),
                loading: None,
                generation: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            clock: clock.clone(),
            config: config.clone(),
            metrics,
            loaded_once: tokio::sync::watch::Sender::new(false),
            loader_wake: Notify::new(),
            failure: tokio::sync::watch::Sender::new(None),
            faults: Faults::default(),
        });
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        clock.on_change(Box::new(move || {
            if let Some(s) = weak.upgrade() {
                let _guard = s.state.lock();
                s.wake.notify_all();
                s.loader_wake.notify_one();
            }
        }));

        let outbox = Arc::new(Outbox {
            queue: Mutex::new(Vec::new()),
            room: Condvar::new(),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            max_queued: config.fire_batch * config.max_fire_batches_in_flight,
        });
        // A dispatcher that is gone closes the outbox, so the firing thread does not wait
        // for room forever (it stops at its next push) and shutdown can join it.
        let dispatcher = spawn_watched(
            shared.clone(),
            "dispatcher",
            dispatch_fires(
                store.clone(),
                shared.clone(),
                outbox.clone(),
                delivery_notify,
                sessions,
            ),
            {
                let outbox = outbox.clone();
                move || outbox.close()
            },
        );
        let loader = spawn_watched(
            shared.clone(),
            "loader",
            run_loader(store, shared.clone()),
            || {},
        );
        let thread_shared = shared.clone();
        let firing_thread = std::thread::Builder::new()
            .name("minoots-firing".into())
            .spawn(move || {
                // Closes the outbox however the loop ends (even by a panic), so the
                // dispatcher and shutdown never wait for a thread that is gone. The
                // failure is recorded first, so it is the reason reported.
                let _close = OnDrop(|| outbox.close());
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    firing_loop(&thread_shared, &outbox)
                }))
                .map_err(|payload| panic_message(&*payload));
                thread_shared.part_ended("firing thread", outcome);
            })
            .expect("spawn the firing thread");
        Arc::new(Self {
            shared,
            firing_thread: Mutex::new(Some(firing_thread)),
            loader: Mutex::new(Some(loader)),
            dispatcher: Mutex::new(Some(dispatcher)),
        })
    }

    /// Called after a timer's creation committed: puts it in the window if it belongs there.
    pub fn on_scheduled(&self, key: DueTimer) {
        self.shared.index_if_covered(key);
    }

    /// Called after a timer's new fire time committed: it leaves the window at its old
    /// time and enters it at its new one if that is within what the window covers
    /// (otherwise a refill loads it when the window reaches it). An entry at the old time
    /// that a refill running meanwhile puts back is refused by the store when it fires
    /// ([`FireOutcome::NotDue`]), and the timer is indexed again at its stored time.
    pub fn on_rescheduled(&self, old: DueTimer, new: DueTimer) {
        self.shared.state().index.remove(&old);
        self.shared.index_if_covered(new);
    }

    /// Called after a cancel committed: the timer leaves the window.
    /// Reads the whole window from the store again (see the module's comment).
    pub fn reload(&self) {
        let mut st = self.shared.state();
        st.generation = st.generation.wrapping_add(1);
        st.covered = start_key();
        st.loading = None;
        drop(st);
        self.shared.loader_wake.notify_one();
    }

    pub fn on_cancelled(&self, key: DueTimer) {
        self.shared
            .state
            .lock()
            .expect("scheduler poisoned")
            .index
            .remove(&key);
    }

    /// True once the first refill finished (every overdue timer is queued for firing), and
    /// as long as no part of the scheduler died.
    pub fn is_ready(&self) -> bool {
        *self.shared.loaded_once.borrow() && self.shared.failure.borrow().is_none()
    }

    /// How long the window's earliest timer has been due at `now_us` without being
    /// fired, in microseconds (0 when none is overdue). One lock and the index's first
    /// entry: cheap enough for every scrape.
    pub fn overdue_us(&self, now_us: i64) -> i64 {
        let st = self.shared.state.lock().expect("scheduler poisoned");
        st.index
            .first()
            .map_or(0, |first| (now_us - first.fire_at_us).max(0))
    }

    /// Why the scheduler can no longer fire timers, once a part of it died.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.borrow().clone()
    }

    /// Waits until a part of the scheduler died, and returns why.
    pub async fn failed(&self) -> String {
        let mut rx = self.shared.failure.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives as long as `self`: this cannot happen while we wait.
            Err(_) => std::future::pending().await,
        }
    }

    /// Arms a fault for a test (see [`Fault`]).
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        let f = &self.shared.faults;
        match fault {
            Fault::PanicFiringAfter(n) => f.firing_after.store(n, Ordering::Relaxed),
            Fault::PanicDispatcherAfter(n) => f.dispatcher_after.store(n, Ordering::Relaxed),
            Fault::PanicLoader => {
                f.loader.store(true, Ordering::Relaxed);
                self.shared.loader_wake.notify_one();
            }
        }
    }

    /// Waits until [`Scheduler::is_ready`].
    pub async fn ready(&self) {
        let mut rx = self.shared.loaded_once.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Timers currently held in memory.
    pub fn window_len(&self) -> usize {
        self.shared
            .state
            .lock()
            .expect("scheduler poisoned")
            .index
            .len()
    }

    /// Stops the firing thread and the loader; fires already handed over complete first.
    /// Also after a failure (a part that panicked may have poisoned the state's lock).
    pub async fn shutdown(&self) {
        {
            let mut st = self.shared.state();
            st.shutdown = true;
            self.shared.wake.notify_all();
        }
        self.shared.loader_wake.notify_one();
        let thread = self.firing_thread.lock().expect("poisoned").take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let loader = self.loader.lock().expect("poisoned").take();
        if let Some(l) = loader {
            l.abort();
            let _ = l.await;
        }
        // The firing thread dropped its sender: the dispatcher drains and ends.
        let dispatcher = self.dispatcher.lock().expect("poisoned").take();
        if let Some(d) = dispatcher {
            let _ = d.await;
        }
    }
}

/// Lowers this thread's timer slack to 1 ns so timed waits wake on time (Linux only).
fn set_precise_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Asks for the lowest real-time priority (SCHED_FIFO 1) for this thread, so it runs as
/// soon as it wakes instead of waiting for a time slice behind the store's threads. The
/// thread only pops due timers and sleeps, so it cannot hog a core. Without the privilege
/// (CAP_SYS_NICE) it stays a normal thread; that costs precision under load, not safety.
fn set_realtime_priority(enabled: bool) {
    if !enabled {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: changes the scheduling policy of the calling thread only.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if rc != 0 {
            tracing::info!(
                error = %std::io::Error::last_os_error(),
                "firing thread runs at normal priority (no permission for SCHED_FIFO)"
            );
        }
    }
}

fn firing_loop(shared: &Shared, outbox: &Outbox) {
    set_precise_timer_slack();
    set_realtime_priority(shared.config.realtime_firing_thread);
    let max_sleep = shared.config.max_sleep;
    let batch_max = shared.config.fire_batch;
    let low_water = shared.config.load_batch / 2;
    let min_interval = shared.config.min_fire_interval;
    let mut last_pop: Option<std::time::Instant> = None;
    let mut guard = shared.state.lock().expect("scheduler poisoned");
    loop {
        if guard.shutdown {
            return;
        }
        let Some(head) = guard.index.first().copied() else {
            guard = shared
                .wake
                .wait_timeout(guard, max_sleep)
                .expect("scheduler poisoned")
                .0;
            continue;
        };
        let now = shared.clock.now_us();
        let until_due = Duration::from_micros((head.fire_at_us - now).max(0) as u64);
        // At most one pop per `min_fire_interval` (in real time, whatever the scheduler's
        // clock): a timer due sooner after the last pop waits for the rest of the
        // interval, in the same sleep, and leaves with everything due by then.
        let rest_of_interval =
            last_pop.map_or(Duration::ZERO, |t| min_interval.saturating_sub(t.elapsed()));
        let wait = until_due.max(rest_of_interval).min(max_sleep);
        if !wait.is_zero() {
            guard = shared
                .wake
                .wait_timeout(guard, wait)
                .expect("scheduler poisoned")
                .0;
            continue;
        }
        last_pop = Some(std::time::Instant::now());
        // Everything due now leaves the index, oldest first, each checked against the clock.
        let mut batch = Vec::with_capacity(batch_max.min(guard.index.len()));
        while batch.len() < batch_max {
            match guard.index.first() {
                Some(k) if k.fire_at_us <= now => {
                    let k = guard.index.pop_first().expect("first exists");
                    batch.push(k);
                }
                _ => break,
            }
        }
        let remaining = guard.index.len();
        drop(guard);
        if Faults::trip(&shared.faults.firing_after, batch.len()) {
            panic!(
                "injected fault: the firing thread panics with {} timers popped",
                batch.len()
            );
        }
        // A clock stepped back since `now` must not record a firing before its due time.
        let fired_at_us = shared.clock.now_us().max(now);
        let mut requests = Vec::with_capacity(batch.len());
        for k in &batch {
            debug_assert!(k.fire_at_us <= fired_at_us, "never fire early");
            shared
                .metrics
                .firing_lateness
                .record(fired_at_us - k.fire_at_us);
            requests.push(FireRequest {
                timer_id: k.id,
                fired_at_us,
                refuse_early: true,
            });
        }
        KernelMetrics::inc(&shared.metrics.timers_fired, requests.len() as u64);
        if remaining < low_water {
            shared.loader_wake.notify_one();
        }
        // Waits only when the store is far behind (the outbox is full).
        if !outbox.push(requests) {
            return;
        }
        guard = shared.state.lock().expect("scheduler poisoned");
    }
}

/// Commits fires in the order the firing thread popped them, one transaction at a time,
/// each holding everything queued meanwhile up to `fire_batch`, so timers fire and their
/// events appear in due order. The bound keeps a burst of due timers from holding the
/// store's writer for long: claims and attempt reports queued behind a fire commit with
/// it, so deliveries of the first timers run while later ones are still being fired.
/// (Merging up to 16,384 fires per transaction made a burst of 100,000 timers occupy the
/// writer for a second before the first delivery was handed out.)
async fn dispatch_fires(
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    delivery_notify: Arc<Notify>,
    sessions: Arc<crate::leases::Sessions>,
) {
    let max_merged = shared.config.fire_batch;
    // Fires that failed in a row (the store cannot write): the pause before the next try
    // doubles with each, so a read-only or full disk costs a try every few seconds.
    let mut failures = 0u32;
    loop {
        let batch = outbox.take(max_merged);
        if Faults::trip(&shared.faults.dispatcher_after, batch.len()) {
            panic!(
                "injected fault: the dispatcher panics with {} fires taken",
                batch.len()
            );
        }
        if batch.is_empty() {
            if outbox.closed.load(Ordering::Acquire)
                && outbox.queue.lock().expect("outbox poisoned").is_empty()
            {
                return;
            }
            outbox.ready.notified().await;
            continue;
        }
        let fired = fire_with_retry(
            store.as_ref(),
            &shared,
            batch,
            &delivery_notify,
            &sessions,
            failures,
        )
        .await;
        if fired {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
        }
    }
}

/// The pause after the first failed fire; it doubles per failure in a row.
const FIRE_RETRY_FIRST: Duration = Duration::from_millis(200);
/// The longest pause between tries of a failing fire.
const FIRE_RETRY_MAX: Duration = Duration::from_secs(5);

/// The pause after `failures_before + 1` failed fires in a row.
fn fire_retry_pause(failures_before: u32) -> Duration {
    FIRE_RETRY_FIRST
        .saturating_mul(1u32 << failures_before.min(8))
        .min(FIRE_RETRY_MAX)
}

/// Fires a batch; on a store error the timers go back to the window and are tried again
/// after a pause that grows with the failures in a row (they are still `scheduled` in the
/// store, so nothing is lost). True when the batch was fired.
async fn fire_with_retry(
    store: &dyn Store,
    shared: &Shared,
    batch: Vec<FireRequest>,
    notify: &Notify,
    sessions: &crate::leases::Sessions,
    failures_before: u32,
) -> bool {
    // An executor with room gets the deliveries in the fire's own transaction. The fire
    // does not know how many actions its timers have: room for two each, and what the
    // claim leaves (it fills up, or a timer is not reached) the session claims itself.
    let at_fire = sessions.claim_for(batch.len().saturating_mul(2));
    let claim = at_fire.as_ref().map(|c| c.claim.clone());
    match store.fire_and_claim(batch.clone(), claim).await {
        Ok((outcomes, claimed)) => {
            crate::spans::fired(&batch, &outcomes);
            // The lease sessions claim what the fire did not: deliveries of timers it did
            // not reach, or all of them when its claim was full (more may be due).
            let full = at_fire
                .as_ref()
                .is_some_and(|c| claimed.len() >= c.claim.limit);
            let claimed_timers: std::collections::HashSet<TimerId> =
                claimed.iter().map(|d| d.delivery.timer_id).collect();
            let left = outcomes.iter().any(|o| {
                matches!(o, FireOutcome::Fired { timer_id, deliveries, .. }
                    if *deliveries > 0 && !claimed_timers.contains(timer_id))
            });
            if let Some(c) = at_fire {
                c.hand_over(store, notify, &shared.metrics, claimed).await;
            }
            if left || full {
                notify.notify_waiters();
            }
            let fenced = outcomes
                .iter()
                .filter(|o| matches!(o, FireOutcome::Fenced { .. }))
                .count();
            // Moved later after the window read them: back in at their stored time.
            for o in &outcomes {
                if let FireOutcome::NotDue {
                    timer_id,
                    fire_at_us,
                } = o
                {
                    KernelMetrics::inc(&shared.metrics.fires_not_due, 1);
                    shared.index_if_covered(DueTimer {
                        fire_at_us: *fire_at_us,
                        id: *timer_id,
                    });
                }
            }
            if fenced > 0 {
                // Their shards belong to another kernel now, which fires them.
                KernelMetrics::inc(&shared.metrics.fires_fenced, fenced as u64);
                tracing::info!(
                    fenced,
                    "timers of shards another kernel holds now were left to it"
                );
            }
            true
        }
        Err(e) => {
            KernelMetrics::inc(&shared.metrics.fire_errors, 1);
            crate::metrics::note_store_error(&e);
            let pause = fire_retry_pause(failures_before);
            // One error per outage, then quieter reminders at each (growing) pause.
            if failures_before == 0 {
                tracing::error!(error = %e, timers = batch.len(), "firing failed; retrying shortly");
            } else {
                tracing::warn!(error = %e, timers = batch.len(), failures = failures_before + 1,
                    retry_in_ms = pause.as_millis() as u64, "firing still failing");
            }
            tokio::time::sleep(pause).await;
            // Back into the window. The request carries the fired time, not the due time;
            // the fired time is at or after it, so the timer still never fires early.
            let mut st = shared.state.lock().expect("scheduler poisoned");
            for f in &batch {
                st.index.insert(DueTimer {
                    fire_at_us: f.fired_at_us,
                    id: f.timer_id,
                });
            }
            shared.wake.notify_one();
            false
        }
    }
}

async fn run_loader(store: Arc<dyn Store>, shared: Arc<Shared>) {
    let cfg = shared.config.clone();
    let window_us = cfg.window.as_micros() as i64;
    loop {
        if shared.state.lock().expect("scheduler poisoned").shutdown {
            return;
        }
        if shared.faults.loader.swap(false, Ordering::Relaxed) {
            panic!("injected fault: the loader panics");
        }
        let target = DueTimer {
            fire_at_us: shared.clock.now_us().saturating_add(window_us),
            id: max_timer_id(),
        };
        let (after, room, generation) = {
            let mut st = shared.state.lock().expect("scheduler poisoned");
            let room = cfg
                .max_window_timers
                .saturating_sub(st.index.len())
                .min(cfg.load_batch);
            if room > 0 && target > st.covered {
                st.loading = Some(target);
            }
            (st.covered, room, st.generation)
        };
        let mut full_batch = false;
        if room > 0 && target > after {
            let from = (after.fire_at_us != i64::MIN).then_some(after);
            match store.load_due_timers(from, target.fire_at_us, room).await {
                Ok(rows) => {
                    full_batch = rows.len() == room;
                    let mut st = shared.state.lock().expect("scheduler poisoned");
                    if st.generation != generation {
                        // A reload came meanwhile: read again from its start.
                        continue;
                    }
                    let old_head = st.index.first().copied();
                    st.covered = if full_batch {
                        *rows.last().expect("full batch")
                    } else {
                        target
                    };
                    st.index.extend(rows);
                    st.loading = None;
                    if st.index.first().copied() != old_head {
                        shared.wake.notify_one();
                    }
                    if !full_batch {
                        shared.loaded_once.send_replace(true);
                    }
                }
                Err(e) => {
                    shared.state.lock().expect("scheduler poisoned").loading = None;
                    tracing::error!(error = %e, "loading due timers failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        } else if room == 0 {
            // The index is full: whatever is overdue is in it, oldest first.
            shared.loaded_once.send_replace(true);
        }
        if full_batch {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.refill_interval) => {}
            _ = shared.loader_wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_fire_is_retried_after_doubling_pauses_capped_at_five_seconds() {
        let pauses: Vec<u128> = (0..8).map(|f| fire_retry_pause(f).as_millis()).collect();
        assert_eq!(pauses, [200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]);
        assert_eq!(fire_retry_pause(u32::MAX), FIRE_RETRY_MAX);
    }
}
