//! The `delivery.attempt` span: one per attempt of a leased delivery, a child of the trace
//! parent stored with its timer (so the attempt joins the create's trace even long after
//! it, or after a restart), with `timer.id`, the delivery, the attempt number, and the
//! answer's `http.response.status_code`. Its own trace parent is what the webhook request
//! carries in `traceparent`, so the receiver's trace joins the caller's.
//!
//! It must never change what is executed or reported: with tracing off the span is
//! [`tracing::Span::none`] and the webhook carries the stored trace parent unchanged.

use minoots_core::AttemptOutcome;
use minoots_core::records::LeasedDelivery;
use minoots_kernel_api::trace::{self, KeyValue};
use tracing::Span;

use crate::ExecResult;

/// The span of one attempt of `d`, and the `traceparent` its request carries: the span's
/// own with tracing on, else the one stored with the timer (when it has one).
pub(crate) fn attempt_span(d: &LeasedDelivery) -> (Span, Option<String>) {
    if !trace::enabled() {
        return (Span::none(), d.timer.traceparent.clone());
    }
    let span = tracing::info_span!(
        "delivery.attempt",
        otel.kind = "client",
        timer.id = %d.timer.id,
        delivery.id = %d.delivery.id,
        delivery.attempt = d.delivery.attempt,
        delivery.action_index = d.delivery.action_index,
    );
    trace::set_parent(&span, d.timer.traceparent.as_deref());
    let traceparent = trace::traceparent_of(&span).or_else(|| d.timer.traceparent.clone());
    (span, traceparent)
}

/// Records how the attempt ended on its span.
pub(crate) fn attempt_finished(span: &Span, result: &ExecResult) {
    if !trace::enabled() {
        return;
    }
    if let Some(status) = result.http_status {
        trace::set_attribute(
            span,
            KeyValue::new("http.response.status_code", i64::from(status)),
        );
    }
    trace::set_attribute(
        span,
        KeyValue::new("delivery.outcome", result.outcome.as_str()),
    );
    if result.outcome != AttemptOutcome::Succeeded {
        trace::set_error(
            span,
            result
                .error
                .clone()
                .unwrap_or_else(|| result.outcome.as_str().to_string()),
        );
    }
}
