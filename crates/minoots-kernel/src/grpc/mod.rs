//! The kernel's gRPC face: the generated `minoots.timer.v1` types, the server, the client
//! (a second implementation of [`crate::KernelApi`]) and the one mapping between
//! [`crate::KernelError`] and gRPC status codes.

mod client;
mod convert;
mod server;

pub use client::GrpcKernelClient;
pub use server::{GrpcServerConfig, serve};

/// Generated protobuf messages and service stubs.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("minoots.timer.v1");
}

use minoots_core::ValidationErrors;
use tonic::{Code, Status};

use crate::error::KernelError;

/// Maps a kernel error to a gRPC status. Validation errors carry the field list as JSON
/// in the status details, so the client can rebuild them exactly.
pub fn to_status(e: KernelError) -> Status {
    match e {
        KernelError::Invalid(errors) => {
            let details = serde_json::to_vec(&errors).unwrap_or_default();
            Status::with_details(Code::InvalidArgument, errors.to_string(), details.into())
        }
        KernelError::NotFound(what) => Status::not_found(format!("{what} not found")),
        KernelError::Conflict { message, status } => {
            // The status travels in the details, as validation errors do, so the client
            // gets it back without reading the sentence.
            let details = serde_json::json!({ "status": status.map(|s| s.as_str()) });
            Status::with_details(
                Code::FailedPrecondition,
                message,
                details.to_string().into(),
            )
        }
        KernelError::QuotaExceeded { quota, limit } => {
            let details = serde_json::json!({ "quota": quota, "limit": limit });
            Status::with_details(
                Code::ResourceExhausted,
                format!("the tenant's {quota} quota of {limit} is reached"),
                details.to_string().into(),
            )
        }
        KernelError::Fenced(m) => Status::failed_precondition(format!("fenced: {m}")),
        KernelError::Unavailable(m) => Status::unavailable(m),
        KernelError::Unauthenticated(m) => Status::unauthenticated(m),
        KernelError::Internal(m) => Status::internal(m),
    }
}

/// Maps a gRPC status back to a kernel error (the client side of [`to_status`]).
pub fn from_status(s: Status) -> KernelError {
    let msg = s.message().to_string();
    match s.code() {
        Code::InvalidArgument => match serde_json::from_slice::<serde_json::Value>(s.details()) {
            Ok(v) => {
                let mut errors = ValidationErrors::new();
                for e in v["errors"].as_array().into_iter().flatten() {
                    errors.push(
                        e["field"].as_str().unwrap_or("request").to_string(),
                        e["message"].as_str().unwrap_or("is invalid").to_string(),
                    );
                }
                if errors.is_empty() {
                    errors.push("request", msg);
                }
                KernelError::Invalid(errors)
            }
            Err(_) => KernelError::invalid("request", msg),
        },
        Code::NotFound => KernelError::NotFound(msg.trim_end_matches(" not found").to_string()),
        Code::FailedPrecondition if msg.starts_with("fenced: ") => {
            KernelError::Fenced(msg.trim_start_matches("fenced: ").to_string())
        }
        Code::FailedPrecondition => {
            let status = serde_json::from_slice::<serde_json::Value>(s.details())
                .ok()
                .and_then(|v| v["status"].as_str().and_then(|st| st.parse().ok()));
            KernelError::Conflict {
                message: msg,
                status,
            }
        }
        Code::Unauthenticated | Code::PermissionDenied => KernelError::Unauthenticated(msg),
        Code::ResourceExhausted => {
            let quota = serde_json::from_slice::<serde_json::Value>(s.details())
                .ok()
                .and_then(|v| Some((v["quota"].as_str()?.to_string(), v["limit"].as_u64()?)));
            match quota {
                Some((quota, limit)) => KernelError::QuotaExceeded { quota, limit },
                None => KernelError::Unavailable(msg),
            }
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            KernelError::Unavailable(msg)
        }
        _ => KernelError::Internal(format!("{:?}: {msg}", s.code())),
    }
}
