//! MINOOTS for agents: a Model Context Protocol server whose tools create, inspect,
//! cancel and wait for timers, over stdio (`minoots mcp`) or streamable HTTP (`/mcp` on
//! the control plane).
//!
//! The tools speak to MINOOTS through its REST API ([`backend`]), so keys, tenants, rate
//! limits, validation and error sentences are the API's own; this crate adds no access
//! rule of its own and keeps no state beyond MCP sessions. It must never reach the
//! kernel around the API.

pub mod backend;
pub mod http;
pub mod server;
pub mod tools;

pub use backend::{Backend, RemoteApi};
pub use server::MinootsMcp;

/// Serves MCP over this process's stdin and stdout until the client closes them.
pub async fn serve_stdio(backend: Backend) -> Result<(), String> {
    use rmcp::ServiceExt;
    let running = MinootsMcp::new(backend)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("starting the MCP session: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("the MCP session ended abnormally: {e}"))?;
    Ok(())
}
