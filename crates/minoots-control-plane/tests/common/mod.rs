//! A live control plane over real HTTP on loopback, with an in-process kernel on a fresh
//! SQLite store, and a small client for it.

#![allow(dead_code)]

use std::sync::Arc;

use minoots_control_plane::{AppState, Bootstrap, ControlPlaneConfig, bootstrap, serve};
use minoots_core::{AttemptOutcome, Clock, SystemClock};
use minoots_kernel::{Kernel, KernelApi, KernelConfig, LeaseRequest};
use minoots_store::{AttemptReport, SqliteConfig, SqliteStore, Store};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

pub const ADMIN_KEY: &str = "mnt_test_admin_key_0123456789abcdef0123456789";

pub struct Server {
    pub url: String,
    pub kernel: Arc<Kernel>,
    /// The kernel's store, for tests that make its disk misbehave.
    pub sqlite: SqliteStore,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status, naming `field` when given.
    pub fn assert_problem(&self, status: u16, field: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        if let Some(f) = field {
            let fields: Vec<&str> = self.body["errors"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                fields.contains(&f),
                "expected an error naming {f}, got {fields:?}: {}",
                self.text
            );
        }
    }
}

pub async fn start(config: ControlPlaneConfig) -> Server {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with the kernel, its store and the REST API all reading `clock`.
pub async fn start_with_clock(config: ControlPlaneConfig, clock: Arc<dyn Clock>) -> Server {
    start_in(tempfile::tempdir().unwrap(), config, clock).await
}

/// [`start_with_clock`] on the store in `dir` (a server stopped with
/// [`Server::stop_keeping_data`] starts again on what it left).
pub async fn start_in(
    dir: tempfile::TempDir,
    config: ControlPlaneConfig,
    clock: Arc<dyn Clock>,
) -> Server {
    let sqlite = SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let kernel = Kernel::start(store, clock.clone(), KernelConfig::default()).unwrap();
    let api: Arc<dyn KernelApi> = kernel.clone();
    bootstrap(
        api.as_ref(),
        Bootstrap {
            admin_key: Some(ADMIN_KEY.into()),
            demo: config.demo,
        },
    )
    .await
    .unwrap();
    let state = AppState::with_clock(api, config, Some(kernel.clone()), clock).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(state, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        url,
        kernel,
        sqlite,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl Server {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        self.call_with(method, path, key, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.url, path));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// How many timers `GET /timers` lists for `key` (first page).
    pub async fn timer_count(&self, key: Option<&str>) -> usize {
        let r = self.call("GET", "/timers", key, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["timers"].as_array().expect("a list of timers").len()
    }

    /// Creates a tenant and a key with `roles` for it through the admin API.
    pub async fn tenant_with_key(&self, tenant: &str, tier: &str, roles: &[&str]) -> String {
        let r = self
            .call(
                "POST",
                "/admin/tenants",
                Some(ADMIN_KEY),
                Some(&format!(r#"{{"id": "{tenant}", "tier": "{tier}"}}"#)),
            )
            .await;
        assert!(r.status == 201 || r.status == 409, "{}", r.text);
        self.key_for(tenant, roles).await
    }

    pub async fn key_for(&self, tenant: &str, roles: &[&str]) -> String {
        let roles = serde_json::to_string(roles).unwrap();
        let r = self
            .call(
                "POST",
                "/admin/keys",
                Some(ADMIN_KEY),
                Some(&format!(r#"{{"tenantId": "{tenant}", "roles": {roles}}}"#)),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["key"].as_str().unwrap().to_string()
    }

    pub async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the server (the kernel closes its store) and hands back its data directory.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        // SSE streams end with the kernel; the server waits for open connections.
        self.kernel.shutdown().await;
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        self._dir
    }

    /// Leases the one due delivery and reports its attempt with `outcome`, as an executor
    /// would.
    pub async fn report_one(&self, outcome: AttemptOutcome) {
        let mut leases = self
            .kernel
            .lease_deliveries(LeaseRequest {
                lease_owner: "test-executor".into(),
                lease_ttl_ms: 30_000,
                max_in_flight: 1,
            })
            .await
            .unwrap();
        let leased = tokio::time::timeout(std::time::Duration::from_secs(20), leases.next())
            .await
            .expect("a delivery in time")
            .unwrap()
            .unwrap();
        self.kernel
            .report_attempt(AttemptReport {
                delivery_id: leased.delivery.id,
                lease_owner: "test-executor".into(),
                attempt: leased.delivery.attempt,
                started_at_us: SystemClock.now_us(),
                duration_us: 1_000,
                outcome,
                retry_after_ms: None,
                http_status: Some(match outcome {
                    AttemptOutcome::Succeeded => 200,
                    AttemptOutcome::Retryable => 503,
                    AttemptOutcome::Permanent => 404,
                }),
                exit_code: None,
                error: None,
                response_excerpt: None,
            })
            .await
            .unwrap();
    }

    /// The store's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}
