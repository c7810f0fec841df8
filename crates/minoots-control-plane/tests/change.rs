//! `PATCH /timers/{id}` and `POST /timers/{id}/fire` against a real server: a change
//! applies at the version read (body or `If-Match`) and bumps it, a stale version or a
//! timer no longer scheduled is a 409 that says why, bad input is a 400 naming the field,
//! another tenant's timer is a 404, and nothing refused changes the timer.

mod common;
use common::*;

use minoots_control_plane::ControlPlaneConfig;
use minoots_core::timefmt::format_us;
use serde_json::Value;

/// Creates a timer for `key` and returns its JSON.
async fn create(s: &Server, key: &str, body: &str) -> Value {
    let r = s.call("POST", "/timers", Some(key), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

fn path(t: &Value) -> String {
    format!("/timers/{}", t["id"].as_str().unwrap())
}

async fn get(s: &Server, key: &str, t: &Value) -> Value {
    let r = s.call("GET", &path(t), Some(key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_applies_at_the_version_read_and_bumps_it() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "pro", &["timers:read", "timers:write"])
        .await;
    let t = create(&s, &k, r#"{"duration": "1h", "labels": {"team": "ops"}}"#).await;
    let fire_at = format_us(
        minoots_core::timefmt::parse_rfc3339_us(t["fireAt"].as_str().unwrap()).unwrap()
            + 3_600_000_000,
    );
    let body =
        format!(r#"{{"version": 1, "fireAt": "{fire_at}", "labels": {{"team": "billing"}}}}"#);
    let r = s.call("PATCH", &path(&t), Some(&k), Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["fireAt"], fire_at.as_str());
    assert_eq!(
        r.body["durationMs"],
        Value::Null,
        "a fireAt replaces the duration"
    );
    assert_eq!(r.body["labels"], serde_json::json!({"team": "billing"}));
    assert_eq!(r.body["status"], "scheduled");
    assert_eq!(get(&s, &k, &t).await, r.body);
    // The version may come in If-Match instead.
    let r = s
        .call_with(
            "PATCH",
            &path(&t),
            Some(&k),
            Some(r#"{"metadata": {"order": 7}}"#),
            &[("If-Match", "\"2\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["version"].as_i64(), &r.body["metadata"]["order"]),
        (Some(3), &Value::from(7))
    );
    // A stale version: 409 saying which version the timer is at; nothing changes.
    let before = get(&s, &k, &t).await;
    let r = s
        .call(
            "PATCH",
            &path(&t),
            Some(&k),
            Some(r#"{"version": 2, "duration": "5m"}"#),
        )
        .await;
    r.assert_problem(409, None);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("version 3, not 2"), "{detail}");
    assert_eq!(get(&s, &k, &t).await, before);
    // An empty If-Match names no version: the body's counts.
    let r = s
        .call_with(
            "PATCH",
            &path(&t),
            Some(&k),
            Some(r#"{"version": 3, "labels": {}}"#),
            &[("If-Match", "")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version"], 4);
    // Fired: 409 with the timer's status, for a change as for a second fire.
    let r = s
        .call("POST", &format!("{}/fire", path(&t)), Some(&k), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "settled", "no actions: settled on fire");
    assert!(r.body["firedAt"].is_string(), "{}", r.text);
    assert!(
        r.body["firedLateMs"]
            .as_f64()
            .is_some_and(|l| (0.0..2_000.0).contains(&l)),
        "{}",
        r.text
    );
    for (method, suffix, body) in [
        ("PATCH", "", Some(r#"{"version": 5, "duration": "5m"}"#)),
        ("POST", "/fire", None),
    ] {
        let r = s
            .call(method, &format!("{}{suffix}", path(&t)), Some(&k), body)
            .await;
        r.assert_problem(409, None);
        assert_eq!(r.body["timerStatus"], "settled", "{}", r.text);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_patch_is_a_400_naming_the_field_and_changes_nothing() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "free", &["timers:read", "timers:write"])
        .await;
    let t = create(&s, &k, r#"{"duration": "1h"}"#).await;
    let p = path(&t);
    // (body, If-Match, field named)
    let cases: [(&str, Option<&str>, &str); 12] = [
        (r#"{"version": 1, "name": "renamed"}"#, None, "name"),
        (r#"{"version": 1, "fireAt": "tomorrow"}"#, None, "fireAt"),
        (
            r#"{"version": 1, "fireAt": "2020-01-01T00:00:00Z"}"#,
            None,
            "fireAt",
        ),
        (r#"{"fireAt": "2030-01-01T00:00:00Z"}"#, None, "version"),
        (r#"{"version": "1", "duration": "5m"}"#, None, "version"),
        (r#"{"version": 1}"#, None, "body"),
        ("", None, "body"),
        ("[1]", None, "body"),
        (
            r#"{"version": 1, "duration": "5m", "fireAt": "2030-01-01T00:00:00Z"}"#,
            None,
            "duration",
        ),
        (r#"{"duration": "5m"}"#, Some("soon"), "If-Match"),
        (
            r#"{"version": 2, "duration": "5m"}"#,
            Some("\"1\""),
            "version",
        ),
        // The free tier's horizon applies to a new fire time as on create.
        (r#"{"version": 1, "duration": "30d"}"#, None, "duration"),
    ];
    for (body, if_match, field) in cases {
        let headers: Vec<(&str, &str)> = if_match.map(|h| ("If-Match", h)).into_iter().collect();
        let r = s
            .call_with("PATCH", &p, Some(&k), Some(body), &headers)
            .await;
        r.assert_problem(400, Some(field));
    }
    let r = s
        .call(
            "PATCH",
            "/timers/not-a-timer",
            Some(&k),
            Some(r#"{"version": 1, "duration": "5m"}"#),
        )
        .await;
    r.assert_problem(400, Some("id"));
    assert_eq!(
        get(&s, &k, &t).await,
        t,
        "nothing refused changed the timer"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_timer_is_not_found_and_a_reader_cannot_change_it() {
    let s = start(ControlPlaneConfig::default()).await;
    let acme = s
        .tenant_with_key("acme", "pro", &["timers:read", "timers:write"])
        .await;
    let globex = s
        .tenant_with_key("globex", "pro", &["timers:read", "timers:write"])
        .await;
    let reader = s.key_for("acme", &["timers:read"]).await;
    let t = create(&s, &acme, r#"{"duration": "1h"}"#).await;
    let p = path(&t);
    let change = Some(r#"{"version": 1, "duration": "5m"}"#);
    s.call("PATCH", &p, Some(&globex), change)
        .await
        .assert_problem(404, None);
    s.call("POST", &format!("{p}/fire"), Some(&globex), None)
        .await
        .assert_problem(404, None);
    s.call("PATCH", &p, Some(&reader), change)
        .await
        .assert_problem(403, None);
    s.call("POST", &format!("{p}/fire"), Some(&reader), None)
        .await
        .assert_problem(403, None);
    assert_eq!(get(&s, &acme, &t).await, t, "nothing changed");
    s.stop().await;
}
