//! `minoots serve --demo` as a real process: the original request (with a loopback webhook
//! URL) creates a timer through REST, the webhook arrives signed with the tenant's secret,
//! the timer is `settled` through REST, and SIGTERM stops the process with exit code 0.
//! And `--max-per-host` reaches `serve`'s executor, and the process runs without
//! transparent huge pages unless `MIMALLOC_ALLOW_THP` asks for them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::{
    KillOnDrop, WAIT, call, create_timer, free_port, get_json, start_serve, terminate, until_event,
};
use tokio::sync::Notify;

#[derive(Default)]
struct Sink {
    got: Mutex<Vec<(HeaderMap, Bytes)>>,
    arrived: Notify,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_runs_the_original_request_end_to_end() {
    let sink = Arc::new(Sink::default());
    let app = {
        let sink = sink.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let sink = sink.clone();
                async move {
                    sink.got.lock().unwrap().push((headers, body));
                    sink.arrived.notify_one();
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(["serve", "--demo", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
        .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
        .env("MINOOTS_LOG", "warn")
        .env_remove("MINOOTS_ADMIN_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minoots serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("minoots ready on "))
    {
        lines.push(rx.recv_timeout(WAIT).expect("serve became ready"));
    }
    assert!(lines.iter().any(|l| l.contains("DEMO MODE")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("admin key")),
        "a first start without MINOOTS_ADMIN_KEY prints one: {lines:?}"
    );

    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // The original request, with a loopback URL and a shorter duration.
    let body = format!(
        r#"{{"tenantId": "test", "requestedBy": "user", "name": "webhook-test", "duration": "1s",
            "actionBundle": {{"actions": [{{"type": "webhook", "url": "{hook}"}}]}}}}"#
    );
    let created = http
        .post(format!("{base}/timers"))
        .header("X-API-Key", "mnt_demo_key_free")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let timer: serde_json::Value = serde_json::from_slice(&created.bytes().await.unwrap()).unwrap();
    let id = timer["id"].as_str().unwrap().to_string();

    tokio::time::timeout(WAIT, sink.arrived.notified())
        .await
        .expect("the webhook arrives");
    let secret = get_json(
        &http,
        &format!("{base}/webhook-secret"),
        "mnt_demo_key_free",
    )
    .await;
    {
        let got = sink.got.lock().unwrap();
        let (headers, body) = &got[0];
        assert_eq!(headers["x-minoots-timer-id"], id.as_str());
        standardwebhooks::Webhook::new(secret["secret"].as_str().unwrap())
            .unwrap()
            .verify(body, headers)
            .expect("the webhook is signed with the tenant's secret");
    }
    // The settled event arrives on the tenant's SSE stream (replayed if it came first).
    let mut events = http
        .get(format!("{base}/events?timerId={id}&types=timer.settled"))
        .header("X-API-Key", "mnt_demo_key_free")
        .send()
        .await
        .unwrap();
    until_event(&mut events, "timer.settled").await;
    drop(events);
    let t = get_json(&http, &format!("{base}/timers/{id}"), "mnt_demo_key_free").await;
    let status = t["status"].as_str().unwrap();
    assert_eq!(status, "settled");

    terminate(&child);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// `--max-per-host 2` reaches `serve`'s executor: a burst of 12 webhooks to one host that
/// never answers gets 2 requests there at once, 8 wait for the host, and the rest are
/// handed back for later (`minoots_orchestrator_deferred_total`). With the default of 32
/// all 12 would be sent and none handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_per_host_bounds_the_requests_to_one_host() {
    const ADMIN_KEY: &str = "mnt_per_host_test_admin_key_0123456789abcdef";
    let arrived = Arc::new(AtomicUsize::new(0));
    let app = {
        let arrived = arrived.clone();
        axum::Router::new().route(
            "/hold",
            axum::routing::post(move || {
                let arrived = arrived.clone();
                async move {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<&'static str>().await
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hold", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let flags = ["--allow-private-targets", "--max-per-host", "2"];
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &flags,
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY)],
    );
    let _child = KillOnDrop(child);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let tenant = serde_json::json!({"id": "burst", "name": "burst", "tier": "unlimited"});
    let (s, t) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/tenants"),
        ADMIN_KEY,
        Some(tenant),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let key = serde_json::json!({"tenantId": "burst", "name": "burst", "roles": ["timers:read", "timers:write"]});
    let (s, k) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/keys"),
        ADMIN_KEY,
        Some(key),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();

    // All twelve due at the same moment, shortly after they are created.
    let fire_at = minoots_core::timefmt::format_us(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
            + 2_000_000,
    );
    for i in 0..12 {
        let body = serde_json::json!({
            "name": format!("burst-{i}"),
            "fireAt": fire_at,
            "actionBundle": {"actions": [{"type": "webhook", "url": hook}]},
        });
        create_timer(&http, &base, &key, body).await;
    }
    common::pg::until_metric(
        &http,
        &base,
        "minoots_orchestrator_deferred_total",
        |deferred| deferred > 0.0,
        WAIT,
    )
    .await;
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "requests at once against the one host"
    );
}

/// The kernel's view of a process's transparent huge pages (`THP_enabled` in
/// `/proc/<pid>/status`: 1 may use them, 0 may not); `None` on a kernel without that line.
fn huge_pages_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
}

/// `serve` turns transparent huge pages off for itself by default (they cost webhook
/// lateness in a fresh process and memory at rest), and leaves them on when the operator
/// sets `MIMALLOC_ALLOW_THP=1`.
#[test]
fn serve_runs_without_transparent_huge_pages_unless_asked() {
    if huge_pages_enabled(std::process::id()).is_none() {
        eprintln!("skipped: this kernel does not report THP_enabled in /proc/<pid>/status");
        return;
    }
    // The children inherit this process's setting: allow huge pages here, so that a child
    // without them has turned them off itself, whatever the test runner had.
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this test process.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) },
        0
    );
    assert_eq!(huge_pages_enabled(std::process::id()).as_deref(), Some("1"));
    for (env, expected) in [(None, "0"), (Some("1"), "1"), (Some("0"), "0")] {
        if env.is_none() && std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            eprintln!("the default case skipped: MIMALLOC_ALLOW_THP is set for the tests");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut vars = vec![];
        if let Some(v) = env {
            vars.push(("MIMALLOC_ALLOW_THP", v));
        }
        let (child, _) = start_serve(
            &dir.path().join("data"),
            free_port(),
            free_port(),
            &[],
            &vars,
        );
        let child = KillOnDrop(child);
        assert_eq!(
            huge_pages_enabled(child.0.id()).as_deref(),
            Some(expected),
            "MIMALLOC_ALLOW_THP={env:?}"
        );
    }
}
