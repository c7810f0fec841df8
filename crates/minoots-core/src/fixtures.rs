//! Values the unit tests of this crate share.

use crate::model::{Delivery, DeliveryId, DeliveryStatus, Timer, TimerId, TimerStatus};

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

/// A scheduled timer of `acme` created at T0 with a duration, due at `fire_at_us`, at
/// version 1, without actions.
pub fn scheduled(fire_at_us: i64) -> Timer {
    Timer {
        id: TimerId::new_v7(),
        tenant_id: "acme".into(),
        name: "t".into(),
        requested_by: None,
        status: TimerStatus::Scheduled,
        created_at_us: T0,
        fire_at_us,
        duration_ms: Some((fire_at_us - T0) / 1_000),
        fired_at_us: None,
        settled_at_us: None,
        cancelled_at_us: None,
        cancel_reason: None,
        metadata: Default::default(),
        labels: Default::default(),
        action_bundle: crate::ActionBundle::default(),
        idempotency_key: None,
        version: 1,
        schedule: None,
        traceparent: None,
    }
}
