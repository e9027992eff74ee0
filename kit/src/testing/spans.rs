//! Spans kept in memory instead of exported, for tests of tracing.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Captures the spans of this thread (run a current-thread runtime: the
/// servers' and the clients' tasks then all report here) with the
/// production trace filter plus the test's own target, and installs the
/// W3C propagator. Dropping it stops capturing.
pub struct CapturedSpans {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _default: tracing::subscriber::DefaultGuard,
}

impl std::fmt::Debug for CapturedSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapturedSpans")
    }
}

impl CapturedSpans {
    /// `test_target`: the test crate's own spans to keep too (its name).
    pub fn start(test_target: &'static str) -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let filter =
            crate::telemetry::trace_filter().with_target(test_target, tracing::Level::INFO);
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(filter),
        );
        Self {
            exporter,
            provider,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The spans ended so far.
    pub fn ended(&self) -> Vec<SpanData> {
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().unwrap_or_default()
    }
}

/// The value of a span attribute, as text.
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}
