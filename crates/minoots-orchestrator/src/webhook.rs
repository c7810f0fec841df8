//! Webhook actions: one signed HTTP request per attempt, classified for retry.
//!
//! The request carries the action's method, headers and body (by default the event
//! envelope), the Standard Webhooks headers (`webhook-id` is the delivery id, stable
//! across retries), `x-minoots-timer-id`, `x-minoots-attempt`, for a schedule's run
//! `x-minoots-schedule-id` and `x-minoots-scheduled-at` (one timer per slot, so the
//! delivery id is also the slot's stable idempotency value), the W3C `traceparent` of
//! the attempt when the timer's create had one (unless the tenant set its own), and a
//! `User-Agent` naming MINOOTS. Redirects are never followed; proxies from the environment are never used.
//! Every address the host resolves to passes the SSRF guard at connect time.
//!
//! Outcome: 2xx succeeded; 410 and other 4xx (but 429) permanent; 3xx permanent with the
//! `Location`; 429, 5xx, timeouts, connection and TLS errors retryable, honouring
//! `Retry-After` (seconds or an HTTP date). Only the first 4 KiB of a response is read.
//!
//! Nothing is sent other than as the timer says: a header or body that cannot be sent
//! exactly as written (refused at creation, but a timer stored by an older version may
//! carry one) fails the attempt for good with the reason, instead of being dropped,
//! emptied or replaced.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use minoots_core::action::{encode_json, webhook_header_problem};
use minoots_core::limits::{MAX_ATTEMPT_ERROR_BYTES, MAX_ATTEMPT_RESPONSE_BYTES};
use minoots_core::{AttemptOutcome, WebhookAction};

use crate::signing::{WebhookSecret, sign_webhook};
use crate::ssrf::{CheckedTarget, TargetError, TargetPolicy};
use crate::{ExecResult, OrchestratorError};

/// Longest `Retry-After` honoured before the retry policy's own cap applies: 7 days.
const MAX_RETRY_AFTER_MS: u64 = 7 * 24 * 3600 * 1000;

/// Sent as `User-Agent` unless the action sets its own.
const USER_AGENT: &str = concat!("MINOOTS/", env!("CARGO_PKG_VERSION"), " (+webhooks)");

/// How long the TCP connect may take. The TLS handshake after it, like the rest of the
/// request, is bounded by the attempt's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves names and refuses any answer the SSRF guard rejects, at connect time. Literal
/// addresses never reach it: the connector uses them as they are, and
/// [`WebhookClient::deliver`] checks them before the request.
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            policy.check_resolved(host, &ips)?;
            Ok(addrs.into_iter())
        })
    }
}

/// The connector: TCP to the guarded resolver's addresses, TLS for `https` (the Mozilla
/// roots compiled in, HTTP/2 when the receiver offers it), plain text for `http`.
type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// Everything one webhook attempt needs besides the action itself.
pub struct WebhookCall<'a> {
    pub action: &'a WebhookAction,
    /// The action's URL already parsed, when the caller has it (parsed here otherwise).
    pub url: Option<&'a url::Url>,
    pub delivery_id: &'a str,
    pub timer_id: &'a str,
    pub attempt: u32,
    /// The schedule and slot of a scheduled run: `x-minoots-schedule-id` and
    /// `x-minoots-scheduled-at` (RFC 3339).
    pub schedule: Option<minoots_core::ScheduleLink>,
    /// Signing secrets, newest first.
    pub secrets: &'a [WebhookSecret],
    /// Unix seconds for `webhook-timestamp`.
    pub timestamp_s: i64,
    /// The W3C `traceparent` of the attempt (canonical form), so the receiver's trace
    /// joins the caller's. A `traceparent` the tenant set among the action's headers wins.
    pub traceparent: Option<&'a str>,
    /// The request body: the action's own body, or the event envelope, encoded.
    pub body: Vec<u8>,
}

/// A shared HTTP client with the SSRF guard built in. Cheap to clone.
#[derive(Clone)]
pub struct WebhookClient {
    client: Client<Connector, Full<Bytes>>,
    policy: Arc<TargetPolicy>,
    /// Where "now" is read for a `Retry-After` date.
    clock: Arc<dyn minoots_core::Clock>,
}

impl WebhookClient {
    /// `max_idle_per_host` bounds the keep-alive connections kept per destination; match
    /// it to the per-host concurrency, or busy hosts pay a new connection per request.
    pub fn new(
        policy: TargetPolicy,
        max_idle_per_host: usize,
        clock: Arc<dyn minoots_core::Clock>,
    ) -> Result<Self, OrchestratorError> {
        let policy = Arc::new(policy);
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| OrchestratorError::HttpClient(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            client,
            policy,
            clock,
        })
    }

    /// Makes one attempt and classifies the outcome. Never panics, never returns early
    /// without a result: every failure becomes an [`ExecResult`].
    pub async fn deliver(&self, call: WebhookCall<'_>) -> ExecResult {
        let action = call.action;
        // Literal IP hosts (in any notation) are checked here; names at connect time.
        let parsed;
        let url = match call.url {
            Some(u) => u,
            None => match url::Url::parse(&action.url) {
                Ok(u) => {
                    parsed = u;
                    &parsed
                }
                Err(e) => {
                    let e = TargetError::Invalid(e.to_string());
                    return ExecResult::failure(AttemptOutcome::Permanent, e.to_string());
                }
            },
        };
        match self.policy.check_parsed_url(url) {
            Ok(CheckedTarget::Address(_)) | Ok(CheckedTarget::Name(_)) => {}
            Err(e) => return ExecResult::failure(AttemptOutcome::Permanent, e.to_string()),
        }
        let method = match hyper::Method::from_bytes(action.method().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return ExecResult::failure(
                    AttemptOutcome::Permanent,
                    format!("\"{}\" is not an HTTP method", action.method()),
                );
            }
        };
        let tenant = match tenant_headers(action) {
            Ok(h) => h,
            Err(e) => return ExecResult::failure(AttemptOutcome::Permanent, e),
        };
        let body = call.body;
        let sig = sign_webhook(call.secrets, call.delivery_id, call.timestamp_s, &body);
        // MINOOTS's own headers, by static name: nothing to parse per request.
        let ours = [
            ("webhook-id", sig.webhook_id),
            ("webhook-timestamp", sig.webhook_timestamp),
            ("webhook-signature", sig.webhook_signature),
            ("x-minoots-timer-id", call.timer_id.to_string()),
            ("x-minoots-attempt", call.attempt.to_string()),
        ];
        let mut own = Vec::with_capacity(ours.len() + 3);
        if let Some(link) = call.schedule {
            for (name, text) in [
                ("x-minoots-schedule-id", link.id.to_string()),
                (
                    "x-minoots-scheduled-at",
                    minoots_core::timefmt::format_us(link.scheduled_at_us),
                ),
            ] {
                match header_value(name, text) {
                    Ok(v) => own.push((HeaderName::from_static(name), v)),
                    Err(e) => return ExecResult::failure(AttemptOutcome::Permanent, e),
                }
            }
        }
        // A content type the tenant set for its own body wins over the default; the
        // signature and MINOOTS headers cannot be set by tenants (refused at creation).
        if let Some(tp) = call.traceparent
            && !tenant.contains_key("traceparent")
        {
            match header_value("traceparent", tp.to_string()) {
                Ok(v) => own.push((HeaderName::from_static("traceparent"), v)),
                Err(e) => return ExecResult::failure(AttemptOutcome::Permanent, e),
            }
        }
        for (name, default) in [
            (header::CONTENT_TYPE, "application/json"),
            (header::USER_AGENT, USER_AGENT),
            (header::ACCEPT, "*/*"),
        ] {
            if !tenant.contains_key(&name) {
                own.push((name, HeaderValue::from_static(default)));
            }
        }
        for (name, text) in ours {
            match header_value(name, text) {
                Ok(v) => own.push((HeaderName::from_static(name), v)),
                Err(e) => return ExecResult::failure(AttemptOutcome::Permanent, e),
            }
        }
        // The URL as HTTP sends it (the fragment stays with the client, as browsers do).
        let uri = match hyper::Uri::try_from(url.as_str()) {
            Ok(u) => u,
            Err(e) => {
                return ExecResult::failure(
                    AttemptOutcome::Permanent,
                    format!("the URL cannot be sent over HTTP ({e}); nothing was sent"),
                );
            }
        };
        let mut request = hyper::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        *headers = tenant;
        for (name, value) in own {
            headers.append(name, value);
        }
        // The timeout is ours alone (below, and the excerpt's): the client has none.
        let timeout = Duration::from_millis(u64::from(action.timeout_ms()));
        let started = tokio::time::Instant::now();
        let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return classify_send_error(&e),
            Err(_) => {
                return ExecResult::failure(
                    AttemptOutcome::Retryable,
                    format!("no response within {} ms", action.timeout_ms()),
                );
            }
        };
        // The status decides the outcome. The excerpt is read within what is left of the
        // timeout (at least a short moment); a slow body only shortens the excerpt.
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(EXCERPT_MIN_WAIT);
        classify_response(response, left, self.clock.as_ref()).await
    }
}

/// The body of a webhook action that has its own, encoded; when it cannot be encoded, the
/// failed attempt to record instead (an empty body is never sent in its place).
pub fn encode_body(body: &serde_json::Value) -> Result<Vec<u8>, ExecResult> {
    encode_json(body).map_err(|e| {
        ExecResult::failure(
            AttemptOutcome::Permanent,
            format!("the webhook body {e}; nothing was sent"),
        )
    })
}

/// The tenant's headers exactly as written, or why they cannot be sent so. Creation
/// refuses such headers ([`webhook_header_problem`]); one stored by an older version fails
/// the attempt for good rather than being dropped or sent with another value.
fn tenant_headers(action: &WebhookAction) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(action.headers.len());
    for (name, value) in &action.headers {
        let refused = |why: String| {
            format!("header \"{name}\" {why}; nothing was sent (recreate the timer without it)")
        };
        if let Some(problem) = webhook_header_problem(name, value) {
            return Err(refused(problem));
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| refused(format!("is not a valid HTTP header name ({e})")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| refused(format!("has a value HTTP cannot carry ({e})")))?;
        if map.insert(header, value).is_some() {
            return Err(refused(
                "is given twice (header names are case-insensitive)".to_string(),
            ));
        }
    }
    Ok(map)
}

/// A header value from text MINOOTS made (ids, numbers, base64), which is always visible
/// ASCII; anything else is a bug, reported as such rather than sent as another value.
fn header_value(name: &str, text: String) -> Result<HeaderValue, String> {
    HeaderValue::try_from(text).map_err(|e| {
        format!("MINOOTS made a {name} header that HTTP cannot carry ({e}); this is a bug in MINOOTS, please report it; nothing was sent")
    })
}

/// The least time given to reading a response excerpt, even when the timeout is spent.
const EXCERPT_MIN_WAIT: Duration = Duration::from_millis(200);

async fn classify_response(
    response: hyper::Response<hyper::body::Incoming>,
    excerpt_wait: Duration,
    clock: &dyn minoots_core::Clock,
) -> ExecResult {
    let status = response.status();
    let retry_after_ms = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after_ms(v, clock.now_us()));
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Read at most the first 4 KiB; a larger body is left unread.
    let mut excerpt = Vec::new();
    let mut body = response.into_body();
    let _ = tokio::time::timeout(excerpt_wait, async {
        while excerpt.len() < MAX_ATTEMPT_RESPONSE_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(chunk) = frame.data_ref() {
                        let room = MAX_ATTEMPT_RESPONSE_BYTES - excerpt.len();
                        excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                None | Some(Err(_)) => break,
            }
        }
    })
    .await;
    let code = status.as_u16();
    let (outcome, error) = match code {
        200..=299 => (AttemptOutcome::Succeeded, None),
        300..=399 => (
            AttemptOutcome::Permanent,
            Some(format!(
                "answered {code} and redirects are not followed (Location: {})",
                location.as_deref().unwrap_or("none")
            )),
        ),
        410 => (
            AttemptOutcome::Permanent,
            Some("answered 410 Gone: no more retries".to_string()),
        ),
        429 => (
            AttemptOutcome::Retryable,
            Some("answered 429 Too Many Requests".to_string()),
        ),
        400..=499 => (
            AttemptOutcome::Permanent,
            Some(format!("answered {code}; not retried")),
        ),
        _ => (AttemptOutcome::Retryable, Some(format!("answered {code}"))),
    };
    ExecResult {
        outcome,
        http_status: Some(code),
        exit_code: None,
        error,
        response_excerpt: Some(String::from_utf8_lossy(&excerpt).into_owned()),
        retry_after_ms: if outcome == AttemptOutcome::Retryable {
            retry_after_ms
        } else {
            None
        },
    }
}

/// Connection, TLS and timeout errors are retryable; an address refused by the SSRF guard
/// is not (retrying would only be refused again).
fn classify_send_error(e: &hyper_util::client::legacy::Error) -> ExecResult {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<TargetError>() {
            return ExecResult::failure(AttemptOutcome::Permanent, t.to_string());
        }
        source = s.source();
    }
    let what = if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text.truncate(text.floor_char_boundary(MAX_ATTEMPT_ERROR_BYTES));
    ExecResult::failure(AttemptOutcome::Retryable, text)
}

/// `Retry-After` as delay-seconds or an HTTP date, in milliseconds from `now_us`.
pub fn parse_retry_after_ms(value: &str, now_us: i64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let ms = (at.unix_timestamp_nanos() / 1_000_000) - i128::from(now_us.div_euclid(1_000));
    Some((ms.max(0) as u64).min(MAX_RETRY_AFTER_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(headers: &[(&str, &str)]) -> WebhookAction {
        WebhookAction {
            url: "https://example.com/hook".into(),
            method: None,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: None,
            timeout_ms: None,
        }
    }

    #[test]
    fn headers_that_cannot_be_sent_as_written_fail_the_attempt_naming_them() {
        // Stored before creation refused them: each is reported, none dropped or emptied.
        for (name, value) in [
            ("X-Foo", "a\r\nb"),
            ("X-Foo", " padded "),
            ("bad name", "v"),
            ("Transfer-Encoding", "chunked"),
            ("webhook-signature", "v1,x"),
        ] {
            let e = tenant_headers(&action(&[(name, value)])).unwrap_err();
            assert!(e.contains(&format!("\"{name}\"")), "{e}");
        }
        let e = tenant_headers(&action(&[("X-A", "1"), ("x-a", "2")])).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn headers_creation_accepts_are_sent_exactly_as_written() {
        let a = action(&[
            ("Authorization", "Bearer abc"),
            ("X-Empty", ""),
            ("X-Inner-Tab", "a\tb"),
            ("X-Unicode", "caf\u{e9}"),
            ("x!#$%&'*+-.^_`|~1", "v"),
        ]);
        let mut errors = minoots_core::ValidationErrors::new();
        minoots_core::ActionBundle {
            actions: vec![minoots_core::Action::Webhook(a.clone())],
            retry_policy: None,
        }
        .validate("actionBundle", &mut errors);
        assert!(errors.is_empty(), "{errors}");
        let map = tenant_headers(&a).unwrap();
        assert_eq!(map.len(), a.headers.len());
        for (k, v) in &a.headers {
            assert_eq!(map[k.as_str()].as_bytes(), v.as_bytes(), "{k}");
        }
    }

    #[test]
    fn minoots_headers_that_cannot_be_carried_are_an_error_not_an_empty_value() {
        assert!(header_value("webhook-id", "msg_1".into()).is_ok());
        let e = header_value("webhook-id", "a\nb".into()).unwrap_err();
        assert!(e.contains("webhook-id") && e.contains("bug"), "{e}");
    }

    #[test]
    fn a_body_is_encoded_as_json() {
        let body = serde_json::json!({"k": [1, "two"]});
        assert_eq!(encode_body(&body).unwrap(), br#"{"k":[1,"two"]}"#);
    }

    /// This machine's name resolves, through the system's resolver, to an address the
    /// default policy refuses (loopback, or a private one). The client must ask the guard
    /// at connect time: the literal-host check lets a name through.
    #[tokio::test]
    async fn a_name_that_resolves_to_a_refused_address_is_refused_at_connect_time() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let host = host.trim().to_ascii_lowercase();
        let policy = TargetPolicy::default();
        let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map(|a| a.map(|a| a.ip()).collect())
            .unwrap_or_default();
        if addrs.is_empty() || policy.check_resolved(&host, &addrs).is_ok() {
            eprintln!("skipped: {host} resolves to {addrs:?}, not to a refused address");
            return;
        }
        let url = url::Url::parse(&format!("http://{host}:9/hook")).unwrap();
        assert_eq!(
            policy.check_parsed_url(&url).unwrap(),
            CheckedTarget::Name(host.clone()),
            "the name passes the literal check"
        );
        let client = WebhookClient::new(policy, 4, Arc::new(minoots_core::SystemClock)).unwrap();
        let a = WebhookAction {
            url: url.to_string(),
            ..action(&[])
        };
        let r = client.deliver(call(&a, &url)).await;
        assert_eq!(r.outcome, AttemptOutcome::Permanent, "{:?}", r.error);
        let err = r.error.unwrap_or_default();
        assert!(err.contains(&host) && err.contains("resolves"), "{err}");
    }

    fn call<'a>(action: &'a WebhookAction, url: &'a url::Url) -> WebhookCall<'a> {
        WebhookCall {
            action,
            url: Some(url),
            delivery_id: "dlv_1",
            timer_id: "tmr_1",
            attempt: 1,
            schedule: None,
            secrets: &[],
            timestamp_s: 0,
            traceparent: None,
            body: b"{}".to_vec(),
        }
    }

    /// A receiver whose certificate no trusted root signed (a self-signed one for
    /// `localhost`, in `tests/fixtures`): the handshake is refused by the client, nothing
    /// is sent, and the attempt is a retried connection error that names the certificate.
    #[tokio::test]
    async fn a_certificate_no_trusted_root_signed_is_refused() {
        use tokio::io::AsyncReadExt;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = rustls::pki_types::CertificateDer::from(
            include_bytes!("../tests/fixtures/self_signed_cert.der").to_vec(),
        );
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            include_bytes!("../tests/fixtures/self_signed_key.der")
                .to_vec()
                .into(),
        );
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            match acceptor.accept(tcp).await {
                Ok(mut tls) => {
                    let mut got = Vec::new();
                    let _ = tls.read_to_end(&mut got).await;
                    Some(got)
                }
                Err(_) => None,
            }
        });
        let policy = TargetPolicy {
            allow_private: true,
            ..TargetPolicy::default()
        };
        let client = WebhookClient::new(policy, 4, Arc::new(minoots_core::SystemClock)).unwrap();
        let url = url::Url::parse(&format!("https://localhost:{port}/hook")).unwrap();
        let a = WebhookAction {
            url: url.to_string(),
            ..action(&[])
        };
        let r = client.deliver(call(&a, &url)).await;
        assert_eq!(r.outcome, AttemptOutcome::Retryable, "{:?}", r.error);
        assert_eq!(r.http_status, None);
        let err = r.error.unwrap_or_default();
        assert!(
            err.contains("could not connect") && err.contains("certificate"),
            "{err}"
        );
        assert_eq!(
            served.await.unwrap(),
            None,
            "the handshake did not complete"
        );
    }

    #[test]
    fn retry_after_in_both_forms() {
        // 2015-10-21T07:28:00Z, as read from a manual clock.
        let date_us = 1_445_412_480_000_000;
        let now = date_us - 90_000_000;
        assert_eq!(parse_retry_after_ms("2", now), Some(2_000));
        assert_eq!(parse_retry_after_ms(" 120 ", now), Some(120_000));
        assert_eq!(
            parse_retry_after_ms("99999999999", now),
            Some(MAX_RETRY_AFTER_MS)
        );
        // A date is measured against the clock it is given, to the millisecond.
        assert_eq!(
            parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(90_000)
        );
        assert_eq!(
            parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", date_us + 1),
            Some(0),
            "a past date means now"
        );
        assert_eq!(parse_retry_after_ms("soon", now), None);
        assert_eq!(parse_retry_after_ms("-5", now), None);
    }
}
