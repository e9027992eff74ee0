//! The compiled, indexed policy set and its evaluation.
//!
//! Rules are evaluated in file order and the first match wins. To make 1,000
//! rules cost little more than 100, rules are indexed by their capability
//! condition: for a request only the rules that can match its capability are
//! tried, still in file order (a rule skipped by the index fails its
//! capability condition, so the first match among the candidates is the first
//! match overall). The property tests check this against a linear scan.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use airt_kit::vocabulary::RiskLevel;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::budget::BudgetUse;
use super::context::{Decision, DecisionRecord, PolicyContext, RuleExplanation};
use super::parse::{PolicySet, Rule};
use super::pattern::Pattern;
use super::window::Window;

/// The rule id of the default decision.
pub const DEFAULT_RULE_ID: &str = "default";

/// A condition of a rule, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Principal,
    Roles,
    Capability,
    RiskLevel,
    OperationType,
    Agent,
    Environment,
    During,
    Outside,
    Inputs,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Self::Principal => "principal",
            Self::Roles => "roles",
            Self::Capability => "when.capability",
            Self::RiskLevel => "when.risk_level",
            Self::OperationType => "when.operation_type",
            Self::Agent => "when.agent",
            Self::Environment => "when.environment",
            Self::During => "when.during",
            Self::Outside => "when.outside",
            Self::Inputs => "when.inputs",
        }
    }
}

fn any_pattern(patterns: &Option<Vec<Pattern>>, value: &str) -> bool {
    patterns
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p.matches(value)))
}

impl Rule {
    /// The first condition that fails for `ctx`, or `None` when the rule matches.
    pub fn first_failure(&self, ctx: &PolicyContext) -> Option<Condition> {
        if let Some(failure) = self.first_failure_before_inputs(ctx) {
            return Some(failure);
        }
        if let Some(inputs) = &self.inputs
            && !inputs.iter().all(|condition| condition.holds(&ctx.inputs))
        {
            return Some(Condition::Inputs);
        }
        None
    }

    /// The first condition other than `when.inputs` that fails for `ctx`.
    fn first_failure_before_inputs(&self, ctx: &PolicyContext) -> Option<Condition> {
        if !any_pattern(&self.principal, &ctx.principal) {
            return Some(Condition::Principal);
        }
        if let Some(roles) = &self.roles
            && !roles.iter().any(|role| ctx.roles.iter().any(|r| r == role))
        {
            return Some(Condition::Roles);
        }
        if !any_pattern(&self.capability, &ctx.capability_id) {
            return Some(Condition::Capability);
        }
        if let Some(levels) = &self.risk_level
            && !levels.contains(&ctx.risk_level)
        {
            return Some(Condition::RiskLevel);
        }
        if let Some(ops) = &self.operation_type
            && !ctx.operation_type.is_some_and(|op| ops.contains(&op))
        {
            return Some(Condition::OperationType);
        }
        if !any_pattern(&self.agent, &ctx.agent) {
            return Some(Condition::Agent);
        }
        if let Some(envs) = &self.environment
            && !envs.contains(&ctx.environment)
        {
            return Some(Condition::Environment);
        }
        if let Some(windows) = &self.during
            && !windows.iter().any(|w| w.holds(ctx.time))
        {
            return Some(Condition::During);
        }
        if let Some(windows) = &self.outside
            && windows.iter().any(|w| w.holds(ctx.time))
        {
            return Some(Condition::Outside);
        }
        None
    }

    fn detail(&self, condition: Condition, ctx: &PolicyContext) -> String {
        let list = |patterns: &Option<Vec<Pattern>>| {
            patterns
                .as_ref()
                .map(|ps| {
                    ps.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        match condition {
            Condition::Principal => format!(
                "principal {} is not one of [{}]",
                ctx.principal,
                list(&self.principal)
            ),
            Condition::Roles => format!(
                "roles [{}] hold none of [{}]",
                ctx.roles.join(", "),
                self.roles.as_deref().unwrap_or_default().join(", ")
            ),
            Condition::Capability => format!(
                "capability {} is not one of [{}]",
                ctx.capability_id,
                list(&self.capability)
            ),
            Condition::RiskLevel => format!(
                "risk {} is not one of [{}]",
                ctx.risk_level,
                self.risk_level
                    .iter()
                    .flatten()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Condition::OperationType => format!(
                "operation {} is not one of [{}]",
                ctx.operation_type.map_or("UNSPECIFIED", |o| o.as_str()),
                self.operation_type
                    .iter()
                    .flatten()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Condition::Agent => format!(
                "agent {:?} is not one of [{}]",
                ctx.agent,
                list(&self.agent)
            ),
            Condition::Environment => format!(
                "environment {:?} is not one of [{}]",
                ctx.environment,
                self.environment.as_deref().unwrap_or_default().join(", ")
            ),
            Condition::During => format!(
                "time {} is inside none of [{}]",
                self.during
                    .iter()
                    .flatten()
                    .next()
                    .map_or_else(String::new, |w| w.local(ctx.time)),
                windows(&self.during)
            ),
            Condition::Outside => {
                let inside = self.outside.iter().flatten().find(|w| w.holds(ctx.time));
                format!(
                    "time {} is inside {}",
                    inside.map_or_else(String::new, |w| w.local(ctx.time)),
                    inside.map_or_else(String::new, Window::describe)
                )
            }
            Condition::Inputs => self
                .inputs
                .iter()
                .flatten()
                .find_map(|condition| condition.failure(&ctx.inputs))
                .unwrap_or_default(),
        }
    }
}

fn windows(windows: &Option<Vec<Window>>) -> String {
    windows
        .iter()
        .flatten()
        .map(Window::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Candidate rules per capability.
#[derive(Debug, Clone, Default)]
struct CapabilityIndex {
    /// For each capability id named exactly by some rule: every rule that can
    /// match it (exact, prefix and unconditional), in file order.
    exact: HashMap<String, Arc<[u32]>>,
    /// Prefix pattern → rules using it.
    prefixes: HashMap<String, Vec<u32>>,
    /// Distinct prefix lengths, ascending, to probe `prefixes` cheaply.
    prefix_lengths: Vec<usize>,
    /// Rules without a capability condition (or with `*`), in file order.
    unconditional: Arc<[u32]>,
}

impl CapabilityIndex {
    fn build(rules: &[Rule]) -> Self {
        let mut exact_rules: HashMap<String, BTreeSet<u32>> = HashMap::new();
        let mut prefixes: HashMap<String, BTreeSet<u32>> = HashMap::new();
        let mut unconditional = BTreeSet::new();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match &rule.capability {
                None => {
                    unconditional.insert(i);
                }
                Some(patterns) => {
                    for pattern in patterns {
                        match pattern {
                            Pattern::Any => {
                                unconditional.insert(i);
                            }
                            Pattern::Prefix(p) => {
                                prefixes.entry(p.clone()).or_default().insert(i);
                            }
                            Pattern::Exact(e) => {
                                exact_rules.entry(e.clone()).or_default().insert(i);
                            }
                        }
                    }
                }
            }
        }
        let mut prefix_lengths: Vec<usize> = prefixes.keys().map(String::len).collect();
        prefix_lengths.sort_unstable();
        prefix_lengths.dedup();
        let mut index = Self {
            exact: HashMap::new(),
            prefixes: prefixes
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            prefix_lengths,
            unconditional: unconditional.iter().copied().collect(),
        };
        let exact = exact_rules
            .into_iter()
            .map(|(id, rules)| {
                let mut all: BTreeSet<u32> = rules;
                all.extend(index.unconditional.iter().copied());
                all.extend(index.prefix_hits(&id));
                (id, all.into_iter().collect::<Arc<[u32]>>())
            })
            .collect();
        index.exact = exact;
        index
    }

    fn prefix_hits<'a>(&'a self, capability: &'a str) -> impl Iterator<Item = u32> + 'a {
        self.prefix_lengths
            .iter()
            .take_while(move |len| **len <= capability.len())
            .filter_map(move |len| capability.get(..*len).and_then(|p| self.prefixes.get(p)))
            .flatten()
            .copied()
    }

    fn candidates<'a>(&'a self, capability: &'a str) -> Cow<'a, [u32]> {
        if let Some(rules) = self.exact.get(capability) {
            return Cow::Borrowed(rules);
        }
        let mut hits = self.prefix_hits(capability).peekable();
        if hits.peek().is_none() {
            return Cow::Borrowed(&self.unconditional);
        }
        let mut all: Vec<u32> = hits.chain(self.unconditional.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        Cow::Owned(all)
    }
}

/// A policy set compiled once and evaluated many times.
#[derive(Debug, Clone)]
pub struct CompiledPolicySet {
    set: PolicySet,
    revision: Arc<str>,
    index: CapabilityIndex,
    default_reason: Arc<str>,
    default_rule_id: Arc<str>,
}

impl CompiledPolicySet {
    pub fn compile(set: PolicySet) -> Self {
        let canonical =
            airt_kit::json::canonical_json(&serde_json::to_value(&set).unwrap_or(Value::Null));
        let revision: Arc<str> = hex::encode(Sha256::digest(canonical.as_bytes())).into();
        let index = CapabilityIndex::build(&set.rules);
        let default_reason = format!("no rule matched; default {}", set.default).into();
        Self {
            set,
            revision,
            index,
            default_reason,
            default_rule_id: DEFAULT_RULE_ID.into(),
        }
    }

    /// The set that denies everything (before any policy set is put).
    pub fn deny_all() -> Self {
        Self::compile(PolicySet {
            description: "no policy set has been put: everything is denied".into(),
            default: Decision::Deny,
            escalate_high_risk: true,
            rules: Vec::new(),
        })
    }

    /// Content hash of the canonical compiled set.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    pub fn rules(&self) -> &[Rule] {
        &self.set.rules
    }

    /// Decides `ctx`. With `explain`, every rule up to the match says why
    /// it did or did not match.
    pub fn evaluate(&self, ctx: &PolicyContext, explain: bool) -> DecisionRecord {
        if explain {
            return self.evaluate_explained(ctx);
        }
        let candidates = self.index.candidates(&ctx.capability_id);
        let matched = candidates
            .iter()
            .map(|&i| &self.set.rules[i as usize])
            .find(|rule| rule.first_failure(ctx).is_none());
        self.decide(ctx, matched, Vec::new())
    }

    /// Decides `ctx` for every possible input at once (`ctx.inputs` is
    /// ignored): DENY only when every input is denied. Rules whose other
    /// conditions match are walked in file order: one without input
    /// conditions decides for all inputs; one with input conditions and a
    /// DENY decides only some inputs, so the walk goes on; one with input
    /// conditions and another decision is what those inputs get
    /// (`depends_on_inputs`). Never explained, never logged: it lists what
    /// may be called, it decides no action.
    pub fn evaluate_any_inputs(&self, ctx: &PolicyContext) -> DecisionRecord {
        let candidates = self.index.candidates(&ctx.capability_id);
        for rule in candidates.iter().map(|&i| &self.set.rules[i as usize]) {
            let conditional = rule.inputs.as_ref().is_some_and(|c| !c.is_empty());
            let failure = if conditional {
                rule.first_failure_before_inputs(ctx)
            } else {
                rule.first_failure(ctx)
            };
            if failure.is_some() || (conditional && rule.decision == Decision::Deny) {
                continue;
            }
            let mut record = self.decide(ctx, Some(rule), Vec::new());
            record.depends_on_inputs = conditional;
            // A listing is not an action: no budget is drawn on or shown.
            record.budget = None;
            return record;
        }
        self.decide(ctx, None, Vec::new())
    }

    /// The index of the first matching rule by a plain linear scan (the
    /// reference the index is tested against).
    pub fn first_match_linear(&self, ctx: &PolicyContext) -> Option<usize> {
        self.set
            .rules
            .iter()
            .position(|rule| rule.first_failure(ctx).is_none())
    }

    fn evaluate_explained(&self, ctx: &PolicyContext) -> DecisionRecord {
        let mut explanation = Vec::new();
        let mut matched = None;
        for rule in &self.set.rules {
            match rule.first_failure(ctx) {
                None => {
                    explanation.push(RuleExplanation {
                        rule_id: rule.id.clone(),
                        matched: true,
                        failed_condition: "",
                        detail: format!("decision {}", rule.decision),
                    });
                    matched = Some(rule);
                    break;
                }
                Some(condition) => explanation.push(RuleExplanation {
                    rule_id: rule.id.clone(),
                    matched: false,
                    failed_condition: condition.name(),
                    detail: rule.detail(condition, ctx),
                }),
            }
        }
        self.decide(ctx, matched, explanation)
    }

    fn decide(
        &self,
        ctx: &PolicyContext,
        matched: Option<&Rule>,
        explanation: Vec<RuleExplanation>,
    ) -> DecisionRecord {
        let (decision, rule_id, reason) = match matched {
            Some(rule) => (rule.decision, rule.id.clone(), rule.reason.clone()),
            None => (
                self.set.default,
                self.default_rule_id.clone(),
                self.default_reason.clone(),
            ),
        };
        // Every ALLOW, matched or default, is escalated for risky actions;
        // DENY is never softened.
        let high_risk = self.set.escalate_high_risk
            && matches!(ctx.risk_level, RiskLevel::High | RiskLevel::Critical);
        let escalated = decision == Decision::Allow && (high_risk || ctx.requires_approval);
        DecisionRecord {
            decision: if escalated {
                Decision::RequireApproval
            } else {
                decision
            },
            rule_id,
            reason,
            escalated,
            policy_revision: self.revision.clone(),
            explanation,
            depends_on_inputs: false,
            budget: matched.and_then(|rule| {
                rule.budget
                    .as_ref()
                    .map(|b| BudgetUse::new(rule.id.clone(), b, ctx))
            }),
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
