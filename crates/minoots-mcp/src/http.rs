//! The streamable HTTP endpoint `/mcp`, mounted beside the REST API on the control plane.
//!
//! It owns the checks in front of MCP: an API key (the control plane's own
//! authentication; a missing or unknown key is 401 before any MCP handling), the `Host`
//! header (DNS-rebinding protection), the `Origin` header of browsers, the body size and
//! the number of open sessions. Tool calls then run in process against the REST router
//! with the key of the request being served, so each session acts as its key's tenant
//! only. It must never serve a request whose key the control plane refused.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use minoots_control_plane::{ApiError, AppState};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::backend::Backend;
use crate::server::MinootsMcp;

/// The path of the endpoint.
pub const MCP_PATH: &str = "/mcp";
/// Most MCP sessions open at once; a new session beyond it is refused with 503. Idle
/// sessions close after [`SESSION_IDLE`].
pub const MAX_SESSIONS: usize = 1_024;
/// A session without requests for this long is closed.
pub const SESSION_IDLE: Duration = Duration::from_secs(300);
/// Largest MCP request body (tool arguments include at most one timer request).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Who may reach `/mcp`.
#[derive(Debug, Clone)]
pub struct McpHttpConfig {
    /// Accepted `Host` names (or `name:port`); loopback names by default. A server reached
    /// under another name must list it, or every request is refused with 403.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins accepted beyond the allowed hosts themselves
    /// (`https://app.example.com:443`, `http://localhost:*`). A request with an `Origin`
    /// that matches neither is refused with 403; requests without `Origin` (agents,
    /// command-line clients) pass.
    pub allowed_origins: Vec<String>,
}

impl Default for McpHttpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
        }
    }
}

impl McpHttpConfig {
    /// The origins accepted: the listed ones and every allowed host, on any port.
    fn origins(&self) -> Vec<String> {
        let mut out = self.allowed_origins.clone();
        for h in &self.allowed_hosts {
            let host = h.rsplit_once(':').map_or(h.as_str(), |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') {
                    name
                } else {
                    h.as_str()
                }
            });
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            out.push(format!("http://{host}:*"));
            out.push(format!("https://{host}:*"));
        }
        out
    }
}

/// Stops the endpoint's sessions and streams (on shutdown).
#[derive(Clone)]
pub struct McpShutdown(tokio_util::sync::CancellationToken);

impl McpShutdown {
    pub fn stop(&self) {
        self.0.cancel();
    }
}

#[derive(Clone)]
struct Gate {
    state: AppState,
    sessions: Arc<LocalSessionManager>,
}

/// A router serving `/mcp`; `api` is the REST router the tools call (in process).
pub fn router(state: AppState, api: Router, config: &McpHttpConfig) -> (Router, McpShutdown) {
    let mut rmcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.allowed_hosts.clone())
        .with_allowed_origins(config.origins())
        .enforce_origin_validation();
    rmcp_config.max_request_body_bytes = MAX_BODY_BYTES;
    let shutdown = McpShutdown(rmcp_config.cancellation_token.clone());
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE);
    let sessions = Arc::new(sessions);
    let service = StreamableHttpService::new(
        move || Ok(MinootsMcp::new(Backend::InProcess(api.clone()))),
        sessions.clone(),
        rmcp_config,
    );
    let gate = Gate { state, sessions };
    let router = Router::new()
        .route_service(MCP_PATH, service)
        .layer(middleware::from_fn_with_state(gate, admit));
    (router, shutdown)
}

/// The key (401), then the session count (503), before MCP sees the request.
async fn admit(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    if let Err(e) = minoots_control_plane::auth::authenticate_request(&gate.state, &req).await {
        return e.into_response();
    }
    if !req.headers().contains_key("mcp-session-id")
        && gate.sessions.sessions.read().await.len() >= MAX_SESSIONS
    {
        return ApiError::unavailable(
            format!("this server has {MAX_SESSIONS} MCP sessions open, the most it allows; retry shortly"),
            5,
        )
        .into_response();
    }
    next.run(req).await
}
