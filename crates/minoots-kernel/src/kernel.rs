//! The in-process kernel: validation, the store, the scheduler, lease sessions, event
//! streams and maintenance, behind [`KernelApi`].

use minoots_core::billing::{BillingApplied, BillingEvent, BillingState, GraceSweep, MeterUsage};
use std::sync::Arc;

use async_trait::async_trait;
use minoots_core::request::check_cancel_reason;
use minoots_core::schedule::{Schedule, ScheduleFilter, ScheduleRequest, ScheduleRun};
use minoots_core::{
    Clock, DeliveryId, Event, Missing, ScheduleId, Timer, TimerId, TimerRequest, TimerStatus,
};
use minoots_kernel_api::api::{
    BoxStream, KernelApi, LeaseRequest, NewTenant, NewUiSession, RenewLeasesRequest,
    ScheduleChange, ScheduleChanged, ScheduleOutcome, ScheduleQuotas, TenantQuotas,
};
use minoots_kernel_api::{KernelError, KernelResult, LocalKernel};
use minoots_store::{
    ApiKey, AttemptReport, CreateOptions, CreateOutcome, DeliveryWithAttempts, DueTimer,
    EventQuery, LeaseRenewal, LeasedDelivery, ReportOutcome, Store, StoreError, Tenant,
    TenantUpdate, TenantUsage, TimerPage, TimerQuery, UiSession, UiSessionGrant,
};
use tokio::sync::{Notify, watch};

use crate::admin::{self, KeyCache};
use crate::config::KernelConfig;
use crate::error::from_store;
use crate::metrics::KernelMetrics;
use crate::scheduler::Scheduler;

mod billing;
mod change;
mod dashboard;
mod schedules;
mod sessions;
mod tenants;

/// The horology kernel running in this process.
pub struct Kernel {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: KernelConfig,
    scheduler: Arc<Scheduler>,
    /// Woken when deliveries may have become due (fired, retried, rescued).
    delivery_notify: Arc<Notify>,
    /// Open lease sessions, which firing claims for (`leases::Sessions`).
    sessions: Arc<crate::leases::Sessions>,
    metrics: Arc<KernelMetrics>,
    stop: watch::Sender<bool>,
    /// Keys already authenticated, and their uses not yet written.
    keys: Arc<KeyCache>,
    /// The other kernels of a shared store ([`Store::cluster`], asked once at start).
    cluster: Option<Arc<dyn minoots_store::Cluster>>,
    maintenance: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The schedule dispatcher's queue (its task is one of `maintenance`).
    schedules: Arc<crate::schedules::Dispatcher>,
}

/// Keeps a kernel in step with the other kernels of its store: reloads the window when
/// its shards change (or announcements may have been missed), puts timers created
/// through other kernels into the window when they are in its shards, and empties the key
/// cache after a key or tenant changed anywhere.
async fn follow_cluster(
    cluster: Arc<dyn minoots_store::Cluster>,
    scheduler: Arc<Scheduler>,
    keys: Arc<KeyCache>,
    deliveries: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut shards = cluster.shard_changes();
    let mut ready = cluster.deliveries_ready();
    let mut due = cluster.scheduled_elsewhere();
    let mut key_changes = cluster.key_changes();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            changed = shards.changed() => {
                if changed.is_err() {
                    return;
                }
                scheduler.reload();
            }
            d = due.recv() => match d {
                Ok(d) => {
                    if cluster.owns_timer(d.id) {
                        scheduler.on_scheduled(d);
                    }
                }
                Err(RecvError::Lagged(_)) => scheduler.reload(),
                Err(RecvError::Closed) => return,
            },
            k = key_changes.recv() => match k {
                Ok(()) | Err(RecvError::Lagged(_)) => keys.invalidate(),
                Err(RecvError::Closed) => return,
            },
            changed = ready.changed() => {
                if changed.is_err() {
                    return;
                }
                // Another kernel fired (or rescued) deliveries: this kernel's executors
                // claim them now, not at their sessions' idle poll.
                deliveries.notify_waiters();
            }
        }
    }
}

impl Kernel {
    /// Starts the scheduler and the maintenance services on the current tokio runtime.
    /// Refuses settings that break the scheduler's assumptions with
    /// [`KernelError::Config`] naming the setting.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: KernelConfig,
    ) -> KernelResult<Arc<Self>> {
        config.check()?;
        let metrics = Arc::new(KernelMetrics::default());
        let delivery_notify = Arc::new(Notify::new());
        let sessions = Arc::new(crate::leases::Sessions::default());
        let scheduler = Scheduler::start(
            store.clone(),
            clock.clone(),
            config.clone(),
            metrics.clone(),
            delivery_notify.clone(),
            sessions.clone(),
        );
        let (stop, stop_rx) = watch::channel(false);
        let rescuer = tokio::spawn(crate::maintenance::run_rescuer(
            store.clone(),
            config.clone(),
            metrics.clone(),
            delivery_notify.clone(),
            stop_rx.clone(),
        ));
        let retention = tokio::spawn(crate::maintenance::run_retention(
            store.clone(),
            clock.clone(),
            config.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
        let keys = Arc::new(KeyCache::default());
        let cluster = store.cluster();
        let follower = cluster.clone().map(|c| {
            tokio::spawn(follow_cluster(
                c,
                scheduler.clone(),
                keys.clone(),
                delivery_notify.clone(),
                stop_rx.clone(),
            ))
        });
        let schedules = crate::schedules::Dispatcher::new();
        let dispatcher = tokio::spawn(crate::schedules::run(
            schedules.clone(),
            store.clone(),
            clock.clone(),
            scheduler.clone(),
            stop_rx.clone(),
        ));
        let flusher = tokio::spawn(admin::run_touch_flusher(
            keys.clone(),
            store.clone(),
            stop.subscribe(),
        ));
        Ok(Arc::new(Self {
            store,
            clock,
            config,
            scheduler,
            delivery_notify,
            sessions,
            metrics,
            stop,
            keys,
            cluster,
            schedules,
            maintenance: std::sync::Mutex::new(
                [rescuer, retention, flusher, dispatcher]
                    .into_iter()
                    .chain(follower)
                    .collect(),
            ),
        }))
    }

    /// A new schedule's id. On a shared store, one in a shard this kernel holds (when it
    /// holds any), so the kernel that accepted the schedule dispatches it from the start
    /// instead of its shard's holder finding it at its next load (up to 10 s later).
    fn new_schedule_id(&self) -> ScheduleId {
        let id = ScheduleId::new_v7();
        let Some(cluster) = &self.cluster else {
            return id;
        };
        if cluster.shards_held() == 0 {
            return id;
        }
        let mut bytes = *id.as_bytes();
        // A shard is the last byte modulo the shard count: try each last byte once.
        for last in 0..=u8::MAX {
            bytes[15] = last;
            let candidate = ScheduleId::from_slice(&bytes).unwrap_or(id);
            if cluster.owns_timer(TimerId(candidate.0)) {
                return candidate;
            }
        }
        id
    }

    /// Schedules in the dispatcher's queue now.
    pub fn schedules_queued(&self) -> usize {
        self.schedules.queued()
    }

    /// The other kernels of a shared store, if any.
    pub(crate) fn cluster(&self) -> Option<&Arc<dyn minoots_store::Cluster>> {
        self.cluster.as_ref()
    }

    pub fn metrics(&self) -> &Arc<KernelMetrics> {
        &self.metrics
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// True once overdue timers from before a restart are queued for firing, and as long
    /// as the scheduler runs: false for good once a part of it died ([`Kernel::failure`]).
    pub fn is_ready(&self) -> bool {
        self.scheduler.is_ready()
    }

    /// How long the firing window's earliest timer has been due at `now_us` without being
    /// fired, in microseconds (0 when none is overdue): the firing backlog.
    pub fn firing_overdue_us(&self, now_us: i64) -> i64 {
        self.scheduler.overdue_us(now_us)
    }

    /// Why timers no longer fire, once a part of the scheduler died (a panic of the firing
    /// thread, the dispatcher or the loader). The kernel does not restart it: the process
    /// should report the reason and exit, and its supervisor restart it (see
    /// [`Kernel::failed`]).
    pub fn failure(&self) -> Option<String> {
        self.scheduler.failure()
    }

    /// Waits until a part of the scheduler died, and returns why.
    ///
    /// The process should then exit with an error rather than restart the part in place:
    /// a part that panicked may have left the window half-updated (timers popped but not
    /// committed, `covered` ahead of the index) and its lock poisoned, and rebuilding all
    /// of that in place would be new, rarely run code. A new process rebuilds the window
    /// from the store, the only source of truth, where every timer not yet fired is still
    /// scheduled (firing commits before anything leaves the store), so nothing is lost:
    /// timers that were due meanwhile fire late, once, after the restart.
    pub async fn failed(&self) -> String {
        self.scheduler.failed().await
    }

    /// Arms a fault in the scheduler, for tests that prove a failure is noticed.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: crate::scheduler::Fault) {
        self.scheduler.inject_fault(fault);
    }

    /// Timers held in the in-memory window right now.
    pub fn window_len(&self) -> usize {
        self.scheduler.window_len()
    }

    /// Waits until [`Kernel::is_ready`] (bounded by `timeout`).
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        tokio::time::timeout(timeout, self.scheduler.ready())
            .await
            .is_ok()
    }

    /// Stops firing and maintenance, waits for fires in progress, then closes the store.
    /// Hands back at once the deliveries held by executors whose lease owner starts with
    /// `owner_prefix` and that the caller knows to be gone: `serve` calls it at start-up
    /// for the embedded executor of the previous process on this store (the store's lock
    /// proves that process has exited), so what it had in flight runs again now rather
    /// than when its leases expire. Each counts as a lost lease (the attempt may have
    /// started): rescued like an expired one. Returns how many were handed back.
    ///
    /// On a store shared by several kernels nothing proves that an earlier process is
    /// gone (another `serve` on the same machine may be alive): nothing is handed back,
    /// and the leases end unrenewed within one lease TTL instead.
    pub async fn hand_back_leases_of(&self, owner_prefix: &str) -> KernelResult<usize> {
        if self.cluster.is_some() {
            return Ok(0);
        }
        let ended = self
            .store
            .end_leases_of(owner_prefix)
            .await
            .map_err(from_store)?;
        if ended > 0 {
            while self
                .store
                .rescue_expired_leases(self.config.rescue_batch)
                .await
                .map_err(from_store)?
                == self.config.rescue_batch
            {}
            KernelMetrics::inc(&self.metrics.leases_handed_back, ended as u64);
            tracing::info!(
                handed_back = ended,
                "deliveries a previous process had in flight are due again"
            );
            self.delivery_notify.notify_waiters();
        }
        Ok(ended)
    }

    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.scheduler.shutdown().await;
        let tasks: Vec<_> = self
            .maintenance
            .lock()
            .expect("poisoned")
            .drain(..)
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        self.store.close().await;
    }

    /// Validates a request, including the actions this server enabled.
    fn validate(
        &self,
        r: &TimerRequest,
        tenant_id: &str,
        now: i64,
    ) -> KernelResult<minoots_core::TimerSpec> {
        let spec = r.validate(tenant_id, now)?;
        let mut errors = minoots_core::ValidationErrors::new();
        spec.action_bundle
            .check_policy(&self.config.actions, "actionBundle", &mut errors);
        errors.into_result()?;
        Ok(spec)
    }

    /// Stores timers and puts the scheduled ones in the window, in a task of its own: if
    /// the caller gives up (client deadline, disconnect) after the commit, the timer is
    /// still indexed, so an acknowledged-or-not timer is never left unseen by the
    /// scheduler. Timers returned for a reused idempotency key are indexed again too
    /// (harmless: the window is a set), in case the first request was the one cut short.
    async fn create_then_index(
        &self,
        timers: Vec<Timer>,
        options: CreateOptions,
    ) -> KernelResult<Vec<CreateOutcome>> {
        let store = self.store.clone();
        let scheduler = self.scheduler.clone();
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            let outcomes = if timers.len() == 1 {
                let t = timers.into_iter().next().expect("one timer");
                vec![
                    store
                        .create_timer_with(t, options)
                        .await
                        .map_err(from_store)?,
                ]
            } else {
                store.create_timers(timers).await.map_err(from_store)?
            };
            for o in &outcomes {
                if o.timer.status == TimerStatus::Scheduled
                    && cluster.as_ref().is_none_or(|c| c.owns_timer(o.timer.id))
                {
                    scheduler.on_scheduled(DueTimer {
                        fire_at_us: o.timer.fire_at_us,
                        id: o.timer.id,
                    });
                }
            }
            Ok::<_, KernelError>(outcomes)
        })
        .await
        .map_err(|e| KernelError::Internal(format!("create task failed: {e}")))?
    }

    /// Schedules many timers in one store transaction (for bulk loads and benchmarks).
    pub async fn schedule_many(
        &self,
        tenant_id: &str,
        requests: Vec<TimerRequest>,
    ) -> KernelResult<Vec<Timer>> {
        let now = self.clock.now_us();
        let mut timers = Vec::with_capacity(requests.len());
        for r in requests {
            timers.push(
                self.validate(&r, tenant_id, now)?
                    .into_timer(TimerId::new_v7(), now),
            );
        }
        let outcomes = self
            .create_then_index(timers, CreateOptions::default())
            .await?;
        let mut out = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            out.push(o.timer);
        }
        KernelMetrics::inc(&self.metrics.timers_scheduled, out.len() as u64);
        Ok(out)
    }
}

/// What the control plane shows of this kernel when it runs in the same process.
#[async_trait]
impl LocalKernel for Kernel {
    fn is_ready(&self) -> bool {
        Kernel::is_ready(self)
    }

    fn failure(&self) -> Option<String> {
        Kernel::failure(self)
    }

    async fn render_metrics(&self) -> String {
        crate::metrics::render_kernel_metrics(self).await
    }
}

#[async_trait]
impl KernelApi for Kernel {
    async fn schedule_timer_with(
        &self,
        tenant_id: &str,
        request: TimerRequest,
        quotas: TenantQuotas,
    ) -> KernelResult<ScheduleOutcome> {
        let now = self.clock.now_us();
        let spec = self.validate(&request, tenant_id, now)?;
        let options = CreateOptions {
            max_per_day: quotas.max_per_day,
            max_pending: quotas.max_pending,
            idempotency_fingerprint: spec
                .idempotency_key
                .is_some()
                .then(|| admin::request_fingerprint(&request))
                .transpose()?,
        };
        let timer = spec.into_timer(TimerId::new_v7(), now);
        let commit_started = std::time::SystemTime::now();
        let outcome = self
            .create_then_index(vec![timer], options)
            .await?
            .pop()
            .ok_or_else(|| KernelError::Internal("the store returned no timer".into()))?;
        crate::spans::create_committed(&outcome.timer, outcome.created, commit_started);
        if outcome.created {
            KernelMetrics::inc(&self.metrics.timers_scheduled, 1);
        }
        Ok(ScheduleOutcome {
            timer: outcome.timer,
            created: outcome.created,
        })
    }

    async fn get_timer(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        self.store
            .get_timer(tenant_id, id)
            .await
            .map_err(from_store)?
            .ok_or(KernelError::NotFound(Missing::Timer(id)))
    }

    async fn list_timers(&self, query: TimerQuery) -> KernelResult<TimerPage> {
        if query.limit == 0 || query.limit > minoots_core::limits::MAX_PAGE_SIZE {
            return Err(KernelError::invalid(
                "limit",
                format!(
                    "must be between 1 and {}",
                    minoots_core::limits::MAX_PAGE_SIZE
                ),
            ));
        }
        if query
            .name_prefix
            .as_ref()
            .is_some_and(|n| n.len() > minoots_core::limits::MAX_NAME_BYTES)
        {
            return Err(KernelError::invalid(
                "name",
                format!(
                    "must be at most {} bytes",
                    minoots_core::limits::MAX_NAME_BYTES
                ),
            ));
        }
        self.store.list_timers(query).await.map_err(from_store)
    }

    async fn cancel_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        reason: Option<String>,
    ) -> KernelResult<Timer> {
        if let Some(r) = &reason {
            check_cancel_reason(r)?;
        }
        let timer = self
            .store
            .cancel_timer(tenant_id, id, reason)
            .await
            .map_err(from_store)?;
        self.scheduler.on_cancelled(DueTimer {
            fire_at_us: timer.fire_at_us,
            id: timer.id,
        });
        KernelMetrics::inc(&self.metrics.timers_cancelled, 1);
        Ok(timer)
    }

    async fn update_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        patch: minoots_core::TimerPatch,
    ) -> KernelResult<Timer> {
        self.change_timer(tenant_id, id, patch).await
    }

    async fn fire_timer_now(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        self.fire_now(tenant_id, id).await
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        id: TimerId,
    ) -> KernelResult<Vec<DeliveryWithAttempts>> {
        self.store
            .list_deliveries(tenant_id, id)
            .await
            .map_err(from_store)
    }

    async fn create_schedule(
        &self,
        tenant_id: &str,
        request: ScheduleRequest,
        quotas: ScheduleQuotas,
    ) -> KernelResult<Schedule> {
        let now = self.clock.now_us();
        let spec = request
            .validate(tenant_id, now, quotas.min_interval_ms)
            .map_err(KernelError::Invalid)?;
        self.check_schedule_policy(&spec)?;
        let schedule = Schedule::new(self.new_schedule_id(), tenant_id, &request, &spec, now);
        let stored = self
            .store
            .create_schedule(schedule, quotas.max_schedules)
            .await
            .map_err(from_store)?;
        if let Some(wake) = stored.wake_at_us {
            self.schedules.enqueue(stored.id, wake);
        }
        Ok(stored)
    }

    async fn get_schedule(&self, tenant_id: &str, id: ScheduleId) -> KernelResult<Schedule> {
        self.store
            .get_schedule(tenant_id, id)
            .await
            .map_err(from_store)?
            .ok_or(KernelError::NotFound(Missing::Schedule(id)))
    }

    async fn list_schedules(
        &self,
        tenant_id: &str,
        filter: &ScheduleFilter,
        after: Option<ScheduleId>,
        limit: usize,
    ) -> KernelResult<Vec<Schedule>> {
        self.store
            .list_schedules(tenant_id, filter, after, limit)
            .await
            .map_err(from_store)
    }

    async fn change_schedule(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        change: ScheduleChange,
        quotas: ScheduleQuotas,
    ) -> KernelResult<ScheduleChanged> {
        self.apply_schedule_change(tenant_id, id, change, quotas)
            .await
    }

    async fn list_schedule_runs(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        after_us: Option<i64>,
        limit: usize,
    ) -> KernelResult<Vec<ScheduleRun>> {
        self.store
            .list_schedule_runs(tenant_id, id, after_us, limit)
            .await
            .map_err(from_store)
    }

    async fn stream_events(&self, query: EventQuery) -> KernelResult<BoxStream<Event>> {
        crate::events::start_stream(self.store.clone(), query, self.config.event_stream_buffer)
            .await
    }

    async fn lease_deliveries(
        &self,
        request: LeaseRequest,
    ) -> KernelResult<BoxStream<LeasedDelivery>> {
        request.validate()?;
        Ok(crate::leases::start_session(
            self.store.clone(),
            self.clock.clone(),
            self.delivery_notify.clone(),
            self.metrics.clone(),
            self.sessions.clone(),
            request,
        ))
    }

    async fn renew_leases(&self, request: RenewLeasesRequest) -> KernelResult<LeaseRenewal> {
        request.validate()?;
        if request.leases.is_empty() {
            // A clock probe: nothing to write.
            let now_us = self.clock.now_us();
            return Ok(LeaseRenewal {
                now_us,
                expires_at_us: now_us + i64::from(request.lease_ttl_ms) * 1_000,
                lost: Vec::new(),
            });
        }
        let renewal = self
            .store
            .renew_leases(
                &request.lease_owner,
                request.leases,
                i64::from(request.lease_ttl_ms) * 1_000,
            )
            .await
            .map_err(from_store)?;
        KernelMetrics::inc(&self.metrics.leases_lost, renewal.lost.len() as u64);
        Ok(renewal)
    }

    async fn report_attempt(&self, report: AttemptReport) -> KernelResult<ReportOutcome> {
        let outcome = report.outcome;
        let out = self
            .store
            .report_attempt(report)
            .await
            .map_err(from_store)?;
        self.metrics.record_attempt(outcome, out.delivery_status);
        if out.next_attempt_at_us.is_some() {
            self.delivery_notify.notify_waiters();
        }
        Ok(out)
    }

    async fn release_delivery(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
    ) -> KernelResult<()> {
        self.store
            .release_delivery(delivery_id, lease_owner, attempt)
            .await
            .map_err(from_store)?;
        self.delivery_notify.notify_waiters();
        Ok(())
    }

    async fn release_delivery_after(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
        delay_ms: u32,
    ) -> KernelResult<()> {
        if delay_ms > minoots_kernel_api::api::MAX_RELEASE_DELAY_MS {
            return Err(KernelError::invalid(
                "delayMs",
                format!(
                    "must be at most {}",
                    minoots_kernel_api::api::MAX_RELEASE_DELAY_MS
                ),
            ));
        }
        self.store
            .release_delivery_after(
                delivery_id,
                lease_owner,
                attempt,
                i64::from(delay_ms) * 1_000,
            )
            .await
            .map_err(from_store)?;
        self.delivery_notify.notify_waiters();
        Ok(())
    }

    async fn redrive_timer(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        let timer = self
            .store
            .redrive_timer(tenant_id, id)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { status } => KernelError::Conflict {
                    message: format!("the timer is {status} and has no dead delivery to redrive"),
                    status: Some(status),
                },
                other => from_store(other),
            })?;
        self.delivery_notify.notify_waiters();
        Ok(timer)
    }

    async fn webhook_secrets(&self, tenant_id: &str) -> KernelResult<Vec<String>> {
        tenants::webhook_secrets(self, tenant_id).await
    }

    async fn rotate_webhook_secret(&self, tenant_id: &str) -> KernelResult<String> {
        tenants::rotate_webhook_secret(self, tenant_id).await
    }

    async fn create_tenant(&self, tenant: NewTenant) -> KernelResult<Tenant> {
        tenants::create_tenant(self, tenant).await
    }

    async fn get_tenant(&self, id: &str) -> KernelResult<Tenant> {
        tenants::get_tenant(self, id).await
    }

    async fn list_tenants(&self, after: Option<String>, limit: usize) -> KernelResult<Vec<Tenant>> {
        tenants::list_tenants(self, after, limit).await
    }

    async fn update_tenant(&self, id: &str, update: TenantUpdate) -> KernelResult<Tenant> {
        tenants::update_tenant(self, id, update).await
    }

    async fn create_api_key(&self, key: ApiKey) -> KernelResult<ApiKey> {
        tenants::create_api_key(self, key).await
    }

    async fn authenticate(&self, key_hash: [u8; 32]) -> KernelResult<Option<(ApiKey, Tenant)>> {
        tenants::authenticate(self, key_hash).await
    }

    async fn list_api_keys(
        &self,
        tenant_id: Option<String>,
        after: Option<String>,
        limit: usize,
    ) -> KernelResult<Vec<ApiKey>> {
        tenants::list_api_keys(self, tenant_id, after, limit).await
    }

    async fn revoke_api_key(&self, id: &str) -> KernelResult<ApiKey> {
        tenants::revoke_api_key(self, id).await
    }

    async fn tenant_usage(&self, tenant_id: &str) -> KernelResult<TenantUsage> {
        tenants::tenant_usage(self, tenant_id).await
    }

    async fn create_ui_session(&self, session: NewUiSession) -> KernelResult<UiSession> {
        sessions::create_ui_session(self, session).await
    }

    async fn ui_session(&self, token_hash: [u8; 32]) -> KernelResult<Option<UiSessionGrant>> {
        sessions::ui_session(self, token_hash).await
    }

    async fn end_ui_session(&self, token_hash: [u8; 32]) -> KernelResult<bool> {
        sessions::end_ui_session(self, token_hash).await
    }

    async fn timer_counts(&self, tenant_id: &str) -> KernelResult<minoots_store::TimerCounts> {
        dashboard::timer_counts(self, tenant_id).await
    }

    async fn delivery_activity(
        &self,
        tenant_id: &str,
        minutes: u32,
    ) -> KernelResult<minoots_store::DeliveryActivity> {
        dashboard::delivery_activity(self, tenant_id, minutes).await
    }

    async fn record_billing_event(&self, e: BillingEvent) -> KernelResult<BillingApplied> {
        billing::record_billing_event(self, e).await
    }

    async fn billing_state(&self, tenant_id: &str) -> KernelResult<BillingState> {
        billing::billing_state(self, tenant_id).await
    }

    async fn expire_billing_grace(&self) -> KernelResult<GraceSweep> {
        billing::expire_billing_grace(self).await
    }

    async fn meter_usage_ready(&self, limit: u32) -> KernelResult<Vec<MeterUsage>> {
        billing::meter_usage_ready(self, limit).await
    }

    async fn mark_meter_sent(&self, rows: Vec<(String, String, i64)>) -> KernelResult<u64> {
        billing::mark_meter_sent(self, rows).await
    }
}
