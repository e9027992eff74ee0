//! Spans kept in memory instead of exported, for tests of tracing.

use std::sync::{Arc, Mutex, OnceLock};

use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SimpleSpanProcessor, SpanData, SpanProcessor,
};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Captures the spans of the whole test process: installs (once) a global
/// subscriber with the production trace filter plus the test crate's own
/// target, the W3C propagator, and the production JSON log layer (at
/// `info`) writing into memory ([`CapturedSpans::log_lines`]).
///
/// Global, not a thread's default: spans end on whichever thread drops
/// their last handle (SQLite's worker threads among them), and a parent is
/// released through that thread's subscriber. Tests of one binary run in
/// parallel and share the capture: tell yours apart by trace id.
pub struct CapturedSpans {
    exporter: InMemorySpanExporter,
    processor: Arc<dyn SpanProcessor>,
    logs: LogBuffer,
}

/// Where the captured log lines are written.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl std::fmt::Debug for CapturedSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapturedSpans")
    }
}

type Capture = (InMemorySpanExporter, Arc<dyn SpanProcessor>, LogBuffer);

static CAPTURE: OnceLock<Capture> = OnceLock::new();

impl CapturedSpans {
    /// `test_target`: the test crate's own spans to keep too (its name;
    /// the first call's is kept for the process).
    ///
    /// # Panics
    /// When another global subscriber was installed first.
    pub fn start(test_target: &'static str) -> Self {
        let (exporter, processor, logs) = CAPTURE
            .get_or_init(|| {
                let exporter = InMemorySpanExporter::default();
                let processor: Arc<dyn SpanProcessor> =
                    Arc::new(SimpleSpanProcessor::new(exporter.clone()));
                crate::telemetry::set_propagator();
                let filter =
                    crate::telemetry::trace_filter().with_target(test_target, tracing::Level::INFO);
                let logs = LogBuffer::default();
                let subscriber = tracing_subscriber::registry()
                    .with(crate::telemetry::log_layer(
                        crate::config::LogFormat::Json,
                        "info",
                        true,
                        logs.clone(),
                    ))
                    .with(crate::spans::ExportLayer::new(processor.clone()).with_filter(filter));
                tracing::subscriber::set_global_default(subscriber)
                    .expect("no other global subscriber in a test of tracing");
                (exporter, processor, logs)
            })
            .clone();
        Self {
            exporter,
            processor,
            logs,
        }
    }

    /// The JSON log lines written so far, in this process, parsed.
    ///
    /// # Panics
    /// When a line is not a JSON object.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let bytes = self
            .logs
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }

    /// The spans ended so far, in this process.
    pub fn ended(&self) -> Vec<SpanData> {
        let _ = self.processor.force_flush();
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
