//! Moving an embedded (SQLite) store into an empty PostgreSQL database or schema,
//! losing nothing: every row of every table, the event log with its exact sequence
//! numbers and head, API key hashes, signing secrets, usage counters and idempotency
//! keys. What crosses and how is one map (`tables.rs`), checked against both schemas
//! before the first row moves.
//!
//! The steps, and what each guarantees:
//! 1. **Source** (`source.rs`): the data directory's lock is taken as `serve` takes it,
//!    so a store that a running process holds is refused, and no process opens it until
//!    the migration ends. The database is read-only to the copy, in one snapshot.
//! 2. **Target** (`target.rs`): refused if it holds MINOOTS data; then migrated to the
//!    current schema by opening it as `serve --database-url` does (never as a kernel).
//! 3. **Copy**: one PostgreSQL transaction, all or nothing. A reader thread streams
//!    batches of at most [`MIGRATE_BATCH_ROWS`] rows and about [`MIGRATE_BATCH_BYTES`]
//!    bytes, at most [`BATCHES_IN_FLIGHT`] of them waiting, so memory stays bounded
//!    whatever the store's size; each batch is one INSERT of unnested arrays.
//! 4. **Verification**, inside the transaction: rows per table (and per status for
//!    timers and deliveries) equal the source's, and so does the event log's head;
//!    after the commit, the store opened on the target reports the same head.
//!
//! **Deliveries in flight stay in flight**, with their lease owner, attempt and lease
//! expiry as they were. The process that leased them is gone (the lock proves it for
//! the kernel; an executor in another process may still be working), and a PostgreSQL
//! kernel hands back nothing at start, as in any cluster. So: an orchestrator that
//! outlived the old kernel and reports to the new one is accepted by the fence, with
//! no duplicate; otherwise the new store's lease rescuer hands each delivery back when
//! its lease ends (by default at most `serve`'s 6 s lease after the old process last
//! renewed it, so usually before the migration is done), counting the attempt as any
//! lost lease does. Ending the leases here would run work twice that an orchestrator may
//! be finishing; resetting them to pending would apply the rescue policy outside its
//! planner. After a graceful stop (SIGTERM) `serve` has handed everything back and
//! nothing is in flight.
//!
//! It never writes the source, never runs as a kernel on the target, and never leaves
//! the target half-filled.

mod source;
mod tables;
mod target;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_core::{Clock, SystemClock};
use tokio::sync::mpsc;

use crate::Store;
use crate::postgres::{PostgresConfig, PostgresStore};
pub use target::unmapped_tables;

/// Most rows in one batch of the copy. A batch is one INSERT statement and one round
/// trip. Measured on a 2-core VM (release build, PostgreSQL 15 on loopback), 100,000
/// timers and their 100,000 events: 2.36 s with batches of 100 rows, 1.41 s with 1,000,
/// 1.48 s with 10,000. A thousand is where the round trips stop mattering, while a batch
/// of the largest rows stays a few MiB.
pub const MIGRATE_BATCH_ROWS: usize = 1_000;
/// A batch is closed early once it holds this many bytes of values (8 MiB): rows with
/// large metadata or response excerpts do not make a batch large.
pub const MIGRATE_BATCH_BYTES: usize = 8 << 20;
/// Batches read from the source and not yet written: the reader works ahead by this
/// many, no more (bounded memory: about this many times the batch bound).
pub const BATCHES_IN_FLIGHT: usize = 2;

/// Why a migration did not happen. Every refusal names what to do.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "{dir} holds no MINOOTS store ({why}); give the --data-dir that `minoots serve` or `minoots kernel` used"
    )]
    NoSource { dir: PathBuf, why: String },
    #[error(
        "the store in {dir} is open by a running MINOOTS process (its data directory is locked); stop that process (SIGTERM) and run the migration again"
    )]
    SourceInUse { dir: PathBuf },
    #[error(
        "the store in {dir} has schema version {found} and this MINOOTS knows {expected}; start and stop `minoots serve --data-dir` of this MINOOTS version once on it (that upgrades it), or migrate with the version that wrote it"
    )]
    SourceVersion {
        dir: PathBuf,
        found: i64,
        expected: i64,
    },
    #[error(
        "the {side} schema does not match the migration's map of tables: {detail}; nothing was copied (a MINOOTS bug: please report it)"
    )]
    SchemaMismatch { side: &'static str, detail: String },
    #[error(
        "the target {target} already holds MINOOTS data ({what}); migrate into an empty database or a new --database-schema, or drop that schema first"
    )]
    TargetNotEmpty { target: String, what: String },
    #[error(
        "the MINOOTS kernel {kernel} is running on the target {target}; stop every MINOOTS process using it before migrating"
    )]
    TargetInUse { target: String, kernel: String },
    #[error("verification failed, nothing was committed: {0}")]
    Verification(String),
    #[error("reading the source store: {0}")]
    Source(String),
    #[error("the target {target}: {detail}")]
    Target { target: String, detail: String },
}

/// One table's rows as copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub name: &'static str,
    pub rows: u64,
    /// Rows per status value, for the tables that have one (timers, deliveries).
    pub by_status: Vec<(String, u64)>,
}

/// What a migration copied and verified.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    pub source: PathBuf,
    /// The target, without its password.
    pub target: String,
    pub tables: Vec<TableReport>,
    /// The event log's head: the next event of the target is numbered after it.
    pub event_head: i64,
    pub in_flight_deliveries: u64,
    /// How long after the copy the last lease of those deliveries ends (zero when they
    /// all ended already): the new store's rescuer hands each back then.
    pub leases_end_within: Option<Duration>,
    pub elapsed: Duration,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "migrated the store in {} to {} in {:.3} s",
            self.source.display(),
            self.target,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  {:<16} {:>10}", "table", "rows")?;
        for t in &self.tables {
            write!(f, "  {:<16} {:>10}", t.name, t.rows)?;
            if !t.by_status.is_empty() {
                let parts: Vec<String> = t
                    .by_status
                    .iter()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect();
                write!(f, " ({})", parts.join(", "))?;
            }
            writeln!(f)?;
        }
        writeln!(f, "  {:<16} {:>10}", "event log head", self.event_head)?;
        match self.leases_end_within {
            Some(Duration::ZERO) if self.in_flight_deliveries > 0 => writeln!(
                f,
                "  {:<16} {:>10} (their leases have ended: the new store's rescuer hands them back at its first pass)",
                "in flight", self.in_flight_deliveries
            )?,
            Some(within) if self.in_flight_deliveries > 0 => writeln!(
                f,
                "  {:<16} {:>10} (their leases stand; the new store's rescuer hands each back when it ends, the last within {:.1} s)",
                "in flight",
                self.in_flight_deliveries,
                within.as_secs_f64()
            )?,
            _ => writeln!(f, "  {:<16} {:>10}", "in flight", 0)?,
        }
        write!(
            f,
            "verified: rows per table, timers and deliveries per status, and the event log's head equal the source's"
        )
    }
}

/// Copies the embedded store in `source_dir` into the empty PostgreSQL database (or
/// schema) of `target`, as the module documentation describes. `target.kernel` is
/// ignored: the migration never runs as a kernel.
pub async fn migrate_sqlite_to_postgres(
    source_dir: &Path,
    mut target: PostgresConfig,
) -> Result<MigrationReport, MigrateError> {
    let started = Instant::now();
    target.kernel = None;
    let dir = source_dir.to_path_buf();
    let mut source = tokio::task::spawn_blocking(move || source::Source::open(&dir))
        .await
        .map_err(|e| MigrateError::Source(format!("the reading task failed: {e}")))??;

    let mut pg = target::Target::connect(&target).await?;
    pg.refuse_if_not_empty().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let opened = |e: crate::StoreError| MigrateError::Target {
        target: target.target(),
        detail: e.to_string(),
    };
    // The migrations, applied as `serve --database-url` applies them.
    PostgresStore::open(target.clone(), clock.clone())
        .await
        .map_err(opened)?
        .close()
        .await;

    let (batches, arriving) = mpsc::channel(BATCHES_IN_FLIGHT);
    let reader = source.start_reading(batches);
    let copied = pg.copy(&source.counts, arriving).await;
    // The channel is closed now (consumed or dropped), so the reader ends too.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    copied?;

    // What the store itself reads back from the committed target.
    let store = PostgresStore::open(target.clone(), clock.clone())
        .await
        .map_err(opened)?;
    let head = store.latest_event_seq().await;
    store.close().await;
    let head = head.map_err(opened)?;
    if head != source.counts.event_head {
        return Err(MigrateError::Verification(format!(
            "the committed target reports event head {head}, the source {}",
            source.counts.event_head
        )));
    }
    let counts = &source.counts;
    let now_us = clock.now_us();
    let report = MigrationReport {
        source: source_dir.to_path_buf(),
        target: target.target(),
        tables: tables::TABLES
            .iter()
            .enumerate()
            .map(|(i, t)| TableReport {
                name: t.name,
                rows: counts.rows[i],
                by_status: counts.by_status[i].clone(),
            })
            .collect(),
        event_head: counts.event_head,
        in_flight_deliveries: counts.in_flight_deliveries,
        leases_end_within: counts
            .latest_lease_expiry_us
            .map(|end| Duration::from_micros(end.saturating_sub(now_us).max(0) as u64)),
        elapsed: started.elapsed(),
    };
    // The source's lock is released only now: no process could open it meanwhile.
    drop(source);
    Ok(report)
}
