//! The kernel's one error type. The gRPC layer maps it to status codes in one place
//! (`grpc::status`), and the control plane maps it to problem+json in one place.

use minoots_core::{TimerStatus, ValidationErrors};
use minoots_store::StoreError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// The request is malformed; every bad field is named with how to fix it.
    #[error("invalid request: {0}")]
    Invalid(ValidationErrors),
    /// No such object for this tenant (another tenant's objects are reported the same way).
    #[error("{0} not found")]
    NotFound(String),
    /// The object exists but is in a state that forbids the operation.
    #[error("{message}")]
    Conflict {
        message: String,
        status: Option<TimerStatus>,
    },
    /// A tenant quota would be exceeded; nothing was stored.
    #[error("the tenant's {quota} quota of {limit} is reached")]
    QuotaExceeded { quota: String, limit: u64 },
    /// A report for a lease that is no longer held.
    #[error("{0}")]
    Fenced(String),
    /// The store or kernel cannot serve right now; retrying later may succeed. When the
    /// store's disk refused a write, the message starts with [`STORE_CANNOT_WRITE`] and
    /// names the reason (see [`KernelError::is_store_write_refusal`]); over gRPC this is
    /// UNAVAILABLE with the same message.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Missing or wrong kernel token (gRPC only).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A bug or corrupt data; details are logged.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How the message of [`KernelError::Unavailable`] begins when the store's disk refused a
/// write (full, read-only, I/O error): reads still work, writes will succeed again once the
/// disk recovers.
pub const STORE_CANNOT_WRITE: &str = "the store cannot write";

impl KernelError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        KernelError::Invalid(ValidationErrors::single(field, message))
    }

    /// True when the store's disk refused a write (also for an error that came over gRPC).
    pub fn is_store_write_refusal(&self) -> bool {
        matches!(self, KernelError::Unavailable(m) if m.starts_with(STORE_CANNOT_WRITE))
    }
}

impl From<ValidationErrors> for KernelError {
    fn from(e: ValidationErrors) -> Self {
        KernelError::Invalid(e)
    }
}

impl From<StoreError> for KernelError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => KernelError::NotFound("timer".into()),
            StoreError::Conflict { status } => KernelError::Conflict {
                message: format!(
                    "the timer is already {status}; only scheduled timers can be cancelled"
                ),
                status: Some(status),
            },
            StoreError::Fenced { .. } => KernelError::Fenced(e.to_string()),
            StoreError::Locked(_) | StoreError::Unavailable(_) | StoreError::Closed => {
                KernelError::Unavailable(e.to_string())
            }
            StoreError::CannotWrite(trouble) => {
                KernelError::Unavailable(format!("{STORE_CANNOT_WRITE}: {trouble}"))
            }
            StoreError::Corrupt(m) => KernelError::Internal(m),
            StoreError::QuotaExceeded { quota, limit } => KernelError::QuotaExceeded {
                quota: quota.as_str().to_string(),
                limit,
            },
            StoreError::IdempotencyMismatch { timer_id } => KernelError::Conflict {
                message: format!(
                    "the idempotency key was already used within 24 hours for a different request (timer {timer_id}); send the same body again or use a new key"
                ),
                status: None,
            },
            StoreError::AlreadyExists(what) => KernelError::Conflict {
                message: format!("{what} already exists"),
                status: None,
            },
        }
    }
}

pub type KernelResult<T> = Result<T, KernelError>;
