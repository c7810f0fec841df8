//! The kernel's one error type. The gRPC layer maps it to status codes in one place
//! (`grpc::to_status`, and back with `grpc::from_status`), and the control plane maps it
//! to problem+json in one place. What happened is in the variant and its typed values
//! (what was not found, why the store cannot write, which quota), never only in a
//! sentence, so no caller has to read a message to decide what to do. The kernel turns
//! its store's errors into these in one place (`minoots_kernel`'s `from_store`); this
//! crate knows nothing of the store.

use minoots_core::{ConfigError, Missing, Quota, TimerStatus, ValidationErrors, WriteTrouble};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// The request is malformed; every bad field is named with how to fix it.
    #[error("invalid request: {0}")]
    Invalid(ValidationErrors),
    /// No such object for this tenant (another tenant's objects are reported the same way):
    /// which kind of object, with the id it was asked by.
    #[error("{0} not found")]
    NotFound(Missing),
    /// The object exists but is in a state that forbids the operation.
    #[error("{message}")]
    Conflict {
        message: String,
        status: Option<TimerStatus>,
    },
    /// A tenant quota would be exceeded; nothing was stored.
    #[error("the tenant's {quota} quota of {limit} is reached")]
    QuotaExceeded { quota: Quota, limit: u64 },
    /// A report for a lease that is no longer held.
    #[error("{0}")]
    Fenced(String),
    /// The store or kernel cannot serve right now; retrying later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store's disk refused a write (full, read-only, I/O error): nothing of it was
    /// stored, reads still work, and the same write succeeds once the disk recovers. Over
    /// gRPC this is UNAVAILABLE with the trouble in the status details.
    #[error("the store cannot write: {0}")]
    StoreCannotWrite(WriteTrouble),
    /// Missing or wrong kernel token (gRPC only).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A bug or corrupt data; details are logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// A setting the kernel cannot start with (raised when it starts, never in an answer).
    #[error("kernel setting {0}")]
    Config(ConfigError),
}

impl KernelError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        KernelError::Invalid(ValidationErrors::single(field, message))
    }

    /// True when the same call may succeed later unchanged: the kernel or its store is
    /// unavailable, or the store's disk refused the write.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KernelError::Unavailable(_) | KernelError::StoreCannotWrite(_)
        )
    }
}

impl From<ValidationErrors> for KernelError {
    fn from(e: ValidationErrors) -> Self {
        KernelError::Invalid(e)
    }
}

impl From<ConfigError> for KernelError {
    fn from(e: ConfigError) -> Self {
        KernelError::Config(e)
    }
}

pub type KernelResult<T> = Result<T, KernelError>;
