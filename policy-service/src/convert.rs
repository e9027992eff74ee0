//! Between the wire (`airt.policy.v1`) and the domain.

use airt_kit::status::FieldViolation;
use airt_kit::vocabulary::{OperationType, RiskLevel};
use airt_proto::policy::v1 as pb;

use crate::domain::condition::lint::ParamType;
use crate::domain::testing::{KnownCapability, LintFinding, LintKind};
use crate::domain::{Decision, DecisionRecord, PolicyContext};
use crate::store::{ActiveState, StoredPolicySet};

pub fn decision_to_proto(decision: Decision) -> pb::Decision {
    match decision {
        Decision::Allow => pb::Decision::Allow,
        Decision::Deny => pb::Decision::Deny,
        Decision::RequireApproval => pb::Decision::RequireApproval,
    }
}

/// Validates a wire context. `field` prefixes violation paths
/// (`context` or `contexts[3]`).
/// Longest identifier-like text a policy context may carry.
const MAX_CONTEXT_TEXT: usize = 256;

pub fn context_from_proto(
    field: &str,
    ctx: pb::PolicyContext,
) -> Result<PolicyContext, Vec<FieldViolation>> {
    let mut problems = Vec::new();
    let principal = match &ctx.principal {
        Some(p) if !p.r#type.is_empty() && !p.id.is_empty() => Some(p.clone()),
        _ => {
            problems.push(FieldViolation::new(
                format!("{field}.principal"),
                "is required (type and id)",
            ));
            None
        }
    };
    if ctx.capability_id.is_empty() {
        problems.push(FieldViolation::new(
            format!("{field}.capability_id"),
            "is required",
        ));
    }
    // Every text is bounded, and the inputs (kept, masked, in the decision
    // log) no larger than a step may store.
    for (name, value) in [
        ("capability_id", &ctx.capability_id),
        ("agent", &ctx.agent),
        ("workflow_id", &ctx.workflow_id),
        ("step_name", &ctx.step_name),
        ("environment", &ctx.environment),
    ] {
        if value.len() > MAX_CONTEXT_TEXT {
            problems.push(FieldViolation::new(
                format!("{field}.{name}"),
                format!("is longer than {MAX_CONTEXT_TEXT} bytes"),
            ));
        }
    }
    if ctx.principal.as_ref().is_some_and(|p| {
        p.r#type.len() + p.id.len() > airt_kit::principal::MAX_PRINCIPAL_LEN
            || p.roles.len() > 256
            || p.roles.iter().any(|r| r.len() > MAX_CONTEXT_TEXT)
    }) {
        problems.push(FieldViolation::new(
            format!("{field}.principal"),
            "is too long (type:id at most 256 bytes, at most 256 roles of at most 256 bytes)",
        ));
    }
    if ctx
        .inputs
        .as_ref()
        .is_some_and(|i| prost::Message::encoded_len(i) > airt_kit::limits::MAX_STORED_BYTES)
    {
        problems.push(FieldViolation::new(
            format!("{field}.inputs"),
            format!(
                "are larger than {} bytes",
                airt_kit::limits::MAX_STORED_BYTES
            ),
        ));
    }
    let risk_level = RiskLevel::from_proto(ctx.risk_level);
    if risk_level.is_none() {
        problems.push(FieldViolation::new(
            format!("{field}.risk_level"),
            "is required: the registry's risk level (HIGH when the capability is unknown)",
        ));
    }
    let operation_type = match ctx.operation_type {
        0 => None,
        n => {
            let op = OperationType::from_proto(n);
            if op.is_none() {
                problems.push(FieldViolation::new(
                    format!("{field}.operation_type"),
                    "unknown operation type",
                ));
            }
            op
        }
    };
    match (principal, risk_level) {
        (Some(principal), Some(risk_level)) if problems.is_empty() => Ok(PolicyContext {
            principal: format!("{}:{}", principal.r#type, principal.id),
            roles: principal.roles,
            agent: ctx.agent,
            workflow_id: ctx.workflow_id,
            step_name: ctx.step_name,
            capability_id: ctx.capability_id,
            risk_level,
            requires_approval: ctx.requires_approval,
            operation_type,
            inputs: ctx
                .inputs
                .as_ref()
                .map(airt_kit::json::from_proto_struct)
                .unwrap_or_default(),
            environment: ctx.environment,
            // Decisions are made at the service's time, never the caller's.
            time: jiff::Timestamp::now(),
        }),
        _ => Err(problems),
    }
}

pub fn record_to_proto(record: &DecisionRecord) -> pb::DecisionRecord {
    pb::DecisionRecord {
        decision: decision_to_proto(record.decision) as i32,
        rule_id: record.rule_id.to_string(),
        reason: record.reason.to_string(),
        escalated: record.escalated,
        policy_revision: record.policy_revision.to_string(),
        explanation: record
            .explanation
            .iter()
            .map(|e| pb::RuleExplanation {
                rule_id: e.rule_id.to_string(),
                matched: e.matched,
                failed_condition: e.failed_condition.to_owned(),
                detail: e.detail.clone(),
            })
            .collect(),
        depends_on_inputs: record.depends_on_inputs,
        budget: record.budget.as_ref().map(|b| pb::BudgetUsage {
            rule_id: b.rule_id.to_string(),
            scope: b.scope.clone(),
            max: i64::from(b.max),
            per_seconds: i64::try_from(b.per_secs).unwrap_or(i64::MAX),
            used: i64::from(b.used),
            remaining: i64::from(b.remaining()),
            window_end: Some(prost_types::Timestamp {
                seconds: b.window_end,
                nanos: 0,
            }),
            exceeded: b.exceeded,
            counted: b.counted,
        }),
    }
}

pub fn stored_to_proto(stored: &StoredPolicySet, state: &ActiveState) -> pb::PolicySet {
    pb::PolicySet {
        revision: stored.revision.clone(),
        source_yaml: stored.source_yaml.clone(),
        description: stored.description.clone(),
        active: stored.revision == state.active_revision,
        shadow: stored.revision == state.shadow_revision,
        default_decision: Decision::parse(&stored.default_decision)
            .map_or(pb::Decision::Unspecified, decision_to_proto) as i32,
        escalate_high_risk: stored.escalate_high_risk != 0,
        rule_count: i32::try_from(stored.rule_count).unwrap_or(i32::MAX),
        created_by: airt_kit::Principal::parse(&stored.created_by, Vec::new())
            .ok()
            .map(|p| p.to_proto()),
        create_time: Some(airt_kit::clock::timestamp_from_micros(stored.created_at_us)),
        activate_time: (stored.last_activated_at_us > 0)
            .then(|| airt_kit::clock::timestamp_from_micros(stored.last_activated_at_us)),
    }
}

pub fn lint_to_proto(finding: &LintFinding) -> pb::LintFinding {
    pb::LintFinding {
        kind: match finding.kind {
            LintKind::ShadowedRule => pb::LintKind::ShadowedRule,
            LintKind::UnmatchedPattern => pb::LintKind::UnmatchedPattern,
            LintKind::ImpossibleCondition => pb::LintKind::ImpossibleCondition,
            LintKind::ParameterMismatch => pb::LintKind::ParameterMismatch,
        } as i32,
        rule_id: finding.rule_id.clone(),
        message: finding.message.clone(),
    }
}

/// Capabilities named by a policy test request, bounded: at most `max`
/// capabilities, ids of at most 256 bytes, at most 256 parameters each.
pub fn known_capabilities(
    ids: Vec<String>,
    with_parameters: Vec<pb::KnownCapability>,
    max: usize,
) -> Result<Vec<KnownCapability>, Vec<FieldViolation>> {
    if ids.len() + with_parameters.len() > max || ids.iter().any(|id| id.len() > 256) {
        return Err(vec![FieldViolation::new(
            "known_capability_ids",
            format!("at most {max} ids of at most 256 bytes"),
        )]);
    }
    let mut problems = Vec::new();
    let mut known: Vec<KnownCapability> = ids.into_iter().map(KnownCapability::id).collect();
    for (i, capability) in with_parameters.into_iter().enumerate() {
        let field = format!("known_capabilities[{i}]");
        if capability.capability_id.is_empty()
            || capability.capability_id.len() > 256
            || capability.parameter_types.len() > 256
        {
            problems.push(FieldViolation::new(
                field,
                "needs a capability_id of at most 256 bytes and at most 256 parameters",
            ));
            continue;
        }
        let mut parameters = std::collections::HashMap::new();
        for (name, kind) in capability.parameter_types {
            match ParamType::parse(&kind) {
                Some(kind) if name.len() <= 256 => {
                    parameters.insert(name, kind);
                }
                _ => problems.push(FieldViolation::new(
                    format!("{field}.parameter_types"),
                    format!("{kind:?}: expected STRING, NUMBER, INTEGER, BOOLEAN, OBJECT or ARRAY"),
                )),
            }
        }
        known.retain(|k| k.id != capability.capability_id);
        known.push(KnownCapability {
            id: capability.capability_id,
            parameters: Some(parameters),
        });
    }
    if problems.is_empty() {
        Ok(known)
    } else {
        Err(problems)
    }
}

/// A replay of the decision log as the wire report.
pub fn impact_to_proto(
    report: &crate::domain::impact::ImpactReport,
    truncated: bool,
    since_us: i64,
) -> pb::ImpactReport {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::ImpactReport {
        replayed: count(report.replayed),
        changed: count(report.changed),
        flagged: count(report.flagged),
        rule_only_changes: count(report.rule_only_changes),
        groups: report
            .groups
            .iter()
            .map(|g| pb::ImpactGroup {
                old_decision: decision_to_proto(g.old_decision) as i32,
                new_decision: decision_to_proto(g.new_decision) as i32,
                old_rule_id: g.old_rule_id.clone(),
                new_rule_id: g.new_rule_id.clone(),
                count: count(g.count),
                flagged: g.flagged,
                examples: g
                    .examples
                    .iter()
                    .map(|e| pb::ImpactExample {
                        sequence: e.sequence,
                        decide_time: Some(airt_kit::clock::timestamp_from_micros(
                            e.time.as_microsecond(),
                        )),
                        principal: e.principal.clone(),
                        capability_id: e.capability_id.clone(),
                        risk_level: e.risk_level.to_proto() as i32,
                        workflow_id: e.workflow_id.clone(),
                        step_name: e.step_name.clone(),
                    })
                    .collect(),
            })
            .collect(),
        truncated,
        since: Some(airt_kit::clock::timestamp_from_micros(since_us)),
    }
}
