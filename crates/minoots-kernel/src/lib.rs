//! The MINOOTS horology kernel: it owns time and state.
//!
//! It stores timers, fires them on time from an in-memory window fed by the store, turns
//! each firing into durable deliveries, leases them to executors, records every attempt,
//! schedules retries, rescues expired leases, keeps the event log and serves all of it
//! through [`KernelApi`] — in process ([`Kernel`]) or over gRPC ([`grpc`]).
//!
//! It must never fire a timer early, answer a write before it is durable, or keep a task
//! or OS timer per timer.

pub mod admin;
pub mod api;
pub mod config;
pub mod error;
mod events;
pub mod grpc;
mod kernel;
mod leases;
mod maintenance;
pub mod metrics;
mod scheduler;

pub use api::{
    BoxStream, KernelApi, LeaseRequest, MAX_RENEW_LEASES, NewTenant, RenewLeasesRequest,
    ScheduleOutcome, TenantQuotas,
};
pub use config::KernelConfig;
pub use error::{KernelError, KernelResult};
pub use kernel::Kernel;
#[doc(hidden)]
pub use scheduler::Fault;
