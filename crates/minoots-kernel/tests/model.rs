//! Model-based test of the kernel: proptest generates random sequences of operations —
//! create, cancel (known, unknown, another tenant's), advance the clock, lease the due
//! deliveries, report success / retryable failure / permanent failure (also with stale
//! leases), let leases expire, restart the kernel on the same store, redrive — and runs
//! each against the real `Kernel` on a real store driven by a manual clock, and against a
//! small pure reference model. After every operation both must agree on every timer's
//! status, version and fired time; every delivery's status, attempts, lease and due time;
//! the per-timer and per-delivery sequences of event types; and a gap-free, strictly
//! increasing event sequence. Waiting for the kernel (firing, rescuing) is driven by its
//! event stream, never by sleeping.
//!
//! The store is opened through a [`Backend`]: SQLite always, and PostgreSQL when
//! `MINOOTS_TEST_DATABASE_URL` names a database (each case in a schema of its own, dropped
//! after it; without the variable that test prints "skipped: no database" and passes).
//!
//! `MINOOTS_MODEL_CASES` sets the number of cases (default 128; each up to 40 operations).

#[allow(dead_code)]
mod common;
use common::{WAIT, lease};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use minoots_core::{
    AttemptOutcome, Clock, DeliveryId, DeliveryStatus, Event, EventType, ManualClock, TimerId,
    TimerRequest, TimerStatus,
};
use minoots_kernel::{BoxStream, Kernel, KernelApi, KernelConfig, KernelError};
use minoots_store::{
    AttemptReport, EventQuery, PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, Store,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio_stream::StreamExt;

const T0: i64 = 1_795_773_600_000_000;
const SEC: i64 = 1_000_000;
const TENANT: &str = "acme";
const LEASE_TTL_MS: u32 = 10_000;
const LEASE_TTL_US: i64 = LEASE_TTL_MS as i64 * 1_000;
const INITIAL_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 4_000;
/// Most operations per case.
const MAX_OPS: usize = 40;
/// Cases run by default; more with `MINOOTS_MODEL_CASES`.
const DEFAULT_CASES: u32 = 128;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Opens the store of the case whose scratch directory is the path, with the clock.
type OpenStore = fn(&Path, Arc<dyn Clock>) -> BoxFuture<Arc<dyn Store>>;

/// How a case opens the store its kernel runs on (again on restart) and clears it away.
#[derive(Clone, Copy)]
struct Backend {
    open: OpenStore,
    /// Removes what the case left outside `dir` (which goes with the case).
    discard: fn(&Path) -> BoxFuture<()>,
}

const SQLITE: Backend = Backend {
    open: |dir, clock| {
        let store =
            SqliteStore::open(SqliteConfig::new(dir), clock).expect("open the SQLite store");
        Box::pin(std::future::ready(Arc::new(store) as Arc<dyn Store>))
    },
    discard: |_| Box::pin(std::future::ready(())),
};

fn database_url() -> Option<String> {
    std::env::var("MINOOTS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The PostgreSQL schema of the case whose scratch directory is `dir`.
fn schema_of(dir: &Path) -> String {
    let name = dir
        .file_name()
        .expect("a named directory")
        .to_string_lossy();
    let tail: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("minoots_model_{tail}")
}

const POSTGRES: Backend = Backend {
    open: |dir, clock| {
        let mut config = PostgresConfig::new(database_url().expect("a database"));
        config.schema = Some(schema_of(dir));
        // A kernel's handle, alone on its schema: it holds every shard, so every fire
        // passes the shard fence, and the kernel follows the cluster's announcements.
        config.kernel = Some("model".into());
        Box::pin(async move {
            let store = PostgresStore::open(config, clock)
                .await
                .expect("open the PostgreSQL store");
            Arc::new(store) as Arc<dyn Store>
        })
    },
    discard: |dir| {
        let schema = schema_of(dir);
        Box::pin(async move {
            let url = database_url().expect("a database");
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .expect("drop the case's schema");
        })
    },
};

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone)]
enum Op {
    /// A timer due in `delay_ms` with `actions` webhook actions.
    Create {
        delay_ms: i64,
        actions: usize,
        max_attempts: u32,
    },
    /// Cancels the `target`-th timer (modulo how many exist), as its tenant or another.
    Cancel {
        target: usize,
        other_tenant: bool,
    },
    CancelUnknown,
    /// Moves the clock forward (fires what became due, expires leases).
    Advance {
        us: i64,
    },
    /// A new executor leases every delivery that is due.
    Lease,
    /// Reports on the `target`-th lease ever handed out (possibly a stale one).
    Report {
        target: usize,
        outcome: AttemptOutcome,
    },
    /// Shuts the kernel down and starts it again on the same store.
    Restart,
    Redrive {
        target: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let delays = prop::sample::select(vec![
        1i64, 400, 1_000, 1_500, 2_500, 7_000, 30_000, 3_600_000,
    ]);
    let advances = prop::sample::select(vec![
        1i64,
        500_000,
        SEC,
        2 * SEC,
        LEASE_TTL_US,
        LEASE_TTL_US + 1,
        60 * SEC,
    ]);
    let outcomes = prop::sample::select(vec![
        AttemptOutcome::Succeeded,
        AttemptOutcome::Retryable,
        AttemptOutcome::Permanent,
    ]);
    prop_oneof![
        5 => (delays, 0usize..=2, 1u32..=3).prop_map(|(delay_ms, actions, max_attempts)| Op::Create {
            delay_ms,
            actions,
            max_attempts
        }),
        2 => (any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(target, other_tenant)| Op::Cancel { target, other_tenant }),
        1 => Just(Op::CancelUnknown),
        5 => advances.prop_map(|us| Op::Advance { us }),
        3 => Just(Op::Lease),
        5 => (any::<usize>(), outcomes).prop_map(|(target, outcome)| Op::Report { target, outcome }),
        1 => Just(Op::Restart),
        1 => any::<usize>().prop_map(|target| Op::Redrive { target }),
    ]
}

// ---------------------------------------------------------------------------------------
// The reference model: what the kernel must do, as plain data.

#[derive(Debug, Clone)]
struct MDelivery {
    id: Option<DeliveryId>,
    status: DeliveryStatus,
    attempt: u32,
    max_attempts: u32,
    next_attempt_at: i64,
    lease: Option<(String, i64)>,
    attempts_recorded: usize,
    events: Vec<EventType>,
}

#[derive(Debug, Clone)]
struct MTimer {
    id: TimerId,
    fire_at: i64,
    status: TimerStatus,
    version: i64,
    fired_at: Option<i64>,
    actions: usize,
    max_attempts: u32,
    deliveries: Vec<MDelivery>,
    /// Types of the timer's own events (those without a delivery), in order.
    events: Vec<EventType>,
}

/// A lease handed out by the kernel, as the executor holding it knows it.
#[derive(Debug, Clone)]
struct Held {
    timer: usize,
    index: usize,
    owner: String,
    attempt: u32,
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    timers: Vec<MTimer>,
    held: Vec<Held>,
    events: usize,
    executors: u32,
}

impl Model {
    fn by_id(&self, id: TimerId) -> Option<usize> {
        self.timers.iter().position(|t| t.id == id)
    }

    /// The timer becomes `failed` (with its event) unless it already is.
    fn fail_timer(&mut self, t: usize) {
        let timer = &mut self.timers[t];
        if timer.status != TimerStatus::Failed {
            timer.status = TimerStatus::Failed;
            timer.version += 1;
            timer.events.push(EventType::TimerFailed);
            self.events += 1;
        }
    }

    fn kill(&mut self, t: usize, i: usize) {
        let d = &mut self.timers[t].deliveries[i];
        d.status = DeliveryStatus::Dead;
        d.lease = None;
        d.events.push(EventType::DeliveryDead);
        self.events += 1;
        self.fail_timer(t);
    }

    /// The clock moved: due timers fire, expired leases are rescued.
    fn advance(&mut self, us: i64) {
        self.now += us;
        let now = self.now;
        for t in 0..self.timers.len() {
            let timer = &mut self.timers[t];
            if timer.status != TimerStatus::Scheduled || timer.fire_at > now {
                continue;
            }
            timer.fired_at = Some(now);
            timer.version += 1;
            timer.events.push(EventType::TimerFired);
            self.events += 1;
            if timer.actions == 0 {
                timer.status = TimerStatus::Settled;
                timer.events.push(EventType::TimerSettled);
                self.events += 1;
            } else {
                timer.status = TimerStatus::Fired;
                timer.deliveries = (0..timer.actions)
                    .map(|_| MDelivery {
                        id: None,
                        status: DeliveryStatus::Pending,
                        attempt: 0,
                        max_attempts: timer.max_attempts,
                        next_attempt_at: now,
                        lease: None,
                        attempts_recorded: 0,
                        events: Vec::new(),
                    })
                    .collect();
            }
        }
        for t in 0..self.timers.len() {
            for i in 0..self.timers[t].deliveries.len() {
                let d = &mut self.timers[t].deliveries[i];
                let expired = d.status == DeliveryStatus::InFlight
                    && d.lease.as_ref().is_some_and(|(_, until)| *until < now);
                if !expired {
                    continue;
                }
                if d.attempt >= d.max_attempts {
                    self.kill(t, i);
                } else {
                    d.status = DeliveryStatus::Pending;
                    d.next_attempt_at = now;
                    d.lease = None;
                    d.events.push(EventType::DeliveryRetrying);
                    self.events += 1;
                }
            }
        }
    }

    /// Deliveries a new executor is handed now: every pending one that is due.
    fn due_deliveries(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (t, timer) in self.timers.iter().enumerate() {
            for (i, d) in timer.deliveries.iter().enumerate() {
                if d.status == DeliveryStatus::Pending && d.next_attempt_at <= self.now {
                    out.push((t, i));
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The system under test

struct Sut {
    backend: Backend,
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    kernel: Arc<Kernel>,
    events: BoxStream<Event>,
    /// Highest sequence number seen on the event stream.
    seen: i64,
}

fn config() -> KernelConfig {
    KernelConfig {
        window: Duration::from_secs(2),
        refill_interval: Duration::from_millis(100),
        rescue_interval: Duration::from_millis(20),
        realtime_firing_thread: false,
        ..KernelConfig::default()
    }
}

async fn start_kernel(backend: Backend, dir: &Path, clock: &Arc<ManualClock>) -> Arc<Kernel> {
    let c: Arc<dyn Clock> = clock.clone();
    let store = (backend.open)(dir, c.clone()).await;
    let k = Kernel::start(store, c, config()).expect("kernel starts");
    assert!(k.wait_ready(WAIT).await, "kernel ready in time");
    k
}

impl Sut {
    async fn start(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let kernel = start_kernel(backend, dir.path(), &clock).await;
        let events = subscribe(&kernel, 0).await;
        Self {
            backend,
            dir,
            clock,
            kernel,
            events,
            seen: 0,
        }
    }

    async fn restart(&mut self) {
        self.kernel.shutdown().await;
        self.kernel = start_kernel(self.backend, self.dir.path(), &self.clock).await;
        self.events = subscribe(&self.kernel, self.seen).await;
    }

    /// Follows the event stream until the kernel has appended `total` events.
    async fn wait_for_events(&mut self, total: usize, step: usize) -> Result<(), TestCaseError> {
        while self.seen < total as i64 {
            match tokio::time::timeout(WAIT, self.events.next()).await {
                Ok(Some(Ok(e))) => {
                    prop_assert!(
                        e.seq > self.seen,
                        "step {step}: event seq {} after {}",
                        e.seq,
                        self.seen
                    );
                    self.seen = e.seq;
                }
                Ok(other) => {
                    return Err(TestCaseError::fail(format!(
                        "step {step}: event stream ended: {other:?}"
                    )));
                }
                Err(_) => {
                    return Err(TestCaseError::fail(format!(
                        "step {step}: the kernel appended {} events, the model expects {total}",
                        self.seen
                    )));
                }
            }
        }
        Ok(())
    }
}

async fn subscribe(k: &Arc<Kernel>, after_seq: i64) -> BoxStream<Event> {
    k.stream_events(EventQuery {
        after_seq,
        limit: 1_000,
        ..Default::default()
    })
    .await
    .expect("event stream")
}

fn create_request(delay_ms: i64, actions: usize, max_attempts: u32) -> TimerRequest {
    let actions: Vec<String> = (0..actions)
        .map(|i| format!(r#"{{"type": "webhook", "url": "https://example.com/{i}"}}"#))
        .collect();
    TimerRequest::from_json(
        format!(
            r#"{{"duration": {delay_ms}, "actionBundle": {{"actions": [{}],
                "retryPolicy": {{"maxAttempts": {max_attempts}, "initialBackoffMs": {INITIAL_BACKOFF_MS},
                                 "maxBackoffMs": {MAX_BACKOFF_MS}}}}}}}"#,
            actions.join(",")
        )
        .as_bytes(),
    )
    .expect("a valid request")
}

// ---------------------------------------------------------------------------------------
// One operation on both sides

async fn apply(m: &mut Model, s: &mut Sut, op: &Op, step: usize) -> Result<(), TestCaseError> {
    let k = s.kernel.clone();
    match op {
        Op::Create {
            delay_ms,
            actions,
            max_attempts,
        } => {
            let t = k
                .schedule_timer(TENANT, create_request(*delay_ms, *actions, *max_attempts))
                .await
                .map_err(|e| TestCaseError::fail(format!("step {step}: create: {e}")))?
                .timer;
            prop_assert_eq!(t.fire_at_us, m.now + delay_ms * 1_000);
            prop_assert_eq!(t.status, TimerStatus::Scheduled);
            m.timers.push(MTimer {
                id: t.id,
                fire_at: t.fire_at_us,
                status: TimerStatus::Scheduled,
                version: 1,
                fired_at: None,
                actions: *actions,
                max_attempts: *max_attempts,
                deliveries: Vec::new(),
                events: vec![EventType::TimerScheduled],
            });
            m.events += 1;
        }
        Op::Cancel {
            target,
            other_tenant,
        } => {
            if m.timers.is_empty() {
                return Ok(());
            }
            let t = target % m.timers.len();
            let id = m.timers[t].id;
            let tenant = if *other_tenant { "other" } else { TENANT };
            let got = k.cancel_timer(tenant, id, Some("model".into())).await;
            if *other_tenant {
                prop_assert!(
                    matches!(got, Err(KernelError::NotFound(_))),
                    "step {step}: another tenant's cancel: {got:?}"
                );
            } else if m.timers[t].status == TimerStatus::Scheduled {
                let got = got.map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                prop_assert_eq!(got.status, TimerStatus::Cancelled);
                let timer = &mut m.timers[t];
                timer.status = TimerStatus::Cancelled;
                timer.version += 1;
                timer.events.push(EventType::TimerCancelled);
                m.events += 1;
            } else {
                let want = m.timers[t].status;
                prop_assert!(
                    matches!(got, Err(KernelError::Conflict { status: Some(s), .. }) if s == want),
                    "step {step}: cancel of a {want} timer: {got:?}"
                );
            }
        }
        Op::CancelUnknown => {
            let got = k.cancel_timer(TENANT, TimerId::new_v7(), None).await;
            prop_assert!(matches!(got, Err(KernelError::NotFound(_))), "{got:?}");
        }
        Op::Advance { us } => {
            m.advance(*us);
            s.clock.advance_us(*us);
        }
        Op::Lease => {
            let due = m.due_deliveries();
            if due.is_empty() {
                return Ok(());
            }
            m.executors += 1;
            let owner = format!("w{}", m.executors);
            let mut stream = k
                .lease_deliveries(lease(&owner, LEASE_TTL_MS, due.len() as u32))
                .await
                .map_err(|e| TestCaseError::fail(format!("step {step}: lease: {e}")))?;
            for _ in 0..due.len() {
                let got = tokio::time::timeout(WAIT, stream.next()).await;
                let Ok(Some(Ok(ld))) = got else {
                    return Err(TestCaseError::fail(format!(
                        "step {step}: fewer than the {} due deliveries were leased",
                        due.len()
                    )));
                };
                let t = m.by_id(ld.timer.id).ok_or_else(|| {
                    TestCaseError::fail(format!("step {step}: leased an unknown timer"))
                })?;
                let i = ld.delivery.action_index as usize;
                prop_assert!(
                    due.contains(&(t, i)),
                    "step {step}: leased a delivery that is not due: {:?}",
                    ld.delivery
                );
                let d = &mut m.timers[t].deliveries[i];
                prop_assert!(
                    d.id.is_none_or(|id| id == ld.delivery.id),
                    "delivery id is stable"
                );
                d.id = Some(ld.delivery.id);
                d.status = DeliveryStatus::InFlight;
                d.attempt += 1;
                d.lease = Some((owner.clone(), m.now + LEASE_TTL_US));
                prop_assert_eq!(ld.delivery.attempt, d.attempt, "step {}: attempt", step);
                m.held.push(Held {
                    timer: t,
                    index: i,
                    owner: owner.clone(),
                    attempt: d.attempt,
                });
            }
            // Nothing else is due, so the session claims nothing more before it ends.
            drop(stream);
        }
        Op::Report { target, outcome } => {
            if m.held.is_empty() {
                return Ok(());
            }
            let h = m.held[target % m.held.len()].clone();
            let d = m.timers[h.timer].deliveries[h.index].clone();
            let report = AttemptReport {
                delivery_id: d.id.expect("a held delivery has an id"),
                lease_owner: h.owner.clone(),
                attempt: h.attempt,
                started_at_us: m.now,
                duration_us: 1,
                outcome: *outcome,
                retry_after_ms: None,
                http_status: None,
                exit_code: None,
                error: (*outcome != AttemptOutcome::Succeeded).then(|| "model".to_string()),
                response_excerpt: None,
            };
            let got = k.report_attempt(report).await;
            let holds = d.status == DeliveryStatus::InFlight
                && d.attempt == h.attempt
                && d.lease.as_ref().is_some_and(|(o, _)| *o == h.owner);
            if !holds {
                prop_assert!(
                    matches!(got, Err(KernelError::Fenced(_))),
                    "step {step}: a stale report must be fenced: {got:?}"
                );
                return Ok(());
            }
            let got = got.map_err(|e| TestCaseError::fail(format!("step {step}: report: {e}")))?;
            let now = m.now;
            {
                let md = &mut m.timers[h.timer].deliveries[h.index];
                md.attempts_recorded += 1;
                md.lease = None;
                md.events.push(EventType::DeliveryAttempted);
            }
            m.events += 1;
            match outcome {
                AttemptOutcome::Succeeded => {
                    m.timers[h.timer].deliveries[h.index].status = DeliveryStatus::Succeeded;
                    let timer = &mut m.timers[h.timer];
                    let all_done = timer
                        .deliveries
                        .iter()
                        .all(|x| x.status == DeliveryStatus::Succeeded);
                    if all_done && timer.status != TimerStatus::Failed {
                        timer.status = TimerStatus::Settled;
                        timer.version += 1;
                        timer.events.push(EventType::TimerSettled);
                        m.events += 1;
                    }
                }
                AttemptOutcome::Retryable if d.attempt < d.max_attempts => {
                    let next = got.next_attempt_at_us.ok_or_else(|| {
                        TestCaseError::fail(format!("step {step}: a retry without a due time"))
                    })?;
                    prop_assert!(
                        (now..=now + MAX_BACKOFF_MS * 1_000).contains(&next),
                        "step {step}: retry due at {next}, now {now}"
                    );
                    let md = &mut m.timers[h.timer].deliveries[h.index];
                    md.status = DeliveryStatus::Pending;
                    md.next_attempt_at = next;
                    md.events.push(EventType::DeliveryRetrying);
                    m.events += 1;
                }
                AttemptOutcome::Retryable | AttemptOutcome::Permanent => m.kill(h.timer, h.index),
            }
            prop_assert_eq!(
                got.delivery_status,
                m.timers[h.timer].deliveries[h.index].status,
                "step {}: delivery status in the report's answer",
                step
            );
            prop_assert_eq!(
                got.timer_status,
                m.timers[h.timer].status,
                "step {}: timer status in the report's answer",
                step
            );
        }
        Op::Restart => s.restart().await,
        Op::Redrive { target } => {
            if m.timers.is_empty() {
                return Ok(());
            }
            let t = target % m.timers.len();
            let got = k.redrive_timer(TENANT, m.timers[t].id).await;
            let now = m.now;
            let timer = &mut m.timers[t];
            let dead: Vec<usize> = (0..timer.deliveries.len())
                .filter(|i| timer.deliveries[*i].status == DeliveryStatus::Dead)
                .collect();
            if dead.is_empty() {
                prop_assert!(
                    matches!(got, Err(KernelError::Conflict { .. })),
                    "step {step}: redrive without a dead delivery: {got:?}"
                );
                return Ok(());
            }
            let got = got.map_err(|e| TestCaseError::fail(format!("step {step}: redrive: {e}")))?;
            for i in dead {
                let d = &mut timer.deliveries[i];
                d.status = DeliveryStatus::Pending;
                d.next_attempt_at = now;
                d.max_attempts = d.attempt + timer.max_attempts;
                d.events.push(EventType::DeliveryRetrying);
                m.events += 1;
            }
            if timer.status == TimerStatus::Failed {
                timer.status = TimerStatus::Fired;
                timer.version += 1;
            }
            prop_assert_eq!(got.status, timer.status);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Comparing the kernel with the model

async fn compare(m: &Model, s: &mut Sut, step: usize) -> Result<(), TestCaseError> {
    s.wait_for_events(m.events, step).await?;
    let k = &s.kernel;
    for (n, mt) in m.timers.iter().enumerate() {
        let t = k
            .get_timer(TENANT, mt.id)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {step}: get timer {n}: {e}")))?;
        prop_assert_eq!(t.status, mt.status, "step {}: timer {} status", step, n);
        prop_assert_eq!(t.version, mt.version, "step {}: timer {} version", step, n);
        prop_assert_eq!(
            t.fired_at_us,
            mt.fired_at,
            "step {}: timer {} fired at",
            step,
            n
        );
        if let Some(fired) = t.fired_at_us {
            prop_assert!(fired >= t.fire_at_us, "step {step}: timer {n} fired early");
        }
        let ds = k
            .list_deliveries(TENANT, mt.id)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {step}: deliveries: {e}")))?;
        prop_assert_eq!(
            ds.len(),
            mt.deliveries.len(),
            "step {}: timer {} deliveries",
            step,
            n
        );
        for dw in &ds {
            let d = &dw.delivery;
            let md = &mt.deliveries[d.action_index as usize];
            let what = format!("step {step}: timer {n} delivery {}", d.action_index);
            prop_assert!(md.id.is_none_or(|id| id == d.id), "{what}: id changed");
            prop_assert_eq!(d.status, md.status, "{} status", what);
            prop_assert_eq!(d.attempt, md.attempt, "{} attempt", what);
            prop_assert_eq!(d.max_attempts, md.max_attempts, "{} max attempts", what);
            prop_assert_eq!(
                d.next_attempt_at_us,
                md.next_attempt_at,
                "{} next attempt",
                what
            );
            let lease = d.lease_owner.clone().zip(d.lease_expires_at_us);
            if d.status == DeliveryStatus::InFlight {
                prop_assert_eq!(lease, md.lease.clone(), "{} lease", what);
            }
            prop_assert_eq!(dw.attempts.len(), md.attempts_recorded, "{} attempts", what);
        }
    }

    let log = k
        .store()
        .read_events(EventQuery {
            after_seq: 0,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .map_err(|e| TestCaseError::fail(format!("step {step}: read events: {e}")))?;
    prop_assert_eq!(log.len(), m.events, "step {}: number of events", step);
    let mut per_stream: BTreeMap<(TimerId, Option<DeliveryId>), Vec<EventType>> = BTreeMap::new();
    for (i, e) in log.iter().enumerate() {
        prop_assert_eq!(
            e.seq,
            i as i64 + 1,
            "step {}: event sequence has a gap",
            step
        );
        prop_assert_eq!(e.tenant_id.as_str(), TENANT);
        per_stream
            .entry((e.timer_id, e.delivery_id))
            .or_default()
            .push(e.event_type);
    }
    for (n, mt) in m.timers.iter().enumerate() {
        let got = per_stream.remove(&(mt.id, None)).unwrap_or_default();
        prop_assert_eq!(&got, &mt.events, "step {}: events of timer {}", step, n);
        for (i, md) in mt.deliveries.iter().enumerate() {
            let got = match md.id {
                Some(id) => per_stream.remove(&(mt.id, Some(id))).unwrap_or_default(),
                None => Vec::new(),
            };
            prop_assert_eq!(
                &got,
                &md.events,
                "step {}: events of timer {} delivery {}",
                step,
                n,
                i
            );
        }
    }
    prop_assert!(
        per_stream.is_empty(),
        "step {step}: events the model does not know: {per_stream:?}"
    );
    Ok(())
}

async fn run_case(backend: Backend, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut s = Sut::start(backend).await;
    let mut m = Model {
        now: T0,
        ..Model::default()
    };
    let mut result = Ok(());
    for (step, op) in ops.iter().enumerate() {
        result = apply(&mut m, &mut s, op, step).await;
        if result.is_ok() {
            result = compare(&m, &mut s, step).await;
        }
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        // Nothing more may happen on its own: no late fire, rescue or duplicate.
        tokio::time::sleep(Duration::from_millis(50)).await;
        result = compare(&m, &mut s, ops.len()).await;
    }
    s.kernel.shutdown().await;
    (backend.discard)(s.dir.path()).await;
    result
}

fn check_backend(backend: Backend) {
    let cases = std::env::var("MINOOTS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runner.run(&prop::collection::vec(op(), 1..=MAX_OPS), |ops| {
        rt.block_on(run_case(backend, &ops))
    });
    if let Err(e) = result {
        panic!("the kernel and the model disagree: {e}");
    }
}

#[test]
fn the_kernel_on_sqlite_agrees_with_the_model() {
    check_backend(SQLITE);
}

#[test]
fn the_kernel_on_postgres_agrees_with_the_model() {
    if database_url().is_none() {
        println!("skipped: no database");
        return;
    }
    check_backend(POSTGRES);
}
