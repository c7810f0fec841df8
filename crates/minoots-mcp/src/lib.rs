//! MINOOTS for agents: a Model Context Protocol server whose tools create, inspect,
//! cancel and wait for timers and create, read, pause, resume, trigger and delete
//! recurring schedules, over stdio (`minoots mcp`) or streamable HTTP (`/mcp` on the
//! control plane).
//!
//! The tools speak to MINOOTS through its REST API ([`backend`]), so keys, tenants, rate
//! limits, validation and error sentences are the API's own; this crate adds no access
//! rule of its own and keeps no state beyond MCP sessions. It must never reach the
//! kernel around the API.

pub mod backend;
pub mod error;
pub mod http;
pub mod server;
pub mod tools;

pub use backend::{Backend, RemoteApi};
pub use error::McpError;
pub use server::MinootsMcp;

/// Serves MCP over this process's stdin and stdout until the client closes them.
pub async fn serve_stdio(backend: Backend) -> Result<(), McpError> {
    use rmcp::ServiceExt;
    let running = MinootsMcp::new(backend)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Session {
            doing: "could not start",
            reason: e.to_string(),
        })?;
    running.waiting().await.map_err(|e| McpError::Session {
        doing: "ended abnormally",
        reason: e.to_string(),
    })?;
    Ok(())
}
