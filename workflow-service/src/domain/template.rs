//! Templating of step inputs: `{{path}}` where the first segment is an
//! `initial_state` key or a step name (`{{create_account.account_id}}`).
//!
//! A value that is exactly one placeholder keeps its JSON type; a placeholder
//! inside a longer string is rendered as text (strings as they are, other
//! values as compact JSON). A placeholder that does not resolve is an error
//! naming it — never left in the output. Step outputs are not merged into the
//! state: they are reached through the step's name.

use serde_json::{Map, Value};

/// What placeholders resolve against.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub initial_state: &'a Map<String, Value>,
    /// Outputs of completed steps, by step name.
    pub outputs: &'a Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unresolved placeholder {{{{{0}}}}}")]
    Unresolved(String),
    #[error("unclosed {{{{ in {0:?}")]
    Unclosed(String),
}

/// The placeholder paths of a string, in order.
pub fn placeholders_in(text: &str) -> Result<Vec<String>, TemplateError> {
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(text.to_owned()))?;
        paths.push(after[..end].trim().to_owned());
        rest = &after[end + 2..];
    }
    Ok(paths)
}

/// Every placeholder path anywhere in a JSON value.
pub fn placeholders(value: &Value) -> Result<Vec<String>, TemplateError> {
    let mut paths = Vec::new();
    collect(value, &mut paths)?;
    Ok(paths)
}

fn collect(value: &Value, paths: &mut Vec<String>) -> Result<(), TemplateError> {
    match value {
        Value::String(s) => paths.extend(placeholders_in(s)?),
        Value::Array(items) => {
            for item in items {
                collect(item, paths)?;
            }
        }
        Value::Object(map) => {
            for item in map.values() {
                collect(item, paths)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The first segment of a placeholder path (a state key or a step name).
pub fn root_of(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

fn lookup<'a>(scope: Scope<'a>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let first = segments.next()?;
    let mut value = scope
        .outputs
        .get(first)
        .or_else(|| scope.initial_state.get(first))?;
    for segment in segments {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn whole_placeholder(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

/// Resolves every placeholder in `value`.
pub fn resolve(value: &Value, scope: Scope<'_>) -> Result<Value, TemplateError> {
    match value {
        Value::String(text) => {
            if let Some(path) = whole_placeholder(text) {
                return lookup(scope, path)
                    .cloned()
                    .ok_or_else(|| TemplateError::Unresolved(path.to_owned()));
            }
            render(text, scope).map(Value::String)
        }
        Value::Array(items) => items
            .iter()
            .map(|item| resolve(item, scope))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), resolve(v, scope)?)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// Renders placeholders inside a string as text.
pub fn render(text: &str, scope: Scope<'_>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(text.to_owned()))?;
        let path = after[..end].trim();
        match lookup(scope, path) {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => return Err(TemplateError::Unresolved(path.to_owned())),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope_data() -> (Map<String, Value>, Map<String, Value>) {
        let state = json!({"customer_name": "Acme", "seats": 5, "regions": ["eu", "us"]});
        let outputs = json!({"create_account": {"account_id": "A-17", "limits": {"users": 10}}});
        (
            state.as_object().cloned().expect("object"),
            outputs.as_object().cloned().expect("object"),
        )
    }

    #[test]
    fn whole_placeholders_keep_their_type_and_embedded_ones_render_as_text() {
        let (state, outputs) = scope_data();
        let scope = Scope {
            initial_state: &state,
            outputs: &outputs,
        };
        let inputs = json!({
            "name": "{{customer_name}}",
            "seats": "{{seats}}",
            "limits": "{{ create_account.limits }}",
            "first_region": "{{regions.0}}",
            "label": "{{customer_name}} has {{seats}} seats and {{create_account.limits}}",
            "nested": [{"id": "{{create_account.account_id}}"}],
            "plain": 3,
        });
        assert_eq!(
            resolve(&inputs, scope).expect("resolves"),
            json!({
                "name": "Acme",
                "seats": 5,
                "limits": {"users": 10},
                "first_region": "eu",
                "label": "Acme has 5 seats and {\"users\":10}",
                "nested": [{"id": "A-17"}],
                "plain": 3,
            })
        );
    }

    #[test]
    fn unresolved_placeholders_are_errors_never_left_verbatim() {
        let (state, outputs) = scope_data();
        let scope = Scope {
            initial_state: &state,
            outputs: &outputs,
        };
        assert_eq!(
            resolve(&json!("{{nobody}}"), scope),
            Err(TemplateError::Unresolved("nobody".into()))
        );
        assert_eq!(
            resolve(&json!("x {{create_account.missing}} y"), scope),
            Err(TemplateError::Unresolved("create_account.missing".into()))
        );
        assert!(matches!(
            resolve(&json!("{{open"), scope),
            Err(TemplateError::Unclosed(_))
        ));
    }

    #[test]
    fn placeholders_are_listed_for_validation() {
        let value = json!({"a": "{{x.y}} and {{z}}", "b": ["{{w}}"], "c": 1});
        let mut found = placeholders(&value).expect("valid");
        found.sort();
        assert_eq!(found, ["w", "x.y", "z"]);
        assert_eq!(root_of("x.y.z"), "x");
    }
}
