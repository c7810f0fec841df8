//! The PostgreSQL backend: one database shared by any number of store handles, in one
//! process or many. Everything a handle keeps in memory is a cache (prepared statements)
//! or a courtesy (the live feed of the events it commits); the database is the only
//! truth, so two handles on one database see each other's writes at once and never
//! contradict each other.
//!
//! - Connections come from a small bounded pool (`pool.rs`), without TLS for now: the
//!   store expects PostgreSQL on loopback or a trusted network.
//! - Writes go through a writer task per handle (two: the delivery path has its own)
//!   that commits the writes queued meanwhile as one READ COMMITTED transaction and
//!   answers each after its COMMIT returned (group commit, `writer.rs`); creates of a group run as one multi-row create
//!   (`create.rs`), and its attempt reports as one multi-row report (`reports.rs`). A
//!   write that fails for its own reason runs alone, in a transaction of
//!   its own, again from the start on a deadlock, a serialization failure, an expected
//!   unique violation or a connection lost before COMMIT (`tx.rs`).
//! - Writes read, lock and fence, ask the core planners (and `crate::plan`) before their
//!   first change, and write what they say (`timers.rs`, `deliveries.rs`, `leases.rs`):
//!   a refused write changes nothing, so its group commits without it.
//! - Quotas and idempotency keys stay exact under concurrency by per-tenant locks
//!   (`create.rs`) and constraints (`admin.rs`); claims skip the rows other handles hold,
//!   reports and rescues lock the row they fence on (`deliveries.rs`).
//! - Event numbers follow commit order across every handle (`log.rs`).
//! - The schema is migrated at open under an advisory lock (`schema.rs`).
//! - Errors are judged by SQLSTATE (`errors.rs`).

mod admin;
mod create;
mod deliveries;
mod errors;
mod leases;
mod listen;
mod log;
mod pool;
mod reports;
mod rows;
mod schema;
mod shards;
mod timers;
mod tx;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minoots_core::{Clock, Delivery, DeliveryId, Event, Timer, TimerChange, TimerChanged, TimerId};
use tokio::sync::broadcast;

use crate::Store;
use crate::types::*;
use create::CreateJob;
pub use listen::ANNOUNCE_DUE_WITHIN_US;
use pool::{ConnectSettings, Pool};
pub use shards::{SHARD_COUNT, shard_of};
use tx::{Db, Job, OpFuture, Shared, WriteTx};
use writer::Writer;
pub use writer::WriterHold;

/// Most connections one handle may have open, whatever its settings: PostgreSQL's own
/// `max_connections` (100 by default) is shared by every process of a cluster.
pub const MAX_POOL_CONNECTIONS: usize = 256;
/// Longest accepted timeout of any kind: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Shortest shard lease: rounds must fit several times in one.
const MIN_SHARD_LEASE_TTL_MS: u64 = 1_000;
/// Longest schema name and application name PostgreSQL keeps (NAMEDATALEN − 1).
const MAX_NAME_BYTES: usize = 63;
/// Most writes queued for, or committed together by, the writer of one handle.
const MAX_WRITER_QUEUE: usize = 1 << 20;

/// Settings of the PostgreSQL backend.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host[:port]/database[?options]`. Never logged: it may
    /// hold a password.
    pub url: String,
    /// The schema holding MINOOTS' tables (created at open when missing); `None` uses the
    /// server's search path (`public` by default). Lets several stores share one
    /// database, as the tests do. Lowercase letters, digits and `_`.
    pub schema: Option<String>,
    /// Connections this handle may open (default 10), besides one that listens for the
    /// other handles' announcements (`listen.rs`) and, for a kernel, one for its shard
    /// rounds (`shards.rs`). Operations beyond it wait for a free
    /// one. Ten per process leaves room for nine processes (kernels, tools) within
    /// PostgreSQL's default `max_connections` of 100.
    pub max_connections: usize,
    /// How long an operation waits for a free connection before `Unavailable` (default
    /// 10 s).
    pub acquire_timeout_ms: u64,
    /// How long opening one connection may take (default 5 s).
    pub connect_timeout_ms: u64,
    /// The server cancels any statement running longer (default 30 s): a stuck query
    /// cannot hold a connection (and its locks) for ever. Migrations are exempt.
    pub statement_timeout_ms: u64,
    /// Live events buffered per subscriber before it is told it lagged (default 16,384,
    /// as for SQLite).
    pub event_broadcast_capacity: usize,
    /// Shown in `pg_stat_activity` (default `minoots`), so operators can tell MINOOTS'
    /// sessions apart.
    pub application_name: String,
    /// Writes waiting for the writer task; callers wait (backpressure) when it is full
    /// (default 65,536, as for SQLite).
    pub writer_queue_capacity: usize,
    /// Most writes committed in one transaction (default 4,096, as for SQLite). Bounds
    /// the time one group holds its locks and the memory of one group.
    pub max_batch_ops: usize,
    /// Set by a kernel, to a name no other kernel of the database goes by (default
    /// `None`): the handle then leases shards of timers and fires only theirs, fenced by
    /// their epochs (`shards.rs`), and one kernel of the database runs maintenance.
    /// Tools and tests that share a database with kernels leave it unset.
    pub kernel: Option<String>,
    /// How long a kernel's shard leases last without renewal (default 10 s): a killed
    /// kernel's timers fire again, on another kernel, within this plus one second.
    /// Rounds renew every quarter of it (at most every second).
    pub shard_lease_ttl_ms: u64,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 10,
            acquire_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            event_broadcast_capacity: 16_384,
            application_name: "minoots".into(),
            writer_queue_capacity: 65_536,
            max_batch_ops: 4_096,
            kernel: None,
            shard_lease_ttl_ms: 10_000,
        }
    }

    /// Refuses settings outside their bounds, naming the setting.
    pub fn check(&self) -> StoreResult<()> {
        let bad = |what: String| {
            Err(StoreError::Unavailable(format!(
                "invalid PostgreSQL settings: {what}"
            )))
        };
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return bad("the database URL must start with postgres:// or postgresql://".into());
        }
        if let Err(e) = self.url.parse::<tokio_postgres::Config>() {
            return bad(format!("the database URL does not parse ({e})"));
        }
        if let Some(schema) = &self.schema {
            let plain = schema.len() <= MAX_NAME_BYTES
                && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return bad(format!(
                    "schema \"{schema}\" must be 1 to {MAX_NAME_BYTES} lowercase letters, digits or _, not starting with a digit"
                ));
            }
        }
        if !(1..=MAX_POOL_CONNECTIONS).contains(&self.max_connections) {
            return bad(format!(
                "max_connections is {}; it must be 1 to {MAX_POOL_CONNECTIONS}",
                self.max_connections
            ));
        }
        for (name, ms) in [
            ("acquire_timeout_ms", self.acquire_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("statement_timeout_ms", self.statement_timeout_ms),
        ] {
            if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
                return bad(format!("{name} is {ms}; it must be 1 to {MAX_TIMEOUT_MS}"));
            }
        }
        if !(MIN_SHARD_LEASE_TTL_MS..=MAX_TIMEOUT_MS).contains(&self.shard_lease_ttl_ms) {
            return bad(format!(
                "shard_lease_ttl_ms is {}; it must be {MIN_SHARD_LEASE_TTL_MS} to {MAX_TIMEOUT_MS}",
                self.shard_lease_ttl_ms
            ));
        }
        if self.event_broadcast_capacity == 0 {
            return bad("event_broadcast_capacity must be at least 1".into());
        }
        for (name, n) in [
            ("writer_queue_capacity", self.writer_queue_capacity),
            ("max_batch_ops", self.max_batch_ops),
        ] {
            if !(1..=MAX_WRITER_QUEUE).contains(&n) {
                return bad(format!("{name} is {n}; it must be 1 to {MAX_WRITER_QUEUE}"));
            }
        }
        if let Some(kernel) = &self.kernel
            && (kernel.is_empty()
                || kernel.len() > MAX_NAME_BYTES
                || kernel.chars().any(char::is_control))
        {
            return bad(format!(
                "kernel must be 1 to {MAX_NAME_BYTES} bytes without control characters"
            ));
        }
        let name = &self.application_name;
        if name.len() > MAX_NAME_BYTES || !name.chars().all(|c| c.is_ascii_graphic()) {
            return bad(format!(
                "application_name must be at most {MAX_NAME_BYTES} printable ASCII characters without spaces"
            ));
        }
        Ok(())
    }
}

impl PostgresConfig {
    /// Where this store is, for logs: `postgres://user@host:port/database` and the
    /// schema, never the password.
    pub fn target(&self) -> String {
        let Ok(c) = self.url.parse::<tokio_postgres::Config>() else {
            return "postgres://(a URL that does not parse)".into();
        };
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let mut shown = format!(
            "postgres://{}@{host}:{port}/{}",
            c.get_user().unwrap_or(""),
            c.get_dbname().unwrap_or("")
        );
        if let Some(schema) = &self.schema {
            shown.push_str(&format!(" (schema {schema})"));
        }
        shown
    }
}

impl PostgresConfig {
    /// Drops the configured schema and everything in it (scratch schemas of benchmarks
    /// and tests). Refuses when no schema is configured: it never drops `public`.
    pub async fn drop_schema(&self) -> StoreResult<()> {
        self.check()?;
        let Some(schema) = &self.schema else {
            return Err(StoreError::Unavailable(
                "no schema is configured, so there is none to drop".into(),
            ));
        };
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot connect: {}", errors::describe(&e)))
            })?;
        let task = tokio::spawn(connection);
        let dropped = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot drop schema {schema}: {}",
                    errors::describe(&e)
                ))
            });
        drop(client);
        let _ = task.await;
        dropped
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &"(hidden: it may hold a password)")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("event_broadcast_capacity", &self.event_broadcast_capacity)
            .field("application_name", &self.application_name)
            .field("writer_queue_capacity", &self.writer_queue_capacity)
            .field("max_batch_ops", &self.max_batch_ops)
            .field("kernel", &self.kernel)
            .field("shard_lease_ttl_ms", &self.shard_lease_ttl_ms)
            .finish()
    }
}

/// A store in a PostgreSQL database. Cheap to clone; clones share connections and one
/// writer.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
    writer: Arc<Writer>,
    /// The delivery path's own writer: fires, claims and lease renewals (`writer.rs`).
    delivery_writer: Arc<Writer>,
    /// A kernel's shards (`PostgresConfig::kernel`).
    shards: Option<Arc<shards::ShardBook>>,
    signals: Arc<listen::Signals>,
    /// Stops the handle's tasks (shard rounds, listening, the live feed).
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl PostgresStore {
    /// Connects, applies the migrations this database lacks, and returns the store.
    pub async fn open(config: PostgresConfig, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        config.check()?;
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
        pg.application_name(&config.application_name)
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms));
        let pool = Pool::new(
            ConnectSettings {
                config: pg,
                schema: config.schema.clone(),
                statement_timeout_ms: config.statement_timeout_ms,
                idle_in_transaction_timeout_ms: (config.shard_lease_ttl_ms / 2).max(1),
            },
            config.max_connections,
            Duration::from_millis(config.acquire_timeout_ms),
        );
        {
            let mut lent = pool.get().await?;
            schema::migrate(&mut lent.conn().client, config.schema.as_deref()).await?;
        }
        let channels = Arc::new(listen::Channels::new(config.schema.as_deref()));
        let log = log::EventLog::new(config.event_broadcast_capacity);
        let signals = Arc::new(listen::Signals::new(log.nudge.clone()));
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            clock,
            log,
            channels: channels.clone(),
        });
        let book = match &config.kernel {
            Some(name) => {
                let book = Arc::new(shards::ShardBook::new(
                    name.clone(),
                    Duration::from_millis(config.shard_lease_ttl_ms),
                ));
                // The first round before the kernel starts: a kernel alone holds every
                // shard at once; one joining others gets its share as they give back.
                let mut conn = pool.connect().await?;
                shards::round(&mut conn.client, &book).await?;
                Some((book, conn))
            }
            None => None,
        };
        let (book, rounds_conn) = match book {
            Some((b, c)) => (Some(b), Some(c)),
            None => (None, None),
        };
        let head = log::head_at_open(&shared).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(listen::run(
                pool.clone(),
                channels,
                signals.clone(),
                book.clone(),
                stopped.clone(),
            )),
            tokio::spawn(log::run_tailer(shared.clone(), head, stopped.clone())),
        ];
        if let (Some(book), Some(conn)) = (&book, rounds_conn) {
            tasks.push(tokio::spawn(shards::run(
                pool.clone(),
                book.clone(),
                conn,
                stopped,
            )));
        }
        let writer = Writer::start(
            shared.clone(),
            config.writer_queue_capacity,
            config.max_batch_ops,
        );
        let delivery_writer = Writer::start(
            shared.clone(),
            config.writer_queue_capacity,
            config.max_batch_ops,
        );
        Ok(Self {
            shared,
            writer: Arc::new(writer),
            delivery_writer: Arc::new(delivery_writer),
            shards: book,
            signals,
            stop: Arc::new(stop),
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        })
    }

    /// Queues a write for the writer and waits for its answer, given after its group
    /// committed. A caller that stops waiting (a timeout, a dropped request) never cuts
    /// a transaction short: the writer commits or rolls back, and publishes the events,
    /// as if the caller had waited.
    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'w, 'c> FnMut(&'w mut WriteTx<'c>) -> OpFuture<'w, T> + Send + 'static,
    {
        self.write_locking(None, op).await
    }

    /// [`PostgresStore::write`] on the delivery path's writer (fires, claims, lease
    /// renewals), so a delivery never waits behind a group of creates or reports.
    async fn write_delivery<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'w, 'c> FnMut(&'w mut WriteTx<'c>) -> OpFuture<'w, T> + Send + 'static,
    {
        let (job, answer) = Job::new(op);
        self.delivery_writer
            .send(writer::Job::Other(Box::new(job), None))
            .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// [`PostgresStore::write`] of a write that locks the row `first` before any other,
    /// so that its group can run it in that row's order (`writer.rs`).
    async fn write_locking<T, F>(&self, first: Option<uuid::Uuid>, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'w, 'c> FnMut(&'w mut WriteTx<'c>) -> OpFuture<'w, T> + Send + 'static,
    {
        let (job, answer) = Job::new(op);
        self.writer
            .send(writer::Job::Other(Box::new(job), first))
            .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a create (one call's timers) and waits for its answer.
    async fn create(
        &self,
        timers: Vec<Timer>,
        options: CreateOptions,
    ) -> StoreResult<Vec<CreateOutcome>> {
        let (job, answer) = CreateJob::new(timers, options);
        self.writer.send(writer::Job::Create(job)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Pauses the writer once it has committed what it holds; returns when it is paused.
    /// For tests that need several writes in one group commit.
    #[doc(hidden)]
    pub async fn hold_writer(&self) -> StoreResult<WriterHold> {
        let main = self.writer.hold().await?;
        Ok(main.and(self.delivery_writer.hold().await?))
    }

    async fn read<T, F>(&self, op: F) -> StoreResult<T>
    where
        F: for<'d, 'c> FnMut(&'d mut Db<'c>) -> OpFuture<'d, T> + Send,
    {
        self.shared.read(false, op).await
    }

    /// `synchronous_commit` as the store's sessions see it: `on` (or stronger) means a
    /// commit is acknowledged only after its WAL is flushed. For tests of that promise.
    #[doc(hidden)]
    pub async fn synchronous_commit(&self) -> StoreResult<String> {
        self.read(|db| {
            Box::pin(async move {
                let row = db.query_one("SHOW synchronous_commit", &[]).await?;
                rows::col(&row, 0)
            })
        })
        .await
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_timer_with(
        &self,
        timer: Timer,
        options: CreateOptions,
    ) -> StoreResult<CreateOutcome> {
        let mut out = self.create(vec![timer], options).await?;
        out.pop()
            .ok_or_else(|| StoreError::Unavailable("a create returned no timer".into()))
    }

    async fn create_timers(&self, timers: Vec<Timer>) -> StoreResult<Vec<CreateOutcome>> {
        if timers.is_empty() {
            return Ok(Vec::new());
        }
        self.create(timers, CreateOptions::default()).await
    }

    async fn get_timer(&self, tenant_id: &str, id: TimerId) -> StoreResult<Option<Timer>> {
        let tenant = tenant_id.to_string();
        self.read(move |db| {
            let tenant = tenant.clone();
            Box::pin(async move { timers::get_timer(db, &tenant, id).await })
        })
        .await
    }

    async fn list_timers(&self, query: TimerQuery) -> StoreResult<TimerPage> {
        self.read(move |db| {
            let query = query.clone();
            Box::pin(async move { timers::list_timers(db, &query).await })
        })
        .await
    }

    async fn cancel_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        reason: Option<String>,
    ) -> StoreResult<Timer> {
        let tenant = tenant_id.to_string();
        self.write(move |w| {
            let (tenant, reason) = (tenant.clone(), reason.clone());
            Box::pin(async move { timers::cancel_timer(w, &tenant, id, reason).await })
        })
        .await
    }

    async fn update_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        change: TimerChange,
    ) -> StoreResult<TimerChanged> {
        let tenant = tenant_id.to_string();
        self.write(move |w| {
            let (tenant, change) = (tenant.clone(), change.clone());
            Box::pin(async move { timers::update_timer(w, &tenant, id, &change).await })
        })
        .await
    }

    async fn load_due_timers(
        &self,
        after: Option<DueTimer>,
        until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<DueTimer>> {
        let shards: Option<Arc<Vec<i32>>> = self.shards.as_ref().map(|b| Arc::new(b.held_shards()));
        self.read(move |db| {
            let shards = shards.clone();
            Box::pin(async move {
                timers::load_due_timers(
                    db,
                    after,
                    until_us,
                    limit,
                    shards.as_deref().map(Vec::as_slice),
                )
                .await
            })
        })
        .await
    }

    async fn fire_timers(&self, fires: Vec<FireRequest>) -> StoreResult<Vec<FireOutcome>> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        let fires = Arc::new(fires);
        let fence = self.shards.clone();
        self.write_delivery(move |w| {
            let (fires, fence) = (fires.clone(), fence.clone());
            Box::pin(async move { timers::fire_timers(w, &fires, fence.as_deref()).await })
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
        self.write_delivery(move |w| {
            let owner = owner.clone();
            Box::pin(
                async move { deliveries::claim_deliveries(w, &owner, lease_ttl_us, limit).await },
            )
        })
        .await
    }

    async fn report_attempt(&self, report: AttemptReport) -> StoreResult<ReportOutcome> {
        let (job, answer) = reports::ReportJob::new(report);
        self.writer.send(writer::Job::Report(job)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn rescue_expired_leases(&self, limit: usize) -> StoreResult<usize> {
        self.write(move |w| Box::pin(deliveries::rescue_expired_leases(w, limit)))
            .await
    }

    async fn next_delivery_due_us(&self) -> StoreResult<Option<i64>> {
        self.read(|db| Box::pin(deliveries::next_delivery_due_us(db)))
            .await
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        timer_id: TimerId,
    ) -> StoreResult<Vec<DeliveryWithAttempts>> {
        let tenant = tenant_id.to_string();
        self.shared
            .read(true, move |db| {
                let tenant = tenant.clone();
                Box::pin(async move { deliveries::list_deliveries(db, &tenant, timer_id).await })
            })
            .await
    }

    async fn read_events(&self, query: EventQuery) -> StoreResult<Vec<Event>> {
        self.read(move |db| {
            let query = query.clone();
            Box::pin(async move { log::read_events(db, &query).await })
        })
        .await
    }

    async fn latest_event_seq(&self) -> StoreResult<i64> {
        self.read(|db| Box::pin(log::latest_event_seq(db))).await
    }

    fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.shared.log.subscribe()
    }

    async fn prune_events(&self, before_us: i64, limit: usize) -> StoreResult<usize> {
        self.write(move |w| {
            Box::pin(async move { log::prune_events(&mut w.db(), before_us, limit).await })
        })
        .await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.read(|db| Box::pin(timers::stats(db))).await
    }

    async fn get_delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.read(move |db| Box::pin(deliveries::get_delivery(db, id)))
            .await
    }

    async fn redrive_timer(&self, tenant_id: &str, id: TimerId) -> StoreResult<Timer> {
        let tenant = tenant_id.to_string();
        self.write(move |w| {
            let tenant = tenant.clone();
            Box::pin(async move { timers::redrive_timer(w, &tenant, id).await })
        })
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
        self.write_locking(Some(delivery_id.0), move |w| {
            let owner = owner.clone();
            Box::pin(async move {
                deliveries::release_delivery(w, delivery_id, &owner, attempt, delay_us).await
            })
        })
        .await
    }

    async fn renew_leases(
        &self,
        lease_owner: &str,
        leases: Vec<(DeliveryId, u32)>,
        lease_ttl_us: i64,
    ) -> StoreResult<LeaseRenewal> {
        let (owner, leases) = (lease_owner.to_string(), Arc::new(leases));
        self.write_delivery(move |w| {
            let (owner, leases) = (owner.clone(), leases.clone());
            Box::pin(async move { leases::renew_leases(w, &owner, &leases, lease_ttl_us).await })
        })
        .await
    }

    async fn end_leases_of(&self, owner_prefix: &str) -> StoreResult<usize> {
        let prefix = owner_prefix.to_string();
        self.write(move |w| {
            let prefix = prefix.clone();
            Box::pin(async move { leases::end_leases_of(w, &prefix).await })
        })
        .await
    }

    async fn signing_secrets(
        &self,
        tenant_id: &str,
        candidate: String,
        grace_us: i64,
    ) -> StoreResult<Vec<String>> {
        // Almost always a plain read; only a tenant's very first webhook writes.
        let now_us = self.shared.clock.now_us();
        let tenant = tenant_id.to_string();
        let t = tenant.clone();
        let existing = self
            .read(move |db| {
                let t = t.clone();
                Box::pin(async move { admin::signing_secrets_at(db, &t, now_us, grace_us).await })
            })
            .await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        self.write(move |w| {
            let (tenant, candidate) = (tenant.clone(), candidate.clone());
            Box::pin(
                async move { admin::ensure_signing_secret(w, &tenant, &candidate, grace_us).await },
            )
        })
        .await
    }

    async fn rotate_signing_secret(&self, tenant_id: &str, new_secret: String) -> StoreResult<()> {
        let tenant = tenant_id.to_string();
        self.write(move |w| {
            let (tenant, secret) = (tenant.clone(), new_secret.clone());
            Box::pin(async move { admin::rotate_signing_secret(w, &tenant, &secret).await })
        })
        .await
    }

    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<Tenant> {
        self.write(move |w| {
            let tenant = tenant.clone();
            Box::pin(async move {
                let done = admin::create_tenant(w, tenant).await?;
                w.announce_key_change();
                Ok(done)
            })
        })
        .await
    }

    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        let id = id.to_string();
        self.read(move |db| {
            let id = id.clone();
            Box::pin(async move { admin::get_tenant(db, &id).await })
        })
        .await
    }

    async fn list_tenants(&self, after: Option<String>, limit: usize) -> StoreResult<Vec<Tenant>> {
        self.read(move |db| {
            let after = after.clone();
            Box::pin(async move { admin::list_tenants(db, after.as_deref(), limit).await })
        })
        .await
    }

    async fn update_tenant(&self, id: &str, update: TenantUpdate) -> StoreResult<Tenant> {
        let id = id.to_string();
        self.write(move |w| {
            let (id, update) = (id.clone(), update.clone());
            Box::pin(async move {
                let done = admin::update_tenant(w, &id, &update).await?;
                w.announce_key_change();
                Ok(done)
            })
        })
        .await
    }

    async fn create_api_key(&self, key: ApiKey) -> StoreResult<ApiKey> {
        self.write(move |w| {
            let key = key.clone();
            Box::pin(async move {
                let done = admin::create_api_key(w, key).await?;
                w.announce_key_change();
                Ok(done)
            })
        })
        .await
    }

    async fn api_key_by_hash(&self, key_hash: [u8; 32]) -> StoreResult<Option<ApiKey>> {
        self.read(move |db| Box::pin(async move { admin::api_key_by_hash(db, &key_hash).await }))
            .await
    }

    async fn list_api_keys(
        &self,
        tenant_id: Option<String>,
        after: Option<String>,
        limit: usize,
    ) -> StoreResult<Vec<ApiKey>> {
        self.read(move |db| {
            let (tenant_id, after) = (tenant_id.clone(), after.clone());
            Box::pin(async move {
                admin::list_api_keys(db, tenant_id.as_deref(), after.as_deref(), limit).await
            })
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str) -> StoreResult<ApiKey> {
        let id = id.to_string();
        self.write(move |w| {
            let id = id.clone();
            Box::pin(async move {
                let done = admin::revoke_api_key(w, &id).await?;
                w.announce_key_change();
                Ok(done)
            })
        })
        .await
    }

    async fn touch_api_keys(&self, used: Vec<(String, i64)>) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        let used = Arc::new(used);
        self.write(move |w| {
            let used = used.clone();
            Box::pin(async move { admin::touch_api_keys(w, &used).await })
        })
        .await
    }

    async fn tenant_usage(&self, tenant_id: &str, day: i64) -> StoreResult<TenantUsage> {
        let tenant = tenant_id.to_string();
        self.read(move |db| {
            let tenant = tenant.clone();
            Box::pin(async move { admin::tenant_usage(db, &tenant, day).await })
        })
        .await
    }

    async fn close(&self) {
        self.writer.stop().await;
        self.delivery_writer.stop().await;
        // The shard rounds give the shards back on the way out, so they end before the
        // pool closes.
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("tasks poisoned"));
        for t in tasks {
            let _ = t.await;
        }
        self.shared.pool.close().await;
    }

    fn cluster(&self) -> Option<Arc<dyn crate::Cluster>> {
        let book = self.shards.clone()?;
        Some(Arc::new(PgCluster {
            book,
            signals: self.signals.clone(),
        }))
    }
}

/// A kernel's view of the other kernels of its database.
struct PgCluster {
    book: Arc<shards::ShardBook>,
    signals: Arc<listen::Signals>,
}

impl crate::Cluster for PgCluster {
    fn owns_timer(&self, id: TimerId) -> bool {
        self.book.owns(id)
    }

    fn shard_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.book.subscribe()
    }

    fn shards_held(&self) -> usize {
        self.book.len()
    }

    fn scheduled_elsewhere(&self) -> broadcast::Receiver<DueTimer> {
        self.signals.due.subscribe()
    }

    fn key_changes(&self) -> broadcast::Receiver<()> {
        self.signals.keys.subscribe()
    }

    fn deliveries_ready(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signals.ready.subscribe()
    }

    fn maintains(&self) -> bool {
        self.book.maintains(std::time::Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_url_is_never_shown() {
        let ok = PostgresConfig::new("postgres://minoots:secret@db.internal:5432/minoots");
        ok.check().unwrap();
        assert!(!format!("{ok:?}").contains("secret"));
        assert_eq!(ok.target(), "postgres://minoots@db.internal:5432/minoots");
        let with = |f: fn(&mut PostgresConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.check().unwrap_err().to_string()
        };
        assert!(with(|c| c.url = "mysql://x".into()).contains("postgres://"));
        assert!(with(|c| c.url = "postgres://h:notaport/db".into()).contains("parse"));
        assert!(with(|c| c.schema = Some("Bad-Name".into())).contains("schema"));
        assert!(with(|c| c.schema = Some("9lives".into())).contains("schema"));
        assert!(with(|c| c.max_connections = 0).contains("max_connections"));
        assert!(with(|c| c.kernel = Some(String::new())).contains("kernel"));
        assert!(with(|c| c.kernel = Some("a\nb".into())).contains("kernel"));
        assert!(with(|c| c.max_connections = MAX_POOL_CONNECTIONS + 1).contains("max_connections"));
        assert!(with(|c| c.statement_timeout_ms = 0).contains("statement_timeout_ms"));
        assert!(with(|c| c.event_broadcast_capacity = 0).contains("event_broadcast_capacity"));
        assert!(with(|c| c.application_name = "has space".into()).contains("application_name"));
        assert!(with(|c| c.max_batch_ops = 0).contains("max_batch_ops"));
        assert!(with(|c| c.writer_queue_capacity = usize::MAX).contains("writer_queue_capacity"));
        let mut schema = ok.clone();
        schema.schema = Some("minoots_test_0a1b".into());
        schema.check().unwrap();
    }
}
