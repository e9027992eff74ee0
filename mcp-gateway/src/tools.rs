//! Capabilities as MCP tools: the pure mapping from a registry spec (and the
//! policy's any-inputs decision for the caller) to a tool definition.
//!
//! - `name` is the capability id (dotted ids are valid MCP tool names);
//! - `inputSchema` is a JSON Schema object built from the parameters
//!   (types, descriptions, defaults, required; no other property accepted,
//!   as the engine refuses unknown inputs);
//! - `outputSchema` is the spec's `returns` when it is an object schema;
//! - annotations are hints from the spec: `readOnlyHint` for READ,
//!   `destructiveHint` for DELETE or an effect that cannot be undone,
//!   `idempotentHint` for READ or a capability tagged `idempotent`,
//!   `openWorldHint` for NETWORK/EXTERNAL scope;
//! - the description ends with the risk, the undo and whether the caller
//!   needs an approval, so a model reads what it is about to ask for.

use airt_proto::common::v1::{OperationType, RiskLevel};
use airt_proto::policy::v1::{Decision, DecisionRecord};
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value, json};

/// The tool that reports where an action stands.
pub const STATUS_TOOL: &str = "airt_action_status";

/// `_meta` key a client sets on `tools/call` to make the call idempotent.
pub const REQUEST_ID_META: &str = "io.airt/request_id";

fn schema_type(kind: i32) -> &'static str {
    match registry::ParameterType::try_from(kind).unwrap_or_default() {
        registry::ParameterType::String => "string",
        registry::ParameterType::Number => "number",
        registry::ParameterType::Integer => "integer",
        registry::ParameterType::Boolean => "boolean",
        registry::ParameterType::Object => "object",
        registry::ParameterType::Array => "array",
        registry::ParameterType::Unspecified => "string",
    }
}

/// The JSON Schema of a capability's parameters.
pub fn input_schema(spec: &registry::CapabilitySpec) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for parameter in &spec.parameters {
        let mut property = Map::new();
        property.insert("type".into(), json!(schema_type(parameter.r#type)));
        if !parameter.description.is_empty() {
            property.insert("description".into(), json!(parameter.description));
        }
        if let Some(default) = &parameter.default_value {
            property.insert("default".into(), airt_kit::json::from_proto_value(default));
        }
        if parameter.required {
            required.push(json!(parameter.name));
        }
        properties.insert(parameter.name.clone(), Value::Object(property));
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    schema.insert("additionalProperties".into(), json!(false));
    schema
}

/// The spec's `returns`, when it describes an object (MCP output schemas
/// are object schemas).
pub fn output_schema(spec: &registry::CapabilitySpec) -> Option<Map<String, Value>> {
    let returns = airt_kit::json::from_proto_struct(spec.returns.as_ref()?);
    (returns.get("type") == Some(&json!("object"))).then_some(returns)
}

fn operation(spec: &registry::CapabilitySpec) -> OperationType {
    OperationType::try_from(spec.operation_type).unwrap_or_default()
}

fn risk(spec: &registry::CapabilitySpec) -> RiskLevel {
    spec.risk
        .as_ref()
        .and_then(|r| RiskLevel::try_from(r.level).ok())
        .unwrap_or(RiskLevel::High)
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

/// The annotations (hints) of a capability.
pub fn annotations(spec: &registry::CapabilitySpec) -> Map<String, Value> {
    let op = operation(spec);
    let effects = spec.side_effects.clone().unwrap_or_default();
    let scope = registry::SideEffectScope::try_from(effects.scope).unwrap_or_default();
    let read_only = op == OperationType::Read;
    let tagged_idempotent = spec
        .metadata
        .as_ref()
        .is_some_and(|m| m.tags.iter().any(|t| t == "idempotent"));
    let mut hints = Map::new();
    if !spec.name.is_empty() {
        hints.insert("title".into(), json!(spec.name));
    }
    hints.insert("readOnlyHint".into(), json!(read_only));
    hints.insert(
        "destructiveHint".into(),
        json!(!read_only && (op == OperationType::Delete || !effects.reversible)),
    );
    hints.insert(
        "idempotentHint".into(),
        json!(read_only || tagged_idempotent),
    );
    hints.insert(
        "openWorldHint".into(),
        json!(matches!(
            scope,
            registry::SideEffectScope::Network | registry::SideEffectScope::External
        )),
    );
    hints
}

/// What the caller should expect from the policy, in words.
fn approval_line(decision: &DecisionRecord) -> &'static str {
    match (
        Decision::try_from(decision.decision).unwrap_or_default(),
        decision.depends_on_inputs,
    ) {
        (Decision::RequireApproval, false) => "a human must approve every call",
        (Decision::RequireApproval, true) => "a human must approve calls with some inputs",
        (Decision::Allow, true) => "allowed for some inputs only; others may be denied",
        _ => "allowed without approval",
    }
}

fn undo_line(spec: &registry::CapabilitySpec) -> &'static str {
    let compensation = spec.compensation.clone().unwrap_or_default();
    match registry::CompensationStrategy::try_from(compensation.strategy).unwrap_or_default() {
        registry::CompensationStrategy::Automatic if compensation.supported => {
            "undone automatically"
        }
        registry::CompensationStrategy::Manual => "undone only by a human",
        _ if operation(spec) == OperationType::Read => "nothing to undo",
        _ => "cannot be undone",
    }
}

/// The tool definition (as MCP JSON) of a capability the caller may call.
pub fn tool(capability: &registry::Capability, decision: &DecisionRecord) -> Option<Value> {
    let spec = capability.spec.as_ref()?;
    let risk_name = short(risk(spec).as_str_name(), "RISK_LEVEL_");
    let op_name = short(operation(spec).as_str_name(), "OPERATION_TYPE_");
    let version = spec.metadata.as_ref().map(|m| m.version.clone());
    let lifecycle = registry::CapabilityLifecycle::try_from(spec.lifecycle).unwrap_or_default();
    let mut description = spec.description.trim().to_owned();
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!(
        "Governed by AI-First Runtime: {op_name}, risk {risk_name}, {}; {}.",
        undo_line(spec),
        approval_line(decision)
    ));
    if lifecycle == registry::CapabilityLifecycle::Deprecated {
        description.push_str(" Deprecated.");
    }
    let mut tool = json!({
        "name": spec.id,
        "description": description,
        "inputSchema": input_schema(spec),
        "annotations": annotations(spec),
        "_meta": {
            "io.airt/risk_level": risk_name,
            "io.airt/operation_type": op_name,
            "io.airt/version": version,
            "io.airt/decision": short(
                Decision::try_from(decision.decision).unwrap_or_default().as_str_name(),
                "DECISION_",
            ),
        },
    });
    if !spec.name.is_empty() {
        tool["title"] = json!(spec.name);
    }
    if let Some(output) = output_schema(spec) {
        tool["outputSchema"] = Value::Object(output);
    }
    Some(tool)
}

/// Whether a capability is offered at all: ACTIVE or DEPRECATED revisions.
pub fn offered(capability: &registry::Capability) -> bool {
    capability.spec.as_ref().is_some_and(|spec| {
        matches!(
            registry::CapabilityLifecycle::try_from(spec.lifecycle).unwrap_or_default(),
            registry::CapabilityLifecycle::Active
                | registry::CapabilityLifecycle::Deprecated
                | registry::CapabilityLifecycle::Unspecified
        )
    })
}

/// The status tool's definition.
pub fn status_tool() -> Value {
    json!({
        "name": STATUS_TOOL,
        "title": "Action status",
        "description": "Where a governed action stands (waiting for approval, succeeded with its \
            outputs, denied, rejected, expired, failed), by the action id a tool call answered \
            with. Waits up to wait_seconds (at most 60) for it to finish.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "action_id": {"type": "string", "description": "The action id a tool call answered with."},
                "wait_seconds": {"type": "integer", "description": "How long to wait for the outcome (0-60).", "default": 0},
            },
            "required": ["action_id"],
            "additionalProperties": false,
        },
        "annotations": {"title": "Action status", "readOnlyHint": true, "idempotentHint": true, "openWorldHint": false},
    })
}

#[cfg(test)]
mod tests;
