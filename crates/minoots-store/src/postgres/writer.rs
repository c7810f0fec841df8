//! Group commit for the PostgreSQL backend: one writer task per store handle takes the
//! writes queued meanwhile (at most `max_batch_ops`), runs them in one transaction on one
//! connection, commits once, and only then answers each caller. A thousand concurrent
//! creates cost one transaction, a handful of statements and one WAL flush instead of a
//! thousand of each; and, as every transaction that appends events holds the event log's
//! counter row from numbering to commit (`log.rs`), one commit per group is also what lets
//! writes that append events go faster than one WAL flush each.
//!
//! **Creates first, as one.** The creates of a group run together, before every other
//! write of the group, as one multi-row create (`create.rs`): a few statements whatever
//! their number. Being first also fixes the lock order: a create takes its tenants' create
//! locks before any row lock of its group, so creates cannot deadlock with the cancels
//! and fires of another group.
//!
//! **Reports next, as one.** The attempt reports of a group run together after the
//! creates, as one multi-row report (`reports.rs`), in delivery order.
//!
//! **One write's failure is its own.** Every write decides its refusals (not found,
//! conflict, fenced, quota, idempotency mismatch) before its first change, so a refusal
//! leaves the transaction as it was and the group commits without it. A write that fails
//! otherwise — a statement error (PostgreSQL then aborts the whole transaction), a
//! conflict with another transaction, a refusal after a change — is taken out of its
//! group: the group is rolled back and runs again without it, and the write runs alone,
//! in a transaction of its own with its own retries (`tx.rs`), and is answered from
//! there. (If the multi-row create or report fails, every create or report of the group runs
//! alone.) Each
//! such round takes out at least one write, so a group runs at most once per write it
//! holds, plus at most `MAX_ATTEMPTS` times after lost connections. Only what fails every
//! write alike fails the group: the disk refusing writes, a connection lost again and
//! again, a COMMIT whose fate is unknown.
//!
//! **Several handles.** Groups of different handles (kernels) lock rows in the order of
//! their writes, so two of them can deadlock; PostgreSQL then cancels one statement after
//! `deadlock_timeout` (1 s by default) and that write runs alone. [`order`] makes it
//! rare for the writes that most often meet: reports on sibling deliveries.
//!
//! **Two writers per handle.** The delivery path (fires, claims, lease renewals) has a
//! writer of its own, so a delivery's fire and claim never queue behind a group of
//! creates or reports: what the receiver of a webhook waits for is two short
//! transactions, not the writer's whole backlog. The two commit concurrently as two
//! handles would (row locks, the event log's counter row); measured with W2 on
//! PostgreSQL (docs/benchmarks.md, "Two writers").
//!
//! **Bounds.** The queue holds `writer_queue_capacity` writes; callers beyond it wait
//! (backpressure). A group holds at most `max_batch_ops` writes, which bounds its
//! transaction's time, its locks and its memory. A writer uses one pooled connection at a
//! time; writes running alone take their own.
//!
//! Also the test hook [`WriterHold`], which pauses the writer between two groups so that
//! the writes sent meanwhile are committed as one.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::create::CreateJob;
use super::errors::{TxError, Verdict};
use super::reports::{ReportJob, run_reports};
use super::tx::{Failure, MAX_ATTEMPTS, Shared, WriteOp, gave_up};
use crate::types::{StoreError, StoreResult};

/// A queued write.
pub(super) enum Job {
    /// A create, run with the other creates of its group as one.
    Create(Box<CreateJob>),
    /// An attempt report, run with the other reports of its group as one.
    Report(Box<ReportJob>),
    /// Any other write, and the row it locks first when it names one (see [`order`]).
    Other(Box<dyn WriteOp>, Option<Uuid>),
}

impl Job {
    fn into_op(self) -> Box<dyn WriteOp> {
        match self {
            Job::Create(c) => c,
            Job::Report(r) => r,
            Job::Other(op, _) => op,
        }
    }
}

/// Puts a group in the order it runs: creates first (see the module comment), then the
/// writes that name no row, in the order they came, then those that do, by that row's
/// id. Two groups on two handles that lock the same rows then mostly lock them in the
/// same order: deliveries are numbered in the order of their timers, so reports and
/// releases ordered by delivery also take their timers' locks in one order. (Where the
/// orders still cross, PostgreSQL breaks the deadlock after `deadlock_timeout`, 1 s by
/// default, and the write it cancels runs alone.)
fn order(group: &mut [Job]) {
    group.sort_by_key(|job| match job {
        Job::Create(_) => (0, None),
        Job::Report(r) => (1, Some(r.delivery_id())),
        Job::Other(_, None) => (2, None),
        Job::Other(_, key) => (3, *key),
    });
}

pub(super) enum Msg {
    Write(Job),
    /// Pause between two groups: say so on the first channel, go on when the second is
    /// dropped.
    Hold(oneshot::Sender<()>, oneshot::Receiver<()>),
    Stop,
}

/// How one run of a group ended.
enum Round {
    Committed,
    /// These writes (indexes into the group) run alone; the rest runs again.
    TakeOut(Vec<usize>),
    /// Run the whole group again (a lost connection, a conflict outside any one write).
    Again(String),
    /// Every write of the group is answered this.
    Failed(StoreError),
}

/// The writer task: takes what is queued, up to `max_batch`, and runs it as one group.
pub(super) async fn writer_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
) {
    let mut stop = false;
    while !stop {
        let mut group = Vec::new();
        match rx.recv().await {
            Some(Msg::Write(job)) => group.push(job),
            Some(Msg::Hold(paused, release)) => {
                hold(paused, release).await;
                continue;
            }
            Some(Msg::Stop) | None => break,
        }
        // A hold ends the group: the writes queued after it wait for it.
        let mut held = None;
        while group.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Write(job)) => group.push(job),
                Ok(Msg::Hold(paused, release)) => {
                    held = Some((paused, release));
                    break;
                }
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        run_group(&shared, group).await;
        if let Some((paused, release)) = held {
            hold(paused, release).await;
        }
    }
    // Writes still queued are answered `Closed` by dropping them.
    rx.close();
}

async fn hold(paused: oneshot::Sender<()>, release: oneshot::Receiver<()>) {
    let _ = paused.send(());
    let _ = release.await;
}

/// Runs `group` in one transaction (see the module comment) and answers every write.
async fn run_group(shared: &Arc<Shared>, mut group: Vec<Job>) {
    order(&mut group);
    let mut attempt = 1;
    while !group.is_empty() {
        match try_group(shared, &mut group, attempt).await {
            Round::Committed => {
                for job in group {
                    job.into_op().answer(Ok(()));
                }
                return;
            }
            Round::TakeOut(mut out) => {
                out.sort_unstable();
                for i in out.into_iter().rev() {
                    let op = group.remove(i).into_op();
                    let shared = shared.clone();
                    tokio::spawn(async move { shared.run_alone(op).await });
                }
            }
            Round::Again(why) => {
                if attempt >= MAX_ATTEMPTS {
                    let e = gave_up(&why);
                    for job in group {
                        job.into_op().answer(Err(e.clone()));
                    }
                    return;
                }
                attempt += 1;
            }
            Round::Failed(e) => {
                tracing::warn!(error = %e, writes = group.len(), "store: a group commit failed");
                for job in group {
                    job.into_op().answer(Err(e.clone()));
                }
                return;
            }
        }
    }
}

/// One run of a group.
async fn try_group(shared: &Shared, group: &mut [Job], attempt: u32) -> Round {
    let mut lent = match shared.lend(attempt).await {
        Ok(lent) => lent,
        Err(e) => return Round::Failed(e),
    };
    let conn = lent.conn();
    let started = std::time::Instant::now();
    // Err((the failure, the writes it takes out)).
    let result: Result<(), (Failure, Vec<usize>)> = async {
        let mut w = shared.begin(conn).await.map_err(|f| (f, Vec::new()))?;
        let creates: Vec<usize> = (0..group.len())
            .filter(|&i| matches!(group[i], Job::Create(_)))
            .collect();
        if !creates.is_empty() {
            let mut jobs: Vec<&mut CreateJob> = group
                .iter_mut()
                .filter_map(|j| match j {
                    Job::Create(c) => Some(&mut **c),
                    _ => None,
                })
                .collect();
            if let Err(e) = super::create::run_creates(&mut w, &mut jobs).await {
                return Err((w.abandon(e.verdict()).await, creates));
            }
        }
        let reports: Vec<usize> = (0..group.len())
            .filter(|&i| matches!(group[i], Job::Report(_)))
            .collect();
        if !reports.is_empty() {
            let mut jobs: Vec<&mut ReportJob> = group
                .iter_mut()
                .filter_map(|j| match j {
                    Job::Report(r) => Some(&mut **r),
                    _ => None,
                })
                .collect();
            if let Err(e) = run_reports(&mut w, &mut jobs).await {
                return Err((w.abandon(e.verdict()).await, reports));
            }
        }
        for (i, job) in group.iter_mut().enumerate() {
            let Job::Other(op, _) = job else { continue };
            let (events, before) = (w.events.len(), w.state);
            match op.run(&mut w).await {
                Ok(()) => {}
                // A refusal that left the transaction as it was: the group goes on
                // without it.
                Err(TxError::Store(_)) if w.state == before => w.events.truncate(events),
                Err(e) => {
                    if matches!(e, TxError::Store(_)) {
                        tracing::debug!("store: a write refused after a change runs alone");
                    }
                    return Err((w.abandon(e.verdict()).await, vec![i]));
                }
            }
        }
        w.commit(&shared.log).await.map_err(|f| (f, Vec::new()))
    }
    .await;
    shared
        .writer_stats
        .record_commit(group.len(), started.elapsed());
    let (failure, culprits) = match result {
        Ok(()) => return Round::Committed,
        Err(failed) => failed,
    };
    if failure.unusable {
        lent.mark_broken();
    }
    match failure.verdict {
        // The disk refuses every write alike; and a COMMIT of unknown fate is unknown for
        // every write of the group.
        Verdict::Answer(e @ StoreError::CannotWrite(_)) => Round::Failed(e),
        Verdict::Answer(e) if culprits.is_empty() => Round::Failed(e),
        Verdict::Reconnect(why) => Round::Again(why),
        Verdict::Retry(why) if culprits.is_empty() => Round::Again(why),
        Verdict::Retry(_) | Verdict::Answer(_) => Round::TakeOut(culprits),
    }
}

/// The writer of a store handle: its queue, and its task, waited for on close.
pub(super) struct Writer {
    pub(super) queue: mpsc::Sender<Msg>,
    pub(super) task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn start(shared: Arc<Shared>, queue_capacity: usize, max_batch: usize) -> Self {
        let (queue, rx) = mpsc::channel(queue_capacity);
        let task = tokio::spawn(writer_loop(shared, rx, max_batch));
        Self {
            queue,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Queues `job`; `Closed` once the writer stopped.
    pub(super) async fn send(&self, job: Job) -> StoreResult<()> {
        self.queue
            .send(Msg::Write(job))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Finishes the writes queued before this call and stops the writer.
    pub(super) async fn stop(&self) {
        let _ = self.queue.send(Msg::Stop).await;
        let task = self.task.lock().expect("writer poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The writer paused between two groups (see [`crate::PostgresStore::hold_writer`]).
/// Writes sent while it is held queue up; dropping it lets the writer take them as one
/// group of up to `max_batch_ops` writes.
#[doc(hidden)]
pub struct WriterHold {
    /// Each paused writer: dropping its sender wakes it; its queue.
    held: Vec<(oneshot::Sender<()>, mpsc::Sender<Msg>)>,
}

impl WriterHold {
    /// Writes waiting in the held writers' queues.
    pub fn queued(&self) -> usize {
        self.held
            .iter()
            .map(|(_, q)| q.max_capacity() - q.capacity())
            .sum()
    }

    /// One hold of both writers of a handle.
    pub(super) fn and(mut self, other: WriterHold) -> WriterHold {
        self.held.extend(other.held);
        self
    }
}

impl Writer {
    pub(super) async fn hold(&self) -> StoreResult<WriterHold> {
        let (paused_tx, paused_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.queue
            .send(Msg::Hold(paused_tx, release_rx))
            .await
            .map_err(|_| StoreError::Closed)?;
        paused_rx.await.map_err(|_| StoreError::Closed)?;
        Ok(WriterHold {
            held: vec![(release_tx, self.queue.clone())],
        })
    }
}
