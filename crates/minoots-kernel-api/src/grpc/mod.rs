//! The kernel's gRPC contract as both sides use it: the generated `minoots.timer.v1`
//! types, the conversions between them and the domain ([`convert`]), the client (a second
//! implementation of [`crate::KernelApi`]) and the one mapping between
//! [`crate::KernelError`] and gRPC status codes. The server is the kernel's
//! (`minoots_kernel::grpc::serve`).

pub mod billing;
mod client;
pub mod convert;
pub mod dashboard;
pub mod patch;
pub mod schedules;
pub mod sessions;

pub use client::GrpcKernelClient;

/// Largest request or response message, in bytes, on both sides. A timer is at most
/// ~1.2 MiB of input (16 actions with 64 KiB bodies, 16 KiB metadata); leave headroom.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Generated protobuf messages and service stubs.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("minoots.timer.v1");
}

use minoots_core::{Missing, Quota, ValidationErrors, WriteTrouble};
use serde::de::DeserializeOwned;
use tonic::{Code, Status};

use crate::error::KernelError;

/// Maps a kernel error to a gRPC status. What the client needs to rebuild the error
/// exactly travels as JSON in the status details, never only in the message: the field
/// list of a validation error, the timer status of a conflict, the quota, what was not
/// found, why the store cannot write.
pub fn to_status(e: KernelError) -> Status {
    let sentence = e.to_string();
    match e {
        KernelError::Invalid(errors) => {
            let details = serde_json::to_vec(&errors).unwrap_or_default();
            Status::with_details(Code::InvalidArgument, errors.to_string(), details.into())
        }
        KernelError::NotFound(missing) => with_json(
            Code::NotFound,
            sentence,
            serde_json::json!({ "notFound": missing }),
        ),
        KernelError::Conflict { message, status } => with_json(
            Code::FailedPrecondition,
            message,
            serde_json::json!({ "status": status.map(|s| s.as_str()) }),
        ),
        KernelError::QuotaExceeded { quota, limit } => with_json(
            Code::ResourceExhausted,
            sentence,
            serde_json::json!({ "quota": quota, "limit": limit }),
        ),
        KernelError::Fenced(m) => Status::failed_precondition(format!("fenced: {m}")),
        KernelError::Unavailable(m) => Status::unavailable(m),
        KernelError::StoreCannotWrite(trouble) => with_json(
            Code::Unavailable,
            sentence,
            serde_json::json!({ "storeCannotWrite": trouble }),
        ),
        KernelError::Unauthenticated(m) => Status::unauthenticated(m),
        KernelError::Internal(m) => Status::internal(m),
        // Raised when a kernel starts, never in an answer; passed on as a bug if it were.
        KernelError::Config(_) => Status::internal(sentence),
    }
}

fn with_json(code: Code, message: String, details: serde_json::Value) -> Status {
    Status::with_details(code, message, details.to_string().into())
}

/// The member `key` of a status's JSON details, decoded: `Ok(None)` when the details do
/// not have it, an `Internal` error naming it when they have it but it does not decode
/// (a kernel newer than this client, or a bug), so nothing is guessed from the message.
fn detail<T: DeserializeOwned>(s: &Status, key: &str) -> Result<Option<T>, KernelError> {
    let Ok(details) = serde_json::from_slice::<serde_json::Value>(s.details()) else {
        return Ok(None);
    };
    let Some(v) = details.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    T::deserialize(v).map(Some).map_err(|e| {
        KernelError::Internal(format!(
            "the kernel answered {:?} with a \"{key}\" this client does not know ({v}: {e}): {}",
            s.code(),
            s.message()
        ))
    })
}

/// Maps a gRPC status back to a kernel error (the client side of [`to_status`]).
pub fn from_status(s: Status) -> KernelError {
    decode_status(&s).unwrap_or_else(|e| e)
}

fn decode_status(s: &Status) -> Result<KernelError, KernelError> {
    let msg = s.message().to_string();
    Ok(match s.code() {
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
        Code::NotFound => match detail::<Missing>(s, "notFound")? {
            Some(missing) => KernelError::NotFound(missing),
            None => KernelError::Internal(format!(
                "the kernel answered NOT_FOUND without saying what was not found: {msg}"
            )),
        },
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
            let quota = detail::<Quota>(s, "quota")?;
            match (quota, detail::<u64>(s, "limit")?) {
                (Some(quota), Some(limit)) => KernelError::QuotaExceeded { quota, limit },
                // Not a quota of the kernel: tonic's own limits (message size, streams).
                _ => KernelError::Unavailable(msg),
            }
        }
        Code::Unavailable => match detail::<WriteTrouble>(s, "storeCannotWrite")? {
            Some(trouble) => KernelError::StoreCannotWrite(trouble),
            None => KernelError::Unavailable(msg),
        },
        Code::DeadlineExceeded | Code::Cancelled => KernelError::Unavailable(msg),
        Code::Internal => KernelError::Internal(msg),
        _ => KernelError::Internal(format!("{:?}: {msg}", s.code())),
    })
}
