//! The REST API when the store's disk refuses writes: creates and cancels answer 503 with
//! `Retry-After` and a problem sentence naming the reason, reads answer 200, and writes
//! succeed again once the disk recovers.

mod common;
use common::{Reply, start};

use minoots_control_plane::ControlPlaneConfig;

const BIG_METADATA_BYTES: usize = 12_000;
/// Most creates before the capped store must be full.
const MAX_FILL: usize = 2_000;

fn assert_refused(r: &Reply, reason: &str) {
    r.assert_problem(503, None);
    assert_eq!(
        r.body["detail"],
        format!("the store cannot write: {reason}; retry later"),
        "{}",
        r.text
    );
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After on a 503")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "{retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answer_503_while_the_disk_refuses_them_reads_200_and_both_recover() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let key = Some(key.as_str());
    let small = r#"{"duration": "1h", "name": "kept"}"#;
    let r = s.call("POST", "/timers", key, Some(small)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let kept = r.body["id"].as_str().unwrap().to_string();

    // Full: the store is capped at its size, and creates fill it.
    s.sqlite.set_max_db_pages(Some(1)).await.unwrap();
    let big = format!(
        r#"{{"duration": "1h", "metadata": {{"pad": "{}"}}}}"#,
        "x".repeat(BIG_METADATA_BYTES)
    );
    let mut refused = None;
    for _ in 0..MAX_FILL {
        let r = s.call("POST", "/timers", key, Some(&big)).await;
        if r.status != 201 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the capped store fills up");
    assert_refused(&refused, "disk full");
    let listed = s.timer_count(key).await;
    let r = s.call("GET", &format!("/timers/{kept}"), key, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "scheduled");
    let r = s.call("POST", "/timers", key, Some(&big)).await;
    assert_refused(&r, "disk full");
    assert_eq!(
        s.timer_count(key).await,
        listed,
        "a refused create stored nothing"
    );

    // Read-only: every write is refused, cancels too.
    s.sqlite.set_max_db_pages(None).await.unwrap();
    s.sqlite.set_writer_read_only(true).await.unwrap();
    let r = s
        .call("DELETE", &format!("/timers/{kept}"), key, None)
        .await;
    assert_refused(&r, "the disk is read-only");
    let r = s.call("POST", "/timers", key, Some(small)).await;
    assert_refused(&r, "the disk is read-only");
    assert_eq!(s.timer_count(key).await, listed);
    let r = s.call("GET", &format!("/timers/{kept}"), key, None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Recovery.
    s.sqlite.set_writer_read_only(false).await.unwrap();
    let r = s.call("POST", "/timers", key, Some(&big)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s
        .call("DELETE", &format!("/timers/{kept}"), key, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(s.sqlite.integrity_check().await.unwrap(), "ok");
    s.stop().await;
}
