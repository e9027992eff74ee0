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

use super::context::{Decision, DecisionRecord, PolicyContext, RuleExplanation};
use super::parse::{PolicySet, Rule};
use super::pattern::Pattern;

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
            Self::Inputs => "when.inputs",
        }
    }
}

fn any_pattern(patterns: &Option<Vec<Pattern>>, value: &str) -> bool {
    patterns
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p.matches(value)))
}

fn input_at<'a>(inputs: &'a serde_json::Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = inputs.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

impl Rule {
    /// The first condition that fails for `ctx`, or `None` when the rule matches.
    pub fn first_failure(&self, ctx: &PolicyContext) -> Option<Condition> {
        if let Some(failure) = self.first_failure_before_inputs(ctx) {
            return Some(failure);
        }
        if let Some(inputs) = &self.inputs
            && !inputs
                .iter()
                .all(|(path, expected)| input_at(&ctx.inputs, path) == Some(expected))
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
            Condition::Inputs => {
                let failing = self
                    .inputs
                    .iter()
                    .flatten()
                    .find(|(path, expected)| input_at(&ctx.inputs, path) != Some(expected));
                match failing {
                    Some((path, expected)) => format!(
                        "input {} is {} but must be {expected}",
                        path.join("."),
                        input_at(&ctx.inputs, path)
                            .map_or("absent".to_owned(), ToString::to_string)
                    ),
                    None => String::new(),
                }
            }
        }
    }
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
        }
    }
}

#[cfg(test)]
mod tests {
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
                Box::new(|c: &mut PolicyContext| c.roles.clear())
                    as Box<dyn Fn(&mut PolicyContext)>,
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
}
