//! Helpers shared by the kernel's integration tests.

pub mod pg;

use std::time::Duration;

use minoots_core::{AttemptOutcome, DeliveryId, Event, EventType};
use minoots_kernel::{BoxStream, KernelApi, LeaseRequest};
use minoots_store::{AttemptReport, EventQuery};
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

/// Every `timer.fired` event of the kernel, from the start of its log.
pub async fn fired_events(k: &dyn KernelApi) -> BoxStream<Event> {
    k.stream_events(EventQuery {
        after_seq: 0,
        limit: 1000,
        types: vec![EventType::TimerFired],
        ..Default::default()
    })
    .await
    .expect("an event stream")
}

pub fn lease(owner: &str, lease_ttl_ms: u32, max_in_flight: u32) -> LeaseRequest {
    LeaseRequest {
        lease_owner: owner.into(),
        lease_ttl_ms,
        max_in_flight,
    }
}

/// The report of a successful attempt `attempt` of `delivery_id` under `owner`'s lease.
pub fn succeeded(delivery_id: DeliveryId, owner: &str, attempt: u32, now_us: i64) -> AttemptReport {
    AttemptReport {
        delivery_id,
        lease_owner: owner.into(),
        attempt,
        started_at_us: now_us,
        duration_us: 1,
        outcome: AttemptOutcome::Succeeded,
        retry_after_ms: None,
        http_status: Some(200),
        exit_code: None,
        error: None,
        response_excerpt: None,
    }
}
