//! The MINOOTS horology kernel: it owns time and state.
//!
//! It stores timers, fires them on time from an in-memory window fed by the store, turns
//! each firing into durable deliveries, leases them to executors, records every attempt,
//! schedules retries, rescues expired leases, keeps the event log and serves all of it
//! through [`KernelApi`] — in process ([`Kernel`]) or over gRPC ([`grpc`]). The API itself
//! (the trait, its types and errors, the gRPC contract and client) is `minoots-kernel-api`,
//! which the other planes use without linking this crate or its store.
//!
//! It must never fire a timer early, answer a write before it is durable, or keep a task
//! or OS timer per timer.

pub mod admin;
pub mod config;
mod error;
mod events;
pub mod grpc;
mod kernel;
mod leases;
mod maintenance;
pub mod metrics;
mod outbox;
mod scheduler;
mod schedules;
mod spans;

pub use config::KernelConfig;
pub use kernel::Kernel;
/// The API this kernel implements, from its own crate, named here too for the binary and
/// the tests that build a kernel in process.
pub use minoots_kernel_api::{
    BoxStream, KernelApi, KernelError, KernelResult, LeaseRequest, MAX_RENEW_LEASES, NewTenant,
    RenewLeasesRequest, ScheduleChange, ScheduleChanged, ScheduleOutcome, ScheduleQuotas,
    TenantQuotas,
};
#[doc(hidden)]
pub use scheduler::Fault;
