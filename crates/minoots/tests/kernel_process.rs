//! End to end with real `minoots kernel` processes: acknowledged timers survive SIGKILL,
//! and SIGTERM stops the kernel cleanly.

use std::process::Command;
use std::time::Duration;

use minoots_core::{Clock, EventType, SystemClock, TimerId, TimerRequest, TimerStatus};
use minoots_kernel::KernelApi;
use minoots_kernel::grpc::GrpcKernelClient;
use minoots_store::EventQuery;
use tokio_stream::StreamExt;

mod common;
use common::{WAIT, free_port, start_kernel};

fn req(json: &str) -> TimerRequest {
    TimerRequest::from_json(json.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_timers_survive_sigkill_and_fire_once_never_early() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start_kernel(dir.path());
    let client = GrpcKernelClient::connect_lazy(&url, None).unwrap();

    // 300 timers due between 0.2 s and 3 s from now, created concurrently; the kill lands
    // while some are firing, some are committed but not yet due, and creates are in flight.
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let ms = 200 + (i * 7_919) % 2_800;
            c.schedule_timer(
                "acme",
                req(&format!(
                    r#"{{"duration": {ms}, "labels": {{"run": "kill"}}}}"#
                )),
            )
            .await
        }));
    }
    let mut acked: Vec<(TimerId, i64)> = Vec::new();
    for t in tasks {
        let out = t.await.unwrap().expect("schedule acknowledged");
        acked.push((out.timer.id, out.timer.fire_at_us));
    }
    // Let firing begin, then kill without warning.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Some more creates race with the kill: only the acknowledged ones are promised.
    let late_client = client.clone();
    let racing = tokio::spawn(async move {
        let mut ok = Vec::new();
        for _ in 0..50 {
            match late_client
                .schedule_timer("acme", req(r#"{"duration": "1s"}"#))
                .await
            {
                Ok(o) => ok.push((o.timer.id, o.timer.fire_at_us)),
                Err(_) => break,
            }
        }
        ok
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    acked.extend(racing.await.unwrap());
    let killed_at = SystemClock.now_us();

    let (mut child, url) = start_kernel(dir.path());
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
    let mut count = std::collections::HashMap::<TimerId, usize>::new();
    let want: std::collections::HashSet<TimerId> = acked.iter().map(|(id, _)| *id).collect();
    while !want.iter().all(|id| count.contains_key(id)) {
        let e = tokio::time::timeout(WAIT, fired.next())
            .await
            .expect("every acknowledged timer fires")
            .unwrap()
            .unwrap();
        *count.entry(e.timer_id).or_default() += 1;
    }
    let before_kill = acked.iter().filter(|(_, at)| *at < killed_at).count();
    assert!(
        before_kill > 0 && before_kill < acked.len(),
        "the kill landed mid-run ({before_kill} of {} due before it)",
        acked.len()
    );
    for (id, fire_at) in &acked {
        let t = client.get_timer("acme", *id).await.unwrap();
        assert_eq!(t.status, TimerStatus::Settled);
        assert!(t.fired_at_us.unwrap() >= *fire_at, "timer {id} fired early");
        assert_eq!(count[id], 1, "timer {id} fired once");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_kernel_with_exit_code_zero_and_releases_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = start_kernel(dir.path());
    let client = GrpcKernelClient::connect_lazy(&url, None).unwrap();
    let t = client
        .schedule_timer("acme", req(r#"{"duration": "1h"}"#))
        .await
        .unwrap()
        .timer;
    common::terminate(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    // The data directory is free again and holds the timer.
    let (mut again, url) = start_kernel(dir.path());
    let client = GrpcKernelClient::connect_lazy(&url, None).unwrap();
    assert_eq!(
        client.get_timer("acme", t.id).await.unwrap().status,
        TimerStatus::Scheduled
    );
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn a_second_kernel_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = start_kernel(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(["kernel", "--data-dir"])
        .arg(dir.path())
        .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another MINOOTS process"),
        "{stderr}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}
