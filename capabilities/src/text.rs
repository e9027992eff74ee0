//! `text.*`: regular expressions (a linear-time engine with size caps) and
//! templates.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Execution, ExecutionContext, Handler, HandlerError, boolean, string};

/// Longest pattern accepted.
pub const MAX_PATTERN: usize = 4 * 1024;
/// Longest text searched.
pub const MAX_TEXT: usize = 1024 * 1024;
/// Most matches returned.
pub const MAX_MATCHES: usize = 1000;

pub(super) fn register(handlers: &mut HashMap<String, Arc<dyn Handler>>) {
    handlers.insert("text.regex.match".into(), Arc::new(RegexMatch));
    handlers.insert("text.template.render".into(), Arc::new(TemplateRender));
}

/// The `regex` crate guarantees linear time in the text; no backtracking.
#[derive(Debug)]
struct RegexMatch;

#[async_trait::async_trait]
impl Handler for RegexMatch {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let pattern = string(inputs, "pattern")?;
        let text = string(inputs, "text")?;
        if pattern.len() > MAX_PATTERN {
            return Err(HandlerError::invalid_input(format!(
                "pattern longer than {MAX_PATTERN} bytes"
            )));
        }
        if text.len() > MAX_TEXT {
            return Err(HandlerError::invalid_input(format!(
                "text longer than {MAX_TEXT} bytes"
            )));
        }
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| HandlerError::invalid_input(format!("invalid pattern: {e}")))?;
        let names: Vec<Option<&str>> = regex.capture_names().collect();
        let describe = |captures: regex::Captures<'_>| {
            let whole = captures.get(0);
            let groups: Vec<Value> = (1..captures.len())
                .map(|i| captures.get(i).map_or(Value::Null, |m| json!(m.as_str())))
                .collect();
            let named: Map<String, Value> = names
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    name.map(|n| {
                        (
                            n.to_owned(),
                            captures.get(i).map_or(Value::Null, |m| json!(m.as_str())),
                        )
                    })
                })
                .collect();
            json!({"match": whole.map(|m| m.as_str()), "start": whole.map(|m| m.start()), "end": whole.map(|m| m.end()), "groups": groups, "named": named})
        };
        let matches: Vec<Value> = if boolean(inputs, "all") {
            regex
                .captures_iter(text)
                .take(MAX_MATCHES)
                .map(describe)
                .collect()
        } else {
            regex.captures(text).map(describe).into_iter().collect()
        };
        Ok(Execution::read(
            json!({"matched": !matches.is_empty(), "matches": matches}),
        ))
    }
}

/// Renders `{{name}}` / `{{a.b}}` placeholders from `values`. A placeholder
/// that does not resolve is an error, never left in the output.
#[derive(Debug)]
struct TemplateRender;

pub fn render(template: &str, values: &Map<String, Value>) -> Result<String, HandlerError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| HandlerError::invalid_input("unclosed {{ in template"))?;
        let path = after[..end].trim();
        let mut segments = path.split('.');
        let first = segments.next().unwrap_or_default();
        let mut value = values.get(first);
        for segment in segments {
            value = value.and_then(|v| v.get(segment));
        }
        match value {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => {
                return Err(HandlerError::invalid_input(format!(
                    "template placeholder {{{{{path}}}}} has no value"
                )));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[async_trait::async_trait]
impl Handler for TemplateRender {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let template = string(inputs, "template")?;
        let values = inputs
            .get("values")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(Execution::read(json!({"text": render(template, &values)?})))
    }
}
