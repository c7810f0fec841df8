//! Dashboard sessions over real HTTP on a real SQLite store: the sign-in's cookie and what
//! the store keeps of it, the cookie on reads (the event stream included), CSRF token and
//! Origin on writes, sign-out, revocation, expiry on a manual clock, tenant isolation, a
//! restart, the per-key bound and the throttling of refused sign-ins.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ADMIN_KEY, Reply, Server, start, start_in, start_with_clock};
use minoots_control_plane::ControlPlaneConfig;
use minoots_core::{Clock, ManualClock, SystemClock};
use serde_json::Value;

/// A signed-in browser: its cookie header and CSRF token.
struct Browser {
    cookie: String,
    token: String,
    csrf: String,
}

/// Signs in with `key`, checks the answer and the cookie's attributes.
async fn sign_in(s: &Server, key: &str) -> Browser {
    let r = s
        .call(
            "POST",
            "/ui/session",
            None,
            Some(&format!(r#"{{"apiKey": "{key}"}}"#)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let set = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    let token = attrs[0]
        .strip_prefix("minoots_session=")
        .expect("the cookie's name")
        .to_string();
    assert_eq!(token.len(), 43, "32 random bytes in base64url: {set}");
    assert!(attrs.contains(&"HttpOnly"), "{set}");
    assert!(attrs.contains(&"SameSite=Strict"), "{set}");
    assert!(attrs.contains(&"Path=/"), "{set}");
    assert!(!attrs.contains(&"Secure"), "plain http on loopback: {set}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let csrf = r.body["csrfToken"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    assert_ne!(csrf, token);
    Browser {
        cookie: format!("minoots_session={token}"),
        token,
        csrf,
    }
}

impl Browser {
    /// A read with the cookie alone.
    async fn get(&self, s: &Server, path: &str) -> Reply {
        s.call_with("GET", path, None, None, &[("cookie", &self.cookie)])
            .await
    }

    /// A write with the cookie, the CSRF token and the server's own Origin.
    async fn write(&self, s: &Server, method: &str, path: &str, body: Option<&str>) -> Reply {
        s.call_with(
            method,
            path,
            None,
            body,
            &[
                ("cookie", &self.cookie),
                ("x-csrf-token", &self.csrf),
                ("origin", &s.url),
            ],
        )
        .await
    }
}

/// Revokes the one key of `tenant` through the admin API.
async fn revoke_the_key_of(s: &Server, tenant: &str) {
    let keys = s
        .call(
            "GET",
            &format!("/admin/keys?tenantId={tenant}"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    let id = keys.body["keys"][0]["id"].as_str().unwrap().to_string();
    let revoked = s
        .call(
            "DELETE",
            &format!("/admin/keys/{id}"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
}

const TIMER: &str = r#"{"duration": "1h", "name": "from-the-dashboard"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_a_strict_http_only_cookie_and_the_store_keeps_only_its_hash() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s
        .tenant_with_key("acme", "pro", &["timers:read", "timers:write"])
        .await;
    let b = sign_in(&s, &key).await;

    let me = b.get(&s, "/ui/session").await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["tenantId"], "acme");
    assert_eq!(me.body["csrfToken"], b.csrf.as_str());
    assert_eq!(me.body["roles"][1], "timers:write");
    assert!(me.body["keyName"].is_string());
    let expires =
        minoots_core::timefmt::parse_rfc3339_us(me.body["expiresAt"].as_str().unwrap()).unwrap();
    let twelve_h_us = 12 * 3600 * 1_000_000;
    let left = expires - SystemClock.now_us();
    assert!(
        (twelve_h_us - 60_000_000..=twelve_h_us).contains(&left),
        "expires 12 h from now by default, not {left} µs"
    );

    // The table holds the token's SHA-256 and nothing that is the token.
    let db = rusqlite::Connection::open_with_flags(
        s.data_dir().join("minoots.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: Vec<(Vec<u8>, String, String)> = db
        .prepare("SELECT token_hash, key_id, tenant_id FROM ui_sessions")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 1);
    let (hash, _key_id, tenant) = &rows[0];
    assert_eq!(
        hash.as_slice(),
        minoots_core::digest::sha256(b.token.as_bytes()).as_slice()
    );
    assert_eq!(tenant, "acme");
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('ui_sessions')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        columns,
        [
            "token_hash",
            "key_id",
            "tenant_id",
            "created_at",
            "expires_at"
        ]
    );
    drop(db);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sign_ins_name_the_api_key_and_are_throttled() {
    let config = ControlPlaneConfig {
        failed_auth_burst: 3,
        failed_auth_per_minute: 1,
        ..ControlPlaneConfig::default()
    };
    let s = start(config).await;
    let key = s.tenant_with_key("acme", "free", &["timers:read"]).await;

    for body in [
        "",
        "{",
        r#"{"apiKey": 42}"#,
        r#"{}"#,
        r#"{"apiKey": "x", "remember": true}"#,
    ] {
        let r = s.call("POST", "/ui/session", None, Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        r.assert_problem(400, None);
    }
    let missing = s.call("POST", "/ui/session", None, Some("{}")).await;
    missing.assert_problem(400, Some("apiKey"));
    let wrong_type = s
        .call("POST", "/ui/session", None, Some(r#"{"apiKey": 42}"#))
        .await;
    wrong_type.assert_problem(400, Some("apiKey"));
    let huge = format!(r#"{{"apiKey": "{}"}}"#, "a".repeat(5000));
    let r = s.call("POST", "/ui/session", None, Some(&huge)).await;
    assert_eq!(r.status, 413, "{}", r.text);

    let malformed = s
        .call("POST", "/ui/session", None, Some(r#"{"apiKey": "short"}"#))
        .await;
    malformed.assert_problem(401, Some("apiKey"));
    assert!(malformed.header("set-cookie").is_none());

    // A revoked key is refused like an unknown one.
    revoke_the_key_of(&s, "acme").await;
    let unknown = "mnt_0000000000000000000000000000000000000000000000000000000000000000";
    for bad in [unknown, key.as_str(), unknown] {
        let r = s
            .call(
                "POST",
                "/ui/session",
                None,
                Some(&format!(r#"{{"apiKey": "{bad}"}}"#)),
            )
            .await;
        r.assert_problem(401, Some("apiKey"));
        assert!(r.body["detail"].as_str().unwrap().contains("revoked"));
        assert!(r.header("set-cookie").is_none());
    }
    // The fourth failure from this address is over the burst of 3: refused unlooked-up.
    let r = s
        .call(
            "POST",
            "/ui/session",
            None,
            Some(&format!(r#"{{"apiKey": "{unknown}"}}"#)),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_reads_and_streams_events_and_writes_need_csrf_and_origin() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s
        .tenant_with_key("acme", "pro", &["timers:read", "timers:write"])
        .await;
    let b = sign_in(&s, &key).await;

    // A read with the cookie alone.
    let list = b.get(&s, "/timers").await;
    assert_eq!(list.status, 200, "{}", list.text);

    // The event stream with the cookie alone, as an EventSource opens it.
    let mut sse = s
        .http
        .get(format!("{}/events?types=timer.scheduled", s.url))
        .header("cookie", &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);

    // Writes: the CSRF token and the Origin are both required, and must both be right.
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("X-CSRF-Token", vec![("origin", s.url.as_str())]),
        (
            "X-CSRF-Token",
            vec![("origin", s.url.as_str()), ("x-csrf-token", "wrong")],
        ),
        (
            "X-CSRF-Token",
            vec![
                ("origin", s.url.as_str()),
                ("x-csrf-token", b.token.as_str()),
            ],
        ),
        ("Origin", vec![("x-csrf-token", b.csrf.as_str())]),
        (
            "Origin",
            vec![
                ("x-csrf-token", b.csrf.as_str()),
                ("origin", "http://evil.example"),
            ],
        ),
    ];
    for (named, headers) in cases {
        let mut all = headers.clone();
        all.push(("cookie", b.cookie.as_str()));
        let r = s
            .call_with("POST", "/timers", None, Some(TIMER), &all)
            .await;
        r.assert_problem(403, None);
        assert!(
            r.body["detail"].as_str().unwrap().contains(named),
            "{headers:?}: {}",
            r.text
        );
    }
    assert_eq!(
        s.timer_count(Some(&key)).await,
        0,
        "no refused write landed"
    );

    let created = b.write(&s, "POST", "/timers", Some(TIMER)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();

    let mut buf = String::new();
    while !buf.contains(&id) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), sse.chunk())
            .await
            .expect("the event arrives on the cookie's stream")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(buf.contains("event: timer.scheduled"), "{buf}");
    drop(sse);

    // A key header decides alone: no CSRF token needed, whatever cookie comes along.
    let r = s
        .call_with(
            "POST",
            "/timers",
            Some(&key),
            Some(TIMER),
            &[("cookie", &b.cookie)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_and_revocation_end_sessions_at_once() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s.tenant_with_key("acme", "pro", &["timers:read"]).await;
    let (a, b) = (sign_in(&s, &key).await, sign_in(&s, &key).await);

    // Sign-out is a write: the CSRF token is required.
    let r = s
        .call_with(
            "DELETE",
            "/ui/session",
            None,
            None,
            &[("cookie", &a.cookie), ("origin", &s.url)],
        )
        .await;
    r.assert_problem(403, None);
    assert_eq!(a.get(&s, "/timers").await.status, 200);

    let out = a.write(&s, "DELETE", "/ui/session", None).await;
    assert_eq!(out.status, 204, "{}", out.text);
    let set = out.header("set-cookie").unwrap();
    assert!(set.starts_with("minoots_session=;"), "{set}");
    assert!(set.contains("Max-Age=0"), "{set}");
    let r = a.get(&s, "/timers").await;
    r.assert_problem(401, None);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    a.get(&s, "/ui/session").await.assert_problem(401, None);
    assert_eq!(
        b.get(&s, "/timers").await.status,
        200,
        "the other session lives"
    );

    // Revoking the key ends its other session for the next request.
    revoke_the_key_of(&s, "acme").await;
    b.get(&s, "/timers").await.assert_problem(401, None);
    b.get(&s, "/ui/session").await.assert_problem(401, None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expires_after_its_lifetime_on_the_servers_clock() {
    let clock = ManualClock::new(SystemClock.now_us());
    let config = ControlPlaneConfig {
        ui_session_ttl: Duration::from_secs(3600),
        ..ControlPlaneConfig::default()
    };
    let s = start_with_clock(config, clock.clone() as Arc<dyn Clock>).await;
    let key = s.tenant_with_key("acme", "pro", &["timers:read"]).await;
    let b = sign_in(&s, &key).await;
    clock.advance_us(3600 * 1_000_000 - 1);
    assert_eq!(b.get(&s, "/timers").await.status, 200);
    clock.advance_us(1);
    b.get(&s, "/timers").await.assert_problem(401, None);
    b.get(&s, "/ui/session").await.assert_problem(401, None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sees_only_its_own_tenant() {
    let s = start(ControlPlaneConfig::default()).await;
    let a_key = s
        .tenant_with_key("tenant-a", "pro", &["timers:read", "timers:write"])
        .await;
    let b_key = s
        .tenant_with_key("tenant-b", "pro", &["timers:read", "timers:write"])
        .await;
    let created = s.call("POST", "/timers", Some(&a_key), Some(TIMER)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();

    let b = sign_in(&s, &b_key).await;
    b.get(&s, &format!("/timers/{id}"))
        .await
        .assert_problem(404, None);
    let list = b.get(&s, "/timers").await;
    assert_eq!(list.body["timers"], Value::Array(vec![]), "{}", list.text);
    b.write(&s, "POST", &format!("/timers/{id}/cancel"), None)
        .await
        .assert_problem(404, None);
    let a = sign_in(&s, &a_key).await;
    assert_eq!(a.get(&s, &format!("/timers/{id}")).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_of_the_server() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s.tenant_with_key("acme", "pro", &["timers:read"]).await;
    let b = sign_in(&s, &key).await;
    let dir = s.stop_keeping_data().await;

    let s = start_in(dir, ControlPlaneConfig::default(), Arc::new(SystemClock)).await;
    let r = b.get(&s, "/ui/session").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["csrfToken"], b.csrf.as_str());
    assert_eq!(b.get(&s, "/timers").await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_keeps_at_most_32_sessions_and_the_oldest_ends() {
    let s = start(ControlPlaneConfig::default()).await;
    let key = s.tenant_with_key("acme", "pro", &["timers:read"]).await;
    let mut browsers = Vec::new();
    for _ in 0..33 {
        browsers.push(sign_in(&s, &key).await);
    }
    browsers[0]
        .get(&s, "/ui/session")
        .await
        .assert_problem(401, None);
    for b in [&browsers[1], &browsers[32]] {
        assert_eq!(b.get(&s, "/ui/session").await.status, 200);
    }
    assert_eq!(sessions_stored(&s).await, 32);
    s.stop().await;
}

/// Sessions the store holds.
async fn sessions_stored(s: &Server) -> u64 {
    use minoots_store::UiSessionStore;
    s.sqlite.count_ui_sessions().await.unwrap()
}
