//! The context of one write of the SQLite backend: the writer's open transaction, the
//! batch's time, and the events the write appends and the timer status changes it counts
//! (both kept by the batch, see `group_commit`). Events are appended only as the
//! [`NewEvent`]s of `minoots_core::event`, so their payloads are written in one place.

use std::cell::RefCell;

use minoots_core::{Event, NewEvent, TimerStatus};
use rusqlite::{Connection, PrepFlags, Row, Statement, ToSql, params};

use super::status_counts::{self, StatusMove};
use super::usage::UsageDeltas;
use crate::types::StoreResult;

/// What the writes of a batch leave to be done at its commit: the events to publish, the
/// status changes to count ([`super::status_counts`]) and the usage counters to move
/// ([`super::usage`]). Events and status changes are cut back to a [`BatchLog::mark`]
/// when a write is refused; usage is recorded only after a write's first change, so a
/// refused write has recorded none.
#[derive(Default)]
pub struct BatchLog {
    pub events: Vec<Event>,
    pub moves: Vec<StatusMove>,
    pub usage: UsageDeltas,
}

impl BatchLog {
    /// Where the log stands before a write.
    pub fn mark(&self) -> (usize, usize) {
        (self.events.len(), self.moves.len())
    }

    /// Forgets what was recorded since `mark` (a refused write).
    pub fn truncate(&mut self, mark: (usize, usize)) {
        self.events.truncate(mark.0);
        self.moves.truncate(mark.1);
    }

    /// Writes the batch's counts (status, usage) in its transaction, before the commit.
    pub(super) fn flush_counts(
        &mut self,
        held: &dyn RunHeld,
        now_us: i64,
        meter_bucket_us: i64,
    ) -> rusqlite::Result<()> {
        status_counts::flush_moves(held, &mut self.moves)?;
        self.usage.flush(held, now_us, meter_bucket_us)
    }
}

/// The open transaction of one write, the batch's time, and the batch's log.
pub struct WriteCtx<'a> {
    pub conn: &'a Connection,
    /// The time of this batch, read once from the store's clock.
    pub now_us: i64,
    log: &'a mut BatchLog,
    /// The writer connection's held statements; without them (tests that run a write on
    /// a connection of their own) statements come from rusqlite's cache.
    held: Option<&'a (dyn RunHeld + 'a)>,
}

impl<'a> WriteCtx<'a> {
    pub fn new(conn: &'a Connection, now_us: i64, log: &'a mut BatchLog) -> Self {
        Self {
            conn,
            now_us,
            log,
            held: None,
        }
    }

    /// A write on the writer connection, whose statements `held` keeps prepared.
    pub(super) fn with_held(
        conn: &'a Connection,
        now_us: i64,
        log: &'a mut BatchLog,
        held: &'a (dyn RunHeld + 'a),
    ) -> Self {
        Self {
            held: Some(held),
            ..Self::new(conn, now_us, log)
        }
    }

    /// Moves the tenant's count of scheduled timers by `delta` at the batch's commit.
    pub fn add_pending(&mut self, tenant_id: &str, delta: i64) {
        self.log.usage.add_pending(tenant_id, delta);
    }

    /// Counts a timer the tenant created on UTC day `day` at the batch's commit.
    pub fn add_created(&mut self, tenant_id: &str, day: i64) {
        self.log.usage.add_created(tenant_id, day);
    }

    /// Counts one unit of `meter` (see `minoots_core::billing::METERS`) for the tenant in
    /// the batch's metering bucket, at the batch's commit.
    pub fn add_metered(&mut self, tenant_id: &str, meter: &'static str) {
        self.log.usage.add_metered(tenant_id, meter);
    }

    /// What this batch has not written yet of the tenant's usage (see
    /// [`UsageDeltas::in_batch`]).
    pub fn usage_in_batch(&self, tenant_id: &str, day: i64) -> (i64, i64) {
        self.log.usage.in_batch(tenant_id, day)
    }

    /// Counts a timer of `tenant_id` that this write moved from `from` to `to`. Called
    /// next to the statement that changed its status, never before a refusal.
    pub fn move_status(&mut self, tenant_id: &str, from: TimerStatus, to: TimerStatus) {
        debug_assert!(from.can_transition_to(to), "{from:?} → {to:?}");
        self.log.moves.push(StatusMove {
            tenant_id: tenant_id.to_string(),
            from,
            to,
        });
    }

    /// Runs `sql`, a statement that changes rows and returns none, with `params`; the
    /// statements a delivery runs every time go through here (see [`HeldStatements`]).
    pub fn execute(&self, sql: &'static str, params: &[&dyn ToSql]) -> StoreResult<usize> {
        let mut changed = 0;
        self.with_statement(sql, &mut |stmt| {
            changed = stmt.execute(params)?;
            Ok(())
        })?;
        Ok(changed)
    }

    /// Runs `sql` with `params` and maps its first row, if any, with `map`.
    pub fn query_row<T>(
        &self,
        sql: &'static str,
        params: &[&dyn ToSql],
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        let mut map = Some(map);
        let mut out = None;
        self.with_statement(sql, &mut |stmt| {
            let mut rows = stmt.query(params)?;
            if let (Some(row), Some(map)) = (rows.next()?, map.take()) {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `sql` with `params` and maps every row with `map`.
    pub fn query_rows<T>(
        &self,
        sql: &'static str,
        params: &[&dyn ToSql],
        mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        self.with_statement(sql, &mut |stmt| {
            let mut rows = stmt.query(params)?;
            while let Some(row) = rows.next()? {
                out.push(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn with_statement(&self, sql: &'static str, f: &mut UseStatement<'_>) -> StoreResult<()> {
        match self.held {
            Some(held) => held.with(sql, f)?,
            None => f(&mut *self.conn.prepare_cached(sql)?)?,
        }
        Ok(())
    }

    /// Appends an event to the log in this transaction, at the batch's time.
    pub fn append_event(&mut self, event: NewEvent) -> StoreResult<()> {
        // Serialised directly, not through `Display` (which writes through a formatter).
        let data = serde_json::to_string(&event.data)
            .map_err(|e| crate::types::StoreError::Corrupt(e.to_string()))?;
        self.execute(
            "INSERT INTO events (type, tenant_id, timer_id, delivery_id, occurred_at, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                event.event_type.as_str(),
                event.tenant_id,
                event.timer_id.as_bytes(),
                event.delivery_id.as_ref().map(|d| d.as_bytes().as_slice()),
                self.now_us,
                data,
            ],
        )?;
        self.log
            .events
            .push(event.into_event(self.conn.last_insert_rowid(), self.now_us));
        Ok(())
    }
}

/// Most statements held per writer connection; others come from rusqlite's cache.
const MAX_HELD_STATEMENTS: usize = 24;

/// What is done with a statement: bind, run, read its rows. The statement is reset when
/// its rows are dropped or its `execute` returns.
pub(super) type UseStatement<'f> = dyn FnMut(&mut Statement<'_>) -> rusqlite::Result<()> + 'f;

/// Lends a held statement (object-safe, so a [`WriteCtx`] can borrow the writer's
/// statements for less than their own lifetime).
pub(super) trait RunHeld {
    fn with(&self, sql: &'static str, f: &mut UseStatement<'_>) -> rusqlite::Result<()>;
}

/// The writer connection's statements for every delivery, prepared on first use and kept
/// for the connection's life. rusqlite's statement cache hashes a statement's whole SQL
/// text to find it and again to give it back, which cost about 7 % of the writer's
/// instructions per delivery (docs/benchmarks.md, sixth round); these are found by a
/// comparison in a list of at most [`MAX_HELD_STATEMENTS`]. A statement is reset after
/// every use (rusqlite resets it when `execute` returns or its rows are dropped), so none
/// holds a read open between writes.
pub(super) struct HeldStatements<'c> {
    conn: &'c Connection,
    held: RefCell<Vec<(&'static str, Statement<'c>)>>,
}

impl<'c> HeldStatements<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            held: RefCell::new(Vec::with_capacity(MAX_HELD_STATEMENTS)),
        }
    }
}

impl RunHeld for HeldStatements<'_> {
    fn with(&self, sql: &'static str, f: &mut UseStatement<'_>) -> rusqlite::Result<()> {
        // A statement in use is borrowed: a use inside another (none today) would take
        // its statement from rusqlite's cache instead of failing.
        let Ok(mut held) = self.held.try_borrow_mut() else {
            return f(&mut *self.conn.prepare_cached(sql)?);
        };
        let found = match held.iter().position(|(s, _)| *s == sql) {
            Some(i) => i,
            None if held.len() < MAX_HELD_STATEMENTS => {
                // Persistent, as rusqlite's cache prepares them: a statement prepared
                // without the flag keeps SQLite's lookaside memory for as long as it
                // lives, and every other allocation then goes to the heap (7 % more
                // instructions per delivery when the reads were held so).
                let stmt = self
                    .conn
                    .prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT)?;
                held.push((sql, stmt));
                held.len() - 1
            }
            None => return f(&mut *self.conn.prepare_cached(sql)?),
        };
        f(&mut held[found].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database with a table of `rows` rows, and a second connection to it.
    fn two_connections(rows: i64) -> (tempfile::TempDir, Connection, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);",
        )
        .unwrap();
        for id in 0..rows {
            conn.execute("INSERT INTO t (id, v) VALUES (?1, ?1)", [id])
                .unwrap();
        }
        let other = Connection::open(&path).unwrap();
        (dir, conn, other)
    }

    /// Whether a checkpoint from `other` could reset the whole WAL: it cannot while any
    /// statement of the first connection is left part-way through its rows.
    fn wal_checkpoint_completes(other: &Connection) -> bool {
        let busy: i64 = other
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        busy == 0
    }

    #[test]
    fn a_held_statement_read_part_way_holds_no_read_open_afterwards() {
        let (_dir, conn, other) = two_connections(3);
        let held = HeldStatements::new(&conn);
        let mut log = BatchLog::default();
        let ctx = WriteCtx::with_held(&conn, 0, &mut log, &held);
        // One row of three is read: the statement must be reset all the same.
        let first = ctx
            .query_row("SELECT v FROM t ORDER BY id", &[], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(first, Some(0));
        assert!(
            wal_checkpoint_completes(&other),
            "a held statement kept its read open after query_row"
        );
        let all = ctx
            .query_rows("SELECT v FROM t ORDER BY id", &[], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(all, vec![0, 1, 2]);
        assert!(wal_checkpoint_completes(&other));
    }

    #[test]
    fn held_statements_are_prepared_once_and_bounded() {
        let (_dir, conn, _other) = two_connections(1);
        let held = HeldStatements::new(&conn);
        let mut log = BatchLog::default();
        let ctx = WriteCtx::with_held(&conn, 0, &mut log, &held);
        for v in 0..3 {
            let changed = ctx
                .execute("UPDATE t SET v = ?1 WHERE id = 0", params![v])
                .unwrap();
            assert_eq!(changed, 1);
        }
        assert_eq!(
            held.held.borrow().len(),
            1,
            "the same SQL was prepared again"
        );
        // More distinct statements than the bound: the extra ones still run, from
        // rusqlite's cache, and the held list stays at its bound.
        let sql: Vec<&'static str> = (0..MAX_HELD_STATEMENTS + 3)
            .map(|i| &*format!("UPDATE t SET v = v + {i} WHERE id = 0").leak())
            .collect();
        for s in &sql {
            assert_eq!(ctx.execute(s, &[]).unwrap(), 1);
        }
        assert_eq!(held.held.borrow().len(), MAX_HELD_STATEMENTS);
        let total: i64 = (0..MAX_HELD_STATEMENTS as i64 + 3).sum();
        let v = ctx
            .query_row("SELECT v FROM t WHERE id = 0", &[], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(v, Some(2 + total));
    }
}
