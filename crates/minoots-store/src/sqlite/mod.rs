//! The embedded SQLite backend: one file in the data directory, WAL with
//! `synchronous=FULL`, one writer thread that commits many requests per transaction.
//!
//! Group commit: every write is a closure sent to the writer thread through a bounded
//! queue. The writer takes whatever has queued up (at most `max_batch_ops`), runs the
//! closures in one transaction, commits once (one fsync of the WAL), and only then answers
//! each caller. So a caller is never told "done" before its change is on disk, and a
//! thousand concurrent callers cost one fsync, not a thousand. Closures decide every
//! refusal (not found, conflict, fenced, quota) before their first change, so one caller's
//! refusal never fails another caller's write; only a failure after a change rolls the
//! group back (`group_commit.rs`).
//!
//! Reads go to a small pool of read-only connections on blocking threads; in WAL mode
//! they see the last committed state and never wait for the writer. The scheduler's
//! loader and the lease sessions read on a connection of their own, so request reads
//! never queue ahead of them (`readers.rs`).
//!
//! When the disk refuses a write (full, read-only, I/O error), the writes of that group
//! commit are answered [`StoreError::CannotWrite`] and rolled back; the writer thread
//! goes on with the next batch, so writes succeed again as soon as the disk recovers,
//! and reads never depend on the writer.
//!
//! An exclusive `flock` on `minoots.lock` keeps a second process from opening the same
//! data directory; it is released when the store is closed or the process dies.

mod admin;
mod billing;
mod checkpoint;
#[cfg(test)]
mod checks_first;
mod dashboard;
mod deliveries;
mod events;
mod group_commit;
mod leases;
mod readers;
mod rows;
mod schedules;
pub(crate) mod schema;
mod secrets;
mod sessions;
mod status_counts;
mod timers;
mod usage;
mod write_ctx;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use minoots_core::schedule::{Schedule, ScheduleRun};
use minoots_core::{
    Clock, Delivery, DeliveryId, Event, ScheduleId, Timer, TimerChange, TimerChanged, TimerId,
};
use rusqlite::Connection;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::Store;
use crate::types::*;
use crate::writer_stats::WriterStats;
use checkpoint::{Checkpointer, IdleWatch};

pub use group_commit::WriterHold;
pub(crate) use write_ctx::WriteCtx;

/// Settings of the SQLite backend, with defaults suited to one machine.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Directory holding `minoots.db`, its WAL and the lock file.
    pub data_dir: PathBuf,
    /// Writes waiting for the writer thread; callers wait (backpressure) when it is full.
    pub writer_queue_capacity: usize,
    /// Most writes committed in one transaction. Bounds the time one commit holds the
    /// writer and the memory of one batch.
    pub max_batch_ops: usize,
    /// Read-only connections for the reads of requests; reads beyond this wait for a free
    /// one. The scheduler and the lease sessions read on a reserved connection besides.
    pub reader_connections: usize,
    /// Page cache of the writer connection in KiB (readers keep SQLite's 2 MiB default).
    /// Bounded memory that keeps hot pages of the due and tenant indexes resident;
    /// measured: 64 MiB creates no faster than 16 MiB (docs/benchmarks.md).
    pub writer_cache_kib: u32,
    /// Live events buffered per subscriber before it is told it lagged.
    pub event_broadcast_capacity: usize,
    /// A cap on the database file, in pages of 4 KiB (SQLite's `max_page_count` on the
    /// writer). Writes that would grow the file beyond it are refused as
    /// [`WriteTrouble::DiskFull`], exactly like a full disk, while reads go on. An
    /// operator's storage budget, and how tests make the disk "full" without root. A
    /// value below the current size caps the file at its current size. `None`: no cap
    /// beyond SQLite's own.
    pub max_db_pages: Option<u64>,
    /// The length of a metering bucket, in µs: creates and successful deliveries are
    /// counted per tenant and bucket (`billing.rs`). An hour by default.
    pub meter_bucket_us: i64,
}

impl SqliteConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            writer_queue_capacity: 65_536,
            max_batch_ops: 4_096,
            reader_connections: 4,
            writer_cache_kib: 16 * 1024,
            event_broadcast_capacity: 16_384,
            max_db_pages: None,
            meter_bucket_us: minoots_core::billing::DEFAULT_METER_BUCKET_US,
        }
    }
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write closure. It receives the transaction context, or the reason it cannot run, and
/// returns its completion and its error, if it failed.
type WriteJob = Box<
    dyn FnOnce(Result<&mut WriteCtx<'_>, StoreError>) -> (Completion, Option<StoreError>) + Send,
>;
/// A change of the writer connection's settings, run between two batches.
type Setting = Box<dyn FnOnce(&Connection) + Send>;

enum WriterMsg {
    Job(WriteJob),
    Setting(Setting),
    Stop,
}

/// SQLite's own largest `max_page_count`: what "no cap" means.
const SQLITE_MAX_PAGE_COUNT: u64 = 4_294_967_294;

struct Inner {
    writer: mpsc::Sender<WriterMsg>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Checkpointer,
    /// For reads that depend on the time (the writer reads it per batch).
    clock: Arc<dyn Clock>,
    /// Reads of requests (and everything else that is not the two below).
    readers: Arc<readers::ReaderPool>,
    /// Reads of the scheduler's loader and the lease sessions only.
    reserved_readers: Arc<readers::ReaderPool>,
    events: broadcast::Sender<crate::LiveEvent>,
    /// Idle periods in which the connections' page caches were released.
    idle_releases: Arc<AtomicU64>,
    /// The writer's group commits, for `/metrics`.
    writer_stats: Arc<WriterStats>,
    /// Held for the store's lifetime: the exclusive lock on the data directory.
    lock: Mutex<Option<File>>,
}

/// The embedded store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// Bytes SQLite holds on the heap now, over every connection of the process (page caches,
/// statements, schema): for memory measurements.
pub fn sqlite_heap_bytes() -> i64 {
    // SAFETY: a read of SQLite's global memory counter.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

pub(crate) const DB_FILE: &str = "minoots.db";
const LOCK_FILE: &str = "minoots.lock";

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `config.data_dir`, locks the directory,
    /// applies migrations and starts the writer thread.
    pub fn open(config: SqliteConfig, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let lock = lock_dir(&config.data_dir)?;
        let path = config.data_dir.join(DB_FILE);

        let mut writer = Connection::open(&path).map_err(unavailable)?;
        tune_connection(&writer).map_err(unavailable)?;
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = OFF;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA busy_timeout = 5000;
                 PRAGMA wal_autocheckpoint = 1000; -- cheap: the checkpointer thread has copied most frames
                 PRAGMA cache_size = -{};",
                config.writer_cache_kib
            ))
            .map_err(unavailable)?;
        migrate(&mut writer)?;
        if let Some(pages) = config.max_db_pages {
            set_max_page_count(&writer, pages).map_err(unavailable)?;
        }
        writer.set_prepared_statement_cache_capacity(64);

        let readers = readers::ReaderPool::open(&path, config.reader_connections)?;
        let reserved_readers =
            readers::ReaderPool::open(&path, readers::RESERVED_READER_CONNECTIONS)?;

        let reader_clock = clock.clone();
        let (events_tx, _) = broadcast::channel(config.event_broadcast_capacity);
        let (tx, rx) = mpsc::channel(config.writer_queue_capacity);
        let events = events_tx.clone();
        let max_batch = config.max_batch_ops.max(1);
        let meter_bucket_us = config.meter_bucket_us.max(1);
        let commits = Arc::new(AtomicU64::new(0));
        let writer_commits = commits.clone();
        let writer_stats = Arc::new(WriterStats::default());
        let stats = writer_stats.clone();
        let handle = std::thread::Builder::new()
            .name("minoots-store-writer".into())
            .spawn(move || {
                writer_loop(
                    writer,
                    rx,
                    events,
                    clock,
                    (max_batch, meter_bucket_us),
                    writer_commits,
                    stats,
                )
            })
            .map_err(unavailable)?;

        let idle_releases = Arc::new(AtomicU64::new(0));
        let checkpointer = Checkpointer::start(
            &path,
            IdleWatch {
                commits,
                writer: tx.downgrade(),
                readers: vec![readers.clone(), reserved_readers.clone()],
                releases: idle_releases.clone(),
            },
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: tx,
                writer_thread: Mutex::new(Some(handle)),
                checkpointer,
                clock: reader_clock,
                readers,
                reserved_readers,
                events: events_tx,
                idle_releases,
                writer_stats,
                lock: Mutex::new(Some(lock)),
            }),
        })
    }

    /// Runs `f` on the writer thread inside the next group-committed transaction and
    /// answers after the commit.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |ctx| {
            let result = match ctx {
                Ok(ctx) => f(ctx),
                Err(e) => Err(e),
            };
            let error = result.as_ref().err().cloned();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (done, error)
        });
        self.inner
            .writer
            .send(WriterMsg::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer connection between two batches: every write queued before
    /// it is committed without the change, every write queued after it with it.
    async fn configure_writer<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let setting: Setting = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.inner
            .writer
            .send(WriterMsg::Setting(setting))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Changes the cap on the database file while the store runs (see
    /// [`SqliteConfig::max_db_pages`]); `None` lifts it. Returns the cap in force, which
    /// is never below the file's current size. Writes beyond the cap are refused as
    /// [`WriteTrouble::DiskFull`]; writes succeed again once the cap is raised.
    pub async fn set_max_db_pages(&self, pages: Option<u64>) -> StoreResult<u64> {
        self.configure_writer(move |conn| {
            set_max_page_count(conn, pages.unwrap_or(SQLITE_MAX_PAGE_COUNT))
                .map_err(StoreError::from)
        })
        .await
    }

    /// Makes every write fail as on a read-only file system (`PRAGMA query_only` on the
    /// writer connection: SQLite answers each write SQLITE_READONLY), or lifts that.
    /// For tests of the refused-write path; reads are not affected.
    #[doc(hidden)]
    pub async fn set_writer_read_only(&self, read_only: bool) -> StoreResult<()> {
        self.configure_writer(move |conn| {
            conn.pragma_update(None, "query_only", read_only)
                .map_err(StoreError::from)
        })
        .await
    }

    /// `PRAGMA synchronous` of each connection that writes the database files: the writer
    /// (read now, on its thread) and the checkpointer. 2 is FULL: a commit is acknowledged
    /// only after the WAL holding it is synced. For tests of that promise.
    #[doc(hidden)]
    pub async fn writing_connections_synchronous(&self) -> StoreResult<Vec<(&'static str, i64)>> {
        let writer = self
            .configure_writer(|conn| read_synchronous(conn).map_err(StoreError::from))
            .await?;
        Ok(vec![
            ("writer", writer),
            ("checkpointer", self.inner.checkpointer.synchronous),
        ])
    }

    /// Pages the writer connection has written to the WAL since the store opened
    /// (`SQLITE_DBSTATUS_CACHE_WRITE`; each is a 4 KiB frame): for measuring what a
    /// delivery costs the disk.
    #[doc(hidden)]
    pub async fn writer_pages_written(&self) -> StoreResult<i64> {
        self.writer_db_status(rusqlite::ffi::SQLITE_DBSTATUS_CACHE_WRITE)
            .await
    }

    /// The current value of one of the writer connection's `sqlite3_db_status` counters.
    async fn writer_db_status(&self, op: std::ffi::c_int) -> StoreResult<i64> {
        self.configure_writer(move |conn| {
            let (mut current, mut high) = (0, 0);
            // SAFETY: a status read of the writer's own handle, on the writer thread.
            unsafe {
                rusqlite::ffi::sqlite3_db_status(conn.handle(), op, &mut current, &mut high, 0)
            };
            Ok(i64::from(current))
        })
        .await
    }

    /// SQLite's `PRAGMA integrity_check` on a reader connection: `"ok"` when the database
    /// file is sound, else the problems it found (at most 100 lines).
    pub async fn integrity_check(&self) -> StoreResult<String> {
        self.read(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check(100)")?;
            let lines = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(lines.join("\n"))
        })
        .await
    }

    /// Runs `f` on a pooled read-only connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.inner.readers.read(f).await
    }

    /// [`SqliteStore::read`] on the connection reserved for the scheduler and the lease
    /// sessions.
    async fn read_reserved<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.inner.reserved_readers.read(f).await
    }
}

/// Sets the writer's page cap; returns the cap in force (SQLite never sets it below the
/// current size).
fn set_max_page_count(conn: &Connection, pages: u64) -> rusqlite::Result<u64> {
    // 0 would only read the setting; 1 means "no bigger than now".
    let pages = pages.clamp(1, SQLITE_MAX_PAGE_COUNT);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.max(0) as u64)
}

/// Settings every connection of the embedded store gets.
///
/// The query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`): a statement's
/// plan no longer depends on the values bound to it. Without it SQLite marks a parameter
/// whose value its planner looked at (a `LIMIT ?`, an equality that shapes a row estimate,
/// a comparison with a partial index's condition), and a new binding of that parameter,
/// or the clearing of the bindings that rusqlite does whenever a statement goes back into
/// its cache, expires the compiled statement: every lease claim and every signing-secret
/// lookup was compiled anew, 13 % of the writer's CPU in W2 (docs/benchmarks.md). MINOOTS
/// keeps no planner statistics (no `ANALYZE`) and binds no parameter a partial index's
/// condition needs, so no plan is lost.
pub(super) fn tune_connection(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// The connection's `PRAGMA synchronous`: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
fn read_synchronous(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
}

pub(crate) fn lock_dir(dir: &Path) -> StoreResult<File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(format!(
            "the data directory {} is in use by another MINOOTS process",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unavailable)?;
    let target = schema::MIGRATIONS.len() as i64;
    if current > target {
        return Err(StoreError::Unavailable(format!(
            "the store was written by a newer MINOOTS (schema {current}, this build knows {target}); upgrade MINOOTS"
        )));
    }
    if current == target {
        return Ok(());
    }
    let tx = conn.transaction().map_err(unavailable)?;
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Unavailable(format!("migration {} failed: {e}", i + 1)))?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {target}"))
        .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<WriterMsg>,
    events: broadcast::Sender<crate::LiveEvent>,
    clock: Arc<dyn Clock>,
    (max_batch, meter_bucket_us): (usize, i64),
    commits: Arc<AtomicU64>,
    stats: Arc<WriterStats>,
) {
    let held = write_ctx::HeldStatements::new(&conn);
    let mut batch: Vec<WriteJob> = Vec::with_capacity(max_batch);
    let mut stop = false;
    while !stop {
        match rx.blocking_recv() {
            Some(WriterMsg::Job(j)) => batch.push(j),
            Some(WriterMsg::Setting(f)) => {
                f(&conn);
                continue;
            }
            Some(WriterMsg::Stop) | None => break,
        }
        // A setting ends the batch: it applies to the writes queued after it only.
        let mut setting = None;
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(WriterMsg::Job(j)) => batch.push(j),
                Ok(WriterMsg::Setting(f)) => {
                    setting = Some(f);
                    break;
                }
                Ok(WriterMsg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let (writes, started) = (batch.len(), std::time::Instant::now());
        group_commit::run_batch(
            &conn,
            &held,
            &mut batch,
            &events,
            clock.as_ref(),
            meter_bucket_us,
        );
        stats.record_commit(writes, started.elapsed());
        // Rows changed so far: a batch that changed nothing (a rescue pass that found no
        // expired lease) does not count as activity.
        commits.store(conn.total_changes(), Ordering::Relaxed);
        if let Some(f) = setting {
            f(&conn);
        }
    }
    // Anything still queued after Stop is answered "closed" by dropping it.
    rx.close();
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_timer_with(
        &self,
        timer: Timer,
        options: CreateOptions,
    ) -> StoreResult<CreateOutcome> {
        self.write(move |ctx| timers::create_timer(ctx, timer, &options))
            .await
    }

    async fn create_timers(&self, new_timers: Vec<Timer>) -> StoreResult<Vec<CreateOutcome>> {
        self.write(move |ctx| {
            // Every timer is checked before the first is written: a refusal leaves the
            // group commit untouched.
            new_timers
                .iter()
                .try_for_each(crate::plan::check_new_timer)?;
            let options = CreateOptions::default();
            new_timers
                .into_iter()
                .map(|t| timers::create_timer(ctx, t, &options))
                .collect()
        })
        .await
    }

    async fn get_timer(&self, tenant_id: &str, id: TimerId) -> StoreResult<Option<Timer>> {
        let tenant = tenant_id.to_string();
        self.read(move |c| timers::get_timer(c, Some(&tenant), id))
            .await
    }

    async fn list_timers(&self, query: TimerQuery) -> StoreResult<TimerPage> {
        self.read(move |c| timers::list_timers(c, &query)).await
    }

    async fn cancel_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        reason: Option<String>,
    ) -> StoreResult<Timer> {
        let tenant = tenant_id.to_string();
        self.write(move |ctx| timers::cancel_timer(ctx, &tenant, id, reason))
            .await
    }

    async fn update_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        change: TimerChange,
    ) -> StoreResult<TimerChanged> {
        let tenant = tenant_id.to_string();
        self.write(move |ctx| timers::update_timer(ctx, &tenant, id, &change))
            .await
    }

    async fn load_due_timers(
        &self,
        after: Option<DueTimer>,
        until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<DueTimer>> {
        self.read_reserved(move |c| timers::load_due_timers(c, after, until_us, limit))
            .await
    }

    async fn fire_timers(&self, fires: Vec<FireRequest>) -> StoreResult<Vec<FireOutcome>> {
        self.write(move |ctx| timers::fire_timers(ctx, &fires))
            .await
    }

    async fn fire_and_claim(
        &self,
        fires: Vec<FireRequest>,
        claim: Option<ClaimRequest>,
    ) -> StoreResult<(Vec<FireOutcome>, Vec<LeasedDelivery>)> {
        self.write(move |ctx| {
            let fired = timers::fire_timers(ctx, &fires)?;
            let leased = match &claim {
                Some(c) => {
                    deliveries::claim_deliveries(ctx, &c.lease_owner, c.lease_ttl_us, c.limit)?
                }
                None => Vec::new(),
            };
            Ok((fired, leased))
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        lease_owner: &str,
        lease_ttl_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<LeasedDelivery>> {
        let owner = lease_owner.to_string();
        self.write(move |ctx| deliveries::claim_deliveries(ctx, &owner, lease_ttl_us, limit))
            .await
    }

    async fn report_attempt(&self, report: AttemptReport) -> StoreResult<ReportOutcome> {
        self.write(move |ctx| deliveries::report_attempt(ctx, report))
            .await
    }

    async fn rescue_expired_leases(&self, limit: usize) -> StoreResult<usize> {
        self.write(move |ctx| deliveries::rescue_expired_leases(ctx, limit))
            .await
    }

    async fn next_delivery_due_us(&self) -> StoreResult<Option<i64>> {
        self.read_reserved(deliveries::next_delivery_due_us).await
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        timer_id: TimerId,
    ) -> StoreResult<Vec<DeliveryWithAttempts>> {
        let tenant = tenant_id.to_string();
        self.read(move |c| deliveries::list_deliveries(c, &tenant, timer_id))
            .await
    }

    async fn read_events(&self, query: EventQuery) -> StoreResult<Vec<Event>> {
        self.read(move |c| events::read_events(c, &query)).await
    }

    async fn latest_event_seq(&self) -> StoreResult<i64> {
        self.read(events::latest_event_seq).await
    }

    fn subscribe_events(&self) -> broadcast::Receiver<crate::LiveEvent> {
        self.inner.events.subscribe()
    }

    async fn prune_events(&self, before_us: i64, limit: usize) -> StoreResult<usize> {
        self.write(move |ctx| events::prune_events(ctx, before_us, limit))
            .await
    }

    fn writer_stats(&self) -> Arc<WriterStats> {
        self.inner.writer_stats.clone()
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let releases = self.inner.idle_releases.load(Ordering::Relaxed);
        let stats = self.read(events::stats).await?;
        Ok(StoreStats {
            idle_cache_releases: releases,
            ..stats
        })
    }

    async fn get_delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.read(move |c| deliveries::get_delivery(c, id)).await
    }

    async fn redrive_timer(&self, tenant_id: &str, id: TimerId) -> StoreResult<Timer> {
        let tenant = tenant_id.to_string();
        self.write(move |ctx| timers::redrive_timer(ctx, &tenant, id))
            .await
    }

    async fn release_delivery_after(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
        delay_us: i64,
    ) -> StoreResult<()> {
        let owner = lease_owner.to_string();
        self.write(move |ctx| {
            deliveries::release_delivery(ctx, delivery_id, &owner, attempt, delay_us)
        })
        .await
    }

    async fn renew_leases(
        &self,
        lease_owner: &str,
        leases: Vec<(DeliveryId, u32)>,
        lease_ttl_us: i64,
    ) -> StoreResult<LeaseRenewal> {
        let owner = lease_owner.to_string();
        self.write(move |ctx| leases::renew_leases(ctx, &owner, &leases, lease_ttl_us))
            .await
    }

    async fn end_leases_of(&self, owner_prefix: &str) -> StoreResult<usize> {
        let prefix = owner_prefix.to_string();
        self.write(move |ctx| leases::end_leases_of(ctx, &prefix))
            .await
    }

    async fn signing_secrets(
        &self,
        tenant_id: &str,
        candidate: String,
        grace_us: i64,
    ) -> StoreResult<Vec<String>> {
        let tenant = tenant_id.to_string();
        // Almost always a plain read; only a tenant's very first webhook writes.
        let t = tenant.clone();
        let now = self.inner.clock.now_us();
        let existing = self
            .read(move |c| secrets::signing_secrets_at(c, &t, now, grace_us))
            .await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        self.write(move |ctx| secrets::ensure_signing_secret(ctx, &tenant, candidate, grace_us))
            .await
    }

    async fn rotate_signing_secret(&self, tenant_id: &str, new_secret: String) -> StoreResult<()> {
        let tenant = tenant_id.to_string();
        self.write(move |ctx| secrets::rotate_signing_secret(ctx, &tenant, new_secret))
            .await
    }

    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<Tenant> {
        self.write(move |ctx| admin::create_tenant(ctx, tenant))
            .await
    }

    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        let id = id.to_string();
        self.read(move |c| admin::get_tenant(c, &id)).await
    }

    async fn list_tenants(&self, after: Option<String>, limit: usize) -> StoreResult<Vec<Tenant>> {
        self.read(move |c| admin::list_tenants(c, after.as_deref(), limit))
            .await
    }

    async fn update_tenant(&self, id: &str, update: TenantUpdate) -> StoreResult<Tenant> {
        let id = id.to_string();
        self.write(move |ctx| admin::update_tenant(ctx, &id, update))
            .await
    }

    async fn create_api_key(&self, key: ApiKey) -> StoreResult<ApiKey> {
        self.write(move |ctx| admin::create_api_key(ctx, key)).await
    }

    async fn api_key_by_hash(&self, key_hash: [u8; 32]) -> StoreResult<Option<ApiKey>> {
        self.read(move |c| admin::api_key_by_hash(c, &key_hash))
            .await
    }

    async fn list_api_keys(
        &self,
        tenant_id: Option<String>,
        after: Option<String>,
        limit: usize,
    ) -> StoreResult<Vec<ApiKey>> {
        self.read(move |c| admin::list_api_keys(c, tenant_id.as_deref(), after.as_deref(), limit))
            .await
    }

    async fn revoke_api_key(&self, id: &str) -> StoreResult<ApiKey> {
        let id = id.to_string();
        self.write(move |ctx| admin::revoke_api_key(ctx, &id)).await
    }

    async fn touch_api_keys(&self, used: Vec<(String, i64)>) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        self.write(move |ctx| admin::touch_api_keys(ctx, &used))
            .await
    }

    async fn tenant_usage(&self, tenant_id: &str, day: i64) -> StoreResult<TenantUsage> {
        let tenant = tenant_id.to_string();
        self.read(move |c| timers::tenant_usage(c, &tenant, day))
            .await
    }

    async fn create_schedule(
        &self,
        schedule: Schedule,
        max_schedules: Option<u64>,
    ) -> StoreResult<Schedule> {
        self.write(move |ctx| schedules::create_schedule(ctx, schedule, max_schedules))
            .await
    }

    async fn get_schedule(&self, tenant_id: &str, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        let tenant = tenant_id.to_string();
        self.read(move |c| schedules::get_schedule(c, Some(&tenant), id))
            .await
    }

    async fn list_schedules(
        &self,
        tenant_id: &str,
        filter: &minoots_core::schedule::ScheduleFilter,
        after: Option<ScheduleId>,
        limit: usize,
    ) -> StoreResult<Vec<Schedule>> {
        let (tenant, filter) = (tenant_id.to_string(), filter.clone());
        self.read(move |c| schedules::list_schedules(c, &tenant, &filter, after, limit))
            .await
    }

    async fn schedules_due(
        &self,
        until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<(i64, ScheduleId)>> {
        self.read_reserved(move |c| schedules::schedules_due(c, until_us, limit))
            .await
    }

    async fn dispatch_schedule(&self, id: ScheduleId) -> StoreResult<Dispatched> {
        self.write(move |ctx| schedules::dispatch_schedule(ctx, id))
            .await
    }

    async fn control_schedule(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        control: crate::schedule_control::ScheduleControl,
    ) -> StoreResult<crate::schedule_control::Controlled> {
        let tenant = tenant_id.to_string();
        self.write(move |ctx| schedules::control_schedule(ctx, &tenant, id, &control))
            .await
    }

    async fn list_schedule_runs(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        after_us: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<ScheduleRun>> {
        let tenant = tenant_id.to_string();
        self.read(move |c| schedules::list_schedule_runs(c, &tenant, id, after_us, limit))
            .await
    }

    async fn close(&self) {
        let _ = self.inner.writer.send(WriterMsg::Stop).await;
        let handle = self
            .inner
            .writer_thread
            .lock()
            .expect("writer handle poisoned")
            .take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        // After the last commit: a final checkpoint folds the WAL into the database file.
        self.inner.checkpointer.stop().await;
        self.inner.lock.lock().expect("lock poisoned").take();
    }
}
