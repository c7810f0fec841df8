//! How an operation of the PostgreSQL backend runs: on a lent connection, each write in
//! one READ COMMITTED transaction answered only after its COMMIT returned (the server's
//! `synchronous_commit` makes that a WAL flush), each statement prepared once per
//! connection. An operation is a closure run as attempts: a conflict with a concurrent
//! transaction (deadlock, serialization failure, a unique violation the operation
//! recognises) or a connection lost before COMMIT was sent runs it again from the start,
//! in a new transaction with a fresh reading of the clock, at most
//! [`MAX_ATTEMPTS`] times. A connection lost *during* COMMIT is never retried: the write
//! may be stored, so the caller is told it is unknown.
//!
//! Events are appended at the end of a write, after every other change (`log.rs` says
//! why), so this module must never let an operation insert into `events` itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use minoots_core::{Clock, DeliveryId, EventType, TimerId};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel, Row, Statement, Transaction};

use super::errors::{TxResult, Verdict, classify, describe, is_connection_lost};
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
}

/// Where statements go: the bare connection (one-statement reads) or a transaction.
enum Target<'a> {
    Client(&'a Client),
    Tx(&'a Transaction<'a>),
}

/// Runs statements, each prepared once per connection.
pub(super) struct Db<'a> {
    target: Target<'a>,
    cache: &'a mut StatementCache,
}

impl Db<'_> {
    async fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s);
        }
        let s = match self.target {
            Target::Client(c) => c.prepare(sql).await?,
            Target::Tx(t) => t.prepare(sql).await?,
        };
        self.cache.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> TxResult<Vec<Row>> {
        let s = self.statement(sql).await?;
        Ok(match self.target {
            Target::Client(c) => c.query(&s, params).await?,
            Target::Tx(t) => t.query(&s, params).await?,
        })
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
        Ok(match self.target {
            Target::Client(c) => c.execute(&s, params).await?,
            Target::Tx(t) => t.execute(&s, params).await?,
        })
    }
}

/// An event of a write, numbered when the write commits.
pub(super) struct NewEvent {
    pub(super) event_type: EventType,
    pub(super) tenant_id: String,
    pub(super) timer_id: TimerId,
    pub(super) delivery_id: Option<DeliveryId>,
    pub(super) data: serde_json::Value,
}

/// The open transaction of one attempt of a write, its time and its events.
pub(super) struct WriteTx<'c> {
    tx: Transaction<'c>,
    cache: &'c mut StatementCache,
    /// The store's clock, read once when the attempt began.
    pub(super) now_us: i64,
    events: Vec<NewEvent>,
}

impl<'c> WriteTx<'c> {
    pub(super) fn db(&mut self) -> Db<'_> {
        Db {
            target: Target::Tx(&self.tx),
            cache: self.cache,
        }
    }

    /// Records an event; it is numbered and stored when the write commits.
    pub(super) fn append_event(
        &mut self,
        event_type: EventType,
        tenant_id: &str,
        timer_id: TimerId,
        delivery_id: Option<DeliveryId>,
        data: serde_json::Value,
    ) {
        self.events.push(NewEvent {
            event_type,
            tenant_id: tenant_id.to_string(),
            timer_id,
            delivery_id,
            data,
        });
    }

    /// Appends the events (if any) and commits; publishes the events once committed.
    async fn commit(mut self, log: &EventLog) -> Result<(), Failure> {
        if self.events.is_empty() {
            return self.tx.commit().await.map_err(commit_failure);
        }
        let events = std::mem::take(&mut self.events);
        let now_us = self.now_us;
        let turn = log.turn().await;
        let numbered = match log.append(&mut self.db(), &events, now_us).await {
            Ok(numbered) => numbered,
            Err(e) => return Err(self.abandon(e.verdict()).await),
        };
        self.tx.commit().await.map_err(commit_failure)?;
        turn.publish(numbered);
        Ok(())
    }

    /// Rolls back after a failed step; the connection is given up if even that fails.
    async fn abandon(self, verdict: Verdict) -> Failure {
        let unusable =
            matches!(verdict, Verdict::Reconnect(_)) || self.tx.rollback().await.is_err();
        Failure { verdict, unusable }
    }
}

/// A failed attempt, and whether its connection must be closed.
struct Failure {
    verdict: Verdict,
    unusable: bool,
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

fn gave_up(last: &str) -> StoreError {
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
    /// Runs a write in a transaction, as attempts (see the module comment).
    pub(super) async fn write<T, F>(&self, mut op: F) -> StoreResult<T>
    where
        F: for<'w, 'c> FnMut(&'w mut WriteTx<'c>) -> OpFuture<'w, T> + Send,
    {
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut lent = self.lend(attempt).await?;
            let conn = lent.conn();
            let result = async {
                let tx = conn
                    .client
                    .transaction()
                    .await
                    .map_err(|e| Failure::from(classify(&e)))?;
                let mut w = WriteTx {
                    tx,
                    cache: &mut conn.statements,
                    now_us: self.clock.now_us(),
                    events: Vec::new(),
                };
                match op(&mut w).await {
                    Ok(value) => w.commit(&self.log).await.map(|()| value),
                    Err(e) => Err(w.abandon(e.verdict()).await),
                }
            }
            .await;
            match result {
                Ok(value) => return Ok(value),
                Err(failure) => last = failure.settle(&mut lent)?,
            }
        }
        Err(gave_up(&last))
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
}

impl Shared {
    /// A connection for attempt number `attempt` (from 1), after a short random pause if
    /// it is not the first.
    async fn lend(&self, attempt: u32) -> StoreResult<PooledConn> {
        if attempt > 1 {
            let most = RETRY_PAUSE_STEP_US * u64::from(attempt);
            tokio::time::sleep(std::time::Duration::from_micros(fastrand::u64(0..=most))).await;
        }
        self.pool.get().await
    }
}
