//! A small bounded pool of PostgreSQL connections, each with its own cache of prepared
//! statements. It owns connecting (search path, timeouts, application name, the
//! durability check), lending a connection to one operation at a time, and dropping a
//! connection that broke; it never runs a statement of an operation and never retries
//! one (`tx.rs` decides that).
//!
//! At most `max_connections` connections exist at once: a semaphore with that many
//! permits is taken before a connection is lent, so the bound holds whether the
//! connection is taken from the idle list or opened afresh. A caller waits for a permit
//! at most `acquire_timeout_ms`, then gets `Unavailable`: a flood of requests queues in
//! time-bounded waits instead of opening connections PostgreSQL cannot afford (its
//! `max_connections`, 100 by default, is shared by every process of the cluster).
//! A connection that the server closed or that failed mid-message is not returned to
//! the idle list; the next borrower opens a fresh one in its place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification, Statement};

use super::errors::describe;
use crate::types::{StoreError, StoreResult};

/// Most distinct statements one connection keeps prepared. Every statement the backend
/// runs is a constant of its source, so the cache stays far below this; reaching it
/// means a statement is built at run time, which is a bug.
pub(super) const MAX_CACHED_STATEMENTS: usize = 256;

/// Prepared statements of one connection, by their SQL text.
#[derive(Default)]
pub(super) struct StatementCache {
    statements: HashMap<&'static str, Statement>,
}

impl StatementCache {
    pub(super) fn get(&self, sql: &'static str) -> Option<Statement> {
        self.statements.get(sql).cloned()
    }

    pub(super) fn insert(&mut self, sql: &'static str, statement: Statement) {
        assert!(
            self.statements.len() < MAX_CACHED_STATEMENTS || self.statements.contains_key(sql),
            "more than {MAX_CACHED_STATEMENTS} distinct statements prepared on one connection"
        );
        self.statements.insert(sql, statement);
    }
}

/// One open connection and what belongs to it.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: StatementCache,
}

/// How to open connections, read once from the store's settings.
pub(super) struct ConnectSettings {
    pub(super) config: tokio_postgres::Config,
    /// Already checked to be a plain identifier (see `PostgresConfig::check`).
    pub(super) schema: Option<String>,
    pub(super) statement_timeout_ms: u64,
    /// The server ends a session that stays this long inside a transaction without
    /// running a statement (half the shard lease). A kernel stopped mid-transaction
    /// (SIGSTOP, a frozen VM) keeps its TCP connection open, and without this its
    /// session would keep its row locks — shard epochs read `FOR SHARE`, the event log's
    /// counter row, tenant counters — for as long as it sleeps, so no other kernel could
    /// take its shards, renew its own, or commit an event. A live kernel never idles
    /// inside a transaction: it runs the statements of one write back to back.
    pub(super) idle_in_transaction_timeout_ms: u64,
}

pub(super) struct Pool {
    settings: ConnectSettings,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    max_connections: usize,
    acquire_timeout: Duration,
}

impl Pool {
    pub(super) fn new(
        settings: ConnectSettings,
        max_connections: usize,
        acquire_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            idle: Mutex::new(Vec::with_capacity(max_connections)),
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            acquire_timeout,
        })
    }

    /// Lends a connection: an idle one that is still open, or a new one.
    pub(super) async fn get(self: &Arc<Self>) -> StoreResult<PooledConn> {
        let permit =
            match tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(StoreError::Closed),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "all {} PostgreSQL connections stayed busy for {} ms",
                        self.max_connections,
                        self.acquire_timeout.as_millis()
                    )));
                }
            };
        let reused = loop {
            let candidate = self.idle.lock().expect("pool poisoned").pop();
            match candidate {
                Some(c) if c.client.is_closed() => continue,
                other => break other,
            }
        };
        let conn = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(PooledConn {
            pool: self.clone(),
            conn: Some(conn),
            broken: false,
            _permit: permit,
        })
    }

    /// Opens and sets up one connection.
    pub(super) async fn connect(&self) -> StoreResult<Conn> {
        let (client, connection) =
            self.settings.config.connect(NoTls).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot connect: {}", describe(&e)))
            })?;
        // The connection task carries every message of this client; it ends when the
        // client is dropped or the server goes away (the client then reports closed).
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %describe(&e), "store: a PostgreSQL connection ended");
            }
        });
        self.set_up(&client).await?;
        Ok(Conn {
            client,
            statements: StatementCache::default(),
        })
    }

    /// Opens a connection, outside the pool, whose notifications (LISTEN) come out of
    /// the returned receiver. More than `max_unhandled` notifications not yet received
    /// end the connection (the listener then opens another and catches up).
    pub(super) async fn connect_listening(
        &self,
        max_unhandled: usize,
    ) -> StoreResult<(Client, mpsc::Receiver<Notification>)> {
        // Named apart from the pool's sessions in `pg_stat_activity`.
        let mut config = self.settings.config.clone();
        let mut name = format!(
            "{}-listen",
            config.get_application_name().unwrap_or("minoots")
        );
        name.truncate(63);
        config.application_name(&name);
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect: {}", describe(&e))))?;
        let (tx, rx) = mpsc::channel(max_unhandled.max(1));
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.try_send(n).is_err() {
                            tracing::warn!(
                                "store: notifications arrive faster than they are handled; listening again"
                            );
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %describe(&e), "store: the listening connection ended");
                        break;
                    }
                    None => break,
                }
            }
        });
        self.set_up(&client).await?;
        Ok((client, rx))
    }

    /// The session settings every connection runs with.
    async fn set_up(&self, client: &Client) -> StoreResult<()> {
        let mut setup = format!(
            "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {};",
            self.settings.statement_timeout_ms, self.settings.idle_in_transaction_timeout_ms
        );
        if let Some(schema) = &self.settings.schema {
            setup.push_str(&format!(" SET search_path TO \"{schema}\";"));
        }
        client.batch_execute(&setup).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot set up a connection: {}", describe(&e)))
        })?;
        ensure_synchronous_commit(client).await
    }

    /// Refuses new borrowers, waits for the lent connections to come back, and closes
    /// every connection.
    pub(super) async fn close(&self) {
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if let Ok(permits) = self.permits.acquire_many(all).await {
            permits.forget();
        }
        self.permits.close();
        self.idle.lock().expect("pool poisoned").clear();
    }
}

/// Acknowledged means durable: a commit is answered only after its WAL is flushed. The
/// server's default (`on`) does that; `local`, `remote_write` and `remote_apply` do it
/// too (and more). Only `off` answers before the flush, so a server configured that way
/// is overruled for MINOOTS' sessions, loudly.
async fn ensure_synchronous_commit(client: &Client) -> StoreResult<()> {
    let setup_failed = |e: tokio_postgres::Error| {
        StoreError::Unavailable(format!("cannot set up a connection: {}", describe(&e)))
    };
    let mode: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .map_err(setup_failed)?
        .try_get(0)
        .map_err(setup_failed)?;
    if mode == "off" {
        tracing::warn!(
            "store: PostgreSQL has synchronous_commit = off; MINOOTS sets it to on for its sessions so that acknowledged writes are durable"
        );
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(setup_failed)?;
    }
    Ok(())
}

/// A connection lent to one operation; it goes back to the idle list when dropped,
/// unless it broke.
pub(super) struct PooledConn {
    pool: Arc<Pool>,
    conn: Option<Conn>,
    broken: bool,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    pub(super) fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a lent connection is present until dropped")
    }

    /// The connection cannot be trusted any more (lost, or left mid-transaction): it is
    /// closed instead of being lent again.
    pub(super) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.broken
            && !conn.client.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(conn);
        }
    }
}
