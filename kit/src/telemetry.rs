//! Logs and traces, set up once per process.
//!
//! Logs go to stderr as text or JSON. Traces are exported over OTLP/gRPC
//! when `--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector
//! (the other standard `OTEL_*` variables, e.g. `OTEL_EXPORTER_OTLP_HEADERS`
//! and `OTEL_TRACES_SAMPLER`, are honoured by the SDK); without one no span
//! is exported and no trace context is kept. Context crosses processes as a
//! W3C `traceparent` ([`crate::trace`]).

use std::sync::Arc;

use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanProcessor};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogArgs, LogFormat};
use crate::log_ids::TraceIds;
use crate::spans::ExportLayer;
use tracing_subscriber::fmt::format::Format;

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans
/// still queued for export.
#[derive(Debug, Default)]
pub struct Telemetry {
    processor: Option<Arc<dyn SpanProcessor>>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(processor) = self.processor
            && let Err(error) = processor.shutdown()
        {
            eprintln!("trace export did not finish: {error}");
        }
    }
}

/// Installs the global subscriber: logs, and spans exported over OTLP when
/// an endpoint is configured (call it inside the tokio runtime: the
/// exporter is a gRPC client). Calling it twice keeps the first.
pub fn init(args: &LogArgs, service: &'static str) -> Telemetry {
    let processor = match args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        None => None,
        Some(endpoint) => match otlp_processor(endpoint, service) {
            Ok(processor) => Some(processor),
            Err(error) => {
                eprintln!("traces will not be exported: {error}");
                None
            }
        },
    };
    install(args, processor.clone());
    Telemetry { processor }
}

/// Installs the global subscriber handing spans to `processor` (a
/// benchmark's or a test's exporter).
pub fn install(args: &LogArgs, processor: Option<Arc<dyn SpanProcessor>>) {
    let logs = log_layer(
        args.log_format,
        &args.log,
        processor.is_some(),
        std::io::stderr,
    );
    let traces = processor.map(|processor| {
        set_propagator();
        ExportLayer::new(processor).with_filter(trace_filter())
    });
    let _already_installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
}

/// Log lines, text or JSON, to `writer`, filtered by `directives` (e.g.
/// `info,sqlx=warn`; unparsable means `info`). With `traced`, a line
/// written inside a traced span carries its `trace_id` and `span_id`.
pub fn log_layer<S, W>(
    format: LogFormat,
    directives: &str,
    traced: bool,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => logs
            .event_format(TraceIds::new(Format::default(), traced))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => logs
            .json()
            .event_format(TraceIds::new(Format::default().json(), traced))
            .with_filter(filter)
            .boxed(),
    }
}

/// W3C trace context (`traceparent`, `tracestate`) is how traces cross
/// processes ([`crate::trace`]).
pub fn set_propagator() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
}

/// Which spans are exported: this project's, from INFO up (RPCs, workflow
/// runs, steps, commits); other crates' only from WARN up, so the HTTP/2
/// and database internals stay out of traces.
pub fn trace_filter() -> tracing_subscriber::filter::Targets {
    use tracing::Level;
    tracing_subscriber::filter::Targets::new()
        .with_default(Level::WARN)
        .with_target("airt_kit", Level::INFO)
        .with_target("airt_capabilities", Level::INFO)
        .with_target("registry_service", Level::INFO)
        .with_target("policy_service", Level::INFO)
        .with_target("workflow_service", Level::INFO)
}

/// Spans batched (by the SDK's batch processor: its own thread, the
/// standard `OTEL_BSP_*` settings) and exported over OTLP/gRPC, with the
/// service's name and the `OTEL_RESOURCE_ATTRIBUTES` as the resource.
fn otlp_processor(endpoint: &str, service: &'static str) -> anyhow::Result<Arc<dyn SpanProcessor>> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let mut processor = BatchSpanProcessor::builder(exporter).build();
    processor.set_resource(&resource);
    Ok(Arc::new(processor))
}
