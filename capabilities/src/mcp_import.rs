//! An MCP server's tools as capability specs (v3), for
//! `airt registry import-mcp`: nothing imported is low-risk by accident.
//!
//! - id: the prefix, a dot, the tool name lower-cased with every character
//!   outside `[a-z0-9_]` made `_` (and `t_` in front of a leading digit);
//! - parameters from the `inputSchema` properties (a union with `null`, as
//!   optional arguments are written, takes its other type; a property with
//!   no usable type is refused, so the registrar decides);
//! - operation and risk from the annotations with the MCP defaults: a tool
//!   without `readOnlyHint: true` writes; without `destructiveHint: false` it
//!   is destructive (DELETE). Nothing is known to undo an imported tool, so
//!   a writing tool is irreversible with no compensation, which the Risk
//!   Consistency Check makes CRITICAL; a read-only tool is LOW;
//! - scope EXTERNAL unless `openWorldHint: false` (then NETWORK: it is still
//!   another server); `idempotentHint: true` becomes the tag `idempotent`;
//! - `returns` from the `outputSchema`; handler `mcp:<url>#<tool>`.

use rmcp::model::Tool;
use serde_json::{Map, Value, json};

fn segment(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "t_");
    }
    out
}

/// The capability id of a tool under `prefix`.
pub fn capability_id(prefix: &str, tool: &str) -> String {
    format!("{}.{}", prefix.trim_end_matches('.'), segment(tool))
}

fn parameter_type(property: &Value) -> Option<&str> {
    let known = |t: &str| {
        matches!(
            t,
            "string" | "number" | "integer" | "boolean" | "object" | "array"
        )
    };
    match property.get("type") {
        Some(Value::String(t)) if known(t) => return Some(t.as_str()),
        Some(Value::Array(types)) => {
            return types.iter().filter_map(Value::as_str).find(|t| known(t));
        }
        _ => {}
    }
    property
        .get("anyOf")
        .or_else(|| property.get("oneOf"))
        .and_then(Value::as_array)
        .and_then(|options| {
            let usable: Vec<&str> = options
                .iter()
                .filter_map(|o| o.get("type").and_then(Value::as_str))
                .filter(|t| known(t))
                .collect();
            // Only `T | null`: a real union has no one type.
            (usable.len() == 1).then(|| usable[0])
        })
}

fn parameters(tool: &Tool) -> Result<Vec<Value>, String> {
    let schema = tool.input_schema.as_ref();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = Vec::new();
    for (name, property) in properties {
        let kind = parameter_type(property).ok_or_else(|| {
            format!(
                "tool {}: parameter {name:?} has no single JSON type; edit the spec by hand",
                tool.name
            )
        })?;
        let mut parameter = json!({
            "name": name,
            "type": kind,
            "description": property.get("description").and_then(Value::as_str).unwrap_or_default(),
            "required": required.contains(&name.as_str()),
        });
        if let Some(default) = property.get("default").filter(|d| !d.is_null()) {
            parameter["default"] = default.clone();
        }
        out.push(parameter);
    }
    Ok(out)
}

/// The v3 spec (as JSON, the registry's text format) of one tool of the
/// MCP server at `url`.
pub fn spec(tool: &Tool, url: &str, prefix: &str, version: &str) -> Result<Value, String> {
    let hints = tool.annotations.clone().unwrap_or_default();
    let read_only = hints.read_only_hint == Some(true);
    let destructive = hints.destructive_hint != Some(false);
    let open_world = hints.open_world_hint != Some(false);
    let (operation, level, reversible) = match (read_only, destructive) {
        (true, _) => ("READ", "LOW", true),
        (false, false) => ("WRITE", "CRITICAL", false),
        (false, true) => ("DELETE", "CRITICAL", false),
    };
    let mut tags = vec![json!("mcp"), json!("imported")];
    if hints.idempotent_hint == Some(true) {
        tags.push(json!("idempotent"));
    }
    let title = tool
        .title
        .clone()
        .or(hints.title.clone())
        .unwrap_or_else(|| tool.name.to_string());
    let mut spec = json!({
        "id": capability_id(prefix, &tool.name),
        "name": title,
        "description": tool.description.as_deref().unwrap_or_default(),
        "operation_type": operation,
        "risk": {
            "level": level,
            "justification": format!(
                "Imported from the MCP server {url} (tool {}): readOnlyHint={read_only}, \
                 destructiveHint={destructive}, and nothing is known to undo it.",
                tool.name
            ),
            "requires_approval": false,
        },
        "side_effects": {
            "reversible": reversible,
            "scope": if open_world { "EXTERNAL" } else { "NETWORK" },
            "description": format!("Whatever the tool {} of {url} does.", tool.name),
        },
        "compensation": {"supported": false, "strategy": "NONE"},
        "parameters": parameters(tool)?,
        "metadata": {"version": version, "author": url, "tags": tags},
        "handler": format!("mcp:{url}#{}", tool.name),
    });
    if let Some(output) = &tool.output_schema {
        spec["returns"] = Value::Object(output.as_ref().clone());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(value: Value) -> Tool {
        serde_json::from_value(value).expect("a tool")
    }

    #[test]
    fn ids_are_lowercase_dotted_segments() {
        assert_eq!(
            capability_id("vendor.notes", "addNote"),
            "vendor.notes.addnote"
        );
        assert_eq!(
            capability_id("vendor.notes.", "delete-note"),
            "vendor.notes.delete_note"
        );
        assert_eq!(capability_id("v.n", "2fa.reset"), "v.n.t_2fa_reset");
    }

    #[test]
    fn a_tool_without_hints_is_a_critical_delete() {
        let spec = spec(
            &tool(json!({"name": "wipe", "inputSchema": {"type": "object"}})),
            "http://h/mcp",
            "v.x",
            "1.0.0",
        )
        .unwrap();
        assert_eq!(spec["operation_type"], "DELETE");
        assert_eq!(spec["risk"]["level"], "CRITICAL");
        assert_eq!(spec["side_effects"]["reversible"], false);
        assert_eq!(spec["side_effects"]["scope"], "EXTERNAL");
        assert_eq!(spec["handler"], "mcp:http://h/mcp#wipe");
    }

    #[test]
    fn hints_lower_the_risk_only_when_they_say_so() {
        let read = spec(
            &tool(json!({
                "name": "list_notes",
                "inputSchema": {"type": "object", "properties": {
                    "tag": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                    "limit": {"type": "integer", "default": 10, "description": "How many"},
                }, "required": []},
                "outputSchema": {"type": "object", "properties": {"notes": {"type": "array"}}},
                "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false},
            })),
            "http://h/mcp",
            "v.notes",
            "1.0.0",
        )
        .unwrap();
        assert_eq!(read["operation_type"], "READ");
        assert_eq!(read["risk"]["level"], "LOW");
        assert_eq!(read["side_effects"]["scope"], "NETWORK");
        assert_eq!(
            read["metadata"]["tags"],
            json!(["mcp", "imported", "idempotent"])
        );
        assert_eq!(read["returns"]["properties"]["notes"]["type"], "array");
        let params = read["parameters"].as_array().unwrap();
        assert_eq!(params[0]["name"], "limit");
        assert_eq!(params[0]["default"], 10);
        assert_eq!(params[1]["type"], "string");
        assert!(params[1].get("default").is_none());
        let write = spec(
            &tool(json!({"name": "add", "inputSchema": {"type": "object"},
                         "annotations": {"destructiveHint": false}})),
            "http://h/mcp",
            "v.notes",
            "1.0.0",
        )
        .unwrap();
        assert_eq!(write["operation_type"], "WRITE");
        assert_eq!(write["risk"]["level"], "CRITICAL");
    }

    #[test]
    fn a_parameter_without_one_type_is_refused() {
        let refused = spec(
            &tool(
                json!({"name": "t", "inputSchema": {"type": "object", "properties": {
                "x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}}),
            ),
            "http://h/mcp",
            "v.x",
            "1.0.0",
        );
        assert!(refused.unwrap_err().contains("\"x\""));
    }
}
