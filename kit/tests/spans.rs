//! The exporting layer: what a span records is what is exported, events
//! inside it become span events, and an unsampled trace stays unsampled
//! (no span exported) while its context still travels.

use airt_kit::testing::spans::{CapturedSpans, attribute};
use opentelemetry::trace::Status;

const UNSAMPLED_TRACE: &str = "6bf92f3577b34da6a3ce929d0e0e4736";

fn headers(traceparent: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", traceparent.parse().expect("header value"));
    headers
}

#[test]
fn recorded_fields_are_attributes_once_with_their_last_value() {
    let captured = CapturedSpans::start("spans");
    let trace_id = {
        let span = tracing::info_span!(
            "call",
            method = %"/x.Y/Z",
            principal = "",
            attempt = 2u64,
            big = u64::MAX,
            retried = false,
            code = tracing::field::Empty,
        );
        span.record("principal", "user:alice");
        span.record("code", tracing::field::debug(tonic::Code::NotFound));
        let _entered = span.enter();
        airt_kit::trace::current_trace_id().expect("traced")
    };
    let spans = captured.ended();
    let span = spans
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == trace_id)
        .expect("the span was exported");
    assert_eq!(span.name, "call");
    assert_eq!(attribute(span, "method").as_deref(), Some("/x.Y/Z"));
    assert_eq!(attribute(span, "principal").as_deref(), Some("user:alice"));
    assert_eq!(attribute(span, "attempt").as_deref(), Some("2"));
    assert_eq!(
        attribute(span, "big").as_deref(),
        Some("18446744073709551615")
    );
    assert_eq!(attribute(span, "retried").as_deref(), Some("false"));
    assert_eq!(attribute(span, "code").as_deref(), Some("NotFound"));
    let principals = span
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str() == "principal")
        .count();
    assert_eq!(principals, 1, "{:?}", span.attributes);
    assert!(span.end_time >= span.start_time);
}

#[test]
fn events_in_a_span_are_its_events_and_an_error_marks_it() {
    let captured = CapturedSpans::start("spans");
    let (trace_id, child_span_id) = {
        let parent = tracing::info_span!("parent");
        let _in_parent = parent.enter();
        let child = tracing::info_span!("child");
        let _in_child = child.enter();
        tracing::info!(rows = 3, "loaded");
        tracing::error!(reason = "disk full", "commit failed");
        let headers = airt_kit::trace::current_headers();
        let traceparent = &headers.iter().find(|(k, _)| k == "traceparent").unwrap().1;
        let span_id = traceparent.split('-').nth(2).unwrap().to_owned();
        (airt_kit::trace::current_trace_id().unwrap(), span_id)
    };
    let spans = captured.ended();
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace_id)
        .collect();
    assert_eq!(ours.len(), 2, "parent and child, one trace");
    let child = ours.iter().find(|s| s.name == "child").unwrap();
    let parent = ours.iter().find(|s| s.name == "parent").unwrap();
    assert_eq!(child.span_context.span_id().to_string(), child_span_id);
    assert_eq!(child.parent_span_id, parent.span_context.span_id());
    assert!(!child.parent_span_is_remote);
    let names: Vec<_> = child.events.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["loaded", "commit failed"]);
    let loaded = &child.events[0];
    assert!(
        loaded
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "rows" && kv.value.to_string() == "3")
    );
    assert_eq!(child.status, Status::error("commit failed"));
    assert_eq!(parent.status, Status::Unset);
    assert!(parent.events.is_empty());
}

#[test]
fn an_unsampled_callers_trace_is_not_exported_but_still_propagated() {
    let captured = CapturedSpans::start("spans");
    let propagated = {
        let span = tracing::info_span!("rpc");
        airt_kit::trace::continue_from(
            &span,
            &headers(&format!("00-{UNSAMPLED_TRACE}-00f067aa0ba902b7-00")),
        );
        let _entered = span.enter();
        let child = tracing::info_span!("step");
        let _in_child = child.enter();
        tracing::info!("inside an unsampled trace");
        airt_kit::trace::current_headers()
    };
    let traceparent = &propagated
        .iter()
        .find(|(k, _)| k == "traceparent")
        .expect("still propagated")
        .1;
    assert!(traceparent.starts_with(&format!("00-{UNSAMPLED_TRACE}-")));
    assert!(traceparent.ends_with("-00"), "{traceparent}");
    assert!(
        captured
            .ended()
            .iter()
            .all(|s| s.span_context.trace_id().to_string() != UNSAMPLED_TRACE),
        "nothing of an unsampled trace is exported"
    );
}

#[test]
fn a_malformed_traceparent_leaves_the_span_a_root() {
    let captured = CapturedSpans::start("spans");
    let trace_id = {
        let span = tracing::info_span!("rpc");
        airt_kit::trace::continue_from(&span, &headers("00-not-a-trace-01"));
        let _entered = span.enter();
        airt_kit::trace::current_trace_id().expect("a trace of its own")
    };
    let spans = captured.ended();
    let span = spans
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == trace_id)
        .expect("exported");
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
}
