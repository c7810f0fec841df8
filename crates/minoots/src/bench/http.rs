//! `minoots bench http`: durable creates through `POST /timers` over real HTTP, next to a
//! no-storage baseline endpoint measured in the same run.
//!
//! The baseline (`POST /baseline/timers`, mounted only in this benchmark's server) does
//! everything a create does except the kernel call: it authenticates the key, parses and
//! validates the body and answers 201 with the timer's JSON. The ratio of the two is the
//! cost of durability (group commit, fsync) and of the kernel.
//!
//! * saturation: `--concurrency` clients, each sending its next request as soon as the
//!   last one is answered, until `--creates` are done: creates/s and latency.
//! * open loop: requests sent at a fixed `--rate` for `--rate-seconds`, each on its own
//!   schedule whatever the answers do, latency measured from the moment it was due to be
//!   sent (so a stall shows as latency, not as fewer requests: no coordinated omission).
//!
//! Client and server share this machine's cores; nothing here asserts timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use minoots_control_plane::{ApiError, AppState, Bootstrap, ControlPlaneConfig, bootstrap};
use minoots_core::{Clock, SystemClock, TimerId, TimerRequest};
use minoots_kernel::KernelApi;
use serde_json::json;

use super::{bench_base, closed_loop, dist_us, emit, section_dir, start_kernel};

#[derive(clap::Args, Clone)]
pub struct HttpBench {
    /// Creates per endpoint in the saturation run.
    #[arg(long, default_value_t = 100_000)]
    creates: usize,
    /// Concurrent clients in the saturation run, and connections in the open-loop run.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Offered creates per second in the open-loop run.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// Seconds of the open-loop run.
    #[arg(long, default_value_t = 5)]
    rate_seconds: u32,
    /// Small sizes for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Where the store is created (default: a temporary directory). Measures that disk.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const ADMIN_KEY: &str = "mnt_bench_admin_key_0000000000000000000000000000";
const BODY: &str = r#"{"duration": "1h", "name": "bench", "labels": {"run": "http"}}"#;

async fn baseline(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = minoots_control_plane::auth::authenticate(&st, &headers).await?;
    let request = TimerRequest::from_json(&body).map_err(ApiError::invalid)?;
    let now = SystemClock.now_us();
    let spec = request
        .validate(caller.tenant_id(), now)
        .map_err(ApiError::invalid)?;
    let timer = spec.into_timer(TimerId::new_v7(), now);
    Ok(minoots_control_plane::timers::json_response(
        axum::http::StatusCode::CREATED,
        &timer.to_json(),
    ))
}

/// An error with its causes, innermost last ("connection refused" rather than "error
/// sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s.replace(|c: char| c.is_ascii_digit(), "#")
}

struct Target {
    client: reqwest::Client,
    url: String,
    key: String,
}

impl Target {
    async fn create(&self) -> Result<(), String> {
        let r = self
            .client
            .post(&self.url)
            .header("x-api-key", &self.key)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = r.status();
        let _ = r.bytes().await;
        if status.as_u16() == 201 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }
}

async fn saturation(
    t: Arc<Target>,
    n: usize,
    concurrency: usize,
    endpoint: &str,
) -> serde_json::Value {
    let r = closed_loop(n, concurrency, move |_| {
        let t = t.clone();
        async move { t.create().await.is_ok() }
    })
    .await;
    json!({"section": "http_creates", "mode": "saturation", "endpoint": endpoint, "creates": n,
           "concurrency": concurrency, "errors": r.errors, "creates_per_s": (n as f64 / r.secs).round(),
           "latency": dist_us(r.latency_us)})
}

async fn open_loop(
    t: Arc<Target>,
    rate: u32,
    seconds: u32,
    connections: usize,
    endpoint: &str,
) -> serde_json::Value {
    // At most `connections` requests in flight, as a load generator with a fixed number of
    // connections; a request waiting for one still counts from when it was due.
    let slots = Arc::new(tokio::sync::Semaphore::new(connections.max(1)));
    let total = rate as usize * seconds as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Result<(), String>)>();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let (t, tx, slots) = (t.clone(), tx.clone(), slots.clone());
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let r = t.create().await;
            let _ = tx.send((due.elapsed().as_micros() as i64, r));
        });
    }
    drop(tx);
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    let mut error_kinds = std::collections::BTreeMap::<String, usize>::new();
    while let Some((l, r)) = rx.recv().await {
        lat.push(l);
        if let Err(e) = r {
            errors += 1;
            if error_kinds.len() < 8 || error_kinds.contains_key(&e) {
                *error_kinds.entry(e).or_insert(0) += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    json!({"section": "http_creates", "mode": "open_loop", "endpoint": endpoint, "offered_per_s": rate,
           "connections": connections, "seconds": seconds, "errors": errors, "error_kinds": error_kinds, "achieved_per_s": (total as f64 / secs).round(),
           "latency_from_intended_send": dist_us(lat)})
}

/// Durable creates through the kernel's gRPC API (what a control plane in another process
/// does), from `concurrency` callers over one HTTP/2 connection.
async fn grpc_saturation(
    api: Arc<dyn KernelApi>,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(minoots_kernel::grpc::serve(
        api,
        listener,
        minoots_kernel::grpc::GrpcServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = Arc::new(
        minoots_kernel::grpc::GrpcKernelClient::connect_lazy(&url, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let request = TimerRequest::from_json(BODY.as_bytes()).expect("valid");
    let r = closed_loop(n, concurrency, move |_| {
        let (c, req) = (client.clone(), request.clone());
        async move { c.schedule_timer("bench", req).await.is_ok() }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    Ok(
        json!({"section": "http_creates", "mode": "saturation", "endpoint": "grpc", "creates": n,
              "concurrency": concurrency, "errors": r.errors, "creates_per_s": (n as f64 / r.secs).round(),
              "latency": dist_us(r.latency_us)}),
    )
}

pub async fn run(mut b: HttpBench) -> anyhow::Result<()> {
    if b.quick {
        b.creates = b.creates.min(2_000);
        b.rate = b.rate.min(1_000);
        b.rate_seconds = b.rate_seconds.min(1);
    }
    let (_tmp, base) = bench_base(b.dir.as_deref())?;
    let dir = section_dir(&base, "http")?;
    let kernel = start_kernel(&dir).await?;
    let api: Arc<dyn KernelApi> = kernel.clone();
    bootstrap(
        api.as_ref(),
        Bootstrap {
            admin_key: Some(ADMIN_KEY.into()),
            demo: false,
        },
    )
    .await?;
    api.create_tenant(minoots_kernel::NewTenant {
        id: "bench".into(),
        name: "bench".into(),
        tier: "unlimited".into(),
    })
    .await?;
    let state = AppState::new(
        api.clone(),
        ControlPlaneConfig::default(),
        Some(kernel.clone()),
    )?;
    let app = minoots_control_plane::router(state.clone()).merge(
        axum::Router::new()
            .route("/baseline/timers", axum::routing::post(baseline))
            .with_state(state),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = minoots_control_plane::listener::LimitedListener::new(
        listener,
        minoots_control_plane::config::DEFAULT_MAX_CONNECTIONS,
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(b.concurrency.max(1024))
        .build()?;
    // A key of the unlimited tier, made through the API like any client's.
    let made = client
        .post(format!("http://{addr}/admin/keys"))
        .header("x-api-key", ADMIN_KEY)
        .header("content-type", "application/json")
        .body(r#"{"tenantId": "bench", "roles": ["timers:write", "timers:read"]}"#)
        .send()
        .await?;
    let made: serde_json::Value = serde_json::from_slice(&made.bytes().await?)?;
    let key = made["key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no key: {made}"))?
        .to_string();
    let target = |path: &str| {
        Arc::new(Target {
            client: client.clone(),
            url: format!("http://{addr}{path}"),
            key: key.clone(),
        })
    };
    let durable = target("/timers");
    let base_t = target("/baseline/timers");

    // Warm-up: connections and caches.
    let _ = saturation(base_t.clone(), b.concurrency * 4, b.concurrency, "warmup").await;
    let sat_base = saturation(base_t.clone(), b.creates, b.concurrency, "baseline").await;
    emit(sat_base.clone());
    let sat_durable = saturation(durable.clone(), b.creates, b.concurrency, "durable").await;
    emit(sat_durable.clone());
    let ratio = sat_durable["creates_per_s"].as_f64().unwrap_or(0.0)
        / sat_base["creates_per_s"].as_f64().unwrap_or(1.0).max(1.0);
    emit(
        json!({"section": "http_creates", "mode": "ratio", "durable_over_baseline": (ratio * 1000.0).round() / 1000.0}),
    );
    emit(grpc_saturation(api.clone(), b.creates, b.concurrency).await?);
    emit(open_loop(base_t, b.rate, b.rate_seconds, b.concurrency, "baseline").await);
    emit(open_loop(durable, b.rate, b.rate_seconds, b.concurrency, "durable").await);
    let stats = kernel.store().stats().await?;
    emit(
        json!({"section": "http_creates", "mode": "check", "scheduled_timers": stats.scheduled_timers}),
    );
    server.abort();
    kernel.shutdown().await;
    Ok(())
}
