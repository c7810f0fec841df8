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
mod billing;
mod config;
mod create;
mod dashboard;
mod deliveries;
mod errors;
mod leases;
mod listen;
mod log;
mod pool;
mod reports;
mod rows;
mod schedules;
mod schema;
mod sessions;
mod shards;
mod timers;
mod tx;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minoots_core::schedule::{Schedule, ScheduleRun};
use minoots_core::{
    Clock, Delivery, DeliveryId, Event, ScheduleId, Timer, TimerChange, TimerChanged, TimerId,
};
use tokio::sync::broadcast;

use crate::Store;
use crate::types::*;
pub use config::{MAX_POOL_CONNECTIONS, PostgresConfig};
use create::CreateJob;
pub use listen::ANNOUNCE_DUE_WITHIN_US;
use pool::{ConnectSettings, Pool};
pub use shards::{SHARD_COUNT, shard_of};
use tx::{Db, Job, OpFuture, Shared, WriteTx};
use writer::Writer;
pub use writer::WriterHold;

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
            writer_stats: Default::default(),
            meter_bucket_us: config.meter_bucket_us.max(1),
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

    async fn fire_and_claim(
        &self,
        fires: Vec<FireRequest>,
        claim: Option<ClaimRequest>,
    ) -> StoreResult<(Vec<FireOutcome>, Vec<LeasedDelivery>)> {
        let Some(claim) = claim else {
            return Ok((self.fire_timers(fires).await?, Vec::new()));
        };
        let (fires, claim) = (Arc::new(fires), Arc::new(claim));
        let fence = self.shards.clone();
        self.write_delivery(move |w| {
            let (fires, c, fence) = (fires.clone(), claim.clone(), fence.clone());
            Box::pin(async move {
                let fired = timers::fire_timers(w, &fires, fence.as_deref()).await?;
                let leased =
                    deliveries::claim_deliveries(w, &c.lease_owner, c.lease_ttl_us, c.limit)
                        .await?;
                Ok((fired, leased))
            })
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

    fn subscribe_events(&self) -> broadcast::Receiver<crate::LiveEvent> {
        self.shared.log.subscribe()
    }

    async fn prune_events(&self, before_us: i64, limit: usize) -> StoreResult<usize> {
        self.write(move |w| {
            Box::pin(async move { log::prune_events(&mut w.db(), before_us, limit).await })
        })
        .await
    }

    fn writer_stats(&self) -> Arc<crate::writer_stats::WriterStats> {
        self.shared.writer_stats.clone()
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

    async fn create_schedule(
        &self,
        schedule: Schedule,
        max_schedules: Option<u64>,
    ) -> StoreResult<Schedule> {
        self.write(move |w| {
            let schedule = schedule.clone();
            Box::pin(async move { schedules::create_schedule(w, &schedule, max_schedules).await })
        })
        .await
    }

    async fn get_schedule(&self, tenant_id: &str, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        let tenant = tenant_id.to_string();
        self.read(move |db| {
            let tenant = tenant.clone();
            Box::pin(async move { schedules::get_schedule(db, Some(&tenant), id).await })
        })
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
        self.read(move |db| {
            let (tenant, filter) = (tenant.clone(), filter.clone());
            Box::pin(
                async move { schedules::list_schedules(db, &tenant, &filter, after, limit).await },
            )
        })
        .await
    }

    async fn schedules_due(
        &self,
        until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<(i64, ScheduleId)>> {
        self.read(move |db| {
            Box::pin(async move { schedules::schedules_due(db, until_us, limit).await })
        })
        .await
    }

    async fn dispatch_schedule(&self, id: ScheduleId) -> StoreResult<Dispatched> {
        self.write(move |w| Box::pin(async move { schedules::dispatch_schedule(w, id).await }))
            .await
    }

    async fn control_schedule(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        control: crate::schedule_control::ScheduleControl,
    ) -> StoreResult<crate::schedule_control::Controlled> {
        let tenant = tenant_id.to_string();
        self.write(move |w| {
            let (tenant, control) = (tenant.clone(), control.clone());
            Box::pin(async move { schedules::control_schedule(w, &tenant, id, &control).await })
        })
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
        self.read(move |db| {
            let tenant = tenant.clone();
            Box::pin(async move {
                schedules::list_schedule_runs(db, &tenant, id, after_us, limit).await
            })
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
