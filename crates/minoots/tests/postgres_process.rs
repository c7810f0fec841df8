//! `minoots serve --database-url` as real processes on a real PostgreSQL: timers are
//! created through REST and their webhooks arrive; a second kernel on the same database
//! is refused while the first runs; a `serve` SIGKILLed with a timer due comes back on
//! the same database and delivers it; and a `serve` whose database another kernel took
//! over (its lock's session ended) exits with an error instead of writing on, while the
//! new owner takes over its timers.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL`; each test uses a schema of its own, dropped at the
//! end. Without it every test prints "skipped: no database" and passes.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KillOnDrop, WAIT, free_port, get_json, start_process, wait_exit};
use tokio::sync::Notify;

const KEY: &str = "mnt_demo_key_free";
/// The first key of the kernel's advisory lock ("MNTK").
const KERNEL_LOCK_CLASS: i64 = 0x4d4e_544b;

fn database_url() -> Option<String> {
    std::env::var("MINOOTS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

macro_rules! or_skip {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => {
                println!("skipped: no database");
                return;
            }
        }
    };
}

/// A schema of the test's own, dropped with this value.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str) -> Self {
        Self {
            url: url.into(),
            name: format!("minoots_proc_{:016x}", fastrand::u64(..)),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let client = admin(&url).await;
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                })
        })
        .join();
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// A loopback webhook receiver counting deliveries per timer id.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<String>>,
    arrived: Notify,
}

impl Receiver {
    async fn start() -> (Arc<Self>, String) {
        let me = Arc::new(Self::default());
        let app = {
            let me = me.clone();
            axum::Router::new().route(
                "/hook",
                axum::routing::post(move |headers: axum::http::HeaderMap| {
                    let me = me.clone();
                    async move {
                        let id = headers["x-minoots-timer-id"].to_str().unwrap().to_string();
                        me.got.lock().unwrap().push(id);
                        me.arrived.notify_waiters();
                        "ok"
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, hook)
    }

    fn count(&self, id: &str) -> usize {
        self.got.lock().unwrap().iter().filter(|g| *g == id).count()
    }

    /// Waits until `id` arrived at least once.
    async fn until(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.count(id) == 0 {
            let wait = self.arrived.notified();
            if self.count(id) > 0 {
                break;
            }
            tokio::time::timeout_at(deadline, wait)
                .await
                .unwrap_or_else(|_| panic!("the webhook of timer {id} arrives"));
        }
    }
}

/// Starts `serve --demo` on the schema; returns it and its REST base URL.
fn start_serve(url: &str, schema: &Schema) -> (KillOnDrop, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let (child, _) = start_process(
        &[
            "serve",
            "--demo",
            "--database-url",
            url,
            "--database-schema",
            &schema.name,
            "--http-addr",
            &http,
            "--grpc-addr",
            &grpc,
        ],
        &[],
        "minoots ready on ",
    );
    (KillOnDrop(child), format!("http://{http}"))
}

async fn create(http: &reqwest::Client, base: &str, hook: &str, duration: &str) -> String {
    let body = serde_json::json!({
        "tenantId": "test", "name": "pg", "duration": duration,
        "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
    });
    let (status, timer) = common::call(
        http,
        reqwest::Method::POST,
        format!("{base}/timers"),
        KEY,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{timer}");
    timer["id"].as_str().unwrap().to_string()
}

/// The server process of the session holding the kernel lock of `schema`.
async fn lock_holder(client: &tokio_postgres::Client, schema: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_locks
              WHERE locktype = 'advisory' AND granted
                AND classid::bigint = $1
                AND objid::bigint = (hashtext($2)::bigint & 4294967295)
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&KERNEL_LOCK_CLASS, &schema],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_delivers_refuses_a_second_kernel_and_survives_a_kill() {
    let url = or_skip!(database_url());
    let schema = Schema::new(&url);
    let (receiver, hook) = Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (mut serve, base) = start_serve(&url, &schema);
    let first = create(&http, &base, &hook, "1s").await;
    receiver.until(&first).await;

    // A second kernel on the same database is refused and says why.
    let second = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(["kernel", "--database-url", &url, "--database-schema"])
        .arg(&schema.name)
        .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-addr", "127.0.0.1:0"])
        .env("MINOOTS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || second.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the second kernel exits with an error"
    );
    assert!(
        stderr.contains("another MINOOTS kernel") && stderr.contains("serve-"),
        "{stderr}"
    );

    // SIGKILLed with a timer due: a new serve on the same database delivers it.
    let due = create(&http, &base, &hook, "3s").await;
    serve.0.kill().unwrap();
    serve.0.wait().unwrap();
    let (_serve, base) = start_serve(&url, &schema);
    receiver.until(&due).await;
    let t = get_json(&http, &format!("{base}/timers/{first}"), KEY).await;
    assert_eq!(t["status"], "settled", "{t}");
    assert_eq!(receiver.count(&first), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_whose_database_was_taken_over_exits_and_the_new_owner_takes_over() {
    let url = or_skip!(database_url());
    let schema = Schema::new(&url);
    let client = admin(&url).await;
    let (receiver, hook) = Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (mut old, old_base) = start_serve(&url, &schema);
    // Due in an hour: the old serve has nothing to fire, so only its other writes (the
    // lease rescuer's, every second) can tell it that it lost the database.
    let later = create(&http, &old_base, &hook, "1h").await;
    // The old serve's lock session ends (a network cut, say) while it runs on; a new
    // serve takes the database before the old one takes its lock again (tried again if
    // the old one was quicker).
    let mut new = None;
    for _ in 0..20 {
        let pid = lock_holder(&client, &schema.name)
            .await
            .expect("a kernel holds the lock");
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock_holder(&client, &schema.name).await == Some(pid) {
            assert!(Instant::now() < deadline, "the lock session ends");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = std::panic::catch_unwind(|| start_serve(&url, &schema));
        if let Ok(started) = started {
            new = Some(started);
            break;
        }
    }
    let (_new, new_base) = new.expect("a new serve takes the database");

    // The old serve's writes are refused: it stops with an error rather than run on.
    let (old_exit, old) = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut old.0, WAIT);
        (status, old)
    })
    .await
    .unwrap();
    drop(old);
    assert!(
        !old_exit.success(),
        "the superseded serve exits with an error"
    );
    // The new owner has the old one's timers and writes: it cancels one, and delivers a
    // new one once.
    let (status, cancelled) = common::call(
        &http,
        reqwest::Method::DELETE,
        format!("{new_base}/timers/{later}"),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let due = create(&http, &new_base, &hook, "1s").await;
    receiver.until(&due).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let t = get_json(&http, &format!("{new_base}/timers/{due}"), KEY).await;
        if t["status"] == "settled" {
            break;
        }
        assert!(Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.count(&due), 1);
}
