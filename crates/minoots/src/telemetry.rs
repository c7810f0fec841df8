//! Logging and trace export for the server processes: the `tracing` subscriber (text or
//! JSON logs on stderr, filtered by `MINOOTS_LOG`) and, when `--otlp-endpoint` is set, the
//! OpenTelemetry pipeline that exports MINOOTS's spans over OTLP/gRPC.
//!
//! Without an endpoint nothing here exists at run time: the subscriber is the plain one,
//! no span is collected and `minoots_kernel_api::trace` stays off. With one, every limit
//! is named below: finished spans wait in a queue of at most [`MAX_QUEUED_SPANS`], leave
//! in batches of at most [`MAX_EXPORT_BATCH_SPANS`] every [`EXPORT_INTERVAL`] from a
//! thread of the SDK's own, and each export gives up after [`EXPORT_TIMEOUT`]. Recording
//! a span never waits: when the queue is full, or the collector is down, spans are
//! dropped and counted (`minoots_kernel_api::trace::SPANS_DROPPED`), never retried and
//! never queued beyond the bound. This module must never block the firing thread, the
//! store's writer or a request on the collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use minoots_kernel_api::trace::{self as spans, SPANS_DROPPED, SPANS_EXPORTED};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter,
    SpanProcessor,
};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Most finished spans waiting for export; past it new spans are dropped and counted.
/// At ~1 KiB a span, a full queue holds about 2 MiB.
pub const MAX_QUEUED_SPANS: usize = 2_048;
/// Most spans in one export request.
pub const MAX_EXPORT_BATCH_SPANS: usize = 512;
/// How often queued spans are sent (sooner when a batch is full).
pub const EXPORT_INTERVAL: Duration = Duration::from_millis(1_000);
/// How long one export request may take before its spans are dropped.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping process waits to send the spans still queued.
pub const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `--otlp-endpoint` accepted.
const MAX_ENDPOINT_BYTES: usize = 2_048;

/// Keeps the trace pipeline alive; [`Traces::shutdown`] sends what is queued (bounded by
/// [`SHUTDOWN_FLUSH_TIMEOUT`]) and stops the export thread.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_FLUSH_TIMEOUT) {
            tracing::warn!(error = %e, "traces: the last spans could not be sent");
        }
        let dropped = SPANS_DROPPED.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                exported = SPANS_EXPORTED.load(Ordering::Relaxed),
                "traces: spans were dropped (export queue full or collector unavailable)"
            );
        }
    }
}

/// Checks an `--otlp-endpoint`: an `http://host:port` URL of an OTLP/gRPC receiver.
pub fn check_endpoint(text: &str) -> anyhow::Result<String> {
    let refuse = |why: &str| {
        anyhow::anyhow!(
            "--otlp-endpoint (MINOOTS_OTLP_ENDPOINT) {why}; give the OTLP/gRPC receiver as http://host:4317"
        )
    };
    if text.len() > MAX_ENDPOINT_BYTES {
        return Err(refuse(&format!(
            "is longer than {MAX_ENDPOINT_BYTES} bytes"
        )));
    }
    let url = url::Url::parse(text).map_err(|e| refuse(&format!("is not a URL ({e})")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(refuse(
                "uses https, which this build's exporter does not speak (no TLS); send to a local collector over http",
            ));
        }
        other => return Err(refuse(&format!("has the scheme \"{other}\", not http"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("names no host"));
    }
    Ok(text.to_string())
}

/// Installs the logger, and the trace pipeline when `otlp_endpoint` is given (it must be
/// called inside the Tokio runtime: the gRPC exporter's connection lives there). `role`
/// names the process in the spans' `service.name` (`minoots-serve`, ...).
pub fn init(
    log_format: &str,
    otlp_endpoint: Option<&str>,
    role: &str,
) -> anyhow::Result<Option<Traces>> {
    if !matches!(log_format, "text" | "json") {
        anyhow::bail!("--log-format must be \"text\" or \"json\", not \"{log_format}\"");
    }
    let Some(endpoint) = otlp_endpoint.filter(|e| !e.is_empty()) else {
        init_plain_logging(log_format);
        return Ok(None);
    };
    let endpoint = check_endpoint(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let queued = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(CountingExporter {
        inner: exporter,
        queued: queued.clone(),
        failing: AtomicBool::new(false),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            // One more than ours: our bound always trips first, so every drop is counted.
            .with_max_queue_size(MAX_QUEUED_SPANS + 1)
            .with_max_export_batch_size(MAX_EXPORT_BATCH_SPANS)
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build(),
    )
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BoundedQueue {
            inner: batch,
            queued,
        })
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(format!("minoots-{role}"))
                .build(),
        )
        .build();
    let tracer = provider.tracer(spans::TRACER_NAME);
    opentelemetry::global::set_tracer_provider(provider.clone());

    // Only MINOOTS's own spans become OpenTelemetry spans (not those of the HTTP and gRPC
    // libraries, nor the export's own), and log levels do not hide them.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("minoots")
        }));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(otel);
    match log_format {
        "json" => registry
            .with(
                logs.json()
                    .event_format(WithTraceId(tracing_subscriber::fmt::format().json()))
                    .with_filter(env_filter()),
            )
            .init(),
        _ => registry.with(logs.with_filter(env_filter())).init(),
    }
    spans::enable();
    tracing::info!(endpoint = %endpoint, "traces: exporting spans over OTLP/gRPC");
    Ok(Some(Traces { provider }))
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_env("MINOOTS_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The logger alone, exactly as without traces.
fn init_plain_logging(format: &str) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        "json" => builder.json().init(),
        _ => builder.init(),
    }
}

/// The trace id of the span being run, as 32 hex digits.
fn current_trace_id() -> Option<String> {
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.trace_id().to_string())
    })
}

/// JSON log lines with a top-level `trace_id` when the event happens inside a traced span.
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// The SDK's batch processor behind a queue bound of our own, so that every span dropped
/// for a full queue is counted ([`SPANS_DROPPED`]).
#[derive(Debug)]
struct BoundedQueue {
    inner: BatchSpanProcessor,
    /// Spans handed to `inner` and not yet exported or dropped.
    queued: Arc<AtomicUsize>,
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            // The batch processor ignores these too.
            return;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_SPANS {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            SPANS_DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it sent and what it dropped, and freeing queue room.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
    /// Whether the last export failed: one warning per outage, not one per batch.
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.queued.fetch_sub(n, Ordering::Relaxed);
        match &result {
            Ok(()) => {
                SPANS_EXPORTED.fetch_add(n as u64, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("traces: the collector accepts spans again");
                }
            }
            Err(e) => {
                SPANS_DROPPED.fetch_add(n as u64, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, spans = n, "traces: export failed; spans are dropped until the collector answers");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::*;

    /// A log destination the test reads back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_inside_a_traced_span_carry_its_trace_id() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let provider = SdkTracerProvider::builder().build();
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithTraceId(tracing_subscriber::fmt::format().json()))
                    .with_writer(move || out.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("timer.create");
            span.set_parent(spans::parent_context(Some(TP)).unwrap())
                .unwrap();
            span.in_scope(|| tracing::warn!(n = 1, "inside"));
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["fields"]["message"], "outside");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[1]["fields"]["message"], "inside");
        assert_eq!(lines[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(check_endpoint("http://127.0.0.1:4317").is_ok());
        assert!(check_endpoint("http://collector:4317").is_ok());
        for bad in [
            "",
            "127.0.0.1:4317",
            "https://collector:4317",
            "ftp://x",
            "http://",
        ] {
            let e = check_endpoint(bad).unwrap_err().to_string();
            assert!(e.contains("--otlp-endpoint"), "{bad:?}: {e}");
        }
    }
}
