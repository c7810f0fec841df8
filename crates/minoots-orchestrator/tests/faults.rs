//! Webhook destinations that misbehave: errors, throttling, hangs, resets, slow and huge
//! bodies, redirect loops, TLS failures and a black-holed host. A real kernel on SQLite,
//! the orchestrator, and raw TCP servers on loopback that misbehave on purpose. In every
//! case the orchestrator keeps running and keeps delivering to healthy destinations.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Setup, WAIT, start_with};
use minoots_core::{AttemptOutcome, Clock, SystemClock, TimerStatus};
use minoots_kernel::KernelApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How a fault server treats one connection.
#[derive(Clone, Debug)]
enum Fault {
    /// `200 OK` with a short body.
    Ok,
    /// This status with these extra headers.
    Status(u16, Vec<(&'static str, String)>),
    /// Reads the request and never answers, keeping the connection open.
    Hang,
    /// Sends half a status line, then resets the connection (RST).
    ResetBeforeStatus,
    /// Sends a 200 with a 1,000-byte length and 10 bytes of it, then resets.
    ResetMidBody,
    /// Sends the status line, then one header byte every 100 ms, forever.
    SlowHeaders,
    /// Sends a complete head, then one body byte every 100 ms, forever.
    SlowBody,
    /// Sends a 100 MiB body as fast as the client takes it.
    Huge,
    /// Answers 302 with its own URL as the location.
    RedirectToSelf,
}

/// One connection as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// Wall clock (µs since the epoch) when the request was read.
    at_us: i64,
    /// The `x-minoots-timer-id` header, if the request had one.
    timer_id: Option<String>,
}

/// A loopback TCP server that misbehaves as scripted: each connection takes the next
/// fault of the script, then `default` once the script is empty.
struct FaultServer {
    addr: SocketAddr,
    script: Mutex<VecDeque<Fault>>,
    default: Fault,
    seen: Mutex<Vec<Seen>>,
    arrived: Notify,
    /// Body bytes written by `Huge` connections that have ended.
    huge_bytes_written: AtomicU64,
    huge_done: Notify,
}

impl FaultServer {
    async fn start(ip: &str, script: Vec<Fault>, default: Fault) -> Arc<Self> {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let server = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            script: Mutex::new(script.into()),
            default,
            seen: Mutex::default(),
            arrived: Notify::new(),
            huge_bytes_written: AtomicU64::new(0),
            huge_done: Notify::new(),
        });
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(conn).await });
            }
        });
        server
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/hook", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests were read.
    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                if self.seen.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} requests did not reach {}", self.addr));
    }

    async fn serve(self: Arc<Self>, mut conn: TcpStream) {
        let head = read_request(&mut conn).await;
        let fault = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.clone());
        let timer_id = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-minoots-timer-id")
                .then(|| v.trim().to_string())
        });
        self.seen.lock().unwrap().push(Seen {
            at_us: SystemClock.now_us(),
            timer_id,
        });
        self.arrived.notify_waiters();
        let plain = |code: u16, extra: &str| {
            format!(
                "HTTP/1.1 {code} Whatever\r\ncontent-length: 2\r\nconnection: close\r\n{extra}\r\nok"
            )
        };
        match fault {
            Fault::Ok => {
                let _ = conn.write_all(plain(200, "").as_bytes()).await;
            }
            Fault::Status(code, headers) => {
                let extra: String = headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}\r\n"))
                    .collect();
                let _ = conn.write_all(plain(code, &extra).as_bytes()).await;
            }
            Fault::Hang => {
                // Hold the connection open without a byte until the client gives up.
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            Fault::ResetBeforeStatus => {
                let _ = conn.write_all(b"HTTP/1.1 20").await;
                reset(conn);
            }
            Fault::ResetMidBody => {
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial...")
                    .await;
                let _ = conn.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                reset(conn);
            }
            Fault::SlowHeaders => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nx-slow: ").await;
                trickle(conn).await;
            }
            Fault::SlowBody => {
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
                    .await;
                trickle(conn).await;
            }
            Fault::Huge => {
                let size: u64 = 100 << 20;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                let _ = conn.write_all(head.as_bytes()).await;
                let chunk = vec![b'x'; 64 << 10];
                let mut written = 0u64;
                while written < size {
                    match conn.write(&chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => written += n as u64,
                    }
                }
                self.huge_bytes_written.fetch_add(written, Ordering::SeqCst);
                self.huge_done.notify_waiters();
            }
            Fault::RedirectToSelf => {
                let here = self.url("http");
                let _ = conn
                    .write_all(plain(302, &format!("location: {here}\r\n")).as_bytes())
                    .await;
            }
        }
    }
}

/// Reads a request head and its body (by `content-length`), or whatever arrives within
/// 2 s (a TLS client hello has no head to find). Never more than 1 MiB.
async fn read_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return;
                }
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 1 << 20 {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Closes with a TCP reset instead of a FIN. A zero linger does not block on drop: the
/// socket is reset at once (the deprecation warns about non-zero lingers).
#[allow(deprecated)]
fn reset(conn: TcpStream) {
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}

/// Writes one byte every 100 ms until the client goes away (at most 10 minutes).
async fn trickle(mut conn: TcpStream) {
    for _ in 0..6_000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if conn.write_all(b"x").await.is_err() {
            return;
        }
    }
}

const RETRY_FAST: &str = r#"{"maxAttempts": 3, "initialBackoffMs": 50, "maxBackoffMs": 200}"#;
const RETRY_TWICE: &str = r#"{"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200}"#;
const ONE_ATTEMPT: &str = r#"{"maxAttempts": 1, "initialBackoffMs": 50, "maxBackoffMs": 200}"#;

/// A healthy destination still gets its delivery, and the orchestrator still runs.
async fn assert_still_delivers(s: &Setup) {
    let healthy = FaultServer::start("127.0.0.2", vec![], Fault::Ok).await;
    let t = s
        .schedule("10ms", &healthy.url("http"), "", ONE_ATTEMPT)
        .await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    s.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_and_then_succeeds() {
    let server = FaultServer::start("127.0.0.1", vec![Fault::Status(500, vec![])], Fault::Ok).await;
    let s = start_with(|_| {}).await;
    let t = s
        .schedule("10ms", &server.url("http"), "", RETRY_FAST)
        .await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    let d = s.delivery(t.id).await;
    let statuses: Vec<_> = d.attempts.iter().map(|a| a.http_status).collect();
    assert_eq!(statuses, [Some(500), Some(200)]);
    assert_eq!(d.attempts[0].outcome, AttemptOutcome::Retryable);
    assert_still_delivers(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_not_retried_before_it() {
    let throttled = Fault::Status(429, vec![("retry-after", "2".into())]);
    let server = FaultServer::start("127.0.0.1", vec![throttled], Fault::Ok).await;
    let s = start_with(|_| {}).await;
    // The retry policy alone would retry after at most 200 ms; Retry-After says 2 s and
    // is honoured up to maxBackoffMs.
    let retry = r#"{"maxAttempts": 3, "initialBackoffMs": 50, "maxBackoffMs": 10000}"#;
    let t = s.schedule("10ms", &server.url("http"), "", retry).await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    let d = s.delivery(t.id).await;
    assert_eq!(d.attempts.len(), 2);
    assert_eq!(d.attempts[0].http_status, Some(429));
    let first_ended = d.attempts[0].started_at_us + d.attempts[0].duration_us;
    let gap_ms = (d.attempts[1].started_at_us - first_ended) / 1_000;
    assert!(
        (2_000..6_000).contains(&gap_ms),
        "the second attempt started {gap_ms} ms after the 429 (Retry-After: 2)"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_times_out_at_the_action_timeout_while_others_are_delivered() {
    let hang = FaultServer::start("127.0.0.1", vec![], Fault::Hang).await;
    let s = start_with(|_| {}).await;
    let started = Instant::now();
    let t = s
        .schedule(
            "10ms",
            &hang.url("http"),
            r#", "timeoutMs": 3000"#,
            RETRY_TWICE,
        )
        .await;
    hang.wait_for(1).await;
    // While the first attempt hangs, another destination is served.
    assert_still_delivers(&s).await;
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "the healthy delivery waited for the hanging one ({:?})",
        started.elapsed()
    );
    let t = s.wait_status(t.id, TimerStatus::Failed).await;
    assert_eq!(hang.seen().len(), 2, "retried once after the timeout");
    let d = s.delivery(t.id).await;
    for a in &d.attempts {
        assert_eq!(a.outcome, AttemptOutcome::Retryable);
        let err = a.error.as_deref().unwrap_or("");
        assert!(err.contains("3000 ms"), "{err}");
        assert!(
            (2_900_000..6_000_000).contains(&a.duration_us),
            "an attempt took {} µs against a 3000 ms timeout",
            a.duration_us
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_is_a_retryable_error_and_a_reset_body_keeps_its_status() {
    let server = FaultServer::start("127.0.0.1", vec![Fault::ResetBeforeStatus], Fault::Ok).await;
    let s = start_with(|_| {}).await;
    let t = s
        .schedule("10ms", &server.url("http"), "", RETRY_FAST)
        .await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    let d = s.delivery(t.id).await;
    assert_eq!(d.attempts.len(), 2);
    assert_eq!(d.attempts[0].http_status, None);
    assert_eq!(d.attempts[0].outcome, AttemptOutcome::Retryable);
    let err = d.attempts[0].error.as_deref().unwrap_or("");
    assert!(!err.is_empty(), "the reset is recorded");
    assert_eq!(d.attempts[1].http_status, Some(200));

    // A reset after the status: the receiver answered 200, so the attempt succeeded; the
    // excerpt holds what arrived before the reset.
    let mid = FaultServer::start("127.0.0.1", vec![], Fault::ResetMidBody).await;
    let t = s.schedule("10ms", &mid.url("http"), "", ONE_ATTEMPT).await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    let a = &s.delivery(t.id).await.attempts[0];
    assert_eq!(a.http_status, Some(200));
    assert_eq!(a.response_excerpt.as_deref(), Some("partial..."));
    assert!(a.duration_us < 2_000_000, "took {} µs", a.duration_us);
    assert_still_delivers(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_time_out_and_a_slow_body_ends_with_the_timeout() {
    let slow_head = FaultServer::start("127.0.0.1", vec![], Fault::SlowHeaders).await;
    let slow_body = FaultServer::start("127.0.0.1", vec![], Fault::SlowBody).await;
    let s = start_with(|_| {}).await;
    let head = s
        .schedule(
            "10ms",
            &slow_head.url("http"),
            r#", "timeoutMs": 1000"#,
            ONE_ATTEMPT,
        )
        .await;
    let body = s
        .schedule(
            "10ms",
            &slow_body.url("http"),
            r#", "timeoutMs": 1000"#,
            ONE_ATTEMPT,
        )
        .await;
    s.wait_status(head.id, TimerStatus::Failed).await;
    let a = &s.delivery(head.id).await.attempts[0];
    assert_eq!(a.outcome, AttemptOutcome::Retryable);
    assert!(
        a.error.as_deref().unwrap_or("").contains("1000 ms"),
        "{:?}",
        a.error
    );
    assert!(
        a.duration_us < 2_500_000,
        "a trickling head held the attempt {} µs (timeout 1000 ms)",
        a.duration_us
    );
    // The status arrived in time, so it decides; the trickling body is cut at the timeout.
    s.wait_status(body.id, TimerStatus::Settled).await;
    let a = &s.delivery(body.id).await.attempts[0];
    assert_eq!(a.http_status, Some(200));
    assert!(
        a.duration_us < 2_500_000,
        "a trickling body held the attempt {} µs (timeout 1000 ms)",
        a.duration_us
    );
    let excerpt = a.response_excerpt.as_deref().unwrap_or("");
    assert!(
        !excerpt.is_empty() && excerpt.len() < 40,
        "excerpt of {} bytes",
        excerpt.len()
    );
    assert_still_delivers(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_response_is_cut_at_4_kib_and_never_read_whole() {
    let huge = FaultServer::start("127.0.0.1", vec![], Fault::Huge).await;
    let s = start_with(|_| {}).await;
    let done = huge.huge_done.notified();
    let t = s
        .schedule(
            "10ms",
            &huge.url("http"),
            r#", "timeoutMs": 20000"#,
            ONE_ATTEMPT,
        )
        .await;
    s.wait_status(t.id, TimerStatus::Settled).await;
    let a = &s.delivery(t.id).await.attempts[0];
    assert_eq!(a.http_status, Some(200));
    assert_eq!(a.response_excerpt.as_deref().map(str::len), Some(4096));
    assert!(
        a.duration_us < 3_000_000,
        "reading the excerpt took {} µs",
        a.duration_us
    );
    tokio::time::timeout(WAIT, done)
        .await
        .expect("the client closed the connection instead of reading on");
    let written = huge.huge_bytes_written.load(Ordering::SeqCst);
    assert!(
        written < 32 << 20,
        "the server wrote {written} bytes of 100 MiB: the client kept reading"
    );
    assert_still_delivers(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_is_not_followed() {
    let server = FaultServer::start("127.0.0.1", vec![], Fault::RedirectToSelf).await;
    let s = start_with(|_| {}).await;
    let t = s
        .schedule("10ms", &server.url("http"), "", RETRY_FAST)
        .await;
    s.wait_status(t.id, TimerStatus::Failed).await;
    let d = s.delivery(t.id).await;
    assert_eq!(d.attempts.len(), 1, "a redirect is final, not retried");
    assert_eq!(d.attempts[0].http_status, Some(302));
    assert_eq!(d.attempts[0].outcome, AttemptOutcome::Permanent);
    assert!(
        d.attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not followed"),
        "{:?}",
        d.attempts[0].error
    );
    assert_eq!(server.seen().len(), 1, "the loop was not followed");
    assert_still_delivers(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_failure_is_a_retried_connection_error() {
    // https:// to a plain-text server: the handshake fails.
    let plain = FaultServer::start("127.0.0.1", vec![], Fault::Status(400, vec![])).await;
    let s = start_with(|_| {}).await;
    let t = s
        .schedule("10ms", &plain.url("https"), "", RETRY_TWICE)
        .await;
    s.wait_status(t.id, TimerStatus::Failed).await;
    let d = s.delivery(t.id).await;
    assert_eq!(d.attempts.len(), 2, "retried");
    for a in &d.attempts {
        assert_eq!(a.outcome, AttemptOutcome::Retryable);
        assert_eq!(a.http_status, None, "no HTTP status without TLS");
        let err = a.error.as_deref().unwrap_or("");
        assert!(err.contains("connect"), "{err}");
    }
    assert_eq!(plain.seen().len(), 2, "two handshakes were tried");
    assert_still_delivers(&s).await;
    s.stop().await;
}

/// p50 and p99 of `values` (microseconds), sorted in place.
fn percentiles(values: &mut [i64]) -> (i64, i64) {
    values.sort_unstable();
    let at =
        |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    (at(0.50), at(0.99))
}

/// Schedules `n` timers to the healthy server due at once and returns due→received
/// latencies in microseconds, waiting until all arrived.
async fn healthy_latencies(s: &Setup, healthy: &FaultServer, n: usize) -> Vec<i64> {
    let before = healthy.seen().len();
    let mut due = std::collections::HashMap::new();
    for _ in 0..n {
        let t = s
            .schedule("200ms", &healthy.url("http"), "", ONE_ATTEMPT)
            .await;
        due.insert(t.id.to_string(), t.fire_at_us);
    }
    let wait = tokio::time::timeout(Duration::from_secs(20), healthy.wait_for(before + n)).await;
    let seen = healthy.seen();
    assert!(
        wait.is_ok(),
        "only {} of {n} healthy deliveries arrived within 20 s",
        seen.len() - before
    );
    seen[before..]
        .iter()
        .map(|r| {
            let id = r.timer_id.as_deref().expect("x-minoots-timer-id sent");
            r.at_us - due[id]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_host_does_not_delay_deliveries_to_healthy_hosts() {
    // Small limits so a few dozen deliveries saturate them: 16 at once, 4 per host (and 16
    // waiting per host). Per-host limits key on the host without the port, so the two
    // servers use two addresses.
    let black_hole = FaultServer::start("127.0.0.1", vec![], Fault::Hang).await;
    let healthy = FaultServer::start("127.0.0.2", vec![], Fault::Ok).await;
    let s = start_with(|c| {
        c.max_in_flight = 16;
        c.max_per_host = 4;
    })
    .await;

    // Bursts of 20, what the healthy host can run and queue (4 + 16) without deferral.
    let mut baseline = Vec::new();
    for _ in 0..3 {
        baseline.extend(healthy_latencies(&s, &healthy, 20).await);
    }
    let (base_p50, base_p99) = percentiles(&mut baseline);

    // 40 deliveries to the black hole first (each would hang 30 s), then the healthy ones.
    let mut dead = Vec::new();
    for _ in 0..40 {
        let t = s
            .schedule(
                "100ms",
                &black_hole.url("http"),
                r#", "timeoutMs": 30000"#,
                ONE_ATTEMPT,
            )
            .await;
        dead.push(t.id);
    }
    black_hole.wait_for(4).await;
    let mut with_hole = Vec::new();
    for _ in 0..3 {
        with_hole.extend(healthy_latencies(&s, &healthy, 20).await);
    }
    let (p50, p99) = percentiles(&mut with_hole);
    eprintln!(
        "healthy due→received: alone p50 {} µs p99 {} µs; beside a black hole p50 {} µs p99 {} µs",
        base_p50, base_p99, p50, p99
    );
    assert!(
        p99 < 2_000_000,
        "healthy deliveries waited behind the black hole: p99 {p99} µs"
    );
    // The black hole holds no more than its per-host share, and nothing of it ran twice.
    assert!(
        black_hole.seen().len() <= 4,
        "{} connections to the black hole at once (per-host limit 4)",
        black_hole.seen().len()
    );
    for id in &dead[..4] {
        let t = s.kernel.get_timer("acme", *id).await.unwrap();
        assert_eq!(
            t.status,
            TimerStatus::Fired,
            "still waiting for the black hole"
        );
    }
    s.stop().await;
}
