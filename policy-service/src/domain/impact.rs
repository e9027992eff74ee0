//! Impact: what a candidate set would have decided on logged traffic.
//!
//! Each `policy.decision` entry of the decision log is turned back into
//! the context it decided (at its own time) and decided again by the
//! candidate; decisions that would change are grouped by (old → new
//! decision, old → new rule). A change that newly ALLOWs an action at HIGH
//! or CRITICAL risk is flagged. Shadow entries are not replayed (they never
//! decided anything), and neither are budgets (the replay decides each
//! entry as if its budget were unspent).

use std::collections::BTreeMap;

use airt_kit::vocabulary::{OperationType, RiskLevel};
use serde_json::Value;

use super::context::{Decision, PolicyContext};
use super::engine::CompiledPolicySet;

/// Examples kept per group.
pub const EXAMPLES_PER_GROUP: usize = 5;

/// One entry of the decision log, as it decided.
#[derive(Debug, Clone)]
pub struct LoggedDecision {
    pub sequence: i64,
    pub context: PolicyContext,
    pub decision: Decision,
    pub rule_id: String,
}

fn text(details: &Value, key: &str) -> String {
    details[key].as_str().unwrap_or_default().to_owned()
}

impl LoggedDecision {
    /// The entry's context and decision; `None` for shadow entries and for
    /// entries that do not hold a decision.
    pub fn from_entry(
        sequence: i64,
        occurred_at_us: i64,
        capability: &str,
        details: &Value,
    ) -> Option<Self> {
        if details["shadow"].as_bool() == Some(true) {
            return None;
        }
        let decision = Decision::parse(details["decision"].as_str()?)?;
        let risk_level = RiskLevel::parse(details["risk_level"].as_str()?)?;
        let operation_type = details["operation_type"]
            .as_str()
            .and_then(|op| OperationType::ALL.into_iter().find(|o| o.as_str() == op));
        let roles = details["roles"]
            .as_array()
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            sequence,
            context: PolicyContext {
                principal: text(details, "principal"),
                roles,
                agent: text(details, "agent"),
                workflow_id: text(details, "workflow_id"),
                step_name: text(details, "step_name"),
                capability_id: capability.to_owned(),
                risk_level,
                requires_approval: details["requires_approval"].as_bool().unwrap_or(false),
                operation_type,
                inputs: details["inputs"].as_object().cloned().unwrap_or_default(),
                environment: text(details, "environment"),
                time: jiff::Timestamp::from_microsecond(occurred_at_us).ok()?,
            },
            decision,
            rule_id: text(details, "rule_id"),
        })
    }
}

/// Decisions that change the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpactGroup {
    pub old_decision: Decision,
    pub new_decision: Decision,
    pub old_rule_id: String,
    pub new_rule_id: String,
    pub count: u64,
    /// Newly ALLOWed at HIGH or CRITICAL risk.
    pub flagged: bool,
    /// The first few entries, by sequence.
    pub examples: Vec<LoggedExample>,
}

/// An entry shown as an example of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedExample {
    pub sequence: i64,
    pub time: jiff::Timestamp,
    pub principal: String,
    pub capability_id: String,
    pub risk_level: RiskLevel,
    pub workflow_id: String,
    pub step_name: String,
}

/// What the candidate would change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpactReport {
    pub replayed: u64,
    pub changed: u64,
    pub flagged: u64,
    /// Same decision, another rule.
    pub rule_only_changes: u64,
    /// Flagged groups first, then by count.
    pub groups: Vec<ImpactGroup>,
}

/// Replays decisions against `candidate`, accumulating into a report.
#[derive(Debug, Default)]
pub struct Replay {
    report: ImpactReport,
    groups: BTreeMap<(Decision, Decision, String, String), ImpactGroup>,
}

fn decision_rank(decision: Decision) -> u8 {
    match decision {
        Decision::Allow => 0,
        Decision::RequireApproval => 1,
        Decision::Deny => 2,
    }
}

impl PartialOrd for Decision {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decision {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        decision_rank(*self).cmp(&decision_rank(*other))
    }
}

impl Replay {
    pub fn add(&mut self, candidate: &CompiledPolicySet, logged: &LoggedDecision) {
        self.report.replayed += 1;
        let mut record = candidate.evaluate(&logged.context, false);
        record.budget = None;
        if record.decision == logged.decision {
            if *record.rule_id != *logged.rule_id {
                self.report.rule_only_changes += 1;
            }
            return;
        }
        self.report.changed += 1;
        let ctx = &logged.context;
        let flagged = record.decision == Decision::Allow
            && matches!(ctx.risk_level, RiskLevel::High | RiskLevel::Critical);
        if flagged {
            self.report.flagged += 1;
        }
        let key = (
            logged.decision,
            record.decision,
            logged.rule_id.clone(),
            record.rule_id.to_string(),
        );
        let group = self.groups.entry(key).or_insert_with(|| ImpactGroup {
            old_decision: logged.decision,
            new_decision: record.decision,
            old_rule_id: logged.rule_id.clone(),
            new_rule_id: record.rule_id.to_string(),
            count: 0,
            flagged: false,
            examples: Vec::new(),
        });
        group.count += 1;
        group.flagged |= flagged;
        if group.examples.len() < EXAMPLES_PER_GROUP {
            group.examples.push(LoggedExample {
                sequence: logged.sequence,
                time: ctx.time,
                principal: ctx.principal.clone(),
                capability_id: ctx.capability_id.clone(),
                risk_level: ctx.risk_level,
                workflow_id: ctx.workflow_id.clone(),
                step_name: ctx.step_name.clone(),
            });
        }
    }

    pub fn finish(self) -> ImpactReport {
        let mut report = self.report;
        report.groups = self.groups.into_values().collect();
        report
            .groups
            .sort_by(|a, b| b.flagged.cmp(&a.flagged).then(b.count.cmp(&a.count)));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_policy_set;
    use serde_json::json;

    fn entry(
        sequence: i64,
        risk: &str,
        decision: &str,
        rule: &str,
        inputs: Value,
    ) -> LoggedDecision {
        LoggedDecision::from_entry(
            sequence,
            1_767_000_000_000_000,
            "io.fs.delete",
            &json!({
                "principal": "agent:ops", "roles": ["oncall"], "agent": "cleaner",
                "workflow_id": format!("wf-{sequence}"), "step_name": "rm",
                "risk_level": risk, "requires_approval": false, "operation_type": "DELETE",
                "environment": "prod", "inputs": inputs,
                "decision": decision, "rule_id": rule,
            }),
        )
        .expect("a decision entry")
    }

    #[test]
    fn changes_are_grouped_and_newly_allowed_high_risk_is_flagged() {
        let candidate = CompiledPolicySet::compile(
            parse_policy_set(
                "escalate_high_risk: false\nrules:\n  - {id: tmp-deletes, roles: [oncall], when: {inputs: {path: {glob: 'tmp/**'}}}, decision: ALLOW}\n",
            )
            .expect("valid"),
        );
        let mut replay = Replay::default();
        for (i, path) in ["tmp/a", "tmp/b", "prod/db"].iter().enumerate() {
            replay.add(
                &candidate,
                &entry(
                    i as i64 + 1,
                    "HIGH",
                    "DENY",
                    "no-deletes",
                    json!({"path": path}),
                ),
            );
        }
        replay.add(
            &candidate,
            &entry(
                9,
                "LOW",
                "REQUIRE_APPROVAL",
                "ask",
                json!({"path": "tmp/c"}),
            ),
        );
        replay.add(
            &candidate,
            &entry(10, "LOW", "DENY", "no-deletes", json!({"path": "prod/x"})),
        );
        let report = replay.finish();
        assert_eq!((report.replayed, report.changed, report.flagged), (5, 3, 2));
        assert_eq!(
            report.rule_only_changes, 2,
            "DENY by no-deletes is now DENY by default"
        );
        let first = &report.groups[0];
        assert_eq!(
            (
                first.old_decision,
                first.new_decision,
                first.old_rule_id.as_str(),
                first.new_rule_id.as_str(),
                first.count,
                first.flagged
            ),
            (
                Decision::Deny,
                Decision::Allow,
                "no-deletes",
                "tmp-deletes",
                2,
                true
            )
        );
        assert_eq!(
            first
                .examples
                .iter()
                .map(|e| e.sequence)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(!report.groups[1].flagged, "LOW risk is not flagged");
    }

    #[test]
    fn shadow_and_malformed_entries_are_not_replayed() {
        assert!(
            LoggedDecision::from_entry(
                1,
                0,
                "x.y",
                &json!({"shadow": true, "decision": "ALLOW", "risk_level": "LOW"})
            )
            .is_none()
        );
        assert!(
            LoggedDecision::from_entry(
                1,
                0,
                "x.y",
                &json!({"decision": "MAYBE", "risk_level": "LOW"})
            )
            .is_none()
        );
        let logged = LoggedDecision::from_entry(
            1,
            0,
            "x.y",
            &json!({"decision": "ALLOW", "risk_level": "LOW"}),
        )
        .expect("minimal entry");
        assert!(logged.context.roles.is_empty() && logged.context.inputs.is_empty());
    }
}
