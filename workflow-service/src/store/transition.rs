//! A change to a workflow: what the engine commits, each with its event
//! and audit entry.

use serde_json::{Value, json};

use super::{ApprovalRow, NewDelivery};
use crate::domain::{ApprovalStatus, CompensationStatus, StepStatus, WorkflowStatus};

/// One durable change to a workflow.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The workflow's status (with the verbatim reason of a failure) and
    /// the webhook deliveries announcing it.
    Workflow {
        status: WorkflowStatus,
        reason: String,
        failed_step: String,
        deliveries: Vec<NewDelivery>,
    },
    /// The registry's answer and the policy decision for a step, with the
    /// exact inputs they were obtained for.
    StepDecided {
        step: String,
        risk_level: String,
        capability_version: String,
        resolved_inputs: Value,
        decision: Value,
    },
    /// A step's status; RUNNING carries the attempt about to be made.
    Step {
        step: String,
        status: StepStatus,
        attempt: Option<i64>,
        error: String,
    },
    /// A step's outputs and undo record, committed with SUCCEEDED.
    StepSucceeded {
        step: String,
        outputs: Value,
        undo: Value,
    },
    /// A compensation to run during rollback (position 1 runs first).
    CompensationPlanned {
        step: String,
        position: i64,
        capability_id: String,
        inputs: Value,
    },
    /// A compensation's progress.
    Compensation {
        step: String,
        status: CompensationStatus,
        attempts: i64,
        error: String,
    },
    /// The step waits for a human: its approval request (replacing a void
    /// one, if any) and the webhook deliveries announcing it, committed with
    /// the step's AWAITING_APPROVAL.
    ApprovalRequested {
        step: String,
        approval: Box<ApprovalRow>,
        deliveries: Vec<NewDelivery>,
    },
    /// A human's decision on a PENDING approval that has not expired.
    ApprovalDecided {
        step: String,
        approval_id: String,
        status: ApprovalStatus,
        decided_by: String,
        comment: String,
        deliveries: Vec<NewDelivery>,
    },
    /// The service closes an approval: EXPIRED at its deadline, VOID when
    /// the action changed or the step no longer waits. Applies only while
    /// the approval is still `from`.
    ApprovalClosed {
        step: String,
        approval_id: String,
        from: ApprovalStatus,
        status: ApprovalStatus,
        reason: String,
        deliveries: Vec<NewDelivery>,
    },
}

impl Transition {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Workflow { .. } => "workflow.status",
            Self::StepDecided { .. } => "step.decided",
            Self::Step { .. } => "step.status",
            Self::StepSucceeded { .. } => "step.succeeded",
            Self::CompensationPlanned { .. } => "compensation.planned",
            Self::Compensation { .. } => "compensation.status",
            Self::ApprovalRequested { .. } => "approval.requested",
            Self::ApprovalDecided { .. } => "approval.decided",
            Self::ApprovalClosed { .. } => "approval.closed",
        }
    }

    pub(super) fn step(&self) -> &str {
        match self {
            Self::Workflow { .. } => "",
            Self::StepDecided { step, .. }
            | Self::Step { step, .. }
            | Self::StepSucceeded { step, .. }
            | Self::CompensationPlanned { step, .. }
            | Self::Compensation { step, .. }
            | Self::ApprovalRequested { step, .. }
            | Self::ApprovalDecided { step, .. }
            | Self::ApprovalClosed { step, .. } => step,
        }
    }

    /// What the event and the audit entry say (outputs are not copied into
    /// the audit log; their presence is).
    pub(super) fn detail(&self) -> Value {
        match self {
            Self::Workflow {
                status,
                reason,
                failed_step,
                ..
            } => json!({"status": status.as_str(), "reason": reason, "failed_step": failed_step}),
            Self::StepDecided {
                risk_level,
                capability_version,
                decision,
                ..
            } => {
                json!({"risk_level": risk_level, "capability_version": capability_version, "decision": decision})
            }
            Self::Step {
                status,
                attempt,
                error,
                ..
            } => json!({"status": status.as_str(), "attempt": attempt, "error": error}),
            Self::StepSucceeded { .. } => json!({"status": StepStatus::Succeeded.as_str()}),
            Self::CompensationPlanned {
                position,
                capability_id,
                ..
            } => json!({"position": position, "capability_id": capability_id}),
            Self::Compensation {
                status,
                attempts,
                error,
                ..
            } => json!({"status": status.as_str(), "attempts": attempts, "error": error}),
            Self::ApprovalRequested { approval, .. } => json!({
                "approval_id": approval.approval_id,
                "action_digest": approval.action_digest,
                "approver_roles": serde_json::from_str::<Value>(&approval.approver_roles).unwrap_or(Value::Null),
                "expires_at_us": approval.expires_at_us,
                "decision": serde_json::from_str::<Value>(&approval.decision).unwrap_or(Value::Null),
            }),
            Self::ApprovalDecided {
                approval_id,
                status,
                decided_by,
                comment,
                ..
            } => {
                json!({"approval_id": approval_id, "status": status.as_str(), "decided_by": decided_by, "comment": comment})
            }
            Self::ApprovalClosed {
                approval_id,
                status,
                reason,
                ..
            } => json!({"approval_id": approval_id, "status": status.as_str(), "reason": reason}),
        }
    }

    pub(super) fn deliveries(&self) -> &[NewDelivery] {
        match self {
            Self::Workflow { deliveries, .. }
            | Self::ApprovalRequested { deliveries, .. }
            | Self::ApprovalDecided { deliveries, .. }
            | Self::ApprovalClosed { deliveries, .. } => deliveries,
            _ => &[],
        }
    }
}
