//! A small W3C WebDriver client over `reqwest`, enough to drive headless Chromium through
//! `chromedriver` in the dashboard's browser tests: navigate, find, click, type, run a
//! script, read the browser's console log, take screenshots, and call Chrome DevTools
//! commands (`goog/cdp/execute`) such as emulating `prefers-color-scheme`.
//!
//! It starts its own `chromedriver` on a free loopback port and kills it when dropped.
//! Waits poll the page with a deadline; nothing here sleeps a fixed time to let the page
//! "settle".
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where Debian's `chromium` and `chromium-driver` packages put their binaries.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for the page lasts before the test fails.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);
/// How often a wait looks at the page again.
const POLL: Duration = Duration::from_millis(50);

/// Whether both binaries are installed (the test is skipped otherwise).
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// A running chromedriver with one browser session.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:{port}/session/{id}`
    session: String,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: ends the browser; the driver is killed either way.
        let _ = http_delete(&self.session);
        // Chromium is chromedriver's child in the driver's own process group: end the
        // group, so no browser outlives a test that failed or was stopped.
        // SAFETY: a signal to a process group this client created.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A DELETE over a plain HTTP/1.0 connection: `Drop` cannot await reqwest.
fn http_delete(url: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "DELETE /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with the browser log enabled.
    pub async fn start(window: (u32, u32)) -> Browser {
        let port = crate::common::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(bytes) = r.bytes().await
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(started.elapsed() < PAGE_WAIT, "chromedriver is ready");
            tokio::time::sleep(POLL).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                         format!("--window-size={},{}", window.0, window.1)],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let bytes = http
            .post(format!("{base}/session"))
            .header("content-type", "application/json")
            .body(caps.to_string())
            .send()
            .await
            .expect("chromedriver answers")
            .bytes()
            .await
            .expect("an answer");
        let r: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a browser session: {r}"));
        Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("chromedriver answers");
        let status = r.status();
        let bytes = r.bytes().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path} answered {status}: {v}"
        );
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn refresh(&self) {
        self.cmd(reqwest::Method::POST, "/refresh", Some(json!({})))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs an async script: it must call `arguments[arguments.length - 1](result)`.
    pub async fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `expr` (a JavaScript expression) until it is truthy; returns its value.
    /// Panics with `what` after [`PAGE_WAIT`].
    pub async fn wait_for(&self, what: &str, expr: &str) -> Value {
        let script = format!("try {{ return ({expr}); }} catch (e) {{ return null; }}");
        let started = Instant::now();
        loop {
            let v = self.js(&script, json!([])).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if started.elapsed() > PAGE_WAIT {
                let body = self
                    .js(
                        "return document.body ? document.body.innerText.slice(0, 2000) : ''",
                        json!([]),
                    )
                    .await;
                let console = self.console().await;
                let loads = self
                    .js(
                        "return location.href + ' ' + performance.getEntriesByType('resource').map(e => `${e.name} ${e.responseStatus} ${Math.round(e.duration)}ms`).join('\\n')",
                        json!([]),
                    )
                    .await;
                panic!(
                    "waited {PAGE_WAIT:?} for {what} ({expr}); the page shows:\n{}\nconsole: {console:#?}\nloads: {}",
                    body.as_str().unwrap_or_default(),
                    loads.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The element matching a CSS selector (waits until it exists).
    pub async fn find(&self, css: &str) -> String {
        self.wait_for(
            &format!("element {css}"),
            &format!("document.querySelector({})", json!(css)),
        )
        .await;
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT_KEY].as_str().expect("an element id").to_string()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clears an input and types `text` into it (as keystrokes, so the page sees input
    /// events).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Chooses `value` in a `<select>` and tells the page.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css).await;
        self.js(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
             s.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([css, value]),
        )
        .await;
    }

    /// The text of the element matching `css` (waits until it exists).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await;
        self.js(
            "return document.querySelector(arguments[0]).innerText",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Every cookie of the page, HttpOnly ones included (WebDriver sees them; scripts do
    /// not).
    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd(reqwest::Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Entries of the browser's console log since the last call (reading empties it).
    pub async fn console(&self) -> Vec<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/se/log",
            Some(json!({"type": "browser"})),
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// Emulates the system's colour scheme (`light` or `dark`).
    pub async fn color_scheme(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64_decode(b64.as_str().expect("base64 text"))
    }
}

/// Makes tenant `tenant` on `tier` and a key of it through the admin API; returns the key.
pub async fn tenant_with_key(
    http: &reqwest::Client,
    base: &str,
    admin_key: &str,
    tenant: &str,
    tier: &str,
) -> String {
    let post = |path: &str, body: Value| {
        crate::common::call(
            http,
            reqwest::Method::POST,
            format!("{base}{path}"),
            admin_key,
            Some(body),
        )
    };
    let (code, t) = post("/admin/tenants", json!({"id": tenant, "tier": tier})).await;
    assert_eq!(code, 201, "{t}");
    let (code, k) = post("/admin/keys", json!({"tenantId": tenant, "name": tenant})).await;
    assert_eq!(code, 201, "{k}");
    k["key"].as_str().expect("the new key").to_string()
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    }
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
}
