//! Log lines that name their trace: each line written inside a traced span
//! carries that span's `trace_id` and `span_id` (top-level keys in JSON,
//! `trace_id=… span_id=…` at the end of a text line).
//!
//! The ids are looked up when a line is written, not recorded on every
//! span: a span costs the same whether or not anything logs inside it, and
//! the exported spans do not repeat their own ids as attributes.

use std::fmt::{self, Write as _};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// An event format that adds the enclosing span's trace ids to what `F`
/// writes. `traced: false` (no exporter) writes exactly what `F` writes.
pub struct TraceIds<F> {
    inner: F,
    traced: bool,
}

impl<F> TraceIds<F> {
    pub fn new(inner: F, traced: bool) -> Self {
        Self { inner, traced }
    }
}

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = self
            .traced
            .then(|| ctx.lookup_current())
            .flatten()
            .and_then(|span| ids_of(&span.id()));
        let Some((trace_id, span_id)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_ids(line, &trace_id, &span_id))
    }
}

/// The OpenTelemetry ids of a span, if it is traced. Reads the global
/// dispatcher, which is the one writing (scoped dispatchers answer
/// nothing while an event is dispatched: their lines go without ids).
fn ids_of(id: &tracing::span::Id) -> Option<(String, String)> {
    let ids = tracing::dispatcher::get_default(|dispatch| crate::spans::context_of(dispatch, id))?;
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// `line` (one formatted event, JSON object or text, ending in a newline)
/// with the two ids added: as the last keys of a JSON object, or at the
/// end of a text line. Ids are hex digits: nothing to escape.
fn with_ids(mut line: String, trace_id: &str, span_id: &str) -> String {
    let body_end = line.trim_end_matches('\n').len();
    let newline = line.split_off(body_end);
    if line.ends_with('}') && line.starts_with('{') {
        line.pop();
        let separator = if line.len() > 1 { "," } else { "" };
        let _ = write!(
            line,
            r#"{separator}"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
        );
    } else {
        let _ = write!(line, " trace_id={trace_id} span_id={span_id}");
    }
    line.push_str(&newline);
    line
}

#[cfg(test)]
mod tests {
    use super::with_ids;

    #[test]
    fn json_lines_get_two_more_keys() {
        let line = with_ids("{\"msg\":\"x\"}\n".to_owned(), "ab", "cd");
        assert_eq!(
            line,
            "{\"msg\":\"x\",\"trace_id\":\"ab\",\"span_id\":\"cd\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("still JSON");
        assert_eq!(parsed["trace_id"], "ab");
        assert_eq!(
            with_ids("{}\n".to_owned(), "ab", "cd"),
            "{\"trace_id\":\"ab\",\"span_id\":\"cd\"}\n"
        );
    }

    #[test]
    fn text_lines_end_with_the_ids() {
        assert_eq!(
            with_ids("INFO rpc: answered\n".to_owned(), "ab", "cd"),
            "INFO rpc: answered trace_id=ab span_id=cd\n"
        );
        assert_eq!(
            with_ids("no newline".to_owned(), "ab", "cd"),
            "no newline trace_id=ab span_id=cd"
        );
    }
}
