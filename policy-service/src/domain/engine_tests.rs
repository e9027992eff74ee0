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

type InputCheck = fn(&serde_json::Map<String, Value>) -> bool;

/// Input conditions as a policy writes them, with an independent reference.
const INPUT_CONDITIONS: &[(&str, InputCheck)] = &[
    ("amount: {gt: 500}", |m| {
        m.get("amount")
            .and_then(Value::as_f64)
            .is_some_and(|a| a > 500.0)
    }),
    ("currency: {in: [EUR, USD]}", |m| {
        matches!(
            m.get("currency").and_then(Value::as_str),
            Some("EUR" | "USD")
        )
    }),
    ("path: {glob: 'prod/**'}", |m| {
        matches!(
            m.get("path").and_then(Value::as_str),
            Some("prod/db" | "staging/../prod/x")
        )
    }),
    ("any_of: [{amount: {lt: 10}}, {currency: {ne: EUR}}]", |m| {
        m.get("amount")
            .and_then(Value::as_f64)
            .is_some_and(|a| a < 10.0)
            || m.get("currency").is_some_and(|c| c != "EUR")
    }),
    ("not: {internal: true}", |m| {
        m.get("internal") != Some(&json!(true))
    }),
    ("host: {matches: '(api|docs)\\.example\\.com'}", |m| {
        matches!(
            m.get("host").and_then(Value::as_str),
            Some("api.example.com" | "docs.example.com")
        )
    }),
];

type TimeCheck = fn(jiff::Timestamp) -> bool;

/// Time windows, with a reference computed from the UTC clock directly.
const WINDOWS: &[(&str, TimeCheck)] = &[
    ("during: {days: [MON-FRI], between: '09:00-18:00'}", |t| {
        let utc = t.to_zoned(jiff::tz::TimeZone::UTC);
        utc.weekday().to_monday_zero_offset() < 5 && (9..18).contains(&utc.hour())
    }),
    ("outside: {between: '00:00-06:00'}", |t| {
        t.to_zoned(jiff::tz::TimeZone::UTC).hour() >= 6
    }),
];

const INPUTS: &[&str] = &[
    "{}",
    r#"{"amount": 900, "currency": "EUR", "path": "prod/db"}"#,
    r#"{"amount": 5, "currency": "GBP", "internal": true, "host": "api.example.com"}"#,
    r#"{"amount": "900", "currency": ["EUR"], "path": "prod/../staging", "host": "evil.example.com/api.example.com"}"#,
    r#"{"amount": 501.5, "currency": "USD", "path": "staging/../prod/x", "internal": false, "host": "docs.example.com"}"#,
];

const TIMES: &[&str] = &[
    "2026-01-14T10:00:00Z",
    "2026-01-14T03:00:00Z",
    "2026-01-17T12:00:00Z",
    "2026-01-16T17:59:59Z",
];

/// A generated rule: its YAML and what it requires, for the reference.
#[derive(Debug, Clone)]
struct GeneratedRule {
    yaml: String,
    capabilities: Option<Vec<&'static str>>,
    principal: Option<&'static str>,
    risks: Option<Vec<&'static str>>,
    input: Option<usize>,
    window: Option<usize>,
}

fn pattern_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl GeneratedRule {
    /// The reference: every condition written out by hand.
    fn matches(&self, c: &PolicyContext) -> bool {
        self.capabilities
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| pattern_matches(p, &c.capability_id)))
            && self
                .principal
                .is_none_or(|p| pattern_matches(p, &c.principal))
            && self
                .risks
                .as_ref()
                .is_none_or(|rs| rs.contains(&c.risk_level.as_str()))
            && self
                .input
                .is_none_or(|i| (INPUT_CONDITIONS[i].1)(&c.inputs))
            && self.window.is_none_or(|w| (WINDOWS[w].1)(c.time))
    }
}

fn rule() -> impl Strategy<Value = GeneratedRule> {
    (
        proptest::option::of(proptest::sample::subsequence(PATTERNS.to_vec(), 1..3)),
        proptest::option::of(proptest::sample::select(PRINCIPAL_PATTERNS.to_vec())),
        proptest::option::of(proptest::sample::subsequence(
            vec!["LOW", "MEDIUM", "HIGH", "CRITICAL"],
            1..3,
        )),
        proptest::option::weighted(0.4, 0..INPUT_CONDITIONS.len()),
        proptest::option::weighted(0.2, 0..WINDOWS.len()),
        proptest::sample::select(vec!["ALLOW", "DENY", "REQUIRE_APPROVAL"]),
    )
        .prop_map(|(caps, principal, risks, input, window, decision)| {
            let mut when = Vec::new();
            if let Some(caps) = &caps {
                when.push(format!(
                    "capability: [{}]",
                    caps.iter()
                        .map(|c| format!("'{c}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(risks) = &risks {
                when.push(format!("risk_level: [{}]", risks.join(", ")));
            }
            if let Some(i) = input {
                when.push(format!("inputs: {{{}}}", INPUT_CONDITIONS[i].0));
            }
            if let Some(w) = window {
                when.push(WINDOWS[w].0.to_owned());
            }
            let principal_yaml = principal
                .map(|p| format!("principal: '{p}', "))
                .unwrap_or_default();
            GeneratedRule {
                yaml: format!(
                    "  - {{{principal_yaml}when: {{{}}}, decision: {decision}}}\n",
                    when.join(", ")
                ),
                capabilities: caps,
                principal,
                risks,
                input,
                window,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn the_index_decides_exactly_like_a_linear_scan(
        rules in proptest::collection::vec(rule(), 0..40),
        requests in proptest::collection::vec((
            proptest::sample::select(PRINCIPALS.to_vec()),
            proptest::sample::select(CAPABILITIES.to_vec()),
            proptest::sample::select(RiskLevel::ALL.to_vec()),
            proptest::sample::select(INPUTS.to_vec()),
            proptest::sample::select(TIMES.to_vec()),
        ), 1..30),
    ) {
        let yaml = format!(
            "default: DENY\nrules:\n{}",
            rules.iter().map(|r| r.yaml.as_str()).collect::<String>()
        );
        let set = compile(&yaml);
        for (principal, capability, risk, inputs, time) in requests {
            let mut c = ctx(principal, capability, risk);
            c.inputs = serde_json::from_str(inputs).expect("inputs");
            c.time = time.parse().expect("time");
            let fast = set.evaluate(&c, false);
            let expected = set.first_match_linear(&c);
            let expected_id = expected.map_or("default".to_owned(), |i| set.rules()[i].id.to_string());
            prop_assert_eq!(&*fast.rule_id, expected_id.as_str());
            // The hand-written reference agrees on the first match.
            prop_assert_eq!(rules.iter().position(|r| r.matches(&c)), expected);
            let explained = set.evaluate(&c, true);
            prop_assert_eq!(fast.decision, explained.decision);
            prop_assert_eq!(fast.rule_id.clone(), explained.rule_id.clone());
        }
    }
}

#[test]
fn time_windows_and_input_conditions_decide_and_explain() {
    let set = compile(
        r#"
rules:
  - id: office-hours-prod-deletes
    when:
      operation_type: DELETE
      inputs: {path: {glob: "prod/**"}}
      during: {days: [MON-FRI], between: "09:00-18:00", timezone: Europe/Berlin}
    decision: REQUIRE_APPROVAL
  - id: no-prod-deletes
    when: {operation_type: DELETE, inputs: {path: {glob: "prod/**"}}}
    decision: DENY
  - id: big-refunds
    when: {capability: payments.refund, inputs: {amount: {gt: 500}}}
    decision: REQUIRE_APPROVAL
  - id: quiet-night
    when: {outside: {between: "06:00-23:00", timezone: Europe/Berlin}}
    decision: DENY
  - {id: rest, decision: ALLOW}
"#,
    );
    let mut delete = ctx("agent:a", "io.fs.delete", RiskLevel::Low);
    delete.operation_type = Some(OperationType::Delete);
    delete.inputs = json!({"path": "staging/../prod/db"})
        .as_object()
        .cloned()
        .expect("map");
    delete.time = "2026-01-14T09:00:00Z".parse().expect("time"); // Wednesday 10:00 Berlin
    assert_eq!(
        &*set.evaluate(&delete, false).rule_id,
        "office-hours-prod-deletes"
    );
    delete.time = "2026-01-17T09:00:00Z".parse().expect("time"); // Saturday
    let record = set.evaluate(&delete, true);
    assert_eq!(
        (record.decision, &*record.rule_id),
        (Decision::Deny, "no-prod-deletes")
    );
    assert_eq!(record.explanation[0].failed_condition, "when.during");
    assert_eq!(
        record.explanation[0].detail,
        "time SAT 2026-01-17 10:00 Europe/Berlin is inside none of [MON,TUE,WED,THU,FRI 09:00-18:00 Europe/Berlin]"
    );

    let mut refund = ctx("agent:a", "payments.refund", RiskLevel::Low);
    refund.inputs = json!({"amount": 120}).as_object().cloned().expect("map");
    let record = set.evaluate(&refund, true);
    assert_eq!(&*record.rule_id, "rest");
    assert_eq!(record.explanation[2].failed_condition, "when.inputs");
    assert_eq!(
        record.explanation[2].detail,
        "input amount is 120 but must be > 500"
    );
    refund.time = "2026-01-14T23:30:00Z".parse().expect("time"); // 00:30 Berlin
    let record = set.evaluate(&refund, true);
    assert_eq!(&*record.rule_id, "quiet-night");
    refund.time = "2026-01-14T12:00:00Z".parse().expect("time");
    let record = set.evaluate(&refund, true);
    assert_eq!(record.explanation[3].failed_condition, "when.outside");
    assert!(
        record.explanation[3].detail.contains("13:00 Europe/Berlin"),
        "{}",
        record.explanation[3].detail
    );
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
