//! Helpers for tests that start real `minoots` processes.
#![allow(dead_code)]

pub mod pg;
pub mod stripe;
pub mod yaml;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `minoots kernel` and waits for its readiness line on stdout.
pub fn start_kernel(data_dir: &Path) -> (Child, String) {
    let grpc = format!("127.0.0.1:{}", free_port());
    let args = [
        "kernel",
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 path"),
        "--grpc-addr",
        &grpc,
        "--http-addr",
        "127.0.0.1:0",
    ];
    let (child, line) = start_process(&args, &[], "minoots kernel ready on ");
    let addr = line
        .trim_start_matches("minoots kernel ready on ")
        .to_string();
    (child, format!("http://{addr}"))
}

/// Starts `minoots orchestrator` against `kernel_url` with extra flags; waits until it runs.
pub fn start_orchestrator(kernel_url: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "orchestrator",
        "--kernel-url",
        kernel_url,
        "--http-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    start_process(&args, &[], "minoots orchestrator running").0
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &Child) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

/// Starts a `minoots` subcommand with `args` and `env`, and waits for a stdout line that
/// starts with `ready_prefix`; returns the child and that line.
pub fn start_process(
    args: &[&str],
    env: &[(&str, &str)],
    ready_prefix: &'static str,
) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minoots"));
    cmd.args(args)
        .env("MINOOTS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start minoots");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(ready_prefix) {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("minoots {args:?} printed \"{ready_prefix}\""));
    (child, line)
}

/// Starts `minoots serve` on `data_dir` with fixed ports (so a restart answers at the same
/// address) and extra flags; waits for its ready line. Returns the child and the REST base URL.
pub fn start_serve(
    data_dir: &Path,
    http_port: u16,
    grpc_port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, String) {
    let http = format!("127.0.0.1:{http_port}");
    let grpc = format!("127.0.0.1:{grpc_port}");
    let mut args = vec![
        "serve",
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 path"),
        "--http-addr",
        &http,
        "--grpc-addr",
        &grpc,
    ];
    args.extend_from_slice(extra);
    let (child, _) = start_process(&args, env, "minoots ready on ");
    (child, format!("http://{http}"))
}

/// Waits (bounded by `limit`) for a child to exit; kills it and panics if it does not.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for minoots") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("minoots did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Owns a child process and SIGKILLs it when dropped, so a failing test leaves no server
/// running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `method url` with the API key and an optional JSON body; returns the status and
/// the JSON answer (null when the answer is not JSON).
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = http.request(method, url).header("X-API-Key", key);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// POSTs `body` to `{base}/timers` with the API key and checks that the timer was
/// created (201); returns it.
pub async fn create_timer(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let (status, timer) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/timers"),
        key,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{timer}");
    timer
}

/// GETs `url` with the API key and parses the JSON body.
pub async fn get_json(http: &reqwest::Client, url: &str, key: &str) -> serde_json::Value {
    call(http, reqwest::Method::GET, url.to_string(), key, None)
        .await
        .1
}

/// The exposition is OpenMetrics as the Prometheus project's own Python client reads it
/// (its strict parser: one `# EOF` at the end, each family once, counters' `_total`,
/// histogram buckets cumulative and ending at `+Inf`). Prints "skipped" where python3 has
/// no `prometheus_client` (CI installs it).
pub fn openmetrics_parses(text: &str) {
    use std::io::Write as _;
    let probe = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        println!("skipped the OpenMetrics parser: python3 has no prometheus_client");
        return;
    }
    let mut parser = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nprint(len(list(parse(sys.stdin.read()))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = parser.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refuses the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Prometheus text of `{base}/metrics`.
pub async fn scrape(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap()
}

/// Reads an SSE stream until an event of `ty` arrives.
pub async fn until_event(resp: &mut reqwest::Response, ty: &str) {
    let mut seen = String::new();
    while !seen.contains(&format!("event: {ty}")) {
        let chunk = tokio::time::timeout(WAIT, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("event {ty} arrives"))
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}
