//! The policy's answer as the engine obeys it, and why the gate stops a
//! step before the policy is asked. No IO.

use airt_kit::status::FieldViolation;

/// What the policy decided for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Execute it.
    Allow,
    /// Do not; the step is DENIED.
    Deny { rule: String, reason: String },
    /// Execute it only with a human's approval bound to the exact action.
    RequireApproval { rule: String, reason: String },
}

impl Verdict {
    /// The decision's name: `ALLOW`, `DENY` or `REQUIRE_APPROVAL`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Deny { .. } => "DENY",
            Self::RequireApproval { .. } => "REQUIRE_APPROVAL",
        }
    }
}

/// Why the gate stopped a step before (or instead of) asking the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The registry or the policy service gave no usable answer before the
    /// deadline (or refused the question).
    Unanswered(String),
    /// No capability with this id is registered.
    Unknown { capability: String },
    /// The capability is FROZEN by its owners.
    Frozen { capability: String, reason: String },
    /// The inputs do not fit the capability's parameters: per parameter,
    /// what is wrong.
    Inputs(Vec<(String, String)>),
}

impl Refusal {
    /// Whether the problem is in the workflow itself (known before anything
    /// runs), not in the moment it was asked.
    pub fn is_static(&self) -> bool {
        !matches!(self, Self::Unanswered(_))
    }

    /// The problems as field violations of step number `index`.
    pub fn violations(&self, index: usize) -> Vec<FieldViolation> {
        let at = |field: &str| format!("spec.steps[{index}].{field}");
        match self {
            Self::Unanswered(why) => vec![FieldViolation::new(at("capability"), why.clone())],
            Self::Unknown { capability } => vec![FieldViolation::new(
                at("capability"),
                format!("no capability {capability} is registered"),
            )],
            Self::Frozen { capability, reason } => vec![FieldViolation::new(
                at("capability"),
                format!("capability {capability} is FROZEN: {reason}"),
            )],
            Self::Inputs(problems) => problems
                .iter()
                .map(|(parameter, problem)| {
                    FieldViolation::new(at(&format!("inputs.{parameter}")), problem.clone())
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unanswered(why) => f.write_str(why),
            Self::Unknown { capability } => write!(f, "unknown capability {capability}"),
            Self::Frozen { capability, reason } => {
                write!(f, "capability {capability} is FROZEN: {reason}")
            }
            Self::Inputs(problems) => {
                let text: Vec<&str> = problems.iter().map(|(_, p)| p.as_str()).collect();
                write!(f, "invalid inputs: {}", text.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_fields() {
        let inputs = Refusal::Inputs(vec![
            ("pathh".into(), "unknown parameter \"pathh\"".into()),
            (
                "content".into(),
                "parameter \"content\" must be of type string".into(),
            ),
        ]);
        let fields: Vec<String> = inputs.violations(2).into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            ["spec.steps[2].inputs.pathh", "spec.steps[2].inputs.content"]
        );
        assert!(inputs.is_static());
        assert!(
            inputs
                .to_string()
                .starts_with("invalid inputs: unknown parameter")
        );
        let frozen = Refusal::Frozen {
            capability: "a.b".into(),
            reason: "outage".into(),
        };
        assert_eq!(frozen.violations(0)[0].field, "spec.steps[0].capability");
        assert_eq!(frozen.to_string(), "capability a.b is FROZEN: outage");
        assert!(!Refusal::Unanswered("registry unavailable".into()).is_static());
    }
}
