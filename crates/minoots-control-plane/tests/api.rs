//! The REST API over real HTTP on loopback, against an in-process kernel on SQLite: the
//! original MINOOTS request, every endpoint, the auth matrix over the route table, tenant
//! isolation, malformed input, limits, idempotency, paging, SSE resume, long-poll waits,
//! rate limits and quotas, and the OpenAPI document.

mod common;
use common::*;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use minoots_control_plane::ControlPlaneConfig;
use minoots_control_plane::auth::Access;
use minoots_core::{AttemptOutcome, Clock, SystemClock};
use minoots_kernel::KernelApi;
use serde_json::Value;

fn demo() -> ControlPlaneConfig {
    ControlPlaneConfig {
        demo: true,
        ..ControlPlaneConfig::default()
    }
}

const ORIGINAL: &str = r#"{"tenantId": "test", "requestedBy": "user", "name": "webhook-test", "duration": "30s",
       "actionBundle": {"actions": [{"type": "webhook", "url": "https://webhook.site/your-url"}]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_request_works_verbatim_in_demo_mode() {
    let s = start(demo()).await;
    let r = s
        .call("POST", "/timers", Some("mnt_demo_key_free"), Some(ORIGINAL))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["tenantId"], "test");
    assert_eq!(r.body["name"], "webhook-test");
    assert_eq!(r.body["requestedBy"], "user");
    assert_eq!(r.body["status"], "scheduled");
    assert_eq!(r.body["durationMs"], 30_000);
    let id = r.body["id"].as_str().unwrap();
    assert_eq!(r.header("location"), Some(format!("/timers/{id}").as_str()));
    assert_eq!(
        r.body["actionBundle"]["actions"][0]["url"],
        "https://webhook.site/your-url"
    );
    // Bearer works as well as X-API-Key.
    let got = s
        .call_with(
            "GET",
            &format!("/timers/{id}"),
            None,
            None,
            &[("authorization", "Bearer mnt_demo_key_free")],
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["id"], id);
    s.stop().await;

    // Outside demo mode the demo key does not exist.
    let s = start(ControlPlaneConfig::default()).await;
    let r = s
        .call("POST", "/timers", Some("mnt_demo_key_free"), Some(ORIGINAL))
        .await;
    r.assert_problem(401, None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_its_success_path() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let k = Some(key.as_str());

    // Create, get, list.
    let t = s
        .call(
            "POST",
            "/timers",
            k,
            Some(r#"{"duration": "1h", "labels": {"team": "ops"}}"#),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    let id = t.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.call("GET", &format!("/timers/{id}"), k, None).await.body["id"],
        id.as_str()
    );
    let list = s
        .call("GET", "/timers?status=scheduled&label=team:ops", k, None)
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["timers"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["nextCursor"], Value::Null);

    // Wait with a zero timeout answers at once with the current state.
    let w = s
        .call("GET", &format!("/timers/{id}/wait?timeout=0s"), k, None)
        .await;
    assert_eq!(w.status, 200);
    assert_eq!(w.body["status"], "scheduled");

    // Cancel with POST (reason), and with DELETE.
    let c = s
        .call(
            "POST",
            &format!("/timers/{id}/cancel"),
            k,
            Some(r#"{"reason": "not needed"}"#),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["status"], "cancelled");
    assert_eq!(c.body["cancelReason"], "not needed");
    let again = s.call("DELETE", &format!("/timers/{id}"), k, None).await;
    again.assert_problem(409, None);
    let t2 = s
        .call("POST", "/timers", k, Some(r#"{"duration": "1h"}"#))
        .await;
    let id2 = t2.body["id"].as_str().unwrap().to_string();
    let d = s.call("DELETE", &format!("/timers/{id2}"), k, None).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body["status"], "cancelled");

    // A timer that fires, whose delivery dies, is redriven; deliveries show attempts.
    let f = s
        .call(
            "POST",
            "/timers",
            k,
            Some(r#"{"duration": "10ms", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/hook"}]}}"#),
        )
        .await;
    let fid = f.body["id"].as_str().unwrap().to_string();
    // The timer's only delivery dies, as an executor would report it.
    s.report_one(AttemptOutcome::Permanent).await;
    let failed = s
        .call("GET", &format!("/timers/{fid}/wait?timeout=10s"), k, None)
        .await;
    assert_ne!(failed.body["status"], "scheduled");
    let dl = s
        .call("GET", &format!("/timers/{fid}/deliveries"), k, None)
        .await;
    assert_eq!(dl.status, 200, "{}", dl.text);
    let delivery = &dl.body["deliveries"][0];
    assert_eq!(delivery["status"], "dead");
    assert_eq!(delivery["attemptLog"][0]["httpStatus"], 404);
    assert_eq!(delivery["attemptLog"][0]["outcome"], "permanent");
    assert_eq!(
        s.call("GET", &format!("/timers/{fid}"), k, None).await.body["status"],
        "failed"
    );
    let rd = s
        .call("POST", &format!("/timers/{fid}/redrive"), k, None)
        .await;
    assert_eq!(rd.status, 200, "{}", rd.text);
    assert_eq!(rd.body["status"], "fired");

    // Events: the stream starts with the first timer's scheduled event.
    let mut sse = s
        .http
        .get(format!("{}/events?types=timer.scheduled", s.url))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(
        sse.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = read_events(&mut sse, 1).await;
    assert_eq!(first[0].1, "timer.scheduled");
    assert_eq!(first[0].2["timerId"], id.as_str());
    assert_eq!(first[0].2["timer"]["id"], id.as_str());
    drop(sse);

    // Usage, webhook secret and rotation.
    let u = s.call("GET", "/usage", k, None).await;
    assert_eq!(u.status, 200);
    assert_eq!(u.body["tier"], "unlimited");
    assert_eq!(u.body["usage"]["timersCreatedToday"], 3);
    let sec = s.call("GET", "/webhook-secret", k, None).await;
    assert!(sec.body["secret"].as_str().unwrap().starts_with("whsec_"));
    let rot = s.call("POST", "/webhook-secret/rotate", k, None).await;
    assert_eq!(rot.status, 200);
    assert_ne!(rot.body["secret"], sec.body["secret"]);
    assert_eq!(
        s.call("GET", "/webhook-secret", k, None).await.body["signingSecrets"],
        2
    );

    // Admin: tenants and keys.
    let a = Some(ADMIN_KEY);
    let nt = s
        .call(
            "POST",
            "/admin/tenants",
            a,
            Some(r#"{"id": "beta", "name": "Beta", "tier": "pro"}"#),
        )
        .await;
    assert_eq!(nt.status, 201, "{}", nt.text);
    let tl = s.call("GET", "/admin/tenants?limit=10", a, None).await;
    let ids: Vec<&str> = tl.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"beta") && ids.contains(&"acme") && ids.contains(&"system"),
        "{ids:?}"
    );
    let pt = s
        .call(
            "PATCH",
            "/admin/tenants/beta",
            a,
            Some(r#"{"tier": "team"}"#),
        )
        .await;
    assert_eq!(pt.body["tier"], "team");
    let nk = s.call("POST", "/admin/keys", a, Some(r#"{"tenantId": "beta", "name": "ci", "roles": ["timers:read"], "expiresAt": "2099-01-01T00:00:00Z"}"#)).await;
    assert_eq!(nk.status, 201, "{}", nk.text);
    let plaintext = nk.body["key"].as_str().unwrap().to_string();
    assert!(plaintext.starts_with("mnt_") && plaintext.len() >= 4 + 64);
    assert_eq!(nk.body["prefix"], &plaintext[..12]);
    let kl = s.call("GET", "/admin/keys?tenantId=beta", a, None).await;
    assert_eq!(kl.body["keys"].as_array().unwrap().len(), 1);
    assert!(
        !kl.text.contains(&plaintext),
        "the plaintext is shown once only"
    );
    assert_eq!(
        s.call("GET", "/usage", Some(&plaintext), None).await.status,
        200
    );
    let kid = nk.body["id"].as_str().unwrap();
    let rv = s
        .call("DELETE", &format!("/admin/keys/{kid}"), a, None)
        .await;
    assert_eq!(rv.status, 200);
    assert!(rv.body["revokedAt"].is_string());
    s.call("GET", "/usage", Some(&plaintext), None)
        .await
        .assert_problem(401, None);

    // Operations.
    assert_eq!(
        s.call("GET", "/healthz", None, None).await.body["status"],
        "ok"
    );
    assert_eq!(s.call("GET", "/readyz", None, None).await.status, 200);
    let m = s.call("GET", "/metrics", None, None).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text.contains(
            "minoots_http_requests_total{route=\"/timers\",method=\"POST\",status=\"201\"}"
        ),
        "{}",
        m.text
    );
    assert!(m.text.contains("minoots_timers_created_total"));
    assert!(m.text.contains("minoots_firing_lateness_seconds_bucket"));
    assert!(m.text.contains("minoots_timers_pending"));
    let o = s.call("GET", "/openapi.json", None, None).await;
    assert_eq!(o.body["openapi"], "3.1.0");
    let docs = s.http.get(format!("{}/docs/", s.url)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
    s.stop().await;
}

/// Reads `n` SSE events as (id, type, data).
async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<(i64, String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .expect("events arrive in time")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut ty, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<i64>().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    ty = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
                }
            }
            if let (Some(id), Some(ty), Some(data)) = (id, ty, data) {
                out.push((id, ty, data));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_over_every_route() {
    // Four refused keys per route, from one address: above the default burst of refused
    // keys once the table grows (tests/auth_flood.rs checks that bound).
    let s = start(ControlPlaneConfig {
        failed_auth_burst: 1_000,
        ..ControlPlaneConfig::default()
    })
    .await;
    let writer = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let reader = s.key_for("acme", &["timers:read"]).await;
    let other = s
        .tenant_with_key("other", "unlimited", &["timers:read", "timers:write"])
        .await;
    let timer = s
        .call(
            "POST",
            "/timers",
            Some(&writer),
            Some(r#"{"duration": "1h"}"#),
        )
        .await;
    let timer_id = timer.body["id"].as_str().unwrap().to_string();

    let revoked = s
        .key_for("acme", &["timers:read", "timers:write", "admin"])
        .await;
    let listed = s
        .call("GET", "/admin/keys?tenantId=acme", Some(ADMIN_KEY), None)
        .await;
    let revoked_id = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            revoked.starts_with(k["prefix"].as_str().unwrap())
                && k["roles"].as_array().unwrap().len() == 3
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/admin/keys/{revoked_id}"),
            Some(ADMIN_KEY),
            None
        )
        .await
        .status,
        200
    );
    // An expired key, stored directly (the API refuses a past expiry).
    let expired = "mnt_expired_key_for_the_auth_matrix_0123456789";
    s.kernel
        .create_api_key(minoots_store::ApiKey {
            id: "expired".into(),
            tenant_id: "acme".into(),
            name: "expired".into(),
            key_hash: minoots_control_plane::auth::hash_key(expired),
            prefix: "mnt_expired_".into(),
            roles: vec!["admin".into()],
            created_at_us: 0,
            expires_at_us: Some(SystemClock.now_us() - 1_000_000),
            revoked_at_us: None,
            last_used_at_us: None,
        })
        .await
        .unwrap();

    let mut checked = 0;
    for route in minoots_control_plane::routes::table() {
        if route.access == Access::Public {
            continue;
        }
        let path = route.path.replace(
            "{id}",
            if route.path.starts_with("/admin/tenants") {
                "acme"
            } else if route.path.starts_with("/admin/keys") {
                "expired"
            } else {
                &timer_id
            },
        );
        let method = route.method.as_str();
        // A change must be valid to reach the timer (a bad one is a 400 for any timer).
        let body = if (method, route.path) == ("PATCH", "/timers/{id}") {
            Some(r#"{"version": 1, "duration": "2h"}"#)
        } else {
            matches!(method, "POST" | "PATCH").then_some("{}")
        };
        let what = format!("{method} {path}");
        let call = |key: Option<String>, extra: Vec<(&'static str, String)>| {
            let s = &s;
            let path = path.clone();
            async move {
                let hdrs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
                s.call_with(method, &path, key.as_deref(), body, &hdrs)
                    .await
            }
        };
        call(None, vec![]).await.assert_problem(401, None);
        call(Some("bad key".into()), vec![])
            .await
            .assert_problem(401, None);
        call(None, vec![("authorization", "Basic dXNlcjpwYXNz".into())])
            .await
            .assert_problem(401, None);
        call(
            Some("mnt_unknown_key_0000000000000000000000000000".into()),
            vec![],
        )
        .await
        .assert_problem(401, None);
        call(Some(revoked.clone()), vec![])
            .await
            .assert_problem(401, None);
        call(Some(expired.into()), vec![])
            .await
            .assert_problem(401, None);
        match route.access {
            Access::Write => call(Some(reader.clone()), vec![])
                .await
                .assert_problem(403, None),
            Access::Admin => call(Some(writer.clone()), vec![])
                .await
                .assert_problem(403, None),
            _ => {}
        }
        if route.path.starts_with("/timers/{id}") {
            // Another tenant's timer does not exist for this key.
            let r = call(Some(other.clone()), vec![]).await;
            r.assert_problem(404, None);
            assert!(!r.text.contains("acme"), "{what}: {}", r.text);
        }
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} routes checked");
    // The key of tenant acme still sees its timer: the checks above changed nothing.
    let t = s
        .call("GET", &format!("/timers/{timer_id}"), Some(&writer), None)
        .await;
    assert_eq!(t.body["status"], "scheduled");
    // A body naming another tenant is refused with 403.
    let r = s
        .call(
            "POST",
            "/timers",
            Some(&writer),
            Some(r#"{"tenantId": "other", "duration": "1h"}"#),
        )
        .await;
    r.assert_problem(403, None);
    s.stop().await;
}

/// Keys of tenants `acme` and `beta`, and the id of a timer of `acme`.
async fn two_tenants_and_a_timer_of_the_first(s: &Server) -> (String, String, String) {
    let a = s
        .tenant_with_key("acme", "unlimited", &["timers:read", "timers:write"])
        .await;
    let b = s
        .tenant_with_key("beta", "unlimited", &["timers:read", "timers:write"])
        .await;
    let t = s
        .call("POST", "/timers", Some(&a), Some(r#"{"duration": "1h"}"#))
        .await;
    let id = t.body["id"].as_str().unwrap().to_string();
    (a, b, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_names_what_was_not_found_and_nothing_of_other_tenants() {
    let s = start(ControlPlaneConfig::default()).await;
    let (_, b, id) = two_tenants_and_a_timer_of_the_first(&s).await;
    let admin = Some(ADMIN_KEY);
    let cases = [
        (
            "GET",
            format!("/timers/{id}"),
            Some(b.as_str()),
            None,
            format!("timer {id} not found"),
        ),
        (
            "DELETE",
            format!("/timers/{id}"),
            Some(b.as_str()),
            None,
            format!("timer {id} not found"),
        ),
        (
            "GET",
            format!("/timers/{id}/deliveries"),
            Some(b.as_str()),
            None,
            format!("timer {id} not found"),
        ),
        (
            "PATCH",
            "/admin/tenants/nobody".into(),
            admin,
            Some(r#"{"tier": "pro"}"#),
            "tenant nobody not found".into(),
        ),
        (
            "POST",
            "/admin/keys".into(),
            admin,
            Some(r#"{"tenantId": "nobody"}"#),
            "tenant nobody not found".into(),
        ),
        (
            "DELETE",
            "/admin/keys/no-such-key".into(),
            admin,
            None,
            "key no-such-key not found".into(),
        ),
    ];
    for (method, path, key, body, detail) in cases {
        let r = s.call(method, &path, key, body).await;
        r.assert_problem(404, None);
        assert_eq!(
            r.body["type"], "urn:minoots:problem:not-found",
            "{method} {path}"
        );
        assert_eq!(r.body["detail"], detail, "{method} {path}");
        assert!(!r.text.contains("acme"), "{method} {path}: {}", r.text);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_timers() {
    let s = start(ControlPlaneConfig::default()).await;
    let (a, b, id) = two_tenants_and_a_timer_of_the_first(&s).await;
    s.call("GET", &format!("/timers/{id}"), Some(&b), None)
        .await
        .assert_problem(404, None);
    s.call("DELETE", &format!("/timers/{id}"), Some(&b), None)
        .await
        .assert_problem(404, None);
    assert_eq!(s.timer_count(Some(&b)).await, 0);
    assert_eq!(s.timer_count(Some(&a)).await, 1);
    // B's event stream has nothing of A's: its first event is its own.
    let own = s
        .call("POST", "/timers", Some(&b), Some(r#"{"duration": "1h"}"#))
        .await;
    let mut sse = s
        .http
        .get(format!("{}/events", s.url))
        .header("x-api-key", &b)
        .send()
        .await
        .unwrap();
    let ev = read_events(&mut sse, 1).await;
    assert_eq!(ev[0].2["timerId"], own.body["id"]);
    assert_eq!(ev[0].2["tenantId"], "beta");
    drop(sse);
    assert_eq!(
        s.call("GET", &format!("/timers/{id}"), Some(&a), None)
            .await
            .body["status"],
        "scheduled"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_a_4xx_problem_naming_the_field() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "pro", &["timers:read", "timers:write"])
        .await;
    let k = Some(k.as_str());
    let cases: &[(&str, u16, &str)] = &[
        (r#"{"duration": "30 parsecs"}"#, 400, "duration"),
        (r#"{"duration": "-5s"}"#, 400, "duration"),
        (r#"{"duration": 0}"#, 400, "duration"),
        (r#"{"duration": "0s"}"#, 400, "duration"),
        (r#"{}"#, 400, "duration"),
        (
            r#"{"duration": "30s", "fireAt": "2099-01-01T00:00:00Z"}"#,
            400,
            "duration",
        ),
        (r#"{"fireAt": "2001-01-01T00:00:00Z"}"#, 400, "fireAt"),
        (r#"{"fireAt": "tomorrow"}"#, 400, "fireAt"),
        (r#"{"duration": "400d"}"#, 400, "duration"),
        (r#"{"duration": true}"#, 400, "duration"),
        (r#"{"duration": "30s", "name": 5}"#, 400, "name"),
        (
            r#"{"duration": "30s", "labels": {"team": 5}}"#,
            400,
            "labels.team",
        ),
        (r#"{"duration": "30s", "labels": ["a"]}"#, 400, "labels"),
        (
            r#"{"duration": "30s", "metadata": [1, 2]}"#,
            400,
            "metadata",
        ),
        (r#"{"duration": "30s", "colour": "red"}"#, 400, "colour"),
        (
            r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "webhook", "url": "ftp://example.com/x"}]}}"#,
            400,
            "actionBundle.actions[0].url",
        ),
        (
            r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "webhook", "url": "not a url"}]}}"#,
            400,
            "actionBundle.actions[0].url",
        ),
        (
            r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "webhook"}]}}"#,
            400,
            "actionBundle.actions[0]",
        ),
        (
            r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "teleport", "url": "https://example.com"}]}}"#,
            400,
            "actionBundle.actions[0].type",
        ),
        (
            r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com", "timeoutMs": 999999}]}}"#,
            400,
            "actionBundle.actions[0].timeoutMs",
        ),
        (
            r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com", "extra": 1}]}}"#,
            400,
            "actionBundle.actions[0]",
        ),
        (
            r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "command", "command": "rm"}]}}"#,
            400,
            "actionBundle.actions[0].type",
        ),
        (r#"{"duration": 1.5}"#, 400, "duration"),
        (
            r#"{"duration": "30s", "actionBundle": {"retryPolicy": {"maxAttempts": 0}}}"#,
            400,
            "actionBundle.retryPolicy.maxAttempts",
        ),
        (
            r#"{"duration": "30s", "idempotencyKey": ""}"#,
            400,
            "idempotencyKey",
        ),
        (r#"{"duration": "30s""#, 400, "body"),
        (r#"[1, 2, 3]"#, 400, "body"),
        (r#"{"duration": "30s"} trailing"#, 400, "body"),
        (r#"   "#, 400, "body"),
    ];
    for (body, status, field) in cases {
        let r = s.call("POST", "/timers", k, Some(body)).await;
        assert_eq!(r.status, *status, "{body}: {}", r.text);
        r.assert_problem(*status, Some(field));
    }
    // Query parameters and path ids.
    for (path, field) in [
        ("/timers?status=exploded", "status"),
        ("/timers?limit=0", "limit"),
        ("/timers?limit=501", "limit"),
        ("/timers?label=nocolon", "label"),
        ("/timers?cursor=garbage", "cursor"),
        ("/timers?stauts=fired", "stauts"),
        ("/timers/not-a-uuid", "id"),
        (
            "/timers/00000000-0000-0000-0000-000000000000/wait?timeout=2h",
            "timeout",
        ),
        ("/events?after=-1", "after"),
        ("/events?types=timer.exploded", "types"),
    ] {
        s.call("GET", path, k, None)
            .await
            .assert_problem(400, Some(field));
    }
    // Admin bodies.
    let a = Some(ADMIN_KEY);
    for (path, body, field) in [
        ("/admin/tenants", r#"{"id": "x y"}"#, "id"),
        (
            "/admin/tenants",
            r#"{"id": "ok", "tier": "platinum"}"#,
            "tier",
        ),
        ("/admin/tenants", r#"{"name": "no id"}"#, "body"),
        (
            "/admin/keys",
            r#"{"tenantId": "acme", "roles": ["root"]}"#,
            "roles",
        ),
        (
            "/admin/keys",
            r#"{"tenantId": "acme", "expiresAt": "2001-01-01T00:00:00Z"}"#,
            "expiresAt",
        ),
    ] {
        s.call("POST", path, a, Some(body))
            .await
            .assert_problem(400, Some(field));
    }
    // The wrong content type is 415; nothing was stored by any of the above.
    let r = s
        .call_with(
            "POST",
            "/timers",
            k,
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    r.assert_problem(415, None);
    assert_eq!(s.timer_count(k).await, 0);
    // Unknown routes and methods are problems too.
    s.call("GET", "/nowhere", k, None)
        .await
        .assert_problem(404, None);
    s.call("PUT", "/timers", k, None)
        .await
        .assert_problem(405, None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let s = start(ControlPlaneConfig {
        body_limit_bytes: 64 * 1024,
        ..ControlPlaneConfig::default()
    })
    .await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:write", "timers:read"])
        .await;
    let big = format!(
        r#"{{"duration": "30s", "metadata": {{"pad": "{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    s.call("POST", "/timers", Some(&k), Some(&big))
        .await
        .assert_problem(413, None);
    assert_eq!(s.timer_count(Some(&k)).await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_creates_return_the_original() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:write", "timers:read"])
        .await;
    let k = Some(k.as_str());
    let body = r#"{"duration": "1h", "name": "once"}"#;
    let first = s
        .call_with(
            "POST",
            "/timers",
            k,
            Some(body),
            &[("idempotency-key", "order-42")],
        )
        .await;
    assert_eq!(first.status, 201);
    let second = s
        .call_with(
            "POST",
            "/timers",
            k,
            Some(body),
            &[("idempotency-key", "order-42")],
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["id"], first.body["id"]);
    // The same key in the body is the same request.
    let third = s
        .call(
            "POST",
            "/timers",
            k,
            Some(r#"{"duration": "1h", "name": "once", "idempotencyKey": "order-42"}"#),
        )
        .await;
    assert_eq!(third.body["id"], first.body["id"]);
    let different = s
        .call_with(
            "POST",
            "/timers",
            k,
            Some(r#"{"duration": "2h", "name": "once"}"#),
            &[("idempotency-key", "order-42")],
        )
        .await;
    different.assert_problem(409, None);
    let clash = s
        .call_with(
            "POST",
            "/timers",
            k,
            Some(r#"{"duration": "1h", "idempotencyKey": "a"}"#),
            &[("idempotency-key", "b")],
        )
        .await;
    clash.assert_problem(400, Some("idempotencyKey"));
    assert_eq!(s.timer_count(k).await, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_returns_each_of_250_timers_exactly_once() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:write", "timers:read"])
        .await;
    let k = Some(k.as_str());
    let mut created = HashSet::new();
    for i in 0..250 {
        // Some share a fire time, so paging must order by (fire time, id).
        let body = format!(r#"{{"fireAt": "2030-01-01T00:00:{:02}Z"}}"#, i % 7);
        let r = s.call("POST", "/timers", k, Some(&body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        created.insert(r.body["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/timers?limit=40&cursor={c}"),
            None => "/timers?limit=40".to_string(),
        };
        let r = s.call("GET", &path, k, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for t in r.body["timers"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_string());
        }
        pages += 1;
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 7);
    assert_eq!(seen.len(), 250);
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique, created);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_after_a_disconnect_without_missing_an_event() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:write", "timers:read"])
        .await;
    let mut sse = s
        .http
        .get(format!("{}/events", s.url))
        .header("x-api-key", &k)
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        s.call("POST", "/timers", Some(&k), Some(r#"{"duration": "1h"}"#))
            .await;
    }
    let before = read_events(&mut sse, 3).await;
    let last_id = before[2].0;
    drop(sse);
    // While disconnected: more events.
    let mut missed = Vec::new();
    for _ in 0..4 {
        let r = s
            .call("POST", "/timers", Some(&k), Some(r#"{"duration": "1h"}"#))
            .await;
        missed.push(r.body["id"].as_str().unwrap().to_string());
    }
    let mut resumed = s
        .http
        .get(format!("{}/events", s.url))
        .header("x-api-key", &k)
        .header("last-event-id", last_id.to_string())
        .send()
        .await
        .unwrap();
    let after = read_events(&mut resumed, 4).await;
    let ids: Vec<String> = after
        .iter()
        .map(|e| e.2["timerId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, missed);
    assert!(after.iter().all(|e| e.0 > last_id));
    // `?after=` resumes the same way.
    let mut by_param = s
        .http
        .get(format!("{}/events?after={last_id}", s.url))
        .header("x-api-key", &k)
        .send()
        .await
        .unwrap();
    assert_eq!(read_events(&mut by_param, 4).await[0].0, after[0].0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wait_answers_when_the_timer_fires() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "unlimited", &["timers:write", "timers:read"])
        .await;
    let t = s
        .call(
            "POST",
            "/timers",
            Some(&k),
            Some(r#"{"duration": "300ms"}"#),
        )
        .await;
    let id = t.body["id"].as_str().unwrap();
    let started = Instant::now();
    let w = s
        .call(
            "GET",
            &format!("/timers/{id}/wait?timeout=60s"),
            Some(&k),
            None,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(w.status, 200);
    assert_eq!(w.body["status"], "settled", "{}", w.text);
    assert!(w.body["firedAt"].is_string());
    // It answered because the timer fired, far before the 60 s timeout.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_tier_limits_answer_429_with_headers_and_spare_other_tenants() {
    let s = start(ControlPlaneConfig::default()).await;
    let free = s
        .tenant_with_key("cheap", "free", &["timers:write", "timers:read"])
        .await;
    let other = s
        .tenant_with_key("other", "free", &["timers:write", "timers:read"])
        .await;

    // Pending quota (5 on free): the 6th create is refused, naming the quota.
    for i in 0..5 {
        let r = s
            .call(
                "POST",
                "/timers",
                Some(&free),
                Some(r#"{"duration": "1h"}"#),
            )
            .await;
        assert_eq!(r.status, 201, "create {i}: {}", r.text);
        assert_eq!(r.header("ratelimit-limit"), Some("10"));
    }
    let r = s
        .call(
            "POST",
            "/timers",
            Some(&free),
            Some(r#"{"duration": "1h"}"#),
        )
        .await;
    r.assert_problem(429, None);
    assert_eq!(r.body["quota"], "pendingTimers");
    assert!(r.header("retry-after").is_some());
    // The max duration of the tier (7 days).
    let r = s
        .call(
            "POST",
            "/timers",
            Some(&free),
            Some(r#"{"duration": "8d"}"#),
        )
        .await;
    r.assert_problem(400, Some("duration"));

    // Requests per minute (60 on free): keep calling until refused.
    let mut admitted = 0;
    let refused = loop {
        let r = s.call("GET", "/usage", Some(&free), None).await;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200);
        admitted += 1;
        assert!(admitted <= 70, "never limited");
    };
    assert!(admitted >= 50, "limited after only {admitted}");
    refused.assert_problem(429, None);
    assert_eq!(refused.body["quota"], "requestsPerMinute");
    assert_eq!(refused.header("ratelimit-limit"), Some("60"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert!(
        refused
            .header("ratelimit-reset")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 58
    );
    // Another tenant's key is unaffected.
    let o = s.call("GET", "/usage", Some(&other), None).await;
    assert_eq!(o.status, 200);
    assert_eq!(o.header("ratelimit-remaining"), Some("59"));
    // The admin key is never rate limited.
    for _ in 0..70 {
        assert_eq!(
            s.call("GET", "/admin/tenants", Some(ADMIN_KEY), None)
                .await
                .status,
            200
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_with_its_schemas() {
    let s = start(ControlPlaneConfig::default()).await;
    let doc = s.call("GET", "/openapi.json", None, None).await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in &refs {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    for route in minoots_control_plane::routes::table() {
        let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{} {} missing from /openapi.json",
            route.method,
            route.path
        );
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        // And the router serves it (anything but the 404/405 of an unknown route).
        let path = route
            .path
            .replace("{id}", "00000000-0000-0000-0000-000000000000");
        if route.path == "/events" || route.path == "/timers/stream" {
            // A stream never ends; its headers are enough.
            let resp = s
                .http
                .get(format!("{}{path}", s.url))
                .header("x-api-key", ADMIN_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            continue;
        }
        let r = s
            .call(route.method.as_str(), &path, Some(ADMIN_KEY), None)
            .await;
        let unknown = r.body["type"] == "urn:minoots:problem:not-found"
            && r.body["detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("there is no endpoint")
            || r.status == 405;
        assert!(
            !unknown,
            "{} {} is not served: {}",
            route.method, route.path, r.text
        );
    }
    // Every documented operation is a route of the table (or the docs UI).
    let table: HashSet<(String, String)> = minoots_control_plane::routes::table()
        .iter()
        .map(|r| (r.path.to_string(), r.method.as_str().to_ascii_lowercase()))
        .collect();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            assert!(
                table.contains(&(path.clone(), method.clone())) || path == "/docs",
                "documented but not in the table: {method} {path}"
            );
        }
    }
    s.stop().await;
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap().to_string());
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kernel_is_503_with_retry_after() {
    // A gRPC kernel client pointed at a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kernel = minoots_kernel::grpc::GrpcKernelClient::connect_lazy(
        &format!("http://127.0.0.1:{port}"),
        None,
    )
    .unwrap();
    let state = minoots_control_plane::AppState::new(
        std::sync::Arc::new(kernel),
        ControlPlaneConfig::default(),
        None,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(minoots_control_plane::serve(
        state,
        listener,
        std::future::pending(),
    ));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(format!("{url}/timers"))
        .header("x-api-key", ADMIN_KEY)
        .header("content-type", "application/json")
        .body(r#"{"duration": "30s"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Health says the process is up, whatever the kernel does.
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start(ControlPlaneConfig {
        max_connections: 2,
        ..ControlPlaneConfig::default()
    })
    .await;
    let addr = s.url.trim_start_matches("http://").to_string();
    // Two idle keep-alive connections take both slots (each proves it was served).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    let mut third = tokio::spawn({
        let http = s.http.clone();
        let url = s.url.clone();
        async move {
            http.get(format!("{url}/healthz"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Not served while both slots are held...
    // (a bounded chance to be served wrongly: there is no event for "not served").
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err()
    );
    // ...and served as soon as one closes.
    drop(held.pop());
    assert_eq!(third.await.unwrap(), 200);
    s.stop().await;
}

#[tokio::test]
async fn processes_starting_together_with_one_admin_key_all_start_and_a_revoked_one_is_refused() {
    let s = start(demo()).await;
    let key = "mnt_second_admin_key_started_twice_0123456789";
    let boot = || {
        minoots_control_plane::bootstrap(
            s.kernel.as_ref(),
            minoots_control_plane::Bootstrap {
                admin_key: Some(key.into()),
                demo: false,
            },
        )
    };
    // Two processes sharing a store bootstrap the same new key at once: the one whose
    // insert conflicts finds the other's key and goes on.
    let (a, b) = tokio::join!(boot(), boot());
    a.expect("the first bootstrap");
    b.expect("the second bootstrap, whose insert met the first one's key");
    assert_eq!(
        s.call("GET", "/admin/keys", Some(key), None).await.status,
        200
    );

    // The same key revoked: a process starting with it is refused, naming the setting.
    let listed = s
        .call("GET", "/admin/keys?tenantId=system", Some(ADMIN_KEY), None)
        .await;
    let id = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = s
        .call(
            "DELETE",
            &format!("/admin/keys/{id}"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let refused = boot().await.unwrap_err().to_string();
    assert!(
        refused.contains("MINOOTS_ADMIN_KEY") && refused.contains("revoked"),
        "{refused}"
    );
}
