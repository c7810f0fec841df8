//! One group commit of the writer thread: the writes of a batch run in one transaction,
//! each inside its own savepoint, and are answered only after the commit.
//!
//! A write that fails is rolled back to its savepoint, alone, whether it failed before or
//! after writing: one caller's refusal (quota, conflict, fenced, not found, idempotency
//! mismatch) or a fault found part-way (unreadable data, a constraint) never fails the
//! other writes of its group. Only trouble of the transaction itself fails the whole
//! group: SQLite rolling the transaction back by itself (a full disk, an I/O error), a
//! savepoint that cannot be opened or rolled back, or a failed commit. Each write still
//! checks before it writes, so a refusal rolls back nothing in the common case.
//!
//! Also the test hook [`WriterHold`], which pauses the writer between two batches so that
//! the writes sent meanwhile are committed as one group.

use minoots_core::{Clock, Event};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use super::{Completion, SqliteStore, WriteCtx, WriteJob, WriterMsg};
use crate::types::{StoreError, StoreResult};

const SAVEPOINT: &str = "SAVEPOINT minoots_write";
const RELEASE: &str = "RELEASE minoots_write";
const ROLLBACK: &str = "ROLLBACK TO minoots_write";

/// Runs one savepoint statement, prepared once per connection.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

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

/// Runs `batch` in one transaction, a savepoint per write, and answers every write after
/// the commit (or with the reason nothing was committed).
pub(super) fn run_batch(
    conn: &mut Connection,
    batch: &mut Vec<WriteJob>,
    events: &broadcast::Sender<Event>,
    clock: &dyn Clock,
) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
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
    let mut pending_events: Vec<Event> = Vec::new();
    let mut jobs = batch.drain(..);
    while let Some(job) = jobs.next() {
        let mark = pending_events.len();
        let trouble = match exec(&tx, SAVEPOINT) {
            Err(e) => {
                // This write cannot be isolated: it is not run, and the group fails.
                let err = StoreError::from(e);
                let (done, _) = job(Err(err.clone()));
                completions.push(done);
                Some(err)
            }
            Ok(()) => {
                let (done, error) = job(Ok(&mut WriteCtx::new(&tx, now_us, &mut pending_events)));
                completions.push(done);
                match error {
                    None => exec(&tx, RELEASE).err().map(StoreError::from),
                    Some(e) => {
                        pending_events.truncate(mark);
                        if tx.is_autocommit() {
                            // SQLite rolled the whole transaction back by itself.
                            Some(e)
                        } else {
                            // Undo this write only; the others of the group go on.
                            exec(&tx, ROLLBACK)
                                .and_then(|()| exec(&tx, RELEASE))
                                .err()
                                .map(StoreError::from)
                        }
                    }
                }
            }
        };
        if let Some(cause) = trouble {
            let err = group_failure(cause);
            tracing::warn!(error = %err, writes = completions.len(), "store: group commit rolled back");
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
    }
    drop(jobs);
    match tx.commit() {
        Ok(()) => {
            for e in pending_events {
                let _ = events.send(e);
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
