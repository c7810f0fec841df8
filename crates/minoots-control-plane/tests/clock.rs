//! The REST API reads time from the clock it is given: its time rules (a tier's horizon, a
//! rotated secret's grace) hold on a manual clock set a month ahead of the system clock.

mod common;

use std::sync::Arc;

use common::start_with_clock;
use minoots_control_plane::ControlPlaneConfig;
use minoots_core::timefmt::{format_us, parse_rfc3339_us};
use minoots_core::{Clock, ManualClock, SystemClock};

const DEMO_KEY: &str = "mnt_demo_key_free";
const DAY_US: i64 = 86_400_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_rules_follow_the_injected_clock() {
    // A month ahead: by the system clock, every fire time below is beyond the free tier's
    // 7-day horizon; by the injected clock, only the second is.
    let now = SystemClock.now_us() + 30 * DAY_US;
    let clock = ManualClock::new(now);
    let config = ControlPlaneConfig {
        demo: true,
        ..ControlPlaneConfig::default()
    };
    let s = start_with_clock(config, clock.clone() as Arc<dyn Clock>).await;
    let timer = |at_us: i64| format!(r#"{{"fireAt": "{}"}}"#, format_us(at_us));

    let within = s
        .call(
            "POST",
            "/timers",
            Some(DEMO_KEY),
            Some(&timer(now + DAY_US)),
        )
        .await;
    assert_eq!(within.status, 201, "{}", within.text);
    let beyond = s
        .call(
            "POST",
            "/timers",
            Some(DEMO_KEY),
            Some(&timer(now + 8 * DAY_US)),
        )
        .await;
    beyond.assert_problem(400, Some("fireAt"));

    let rotated = s
        .call("POST", "/webhook-secret/rotate", Some(DEMO_KEY), None)
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let until =
        parse_rfc3339_us(rotated.body["previousSecretValidUntil"].as_str().unwrap()).unwrap();
    assert_eq!(
        until,
        now + DAY_US,
        "the grace period counts from the injected now"
    );
    s.stop().await;
}
