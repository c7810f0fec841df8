//! Shared harness for orchestrator tests: a real kernel on SQLite in a temporary
//! directory and an orchestrator task leasing from it, with helpers to schedule webhook
//! timers and wait on their events. Never reaches beyond loopback.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use minoots_core::{Clock, EventType, SystemClock, Timer, TimerId, TimerRequest, TimerStatus};
use minoots_kernel::{Kernel, KernelApi, KernelConfig};
use minoots_orchestrator::executor::{Orchestrator, OrchestratorConfig};
use minoots_orchestrator::ssrf::TargetPolicy;
use minoots_store::{DeliveryWithAttempts, EventQuery, SqliteConfig, SqliteStore, Store};
use tokio::sync::watch;
use tokio_stream::StreamExt;

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Setup {
    pub kernel: Arc<Kernel>,
    pub orchestrator: Arc<Orchestrator>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Webhooks may reach loopback (the test servers), nothing else changes.
pub fn loopback_allowed() -> TargetPolicy {
    TargetPolicy {
        allow_private: true,
        allowed_cidrs: vec![],
    }
}

/// Starts a kernel and an orchestrator configured by `configure`.
pub async fn start_with(configure: impl FnOnce(&mut OrchestratorConfig)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap());
    let kernel = Kernel::start(store, clock, KernelConfig::default()).unwrap();
    let mut config = OrchestratorConfig::new("orch-test");
    config.targets = loopback_allowed();
    // Tests stop while attempts against dead servers still hang; do not wait for them.
    config.shutdown_grace = Duration::from_secs(1);
    configure(&mut config);
    let orchestrator = Orchestrator::new(kernel.clone(), config).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(orchestrator.clone().run(stop_rx));
    Setup {
        kernel,
        orchestrator,
        stop,
        task,
        _dir: dir,
    }
}

impl Setup {
    /// Schedules a timer for tenant `acme` firing in `duration` with one webhook to `url`;
    /// `action_extra` is spliced into the action object, `retry` is the retry policy.
    pub async fn schedule(
        &self,
        duration: &str,
        url: &str,
        action_extra: &str,
        retry: &str,
    ) -> Timer {
        let json = format!(
            r#"{{"duration": "{duration}", "actionBundle": {{"actions": [{{"type": "webhook", "url": "{url}"{action_extra}}}],
                "retryPolicy": {retry}}}}}"#
        );
        self.kernel
            .schedule_timer("acme", TimerRequest::from_json(json.as_bytes()).unwrap())
            .await
            .unwrap()
            .timer
    }

    /// Waits until the timer reaches `status`, woken by its settled and failed events.
    pub async fn wait_status(&self, id: TimerId, status: TimerStatus) -> Timer {
        let query = EventQuery {
            timer_id: Some(id),
            types: vec![EventType::TimerSettled, EventType::TimerFailed],
            ..Default::default()
        };
        let mut events = self.kernel.stream_events(query).await.unwrap();
        loop {
            let t = self.kernel.get_timer("acme", id).await.unwrap();
            if t.status == status {
                return t;
            }
            let terminal = [
                TimerStatus::Settled,
                TimerStatus::Failed,
                TimerStatus::Cancelled,
            ];
            assert!(
                !terminal.contains(&t.status),
                "timer ended {} (wanted {status})",
                t.status
            );
            tokio::time::timeout(WAIT, events.next())
                .await
                .unwrap_or_else(|_| panic!("timer stayed {} (wanted {status})", t.status))
                .expect("event stream open")
                .unwrap();
        }
    }

    /// The timer's only delivery, with its attempts.
    pub async fn delivery(&self, id: TimerId) -> DeliveryWithAttempts {
        let mut ds = self.kernel.list_deliveries("acme", id).await.unwrap();
        assert_eq!(ds.len(), 1, "one action, one delivery");
        ds.remove(0)
    }

    /// Asserts the orchestrator task is still running (it did not panic or give up).
    pub fn assert_running(&self) {
        assert!(
            !self.task.is_finished(),
            "the orchestrator task ended while it should be running"
        );
    }

    pub async fn stop(self) {
        self.assert_running();
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the orchestrator stops within the grace period")
            .expect("the orchestrator task did not panic");
        self.kernel.shutdown().await;
    }
}
