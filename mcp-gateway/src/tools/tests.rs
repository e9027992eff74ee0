use airt_proto::common::v1::{OperationType, RiskLevel};
use airt_proto::policy::v1::{Decision, DecisionRecord};
use airt_proto::registry::v1 as registry;
use serde_json::json;

use super::*;

fn spec(
    op: OperationType,
    reversible: bool,
    scope: registry::SideEffectScope,
) -> registry::CapabilitySpec {
    registry::CapabilitySpec {
        id: "crm.contacts.update".into(),
        name: "Update a contact".into(),
        description: "Changes a contact.".into(),
        operation_type: op as i32,
        risk: Some(registry::Risk {
            level: RiskLevel::Medium as i32,
            justification: String::new(),
            requires_approval: false,
        }),
        side_effects: Some(registry::SideEffects {
            reversible,
            scope: scope as i32,
            description: String::new(),
        }),
        parameters: vec![
            registry::Parameter {
                name: "id".into(),
                r#type: registry::ParameterType::Integer as i32,
                description: "Contact id".into(),
                required: true,
                default_value: None,
            },
            registry::Parameter {
                name: "notify".into(),
                r#type: registry::ParameterType::Boolean as i32,
                description: String::new(),
                required: false,
                default_value: Some(airt_kit::json::to_proto_value(&json!(false))),
            },
        ],
        ..Default::default()
    }
}

fn decision(decision: Decision, depends_on_inputs: bool) -> DecisionRecord {
    DecisionRecord {
        decision: decision as i32,
        depends_on_inputs,
        ..Default::default()
    }
}

#[test]
fn parameters_become_a_closed_json_schema() {
    let schema = input_schema(&spec(
        OperationType::Write,
        true,
        registry::SideEffectScope::Local,
    ));
    assert_eq!(
        serde_json::Value::Object(schema),
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer", "description": "Contact id"},
                "notify": {"type": "boolean", "default": false},
            },
            "required": ["id"],
            "additionalProperties": false,
        })
    );
}

#[test]
fn annotations_follow_the_operation_undo_and_scope() {
    let read = annotations(&spec(
        OperationType::Read,
        true,
        registry::SideEffectScope::Local,
    ));
    assert_eq!(read["readOnlyHint"], true);
    assert_eq!(read["destructiveHint"], false);
    assert_eq!(read["idempotentHint"], true);
    assert_eq!(read["openWorldHint"], false);
    let write = annotations(&spec(
        OperationType::Write,
        true,
        registry::SideEffectScope::Network,
    ));
    assert_eq!(write["readOnlyHint"], false);
    assert_eq!(write["destructiveHint"], false);
    assert_eq!(write["idempotentHint"], false);
    assert_eq!(write["openWorldHint"], true);
    // An effect that cannot be undone is destructive, as is any delete.
    let irreversible = annotations(&spec(
        OperationType::Write,
        false,
        registry::SideEffectScope::External,
    ));
    assert_eq!(irreversible["destructiveHint"], true);
    assert_eq!(irreversible["openWorldHint"], true);
    let delete = annotations(&spec(
        OperationType::Delete,
        true,
        registry::SideEffectScope::Local,
    ));
    assert_eq!(delete["destructiveHint"], true);
}

#[test]
fn the_description_says_the_risk_and_what_the_policy_asks() {
    let capability = registry::Capability {
        spec: Some(spec(
            OperationType::Write,
            true,
            registry::SideEffectScope::Local,
        )),
        ..Default::default()
    };
    let tool = tool(&capability, &decision(Decision::RequireApproval, false)).unwrap();
    let text = tool["description"].as_str().unwrap();
    assert!(text.starts_with("Changes a contact."), "{text}");
    assert!(text.contains("risk MEDIUM"), "{text}");
    assert!(text.contains("a human must approve every call"), "{text}");
    assert_eq!(tool["_meta"]["io.airt/decision"], "REQUIRE_APPROVAL");
    let some = tool_text(&capability, decision(Decision::Allow, true));
    assert!(some.contains("allowed for some inputs only"), "{some}");
    // No output schema unless `returns` describes an object.
    assert!(tool.get("outputSchema").is_none());
    let mut with_returns = capability.clone();
    let returns = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}});
    with_returns.spec.as_mut().unwrap().returns = Some(airt_kit::json::to_proto_struct(
        returns.as_object().unwrap(),
    ));
    let tool = super::tool(&with_returns, &decision(Decision::Allow, false)).unwrap();
    assert_eq!(tool["outputSchema"], returns);
}

fn tool_text(capability: &registry::Capability, decision: DecisionRecord) -> String {
    tool(capability, &decision).unwrap()["description"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn frozen_capabilities_are_not_offered() {
    let mut capability = registry::Capability {
        spec: Some(spec(
            OperationType::Read,
            true,
            registry::SideEffectScope::Local,
        )),
        ..Default::default()
    };
    assert!(offered(&capability));
    capability.spec.as_mut().unwrap().lifecycle = registry::CapabilityLifecycle::Frozen as i32;
    assert!(!offered(&capability));
}
