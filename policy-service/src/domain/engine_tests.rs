//! The engine's tests: decisions, explanations, and the index against a
//! linear scan.
use super::*;
use crate::domain::parse::parse_policy_set;
use airt_kit::vocabulary::OperationType;
use proptest::prelude::*;
use serde_json::json;

pub(crate) fn ctx(principal: &str, capability: &str, risk: RiskLevel) -> PolicyContext {
    PolicyContext {
        principal: principal.into(),
        roles: Vec::new(),
        agent: String::new(),
        workflow_id: "wf-1".into(),
        step_name: "step".into(),
        capability_id: capability.into(),
        risk_level: risk,
        requires_approval: false,
        operation_type: Some(OperationType::Read),
        inputs: Default::default(),
        environment: String::new(),
        time: "2026-01-14T10:00:00Z".parse().expect("time"),
    }
}

fn compile(yaml: &str) -> CompiledPolicySet {
    CompiledPolicySet::compile(parse_policy_set(yaml).expect("valid policy"))
}

const PROTOTYPE_V2: &str = include_str!("../../../examples/policies/prototype_v2.yaml");

#[test]
fn the_prototype_examples_decide_as_documented() {
    let set = compile(PROTOTYPE_V2);
    let read = set.evaluate(&ctx("agent:x", "io.fs.read_file", RiskLevel::Low), false);
    assert_eq!(
        (read.decision, &*read.rule_id, read.escalated),
        (Decision::Allow, "rule-1", false)
    );
    let risky = set.evaluate(
        &ctx("agent:x", "crm.delete_account", RiskLevel::High),
        false,
    );
    assert_eq!(
        (risky.decision, risky.escalated),
        (Decision::RequireApproval, true)
    );
    let stranger = set.evaluate(&ctx("user:y", "io.fs.write_file", RiskLevel::Medium), false);
    assert_eq!(
        (stranger.decision, &*stranger.rule_id),
        (Decision::Deny, "default")
    );
}

#[test]
fn first_match_wins_and_deny_is_never_softened() {
    let set = compile(
        "rules:\n  - {id: deny-delete, when: {operation_type: DELETE}, decision: DENY, reason: no deletes}\n  - {id: allow-all, decision: ALLOW}\n",
    );
    let mut delete = ctx("agent:a", "io.fs.delete", RiskLevel::Critical);
    delete.operation_type = Some(OperationType::Delete);
    let record = set.evaluate(&delete, false);
    assert_eq!(
        (
            record.decision,
            &*record.rule_id,
            &*record.reason,
            record.escalated
        ),
        (Decision::Deny, "deny-delete", "no deletes", false)
    );
    let allowed = set.evaluate(&ctx("agent:a", "io.fs.read_file", RiskLevel::Low), false);
    assert_eq!(
        (allowed.decision, &*allowed.rule_id),
        (Decision::Allow, "allow-all")
    );
}

#[test]
fn escalation_applies_to_default_allow_and_requires_approval_capabilities() {
    let set = compile("default: ALLOW\n");
    assert_eq!(
        set.evaluate(&ctx("u:a", "x.y", RiskLevel::Medium), false)
            .decision,
        Decision::Allow
    );
    let high = set.evaluate(&ctx("u:a", "x.y", RiskLevel::High), false);
    assert_eq!(
        (high.decision, high.escalated, &*high.rule_id),
        (Decision::RequireApproval, true, "default")
    );
    let mut flagged = ctx("u:a", "x.y", RiskLevel::Low);
    flagged.requires_approval = true;
    assert_eq!(
        set.evaluate(&flagged, false).decision,
        Decision::RequireApproval
    );

    // Without escalate_high_risk, only requires_approval escalates.
    let lax = compile("default: ALLOW\nescalate_high_risk: false\n");
    assert_eq!(
        lax.evaluate(&ctx("u:a", "x.y", RiskLevel::Critical), false)
            .decision,
        Decision::Allow
    );
    assert_eq!(
        lax.evaluate(&flagged, false).decision,
        Decision::RequireApproval
    );
}

#[test]
fn roles_agent_environment_and_inputs_are_matched() {
    let set = compile(
        r#"
rules:
  - id: oncall-prod
    principal: ["user:*"]
    roles: [oncall, sre]
    when: {agent: ["data_*"], environment: prod, inputs: {target.env: prod, force: true}}
    decision: REQUIRE_APPROVAL
"#,
    );
    let mut c = ctx("user:alice", "db.migrate", RiskLevel::Medium);
    c.roles = vec!["sre".into()];
    c.agent = "data_loader".into();
    c.environment = "prod".into();
    c.inputs = json!({"target": {"env": "prod"}, "force": true})
        .as_object()
        .cloned()
        .expect("object");
    assert_eq!(&*set.evaluate(&c, false).rule_id, "oncall-prod");
    for (mutate, failed) in [
        (
            Box::new(|c: &mut PolicyContext| c.roles.clear()) as Box<dyn Fn(&mut PolicyContext)>,
            "roles",
        ),
        (
            Box::new(|c: &mut PolicyContext| c.agent = "ops".into()),
            "when.agent",
        ),
        (
            Box::new(|c: &mut PolicyContext| c.environment = "staging".into()),
            "when.environment",
        ),
        (
            Box::new(|c: &mut PolicyContext| {
                c.inputs.insert("force".into(), json!(false));
            }),
            "when.inputs",
        ),
        (
            Box::new(|c: &mut PolicyContext| c.principal = "agent:x".into()),
            "principal",
        ),
    ] {
        let mut changed = c.clone();
        mutate(&mut changed);
        let record = set.evaluate(&changed, true);
        assert_eq!(&*record.rule_id, "default");
        assert_eq!(record.explanation[0].failed_condition, failed);
    }
}

#[test]
fn explanations_name_the_first_failing_condition_of_each_earlier_rule() {
    let set = compile(
        "rules:\n  - {id: r1, principal: 'user:*', decision: DENY}\n  - {id: r2, when: {capability: 'net.*'}, decision: DENY}\n  - {id: r3, when: {risk_level: LOW}, decision: ALLOW}\n  - {id: r4, decision: DENY}\n",
    );
    let record = set.evaluate(&ctx("agent:a", "io.fs.read_file", RiskLevel::Low), true);
    let steps: Vec<(&str, bool, &str)> = record
        .explanation
        .iter()
        .map(|e| (&*e.rule_id, e.matched, e.failed_condition))
        .collect();
    assert_eq!(
        steps,
        [
            ("r1", false, "principal"),
            ("r2", false, "when.capability"),
            ("r3", true, "")
        ]
    );
    assert!(record.explanation[1].detail.contains("io.fs.read_file"));
    assert_eq!(&*record.rule_id, "r3");
    // The explained and the indexed evaluation agree.
    let fast = set.evaluate(&ctx("agent:a", "io.fs.read_file", RiskLevel::Low), false);
    assert_eq!(
        (fast.decision, fast.rule_id.clone()),
        (record.decision, record.rule_id.clone())
    );
}

#[test]
fn the_empty_set_denies_everything() {
    let set = CompiledPolicySet::deny_all();
    let record = set.evaluate(
        &ctx("service:workflow", "io.fs.read_file", RiskLevel::Low),
        false,
    );
    assert_eq!(
        (record.decision, &*record.rule_id),
        (Decision::Deny, "default")
    );
}

#[test]
fn revisions_are_content_hashes() {
    assert_eq!(
        compile(PROTOTYPE_V2).revision(),
        compile(PROTOTYPE_V2).revision()
    );
    assert_ne!(
        compile("default: DENY\n").revision(),
        compile("default: ALLOW\n").revision()
    );
    // Formatting and comments do not change the revision.
    assert_eq!(
        compile("default: DENY\n").revision(),
        compile("# c\ndefault:   DENY\n").revision()
    );
}

// ---- property test: the index equals a linear scan -----------------

const CAPABILITIES: &[&str] = &[
    "io.fs.read",
    "io.fs.write",
    "io.net.get",
    "net.http.post",
    "net.http.get",
    "crm.create",
    "crm.delete",
    "x.y",
];
const PATTERNS: &[&str] = &[
    "*",
    "io.*",
    "io.fs.*",
    "net.*",
    "net.http.post",
    "crm.create",
    "crm.*",
    "x.y",
    "zzz.*",
    "io.fs.read",
    "i*",
];
const PRINCIPALS: &[&str] = &["agent:a", "agent:b", "user:alice", "service:workflow"];
const PRINCIPAL_PATTERNS: &[&str] = &["*", "agent:*", "user:alice", "service:*", "agent:b"];

fn rule_yaml() -> impl Strategy<Value = String> {
    (
        proptest::option::of(proptest::sample::subsequence(PATTERNS.to_vec(), 1..3)),
        proptest::option::of(proptest::sample::select(PRINCIPAL_PATTERNS.to_vec())),
        proptest::option::of(proptest::sample::subsequence(
            vec!["LOW", "MEDIUM", "HIGH", "CRITICAL"],
            1..3,
        )),
        proptest::sample::select(vec!["ALLOW", "DENY", "REQUIRE_APPROVAL"]),
    )
        .prop_map(|(caps, principal, risks, decision)| {
            let mut when = Vec::new();
            if let Some(caps) = caps {
                when.push(format!(
                    "capability: [{}]",
                    caps.iter()
                        .map(|c| format!("'{c}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(risks) = risks {
                when.push(format!("risk_level: [{}]", risks.join(", ")));
            }
            let principal = principal
                .map(|p| format!("principal: '{p}', "))
                .unwrap_or_default();
            format!(
                "  - {{{principal}when: {{{}}}, decision: {decision}}}\n",
                when.join(", ")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn the_index_decides_exactly_like_a_linear_scan(
        rules in proptest::collection::vec(rule_yaml(), 0..40),
        requests in proptest::collection::vec((
            proptest::sample::select(PRINCIPALS.to_vec()),
            proptest::sample::select(CAPABILITIES.to_vec()),
            proptest::sample::select(RiskLevel::ALL.to_vec()),
        ), 1..30),
    ) {
        let yaml = format!("default: DENY\nrules:\n{}", rules.concat());
        let set = compile(&yaml);
        for (principal, capability, risk) in requests {
            let c = ctx(principal, capability, risk);
            let fast = set.evaluate(&c, false);
            let expected = set.first_match_linear(&c);
            let expected_id = expected.map_or("default".to_owned(), |i| set.rules()[i].id.to_string());
            prop_assert_eq!(&*fast.rule_id, expected_id.as_str());
            let explained = set.evaluate(&c, true);
            prop_assert_eq!(fast.decision, explained.decision);
            prop_assert_eq!(fast.rule_id.clone(), explained.rule_id.clone());
        }
    }
}

#[test]
fn revisions_of_sets_written_before_operators_are_unchanged() {
    // Revisions computed before input operators and time windows existed:
    // an upgrade leaves every stored revision naming the same compiled set.
    let legacy = "default: DENY\nrules:\n  - id: a\n    principal: 'agent:*'\n    when: {capability: ['io.fs.*', x.y], risk_level: [HIGH], operation_type: DELETE, agent: 'data_*', environment: prod, inputs: {env: prod, target.region: eu, n: 5, obj: {k: [1, true]}}}\n    decision: DENY\n    reason: r\n  - {id: b, roles: [oncall], decision: ALLOW}\n";
    assert_eq!(
        compile(legacy).revision(),
        "45349dc572c511b442a0afb2fb9a6352072b645ba68878d48aef7419a08ea1fd"
    );
    assert_eq!(
        compile(include_str!("../../../examples/policies/default.yaml")).revision(),
        "b514ad27d97d0d8a51391ebec467361f9cd396fa32e17a2431b3af8e787c4326"
    );
}
