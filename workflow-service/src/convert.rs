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
