//! The MINOOTS action orchestrator: it executes the deliveries the kernel leases to it —
//! webhooks, commands and file writes — and reports every attempt back.
//!
//! This crate is being built up piece by piece. Present so far: the SSRF guard that decides
//! which network addresses a webhook may reach, and Standard Webhooks signing. It must
//! never let a tenant's webhook reach loopback, private, link-local or metadata addresses
//! unless the operator allowed it, and never send a webhook unsigned.

pub mod command;
pub mod error;
pub mod executor;
pub mod file;
pub mod leasebook;
pub mod metrics;
pub mod signing;
mod spans;
pub mod ssrf;
pub mod webhook;

pub use error::OrchestratorError;

use minoots_core::AttemptOutcome;

/// What one execution of an action came to, as reported to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub outcome: AttemptOutcome,
    /// HTTP status of a webhook response.
    pub http_status: Option<u16>,
    /// Exit code of a command (None when it was killed or never started).
    pub exit_code: Option<i32>,
    /// What went wrong, as a sentence for the tenant.
    pub error: Option<String>,
    /// The first 4 KiB of the response body or the command's output.
    pub response_excerpt: Option<String>,
    /// A server's `Retry-After`, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

impl ExecResult {
    pub fn success() -> Self {
        Self {
            outcome: AttemptOutcome::Succeeded,
            http_status: None,
            exit_code: None,
            error: None,
            response_excerpt: None,
            retry_after_ms: None,
        }
    }

    pub fn failure(outcome: AttemptOutcome, error: impl Into<String>) -> Self {
        Self {
            outcome,
            error: Some(error.into()),
            ..Self::success()
        }
    }
}
