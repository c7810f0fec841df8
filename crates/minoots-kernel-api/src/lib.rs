//! What the other planes need of the MINOOTS horology kernel, and nothing of its store:
//! the kernel's API as one Rust trait, [`KernelApi`], with its requests, answers, limits
//! and one error type ([`KernelError`]); the gRPC contract (`minoots.timer.v1`), its
//! conversions and the one mapping of errors to gRPC status codes ([`grpc`]); and the gRPC
//! client ([`grpc::GrpcKernelClient`]), the implementation of the trait that the control
//! plane and the orchestrator use when they run as separate services. The kernel
//! (`minoots-kernel`) implements the trait in process and serves it over gRPC; in process
//! it also shows its readiness and metrics through [`LocalKernel`].
//!
//! It must never depend on the store or the kernel: in microservice mode, the control
//! plane and the orchestrator link no database code.

pub mod api;
pub mod error;
pub mod grpc;
pub mod local;
pub mod metrics;
pub mod trace;

pub use api::{
    BoxStream, KernelApi, LeaseRequest, MAX_RENEW_LEASES, NewTenant, NewUiSession,
    RenewLeasesRequest, ScheduleChange, ScheduleChanged, ScheduleOutcome, ScheduleQuotas,
    TenantQuotas,
};
pub use error::{KernelError, KernelResult};
pub use local::LocalKernel;
