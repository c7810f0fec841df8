//! The dashboard in a real browser: `minoots serve --demo` driven through headless
//! Chromium and chromedriver (Debian's `chromium` and `chromium-driver`; the test prints
//! "skipped: no chromium" and passes when they are not installed).
//!
//! It signs in (a bad key is refused with the API's sentence, the session cookie is not
//! readable from JavaScript, a reload keeps the session, sign-out ends it), creates a
//! timer in the form and sees it turn `settled` without a reload, redrives a dead letter
//! once its receiver recovers, and three at once by filter, keeps filters across a reload,
//! shows a quota refusal's sentence, refuses cookie writes without the CSRF token or from
//! another Origin, keeps tenant B from seeing tenant A's timers, keeps only the rows in
//! view of a 10,200-timer list in the DOM (fetching pages as it is scrolled, stopping at
//! 10,000 rows), and reads the browser's console after every page: no errors. Every page is photographed in light and dark into
//! `target/` (or `docs/screenshots/` with `MINOOTS_WRITE_SCREENSHOTS=1`). Webhooks go only
//! to a receiver this test runs on 127.0.0.1.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use common::{KillOnDrop, call, free_port, start_serve, until_event};
use reqwest::Method;
use serde_json::{Value, json};
use webdriver::Browser;

const ADMIN_KEY: &str = "mnt_browser_test_admin_key_0123456789abcdef";

/// Where screenshots go: the repository's docs when asked, else the target directory.
fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var("MINOOTS_WRITE_SCREENSHOTS").as_deref() == Ok("1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A webhook receiver on loopback answering with the status in `status`.
async fn receiver(status: Arc<AtomicU16>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let status = status.clone();
            async move {
                let code = status.load(Ordering::SeqCst);
                (
                    axum::http::StatusCode::from_u16(code).unwrap(),
                    format!("receiver answered {code}"),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

struct Ui {
    b: Browser,
    base: String,
    shots: PathBuf,
}

impl Ui {
    /// Fails on any console entry at SEVERE level (errors, CSP violations, failed loads)
    /// other than those `expected` names (substrings of the message).
    async fn no_console_errors(&self, page: &str, expected: &[&str]) {
        let bad: Vec<Value> = self
            .b
            .console()
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .filter(|e| {
                let m = e["message"].as_str().unwrap_or_default();
                !expected.iter().any(|x| m.contains(x))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "the console of {page} shows errors: {bad:#?}"
        );
    }

    /// A light and a dark PNG of the page as it is.
    async fn photograph(&self, name: &str) {
        for scheme in ["light", "dark"] {
            self.b.color_scheme(scheme).await;
            // The emulated scheme applies before the next frame: wait for the stylesheet's
            // background to follow it.
            let want = if scheme == "dark" {
                "rgb(15, 18, 22)"
            } else {
                "rgb(247, 248, 250)"
            };
            self.b
                .wait_for(
                    &format!("the {scheme} theme"),
                    &format!("getComputedStyle(document.body).backgroundColor === '{want}'"),
                )
                .await;
            let png = self.b.screenshot().await;
            assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
            std::fs::write(self.shots.join(format!("{name}-{scheme}.png")), png).unwrap();
        }
        self.b.color_scheme("light").await;
    }

    async fn open(&self, path: &str) {
        self.b.goto(&format!("{}{path}", self.base)).await;
    }

    async fn sign_in(&self, key: &str) {
        self.b.find("#sign-in").await;
        self.b.type_into("#api-key", key).await;
        self.b.click("#sign-in button[type=submit]").await;
        self.b.find("#sign-out").await;
    }

    async fn sign_out(&self) {
        self.b.click("#sign-out").await;
        self.b.find("#sign-in").await;
    }

    /// Holds the answers to the page's requests whose URL starts with `prefix`: each is
    /// sent, and answered by the server, but reaches the page only at `release_answers`.
    async fn hold_answers(&self, prefix: &str) {
        self.b
            .js(
                "window.__realFetch = window.__realFetch || window.fetch; window.__held = [];
                 window.fetch = (url, opts) => {
                   const answer = window.__realFetch(url, opts);
                   if (!String(url).startsWith(arguments[0])) return answer;
                   return answer.then((r) => new Promise((go) => window.__held.push(() => go(r))));
                 };",
                json!([prefix]),
            )
            .await;
    }

    /// Waits until `n` answers are held.
    async fn held_answers(&self, n: usize) {
        self.b
            .wait_for(
                &format!("{n} answers held"),
                &format!("window.__held.length === {n}"),
            )
            .await;
    }

    /// Lets the held answers through, and waits until the page `section` has loaded them.
    async fn release_answers(&self, section: &str) {
        self.b
            .js(
                "window.fetch = window.__realFetch; window.__held.forEach((go) => go());",
                json!([]),
            )
            .await;
        self.b
            .wait_for(
                "the list loaded",
                &format!("!document.querySelector('{section}').innerText.includes('Loading…')"),
            )
            .await;
    }

    /// The status the row of timer `id` shows, or null when it is not in the DOM.
    async fn shown_status(&self, id: &str) -> Value {
        self.b
            .js(
                "return document.querySelector(`tr[data-timer-id='${arguments[0]}']`)?.dataset.status ?? null",
                json!([id]),
            )
            .await
    }

    /// Waits until the row of `id` in the page's table shows `status`.
    async fn row_status(&self, id: &str, status: &str) {
        self.b
            .wait_for(
                &format!("timer {id} shown as {status}"),
                &format!("document.querySelector('tr[data-timer-id=\"{id}\"] .status, tr[data-timer-id=\"{id}\"][data-status=\"{status}\"]') && document.querySelector('tr[data-timer-id=\"{id}\"]').dataset.status === '{status}'"),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_is_served_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--demo"],
        &[],
    );
    let _child = KillOnDrop(child);
    let http = reqwest::Client::new();
    for (path, ty) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/timers/0193", "text/html"),
        ("/ui/js/main.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/vendor/htm-preact-3.1.1.js", "text/javascript"),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ty),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert!(h.contains_key("etag"), "{path}");
    }
    let r = http
        .get(format!("{base}/ui/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    if !webdriver::available() {
        println!(
            "skipped: no chromium ({} and {} are not installed)",
            webdriver::CHROMIUM,
            webdriver::CHROMEDRIVER
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--demo"],
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY)],
    );
    let _child = KillOnDrop(child);
    let http = reqwest::Client::new();
    let status = Arc::new(AtomicU16::new(200));
    let hook = receiver(status.clone()).await;

    // Tenant A on the pro tier, so the pages' requests stay within its rate limit.
    let admin = |path: &str, body: Value| {
        call(
            &http,
            Method::POST,
            format!("{base}{path}"),
            ADMIN_KEY,
            Some(body),
        )
    };
    let (code, t) = admin("/admin/tenants", json!({"id": "tenant-a", "tier": "pro"})).await;
    assert_eq!(code, 201, "{t}");
    let (code, k) = admin(
        "/admin/keys",
        json!({"tenantId": "tenant-a", "name": "tenant A"}),
    )
    .await;
    assert_eq!(code, 201, "{k}");
    let key_a = k["key"].as_str().unwrap().to_string();

    let ui = Ui {
        b: Browser::start((1280, 860)).await,
        base: base.clone(),
        shots: screenshot_dir(),
    };
    let b = &ui.b;

    // Signed out: the sign-in page, and no console error on the way.
    ui.open("/ui").await;
    b.find("#sign-in").await;
    ui.no_console_errors("the sign-in page", &[]).await;
    ui.photograph("sign-in").await;

    // A bad key is refused with the API's own sentence.
    let bad = "mnt_not_a_key_of_this_server_0000000000";
    let (code, problem) = call(
        &http,
        Method::POST,
        format!("{base}/ui/session"),
        "",
        Some(json!({"apiKey": bad})),
    )
    .await;
    assert_eq!(code, 401, "{problem}");
    b.type_into("#api-key", bad).await;
    b.click("#sign-in button[type=submit]").await;
    let shown = b
        .wait_for(
            "the refusal",
            "document.querySelector('#sign-in .error')?.innerText",
        )
        .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        shown.as_str().unwrap().contains(detail),
        "the page says {shown}, the API {detail}"
    );
    // The refused sign-in's 401 is the one console entry expected.
    ui.no_console_errors("a refused sign-in", &["/ui/session"])
        .await;

    // Sign in: the session cookie is HttpOnly, so scripts cannot read it.
    ui.sign_in(&key_a).await;
    b.find("#overview").await;
    let cookies = b.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "minoots_session")
        .unwrap_or_else(|| panic!("a session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    let visible = b.js("return document.cookie", json!([])).await;
    assert!(
        !visible.as_str().unwrap().contains("minoots_session"),
        "document.cookie = {visible}"
    );
    // A reload keeps the session.
    b.refresh().await;
    b.find("#overview").await;
    b.wait_for(
        "the live stream",
        "document.querySelector('#live-state')?.innerText === 'Live'",
    )
    .await;
    b.wait_for(
        "the usage table",
        "document.querySelector('#tier')?.innerText === 'pro'",
    )
    .await;
    ui.no_console_errors("the overview", &[]).await;

    // A timer created in the form turns settled on screen without a reload. It is created
    // while the list is loading (its answer held, as for the dead letters below), and
    // stays when the list arrives without it.
    ui.hold_answers("/timers?").await;
    b.click("header nav a[href='/ui/timers']").await;
    b.find("#create-timer").await;
    ui.held_answers(1).await;
    b.js("window.__sameDocument = true", json!([])).await;
    b.type_into("#new-name", "browser-settles").await;
    b.type_into("#new-duration", "1s").await;
    b.type_into("#new-webhook", &hook).await;
    b.type_into("#new-labels", "suite=browser, case=settle")
        .await;
    b.click("#new-submit").await;
    let id = b
        .wait_for("the new row", "[...document.querySelectorAll('tr[data-timer-id]')].find(r => r.innerText.includes('browser-settles'))?.dataset.timerId")
        .await;
    let id = id.as_str().unwrap().to_string();
    ui.release_answers("#timers").await;
    assert!(
        ui.shown_status(&id).await.is_string(),
        "a timer created while the list loaded is still shown"
    );
    ui.row_status(&id, "settled").await;
    assert_eq!(
        b.js("return window.__sameDocument === true", json!([]))
            .await,
        true,
        "the page was not reloaded"
    );
    ui.no_console_errors("the timers page", &[]).await;
    ui.photograph("timers").await;

    // Its page: the timeline from created to settled, with the attempt's status code.
    b.click(&format!("tr[data-timer-id='{id}'] a.name")).await;
    b.wait_for(
        "the settled step",
        "document.querySelector('#timeline')?.innerText.includes('Settled')",
    )
    .await;
    assert_eq!(b.text("#timeline .attempt .http-status").await, "200");
    assert!(b.text("#timeline").await.contains("Fired"));
    ui.no_console_errors("a timer's page", &[]).await;
    ui.photograph("timer").await;

    // Filters live in the URL and survive a reload.
    ui.open("/ui/timers").await;
    b.select("#f-status", "settled").await;
    b.type_into("#f-label", "suite:browser").await;
    b.click("#f-apply").await;
    b.wait_for("the filtered URL", "location.search.includes('status=settled') && location.search.includes('label=suite%3Abrowser')").await;
    b.refresh().await;
    b.find(&format!("tr[data-timer-id='{id}']")).await;
    assert_eq!(
        b.js(
            "return document.querySelector('#f-status').value",
            json!([])
        )
        .await,
        "settled"
    );
    assert_eq!(
        b.js("return document.querySelector('#f-label').value", json!([]))
            .await,
        "suite:browser"
    );
    let statuses = b
        .js(
            "return [...document.querySelectorAll('tr[data-timer-id]')].map(r => r.dataset.status)",
            json!([]),
        )
        .await;
    assert!(
        statuses.as_array().unwrap().iter().all(|s| s == "settled"),
        "{statuses}"
    );

    // A receiver answering 500 makes dead letters; one is redriven alone, three by filter,
    // once the receiver recovers.
    status.store(500, Ordering::SeqCst);
    let doomed = |name: &'static str, group: &'static str| {
        let (http, base, key_a, hook) = (&http, &base, &key_a, &hook);
        async move {
            let (code, t) = call(http, Method::POST, format!("{base}/timers"), key_a, Some(json!({
                "name": name, "duration": "100ms", "labels": {"dead": group},
                "actionBundle": {"actions": [{"type": "webhook", "url": hook}], "retryPolicy": {"maxAttempts": 1}},
            }))).await;
            assert_eq!(code, 201, "{t}");
            t["id"].as_str().unwrap().to_string()
        }
    };
    // The first one fails while the dead letters page loads: the server reads the page's
    // list before the failure, and the answer reaches the page after the failure's event.
    // The event must survive the answer (a wrapper around fetch holds the answer until
    // the event is on screen).
    ui.hold_answers("/timers?status=failed").await;
    b.click("header nav a[href='/ui/dead']").await;
    ui.held_answers(1).await;
    let mut dead = vec![doomed("dead-one", "one").await];
    ui.row_status(&dead[0], "failed").await;
    ui.release_answers("#dead").await;
    assert_eq!(
        ui.shown_status(&dead[0]).await,
        "failed",
        "a timer that failed while the list loaded is still shown"
    );
    for name in ["dead-a", "dead-b", "dead-c"] {
        dead.push(doomed(name, "three").await);
    }
    ui.open("/ui/dead").await;
    for id in &dead {
        ui.row_status(id, "failed").await;
    }
    b.wait_for(
        "the dead letter's error",
        "document.querySelector('#dead-table')?.innerText.includes('500')",
    )
    .await;
    ui.no_console_errors("the dead letters", &[]).await;
    ui.photograph("dead-letters").await;
    status.store(200, Ordering::SeqCst);
    b.click(&format!("tr[data-timer-id='{}'] .redrive-one", dead[0]))
        .await;
    ui.row_status(&dead[0], "settled").await;
    b.type_into("#d-label", "dead:three").await;
    b.click("#dead-filters button[type=submit]").await;
    b.wait_for(
        "the filter",
        "location.search.includes('label=dead%3Athree')",
    )
    .await;
    b.wait_for(
        "three rows",
        "document.querySelectorAll('#dead-table tr[data-timer-id]').length === 3",
    )
    .await;
    // A failure outside the filter stays off the filtered list (checked below, once the
    // redrive's later events are on screen).
    let mut events = http
        .get(format!("{base}/events?after=latest"))
        .header("X-API-Key", &key_a)
        .send()
        .await
        .unwrap();
    status.store(500, Ordering::SeqCst);
    let other = doomed("dead-other", "other").await;
    until_event(&mut events, "timer.failed").await;
    drop(events);
    status.store(200, Ordering::SeqCst);
    b.click("#redrive-matching").await;
    let ask = b.text("#confirm-text").await;
    assert!(ask.contains("all 3 failed timers"), "{ask}");
    b.click("#confirm-yes").await;
    for id in &dead[1..] {
        ui.row_status(id, "settled").await;
    }
    assert_eq!(
        ui.shown_status(&other).await,
        Value::Null,
        "a failure outside the filter is not listed"
    );
    ui.no_console_errors("bulk redrive", &[]).await;

    // The overview's chart is the server's count of the last hour (the five deaths and the
    // five successes above), not what this tab's stream happened to see.
    ui.open("/ui").await;
    b.wait_for(
        "the hour's deliveries on the overview",
        "(() => { const n = (k) => Number((document.querySelector(`.bar-${k}-key`)?.innerText || '').replace(/\\D+/g, '')); \
           return n('dead') >= 5 && n('succeeded') >= 5; })()",
    )
    .await;
    ui.no_console_errors("the overview's chart", &[]).await;

    // The account page: the plan, and on a server without billing, who sets it.
    b.click("header nav a[href='/ui/account']").await;
    b.find("#account").await;
    b.wait_for(
        "the plan and the billing sentence",
        "document.querySelector('#plan-tier')?.innerText === 'pro' && !!document.querySelector('#billing-off')",
    )
    .await;
    ui.no_console_errors("the account page", &["/billing"])
        .await;
    ui.photograph("account").await;

    // A cookie write without the CSRF token, or from another Origin, is refused.
    let without_token = b.js_async(
        "const done = arguments[arguments.length - 1]; \
         fetch('/timers', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({duration: '1h'})}) \
           .then(r => done(r.status), e => done(String(e)));",
        json!([]),
    ).await;
    assert_eq!(without_token, 403);
    let cookie = format!("minoots_session={}", session["value"].as_str().unwrap());
    let csrf = b.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/ui/session').then(r => r.json()).then(s => done(s.csrfToken));",
        json!([]),
    ).await;
    let post = |origin: &str| {
        http.post(format!("{base}/timers"))
            .header("cookie", &cookie)
            .header("x-csrf-token", csrf.as_str().unwrap())
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(r#"{"duration": "1h"}"#)
            .send()
    };
    assert_eq!(post("http://attacker.example").await.unwrap().status(), 403);
    assert_eq!(
        post(&base).await.unwrap().status(),
        201,
        "the same write from the page's origin is accepted"
    );
    ui.no_console_errors("the CSRF checks", &["/timers"]).await;

    // Sign-out ends the session, also after a reload.
    ui.sign_out().await;
    b.refresh().await;
    b.find("#sign-in").await;
    let after = b.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/usage').then(r => done(r.status));",
        json!([]),
    ).await;
    assert_eq!(after, 401);
    ui.no_console_errors("sign-out", &["/usage"]).await;

    // Admin: a tenant B with a key, shown once; the admin page only for admin keys.
    ui.sign_in(ADMIN_KEY).await;
    b.click("header nav a[href='/ui/admin']").await;
    b.find("#admin").await;
    b.type_into("#tenant-id", "tenant-b").await;
    b.click("#new-tenant button[type=submit]").await;
    b.find("tr[data-tenant-id='tenant-b']").await;
    b.select("#key-tenant", "tenant-b").await;
    b.type_into("#key-name", "browser key").await;
    b.click("#key-create").await;
    let key_b = b.text("#new-key-text").await;
    assert!(key_b.starts_with("mnt_"), "{key_b}");
    ui.no_console_errors("the admin page", &[]).await;
    ui.photograph("admin").await;
    b.click("#new-key-done").await;
    ui.sign_out().await;

    // Tenant B sees none of tenant A's timers, not even by id.
    ui.sign_in(key_b.trim()).await;
    assert!(
        b.js(
            "return !document.querySelector(\"header nav a[href='/ui/admin']\")",
            json!([])
        )
        .await
            == true,
        "no admin link for a tenant key"
    );
    ui.open("/ui/timers").await;
    b.find("#no-timers").await;
    ui.photograph("timers-empty").await;
    ui.open(&format!("/ui/timers?q={id}")).await;
    b.find("#no-timers").await;
    ui.open(&format!("/ui/timers/{id}")).await;
    b.wait_for(
        "the not-found sentence",
        "document.querySelector('main .error')?.innerText",
    )
    .await;
    for page in ["/ui/timers", "/ui/dead", "/ui"] {
        ui.open(page).await;
        b.find("main section").await;
        let text = b
            .js("return document.querySelector('main').innerText", json!([]))
            .await;
        for a in std::iter::once(&id).chain(&dead) {
            assert!(
                !text.as_str().unwrap().contains(a.as_str()),
                "{page} shows tenant A's {a}"
            );
        }
    }
    ui.no_console_errors("tenant B's pages", &[&id]).await;

    // A quota refusal shows the API's sentence: the free tier allows 5 pending timers.
    let mut refusal = Value::Null;
    for _ in 0..6 {
        let (code, body) = call(
            &http,
            Method::POST,
            format!("{base}/timers"),
            key_b.trim(),
            Some(json!({"duration": "1h"})),
        )
        .await;
        if code == 429 {
            refusal = body;
            break;
        }
        assert_eq!(code, 201, "{body}");
    }
    let detail = refusal["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("a quota refusal: {refusal}"));
    ui.open("/ui/timers").await;
    b.type_into("#new-duration", "1h").await;
    b.click("#new-submit").await;
    let shown = b
        .wait_for(
            "the quota refusal",
            "document.querySelector('#create-timer .error')?.innerText",
        )
        .await;
    assert!(
        shown
            .as_str()
            .unwrap()
            .contains(detail.split(';').next().unwrap()),
        "page: {shown}; API: {detail}"
    );
    ui.no_console_errors("a quota refusal", &["/timers"]).await;

    // The overview of tenant B, for the pictures.
    ui.open("/ui").await;
    b.wait_for(
        "the counts",
        "document.querySelector('#count-scheduled .count')?.innerText === '5'",
    )
    .await;
    ui.no_console_errors("tenant B's overview", &[]).await;
    ui.photograph("overview").await;

    // Long lists are virtualised: of 10,200 timers only the rows in view (and a few
    // beyond) are in the DOM, each 52 px high; the next page comes as the list is
    // scrolled to its end, and the page stops at 10,000 rows and says so.
    let key_many =
        webdriver::tenant_with_key(&http, &base, ADMIN_KEY, "tenant-many", "unlimited").await;
    const MANY: usize = 10_200;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut creating = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, base, key, next) = (http.clone(), base.clone(), key_many.clone(), next.clone());
        creating.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= MANY {
                    break;
                }
                // Fire-time order is creation order: many-00000 first.
                let body =
                    json!({"name": format!("many-{i:05}"), "duration": format!("{}s", 3600 + i)});
                let (code, t) = call(
                    &http,
                    Method::POST,
                    format!("{base}/timers"),
                    &key,
                    Some(body),
                )
                .await;
                assert_eq!(code, 201, "{t}");
            }
        });
    }
    while let Some(r) = creating.join_next().await {
        r.unwrap();
    }
    ui.sign_out().await;
    ui.sign_in(&key_many).await;
    ui.open("/ui/timers").await;
    b.wait_for(
        "the first page",
        "document.querySelector('#rows-count')?.innerText.startsWith('200 loaded')",
    )
    .await;
    let shape = "const rows = [...document.querySelectorAll('#timers-table tr.row')]; \
                 return {rows: rows.length, heights: [...new Set(rows.map(r => r.getBoundingClientRect().height))], \
                   marks: performance.getEntriesByName('timers-rendered').length}";
    let first = b.js(shape, json!([])).await;
    let in_dom = first["rows"].as_u64().unwrap();
    assert!((10..=60).contains(&in_dom), "rows in the DOM: {first}");
    assert_eq!(first["heights"], json!([52]), "{first}");
    assert_eq!(first["marks"], 1, "{first}");
    // Each poll scrolls to the end, which asks for the next page, until the cap.
    b.wait_for(
        "the page to stop at 10,000 rows",
        "(() => { const box = document.querySelector('#timers-table-box'); box.scrollTop = box.scrollHeight; \
          return document.querySelector('#rows-capped'); })()",
    )
    .await;
    b.wait_for(
        "the last rows in view",
        "(() => { const box = document.querySelector('#timers-table-box'); box.scrollTop = box.scrollHeight; \
          return [...document.querySelectorAll('#timers-table tr.row')].pop()?.innerText.includes('many-09999'); })()",
    )
    .await;
    let end = b.js(shape, json!([])).await;
    assert!(
        end["rows"].as_u64().unwrap() <= 60,
        "rows in the DOM: {end}"
    );
    assert_eq!(end["heights"], json!([52]), "{end}");
    assert!(
        b.text("#rows-count").await.starts_with("10000 loaded"),
        "{}",
        b.text("#rows-count").await
    );
    assert!(b.text("#rows-capped").await.contains("first 10,000"));
    ui.no_console_errors("a long list", &[]).await;
}
