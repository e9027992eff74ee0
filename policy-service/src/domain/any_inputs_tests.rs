//! `CompiledPolicySet::evaluate_any_inputs`: DENY only when no input can
//! be allowed; the decision every input may get otherwise.

use airt_kit::vocabulary::{OperationType, RiskLevel};
use serde_json::json;

use super::{CompiledPolicySet, Decision, PolicyContext, parse_policy_set};

fn ctx(principal: &str, capability: &str, risk: RiskLevel) -> PolicyContext {
    PolicyContext {
        principal: principal.into(),
        roles: Vec::new(),
        agent: String::new(),
        workflow_id: String::new(),
        step_name: String::new(),
        capability_id: capability.into(),
        risk_level: risk,
        requires_approval: false,
        operation_type: Some(OperationType::Write),
        inputs: Default::default(),
        environment: String::new(),
        time: jiff::Timestamp::UNIX_EPOCH,
    }
}

const SET: &str = r#"
default: DENY
rules:
  - id: no-secrets
    when: {capability: io.fs.write_file, inputs: {path: secrets.txt}}
    decision: DENY
  - id: bob-writes-notes-only
    principal: ["user:bob"]
    when: {capability: io.fs.write_file, inputs: {path: notes.md}}
    decision: ALLOW
  - id: writers
    roles: [writer]
    when: {capability: "io.fs.*"}
    decision: ALLOW
  - id: no-deletes
    when: {capability: io.fs.delete_file}
    decision: DENY
  - id: readers
    when: {capability: io.fs.read_file}
    decision: ALLOW
"#;

fn set() -> CompiledPolicySet {
    CompiledPolicySet::compile(parse_policy_set(SET).expect("valid policy"))
}

#[test]
fn a_capability_denied_whatever_the_inputs_is_deny() {
    let set = set();
    // carol has no role and no rule of her own: only `default` applies.
    let record = set.evaluate_any_inputs(&ctx("user:carol", "io.fs.write_file", RiskLevel::Low));
    assert_eq!(record.decision, Decision::Deny);
    assert_eq!(&*record.rule_id, "default");
    // An unconditional DENY decides for every input, even for a writer.
    let mut writer = ctx("user:dave", "io.fs.delete_file", RiskLevel::Low);
    writer.roles = vec!["writer".into()];
    // `writers` (io.fs.*) comes first and allows deletes for writers.
    assert_eq!(set.evaluate_any_inputs(&writer).decision, Decision::Allow);
    let reader = ctx("user:erin", "io.fs.delete_file", RiskLevel::Low);
    let record = set.evaluate_any_inputs(&reader);
    assert_eq!(record.decision, Decision::Deny);
    assert_eq!(&*record.rule_id, "no-deletes");
    assert!(!record.depends_on_inputs);
}

#[test]
fn a_capability_allowed_for_some_inputs_is_listed_as_conditional() {
    let set = set();
    // The earlier conditional DENY (no-secrets) does not hide the tool:
    // bob may still write notes.md.
    let record = set.evaluate_any_inputs(&ctx("user:bob", "io.fs.write_file", RiskLevel::Low));
    assert_eq!(record.decision, Decision::Allow);
    assert_eq!(&*record.rule_id, "bob-writes-notes-only");
    assert!(record.depends_on_inputs);
    // The inputs of the context are ignored.
    let mut with_inputs = ctx("user:bob", "io.fs.write_file", RiskLevel::Low);
    with_inputs.inputs = json!({"path": "secrets.txt"}).as_object().cloned().unwrap();
    assert_eq!(
        set.evaluate_any_inputs(&with_inputs).decision,
        Decision::Allow
    );
    // An unconditional ALLOW is not conditional.
    let record = set.evaluate_any_inputs(&ctx("user:x", "io.fs.read_file", RiskLevel::Low));
    assert_eq!(record.decision, Decision::Allow);
    assert!(!record.depends_on_inputs);
}

#[test]
fn escalation_applies_as_for_a_decision() {
    let set = set();
    let mut c = ctx("user:x", "io.fs.read_file", RiskLevel::High);
    assert_eq!(
        set.evaluate_any_inputs(&c).decision,
        Decision::RequireApproval
    );
    c.risk_level = RiskLevel::Low;
    c.requires_approval = true;
    let record = set.evaluate_any_inputs(&c);
    assert_eq!(record.decision, Decision::RequireApproval);
    assert!(record.escalated);
}
