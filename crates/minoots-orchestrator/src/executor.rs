//! The executor loop: lease deliveries from the kernel, run them with bounded
//! concurrency (overall and per destination host), report every attempt.
//!
//! Stateless: all it holds is what it is executing. Killed mid-delivery, it loses
//! nothing — the lease expires and the kernel hands the delivery out again with the same
//! delivery id. On a graceful stop it stops leasing, hands back (releases) deliveries it
//! leased but did not start, and lets the started ones finish and report, so a SIGTERM
//! produces no duplicate. Works against any [`KernelApi`]: in process or over gRPC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minoots_core::{Action, AttemptOutcome, Clock, SystemClock};
use minoots_kernel::{KernelApi, KernelError, LeaseRequest};
use minoots_store::{AttemptReport, LeasedDelivery};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_stream::StreamExt;

use crate::ExecResult;
use crate::command::{CommandConfig, run_command};
use crate::file::{FileConfig, run_file};
use crate::signing::WebhookSecret;
use crate::ssrf::TargetPolicy;
use crate::webhook::{WebhookCall, WebhookClient};

/// Settings of one orchestrator, with documented defaults.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Names this executor in leases and reports (fencing); unique per process.
    pub lease_owner: String,
    /// How long a delivery is leased. Longer than the longest webhook timeout (120 s), so a
    /// running attempt is not handed to another executor.
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
    /// How long a tenant's signing secrets are cached (rotation keeps the old secret valid
    /// for 24 h, so a short staleness is harmless).
    pub secret_cache_ttl: Duration,
    /// On a graceful stop, how long started deliveries may take to finish.
    pub shutdown_grace: Duration,
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

/// [`HOST_BUSY_DELAY`] with jitter taken from the clock's microseconds.
fn host_busy_delay() -> Duration {
    let jitter_us = SystemClock
        .now_us()
        .rem_euclid(HOST_BUSY_DELAY.as_micros() as i64);
    HOST_BUSY_DELAY + Duration::from_micros(jitter_us as u64)
}

/// On a graceful stop, the stream of leases is read until it stays quiet this long, so a
/// claim the kernel is committing is received and handed back rather than left leased.
const STOP_DRAIN_QUIET: Duration = Duration::from_millis(50);
/// An attempt is not started with less than this left of its lease.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

/// What to do with a leased delivery, given how much of its lease is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeasePlan {
    /// The attempt fits in what is left of the lease.
    Run,
    /// Hand it back: it is leased again soon with a full lease, which fits the attempt.
    HandBack,
    /// Even a full lease is shorter than the attempt may take (the lease TTL is set below
    /// the action's timeout): run it, but stop it after this long, before the lease ends.
    RunCutAt(Duration),
}

/// Decides how an attempt that may take `budget` starts with `lease_left` of its lease,
/// leases lasting `lease_ttl`: never so that it can still run when the lease ends.
fn lease_plan(lease_left: Duration, budget: Duration, lease_ttl: Duration) -> LeasePlan {
    let needed = budget + LEASE_MARGIN;
    if lease_left >= needed {
        LeasePlan::Run
    } else if lease_left <= latest_start(budget, lease_ttl) {
        LeasePlan::HandBack
    } else {
        LeasePlan::RunCutAt(lease_left - LEASE_MARGIN)
    }
}

/// The lease left below which [`lease_plan`] hands an attempt of `budget` back: all it
/// needs when a full lease covers it, else only the margin.
fn latest_start(budget: Duration, lease_ttl: Duration) -> Duration {
    let needed = budget + LEASE_MARGIN;
    if lease_ttl >= needed {
        needed
    } else {
        LEASE_MARGIN
    }
}

impl OrchestratorConfig {
    pub fn new(lease_owner: impl Into<String>) -> Self {
        Self {
            lease_owner: lease_owner.into(),
            lease_ttl: Duration::from_secs(150),
            max_in_flight: 256,
            prefetch: 32,
            max_per_host: 32,
            targets: TargetPolicy::default(),
            commands: CommandConfig::default(),
            files: None,
            secret_cache_ttl: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(130),
        }
    }
}

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

/// Signing secrets per tenant, with the time they were fetched.
type SecretCache = Mutex<HashMap<String, (Instant, Arc<Vec<WebhookSecret>>)>>;

/// A running orchestrator.
pub struct Orchestrator {
    kernel: Arc<dyn KernelApi>,
    config: OrchestratorConfig,
    webhooks: WebhookClient,
    secrets: SecretCache,
    hosts: Mutex<HashMap<String, HostLimit>>,
    metrics: Arc<crate::metrics::OrchestratorMetrics>,
}

impl Orchestrator {
    pub fn new(
        kernel: Arc<dyn KernelApi>,
        config: OrchestratorConfig,
    ) -> Result<Arc<Self>, String> {
        let webhooks = WebhookClient::new(config.targets.clone(), config.max_per_host)?;
        Ok(Arc::new(Self {
            kernel,
            config,
            webhooks,
            secrets: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            metrics: Arc::default(),
        }))
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &Arc<crate::metrics::OrchestratorMetrics> {
        &self.metrics
    }

    /// Runs until `stop` turns true, then stops gracefully (see the module doc).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.max_in_flight as usize));
        // Deliveries waiting for a slot of their host, over all hosts: room for a few hosts'
        // full queues, so one dead host cannot take all of it.
        let waiting = Arc::new(Semaphore::new(
            self.config.max_in_flight as usize * WAITING_FACTOR,
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        let mut stream: Option<minoots_kernel::BoxStream<LeasedDelivery>> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let Some(leases) = stream.as_mut() else {
                let request = LeaseRequest {
                    lease_owner: self.config.lease_owner.clone(),
                    lease_ttl_ms: self.config.lease_ttl.as_millis() as u32,
                    max_in_flight: self
                        .config
                        .prefetch
                        .clamp(1, self.config.max_in_flight.max(1)),
                };
                match self.kernel.lease_deliveries(request).await {
                    Ok(s) => {
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
                p = slots.clone().acquire_owned() => p.expect("semaphore open"),
                _ = stop.changed() => continue,
            };
            let item = tokio::select! {
                item = leases.next() => item,
                _ = stop.changed() => continue,
            };
            match item {
                Some(Ok(d)) => {
                    // A webhook starts only with a slot of its host, taken here without
                    // waiting. A delivery whose host is saturated (say, black-holed) waits in
                    // that host's bounded queue *without* a global slot; when the queue is
                    // full it is handed back, due again shortly. So a dead host holds at
                    // most `max_per_host` global slots and never stalls the lease stream.
                    let url = match &d.action {
                        Action::Webhook(w) => Some(url::Url::parse(&w.url)),
                        _ => None,
                    };
                    let host_slot = match &url {
                        Some(u) => {
                            let host =
                                self.host_limit(u.as_ref().ok().and_then(url::Url::host_str));
                            match host.running.clone().try_acquire_owned() {
                                Ok(slot) => Some(slot),
                                Err(_) => {
                                    let me = self.clone();
                                    let slots = slots.clone();
                                    let queue = (
                                        host.queue.clone().try_acquire_owned(),
                                        waiting.clone().try_acquire_owned(),
                                    );
                                    tasks.spawn(async move {
                                        drop(permit);
                                        match queue {
                                            (Ok(_in_host_queue), Ok(_waiting)) => {
                                                me.wait_for_host(d, url, host.running, slots).await
                                            }
                                            _ => me.release_later(&d, host_busy_delay()).await,
                                        }
                                    });
                                    while tasks.try_join_next().is_some() {}
                                    continue;
                                }
                            }
                        }
                        None => None,
                    };
                    let me = self.clone();
                    tasks.spawn(async move {
                        me.execute(d, url, host_slot).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "lease stream failed; reconnecting");
                    stream = None;
                }
                None => stream = None,
            }
            while tasks.try_join_next().is_some() {}
        }
        // Graceful stop: hand back what was leased but not started, then let the started
        // deliveries finish and report. What the stream holds is taken first and released
        // only after the stream is closed: a delivery released while the lease session is
        // still open is due at once and would be leased to this executor again.
        if let Some(mut leases) = stream.take() {
            let mut unstarted = Vec::new();
            for _ in 0..self.config.prefetch.saturating_mul(2).max(1) {
                match tokio::time::timeout(STOP_DRAIN_QUIET, leases.next()).await {
                    Ok(Some(Ok(d))) => unstarted.push(d),
                    _ => break,
                }
            }
            // Closing the stream ends the lease session; a claim it commits after this is
            // handed back by the kernel itself.
            drop(leases);
            for d in &unstarted {
                self.release(d).await;
            }
        }
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
    }

    /// Hands back deliveries leased but not started (used when stopping).
    pub async fn release(&self, d: &LeasedDelivery) {
        self.metrics.released();
        if let Err(e) = self
            .kernel
            .release_delivery(d.delivery.id, &self.config.lease_owner, d.delivery.attempt)
            .await
        {
            tracing::warn!(delivery = %d.delivery.id, error = %e, "could not hand a delivery back");
        }
    }

    /// The longest an attempt of `action` may take: the webhook's or command's timeout (a
    /// command also gets its kill grace); a file append is quick.
    fn attempt_budget(&self, action: &Action) -> Duration {
        match action {
            Action::Webhook(w) => Duration::from_millis(u64::from(w.timeout_ms())),
            Action::Command(c) => {
                Duration::from_millis(u64::from(c.timeout_ms())) + self.config.commands.kill_grace
            }
            Action::File(_) => Duration::ZERO,
        }
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
    }

    async fn signing_secrets(&self, tenant: &str) -> Result<Arc<Vec<WebhookSecret>>, KernelError> {
        if let Some((at, s)) = self
            .secrets
            .lock()
            .expect("secret cache poisoned")
            .get(tenant)
            && at.elapsed() < self.config.secret_cache_ttl
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
        cache.insert(tenant.to_string(), (Instant::now(), parsed.clone()));
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
    /// slot, then runs it. Gives up, handing the delivery back, when its lease would be
    /// nearly gone.
    async fn wait_for_host(
        &self,
        d: LeasedDelivery,
        url: Option<Result<url::Url, url::ParseError>>,
        host: Arc<Semaphore>,
        slots: Arc<Semaphore>,
    ) {
        // Waiting is pointless once the attempt could no longer start (see `lease_plan`).
        let must_be_left = latest_start(self.attempt_budget(&d.action), self.config.lease_ttl);
        let lease_left_us = d
            .delivery
            .lease_expires_at_us
            .unwrap_or(i64::MAX)
            .saturating_sub(SystemClock.now_us())
            .saturating_sub(must_be_left.as_micros() as i64)
            .max(0);
        let wait = Duration::from_micros(lease_left_us as u64);
        let permits = tokio::time::timeout(wait, async {
            let slot = host.acquire_owned().await.expect("semaphore open");
            let permit = slots.acquire_owned().await.expect("semaphore open");
            (slot, permit)
        })
        .await;
        match permits {
            Ok((slot, permit)) => {
                self.execute(d, url, Some(slot)).await;
                drop(permit);
            }
            Err(_) => {
                tracing::warn!(delivery = %d.delivery.id, "host saturated for the whole lease; handing it back");
                self.release(&d).await;
            }
        }
    }

    /// Runs one leased delivery and reports the attempt. A webhook comes with its URL,
    /// parsed once for the host limit, the SSRF check and the request, and with a slot of
    /// its host, held until the attempt ends.
    async fn execute(
        &self,
        d: LeasedDelivery,
        parsed_url: Option<Result<url::Url, url::ParseError>>,
        _host_slot: Option<OwnedSemaphorePermit>,
    ) {
        // The delivery may have waited in the lease buffer or for its host; an attempt
        // still running when the lease ends would run alongside the executor the delivery
        // is handed to next (a duplicate without any crash). See [`lease_plan`].
        let lease_left_us = d
            .delivery
            .lease_expires_at_us
            .unwrap_or(i64::MAX)
            .saturating_sub(SystemClock.now_us())
            .max(0);
        let plan = lease_plan(
            Duration::from_micros(lease_left_us as u64),
            self.attempt_budget(&d.action),
            self.config.lease_ttl,
        );
        let cut_at = match plan {
            LeasePlan::HandBack => {
                tracing::debug!(delivery = %d.delivery.id, "lease too short for the attempt; handing it back");
                self.release(&d).await;
                return;
            }
            LeasePlan::Run => None,
            LeasePlan::RunCutAt(limit) => Some(limit),
        };
        let started_at_us = SystemClock.now_us();
        let started = Instant::now();
        let running = self.metrics.running();
        let kind = match &d.action {
            Action::Webhook(_) => 0,
            Action::Command(_) => 1,
            Action::File(_) => 2,
        };
        let result = match &d.action {
            Action::Webhook(w) => match self.signing_secrets(&d.timer.tenant_id).await {
                Ok(secrets) => {
                    // The envelope is encoded only when the action has no body of its own.
                    let body = match &w.body {
                        Some(b) => serde_json::to_vec(b).unwrap_or_default(),
                        None => envelope_bytes(&d),
                    };
                    let (delivery_id, timer_id) =
                        (d.delivery.id.to_string(), d.timer.id.to_string());
                    let call = self.webhooks.deliver(WebhookCall {
                        action: w,
                        url: parsed_url.as_ref().and_then(|u| u.as_ref().ok()),
                        delivery_id: &delivery_id,
                        timer_id: &timer_id,
                        attempt: d.delivery.attempt,
                        secrets: &secrets,
                        timestamp_s: started_at_us.div_euclid(1_000_000),
                        body,
                    });
                    match cut_at {
                        None => call.await,
                        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                            ExecResult::failure(
                                AttemptOutcome::Retryable,
                                format!(
                                    "stopped after {} ms at the end of its lease (the lease is shorter than the webhook's timeout; raise the lease TTL)",
                                    limit.as_millis()
                                ),
                            )
                        }),
                    }
                }
                Err(e) => ExecResult::failure(
                    AttemptOutcome::Retryable,
                    format!("signing secret unavailable: {e}"),
                ),
            },
            Action::Command(c) => run_command(&self.config.commands, c).await,
            Action::File(f) => run_file(self.config.files.as_ref(), f, &envelope_value(&d)).await,
        };
        drop(running);
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
        self.report(report, d.delivery.lease_expires_at_us).await;
    }

    /// Reports an attempt, retrying while the kernel is unavailable and the lease lasts
    /// (after that the kernel hands the delivery out again anyway). A fenced report means
    /// the lease was lost (this attempt ran late); the kernel has already moved on.
    async fn report(&self, report: AttemptReport, lease_expires_at_us: Option<i64>) {
        let mut wait = Duration::from_millis(100);
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self.kernel.report_attempt(report.clone()).await {
                Ok(_) => return,
                Err(KernelError::Unavailable(e)) => {
                    let lease_over =
                        lease_expires_at_us.is_some_and(|at| SystemClock.now_us() >= at);
                    if lease_over || tries >= MAX_REPORT_TRIES {
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
    fn an_attempt_never_starts_so_that_it_can_outlive_its_lease() {
        let s = Duration::from_secs;
        let ttl = s(150);
        // A fresh lease covers a 30 s webhook.
        assert_eq!(lease_plan(s(150), s(30), ttl), LeasePlan::Run);
        // After waiting for its host, 20 s are left for a 30 s webhook: handed back, to be
        // leased again with a full lease.
        assert_eq!(lease_plan(s(20), s(30), ttl), LeasePlan::HandBack);
        assert_eq!(lease_plan(s(30), s(30), ttl), LeasePlan::HandBack);
        // A lease TTL below the timeout (misconfigured): the attempt runs but is stopped
        // before the lease ends, and one with almost nothing left is handed back.
        assert_eq!(
            lease_plan(s(2), s(30), s(2)),
            LeasePlan::RunCutAt(s(2) - LEASE_MARGIN)
        );
        assert_eq!(lease_plan(LEASE_MARGIN, s(30), s(2)), LeasePlan::HandBack);
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
        };
        assert_eq!(
            String::from_utf8(envelope_bytes(&d)).unwrap(),
            serde_json::to_string(&envelope_value(&d)).unwrap()
        );
    }
}
