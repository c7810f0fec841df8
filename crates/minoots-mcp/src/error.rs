//! The MCP crate's one error type: why an API call produced no answer (an HTTP error
//! status is an answer, passed to the agent as a tool error with the API's sentence), why
//! the MCP server cannot start with its settings, and why a stdio session ended badly.

use std::time::Duration;

use minoots_core::ConfigError;

use crate::backend::MAX_RESPONSE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MINOOTS did not answer: {0}")]
    Unreachable(String),
    #[error("MINOOTS did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the answer of MINOOTS is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("no API key: send one as X-API-Key or Authorization: Bearer")]
    NoKey,
    /// A flag the MCP server cannot start with (`--url`, `--api-key`).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// The stdio session could not start or ended abnormally.
    #[error("the MCP session {doing}: {reason}")]
    Session { doing: &'static str, reason: String },
}
