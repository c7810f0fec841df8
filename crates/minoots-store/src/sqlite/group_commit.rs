//! One group commit of the writer thread: the writes of a batch run in one transaction and
//! are answered only after the commit.
//!
//! Every write decides its refusals (quota, conflict, fenced, not found, idempotency
//! mismatch, an invariant) before its first change, so a refused write has changed nothing
//! and the other writes of its group commit as if it had not been there. Only a write that
//! fails *after* changing something (an I/O error part-way, corrupt data found late) fails
//! its whole group, which is rolled back and answered with the reason; callers retry. No
//! savepoint per write: with thousands of writes per transaction SQLite's savepoint
//! bookkeeping took 90 % of the writer (docs/benchmarks.md), and checking first makes it
//! unnecessary for every refusal.
//!
//! Also the test hook [`WriterHold`], which pauses the writer between two batches so that
//! the writes sent meanwhile are committed as one group.

use minoots_core::Clock;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use super::write_ctx::{BatchLog, HeldStatements};
use super::{Completion, SqliteStore, WriteCtx, WriteJob, WriterMsg};
use crate::types::{StoreError, StoreResult};

/// What every write of a group that could not be committed is told.
fn group_failure(cause: StoreError) -> StoreError {
    match cause {
        // The disk refused the write: every caller learns why (disk full, read-only) and
        // that retrying later will do.
        e @ StoreError::CannotWrite(_) => e,
        _ => StoreError::Unavailable(
            "the store's transaction failed, so nothing of its group commit was stored; retry"
                .into(),
        ),
    }
}

/// Runs `batch` in one transaction and answers every write after the commit (or with the
/// reason nothing was committed).
pub(super) fn run_batch(
    conn: &Connection,
    held: &HeldStatements<'_>,
    batch: &mut Vec<WriteJob>,
    events: &broadcast::Sender<crate::LiveEvent>,
    clock: &dyn Clock,
    meter_bucket_us: i64,
) {
    // Unchecked: the held statements borrow the connection for the writer's life, and
    // the writer thread is the only user of this connection.
    let tx = match Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "store: cannot begin a write transaction");
            let err = StoreError::from(e);
            for job in batch.drain(..) {
                let (done, _) = job(Err(err.clone()));
                done(Ok(()));
            }
            return;
        }
    };
    let now_us = clock.now_us();
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut log = BatchLog::default();
    let mut jobs = batch.drain(..);
    while let Some(job) = jobs.next() {
        let mark = log.mark();
        let changes_before = tx.total_changes();
        let (done, error) = job(Ok(&mut WriteCtx::with_held(&tx, now_us, &mut log, held)));
        completions.push(done);
        let Some(e) = error else { continue };
        log.truncate(mark);
        // A refusal changed nothing: the group goes on. A failure after a change (or one
        // that made SQLite roll the transaction back itself) cannot be undone alone.
        if tx.total_changes() == changes_before && !tx.is_autocommit() {
            continue;
        }
        let err = group_failure(e);
        tracing::warn!(error = %err, writes = completions.len(), "store: a write failed after changing something; its group commit is rolled back");
        for job in jobs.by_ref() {
            let (d, _) = job(Err(err.clone()));
            completions.push(d);
        }
        drop(tx); // rolls back, unless SQLite already did
        for d in completions {
            d(Err(err.clone()));
        }
        return;
    }
    drop(jobs);
    // The batch's counts, moved once per tenant; failing here fails the group
    // as a write that failed after its change would.
    if let Err(e) = log.flush_counts(held, now_us, meter_bucket_us) {
        let err = group_failure(StoreError::from(e));
        tracing::warn!(error = %err, writes = completions.len(), "store: the batch's status counts could not be written; its group commit is rolled back");
        drop(tx);
        for d in completions {
            d(Err(err.clone()));
        }
        return;
    }
    match tx.commit() {
        Ok(()) => {
            for e in log.events {
                let _ = events.send(std::sync::Arc::new(e));
            }
            for done in completions {
                done(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store: commit failed; the batch is rolled back");
            let err = StoreError::from(e);
            for done in completions {
                done(Err(err.clone()));
            }
        }
    }
}

/// The writer thread paused between two batches (see [`SqliteStore::hold_writer`]).
/// Writes sent while it is held queue up; dropping it lets the writer take them, as one
/// group commit of up to `max_batch_ops` writes.
#[doc(hidden)]
pub struct WriterHold {
    /// Dropping it wakes the paused writer.
    _release: std::sync::mpsc::SyncSender<()>,
    store: SqliteStore,
}

impl WriterHold {
    /// Writes waiting in the writer's queue.
    pub fn queued(&self) -> usize {
        let w = &self.store.inner.writer;
        w.max_capacity() - w.capacity()
    }
}

impl SqliteStore {
    /// Pauses the writer thread once it has committed what it holds; returns when it is
    /// paused. For tests that need several writes in one group commit.
    #[doc(hidden)]
    pub async fn hold_writer(&self) -> StoreResult<WriterHold> {
        let (paused_tx, paused_rx) = oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let pause: super::Setting = Box::new(move |_conn| {
            let _ = paused_tx.send(());
            // Returns when the hold is dropped.
            let _ = release_rx.recv();
        });
        self.inner
            .writer
            .send(WriterMsg::Setting(pause))
            .await
            .map_err(|_| StoreError::Closed)?;
        paused_rx.await.map_err(|_| StoreError::Closed)?;
        Ok(WriterHold {
            _release: release_tx,
            store: self.clone(),
        })
    }
}
