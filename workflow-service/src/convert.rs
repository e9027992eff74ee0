//! Between the wire (`airt.workflow.v1`) and the domain.

use airt_kit::json::from_proto_struct;
use airt_proto::workflow::v1 as pb;

use crate::domain::spec::{
    ApprovalDraft, CompensationDraft, MetadataDraft, OptionsDraft, RetryDraft, StepDraft,
};
use crate::domain::{StepType, WorkflowDraft};

/// A protobuf duration as the text form the spec uses (`1.5s`).
fn duration_text(d: &prost_types::Duration) -> String {
    let seconds = d.seconds as f64 + f64::from(d.nanos) / 1e9;
    format!("{seconds}s")
}

/// A proto spec as a draft, so both forms pass the same validation.
pub fn draft_from_proto(spec: pb::WorkflowSpec) -> WorkflowDraft {
    let metadata = spec.metadata.unwrap_or_default();
    let options = spec.options.unwrap_or_default();
    WorkflowDraft {
        name: spec.name,
        version: spec.version,
        description: spec.description,
        metadata: MetadataDraft {
            owner: metadata.owner,
            environment: metadata.environment,
            tags: metadata.tags,
        },
        initial_state: spec
            .initial_state
            .as_ref()
            .map(from_proto_struct)
            .unwrap_or_default(),
        options: OptionsDraft {
            auto_rollback: options.auto_rollback,
            preflight: options.preflight,
            max_duration: options.max_duration.as_ref().map(duration_text),
            max_parallel: (options.max_parallel != 0).then_some(i64::from(options.max_parallel)),
        },
        steps: spec
            .steps
            .into_iter()
            .map(|step| StepDraft {
                name: step.name,
                step_type: match pb::StepType::try_from(step.r#type) {
                    Ok(pb::StepType::HumanApproval) => Some(StepType::HumanApproval),
                    _ => Some(StepType::Action),
                },
                agent: step.agent,
                capability: step.capability,
                inputs: step
                    .inputs
                    .as_ref()
                    .map(from_proto_struct)
                    .unwrap_or_default(),
                depends_on: step.depends_on,
                compensation: step.compensation.map(|c| CompensationDraft {
                    capability: c.capability,
                    inputs: c.inputs.as_ref().map(from_proto_struct).unwrap_or_default(),
                }),
                retry: step.retry.map(|r| RetryDraft {
                    max_attempts: Some(i64::from(r.max_attempts)).filter(|n| *n != 0),
                    initial_backoff: r.initial_backoff.as_ref().map(duration_text),
                    multiplier: (r.multiplier != 0.0).then_some(r.multiplier),
                    max_backoff: r.max_backoff.as_ref().map(duration_text),
                }),
                timeout: step.timeout.as_ref().map(duration_text),
                approval: step.approval.map(|a| ApprovalDraft {
                    approver_roles: a.approver_roles,
                    timeout: a.timeout.as_ref().map(duration_text),
                    message: a.message,
                }),
            })
            .collect(),
    }
}

// ---- domain → wire ------------------------------------------------------

fn duration_proto(text: &Option<String>) -> Option<prost_types::Duration> {
    let d = airt_kit::config::parse_duration(text.as_deref()?).ok()?;
    Some(prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

/// The submitted spec as the proto message.
pub fn draft_to_proto(draft: &WorkflowDraft) -> pb::WorkflowSpec {
    pb::WorkflowSpec {
        name: draft.name.clone(),
        version: draft.version.clone(),
        description: draft.description.clone(),
        metadata: Some(pb::WorkflowMetadata {
            owner: draft.metadata.owner.clone(),
            environment: draft.metadata.environment.clone(),
            tags: draft.metadata.tags.clone(),
        }),
        initial_state: Some(masked(&draft.initial_state)),
        options: Some(pb::WorkflowOptions {
            auto_rollback: draft.options.auto_rollback,
            preflight: draft.options.preflight,
            max_duration: duration_proto(&draft.options.max_duration),
            max_parallel: draft.options.max_parallel.unwrap_or(0) as i32,
        }),
        steps: draft
            .steps
            .iter()
            .map(|step| pb::StepSpec {
                name: step.name.clone(),
                r#type: match step.step_type {
                    Some(StepType::HumanApproval) => pb::StepType::HumanApproval,
                    _ => pb::StepType::Action,
                } as i32,
                agent: step.agent.clone(),
                capability: step.capability.clone(),
                inputs: Some(masked(&step.inputs)),
                depends_on: step.depends_on.clone(),
                compensation: step.compensation.as_ref().map(|c| pb::StepCompensation {
                    capability: c.capability.clone(),
                    inputs: Some(masked(&c.inputs)),
                }),
                retry: step.retry.as_ref().map(|r| pb::RetryPolicy {
                    max_attempts: r.max_attempts.unwrap_or(0) as i32,
                    initial_backoff: duration_proto(&r.initial_backoff),
                    multiplier: r.multiplier.unwrap_or(0.0),
                    max_backoff: duration_proto(&r.max_backoff),
                }),
                timeout: duration_proto(&step.timeout),
                approval: step.approval.as_ref().map(|a| pb::ApprovalConfig {
                    approver_roles: a.approver_roles.clone(),
                    timeout: duration_proto(&a.timeout),
                    message: a.message.clone(),
                }),
            })
            .collect(),
    }
}

fn timestamp(micros: i64) -> Option<prost_types::Timestamp> {
    (micros > 0).then(|| airt_kit::clock::timestamp_from_micros(micros))
}

/// Inputs, state and outputs as every read path serves them: secret-named
/// values (`password`, `api_key`, `token`, ...) replaced by `***`
/// (`airt_kit::mask`, the same rule as webhooks and the decision log).
fn masked(map: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    airt_kit::json::to_proto_struct(&airt_kit::mask::mask_map(map))
}

/// A stored decision record (JSON) as the proto message.
pub fn decision_from_json(
    value: &serde_json::Value,
) -> Option<airt_proto::policy::v1::DecisionRecord> {
    use airt_proto::policy::v1 as policy;
    let decision = value.get("decision")?.as_str()?;
    Some(policy::DecisionRecord {
        decision: policy::Decision::from_str_name(&format!("DECISION_{decision}"))
            .map_or(0, |d| d as i32),
        rule_id: value["rule_id"].as_str().unwrap_or_default().to_owned(),
        reason: value["reason"].as_str().unwrap_or_default().to_owned(),
        escalated: value["escalated"].as_bool().unwrap_or(false),
        policy_revision: value["policy_revision"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        explanation: Vec::new(),
        depends_on_inputs: false,
        budget: None,
    })
}

/// A stored workflow with its steps and compensations as the proto message.
pub fn workflow_to_proto(
    row: &crate::store::WorkflowRow,
    steps: &[crate::store::StepRow],
    compensations: &[crate::store::CompensationRow],
) -> pb::Workflow {
    use airt_kit::json::to_proto_value;
    let json = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).unwrap_or(serde_json::Value::Null)
    };
    let submitter = airt_kit::Principal::parse(
        &row.submitter,
        serde_json::from_str(&row.submitter_roles).unwrap_or_default(),
    )
    .ok()
    .map(|p| p.to_proto());
    pb::Workflow {
        workflow_id: row.workflow_id.clone(),
        spec: row.draft().ok().as_ref().map(draft_to_proto),
        status: pb::WorkflowStatus::from_str_name(&format!("WORKFLOW_STATUS_{}", row.status))
            .map_or(0, |s| s as i32),
        submitter,
        steps: steps
            .iter()
            .map(|step| pb::Step {
                name: step.step_name.clone(),
                status: pb::StepStatus::from_str_name(&format!("STEP_STATUS_{}", step.status))
                    .map_or(0, |s| s as i32),
                attempt: step.attempt as i32,
                idempotency_key: format!("{}/{}", row.workflow_id, step.step_name),
                capability_version: step.capability_version.clone(),
                risk_level: airt_kit::vocabulary::RiskLevel::parse(&step.risk_level)
                    .map_or(0, |r| r.to_proto() as i32),
                resolved_inputs: json(&step.resolved_inputs).as_object().map(masked),
                outputs: Some(to_proto_value(&airt_kit::mask::mask_secrets(&json(
                    &step.outputs,
                )))),
                decision: decision_from_json(&json(&step.decision)),
                approval_id: step.approval_id.clone(),
                error: step.error.clone(),
                start_time: timestamp(step.started_at_us),
                end_time: timestamp(step.ended_at_us),
                warnings: json(&step.decision)["warnings"]
                    .as_array()
                    .map(|w| {
                        w.iter()
                            .filter_map(|w| w.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        compensations: compensations
            .iter()
            .map(|c| pb::CompensationRecord {
                step_name: c.step_name.clone(),
                capability_id: c.capability_id.clone(),
                inputs: json(&c.inputs).as_object().map(masked),
                status: pb::CompensationStatus::from_str_name(&format!(
                    "COMPENSATION_STATUS_{}",
                    c.status
                ))
                .map_or(0, |s| s as i32),
                attempts: c.attempts as i32,
                error: c.error.clone(),
                order: c.position as i32,
                start_time: timestamp(c.started_at_us),
                end_time: timestamp(c.ended_at_us),
            })
            .collect(),
        failure_reason: row.failure_reason.clone(),
        failed_step: row.failed_step.clone(),
        create_time: timestamp(row.created_at_us),
        update_time: timestamp(row.updated_at_us),
        end_time: timestamp(row.ended_at_us),
        trace_id: airt_kit::trace::trace_id_of(&row.trace_parent)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// A stored approval with its webhook deliveries as the proto message.
pub fn approval_to_proto(
    row: &crate::store::ApprovalRow,
    deliveries: &[crate::store::DeliveryRow],
) -> pb::Approval {
    let json = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).unwrap_or(serde_json::Value::Null)
    };
    let principal = |text: &str| {
        airt_kit::Principal::parse(text, Vec::new())
            .ok()
            .map(|p| p.to_proto())
    };
    pb::Approval {
        approval_id: row.approval_id.clone(),
        workflow_id: row.workflow_id.clone(),
        workflow_name: row.workflow_name.clone(),
        step_name: row.step_name.clone(),
        capability_id: row.capability_id.clone(),
        capability_version: row.capability_version.clone(),
        risk_level: airt_kit::vocabulary::RiskLevel::parse(&row.risk_level)
            .map_or(0, |r| r.to_proto() as i32),
        resolved_inputs: json(&row.resolved_inputs).as_object().map(masked),
        decision: decision_from_json(&json(&row.decision)),
        action_digest: row.action_digest.clone(),
        approver_roles: row.approver_roles(),
        message: row.message.clone(),
        status: pb::ApprovalStatus::from_str_name(&format!("APPROVAL_STATUS_{}", row.status))
            .map_or(0, |s| s as i32),
        requested_for: principal(&row.requested_for),
        decided_by: principal(&row.decided_by),
        comment: row.comment.clone(),
        status_reason: row.status_reason.clone(),
        request_time: timestamp(row.requested_at_us),
        expire_time: timestamp(row.expires_at_us),
        decide_time: timestamp(row.decided_at_us),
        deliveries: deliveries
            .iter()
            .map(|d| pb::WebhookDelivery {
                url: crate::webhooks::display_url(&d.url),
                event: d.event.clone(),
                status: pb::DeliveryStatus::from_str_name(&format!("DELIVERY_STATUS_{}", d.status))
                    .map_or(0, |s| s as i32),
                attempts: d.attempts as i32,
                last_error: d.last_error.clone(),
                last_attempt_time: timestamp(d.last_attempt_at_us),
                next_attempt_time: (d.status == "PENDING")
                    .then(|| timestamp(d.next_attempt_at_us))
                    .flatten(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate_workflow;

    #[test]
    fn a_proto_spec_validates_like_its_yaml_form() {
        let spec = pb::WorkflowSpec {
            name: "w".into(),
            steps: vec![
                pb::StepSpec {
                    name: "a".into(),
                    capability: "io.fs.read_file".into(),
                    timeout: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 500_000_000,
                    }),
                    retry: Some(pb::RetryPolicy {
                        max_attempts: 3,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                pb::StepSpec {
                    name: "ok".into(),
                    r#type: pb::StepType::HumanApproval as i32,
                    depends_on: vec!["a".into()],
                    approval: Some(pb::ApprovalConfig::default()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let validated = validate_workflow(&draft_from_proto(spec)).expect("valid");
        assert_eq!(
            validated.steps[0].timeout,
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(validated.steps[0].retry.max_attempts, 3);
        assert_eq!(
            validated.steps[1]
                .approval
                .as_ref()
                .map(|a| a.approver_roles.clone()),
            Some(vec!["approver".to_owned()])
        );
    }
}
