//! Schedules over real HTTP on loopback: the preview endpoint gives the contract's DST
//! vectors, validates a spec as a create will (field-named 400s, the tier's shortest
//! interval), and reports the compiled-in time-zone database.

mod common;
use common::*;

use minoots_control_plane::ControlPlaneConfig;
use serde_json::Value;

/// `(at, dst)` of each run of a preview of `body` from `from`.
async fn preview(
    s: &Server,
    key: &str,
    from: &str,
    count: u32,
    body: &str,
) -> Vec<(String, Option<String>)> {
    let r = s
        .call(
            "POST",
            &format!("/schedules/preview?from={from}&count={count}"),
            Some(key),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["tzdbVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("20")),
        "{}",
        r.text
    );
    r.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["at"].as_str().unwrap().to_string(),
                run["dst"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn at(list: &[(String, Option<String>)]) -> Vec<&str> {
    list.iter().map(|(a, _)| a.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_gives_the_dst_vectors_of_the_contract() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s.tenant_with_key("acme", "team", &["timers:read"]).await;
    let ny = |cron: &str| format!(r#"{{"cron": "{cron}", "timezone": "America/New_York"}}"#);

    let gap = preview(&s, &key, "2026-03-07T12:00:00Z", 2, &ny("0 30 2 * * *")).await;
    assert_eq!(at(&gap), ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]);
    assert_eq!(gap[0].1.as_deref(), Some("gapShifted"));
    assert_eq!(gap[1].1, None);

    let fold = preview(&s, &key, "2026-10-31T12:00:00Z", 3, &ny("0 30 1 * * *")).await;
    assert_eq!(
        at(&fold),
        [
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
            "2026-11-03T06:30:00Z"
        ]
    );

    let steps = preview(&s, &key, "2026-11-01T05:00:00Z", 5, &ny("0 */30 * * * *")).await;
    assert_eq!(
        at(&steps),
        [
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z"
        ]
    );

    let hourly = preview(&s, &key, "2026-03-08T05:30:00Z", 3, &ny("0 10 * * * *")).await;
    assert_eq!(
        at(&hourly),
        [
            "2026-03-08T06:10:00Z",
            "2026-03-08T07:10:00Z",
            "2026-03-08T08:10:00Z"
        ]
    );

    let berlin = r#"{"cron": "0 30 2 * * *", "timezone": "Europe/Berlin"}"#;
    let spring = preview(&s, &key, "2026-03-29T00:00:00Z", 1, berlin).await;
    assert_eq!(
        spring,
        [(
            "2026-03-29T01:00:00Z".to_string(),
            Some("gapShifted".to_string())
        )]
    );
    let autumn = preview(&s, &key, "2026-10-25T00:00:00Z", 2, berlin).await;
    assert_eq!(
        at(&autumn),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );

    let lh = |cron: &str| format!(r#"{{"cron": "{cron}", "timezone": "Australia/Lord_Howe"}}"#);
    let lh_gap = preview(&s, &key, "2026-10-03T00:00:00Z", 1, &lh("0 15 2 * * *")).await;
    assert_eq!(
        lh_gap,
        [(
            "2026-10-03T15:30:00Z".to_string(),
            Some("gapShifted".to_string())
        )]
    );
    let lh_fold = preview(&s, &key, "2026-04-04T00:00:00Z", 2, &lh("0 45 1 * * *")).await;
    assert_eq!(
        at(&lh_fold),
        ["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"]
    );

    let cairo = preview(
        &s,
        &key,
        "2026-04-23T00:00:00Z",
        2,
        r#"{"cron": "0 0 0 * * *", "timezone": "Africa/Cairo"}"#,
    )
    .await;
    assert_eq!(
        cairo[0],
        (
            "2026-04-23T22:00:00Z".to_string(),
            Some("gapShifted".to_string())
        )
    );

    let every = preview(
        &s,
        &key,
        "2026-03-07T00:00:00Z",
        3,
        r#"{"every": "24h", "phase": "7h30m", "timezone": "America/New_York"}"#,
    )
    .await;
    assert_eq!(
        at(&every),
        [
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-09T07:30:00Z"
        ]
    );

    // The local time carries the offset of that moment.
    let r = s
        .call(
            "POST",
            "/schedules/preview?from=2026-03-07T12:00:00Z&count=1",
            Some(&key),
            Some(&ny("0 30 2 * * *")),
        )
        .await;
    assert_eq!(r.body["runs"][0]["local"], "2026-03-08T03:00:00-04:00");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_within_its_bound_and_stays_put() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s.tenant_with_key("acme", "team", &["timers:read"]).await;
    let body = r#"{"cron": "0 * * * * *", "jitter": "20s"}"#;
    let path = "/schedules/preview?from=2026-12-10T00:00:00Z&count=30";
    let a = s.call("POST", path, Some(&key), Some(body)).await;
    let b = s.call("POST", path, Some(&key), Some(body)).await;
    assert_eq!(a.body, b.body, "the same slots get the same jitter");
    let runs = a.body["runs"].as_array().unwrap();
    let mut delayed = 0;
    for run in runs {
        let slot = minoots_core::timefmt::parse_rfc3339_us(run["at"].as_str().unwrap()).unwrap();
        let fire =
            minoots_core::timefmt::parse_rfc3339_us(run["fireAt"].as_str().unwrap()).unwrap();
        assert!((0..20_000_000).contains(&(fire - slot)), "{run}");
        delayed += usize::from(fire > slot);
    }
    assert!(delayed > 25, "{delayed} of 30 delayed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_get_400_naming_the_field() {
    let s = start(ControlPlaneConfig::default()).await;
    let team = s.tenant_with_key("acme", "team", &["timers:read"]).await;
    let free = s.tenant_with_key("cheap", "free", &["timers:read"]).await;
    let cases: [(&str, &str, &str); 9] = [
        (&team, r#"{"cron": "0 61 * * * *"}"#, "cron"),
        (
            &team,
            r#"{"cron": "0 0 0 * * *", "timezone": "Mars/Olympus"}"#,
            "timezone",
        ),
        (&team, r#"{"cron": "0 0 0 30 2 *"}"#, "cron"),
        (&team, r#"{"every": "1500ms"}"#, "every"),
        (&team, r#"{"every": "1h", "phase": "2h"}"#, "phase"),
        (
            &team,
            r#"{"cron": "@daily", "overlap": "often"}"#,
            "overlap",
        ),
        (
            &team,
            r#"{"cron": "@daily", "sometimes": true}"#,
            "sometimes",
        ),
        // The free tier's shortest interval is 60 s.
        (&free, r#"{"every": "30s"}"#, "every"),
        (&free, r#"{"cron": "*/10 * * * * *"}"#, "cron"),
    ];
    for (key, body, field) in cases {
        let r = s
            .call("POST", "/schedules/preview", Some(key), Some(body))
            .await;
        r.assert_problem(400, Some(field));
    }
    for (query, field) in [
        ("count=0", "count"),
        ("count=1001", "count"),
        ("from=tomorrow", "from"),
        ("to=x", "to"),
    ] {
        let r = s
            .call(
                "POST",
                &format!("/schedules/preview?{query}"),
                Some(&team),
                Some(r#"{"cron": "@daily"}"#),
            )
            .await;
        r.assert_problem(400, Some(field));
    }
    let r = s
        .call(
            "POST",
            "/schedules/preview",
            Some(&free),
            Some(r#"{"every": "60s"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let usage = s.call("GET", "/usage", Some(&free), None).await;
    assert_eq!(
        usage.body["limits"]["minScheduleIntervalMs"],
        Value::from(60_000)
    );
    assert_eq!(usage.body["limits"]["schedules"], Value::from(5));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_created_listed_and_records_each_slot() {
    use minoots_core::timefmt::parse_rfc3339_us;
    use minoots_core::{Clock, ManualClock};
    let t0 = parse_rfc3339_us("2026-12-10T00:00:01Z").unwrap();
    let clock = ManualClock::new(t0);
    let s = start_with_clock(ControlPlaneConfig::default(), clock.clone()).await;
    let key = s
        .tenant_with_key("acme", "team", &["timers:read", "timers:write"])
        .await;
    let other = s
        .tenant_with_key("other", "team", &["timers:read", "timers:write"])
        .await;
    let r = s
        .call(
            "POST",
            "/schedules",
            Some(&key),
            Some(r#"{"cron": "CRON_TZ=Europe/Paris 0 * * * * *", "name": "tick"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/schedules/{id}").as_str())
    );
    assert_eq!(r.body["timezone"], "Europe/Paris");
    assert_eq!(r.body["cron"], "0 * * * * *");
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["overlap"], "skip");
    assert_eq!(r.body["nextRunAt"], "2026-12-10T00:01:00Z");
    let got = s
        .call("GET", &format!("/schedules/{id}"), Some(&key), None)
        .await;
    assert_eq!(got.body, r.body);
    s.call("GET", &format!("/schedules/{id}"), Some(&other), None)
        .await
        .assert_problem(404, None);
    let list = s.call("GET", "/schedules", Some(&key), None).await;
    assert_eq!(list.body["schedules"].as_array().unwrap().len(), 1);
    assert!(
        s.call("GET", "/schedules", Some(&other), None).await.body["schedules"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The first slot: its run fires at 00:01:00; one record, fired.
    clock.set_us(t0 + 59_000_000 - 1_000_000);
    clock.set_us(t0 + 59_000_000);
    let runs_path = format!("/schedules/{id}/runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let runs = loop {
        let runs = s.call("GET", &runs_path, Some(&key), None).await;
        if runs.body["runs"].as_array().is_some_and(|r| !r.is_empty()) {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a run record: {}",
            runs.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let run = &runs.body["runs"][0];
    assert_eq!(run["scheduledAt"], "2026-12-10T00:01:00Z");
    assert_eq!(run["status"], "fired");
    let timer = s
        .call(
            "GET",
            &format!("/timers/{}", run["timerId"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(timer.body["scheduleId"], id.as_str());
    assert_eq!(timer.body["scheduledAt"], "2026-12-10T00:01:00Z");
    assert_eq!(timer.body["name"], "tick");
    s.call("GET", &runs_path, Some(&other), None)
        .await
        .assert_problem(404, None);
    let preview = s
        .call(
            "GET",
            &format!("/schedules/{id}/preview?count=2"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        preview.body["runs"][0]["at"], "2026-12-10T00:02:00Z",
        "{}",
        preview.text
    );
    assert_eq!(clock.now_us(), t0 + 59_000_000);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_quotas_and_bad_specs_are_refused_and_store_nothing() {
    let s = start(ControlPlaneConfig::default()).await;
    let free = s
        .tenant_with_key("cheap", "free", &["timers:read", "timers:write"])
        .await;
    for _ in 0..5 {
        let r = s
            .call(
                "POST",
                "/schedules",
                Some(&free),
                Some(r#"{"cron": "@daily"}"#),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = s
        .call(
            "POST",
            "/schedules",
            Some(&free),
            Some(r#"{"cron": "@daily"}"#),
        )
        .await;
    r.assert_problem(429, None);
    assert_eq!(r.body["quota"], "schedules");
    assert_eq!(r.body["limit"], 5);
    for (body, field) in [
        (r#"{"every": "10s"}"#, "every"),
        (r#"{"cron": "0 0 25 * * *"}"#, "cron"),
        (
            r#"{"cron": "@daily", "timezone": "Nowhere/Land"}"#,
            "timezone",
        ),
        (
            r#"{"cron": "@daily", "actionBundle": {"actions": [{"type": "webhook", "url": "ftp://x"}]}}"#,
            "actionBundle.actions[0].url",
        ),
    ] {
        s.call("POST", "/schedules", Some(&free), Some(body))
            .await
            .assert_problem(400, Some(field));
    }
    let list = s
        .call("GET", "/schedules?limit=10", Some(&free), None)
        .await;
    assert_eq!(list.body["schedules"].as_array().unwrap().len(), 5);
    s.call("GET", "/schedules/not-an-id", Some(&free), None)
        .await
        .assert_problem(404, None);
    s.call("GET", "/schedules?cursor=x", Some(&free), None)
        .await
        .assert_problem(400, Some("cursor"));
    s.stop().await;
}
