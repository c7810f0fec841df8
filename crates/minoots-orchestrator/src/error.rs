//! The orchestrator's error type for what it is built from: the webhook HTTP client, the
//! operating system's random source and webhook secrets. What goes wrong while executing
//! a delivery is not an error of this type: it is the attempt's outcome, reported to the
//! kernel ([`crate::ExecResult`]).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrchestratorError {
    /// The HTTP client for webhooks could not be built (TLS roots, resolver).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// The operating system gave no random bytes.
    #[error("no randomness available: {0}")]
    NoRandomness(String),
    /// A text that is not a webhook secret (`whsec_` and the base64 of 24 to 64 bytes);
    /// says which part is wrong.
    #[error("{0}")]
    BadSecret(&'static str),
}
