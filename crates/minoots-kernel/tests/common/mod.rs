//! Helpers shared by the kernel's integration tests.

use std::time::Duration;

use minoots_kernel::{BoxStream, LeaseRequest};
use tokio_stream::StreamExt;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// The next item of a kernel stream; fails the test if none comes within [`WAIT`].
pub async fn next_item<T>(stream: &mut BoxStream<T>) -> T {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an item in time")
        .expect("the stream is open")
        .expect("not an error")
}

pub fn lease(owner: &str, lease_ttl_ms: u32, max_in_flight: u32) -> LeaseRequest {
    LeaseRequest {
        lease_owner: owner.into(),
        lease_ttl_ms,
        max_in_flight,
    }
}
