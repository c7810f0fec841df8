//! The kernel's spans of a timer's life: the store commit of its create, its fire, and the
//! lease of each of its deliveries, each a child of the trace parent stored with the timer
//! and recorded after the step, with the step's own start and end times.
//!
//! Spans are recorded by the tasks that await the store (the create's caller, the fire
//! dispatcher, the lease sessions), never by the firing thread, and only after the commit:
//! recording hands a finished span to the exporter's bounded queue and never waits. When
//! tracing is off each function returns after one atomic load.

use std::time::SystemTime;

use minoots_core::Timer;
use minoots_kernel_api::trace::{self, FinishedSpan, KeyValue};
use minoots_store::{FireOutcome, FireRequest, LeasedDelivery};

/// The store commit of a create (`timer.create.commit`), a child of the create's span.
pub(crate) fn create_committed(timer: &Timer, created: bool, start: SystemTime) {
    if !trace::enabled() {
        return;
    }
    trace::record_span(FinishedSpan {
        name: "store.commit",
        parent: timer.traceparent.as_deref(),
        timer_id: timer.id.to_string(),
        start,
        end: SystemTime::now(),
        attributes: vec![
            KeyValue::new("db.operation.name", "create_timer"),
            KeyValue::new("timer.created", created),
        ],
        error: None,
    });
}

/// One `timer.fire` span per timer of a committed batch that fired or settled: from the
/// moment the firing thread took it to the commit of its fire.
pub(crate) fn fired(batch: &[FireRequest], outcomes: &[FireOutcome]) {
    if !trace::enabled() {
        return;
    }
    let end = SystemTime::now();
    for (request, outcome) in batch.iter().zip(outcomes) {
        let (deliveries, fire_at_us, traceparent) = match outcome {
            FireOutcome::Fired {
                deliveries,
                fire_at_us,
                traceparent,
                ..
            } => (*deliveries, *fire_at_us, traceparent),
            FireOutcome::Settled {
                fire_at_us,
                traceparent,
                ..
            } => (0, *fire_at_us, traceparent),
            _ => continue,
        };
        trace::record_span(FinishedSpan {
            name: "timer.fire",
            parent: traceparent.as_deref(),
            timer_id: request.timer_id.to_string(),
            start: trace::time_of_us(request.fired_at_us),
            end,
            attributes: vec![
                KeyValue::new("timer.fire_at_us", fire_at_us),
                KeyValue::new("timer.lateness_us", request.fired_at_us - fire_at_us),
                KeyValue::new("timer.deliveries", deliveries as i64),
            ],
            error: None,
        });
    }
}

/// One `delivery.lease` span per delivery a lease session claimed.
pub(crate) fn leased(claimed: &[LeasedDelivery], owner: &str, start: SystemTime) {
    if !trace::enabled() {
        return;
    }
    let end = SystemTime::now();
    for d in claimed {
        trace::record_span(FinishedSpan {
            name: "delivery.lease",
            parent: d.timer.traceparent.as_deref(),
            timer_id: d.timer.id.to_string(),
            start,
            end,
            attributes: vec![
                KeyValue::new("delivery.id", d.delivery.id.to_string()),
                KeyValue::new("delivery.attempt", i64::from(d.delivery.attempt)),
                KeyValue::new("delivery.action_index", i64::from(d.delivery.action_index)),
                KeyValue::new("lease.owner", owner.to_string()),
            ],
            error: None,
        });
    }
}
