//! The spans of a timer's life, shared by the three planes: the switch that says whether
//! traces are collected at all ([`enable`], set once by the binary when `--otlp-endpoint`
//! is given), the parent context of a stored W3C `traceparent`, finished spans recorded
//! with their own start and end times ([`record_span`]), and the bridge between `tracing`
//! spans and trace parents ([`set_parent`], [`traceparent_of`]).
//!
//! Every span carries the `timer.id` attribute, and every span after the create is a child
//! of the trace parent stored with the timer, so one trace id covers create → webhook
//! answer even across restarts. This module never exports, buffers or blocks: spans go to
//! the global OpenTelemetry provider the binary installs (bounded batches on a thread of
//! their own). When tracing is off every function here returns after one relaxed atomic
//! load, without allocating.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minoots_core::traceparent::TraceParent;
use opentelemetry::Context;
pub use opentelemetry::KeyValue;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The instrumentation scope name of every MINOOTS span.
pub const TRACER_NAME: &str = "minoots";

/// Whether spans are collected (an exporter is installed). Off by default.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The tracer of [`record_span`], taken once from the global provider (which the binary
/// installs before [`enable`]), so recording a span takes no lock on the global.
static TRACER: OnceLock<opentelemetry::global::BoxedTracer> = OnceLock::new();

/// Spans handed to the exporter and accepted by the collector.
pub static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);
/// Spans dropped: the export queue was full, or the collector refused or did not answer
/// in time. Never retried, never queued beyond the bound.
pub static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Turns span collection on for the life of the process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are collected.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The context whose remote parent is `traceparent` (when it is a valid trace parent).
pub fn parent_context(traceparent: Option<&str>) -> Option<Context> {
    let tp = TraceParent::parse(traceparent?)?;
    let sc = SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.parent_id),
        TraceFlags::new(tp.flags),
        true,
        TraceState::default(),
    );
    Some(Context::new().with_remote_span_context(sc))
}

/// The trace parent naming the span of `cx`, when it has a valid one.
pub fn traceparent_of_context(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            parent_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        }
        .to_string()
    })
}

/// A point in time from microseconds since the Unix epoch (the store's unit).
pub fn time_of_us(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

/// One finished span of a timer's life.
pub struct FinishedSpan<'a> {
    pub name: &'static str,
    /// The stored trace parent of the timer; without one the span starts a trace of its own.
    pub parent: Option<&'a str>,
    pub timer_id: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Why the step failed, when it did (the span's status becomes an error).
    pub error: Option<String>,
}

/// Records a span that already happened, as a child of its timer's trace parent. A no-op
/// when tracing is off.
pub fn record_span(span: FinishedSpan<'_>) {
    if !enabled() {
        return;
    }
    let tracer = TRACER.get_or_init(|| opentelemetry::global::tracer(TRACER_NAME));
    let parent = parent_context(span.parent).unwrap_or_default();
    let mut attributes = span.attributes;
    attributes.push(KeyValue::new("timer.id", span.timer_id));
    let mut s = tracer
        .span_builder(span.name)
        .with_kind(SpanKind::Internal)
        .with_start_time(span.start)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    if let Some(e) = span.error {
        opentelemetry::trace::Span::set_status(&mut s, Status::error(e));
    }
    opentelemetry::trace::Span::end_with_timestamp(&mut s, span.end);
}

/// Makes the stored trace parent the parent of a `tracing` span (before it is entered).
/// A no-op when tracing is off or `traceparent` is absent or invalid.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(cx) = parent_context(traceparent) {
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to link.
        let _ = span.set_parent(cx);
    }
}

/// The trace parent naming a `tracing` span, for a request that continues its trace
/// (stored with a timer, or sent as a webhook's `traceparent`). `None` when tracing is off.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    traceparent_of_context(&span.context())
}

/// Sets an attribute on a `tracing` span's OpenTelemetry span. A no-op when tracing is off.
pub fn set_attribute(span: &tracing::Span, attribute: KeyValue) {
    if enabled() {
        span.set_attribute(attribute.key, attribute.value);
    }
}

/// Marks a `tracing` span's OpenTelemetry span as failed. A no-op when tracing is off.
pub fn set_error(span: &tracing::Span, error: impl Into<String>) {
    if enabled() {
        span.set_status(Status::error(error.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_stored_traceparent_becomes_a_remote_parent_and_back() {
        let cx = parent_context(Some(TP)).unwrap();
        assert!(cx.span().span_context().is_remote());
        assert_eq!(traceparent_of_context(&cx).as_deref(), Some(TP));
        assert!(parent_context(Some("00-garbage")).is_none());
        assert!(parent_context(None).is_none());
        assert_eq!(traceparent_of_context(&Context::new()), None);
    }
}
