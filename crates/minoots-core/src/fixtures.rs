//! Values the unit tests of this crate share.

use crate::model::{Delivery, DeliveryId, DeliveryStatus, TimerId};

/// 2026-11-27T10:00:00Z.
pub const T0: i64 = 1_795_773_600_000_000;

/// A delivery in flight under `exec-1`, at attempt `attempt` of `max_attempts`.
pub fn in_flight(attempt: u32, max_attempts: u32) -> Delivery {
    Delivery {
        id: DeliveryId::new_v7(),
        timer_id: TimerId::new_v7(),
        tenant_id: "acme".into(),
        occurrence: 0,
        action_index: 0,
        status: DeliveryStatus::InFlight,
        attempt,
        max_attempts,
        next_attempt_at_us: T0,
        lease_owner: Some("exec-1".into()),
        lease_expires_at_us: Some(T0 + 30_000_000),
        created_at_us: T0,
        updated_at_us: T0,
        last_error: None,
    }
}
