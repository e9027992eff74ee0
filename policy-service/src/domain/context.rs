//! What a decision is about, and the decision itself.

use std::sync::Arc;

use airt_kit::vocabulary::{OperationType, RiskLevel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The gatekeeper's three answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Allow,
    Deny,
    RequireApproval,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::RequireApproval => "REQUIRE_APPROVAL",
        }
    }

    /// Case-insensitive: `ALLOW`, `allow`, `require_approval`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "ALLOW" => Some(Self::Allow),
            "DENY" => Some(Self::Deny),
            "REQUIRE_APPROVAL" => Some(Self::RequireApproval),
            _ => None,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a rule may look at. Immutable during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyContext {
    /// The authenticated submitter, `type:id`.
    pub principal: String,
    pub roles: Vec<String>,
    /// The step's logical agent name (an attribute, never an identity).
    pub agent: String,
    pub workflow_id: String,
    pub step_name: String,
    pub capability_id: String,
    /// From the registry.
    pub risk_level: RiskLevel,
    /// From the registry.
    pub requires_approval: bool,
    pub operation_type: Option<OperationType>,
    pub inputs: Map<String, Value>,
    pub environment: String,
    /// When the decision is made (the service's clock; a test file's
    /// `time`): what `when.during`/`when.outside` look at.
    pub time: jiff::Timestamp,
}

/// Why one rule did or did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleExplanation {
    pub rule_id: Arc<str>,
    pub matched: bool,
    /// The first condition that failed, e.g. `principal`, `when.capability`.
    pub failed_condition: &'static str,
    pub detail: String,
}

/// A decision with everything needed to audit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    pub decision: Decision,
    /// The matching rule, or `default`.
    pub rule_id: Arc<str>,
    pub reason: Arc<str>,
    /// An ALLOW turned into REQUIRE_APPROVAL because of risk.
    pub escalated: bool,
    pub policy_revision: Arc<str>,
    /// With `explain`: every rule up to and including the match.
    pub explanation: Vec<RuleExplanation>,
    /// Of an any-inputs evaluation: the deciding rule has input conditions.
    pub depends_on_inputs: bool,
    /// The budget of the deciding rule, if it has one (settled by the
    /// service, which counts).
    pub budget: Option<super::budget::BudgetUse>,
}
