//! The checkpointer thread: copies the WAL back into the database file, and gives the
//! connections' page caches back when the store has been idle for a while.
//!
//! SQLite's automatic checkpoint runs inside the committing connection, so a large one
//! stalls every write queued behind it (measured: commits delayed by 100–300 ms). A PASSIVE
//! checkpoint on another connection runs alongside the writer instead. If the WAL still
//! grows past `WAL_HARD_LIMIT_PAGES` (the disk cannot keep up), a RESTART checkpoint waits
//! for the writer and bounds the file.
//!
//! Page caches (up to `writer_cache_kib` for the writer, 2 MiB per reader) fill as the
//! database grows and are kept while the store works. When nothing has been committed for
//! `IDLE_RELEASE_AFTER` (no row changed: a pass that only looked, such as a lease rescue
//! that found nothing, does not count), each connection frees the cache pages it does not hold
//! (`sqlite3_db_release_memory`), once per idle period, so a process that had a burst
//! returns to its resting size. The next reads fetch their pages again from the
//! operating system's file cache.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::readers::ReaderPool;
use super::{WriterMsg, read_synchronous, unavailable};
use crate::types::StoreResult;

/// How often the WAL is checkpointed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// WAL pages (4 KiB) beyond which a blocking checkpoint bounds the file: 256 MiB.
const WAL_HARD_LIMIT_PAGES: i64 = 65_536;
/// Time without a commit after which the page caches are released.
pub(super) const IDLE_RELEASE_AFTER: Duration = Duration::from_secs(5);

/// What the checkpointer needs to see that the store is idle and to release its caches.
pub(super) struct IdleWatch {
    /// Rows the writer has changed so far (`sqlite3_total_changes`, set after each batch).
    pub commits: Arc<AtomicU64>,
    /// Where the writer is asked to release its cache, between two batches (weak: the
    /// checkpointer does not keep the writer's queue open).
    pub writer: mpsc::WeakSender<WriterMsg>,
    pub readers: Vec<Arc<ReaderPool>>,
    /// Idle periods whose caches were released (counted once the writer has released).
    pub releases: Arc<AtomicU64>,
}

pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Its connection's `PRAGMA synchronous`, read back when it was opened.
    pub(super) synchronous: i64,
}

impl Checkpointer {
    pub(super) fn start(path: &Path, idle: IdleWatch) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(unavailable)?;
        super::tune_connection(&conn).map_err(unavailable)?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;")
            .map_err(unavailable)?;
        let synchronous = read_synchronous(&conn).map_err(unavailable)?;
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("minoots-store-checkpoint".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut idle_since = IdleSince::new(idle.commits.load(Ordering::Relaxed));
                let mut stopped = lock.lock().expect("checkpointer poisoned");
                loop {
                    stopped = cvar
                        .wait_timeout(stopped, CHECKPOINT_INTERVAL)
                        .expect("checkpointer poisoned")
                        .0;
                    let done = *stopped;
                    drop(stopped);
                    let mode = if done { "TRUNCATE" } else { "PASSIVE" };
                    match checkpoint(&conn, mode) {
                        Ok(wal_pages) if wal_pages > WAL_HARD_LIMIT_PAGES => {
                            tracing::warn!(
                                wal_pages,
                                "store: WAL over its limit; checkpointing with writes paused"
                            );
                            let _ = checkpoint(&conn, "RESTART");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "store: checkpoint failed"),
                    }
                    if done {
                        return;
                    }
                    if idle_since.due(idle.commits.load(Ordering::Relaxed), Instant::now()) {
                        release_caches(&conn, &idle);
                    }
                    stopped = lock.lock().expect("checkpointer poisoned");
                }
            })
            .map_err(unavailable)?;
        Ok(Self {
            stop,
            thread: Mutex::new(Some(thread)),
            synchronous,
        })
    }

    pub(super) async fn stop(&self) {
        {
            let (lock, cvar) = &*self.stop;
            *lock.lock().expect("checkpointer poisoned") = true;
            cvar.notify_all();
        }
        let thread = self.thread.lock().expect("checkpointer poisoned").take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Tracks the commit count; says once per idle period when the caches are to be released.
struct IdleSince {
    commits: u64,
    since: Instant,
    released: bool,
}

impl IdleSince {
    fn new(commits: u64) -> Self {
        Self {
            commits,
            since: Instant::now(),
            released: false,
        }
    }

    fn due(&mut self, commits: u64, now: Instant) -> bool {
        if commits != self.commits {
            *self = Self {
                commits,
                since: now,
                released: false,
            };
            return false;
        }
        if self.released || now.duration_since(self.since) < IDLE_RELEASE_AFTER {
            return false;
        }
        self.released = true;
        true
    }
}

/// Frees the unpinned cache pages of every connection: the checkpointer's and the idle
/// readers' here, the writer's on its own thread between two batches.
fn release_caches(own: &Connection, idle: &IdleWatch) {
    release_memory(own);
    for pool in &idle.readers {
        pool.release_idle_memory();
    }
    let releases = idle.releases.clone();
    let setting: super::Setting = Box::new(move |conn| {
        release_memory(conn);
        trim_system_heap();
        releases.fetch_add(1, Ordering::Relaxed);
    });
    // A full queue means the store is busy after all: the next idle period releases.
    if let Some(writer) = idle.writer.upgrade() {
        let _ = writer.try_send(WriterMsg::Setting(setting));
    }
}

/// `sqlite3_db_release_memory`: frees the cache pages this connection does not hold.
pub(super) fn release_memory(conn: &Connection) {
    // SAFETY: the handle is this connection's, used on the one thread that holds it now.
    unsafe {
        rusqlite::ffi::sqlite3_db_release_memory(conn.handle());
    }
}

/// SQLite allocates with the C library's `malloc`, whose arenas keep freed memory: give
/// it back to the operating system (glibc's `malloc_trim` covers every thread's arena).
fn trim_system_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs one checkpoint; returns the WAL's size in pages before it.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::sqlite::{SqliteConfig, SqliteStore};
    use minoots_core::{Clock, SystemClock};

    /// Bytes of page cache the writer connection holds (`SQLITE_DBSTATUS_CACHE_USED`).
    async fn writer_cache_bytes(store: &SqliteStore) -> i64 {
        store
            .writer_db_status(rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_store_gives_its_writer_cache_back() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = SqliteStore::open(SqliteConfig::new(dir.path()), clock).unwrap();
        // About 2,000 pages written through the writer's cache.
        store
            .configure_writer(|conn| {
                conn.execute_batch(
                    "CREATE TABLE cache_fill(b BLOB);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
                     INSERT INTO cache_fill SELECT randomblob(2000) FROM n;",
                )
                .map_err(crate::types::StoreError::from)
            })
            .await
            .unwrap();
        let before = writer_cache_bytes(&store).await;
        assert!(
            before > 4_000_000,
            "the writer's cache holds {before} bytes"
        );

        let deadline = Instant::now() + IDLE_RELEASE_AFTER * 6;
        while store.stats().await.unwrap().idle_cache_releases == 0 {
            assert!(Instant::now() < deadline, "no release after an idle period");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = writer_cache_bytes(&store).await;
        assert!(
            after < before / 10,
            "after the idle release the writer's cache holds {after} bytes (before: {before})"
        );
        store.close().await;
    }

    #[test]
    fn releases_once_per_idle_period_and_only_after_the_idle_time() {
        let t0 = Instant::now();
        let mut idle = IdleSince {
            commits: 7,
            since: t0,
            released: false,
        };
        assert!(!idle.due(7, t0 + IDLE_RELEASE_AFTER - Duration::from_millis(1)));
        assert!(idle.due(7, t0 + IDLE_RELEASE_AFTER));
        assert!(!idle.due(7, t0 + IDLE_RELEASE_AFTER * 3), "once per period");
        // A commit starts a new period.
        let t1 = t0 + IDLE_RELEASE_AFTER * 4;
        assert!(!idle.due(8, t1));
        assert!(!idle.due(8, t1 + Duration::from_secs(1)));
        assert!(idle.due(8, t1 + IDLE_RELEASE_AFTER));
    }
}
