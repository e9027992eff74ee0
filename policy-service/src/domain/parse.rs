//! The policy set YAML: loading with precise errors (line and field; unknown
//! keys refused) and validation into a [`PolicySet`].
//!
//! ```yaml
//! default: DENY                # fail closed; ALLOW only if written explicitly
//! escalate_high_risk: true     # an ALLOW for HIGH/CRITICAL risk becomes REQUIRE_APPROVAL
//! rules:
//!   - id: deny-high-risk-agents
//!     principal: "agent:*"
//!     roles: [oncall]
//!     when: {capability: ["io.fs.*"], risk_level: [HIGH, CRITICAL], operation_type: [DELETE],
//!            agent: ["data_*"], environment: [prod], inputs: {env: prod}}
//!     decision: DENY
//!     reason: High-risk operations are not allowed
//! ```
//! The prototype's form (`{when: {capability, risk_level}, principal, decision}`)
//! is a subset and loads unchanged. Enum values are case-insensitive.

use std::collections::HashSet;
use std::sync::Arc;

use airt_kit::status::FieldViolation;
use airt_kit::vocabulary::{OperationType, RiskLevel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::budget::{Budget, BudgetDoc};
use super::condition::{InputCondition, parse_inputs};
use super::context::Decision;
use super::pattern::Pattern;
use super::window::{Window, WindowsDoc};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySetDoc {
    /// Accepted for compatibility with earlier files; not interpreted.
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<Value>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    escalate_high_risk: Option<bool>,
    #[serde(default)]
    rules: Vec<RuleDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    principal: Option<OneOrMany>,
    #[serde(default)]
    roles: Option<OneOrMany>,
    #[serde(default)]
    when: Option<WhenDoc>,
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    budget: Option<BudgetDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenDoc {
    #[serde(default)]
    capability: Option<OneOrMany>,
    #[serde(default)]
    risk_level: Option<OneOrMany>,
    #[serde(default)]
    operation_type: Option<OneOrMany>,
    #[serde(default)]
    agent: Option<OneOrMany>,
    #[serde(default)]
    environment: Option<OneOrMany>,
    #[serde(default)]
    inputs: Option<Map<String, Value>>,
    #[serde(default)]
    during: Option<WindowsDoc>,
    #[serde(default)]
    outside: Option<WindowsDoc>,
}

/// A validated rule. Absent conditions are `None` (match anything).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: Arc<str>,
    pub description: String,
    pub principal: Option<Vec<Pattern>>,
    pub roles: Option<Vec<String>>,
    pub capability: Option<Vec<Pattern>>,
    pub risk_level: Option<Vec<RiskLevel>>,
    pub operation_type: Option<Vec<OperationType>>,
    pub agent: Option<Vec<Pattern>>,
    pub environment: Option<Vec<String>>,
    /// Conditions on the inputs, all of which must hold.
    pub inputs: Option<Vec<InputCondition>>,
    /// The decision's time is inside one of these windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub during: Option<Vec<Window>>,
    /// The decision's time is inside none of these windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside: Option<Vec<Window>>,
    pub decision: Decision,
    pub reason: Arc<str>,
    /// At most `max` decisions of this rule per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// A validated policy set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySet {
    pub description: String,
    pub default: Decision,
    pub escalate_high_risk: bool,
    pub rules: Vec<Rule>,
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a policy set was refused: every problem, each with its field (and
/// line when the YAML itself is malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy set: {}", airt_kit::status::violations_message(.0))]
pub struct ParseError(pub Vec<FieldViolation>);

struct Problems(Vec<FieldViolation>);

impl Problems {
    fn add(&mut self, field: String, description: String) {
        self.0.push(FieldViolation::new(
            format!("source_yaml.{field}"),
            description,
        ));
    }

    fn patterns(&mut self, field: String, values: Option<OneOrMany>) -> Option<Vec<Pattern>> {
        let values = values?.into_vec();
        if values.is_empty() {
            self.add(
                field.clone(),
                "an empty list matches nothing; remove the condition instead".into(),
            );
        }
        let mut compiled = Vec::new();
        for value in values {
            match Pattern::parse(&value) {
                Ok(pattern) => compiled.push(pattern),
                Err(message) => self.add(field.clone(), message),
            }
        }
        Some(compiled)
    }

    fn windows(&mut self, field: String, doc: Option<WindowsDoc>) -> Option<Vec<Window>> {
        let docs = doc?.into_vec();
        if docs.is_empty() {
            self.add(
                field.clone(),
                "an empty list of windows matches nothing".into(),
            );
        }
        let mut windows = Vec::with_capacity(docs.len());
        for (i, doc) in docs.into_iter().enumerate() {
            match Window::compile(doc) {
                Ok(window) => windows.push(window),
                Err(message) => self.add(format!("{field}[{i}]"), message),
            }
        }
        Some(windows)
    }

    fn words(&mut self, field: String, values: Option<OneOrMany>) -> Option<Vec<String>> {
        let values = values?.into_vec();
        if values.is_empty() || values.iter().any(String::is_empty) {
            self.add(field, "empty values match nothing".into());
        }
        Some(values)
    }

    fn enums<T: Copy>(
        &mut self,
        field: String,
        values: Option<OneOrMany>,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Option<Vec<T>> {
        let values = self.words(field.clone(), values)?;
        let mut parsed = Vec::new();
        for value in values {
            match parse(&value.to_ascii_uppercase()) {
                Some(v) => parsed.push(v),
                None => self.add(field.clone(), format!("{value:?}: expected {expected}")),
            }
        }
        Some(parsed)
    }
}

/// Parses and validates a policy set.
pub fn parse_policy_set(yaml: &str) -> Result<PolicySet, ParseError> {
    let doc: PolicySetDoc = airt_kit::limits::parse_yaml(yaml)
        .map_err(|description| ParseError(vec![FieldViolation::new("source_yaml", description)]))?;
    let mut problems = Problems(Vec::new());
    const DECISIONS: &str = "ALLOW, DENY or REQUIRE_APPROVAL";

    let default = match doc.default.as_deref() {
        None => Decision::Deny,
        Some(text) => Decision::parse(text).unwrap_or_else(|| {
            problems.add("default".into(), format!("{text:?}: expected {DECISIONS}"));
            Decision::Deny
        }),
    };

    let mut ids = HashSet::new();
    let mut rules = Vec::with_capacity(doc.rules.len());
    for (i, rule) in doc.rules.into_iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        let id = rule.id.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
        if id.trim().is_empty() {
            problems.add(at("id"), "must not be empty".into());
        } else if id == "default" {
            problems.add(
                at("id"),
                "`default` is reserved for the default decision".into(),
            );
        } else if !ids.insert(id.clone()) {
            problems.add(at("id"), format!("duplicate rule id {id:?}"));
        }
        let decision = Decision::parse(&rule.decision).unwrap_or_else(|| {
            problems.add(
                at("decision"),
                format!("{:?}: expected {DECISIONS}", rule.decision),
            );
            Decision::Deny
        });
        let principal = problems.patterns(at("principal"), rule.principal);
        let roles = problems.words(at("roles"), rule.roles);
        let when = rule.when.unwrap_or_default();
        let capability = problems.patterns(at("when.capability"), when.capability);
        let risk_level = problems.enums(
            at("when.risk_level"),
            when.risk_level,
            RiskLevel::parse,
            "LOW, MEDIUM, HIGH or CRITICAL",
        );
        let operation_type = problems.enums(
            at("when.operation_type"),
            when.operation_type,
            |text| OperationType::ALL.into_iter().find(|o| o.as_str() == text),
            "READ, WRITE, DELETE, EXECUTE or NETWORK",
        );
        let agent = problems.patterns(at("when.agent"), when.agent);
        let environment = problems.words(at("when.environment"), when.environment);
        let inputs = when.inputs.map(|map| match parse_inputs(&map) {
            Ok(conditions) => conditions,
            Err(found) => {
                for (field, message) in found {
                    problems.add(at(&field), message);
                }
                Vec::new()
            }
        });
        let during = problems.windows(at("when.during"), when.during);
        let outside = problems.windows(at("when.outside"), when.outside);
        let budget = rule
            .budget
            .and_then(|doc| match Budget::compile(doc, decision) {
                Ok(budget) => Some(budget),
                Err(found) => {
                    for (field, message) in found {
                        problems.add(at(&field), message);
                    }
                    None
                }
            });
        let reason = rule.reason.unwrap_or_else(|| format!("matched rule {id}"));
        rules.push(Rule {
            id: id.into(),
            description: rule.description.unwrap_or_default(),
            principal,
            roles,
            capability,
            risk_level,
            operation_type,
            agent,
            environment,
            inputs,
            during,
            outside,
            decision,
            reason: reason.into(),
            budget,
        });
    }
    if !problems.0.is_empty() {
        return Err(ParseError(problems.0));
    }
    Ok(PolicySet {
        description: doc.description.unwrap_or_default(),
        default,
        escalate_high_risk: doc.escalate_high_risk.unwrap_or(true),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_form_loads() {
        let set = parse_policy_set(
            r#"
default: DENY
escalate_high_risk: true
rules:
  - id: deny-high-risk-agents
    description: agents never run HIGH/CRITICAL actions
    principal: "agent:*"
    roles: [oncall]
    when:
      capability: ["io.fs.*", "net.http.post"]
      risk_level: [HIGH, CRITICAL]
      operation_type: [DELETE]
      agent: ["data_*"]
      environment: [prod]
      inputs: {env: prod, "target.region": eu}
    decision: DENY
    reason: High-risk operations are not allowed
"#,
        )
        .expect("valid");
        let rule = &set.rules[0];
        assert_eq!(&*rule.id, "deny-high-risk-agents");
        assert_eq!(rule.capability.as_ref().map(Vec::len), Some(2));
        assert!(matches!(
            &rule.inputs.as_ref().expect("inputs")[1],
            crate::domain::condition::InputCondition::Path { path, .. } if path == &["target", "region"]
        ));
        assert_eq!(set.default, Decision::Deny);
    }

    #[test]
    fn the_prototype_form_loads_unchanged_with_numbered_ids() {
        let set = parse_policy_set(
            "rules:\n  - when: {capability: io.fs.read_file}\n    principal: \"agent:*\"\n    decision: ALLOW\n  - when: {risk_level: HIGH}\n    decision: deny\n",
        )
        .expect("valid");
        assert_eq!(
            set.rules.iter().map(|r| &*r.id).collect::<Vec<_>>(),
            ["rule-1", "rule-2"]
        );
        assert_eq!(set.default, Decision::Deny, "fail closed by default");
        assert!(set.escalate_high_risk, "escalation on by default");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let error = parse_policy_set("default: DENY\nrules:\n  - decision: ALLOW\n    whenn: {}\n")
            .expect_err("typo");
        let problem = &error.0[0];
        assert_eq!(problem.field, "source_yaml");
        assert!(
            problem.description.contains("line 4") && problem.description.contains("whenn"),
            "{}",
            problem.description
        );
    }

    #[test]
    fn semantic_errors_name_their_field_and_all_are_reported() {
        let error = parse_policy_set(
            "default: MAYBE\nrules:\n  - id: a\n    decision: ALLOW\n  - id: a\n    decision: PERMIT\n    when: {capability: \"io.*.x\", risk_level: [EXTREME]}\n",
        )
        .expect_err("invalid");
        let fields: Vec<&str> = error.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "source_yaml.default",
                "source_yaml.rules[1].id",
                "source_yaml.rules[1].decision",
                "source_yaml.rules[1].when.capability",
                "source_yaml.rules[1].when.risk_level"
            ]
        );
    }
}
