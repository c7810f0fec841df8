//! How an operation of the PostgreSQL backend runs: on a lent connection, each write in a
//! READ COMMITTED transaction answered only after its COMMIT returned (the server's
//! `synchronous_commit` makes that a WAL flush), each statement prepared once per
//! connection.
//!
//! A write is a [`WriteOp`]: it can run as many times as needed, in a group commit with
//! other writes (`writer.rs`) or alone. Alone, a conflict with a concurrent transaction
//! (deadlock, serialization failure, a unique violation the operation recognises) or a
//! connection lost before COMMIT was sent runs it again from the start, in a new
//! transaction with a fresh reading of the clock, at most [`MAX_ATTEMPTS`] times. A
//! connection lost *during* COMMIT is never retried: the write may be stored, so the
//! caller is told it is unknown.
//!
//! [`WriteTx`] counts the rows its statements changed and notes a failed statement, so
//! that the writer can tell a refusal that left the transaction as it was (its group
//! commits without it) from a failure after a change or after an error PostgreSQL
//! aborted the transaction for (its group is rolled back and run again without it).
//!
//! Events are appended at the end of a write, after every other change (`log.rs` says
//! why), so this module must never let an operation insert into `events` itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use minoots_core::{Clock, NewEvent};
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel, Row, Statement, Transaction};

use super::errors::{TxError, TxResult, Verdict, classify, describe, is_connection_lost};
use super::listen::{ANNOUNCE_DUE_WITHIN_US, Channels, due_payloads, notify};
use super::log::EventLog;
use super::pool::{Pool, PooledConn, StatementCache};
use crate::types::{StoreError, StoreResult};

/// Attempts of one operation before it gives up with `Unavailable`. Conflicts are rare
/// (two creates racing for one idempotency key retry once); five absorbs bursts of
/// deadlocks without letting a caller spin.
pub(super) const MAX_ATTEMPTS: u32 = 5;
/// Pause before attempt n is up to n times this, at random, so that transactions that
/// conflicted do not meet again in lockstep.
const RETRY_PAUSE_STEP_US: u64 = 2_000;

/// The running operation of one attempt, borrowing its connection.
pub(super) type OpFuture<'a, T> = Pin<Box<dyn Future<Output = TxResult<T>> + Send + 'a>>;

/// What the operations share: connections, the clock and the event log.
pub(super) struct Shared {
    pub(super) pool: Arc<Pool>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) log: EventLog,
    /// Where writes announce what other handles must hear (`listen.rs`).
    pub(super) channels: Arc<Channels>,
    /// Both writers' group commits, for `/metrics`.
    pub(super) writer_stats: Arc<crate::writer_stats::WriterStats>,
    /// The length of a metering bucket, in µs (`billing.rs`).
    pub(super) meter_bucket_us: i64,
}

/// Where statements go: the bare connection (one-statement reads) or a transaction.
enum Target<'a> {
    Client(&'a Client),
    Tx(&'a Transaction<'a>),
}

/// What a write's transaction has done so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct TxState {
    /// Rows changed by its statements.
    pub(super) changes: u64,
    /// A statement failed: PostgreSQL aborted the transaction, which can only be rolled
    /// back now (even if the operation turned the error into an answer).
    pub(super) failed: bool,
}

/// Runs statements, each prepared once per connection.
pub(super) struct Db<'a> {
    target: Target<'a>,
    cache: &'a mut StatementCache,
    /// For a write's transaction: what its statements did.
    state: Option<&'a mut TxState>,
}

/// True for a statement that may change rows (anything but a SELECT or a SHOW; a SELECT
/// that locks rows changes none).
fn may_change(sql: &str) -> bool {
    let s = sql.trim_start();
    !(s.starts_with("SELECT") || s.starts_with("SHOW"))
}

/// True for a statement that reads or changes existing rows named by an array parameter
/// (`= ANY ($n)`, a join with `unnest`). Such a statement is planned again at each run,
/// for the array it is given: a generic plan, which PostgreSQL settles on after five runs
/// of a prepared statement, is made on the table statistics of that moment, and a plan
/// made while a new store's tables were nearly empty scans a whole table for each of
/// them until autovacuum analyzes it (measured: W2 on PostgreSQL, webhook p99 305 ms with
/// generic plans against 65 ms with plans made for each run; docs/benchmarks.md). Inserts
/// from `unnest` have no plan to choose and stay prepared.
fn planned_each_run(sql: &str) -> bool {
    !sql.trim_start().starts_with("INSERT") && (sql.contains("ANY (") || sql.contains("unnest("))
}

impl Db<'_> {
    /// Runs a prepared statement as an unnamed one, with the parameter types of its
    /// preparation: parsed, planned for these values, bound and run in one round trip.
    async fn run_planned(
        &self,
        s: &Statement,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Vec<Row>, u64), tokio_postgres::Error> {
        use tokio_stream::StreamExt as _;
        let typed = params.iter().zip(s.params()).map(|(p, t)| (*p, t.clone()));
        let stream = match self.target {
            Target::Client(c) => c.query_typed_raw(sql, typed).await?,
            Target::Tx(t) => t.query_typed_raw(sql, typed).await?,
        };
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await {
            rows.push(row?);
        }
        let n = stream.rows_affected().unwrap_or(rows.len() as u64);
        Ok((rows, n))
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s);
        }
        let s = match self.target {
            Target::Client(c) => c.prepare(sql).await,
            Target::Tx(t) => t.prepare(sql).await,
        };
        let s = self.note(sql, s.map(|s| (s, 0)))?.0;
        self.cache.insert(sql, s.clone());
        Ok(s)
    }

    /// Records what a statement did to the transaction: `rows` changed, or a failure.
    fn note<T>(
        &mut self,
        sql: &str,
        done: Result<(T, u64), tokio_postgres::Error>,
    ) -> Result<(T, u64), tokio_postgres::Error> {
        if let Some(state) = self.state.as_deref_mut() {
            match &done {
                Ok((_, rows)) if may_change(sql) => state.changes += rows,
                Ok(_) => {}
                Err(_) => state.failed = true,
            }
        }
        done
    }

    /// The rows of a statement. A statement that changes rows must say `RETURNING` here,
    /// so that the rows it returns are the rows it changed.
    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> TxResult<Vec<Row>> {
        debug_assert!(
            !may_change(sql) || sql.contains("RETURNING"),
            "a changing statement run as a query must return its rows: {sql}"
        );
        let s = self.statement(sql).await?;
        let counted = if planned_each_run(sql) {
            self.run_planned(&s, sql, params).await
        } else {
            let rows = match self.target {
                Target::Client(c) => c.query(&s, params).await,
                Target::Tx(t) => t.query(&s, params).await,
            };
            rows.map(|rows| {
                let n = rows.len() as u64;
                (rows, n)
            })
        };
        Ok(self.note(sql, counted)?.0)
    }

    /// The row of a statement that returns at most one.
    pub(super) async fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> TxResult<Option<Row>> {
        let mut rows = self.query(sql, params).await?;
        if rows.len() > 1 {
            let n = rows.len();
            return Err(
                StoreError::Corrupt(format!("{n} rows where one at most was expected")).into(),
            );
        }
        Ok(rows.pop())
    }

    /// The row of a statement that returns exactly one.
    pub(super) async fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> TxResult<Row> {
        self.query_opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::Corrupt("no row where one was expected".into()).into())
    }

    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> TxResult<u64> {
        let s = self.statement(sql).await?;
        let n = if planned_each_run(sql) {
            self.run_planned(&s, sql, params).await.map(|(_, n)| n)
        } else {
            match self.target {
                Target::Client(c) => c.execute(&s, params).await,
                Target::Tx(t) => t.execute(&s, params).await,
            }
        };
        Ok(self.note(sql, n.map(|n| ((), n)))?.1)
    }
}

/// The open transaction of one attempt of a write (or of a group of writes), its time,
/// its events and the rows it changed.
pub(super) struct WriteTx<'c> {
    tx: Transaction<'c>,
    cache: &'c mut StatementCache,
    /// The store's clock, read once when the attempt began.
    pub(super) now_us: i64,
    pub(super) events: Vec<NewEvent>,
    pub(super) state: TxState,
    channels: Arc<Channels>,
    /// Timers created due soon, announced at COMMIT (`listen.rs`).
    due: Vec<(i64, uuid::Uuid)>,
    /// A tenant or key changed: announced at COMMIT.
    keys_changed: bool,
    /// Deliveries became due now: announced at COMMIT to the other kernels.
    ready: bool,
    /// The length of a metering bucket, in µs: usage counted by this write goes to the
    /// bucket of `now_us`.
    pub(super) meter_bucket_us: i64,
}

impl<'c> WriteTx<'c> {
    pub(super) fn db(&mut self) -> Db<'_> {
        Db {
            target: Target::Tx(&self.tx),
            cache: self.cache,
            state: Some(&mut self.state),
        }
    }

    /// Announces, at COMMIT, a timer created due soon to the kernel holding its shard.
    pub(super) fn announce_due(&mut self, fire_at_us: i64, id: uuid::Uuid) {
        if fire_at_us <= self.now_us.saturating_add(ANNOUNCE_DUE_WITHIN_US) {
            self.due.push((fire_at_us, id));
        }
    }

    /// Announces, at COMMIT, that a tenant or key changed.
    pub(super) fn announce_key_change(&mut self) {
        self.keys_changed = true;
    }

    /// Announces, at COMMIT, that deliveries became due now, so the lease sessions of
    /// other kernels claim them.
    pub(super) fn announce_ready(&mut self) {
        self.ready = true;
    }

    /// Records an event; it is numbered and stored when the write commits.
    pub(super) fn append_event(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    /// Appends the events (if any) and commits; publishes the events once committed.
    pub(super) async fn commit(mut self, log: &EventLog) -> Result<(), Failure> {
        // PostgreSQL answers the COMMIT of an aborted transaction with a rollback, not an
        // error: it must never be mistaken for a commit. (An operation that goes on after
        // a failed statement is a bug.)
        if self.state.failed {
            debug_assert!(false, "a write went on after a failed statement");
            let why = "a write went on after a failed statement; nothing was stored";
            return Err(self
                .abandon(Verdict::Answer(StoreError::Unavailable(why.into())))
                .await);
        }
        if let Err(e) = self.announce().await {
            return Err(self.abandon(e.verdict()).await);
        }
        if self.events.is_empty() {
            return self.tx.commit().await.map_err(commit_failure);
        }
        let events = std::mem::take(&mut self.events);
        let now_us = self.now_us;
        let turn = log.turn().await;
        if let Err(e) = log.append(&mut self.db(), events, now_us).await {
            return Err(self.abandon(e.verdict()).await);
        }
        self.tx.commit().await.map_err(commit_failure)?;
        turn.committed();
        Ok(())
    }

    /// Queues this write's announcements, in one statement; PostgreSQL delivers them at
    /// COMMIT.
    async fn announce(&mut self) -> TxResult<()> {
        let channels = self.channels.clone();
        let mut sent: Vec<(&str, String)> = due_payloads(&std::mem::take(&mut self.due))
            .into_iter()
            .map(|p| (channels.timers.as_str(), p))
            .collect();
        if self.keys_changed {
            sent.push((&channels.keys, String::new()));
        }
        if self.ready {
            sent.push((&channels.ready, channels.me.clone()));
        }
        if !self.events.is_empty() {
            sent.push((&channels.events, String::new()));
        }
        notify(&mut self.db(), sent).await
    }

    /// Rolls back after a failed step; the connection is given up if even that fails.
    pub(super) async fn abandon(self, verdict: Verdict) -> Failure {
        let unusable =
            matches!(verdict, Verdict::Reconnect(_)) || self.tx.rollback().await.is_err();
        Failure { verdict, unusable }
    }
}

/// A write as the writer runs it: in a group commit with other writes, or alone, and run
/// again from the start as often as conflicts require.
pub(super) trait WriteOp: Send {
    /// Runs the write once in `w`. Its value, or its refusal (returned as
    /// [`TxError::Store`] as well), is kept until the end of the transaction is known.
    fn run<'w, 'c>(&'w mut self, w: &'w mut WriteTx<'c>) -> OpFuture<'w, ()>;

    /// Answers the caller: `Ok` means the last run stands (its transaction committed, or it
    /// refused and changed nothing), so the kept value or refusal is the answer; `Err`
    /// says why nothing of it was stored.
    fn answer(self: Box<Self>, ended: StoreResult<()>);
}

/// Where a write's answer goes: the value or refusal of its last run, kept until the end
/// of its transaction is known, and the channel its caller waits on.
pub(super) struct Reply<T> {
    pub(super) kept: Option<StoreResult<T>>,
    sender: oneshot::Sender<StoreResult<T>>,
}

impl<T> Reply<T> {
    pub(super) fn new() -> (Self, oneshot::Receiver<StoreResult<T>>) {
        let (sender, rx) = oneshot::channel();
        let reply = Self { kept: None, sender };
        (reply, rx)
    }

    /// Keeps the result of a run: its value, or its refusal (which is also returned, so
    /// that the writer sees it); any other error keeps nothing.
    pub(super) fn keep(&mut self, result: TxResult<T>) -> TxResult<()> {
        self.kept = None;
        match result {
            Ok(value) => {
                self.kept = Some(Ok(value));
                Ok(())
            }
            Err(TxError::Store(e)) => {
                self.kept = Some(Err(e.clone()));
                Err(TxError::Store(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Answers the caller as [`WriteOp::answer`] says.
    pub(super) fn send(self, ended: StoreResult<()>) {
        let kept = self.kept;
        let answer = ended.and_then(|()| {
            kept.unwrap_or_else(|| {
                Err(StoreError::Unavailable(
                    "a write ended without a result".into(),
                ))
            })
        });
        // A caller that stopped waiting is not an error.
        let _ = self.sender.send(answer);
    }
}

/// A write given as a closure, with its reply.
pub(super) struct Job<T, F> {
    op: F,
    reply: Reply<T>,
}

impl<T, F> Job<T, F> {
    pub(super) fn new(op: F) -> (Self, oneshot::Receiver<StoreResult<T>>) {
        let (reply, rx) = Reply::new();
        (Self { op, reply }, rx)
    }
}

impl<T, F> WriteOp for Job<T, F>
where
    T: Send,
    F: for<'w, 'c> FnMut(&'w mut WriteTx<'c>) -> OpFuture<'w, T> + Send,
{
    fn run<'w, 'c>(&'w mut self, w: &'w mut WriteTx<'c>) -> OpFuture<'w, ()> {
        Box::pin(async move {
            let result = (self.op)(w).await;
            self.reply.keep(result)
        })
    }

    fn answer(self: Box<Self>, ended: StoreResult<()>) {
        self.reply.send(ended);
    }
}

/// A failed attempt, and whether its connection must be closed.
pub(super) struct Failure {
    pub(super) verdict: Verdict,
    pub(super) unusable: bool,
}

impl From<Verdict> for Failure {
    fn from(verdict: Verdict) -> Self {
        let unusable = matches!(verdict, Verdict::Reconnect(_));
        Failure { verdict, unusable }
    }
}

impl Failure {
    /// After a failed attempt: closes its connection if it is unusable, and returns the
    /// caller's answer, or why the operation runs again.
    fn settle(self, lent: &mut PooledConn) -> Result<String, StoreError> {
        if self.unusable {
            lent.mark_broken();
        }
        match self.verdict {
            Verdict::Answer(e) => Err(e),
            Verdict::Retry(why) | Verdict::Reconnect(why) => Ok(why),
        }
    }
}

pub(super) fn gave_up(last: &str) -> StoreError {
    StoreError::Unavailable(format!("gave up after {MAX_ATTEMPTS} attempts: {last}"))
}

/// A failed COMMIT. The transaction is rolled back, unless the connection was lost: then
/// nobody knows, and the write must not run again.
fn commit_failure(e: tokio_postgres::Error) -> Failure {
    if is_connection_lost(&e) {
        return Failure {
            verdict: Verdict::Answer(StoreError::Unavailable(format!(
                "the connection was lost while committing, so the write may or may not be stored ({})",
                describe(&e)
            ))),
            unusable: true,
        };
    }
    Failure::from(classify(&e))
}

impl Shared {
    /// Begins a write transaction on `conn`, at the store's time now.
    pub(super) async fn begin<'c>(
        &self,
        conn: &'c mut super::pool::Conn,
    ) -> Result<WriteTx<'c>, Failure> {
        let tx = conn
            .client
            .transaction()
            .await
            .map_err(|e| Failure::from(classify(&e)))?;
        Ok(WriteTx {
            tx,
            cache: &mut conn.statements,
            now_us: self.clock.now_us(),
            events: Vec::new(),
            state: TxState::default(),
            channels: self.channels.clone(),
            due: Vec::new(),
            keys_changed: false,
            ready: false,
            meter_bucket_us: self.meter_bucket_us,
        })
    }

    /// Runs `op` in a transaction of its own, as attempts (see the module comment), and
    /// answers its caller.
    pub(super) async fn run_alone(&self, mut op: Box<dyn WriteOp>) {
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut lent = match self.lend(attempt).await {
                Ok(lent) => lent,
                Err(e) => return op.answer(Err(e)),
            };
            let conn = lent.conn();
            // Ok(whether the connection must be closed) when the run stands.
            let result = async {
                let mut w = self.begin(conn).await?;
                match op.run(&mut w).await {
                    Ok(()) => w.commit(&self.log).await.map(|()| false),
                    // A refusal stands; its transaction is rolled back.
                    Err(TxError::Store(_)) => {
                        Ok(w.abandon(Verdict::Retry("refused".into())).await.unusable)
                    }
                    Err(e) => Err(w.abandon(e.verdict()).await),
                }
            }
            .await;
            match result {
                Ok(unusable) => {
                    if unusable {
                        lent.mark_broken();
                    }
                    return op.answer(Ok(()));
                }
                Err(failure) => match failure.settle(&mut lent) {
                    Ok(why) => last = why,
                    Err(e) => return op.answer(Err(e)),
                },
            }
        }
        op.answer(Err(gave_up(&last)))
    }

    /// Runs a read on a lent connection: statement by statement, or, with `snapshot`, in
    /// one REPEATABLE READ READ ONLY transaction, so that several statements see the same
    /// committed state. A read runs again after a lost connection.
    pub(super) async fn read<T, F>(&self, snapshot: bool, mut op: F) -> StoreResult<T>
    where
        F: for<'d, 'c> FnMut(&'d mut Db<'c>) -> OpFuture<'d, T> + Send,
    {
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut lent = self.lend(attempt).await?;
            let conn = lent.conn();
            let result: Result<T, Failure> = if snapshot {
                async {
                    let tx = conn
                        .client
                        .build_transaction()
                        .isolation_level(IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()
                        .await
                        .map_err(|e| Failure::from(classify(&e)))?;
                    let value = {
                        let mut db = Db {
                            target: Target::Tx(&tx),
                            cache: &mut conn.statements,
                            state: None,
                        };
                        op(&mut db).await
                    };
                    match value {
                        Ok(v) => tx
                            .commit()
                            .await
                            .map(|()| v)
                            .map_err(|e| Failure::from(classify(&e))),
                        Err(e) => {
                            let verdict = e.verdict();
                            let unusable = matches!(verdict, Verdict::Reconnect(_))
                                || tx.rollback().await.is_err();
                            Err(Failure { verdict, unusable })
                        }
                    }
                }
                .await
            } else {
                let mut db = Db {
                    target: Target::Client(&conn.client),
                    cache: &mut conn.statements,
                    state: None,
                };
                op(&mut db).await.map_err(|e| Failure::from(e.verdict()))
            };
            match result {
                Ok(value) => return Ok(value),
                Err(failure) => last = failure.settle(&mut lent)?,
            }
        }
        Err(gave_up(&last))
    }

    /// A connection for attempt number `attempt` (from 1), after a short random pause if
    /// it is not the first.
    pub(super) async fn lend(&self, attempt: u32) -> StoreResult<PooledConn> {
        if attempt > 1 {
            let most = RETRY_PAUSE_STEP_US * u64::from(attempt);
            tokio::time::sleep(std::time::Duration::from_micros(fastrand::u64(0..=most))).await;
        }
        self.pool.get().await
    }
}

#[cfg(test)]
mod tests {
    use super::{may_change, planned_each_run};

    #[test]
    fn statements_naming_rows_by_array_are_planned_for_each_run() {
        assert!(planned_each_run(
            "SELECT id FROM timers WHERE id = ANY ($1) FOR UPDATE"
        ));
        assert!(planned_each_run(
            "UPDATE deliveries AS d SET status = u.status FROM unnest($1::uuid[]) AS u(id)"
        ));
        assert!(!planned_each_run(
            "INSERT INTO attempts SELECT * FROM unnest($1::uuid[])"
        ));
        assert!(!planned_each_run("SELECT last_seq FROM event_log_head"));
    }

    #[test]
    fn reads_and_locks_change_nothing_and_everything_else_may() {
        assert!(!may_change("SELECT 1"));
        assert!(!may_change(
            "  SELECT id FROM timers WHERE id = $1 FOR UPDATE"
        ));
        assert!(!may_change("SHOW synchronous_commit"));
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "WITH x AS MATERIALIZED (SELECT 1) UPDATE t SET a = 1",
        ] {
            assert!(may_change(sql), "{sql}");
        }
    }
}
