//! Bounds checked before a request's text reaches a parser.
//!
//! The YAML parser takes time that grows faster than the input with its
//! nesting (160 KB of `[` kept it busy for minutes), so nesting is measured
//! first, in one linear pass, and deep documents are refused before any
//! parsing. The scan over-approximates: it may refuse a pathological but
//! valid document (more than [`MAX_DEPTH`] unbalanced brackets in plain
//! text), never let a deep one through.

/// Deepest nesting of collections accepted in any document.
pub const MAX_DEPTH: usize = 64;
/// Deepest indentation (in columns, block indicators counting two) accepted.
pub const MAX_INDENT: usize = 512;

/// Largest JSON a step may store as its outputs or resolved inputs: what a
/// `GetWorkflow` can still carry under gRPC's default 4 MiB message limit.
pub const MAX_STORED_BYTES: usize = 1536 * 1024;
/// Deepest JSON a step may store: each level costs a protobuf `Value`, a
/// `Struct` and a map entry, and decoders stop at 100 levels of messages.
pub const MAX_STORED_DEPTH: usize = 32;

/// Whether `value` can be stored and served back: at most `max_bytes` of
/// JSON and `max_depth` levels of nesting.
pub fn check_storable(
    value: &serde_json::Value,
    max_bytes: usize,
    max_depth: usize,
) -> Result<(), String> {
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > max_depth {
            return Err(format!("it is nested deeper than {max_depth} levels"));
        }
        match value {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    let size = serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len());
    if size > max_bytes {
        return Err(format!(
            "it is {size} bytes of JSON, more than the {max_bytes} a step may store"
        ));
    }
    Ok(())
}

/// Runs CPU-bound work on a request's text (parsing, compiling, testing)
/// on the blocking pool, so the async threads keep answering other calls.
/// A panic in `work` becomes an INTERNAL status, not a crash.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| crate::status::internal(&e))
}

/// Parses a YAML (or JSON) document a request carries: its nesting is
/// checked first ([`check_nesting`]); errors name the line and column.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    check_nesting(text)?;
    serde_norway::from_str(text).map_err(|error| match error.location() {
        Some(at) => format!("line {} column {}: {error}", at.line(), at.column()),
        None => error.to_string(),
    })
}

/// Refuses `text` whose nesting is deeper than [`MAX_DEPTH`] flow
/// collections (`[`, `{` outside quoted scalars and comments) or whose
/// block structure is indented more than [`MAX_INDENT`] columns.
pub fn check_nesting(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for (number, line) in text.lines().enumerate() {
        let indent = block_indent(line);
        if indent > MAX_INDENT {
            return Err(format!(
                "line {}: nested deeper than {MAX_INDENT} columns of indentation",
                number + 1
            ));
        }
        depth = flow_depth(line, depth);
        deepest = deepest.max(depth);
        if deepest > MAX_DEPTH {
            return Err(format!(
                "line {}: collections nested deeper than {MAX_DEPTH}",
                number + 1
            ));
        }
    }
    Ok(())
}

/// Leading whitespace plus two columns per stacked `- ` / `? ` indicator.
fn block_indent(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut columns = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' => columns += 1,
            b'-' | b'?' if bytes.get(i + 1).is_none_or(|b| *b == b' ' || *b == b'\t') => {
                columns += 2
            }
            _ => break,
        }
        i += 1;
    }
    columns
}

/// The flow depth after `line`, starting at `depth`. Quotes open only where
/// a scalar can start and end with the line at the latest (a quoted scalar
/// that spans lines is counted as if unquoted: more depth, never less);
/// closing brackets never take the depth below zero.
fn flow_depth(line: &str, mut depth: usize) -> usize {
    let mut quote: Option<u8> = None;
    let mut previous = b' ';
    let mut bytes = line.bytes().peekable();
    while let Some(byte) = bytes.next() {
        match quote {
            Some(b'"') if byte == b'\\' => {
                bytes.next();
            }
            Some(q) if byte == q => quote = None,
            Some(_) => {}
            None => match byte {
                b'#' if previous == b' ' || previous == b'\t' => break,
                b'\'' | b'"' if matches!(previous, b' ' | b'\t' | b'[' | b'{' | b',' | b':') => {
                    quote = Some(byte)
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        previous = byte;
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_are_bounded_in_size_and_depth() {
        let small = serde_json::json!({"a": [1, 2, {"b": "c"}]});
        assert_eq!(check_storable(&small, 100, 4), Ok(()));
        assert!(check_storable(&small, 100, 3).is_err(), "depth 4");
        assert!(check_storable(&small, 10, 4).is_err(), "size");
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_STORED_DEPTH * 2 {
            deep = serde_json::json!([deep]);
        }
        assert!(check_storable(&deep, usize::MAX, MAX_STORED_DEPTH).is_err());
    }

    #[test]
    fn ordinary_documents_pass() {
        for text in [
            "name: x\nsteps:\n  - {name: a, inputs: {path: \"{{dir}}/a.txt\", list: [1, [2, 3]]}}\n",
            "{\"name\": \"x\", \"steps\": [{\"name\": \"a\"}]}",
            "description: it's [not] a {problem}\n# a comment [[[[\nkey: '[[[['\n",
            "- - - a\n- b\n",
        ] {
            assert_eq!(check_nesting(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn deep_documents_are_refused_before_parsing() {
        let deep = [
            "[".repeat(MAX_DEPTH + 1),
            format!("steps: {}", "{a: ".repeat(100_000)),
            format!("{{\"a\": {}", "[".repeat(100_000)),
            format!("x:\n{}", "- ".repeat(1_000)),
            format!("x:\n{}y: 1", " ".repeat(MAX_INDENT + 1)),
            // Closing brackets in strings cannot hide real opening ones.
            format!("a: {}", "[ \"]]]]]]]]\", ".repeat(100)),
            // Nor can a quote that YAML reads as plain text, or a comment.
            format!("a: it's\nb: {}", "[".repeat(100)),
            format!("# it's\nb: {}", "[".repeat(100)),
        ];
        for text in deep {
            assert!(
                check_nesting(&text).is_err(),
                "{}",
                &text[..40.min(text.len())]
            );
        }
    }
}
