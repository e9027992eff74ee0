//! Policy tests: a YAML file of cases run against a compiled set, with
//! per-rule coverage and lint findings.
//!
//! ```yaml
//! cases:
//!   - name: agents may read files
//!     context: {principal: "agent:x", capability: io.fs.read_file, risk_level: LOW}
//!     expect: {decision: ALLOW, rule: allow-reads}     # rule is optional
//! ```

use std::collections::HashMap;

use airt_kit::status::FieldViolation;
use airt_kit::vocabulary::{OperationType, RiskLevel};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::budget::settle;
use super::condition::lint::{ParamType, contradictions, parameter_mismatches};
use super::context::{Decision, DecisionRecord, PolicyContext};
use super::engine::{CompiledPolicySet, DEFAULT_RULE_ID};
use super::parse::Rule;
use super::pattern::Pattern;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The decision time of cases that name none (RFC 3339).
    #[serde(default)]
    time: Option<String>,
    cases: Vec<CaseDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDoc {
    #[serde(default)]
    name: Option<String>,
    context: ContextDoc,
    expect: ExpectDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextDoc {
    principal: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    workflow_id: String,
    #[serde(default)]
    step_name: String,
    #[serde(alias = "capability_id")]
    capability: String,
    risk_level: String,
    #[serde(default)]
    requires_approval: bool,
    #[serde(default)]
    operation_type: Option<String>,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    environment: String,
    /// The decision time (RFC 3339); the file's `time`, else now.
    #[serde(default)]
    time: Option<String>,
    /// Decisions already counted in the window of the deciding rule's
    /// budget (0 when omitted): the case is decided as an execution.
    #[serde(default)]
    budget_used: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDoc {
    decision: String,
    #[serde(default)]
    rule: Option<String>,
}

/// One test case, ready to run.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    pub context: PolicyContext,
    /// Already counted in the deciding rule's budget window.
    pub budget_used: u32,
    pub expected_decision: Decision,
    pub expected_rule: Option<String>,
}

fn parse_time(
    text: Option<&str>,
    field: String,
    problems: &mut Vec<FieldViolation>,
) -> Option<Timestamp> {
    let text = text?;
    match text.parse::<Timestamp>() {
        Ok(time) => Some(time),
        Err(error) => {
            problems.push(FieldViolation::new(
                field,
                format!("{text:?} is not an RFC 3339 time: {error}"),
            ));
            None
        }
    }
}

/// Parses a test file; every problem is reported with its field. Cases
/// without a `time` (and no file-wide one) are decided at `now`.
pub fn parse_test_cases(yaml: &str, now: Timestamp) -> Result<Vec<TestCase>, Vec<FieldViolation>> {
    let file: TestFile = airt_kit::limits::parse_yaml(yaml)
        .map_err(|description| vec![FieldViolation::new("tests_yaml", description)])?;
    let mut problems = Vec::new();
    let mut cases = Vec::new();
    let default_time = parse_time(
        file.time.as_deref(),
        "tests_yaml.time".into(),
        &mut problems,
    )
    .unwrap_or(now);
    for (i, case) in file.cases.into_iter().enumerate() {
        let field = |f: &str| format!("tests_yaml.cases[{i}].{f}");
        let time = parse_time(
            case.context.time.as_deref(),
            field("context.time"),
            &mut problems,
        )
        .unwrap_or(default_time);
        let risk = RiskLevel::parse(&case.context.risk_level.to_ascii_uppercase());
        if risk.is_none() {
            problems.push(FieldViolation::new(
                field("context.risk_level"),
                "expected LOW, MEDIUM, HIGH or CRITICAL",
            ));
        }
        let operation = match case.context.operation_type.as_deref() {
            None => Ok(None),
            Some(op) => OperationType::ALL
                .into_iter()
                .find(|o| o.as_str().eq_ignore_ascii_case(op))
                .map(Some)
                .ok_or(()),
        };
        if operation.is_err() {
            problems.push(FieldViolation::new(
                field("context.operation_type"),
                "expected READ, WRITE, DELETE, EXECUTE or NETWORK",
            ));
        }
        let decision = Decision::parse(&case.expect.decision);
        if decision.is_none() {
            problems.push(FieldViolation::new(
                field("expect.decision"),
                "expected ALLOW, DENY or REQUIRE_APPROVAL",
            ));
        }
        if let (Some(risk_level), Ok(operation_type), Some(expected_decision)) =
            (risk, operation, decision)
        {
            cases.push(TestCase {
                name: case.name.unwrap_or_else(|| format!("case {}", i + 1)),
                budget_used: case.context.budget_used,
                context: PolicyContext {
                    principal: case.context.principal,
                    roles: case.context.roles,
                    agent: case.context.agent,
                    workflow_id: case.context.workflow_id,
                    step_name: case.context.step_name,
                    capability_id: case.context.capability,
                    risk_level,
                    requires_approval: case.context.requires_approval,
                    operation_type,
                    inputs: case.context.inputs,
                    environment: case.context.environment,
                    time,
                },
                expected_decision,
                expected_rule: case.expect.rule,
            });
        }
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(problems)
    }
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub expected_decision: Decision,
    pub expected_rule: Option<String>,
    /// The decision with its explanation.
    pub actual: DecisionRecord,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LintKind {
    ShadowedRule,
    UnmatchedPattern,
    /// No input can satisfy the rule's input conditions.
    ImpossibleCondition,
    /// An input condition does not fit a capability's parameters.
    ParameterMismatch,
}

/// A capability the linter knows: its id and, when known, its parameters.
#[derive(Debug, Clone, Default)]
pub struct KnownCapability {
    pub id: String,
    pub parameters: Option<HashMap<String, ParamType>>,
}

impl KnownCapability {
    pub fn id(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            parameters: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    pub kind: LintKind,
    pub rule_id: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct TestReport {
    pub results: Vec<CaseResult>,
    /// Every rule (and `default`) with the number of cases it decided.
    pub coverage: Vec<(String, u32)>,
    pub lint: Vec<LintFinding>,
}

impl TestReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }
}

/// Runs the cases, counts which rule decided each, and lints the set.
pub fn run_tests(
    set: &CompiledPolicySet,
    cases: &[TestCase],
    known_capabilities: &[KnownCapability],
) -> TestReport {
    let mut hits: HashMap<String, u32> = HashMap::new();
    let mut results = Vec::new();
    for case in cases {
        let mut actual = set.evaluate(&case.context, true);
        if let Some(budget) = &actual.budget {
            // Decided as an execution with `budget_used` already counted.
            let exceeded = case.budget_used >= budget.max;
            let used = if exceeded {
                budget.max
            } else {
                case.budget_used + 1
            };
            settle(&mut actual, used, !exceeded, exceeded);
        }
        *hits.entry(actual.rule_id.to_string()).or_default() += 1;
        let decision_ok = actual.decision == case.expected_decision;
        let rule_ok = case
            .expected_rule
            .as_deref()
            .is_none_or(|rule| rule == &*actual.rule_id);
        let message = if decision_ok && rule_ok {
            String::new()
        } else {
            let why: Vec<String> = actual
                .explanation
                .iter()
                .filter(|e| !e.matched)
                .map(|e| format!("{}: {} ({})", e.rule_id, e.failed_condition, e.detail))
                .collect();
            format!(
                "expected {}{} but got {} by rule {}{}; rules that did not match: [{}]",
                case.expected_decision,
                case.expected_rule
                    .as_deref()
                    .map(|r| format!(" by rule {r}"))
                    .unwrap_or_default(),
                actual.decision,
                actual.rule_id,
                if actual.escalated { " (escalated)" } else { "" },
                why.join("; ")
            )
        };
        results.push(CaseResult {
            name: case.name.clone(),
            passed: decision_ok && rule_ok,
            expected_decision: case.expected_decision,
            expected_rule: case.expected_rule.clone(),
            actual,
            message,
        });
    }
    let coverage = set
        .rules()
        .iter()
        .map(|r| r.id.to_string())
        .chain(std::iter::once(DEFAULT_RULE_ID.to_owned()))
        .map(|id| {
            let count = hits.get(&id).copied().unwrap_or(0);
            (id, count)
        })
        .collect();
    TestReport {
        results,
        coverage,
        lint: lint(set.rules(), known_capabilities),
    }
}

fn patterns_covered(later: &Option<Vec<Pattern>>, earlier: &Option<Vec<Pattern>>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(earlier), Some(later)) => later
            .iter()
            .all(|l| earlier.iter().any(|e| l.is_covered_by(e))),
    }
}

fn values_covered<T: PartialEq>(later: &Option<Vec<T>>, earlier: &Option<Vec<T>>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(earlier), Some(later)) => later.iter().all(|l| earlier.contains(l)),
    }
}

/// Whether every context `later` matches is matched by `earlier` too.
fn shadows(earlier: &Rule, later: &Rule) -> bool {
    let inputs_covered = match (&earlier.inputs, &later.inputs) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => e.iter().all(|constraint| l.contains(constraint)),
    };
    patterns_covered(&later.principal, &earlier.principal)
        && values_covered(&later.roles, &earlier.roles)
        && patterns_covered(&later.capability, &earlier.capability)
        && values_covered(&later.risk_level, &earlier.risk_level)
        && values_covered(&later.operation_type, &earlier.operation_type)
        && patterns_covered(&later.agent, &earlier.agent)
        && values_covered(&later.environment, &earlier.environment)
        && inputs_covered
        && (earlier.during.is_none() || earlier.during == later.during)
        && (earlier.outside.is_none() || earlier.outside == later.outside)
}

/// Rules that can never decide (an earlier rule matches everything they
/// match, or their input conditions hold for no input), capability
/// patterns matching none of `known` (skipped when it is empty), and
/// input conditions that do not fit the parameters of the capabilities a
/// rule names (when their parameters are known).
pub fn lint(rules: &[Rule], known: &[KnownCapability]) -> Vec<LintFinding> {
    let mut findings = Vec::new();
    for (j, later) in rules.iter().enumerate() {
        let mut found = |kind, message: String| {
            findings.push(LintFinding {
                kind,
                rule_id: later.id.to_string(),
                message,
            });
        };
        if let Some(earlier) = rules[..j].iter().find(|earlier| shadows(earlier, later)) {
            found(
                LintKind::ShadowedRule,
                format!(
                    "rule {} is never reached: rule {} matches everything it matches",
                    later.id, earlier.id
                ),
            );
        }
        let conditions = later.inputs.as_deref().unwrap_or_default();
        for problem in contradictions(conditions) {
            found(
                LintKind::ImpossibleCondition,
                format!("rule {} never matches: {problem}", later.id),
            );
        }
        if known.is_empty() {
            continue;
        }
        for pattern in later.capability.iter().flatten() {
            if !matches!(pattern, Pattern::Any) && !known.iter().any(|c| pattern.matches(&c.id)) {
                found(
                    LintKind::UnmatchedPattern,
                    format!(
                        "capability pattern {pattern} of rule {} matches no known capability",
                        later.id
                    ),
                );
            }
        }
        if conditions.is_empty() {
            continue;
        }
        // Only capabilities the rule names: a rule for every capability
        // rightly names inputs most of them do not have.
        let named = known.iter().filter(|c| {
            later
                .capability
                .iter()
                .flatten()
                .any(|p| !matches!(p, Pattern::Any) && p.matches(&c.id))
        });
        for capability in named {
            let Some(parameters) = &capability.parameters else {
                continue;
            };
            for problem in parameter_mismatches(conditions, &capability.id, parameters) {
                found(
                    LintKind::ParameterMismatch,
                    format!("rule {}: {problem}", later.id),
                );
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse::parse_policy_set;

    fn compile(yaml: &str) -> CompiledPolicySet {
        CompiledPolicySet::compile(parse_policy_set(yaml).expect("valid"))
    }

    #[test]
    fn cases_pass_and_fail_with_explanations_and_coverage() {
        let set = compile(
            "rules:\n  - {id: allow-reads, principal: 'agent:*', when: {operation_type: READ}, decision: ALLOW}\n  - {id: never, decision: DENY}\n",
        );
        let cases = parse_test_cases(
            "cases:\n  - name: reads\n    context: {principal: 'agent:x', capability: io.fs.read_file, risk_level: LOW, operation_type: READ}\n    expect: {decision: ALLOW, rule: allow-reads}\n  - name: wrong\n    context: {principal: 'user:y', capability: io.fs.read_file, risk_level: LOW, operation_type: READ}\n    expect: {decision: ALLOW}\n",
            Timestamp::now(),
        )
        .expect("valid cases");
        let report = run_tests(&set, &cases, &[]);
        assert!(report.results[0].passed);
        assert!(!report.results[1].passed);
        assert!(
            report.results[1].message.contains("allow-reads: principal"),
            "{}",
            report.results[1].message
        );
        assert_eq!(report.failed(), 1);
        assert_eq!(
            report.coverage,
            [
                ("allow-reads".to_owned(), 1),
                ("never".to_owned(), 1),
                ("default".to_owned(), 0)
            ]
        );
    }

    #[test]
    fn bad_case_files_name_the_field() {
        let problems = parse_test_cases("cases:\n  - context: {principal: 'a:b', capability: x.y, risk_level: HUGE}\n    expect: {decision: ALLOW}\n", Timestamp::now()).expect_err("bad");
        assert_eq!(problems[0].field, "tests_yaml.cases[0].context.risk_level");
        let problems =
            parse_test_cases("cases:\n  - contxt: {}\n", Timestamp::now()).expect_err("typo");
        assert!(
            problems[0].description.contains("line 2"),
            "{}",
            problems[0].description
        );
    }

    #[test]
    fn lint_finds_shadowed_rules_and_dead_patterns() {
        let set = compile(
            "rules:\n  - {id: broad, principal: 'agent:*', when: {capability: 'io.*'}, decision: DENY}\n  - {id: narrow, principal: 'agent:x', when: {capability: 'io.fs.read', risk_level: LOW}, decision: ALLOW}\n  - {id: other, principal: 'user:*', when: {capability: ['io.fs.read', 'ghost.*']}, decision: ALLOW}\n",
        );
        let findings = lint(
            set.rules(),
            &[
                KnownCapability::id("io.fs.read"),
                KnownCapability::id("net.http.get"),
            ],
        );
        assert_eq!(
            findings
                .iter()
                .map(|f| (f.kind, f.rule_id.as_str()))
                .collect::<Vec<_>>(),
            [
                (LintKind::ShadowedRule, "narrow"),
                (LintKind::UnmatchedPattern, "other")
            ]
        );
        assert!(findings[1].message.contains("ghost.*"));
    }

    #[test]
    fn lint_finds_impossible_conditions_and_parameter_mismatches() {
        let set = compile(
            r#"
rules:
  - id: never
    when: {capability: payments.refund, inputs: {amount: {gt: 500, lt: 100}}}
    decision: DENY
  - id: typed
    when:
      capability: payments.*
      inputs: {amount: {starts_with: "1"}, currency: {in: [EUR, 5]}, note: x, customer.id: 1}
    decision: ALLOW
  - id: anywhere
    when: {inputs: {ghost: 1}}
    decision: ALLOW
"#,
        );
        let mut parameters = HashMap::new();
        parameters.insert("amount".to_owned(), ParamType::Number);
        parameters.insert("currency".to_owned(), ParamType::String);
        parameters.insert("customer".to_owned(), ParamType::String);
        let known = [
            KnownCapability {
                id: "payments.refund".into(),
                parameters: Some(parameters),
            },
            KnownCapability::id("payments.charge"),
        ];
        let findings = lint(set.rules(), &known);
        let messages: Vec<(LintKind, &str, &str)> = findings
            .iter()
            .map(|f| (f.kind, f.rule_id.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(messages.len(), 5, "{messages:#?}");
        assert_eq!(messages[0].0, LintKind::ImpossibleCondition);
        assert!(
            messages[0].2.contains("gt 500 and lt 100"),
            "{}",
            messages[0].2
        );
        let typed: Vec<&str> = messages[1..].iter().map(|m| m.2).collect();
        assert!(
            typed.iter().all(|m| m.starts_with("rule typed")),
            "{typed:?}"
        );
        assert!(
            typed[0].contains("starts_with never matches a parameter of type number"),
            "{typed:?}"
        );
        assert!(
            typed[1].contains("in 5 (number) never matches a parameter of type string"),
            "{typed:?}"
        );
        assert!(
            typed[2].contains("is a string, it has no fields"),
            "{typed:?}"
        );
        assert!(typed[3].contains("has no parameter \"note\""), "{typed:?}");
        // Capabilities known by id only, and rules naming no capability,
        // are not checked against parameters.
        assert!(messages.iter().all(|m| m.1 != "anywhere"));
    }

    #[test]
    fn cases_are_decided_at_their_time() {
        let set = compile(
            "rules:\n  - {id: office, when: {during: {days: [MON-FRI], between: '09:00-18:00', timezone: America/New_York}}, decision: ALLOW}\n",
        );
        let cases = parse_test_cases(
            "time: 2026-01-14T15:00:00Z\ncases:\n  - name: wednesday 10:00 in New York\n    context: {principal: 'agent:x', capability: a.b, risk_level: LOW}\n    expect: {decision: ALLOW, rule: office}\n  - name: saturday\n    context: {principal: 'agent:x', capability: a.b, risk_level: LOW, time: '2026-01-17T15:00:00Z'}\n    expect: {decision: DENY, rule: default}\n",
            Timestamp::UNIX_EPOCH,
        )
        .expect("valid cases");
        let report = run_tests(&set, &cases, &[]);
        assert_eq!(report.failed(), 0, "{:?}", report.results);
        let problems = parse_test_cases(
            "cases:\n  - context: {principal: 'a:b', capability: x.y, risk_level: LOW, time: soon}\n    expect: {decision: ALLOW}\n",
            Timestamp::UNIX_EPOCH,
        )
        .expect_err("bad time");
        assert_eq!(problems[0].field, "tests_yaml.cases[0].context.time");
    }

    #[test]
    fn cases_are_decided_at_a_budget_state() {
        let set = compile(
            "rules:\n  - id: email-budget\n    when: {capability: email.send}\n    decision: ALLOW\n    budget: {max: 20, per: 1h, by: [agent], over_budget: REQUIRE_APPROVAL}\n",
        );
        let cases = parse_test_cases(
            "cases:\n  - name: the 20th email goes out\n    context: {principal: 'agent:x', agent: mailer, capability: email.send, risk_level: LOW, budget_used: 19}\n    expect: {decision: ALLOW, rule: email-budget}\n  - name: the 21st waits for a human\n    context: {principal: 'agent:x', agent: mailer, capability: email.send, risk_level: LOW, budget_used: 20}\n    expect: {decision: REQUIRE_APPROVAL, rule: email-budget}\n",
            Timestamp::UNIX_EPOCH,
        )
        .expect("valid cases");
        let report = run_tests(&set, &cases, &[]);
        assert_eq!(report.failed(), 0, "{:?}", report.results);
        let last = report.results[0].actual.budget.as_ref().expect("budget");
        assert_eq!((last.used, last.remaining(), last.counted), (20, 0, true));
        let over = &report.results[1].actual;
        assert!(
            over.reason
                .starts_with("over budget: rule email-budget allows 20 per 1h for agent=mailer"),
            "{}",
            over.reason
        );
        assert!(
            over.budget
                .as_ref()
                .is_some_and(|b| b.exceeded && !b.counted)
        );
    }
}
