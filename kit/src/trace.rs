//! W3C trace context across processes: read from an incoming call's
//! `traceparent`/`tracestate`, written into outgoing gRPC metadata and HTTP
//! headers. Without an exporter ([`crate::telemetry`]) nothing is read or
//! written.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};

use crate::spans;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl Injector for Collect<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}

struct Pairs<'a>(&'a [(&'a str, &'a str)]);

impl Extractor for Pairs<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// Makes the caller's trace (if its headers carry one) the parent of `span`.
pub fn continue_from(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(headers))
    });
    spans::set_parent(span, parent.span().span_context());
}

/// Makes `span` (created without a parent) continue the current span's
/// trace, for work that outlives the current span (a background run
/// started by a call): the call's span can end before the work does.
pub fn continue_current(span: &tracing::Span) {
    if let Some(parent) = spans::context_of_span(&tracing::Span::current()) {
        spans::set_parent(span, &parent);
    }
}

/// Makes the span named by a stored W3C `traceparent` the parent of `span`
/// (a workflow's later runs join the trace of its submission). An empty or
/// malformed value leaves `span` a root.
pub fn continue_traceparent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Pairs(&[("traceparent", traceparent)]))
    });
    spans::set_parent(span, parent.span().span_context());
}

/// The current span as a W3C `traceparent` value, empty when nothing is
/// traced (what a workflow stores to join its later runs to its trace).
pub fn current_traceparent() -> String {
    current_headers()
        .into_iter()
        .find(|(key, _)| key == "traceparent")
        .map(|(_, value)| value)
        .unwrap_or_default()
}

/// The trace id in a W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`),
/// if it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    let well_formed = trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id.bytes().any(|b| b != b'0');
    well_formed.then_some(trace_id)
}

/// The trace context of the current span as headers (`traceparent`,
/// `tracestate`): empty when nothing is traced.
pub fn current_headers() -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let Some(current) = current() else {
        return headers;
    };
    let context = opentelemetry::Context::new().with_remote_span_context(current);
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Collect(&mut headers));
    });
    headers
}

/// The trace context of the current span, when it is traced.
fn current() -> Option<SpanContext> {
    spans::context_of_span(&tracing::Span::current()).filter(SpanContext::is_valid)
}

/// Adds the current trace context to an outgoing gRPC request.
pub fn inject<T>(request: &mut tonic::Request<T>) {
    for (key, value) in current_headers() {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            request.metadata_mut().insert(key, value);
        }
    }
}

/// The trace id of the current span (32 hex digits), if it is traced.
pub fn current_trace_id() -> Option<String> {
    current().map(|context| context.trace_id().to_string())
}
