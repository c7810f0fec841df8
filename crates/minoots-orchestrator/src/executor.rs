//! The executor loop: lease deliveries from the kernel, run them with bounded
//! concurrency (overall and per destination host), report every attempt.
//!
//! Stateless: all it holds is what it is executing, and the leases on it, which a
//! heartbeat renews (see [`crate::leasebook`]). Killed mid-delivery, it loses nothing —
//! its short leases end within seconds and the kernel hands the deliveries out again with
//! the same delivery id. On a graceful stop it stops leasing, hands back (releases)
//! deliveries it leased but did not start — including those waiting for their host — and
//! lets the started ones finish and report, so a SIGTERM produces no duplicate. Works
//! against any [`KernelApi`]: in process or over gRPC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minoots_core::records::{AttemptReport, LeasedDelivery};
use minoots_core::{Action, AttemptOutcome, Clock, SystemClock};
use minoots_kernel_api::{KernelApi, KernelError, LeaseRequest};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tracing::Instrument;

use crate::command::{CommandConfig, run_command};
use crate::file::{FileConfig, run_file};
use crate::leasebook::{Held, LEASE_MARGIN, LeaseBook};
use crate::signing::WebhookSecret;
use crate::ssrf::TargetPolicy;
use crate::webhook::{WebhookCall, WebhookClient};
use crate::{ExecResult, OrchestratorError};

/// Settings of one orchestrator, with documented defaults.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Names this executor in leases and reports (fencing); unique per process start (see
    /// [`lease_owner`]).
    pub lease_owner: String,
    /// How long a delivery is leased; the heartbeat renews held leases every third of it.
    /// Short, so the deliveries of an executor that died run again within seconds; an
    /// attempt may take longer (up to its own timeout) because its lease is renewed.
    pub lease_ttl: Duration,
    /// Deliveries executing at once.
    pub max_in_flight: u32,
    /// Deliveries leased ahead of execution (the lease stream's buffer). Small, because a
    /// delivery leased but not started waits for its lease to expire if this executor dies.
    pub prefetch: u32,
    /// Deliveries executing at once against one host, so one slow destination cannot
    /// occupy every slot.
    pub max_per_host: usize,
    /// Where webhooks may go.
    pub targets: TargetPolicy,
    /// Allowed commands (empty: command actions are off).
    pub commands: CommandConfig,
    /// Root for file actions (None: file actions are off).
    pub files: Option<FileConfig>,
    /// How long a tenant's signing secrets are cached at most. A rotation reaches the
    /// cache sooner: every lease carries the tenant's secrets version, and an older cache
    /// entry is fetched again.
    pub secret_cache_ttl: Duration,
    /// On a graceful stop, how long started deliveries may take to finish.
    pub shutdown_grace: Duration,
    /// Where this executor reads the wall clock (lease arithmetic, signatures' timestamps).
    pub clock: Arc<dyn Clock>,
}

/// A lease owner naming this process start: `kind`, the host, the pid and a random boot
/// identity, so two starts never share an owner (pids are reused) and leases of a
/// previous start can be told from this one's by prefix. A kernel on PostgreSQL goes by
/// the same identity, so it stays within 63 bytes for a `kind` of up to 8 (the host is cut
/// to 32 characters).
pub fn lease_owner(kind: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().chars().take(32).collect::<String>())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{kind}/{host}/{}/{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// Hosts tracked for per-host limits before idle entries are dropped.
const MAX_TRACKED_HOSTS: usize = 10_000;
/// Tenants whose signing secrets are cached; the cache starts over when it is full.
const MAX_CACHED_TENANTS: usize = 10_000;
/// Attempts to deliver one report while the kernel is unavailable (also bounded by the
/// lease: at most about an hour of 5 s retries).
const MAX_REPORT_TRIES: u32 = 800;
/// A delivery whose host has no free slot is handed back, due again after this delay plus
/// up to the same again of jitter (so a saturated host's backlog does not return at once).
const HOST_BUSY_DELAY: Duration = Duration::from_millis(500);

/// [`HOST_BUSY_DELAY`] plus up to as much again of random jitter.
fn host_busy_delay() -> Duration {
    HOST_BUSY_DELAY + HOST_BUSY_DELAY.mul_f64(fastrand::f64())
}

/// The longest a delivery waits in its host's queue before it is handed back for later
/// (its lease is renewed meanwhile, so the wait itself needs a bound).
const MAX_HOST_WAIT: Duration = Duration::from_secs(60);

/// On a graceful stop, the stream of leases is read until it stays quiet this long, so a
/// claim the kernel is committing is received and handed back rather than left leased.
const STOP_DRAIN_QUIET: Duration = Duration::from_millis(50);

/// What to do with a leased delivery, given how much of its lease is surely left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeasePlan {
    /// The lease lasts until the next heartbeat renews it, with the margin to spare.
    Run,
    /// Hand it back (not counted as an attempt): it would be stopped before the next
    /// renewal could reach it, so it is leased again at once with a full lease.
    HandBack,
}

/// Decides whether an attempt starts with `lease_left` of its lease, renewed every
/// `renew_every`: never so that it could run on after its lease ended unrenewed.
fn lease_plan(lease_left: Duration, renew_every: Duration) -> LeasePlan {
    if lease_left > renew_every + LEASE_MARGIN {
        LeasePlan::Run
    } else {
        LeasePlan::HandBack
    }
}

impl OrchestratorConfig {
    pub fn new(lease_owner: impl Into<String>) -> Self {
        Self {
            lease_owner: lease_owner.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            max_in_flight: 256,
            prefetch: 32,
            max_per_host: 32,
            targets: TargetPolicy::default(),
            commands: CommandConfig::default(),
            files: None,
            secret_cache_ttl: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(130),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The default lease TTL: renewed every 2 s, so an executor killed with SIGKILL holds its
/// deliveries at most 6 s, and with the kernel's 1 s rescue pass they run again within
/// 7 s (the guarantee says 10 s).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(6);

/// The limits of one destination host.
#[derive(Clone)]
struct HostLimit {
    /// Attempts running against the host (`max_per_host`).
    running: Arc<Semaphore>,
    /// Deliveries waiting for a running slot (`max_per_host * HOST_QUEUE_FACTOR`); more are
    /// handed back for later.
    queue: Arc<Semaphore>,
}

/// A host's queue holds this many times its running limit.
const HOST_QUEUE_FACTOR: usize = 4;
/// Deliveries waiting for their host, over all hosts, are bounded by this many times
/// `max_in_flight`.
const WAITING_FACTOR: usize = 2;

/// Signing secrets per tenant: when they were fetched, the secrets version they are at
/// least as new as, and the secrets.
type SecretCache = Mutex<HashMap<String, (Instant, i64, Arc<Vec<WebhookSecret>>)>>;

/// A running orchestrator.
pub struct Orchestrator {
    kernel: Arc<dyn KernelApi>,
    config: OrchestratorConfig,
    webhooks: WebhookClient,
    secrets: SecretCache,
    hosts: Mutex<HashMap<String, HostLimit>>,
    /// The leases held, renewed by the heartbeat.
    leases: LeaseBook,
    metrics: Arc<crate::metrics::OrchestratorMetrics>,
}

/// What the lease loop shares with the tasks it spawns.
struct Lanes {
    /// Deliveries executing at once (`max_in_flight`).
    slots: Arc<Semaphore>,
    /// Deliveries waiting for a slot of their host, over all hosts: room for a few hosts'
    /// full queues, so one dead host cannot take all of it.
    waiting: Arc<Semaphore>,
    /// Turns true on a graceful stop: nothing waiting starts after it.
    stop: watch::Receiver<bool>,
}

impl Orchestrator {
    pub fn new(
        kernel: Arc<dyn KernelApi>,
        config: OrchestratorConfig,
    ) -> Result<Arc<Self>, OrchestratorError> {
        let webhooks = WebhookClient::new(
            config.targets.clone(),
            config.max_per_host,
            config.clock.clone(),
        )?;
        let leases = LeaseBook::new(
            config.lease_owner.clone(),
            config.lease_ttl,
            config.clock.clone(),
        );
        Ok(Arc::new(Self {
            kernel,
            config,
            webhooks,
            secrets: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            leases,
            metrics: Arc::default(),
        }))
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &Arc<crate::metrics::OrchestratorMetrics> {
        &self.metrics
    }

    /// Runs until `stop` turns true, then stops gracefully (see the module doc).
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let lanes = Arc::new(Lanes {
            slots: Arc::new(Semaphore::new(self.config.max_in_flight as usize)),
            waiting: Arc::new(Semaphore::new(
                self.config.max_in_flight as usize * WAITING_FACTOR,
            )),
            stop: stop.clone(),
        });
        // The heartbeat outlives the lease loop: started attempts keep their leases while
        // they finish during a graceful stop.
        let (beat_stop, beat_stop_rx) = watch::channel(false);
        let me = self.clone();
        let heartbeat =
            tokio::spawn(async move { me.leases.heartbeat(me.kernel.clone(), beat_stop_rx).await });
        let mut tasks = JoinSet::new();
        let stream = self.lease_loop(&lanes, &mut tasks).await;
        self.hand_back_unstarted(stream).await;
        self.metrics.lease_stream(false);
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while !tasks.is_empty() {
            if tokio::time::timeout_at(deadline, tasks.join_next())
                .await
                .is_err()
            {
                tracing::warn!(
                    running = tasks.len(),
                    "deliveries still running at the end of the grace period"
                );
                break;
            }
        }
        let _ = beat_stop.send(true);
        let _ = heartbeat.await;
    }

    /// Leases and dispatches deliveries until the stop signal; returns the open lease
    /// stream, if any, for [`Orchestrator::hand_back_unstarted`].
    async fn lease_loop(
        self: &Arc<Self>,
        lanes: &Arc<Lanes>,
        tasks: &mut JoinSet<()>,
    ) -> Option<minoots_kernel_api::BoxStream<LeasedDelivery>> {
        let mut stop = lanes.stop.clone();
        let mut backoff = Duration::from_millis(100);
        let mut stream: Option<minoots_kernel_api::BoxStream<LeasedDelivery>> = None;
        loop {
            if *stop.borrow() {
                return stream;
            }
            let Some(leases) = stream.as_mut() else {
                match self.kernel.lease_deliveries(self.lease_request()).await {
                    Ok(s) => {
                        self.metrics.lease_stream(true);
                        stream = Some(s);
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot lease deliveries; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.changed() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                continue;
            };
            // Take a slot first: nothing is read (so nothing more is leased) while every
            // slot is busy.
            let permit = tokio::select! {
                p = lanes.slots.clone().acquire_owned() => p.expect("semaphore open"),
                _ = stop.changed() => continue,
            };
            let item = tokio::select! {
                item = leases.next() => item,
                _ = stop.changed() => continue,
            };
            match item {
                Some(Ok(d)) => self.dispatch(d, permit, lanes, tasks),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "lease stream failed; reconnecting");
                    self.metrics.lease_stream(false);
                    stream = None;
                }
                None => {
                    self.metrics.lease_stream(false);
                    stream = None;
                }
            }
            while tasks.try_join_next().is_some() {}
        }
    }

    fn lease_request(&self) -> LeaseRequest {
        LeaseRequest {
            lease_owner: self.config.lease_owner.clone(),
            lease_ttl_ms: self.config.lease_ttl.as_millis() as u32,
            max_in_flight: self
                .config
                .prefetch
                .clamp(1, self.config.max_in_flight.max(1)),
        }
    }

    /// Starts one leased delivery, holding a global slot (`permit`). A webhook starts only
    /// with a slot of its host, taken here without waiting. A delivery whose host is
    /// saturated (say, black-holed) waits in that host's bounded queue *without* a global
    /// slot; when the queue is full it is handed back, due again shortly. So a dead host
    /// holds at most `max_per_host` global slots and never stalls the lease stream.
    fn dispatch(
        self: &Arc<Self>,
        d: LeasedDelivery,
        permit: OwnedSemaphorePermit,
        lanes: &Arc<Lanes>,
        tasks: &mut JoinSet<()>,
    ) {
        let held = self.leases.enter(&d);
        let me = self.clone();
        if lease_plan(held.left(), self.leases.renew_every()) == LeasePlan::HandBack {
            tracing::debug!(delivery = %d.delivery.id, "lease too short to start; handing it back");
            tasks.spawn(async move {
                drop(permit);
                me.release(&d).await;
            });
            return;
        }
        let url = match &d.action {
            Action::Webhook(w) => Some(url::Url::parse(&w.url)),
            _ => None,
        };
        let Some(parsed) = &url else {
            tasks.spawn(async move {
                me.execute(d, None, None, held).await;
                drop(permit);
            });
            return;
        };
        let host = self.host_limit(parsed.as_ref().ok().and_then(url::Url::host_str));
        match host.running.clone().try_acquire_owned() {
            Ok(slot) => {
                tasks.spawn(async move {
                    me.execute(d, url, Some(slot), held).await;
                    drop(permit);
                });
            }
            Err(_) => {
                let queue = (
                    host.queue.clone().try_acquire_owned(),
                    lanes.waiting.clone().try_acquire_owned(),
                );
                let lanes = lanes.clone();
                tasks.spawn(async move {
                    match queue {
                        (Ok(_in_host_queue), Ok(_waiting)) => {
                            // Bounded by the host's queue and the waiting lanes instead.
                            drop(permit);
                            me.wait_for_host(d, url, host.running, &lanes, held).await
                        }
                        // The permit is held until the hand-back is answered: a burst
                        // for one busy host then claims no faster than hand-backs
                        // complete, instead of piling up leases (and renewals of them)
                        // without bound while the kernel is slow to answer.
                        _ => {
                            me.release_later(&d, host_busy_delay()).await;
                            drop(permit);
                        }
                    }
                });
            }
        }
    }

    /// Graceful stop: hands back what was leased but not started. What the stream holds
    /// is taken first and released only after the stream is closed: a delivery released
    /// while the lease session is still open is due at once and would be leased to this
    /// executor again.
    async fn hand_back_unstarted(
        &self,
        stream: Option<minoots_kernel_api::BoxStream<LeasedDelivery>>,
    ) {
        let Some(mut leases) = stream else { return };
        let mut unstarted = Vec::new();
        for _ in 0..self.config.prefetch.saturating_mul(2).max(1) {
            match tokio::time::timeout(STOP_DRAIN_QUIET, leases.next()).await {
                Ok(Some(Ok(d))) => unstarted.push(d),
                _ => break,
            }
        }
        // Closing the stream ends the lease session; what it leased but had not sent yet
        // is handed back by the kernel itself.
        drop(leases);
        for d in &unstarted {
            self.release(d).await;
        }
    }

    /// Hands back a delivery leased but not started; it is due again at once and the
    /// hand-back is not counted as an attempt.
    pub async fn release(&self, d: &LeasedDelivery) {
        self.metrics.released();
        if let Err(e) = self
            .kernel
            .release_delivery(d.delivery.id, &self.config.lease_owner, d.delivery.attempt)
            .await
        {
            tracing::warn!(delivery = %d.delivery.id, error = %e, "could not hand a delivery back");
        }
        self.leases.leave(d.delivery.id);
    }

    /// Hands back a delivery this executor cannot start yet; it is due again after `delay`.
    async fn release_later(&self, d: &LeasedDelivery, delay: Duration) {
        self.metrics.deferred();
        if let Err(e) = self
            .kernel
            .release_delivery_after(
                d.delivery.id,
                &self.config.lease_owner,
                d.delivery.attempt,
                delay.as_millis() as u32,
            )
            .await
        {
            tracing::warn!(delivery = %d.delivery.id, error = %e, "could not hand a delivery back");
        }
        self.leases.leave(d.delivery.id);
    }

    /// The tenant's signing secrets, from the cache unless it is older than
    /// `secrets_version` (the version the delivery was leased with: a rotation since the
    /// cache was filled) or than the cache TTL.
    async fn signing_secrets(
        &self,
        tenant: &str,
        secrets_version: i64,
    ) -> Result<Arc<Vec<WebhookSecret>>, KernelError> {
        if let Some((at, version, s)) = self
            .secrets
            .lock()
            .expect("secret cache poisoned")
            .get(tenant)
            && at.elapsed() < self.config.secret_cache_ttl
            && *version >= secrets_version
        {
            return Ok(s.clone());
        }
        let texts = self.kernel.webhook_secrets(tenant).await?;
        let parsed: Vec<WebhookSecret> = texts
            .iter()
            .filter_map(|t| WebhookSecret::parse(t).ok())
            .collect();
        if parsed.is_empty() {
            return Err(KernelError::Internal(format!(
                "tenant {tenant} has no usable signing secret"
            )));
        }
        let parsed = Arc::new(parsed);
        let mut cache = self.secrets.lock().expect("secret cache poisoned");
        if cache.len() >= MAX_CACHED_TENANTS {
            cache.clear();
        }
        // Fetched after the delivery was leased, so at least as new as its version.
        cache.insert(
            tenant.to_string(),
            (Instant::now(), secrets_version, parsed.clone()),
        );
        Ok(parsed)
    }

    /// The per-host limits of a webhook's host (URLs without one share the empty host).
    /// Keyed by host name or address without the port: one machine, one limit.
    fn host_limit(&self, host: Option<&str>) -> HostLimit {
        let host = host.unwrap_or_default();
        let mut hosts = self.hosts.lock().expect("host map poisoned");
        if let Some(s) = hosts.get(host) {
            return s.clone();
        }
        if hosts.len() >= MAX_TRACKED_HOSTS {
            let max = self.config.max_per_host;
            hosts.retain(|_, s| {
                s.running.available_permits() < max
                    || s.queue.available_permits() < max * HOST_QUEUE_FACTOR
            });
        }
        hosts
            .entry(host.to_string())
            .or_insert_with(|| HostLimit {
                running: Arc::new(Semaphore::new(self.config.max_per_host)),
                queue: Arc::new(Semaphore::new(self.config.max_per_host * HOST_QUEUE_FACTOR)),
            })
            .clone()
    }

    /// Waits (holding no global slot) for a slot of the delivery's host, then for a global
    /// slot, then runs it. Hands the delivery back instead when a graceful stop begins
    /// (nothing new starts during the grace period), or after [`MAX_HOST_WAIT`]; drops it
    /// when its lease is lost (another executor has it).
    async fn wait_for_host(
        &self,
        d: LeasedDelivery,
        url: Option<Result<url::Url, url::ParseError>>,
        host: Arc<Semaphore>,
        lanes: &Lanes,
        mut held: Held,
    ) {
        enum Waited {
            Stopping,
            LeaseGone,
            TooLong,
            Ready(OwnedSemaphorePermit, OwnedSemaphorePermit),
        }
        let mut stop = lanes.stop.clone();
        let slots = lanes.slots.clone();
        let waited = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Waited::Stopping,
            _ = held.gone() => Waited::LeaseGone,
            _ = tokio::time::sleep(MAX_HOST_WAIT) => Waited::TooLong,
            (slot, permit) = async {
                let slot = host.acquire_owned().await.expect("semaphore open");
                let permit = slots.acquire_owned().await.expect("semaphore open");
                (slot, permit)
            } => Waited::Ready(slot, permit),
        };
        let stopping = *lanes.stop.borrow();
        match waited {
            Waited::Stopping => self.release(&d).await,
            Waited::Ready(..) if stopping => self.release(&d).await,
            Waited::LeaseGone => {
                tracing::warn!(delivery = %d.delivery.id, "lease lost while waiting for the host");
                self.leases.leave(d.delivery.id);
            }
            Waited::TooLong => {
                tracing::warn!(delivery = %d.delivery.id, "host saturated; handing the delivery back for later");
                self.release_later(&d, host_busy_delay()).await;
            }
            Waited::Ready(slot, permit) => {
                self.execute(d, url, Some(slot), held).await;
                drop(permit);
            }
        }
    }

    /// Runs one leased delivery and reports the attempt. A webhook comes with its URL,
    /// parsed once for the host limit, the SSRF check and the request, and with a slot of
    /// its host, held until the attempt ends. The attempt is stopped if its lease is gone
    /// (lost, or not renewed in time): the kernel may hand the delivery to another
    /// executor then, and the two must never run side by side.
    async fn execute(
        &self,
        d: LeasedDelivery,
        parsed_url: Option<Result<url::Url, url::ParseError>>,
        _host_slot: Option<OwnedSemaphorePermit>,
        mut held: Held,
    ) {
        // The delivery may have waited in the lease buffer or for its host.
        if lease_plan(held.left(), self.leases.renew_every()) == LeasePlan::HandBack {
            tracing::debug!(delivery = %d.delivery.id, "lease too short to start; handing it back");
            self.release(&d).await;
            return;
        }
        let started_at_us = self.config.clock.now_us();
        let started = Instant::now();
        let running = self.metrics.running();
        let kind = match &d.action {
            Action::Webhook(_) => 0,
            Action::Command(_) => 1,
            Action::File(_) => 2,
        };
        let (span, traceparent) = crate::spans::attempt_span(&d);
        let attempt = self
            .attempt(
                &d,
                parsed_url.as_ref(),
                started_at_us,
                traceparent.as_deref(),
            )
            .instrument(span.clone());
        let result = tokio::select! {
            result = attempt => result,
            _ = held.gone() => {
                drop(running);
                minoots_kernel_api::trace::set_error(&span, "lease lost");
                self.metrics.lease_lost();
                tracing::warn!(delivery = %d.delivery.id, "lease lost or not renewed in time; the attempt was stopped and will run again");
                self.leases.leave(d.delivery.id);
                return;
            }
        };
        drop(running);
        crate::spans::attempt_finished(&span, &result);
        drop(span);
        self.metrics
            .attempt(kind, result.outcome, started.elapsed().as_micros() as i64);
        let report = AttemptReport {
            delivery_id: d.delivery.id,
            lease_owner: self.config.lease_owner.clone(),
            attempt: d.delivery.attempt,
            started_at_us,
            duration_us: started.elapsed().as_micros() as i64,
            outcome: result.outcome,
            retry_after_ms: result.retry_after_ms,
            http_status: result.http_status,
            exit_code: result.exit_code,
            error: result.error,
            response_excerpt: result.response_excerpt,
        };
        self.report(report, &held).await;
        self.leases.leave(d.delivery.id);
    }

    /// One attempt of the delivery's action, bounded by the action's own timeout.
    async fn attempt(
        &self,
        d: &LeasedDelivery,
        parsed_url: Option<&Result<url::Url, url::ParseError>>,
        started_at_us: i64,
        traceparent: Option<&str>,
    ) -> ExecResult {
        match &d.action {
            Action::Webhook(w) => match self
                .signing_secrets(&d.timer.tenant_id, d.secrets_version)
                .await
            {
                Ok(secrets) => 'attempt: {
                    // The envelope is encoded only when the action has no body of its own.
                    let body = match &w.body {
                        Some(b) => match crate::webhook::encode_body(b) {
                            Ok(bytes) => bytes,
                            // Recorded as a failed attempt; an empty body is never sent.
                            Err(failed) => break 'attempt failed,
                        },
                        None => envelope_bytes(d),
                    };
                    let (delivery_id, timer_id) =
                        (d.delivery.id.to_string(), d.timer.id.to_string());
                    self.webhooks
                        .deliver(WebhookCall {
                            action: w,
                            url: parsed_url.and_then(|u| u.as_ref().ok()),
                            delivery_id: &delivery_id,
                            timer_id: &timer_id,
                            attempt: d.delivery.attempt,
                            schedule: d.timer.schedule,
                            secrets: &secrets,
                            timestamp_s: started_at_us.div_euclid(1_000_000),
                            traceparent,
                            body,
                        })
                        .await
                }
                Err(e) => ExecResult::failure(
                    AttemptOutcome::Retryable,
                    format!("signing secret unavailable: {e}"),
                ),
            },
            Action::Command(c) => run_command(&self.config.commands, c).await,
            Action::File(f) => run_file(self.config.files.as_ref(), f, &envelope_value(d)).await,
        }
    }

    /// Reports an attempt, retrying while the kernel is unavailable and the lease lasts
    /// (the heartbeat keeps renewing it meanwhile; once it is gone the kernel hands the
    /// delivery out again anyway). A fenced report means the lease was lost; the kernel
    /// has already moved on.
    async fn report(&self, report: AttemptReport, held: &Held) {
        let mut wait = Duration::from_millis(100);
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self.kernel.report_attempt(report.clone()).await {
                Ok(_) => return,
                Err(e) if e.is_transient() => {
                    if held.is_gone() || tries >= MAX_REPORT_TRIES {
                        self.metrics.report_lost();
                        tracing::error!(delivery = %report.delivery_id, error = %e, "report lost; the delivery runs again when its lease expires");
                        return;
                    }
                    tracing::warn!(delivery = %report.delivery_id, error = %e, "kernel unavailable; report retried");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    self.metrics.report_lost();
                    tracing::warn!(delivery = %report.delivery_id, error = %e, "report refused");
                    return;
                }
            }
        }
    }
}

/// The event envelope of one attempt, as a value: the default content of file actions.
pub fn envelope_value(d: &LeasedDelivery) -> serde_json::Value {
    serde_json::json!({
        "event": "timer.fired",
        "timer": d.timer.to_json(),
        "deliveryId": d.delivery.id.to_string(),
        "attempt": d.delivery.attempt,
    })
}

/// [`envelope_value`] encoded as JSON, byte for byte what `serde_json::to_vec` makes of it
/// (keys sorted), but written directly: the default body of every webhook attempt, where
/// building the value tree first was a tenth of the orchestrator's CPU.
pub fn envelope_bytes(d: &LeasedDelivery) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"attempt\":");
    out.extend_from_slice(d.delivery.attempt.to_string().as_bytes());
    out.extend_from_slice(b",\"deliveryId\":\"");
    out.extend_from_slice(d.delivery.id.to_string().as_bytes());
    out.extend_from_slice(b"\",\"event\":\"timer.fired\",\"timer\":");
    d.timer.write_json(&mut out);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use minoots_core::{Delivery, DeliveryId, DeliveryStatus, Timer, TimerId, TimerRequest};

    #[test]
    fn an_attempt_starts_only_when_its_lease_outlasts_the_next_renewal() {
        let ms = Duration::from_millis;
        let every = ms(2_000);
        // A fresh 6 s lease: runs.
        assert_eq!(lease_plan(ms(6_000), every), LeasePlan::Run);
        // The next heartbeat comes within 2 s; the attempt would be stopped 0.5 s before
        // the lease ends, so it needs more than 2.5 s.
        assert_eq!(lease_plan(ms(2_501), every), LeasePlan::Run);
        assert_eq!(lease_plan(ms(2_500), every), LeasePlan::HandBack);
        assert_eq!(lease_plan(Duration::ZERO, every), LeasePlan::HandBack);
    }

    #[test]
    fn the_envelope_bytes_are_the_envelope_value_encoded() {
        let request = TimerRequest::from_json(
            br#"{"name": "n \"q\"", "duration": "1s", "metadata": {"b": [1, 2.5], "a": null},
                 "labels": {"env": "prod"},
                 "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}],
                                  "retryPolicy": {"maxAttempts": 3}}}"#,
        )
        .unwrap();
        let timer: Timer = request
            .validate("acme", 1_700_000_000_000_000)
            .unwrap()
            .into_timer(TimerId::new_v7(), 1_700_000_000_000_000);
        let d = LeasedDelivery {
            delivery: Delivery {
                id: DeliveryId::new_v7(),
                timer_id: timer.id,
                tenant_id: "acme".into(),
                occurrence: 0,
                action_index: 0,
                status: DeliveryStatus::InFlight,
                attempt: 2,
                max_attempts: 3,
                next_attempt_at_us: 0,
                lease_owner: Some("o".into()),
                lease_expires_at_us: Some(1),
                created_at_us: 0,
                updated_at_us: 0,
                last_error: None,
            },
            action: timer.action_bundle.actions[0].clone(),
            timer,
            secrets_version: 0,
        };
        assert_eq!(
            String::from_utf8(envelope_bytes(&d)).unwrap(),
            serde_json::to_string(&envelope_value(&d)).unwrap()
        );
    }
}
