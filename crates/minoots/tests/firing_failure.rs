//! End to end with a real `minoots kernel` process whose firing thread dies: `/readyz`
//! turns 503 with the reason, the process exits with an error, and a restarted kernel
//! fires the timer the dead one had taken in hand.
//!
//! The panic is injected through `MINOOTS_TEST_PANIC_FIRING_AFTER`, which only debug
//! builds read, so these tests only exist in debug builds.
#![cfg(debug_assertions)]

use std::time::Duration;

use minoots_core::{EventType, TimerRequest, TimerStatus};
use minoots_kernel::KernelApi;
use minoots_kernel::grpc::GrpcKernelClient;
use minoots_store::EventQuery;
use tokio_stream::StreamExt;

mod common;
use common::{KillOnDrop, WAIT, free_port, start_kernel, start_process, wait_exit};

fn req(json: &str) -> TimerRequest {
    TimerRequest::from_json(json.as_bytes()).unwrap()
}

/// Polls `/readyz` until it answers something other than 200; returns status and body.
async fn until_not_ready(http: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let started = std::time::Instant::now();
    loop {
        let resp = http.get(url).send().await.expect("/readyz answers");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("/readyz answers");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("/readyz answers JSON");
        if status != 200 {
            return (status, body);
        }
        assert!(started.elapsed() < WAIT, "/readyz still says ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_whose_firing_thread_dies_says_so_at_readyz_and_exits_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = format!("127.0.0.1:{}", free_port());
    let health = format!("127.0.0.1:{}", free_port());
    let data_dir = dir.path().to_str().unwrap();
    let (child, line) = start_process(
        &[
            "kernel",
            "--data-dir",
            data_dir,
            "--grpc-addr",
            &grpc,
            "--http-addr",
            &health,
        ],
        &[("MINOOTS_TEST_PANIC_FIRING_AFTER", "1")],
        "minoots kernel ready on ",
    );
    let mut child = KillOnDrop(child);
    assert!(line.ends_with(&grpc), "{line}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let readyz = format!("http://{health}/readyz");
    let ready = http.get(&readyz).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let client = GrpcKernelClient::connect_lazy(&format!("http://{grpc}"), None).unwrap();
    // An open call (like an orchestrator's lease session) keeps the stopping process
    // answering for a while (up to 10 s), so the failed `/readyz` can be read.
    let held = client
        .stream_events(EventQuery {
            after_seq: 0,
            tenant_id: Some("acme".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = client
        .schedule_timer("acme", req(r#"{"duration": "200ms"}"#))
        .await
        .unwrap()
        .timer;

    let (status, body) = until_not_ready(&http, &readyz).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("firing thread") && reason.contains("injected fault"),
        "the reason names the part and its panic: {body}"
    );

    drop(held);
    drop(client);
    let exit = wait_exit(&mut child.0, WAIT);
    assert!(
        !exit.success(),
        "a failed kernel exits with an error: {exit:?}"
    );
    assert_eq!(exit.code(), Some(1), "{exit:?}");

    // What a supervisor does: a new process on the same data fires the timer, once.
    let (again, url) = start_kernel(dir.path());
    let _again = KillOnDrop(again);
    let client = GrpcKernelClient::connect_lazy(&url, None).unwrap();
    let mut fired = client
        .stream_events(EventQuery {
            after_seq: 0,
            tenant_id: Some("acme".into()),
            types: vec![EventType::TimerFired],
            ..Default::default()
        })
        .await
        .unwrap();
    let e = tokio::time::timeout(WAIT, fired.next())
        .await
        .expect("the timer fires after the restart")
        .unwrap()
        .unwrap();
    assert_eq!(e.timer_id, t.id);
    let stored = client.get_timer("acme", t.id).await.unwrap();
    assert_ne!(stored.status, TimerStatus::Scheduled);
    assert!(stored.fired_at_us.unwrap() >= t.fire_at_us, "never early");
}
