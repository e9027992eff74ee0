//! Logs and traces, set up once per process.
//!
//! Logs go to stderr as text or JSON. Traces are exported over OTLP/gRPC
//! when `--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector
//! (the other standard `OTEL_*` variables, e.g. `OTEL_EXPORTER_OTLP_HEADERS`
//! and `OTEL_TRACES_SAMPLER`, are honoured by the SDK); without one no span
//! is exported and no trace context is kept. Context crosses processes as a
//! W3C `traceparent` ([`crate::trace`]).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogArgs, LogFormat};
use crate::log_ids::TraceIds;
use tracing_subscriber::fmt::format::Format;

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans
/// still queued for export.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("trace export did not finish: {error}");
        }
    }
}

/// Installs the global subscriber: logs, and spans exported over OTLP when
/// an endpoint is configured (call it inside the tokio runtime: the
/// exporter is a gRPC client). Calling it twice keeps the first.
pub fn init(args: &LogArgs, service: &'static str) -> Telemetry {
    let provider = match args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        None => None,
        Some(endpoint) => match otlp_provider(endpoint, service) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("traces will not be exported: {error}");
                None
            }
        },
    };
    install(args, provider.clone());
    Telemetry { provider }
}

/// Installs the global subscriber exporting spans through `provider` (for
/// tests with an in-memory exporter).
pub fn install(args: &LogArgs, provider: Option<SdkTracerProvider>) {
    let logs = log_layer(
        args.log_format,
        &args.log,
        provider.is_some(),
        std::io::stderr,
    );
    let traces = provider.map(|provider| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tracer = provider.tracer("airt");
        opentelemetry::global::set_tracer_provider(provider);
        exporting_layer(tracer).with_filter(trace_filter())
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

/// The layer that turns spans into OpenTelemetry spans, with only what a
/// trace needs: no source locations, thread names or busy/idle times per
/// span (each costs work on every span or every poll of an instrumented
/// future, on the request path), and no OpenTelemetry context made current
/// on every poll (parents and propagation come from the `tracing` span
/// tree, [`crate::trace`]).
pub fn exporting_layer<S, T>(tracer: T) -> tracing_opentelemetry::OpenTelemetryLayer<S, T>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
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

fn otlp_provider(endpoint: &str, service: &'static str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
