//! The source of a migration: an embedded store's data directory, read and never written.
//!
//! It takes the directory's lock exactly as `SqliteStore::open` does (an exclusive
//! `flock` on `minoots.lock`), so it refuses a store that a running `serve` or `kernel`
//! holds, and no process can open the store while the copy runs; the lock goes with the
//! process, whatever way it ends. The database is opened read-only (`query_only` as
//! well): the copy never changes a byte of `minoots.db`. A WAL left by a killed process
//! is read, not checkpointed, so what that process committed is copied too.
//!
//! Every count and every row comes from one read transaction: one snapshot, although
//! nothing can write while the lock is held.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::mpsc;

use super::tables::{Batch, SQLITE_ONLY, TABLES};
use super::{MIGRATE_BATCH_BYTES, MIGRATE_BATCH_ROWS, MigrateError};
use crate::sqlite::{DB_FILE, lock_dir, schema::MIGRATIONS};
use crate::types::StoreError;

/// What the source holds, counted in the snapshot that is copied.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceCounts {
    /// Rows per table, in the order of [`TABLES`].
    pub(crate) rows: Vec<u64>,
    /// Rows per status value, per table (empty for tables without a status), sorted.
    pub(crate) by_status: Vec<Vec<(String, u64)>>,
    /// The highest event number ever handed out (`sqlite_sequence`), 0 for none.
    pub(crate) event_head: i64,
    pub(crate) in_flight_deliveries: u64,
    /// The latest `lease_expires_at` of an in-flight delivery (µs).
    pub(crate) latest_lease_expiry_us: Option<i64>,
}

/// The opened source: the directory's lock (held until this is dropped) and the
/// read-only connection in its read transaction.
pub(crate) struct Source {
    _lock: File,
    conn: Option<Connection>,
    pub(crate) counts: SourceCounts,
}

fn read_error(what: &str) -> impl Fn(rusqlite::Error) -> MigrateError + '_ {
    move |e| MigrateError::Source(format!("{what}: {e}"))
}

impl Source {
    /// Locks `dir`, opens its store read-only, checks its schema against the map of
    /// tables, and counts what it holds. Blocking.
    pub(crate) fn open(dir: &Path) -> Result<Self, MigrateError> {
        let db = dir.join(DB_FILE);
        if !db.is_file() {
            return Err(MigrateError::NoSource {
                dir: dir.to_path_buf(),
                why: format!("there is no {DB_FILE}"),
            });
        }
        let lock = lock_dir(dir).map_err(|e| match e {
            StoreError::Locked(_) => MigrateError::SourceInUse {
                dir: dir.to_path_buf(),
            },
            other => MigrateError::Source(other.to_string()),
        })?;
        let conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(read_error("cannot open the database"))?;
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
            .map_err(read_error("cannot set up the connection"))?;
        check_version(&conn, dir)?;
        check_schema(&conn)?;
        // One snapshot for the counts and every row copied.
        conn.execute_batch("BEGIN")
            .map_err(read_error("cannot begin a read"))?;
        let counts = count(&conn)?;
        Ok(Self {
            _lock: lock,
            conn: Some(conn),
            counts,
        })
    }

    /// Starts a thread that sends every table's rows, in batches of at most
    /// [`MIGRATE_BATCH_ROWS`] rows and about [`MIGRATE_BATCH_BYTES`] bytes, into `out`;
    /// an error ends the stream with `Err`. The thread stops early when `out` closes.
    pub(crate) fn start_reading(
        &mut self,
        out: mpsc::Sender<Result<Batch, MigrateError>>,
    ) -> std::thread::JoinHandle<()> {
        let conn = self.conn.take().expect("the rows are read once");
        std::thread::Builder::new()
            .name("minoots-migrate-reader".into())
            .spawn(move || {
                if let Err(e) = stream(&conn, &out) {
                    let _ = out.blocking_send(Err(e));
                }
            })
            .expect("a thread to read the source")
    }
}

fn check_version(conn: &Connection, dir: &Path) -> Result<(), MigrateError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(read_error("cannot read the schema version"))?;
    let expected = MIGRATIONS.len() as i64;
    if found == 0 {
        return Err(MigrateError::NoSource {
            dir: dir.to_path_buf(),
            why: format!("{DB_FILE} has no MINOOTS schema"),
        });
    }
    if found != expected {
        return Err(MigrateError::SourceVersion {
            dir: PathBuf::from(dir),
            found,
            expected,
        });
    }
    Ok(())
}

/// Refuses a table the map does not know, and a column missing, extra or of another
/// type than the map says, naming it.
fn check_schema(conn: &Connection) -> Result<(), MigrateError> {
    let mismatch = |detail: String| MigrateError::SchemaMismatch {
        side: "SQLite",
        detail,
    };
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .map_err(read_error("cannot list the tables"))?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(read_error("cannot list the tables"))?;
    if let Some(unknown) = tables.iter().find(|name| {
        !TABLES.iter().any(|t| t.name == *name) && !SQLITE_ONLY.contains(&name.as_str())
    }) {
        return Err(mismatch(format!(
            "table {unknown} has no PostgreSQL counterpart in the migration's map"
        )));
    }
    for table in TABLES {
        if !tables.iter().any(|t| t == table.name) {
            return Err(mismatch(format!("table {} is missing", table.name)));
        }
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info(\"{}\")", table.name))
            .map_err(read_error("cannot read a table's columns"))?;
        let columns = stmt
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(read_error("cannot read a table's columns"))?;
        for (name, declared) in &columns {
            match table.columns.iter().find(|c| c.name == name) {
                None => {
                    return Err(mismatch(format!(
                        "column {}.{name} has no PostgreSQL counterpart in the migration's map",
                        table.name
                    )));
                }
                Some(c) if !declared.eq_ignore_ascii_case(c.kind.sqlite_type()) => {
                    return Err(mismatch(format!(
                        "column {}.{name} is {declared}, the map expects {}",
                        table.name,
                        c.kind.sqlite_type()
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(c) = table
            .columns
            .iter()
            .find(|c| !columns.iter().any(|(name, _)| name == c.name))
        {
            return Err(mismatch(format!(
                "column {}.{} is missing",
                table.name, c.name
            )));
        }
    }
    Ok(())
}

fn count(conn: &Connection) -> Result<SourceCounts, MigrateError> {
    let mut counts = SourceCounts::default();
    for table in TABLES {
        let what = format!("cannot count {}", table.name);
        let n: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM \"{}\"", table.name),
                [],
                |r| r.get(0),
            )
            .map_err(read_error(&what))?;
        counts.rows.push(n as u64);
        let mut by_status = Vec::new();
        if table.has_status {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT status, COUNT(*) FROM \"{}\" GROUP BY status ORDER BY status",
                    table.name
                ))
                .map_err(read_error(&what))?;
            by_status = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(read_error(&what))?;
        }
        counts.by_status.push(by_status);
    }
    // The AUTOINCREMENT counter keeps the highest number handed out even after pruning.
    counts.event_head = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(read_error("cannot read the event log's head"))?
        .unwrap_or(0);
    let max_seq: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(read_error("cannot read the event log's head"))?;
    if max_seq > counts.event_head {
        return Err(MigrateError::Source(format!(
            "the event log holds seq {max_seq}, beyond its head {}",
            counts.event_head
        )));
    }
    let (in_flight, latest): (i64, Option<i64>) = conn
        .query_row(
            "SELECT COUNT(*), MAX(lease_expires_at) FROM deliveries WHERE status = 'in_flight'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(read_error("cannot count the deliveries in flight"))?;
    counts.in_flight_deliveries = in_flight as u64;
    counts.latest_lease_expiry_us = latest;
    Ok(counts)
}

/// Reads every table in key order and sends it on in bounded batches. Returns early
/// (without error) when the receiver is gone: the copy failed on the other side.
fn stream(
    conn: &Connection,
    out: &mpsc::Sender<Result<Batch, MigrateError>>,
) -> Result<(), MigrateError> {
    for (i, table) in TABLES.iter().enumerate() {
        let what = format!("cannot read {}", table.name);
        let mut stmt = conn
            .prepare(&table.select_sql())
            .map_err(read_error(&what))?;
        let mut rows = stmt.query([]).map_err(read_error(&what))?;
        let mut batch = Batch::new(i, MIGRATE_BATCH_ROWS);
        while let Some(row) = rows.next().map_err(read_error(&what))? {
            batch.push(row).map_err(MigrateError::Source)?;
            if batch.rows >= MIGRATE_BATCH_ROWS || batch.bytes >= MIGRATE_BATCH_BYTES {
                let full = std::mem::replace(&mut batch, Batch::new(i, MIGRATE_BATCH_ROWS));
                if out.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
        if batch.rows > 0 && out.blocking_send(Ok(batch)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
