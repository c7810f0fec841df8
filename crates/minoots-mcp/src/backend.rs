//! How the MCP tools reach MINOOTS: through its REST API, so that authentication, tenant
//! isolation, rate limits, validation and error sentences are exactly the API's.
//!
//! Two ways, one interface: [`Backend::Remote`] sends HTTP requests to a MINOOTS server
//! with the key the MCP process was started with (`minoots mcp --url --api-key`), and
//! [`Backend::InProcess`] dispatches the same requests into the control plane's router in
//! this process, with the key of the MCP request being served (the `/mcp` endpoint). This
//! module never decides what a caller may do: the API does; it never follows redirects
//! and never reads more than [`MAX_RESPONSE_BYTES`] of an answer.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::McpError;
use minoots_core::ConfigError;

/// Largest API answer read (a page of 500 timers with large metadata stays well below).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Time allowed for one API call beyond the wait it asks the server to do.
pub const CALL_MARGIN: Duration = Duration::from_secs(30);

/// One REST request: method, path with query, optional JSON body.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path_and_query: String,
    pub body: Option<Value>,
    /// How long the server may take on purpose (a long-poll's timeout).
    pub wait: Duration,
}

/// The API's answer: status and JSON body (a non-JSON body becomes a JSON string).
#[derive(Debug, Clone)]
pub struct ApiReply {
    pub status: u16,
    pub body: Value,
}

impl ApiReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A MINOOTS server reached over HTTP with one API key.
#[derive(Clone)]
pub struct RemoteApi {
    client: reqwest::Client,
    base: url::Url,
    key: HeaderValue,
}

impl RemoteApi {
    /// `base` is the server's root URL (`http://127.0.0.1:3000`); `key` an API key.
    pub fn new(base: &str, key: &str) -> Result<Self, McpError> {
        let base = url::Url::parse(base)
            .map_err(|e| ConfigError::new("--url", format!("\"{base}\" is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                "--url",
                format!(
                    "must start with http:// or https://, not \"{}\"",
                    base.scheme()
                ),
            )
            .into());
        }
        let mut key = HeaderValue::from_str(key.trim()).map_err(|_| {
            ConfigError::new("--api-key", "holds characters not allowed in a header")
        })?;
        key.set_sensitive(true);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("minoots-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| McpError::HttpClient(e.to_string()))?;
        Ok(Self { client, base, key })
    }
}

/// Where tool calls go.
#[derive(Clone)]
pub enum Backend {
    Remote(RemoteApi),
    /// The control plane's router in this process; the key comes from the MCP request.
    InProcess(axum::Router),
}

impl Backend {
    /// Sends `req`; `incoming` are the headers of the MCP HTTP request being served (used
    /// for its key by [`Backend::InProcess`]; ignored by [`Backend::Remote`]).
    pub async fn call(
        &self,
        req: ApiRequest,
        incoming: Option<&HeaderMap>,
    ) -> Result<ApiReply, McpError> {
        let limit = req.wait + CALL_MARGIN;
        match self {
            Backend::Remote(api) => {
                let url = api
                    .base
                    .join(req.path_and_query.trim_start_matches('/'))
                    .map_err(|e| McpError::Unreachable(e.to_string()))?;
                let mut rb = api
                    .client
                    .request(req.method, url)
                    .header("x-api-key", api.key.clone())
                    .timeout(limit);
                if let Some(body) = &req.body {
                    rb = rb
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body.to_string());
                }
                let mut resp = rb.send().await.map_err(|e| {
                    if e.is_timeout() {
                        McpError::Timeout(limit)
                    } else {
                        McpError::Unreachable(error_chain(&e))
                    }
                })?;
                let status = resp.status().as_u16();
                let mut bytes = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| {
                    if e.is_timeout() {
                        McpError::Timeout(limit)
                    } else {
                        McpError::Unreachable(error_chain(&e))
                    }
                })? {
                    if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(McpError::TooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(reply(status, &bytes))
            }
            Backend::InProcess(router) => {
                let headers = incoming.ok_or(McpError::NoKey)?;
                let mut builder = Request::builder()
                    .method(req.method)
                    .uri(&req.path_and_query);
                let mut keyed = false;
                for name in ["x-api-key", "authorization"] {
                    if let Some(v) = headers.get(name) {
                        builder = builder.header(name, v.clone());
                        keyed = true;
                    }
                }
                if !keyed {
                    return Err(McpError::NoKey);
                }
                let body = match &req.body {
                    Some(b) => {
                        builder = builder.header(header::CONTENT_TYPE, "application/json");
                        Body::from(b.to_string())
                    }
                    None => Body::empty(),
                };
                let request = builder
                    .body(body)
                    .map_err(|e| McpError::Unreachable(e.to_string()))?;
                let call = async {
                    let resp = router
                        .clone()
                        .oneshot(request)
                        .await
                        .map_err(|e| McpError::Unreachable(e.to_string()))?;
                    let status = resp.status().as_u16();
                    let bytes = axum::body::to_bytes(resp.into_body(), MAX_RESPONSE_BYTES)
                        .await
                        .map_err(|_| McpError::TooLarge)?;
                    Ok(reply(status, &bytes))
                };
                tokio::time::timeout(limit, call)
                    .await
                    .map_err(|_| McpError::Timeout(limit))?
            }
        }
    }
}

fn reply(status: u16, bytes: &[u8]) -> ApiReply {
    let body = serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()));
    ApiReply { status, body }
}

/// An error with its causes, so "connection refused" is not hidden behind "error sending
/// request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
