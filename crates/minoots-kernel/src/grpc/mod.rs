//! The kernel's gRPC server, `minoots.timer.v1.HorologyKernel` over any [`crate::KernelApi`].
//! The contract, the conversions, the client and the error mapping are the API crate's
//! ([`minoots_kernel_api::grpc`]), re-exported here for the binary and the tests.

mod server;

pub use minoots_kernel_api::grpc::{GrpcKernelClient, from_status, pb, to_status};
pub use server::{GrpcServerConfig, serve};
