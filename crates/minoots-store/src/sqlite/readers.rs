//! Read-only connections, in two pools: the shared pool serves every read a request makes
//! (key lookups, timers, deliveries, events, usage), and a reserved pool serves only the
//! reads the kernel needs to fire and hand out work on time: loading the next due timers
//! into the window and finding when the next delivery falls due. A flood of API reads can
//! fill the shared pool and queue behind it, but never ahead of the scheduler or the lease
//! sessions. In WAL mode every connection sees the last committed state and none waits
//! for the writer.
//!
//! A read takes a permit (FIFO, async: a waiting read holds no thread), then a
//! connection, and runs on a blocking thread.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::unavailable;
use crate::types::{StoreError, StoreResult};

/// Connections reserved for the scheduler's loader and the lease sessions. One suffices:
/// their reads are single index seeks (a due-order range of at most a window's batch, the
/// smallest due time of pending deliveries) that take microseconds, and they are never
/// queued behind request reads. Costs one more connection and its page cache (2 MiB
/// at most).
pub(super) const RESERVED_READER_CONNECTIONS: usize = 1;

/// A fixed set of read-only connections.
pub(super) struct ReaderPool {
    conns: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    /// Opens `n` (at least 1) read-only connections to the database at `path`.
    pub(super) fn open(path: &Path, n: usize) -> StoreResult<Arc<Self>> {
        let mut conns = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(unavailable)?;
            super::tune_connection(&r).map_err(unavailable)?;
            r.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
                .map_err(unavailable)?;
            conns.push(r);
        }
        Ok(Arc::new(Self {
            permits: Arc::new(Semaphore::new(conns.len())),
            conns: Mutex::new(conns),
        }))
    }

    /// Frees the cache pages of the connections no read holds now.
    pub(super) fn release_idle_memory(&self) {
        for conn in self.conns.lock().expect("reader pool poisoned").iter() {
            super::checkpoint::release_memory(conn);
        }
    }

    /// Runs `f` on one of this pool's connections on a blocking thread, waiting for a free
    /// one first.
    pub(super) async fn read<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool
                .conns
                .lock()
                .expect("reader pool poisoned")
                .pop()
                .expect("a read permit guarantees a free connection");
            let guard = PooledReader {
                pool: &pool,
                conn: Some(conn),
            };
            let result = f(guard.conn.as_ref().expect("connection present"));
            drop(guard);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

/// Returns a reader connection to its pool even when the read panics.
struct PooledReader<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && let Ok(mut conns) = self.pool.conns.lock()
        {
            conns.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use minoots_core::{Clock, ManualClock, TimerId};

    use super::super::{SqliteConfig, SqliteStore};
    use crate::Store;

    /// Every shared reader is held by a read that waits for `release`; returns once all of
    /// them are taken.
    async fn hold_every_shared_reader(
        store: &SqliteStore,
        n: usize,
    ) -> (Vec<mpsc::Sender<()>>, Vec<tokio::task::JoinHandle<()>>) {
        let (taken_tx, mut taken) = tokio::sync::mpsc::unbounded_channel();
        let mut releases = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (release, wait) = mpsc::channel::<()>();
            releases.push(release);
            let (s, taken_tx) = (store.clone(), taken_tx.clone());
            tasks.push(tokio::spawn(async move {
                s.read(move |_| {
                    let _ = taken_tx.send(());
                    let _ = wait.recv();
                    Ok(())
                })
                .await
                .unwrap();
            }));
        }
        for _ in 0..n {
            taken.recv().await.unwrap();
        }
        (releases, tasks)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scheduler_and_lease_reads_pass_a_shared_pool_held_by_requests() {
        let dir = tempfile::tempdir().unwrap();
        let clock: std::sync::Arc<dyn Clock> = ManualClock::new(1_000);
        let config = SqliteConfig::new(dir.path());
        let shared = config.reader_connections;
        let store = SqliteStore::open(config, clock).unwrap();
        let (releases, holders) = hold_every_shared_reader(&store, shared).await;

        // A request read now waits: the shared pool is really full.
        let s = store.clone();
        let mut request_read =
            tokio::spawn(async move { s.get_timer("acme", TimerId::new_v7()).await });
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut request_read)
                .await
                .is_err(),
            "a request read must wait while every shared reader is taken"
        );

        // The scheduler's loader and the lease sessions' due-time read do not.
        let loaded = tokio::time::timeout(
            Duration::from_secs(10),
            store.load_due_timers(None, i64::MAX, 100),
        )
        .await
        .expect("the loader's read must not queue behind request reads")
        .unwrap();
        assert!(loaded.is_empty());
        let next = tokio::time::timeout(Duration::from_secs(10), store.next_delivery_due_us())
            .await
            .expect("the lease path's read must not queue behind request reads")
            .unwrap();
        assert_eq!(next, None);

        for r in releases {
            r.send(()).unwrap();
        }
        for h in holders {
            h.await.unwrap();
        }
        assert_eq!(request_read.await.unwrap().unwrap(), None);
        store.close().await;
    }
}
