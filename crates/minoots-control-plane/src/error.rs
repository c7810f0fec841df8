//! The control plane's one error type for its own operations: starting (its settings),
//! preparing the store (bootstrap) and drawing random keys. Answers to requests are
//! [`crate::ApiError`]s, made in one place ([`crate::problem`]); an error of this type
//! reaches a client only through that place, as a logged 500.

use minoots_core::ConfigError;
use minoots_kernel_api::KernelError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlPlaneError {
    /// A setting the control plane cannot start with, named with how to fix it.
    #[error("control plane setting {0}")]
    Config(#[from] ConfigError),
    /// The kernel refused a call the control plane needed to start (bootstrap).
    #[error("the kernel refused: {0}")]
    Kernel(#[from] KernelError),
    /// The operating system gave no random bytes for a new key.
    #[error("no randomness available: {0}")]
    NoRandomness(String),
}

impl From<ControlPlaneError> for crate::ApiError {
    fn from(e: ControlPlaneError) -> Self {
        tracing::error!(error = %e, "internal error");
        crate::ApiError::internal("an internal error occurred; it has been logged")
    }
}
