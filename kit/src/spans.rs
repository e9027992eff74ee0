//! The exporting layer: each `tracing` span this project opens (and the
//! trace filter lets through) becomes one OpenTelemetry span, built
//! directly from what the span recorded and handed to the span processor
//! when the span closes.
//!
//! Built here rather than through a general bridge because every call pays
//! for it: a span costs one small record in the span's extensions (ids,
//! start time, attributes), nothing on enter or exit, and one `SpanData` at
//! close. Sampling follows the standard `OTEL_TRACES_SAMPLER` /
//! `OTEL_TRACES_SAMPLER_ARG` variables (the SDK's sampler); unsampled spans
//! still get ids, so their children and the services they call agree.
//! Events (log lines at the filter's level) inside a sampled span become
//! span events; an ERROR event marks the span's status as an error.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceState,
};
use opentelemetry::{Context as OtelContext, InstrumentationScope, Key, KeyValue};
use opentelemetry_sdk::trace::{
    Config, IdGenerator as _, RandomIdGenerator, SamplingDecision, ShouldSample, SpanData,
    SpanEvents, SpanLinks, SpanProcessor,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Attributes and events kept per span (the SDK's default limits); more
/// are counted as dropped.
const MAX_ATTRIBUTES: usize = 128;
const MAX_EVENTS: usize = 128;

/// The sampler the standard environment variables name, read once.
static SAMPLER: LazyLock<Box<dyn ShouldSample>> = LazyLock::new(|| Config::default().sampler);

/// What the layer keeps on a span while it is open.
#[derive(Debug)]
struct Traced {
    context: SpanContext,
    parent_span_id: SpanId,
    parent_remote: bool,
    start: SystemTime,
    /// Recorded for sampled spans and for roots (which a remote parent may
    /// still make sampled); empty otherwise.
    attributes: Vec<KeyValue>,
    dropped_attributes: u32,
    events: SpanEvents,
    status: Status,
}

impl Traced {
    fn recording(&self) -> bool {
        self.context.is_sampled() || self.parent_span_id == SpanId::INVALID
    }

    /// Sets attribute `key`; an empty text (an absent request id, a caller
    /// not yet known) is no attribute.
    fn record(&mut self, key: &'static str, value: opentelemetry::Value) {
        if matches!(&value, opentelemetry::Value::String(s) if s.as_str().is_empty()) {
            self.attributes.retain(|kv| kv.key.as_str() != key);
            return;
        }
        if let Some(existing) = self.attributes.iter_mut().find(|kv| kv.key.as_str() == key) {
            existing.value = value;
        } else if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes
                .push(KeyValue::new(Key::from_static_str(key), value));
        } else {
            self.dropped_attributes += 1;
        }
    }

    /// Continues `parent`'s trace from here, deciding sampling again.
    fn reparent(&mut self, parent: &SpanContext, name: &str) {
        let (flags, state) = sample(Some(parent), parent.trace_id(), name);
        self.context = SpanContext::new(
            parent.trace_id(),
            self.context.span_id(),
            flags,
            false,
            state,
        );
        self.parent_span_id = parent.span_id();
        self.parent_remote = parent.is_remote();
    }
}

/// The sampling decision for a new span of trace `trace_id`.
fn sample(
    parent: Option<&SpanContext>,
    trace_id: opentelemetry::trace::TraceId,
    name: &str,
) -> (TraceFlags, TraceState) {
    let parent = parent.map(|p| OtelContext::new().with_remote_span_context(p.clone()));
    let result = SAMPLER.should_sample(
        parent.as_ref(),
        trace_id,
        name,
        &SpanKind::Internal,
        &[],
        &[],
    );
    let flags = match result.decision {
        SamplingDecision::RecordAndSample => TraceFlags::SAMPLED,
        SamplingDecision::Drop | SamplingDecision::RecordOnly => TraceFlags::default(),
    };
    (flags, result.trace_state)
}

/// Turns spans into OpenTelemetry spans for `processor`.
#[derive(Debug)]
pub struct ExportLayer {
    processor: Arc<dyn SpanProcessor>,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
}

impl ExportLayer {
    pub fn new(processor: Arc<dyn SpanProcessor>) -> Self {
        LazyLock::force(&SAMPLER);
        Self {
            processor,
            ids: RandomIdGenerator::default(),
            scope: InstrumentationScope::builder("airt").build(),
        }
    }

    /// The open span's context `id` continues: its explicit parent, else
    /// the current span, as this layer sees them.
    fn parent<S>(attrs: &Attributes<'_>, ctx: &Context<'_, S>) -> Option<SpanContext>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let parent = if let Some(parent) = attrs.parent() {
            ctx.span(parent)
        } else if attrs.is_contextual() {
            ctx.lookup_current()
        } else {
            None
        }?;
        let extensions = parent.extensions();
        extensions.get::<Traced>().map(|t| t.context.clone())
    }
}

impl<S> tracing_subscriber::Layer<S> for ExportLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = Self::parent(attrs, &ctx);
        let trace_id = parent
            .as_ref()
            .map_or_else(|| self.ids.new_trace_id(), SpanContext::trace_id);
        let name = attrs.metadata().name();
        let (flags, state) = sample(parent.as_ref(), trace_id, name);
        let mut traced = Traced {
            context: SpanContext::new(trace_id, self.ids.new_span_id(), flags, false, state),
            parent_span_id: parent
                .as_ref()
                .map_or(SpanId::INVALID, SpanContext::span_id),
            parent_remote: parent.as_ref().is_some_and(SpanContext::is_remote),
            start: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes: 0,
            events: SpanEvents::default(),
            status: Status::Unset,
        };
        if traced.recording() {
            traced.attributes.reserve(attrs.fields().len());
            attrs.record(&mut SpanFields(&mut traced));
        }
        span.extensions_mut().insert(traced);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(traced) = extensions.get_mut::<Traced>()
            && traced.recording()
        {
            values.record(&mut SpanFields(traced));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(traced) = extensions.get_mut::<Traced>() else {
            return;
        };
        if !traced.context.is_sampled() {
            return;
        }
        if traced.events.len() >= MAX_EVENTS {
            traced.events.dropped_count += 1;
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        fields
            .attributes
            .push(KeyValue::new("level", level.as_str()));
        if level == tracing::Level::ERROR {
            traced.status = Status::error(fields.message.clone());
        }
        traced.events.events.push(Event::new(
            fields.message,
            SystemTime::now(),
            fields.attributes,
            0,
        ));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(traced) = span.extensions_mut().remove::<Traced>() else {
            return;
        };
        if !traced.context.is_sampled() {
            return;
        }
        self.processor.on_end(SpanData {
            span_context: traced.context,
            parent_span_id: traced.parent_span_id,
            parent_span_is_remote: traced.parent_remote,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(span.name()),
            start_time: traced.start,
            end_time: SystemTime::now(),
            attributes: traced.attributes,
            dropped_attributes_count: traced.dropped_attributes,
            events: traced.events,
            links: SpanLinks::default(),
            status: traced.status,
            instrumentation_scope: self.scope.clone(),
        });
    }
}

/// Records a span's fields as attributes.
struct SpanFields<'a>(&'a mut Traced);

impl Visit for SpanFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.record(field.name(), value.to_owned().into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.record(field.name(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), Into::into);
        self.0.record(field.name(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.record(field.name(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.record(field.name(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.record(field.name(), format!("{value:?}").into());
    }
}

/// An event's message (its name) and its other fields.
#[derive(Default)]
struct EventFields {
    message: String,
    attributes: Vec<KeyValue>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), format!("{value:?}")));
        }
    }
}

/// The trace context of span `id` or, when the layer did not see it, of
/// its nearest ancestor that it saw.
pub(crate) fn context_of(dispatch: &Dispatch, id: &Id) -> Option<SpanContext> {
    let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
    let span = registry.span(id)?;
    span.scope().find_map(|span| {
        let extensions = span.extensions();
        extensions.get::<Traced>().map(|t| t.context.clone())
    })
}

/// The trace context of `span`, as [`context_of`].
pub(crate) fn context_of_span(span: &tracing::Span) -> Option<SpanContext> {
    span.with_subscriber(|(id, dispatch)| context_of(dispatch, id))
        .flatten()
}

/// Makes `parent` the parent of `span` (if the layer sees `span`).
pub(crate) fn set_parent(span: &tracing::Span, parent: &SpanContext) {
    if !parent.is_valid() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(span) = registry.span(id) else {
            return;
        };
        let name = span.name();
        if let Some(traced) = span.extensions_mut().get_mut::<Traced>() {
            traced.reparent(parent, name);
        }
    });
}
