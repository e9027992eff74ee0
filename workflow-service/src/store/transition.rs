//! A change to a workflow: what the engine commits, each with its event
//! and audit entry, and the statements (`write_transition!`) that write
//! its rows inside the store's transaction.

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

/// A paused or finished workflow gives up its lease in the same statement:
/// nothing drives it until a decision (any instance may then claim it).
pub(super) const SET_WORKFLOW_STATUS: &str = "UPDATE workflows SET status = $2, failure_reason = $3, failed_step = $4, \
     ended_at_us = CASE WHEN $5 THEN $6 ELSE ended_at_us END, \
     lease_owner = CASE WHEN $7 THEN '' ELSE lease_owner END, \
     lease_expires_at_us = CASE WHEN $7 THEN 0 ELSE lease_expires_at_us END WHERE workflow_id = $1";
pub(super) const SET_STEP_DECIDED: &str = "UPDATE workflow_steps SET risk_level = $3, capability_version = $4, resolved_inputs = $5, decision = $6 \
     WHERE workflow_id = $1 AND step_name = $2";
pub(super) const SET_STEP_STATUS: &str = "UPDATE workflow_steps SET status = $3, attempt = COALESCE($4, attempt), error = $5, \
     started_at_us = CASE WHEN $6 AND started_at_us = 0 THEN $8 ELSE started_at_us END, \
     ended_at_us = CASE WHEN $7 THEN $8 ELSE ended_at_us END \
     WHERE workflow_id = $1 AND step_name = $2";
pub(super) const SET_STEP_AWAITING: &str = "UPDATE workflow_steps SET status = 'AWAITING_APPROVAL', approval_id = $3, error = '' \
     WHERE workflow_id = $1 AND step_name = $2";
/// SUCCEEDED with the step's completion number: one more than the
/// workflow's highest so far (the workflow row, locked first by the
/// transaction, keeps two completions of one workflow from racing).
pub(super) const SET_STEP_SUCCEEDED: &str = "UPDATE workflow_steps SET status = 'SUCCEEDED', outputs = $3, undo = $4, error = '', \
     completed_seq = (SELECT COALESCE(MAX(completed_seq), 0) + 1 FROM workflow_steps WHERE workflow_id = $1), \
     ended_at_us = $5 WHERE workflow_id = $1 AND step_name = $2";
pub(super) const INSERT_COMPENSATION: &str = "INSERT INTO workflow_compensations (workflow_id, step_name, position, capability_id, inputs, \
     status, attempts, error, started_at_us, ended_at_us) VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, '', 0, 0) \
     ON CONFLICT (workflow_id, step_name) DO NOTHING";
pub(super) const SET_COMPENSATION: &str = "UPDATE workflow_compensations SET status = $3, attempts = $4, error = $5, \
     started_at_us = CASE WHEN started_at_us = 0 THEN $6 ELSE started_at_us END, \
     ended_at_us = CASE WHEN $7 THEN $6 ELSE ended_at_us END WHERE workflow_id = $1 AND step_name = $2";

/// Writes one transition's row changes inside transaction `$tx` (one
/// expansion per backend); evaluates to the statement's result.
macro_rules! write_transition {
    ($tx:ident, $workflow_id:expr, $now:expr, $transition:expr) => {{
        let (workflow_id, now, transition) = ($workflow_id, $now, $transition);
        match transition {
            Transition::Workflow {
                status,
                reason,
                failed_step,
                ..
            } => {
                sqlx::query($crate::store::transition::SET_WORKFLOW_STATUS)
                    .bind(workflow_id)
                    .bind(status.as_str())
                    .bind(reason)
                    .bind(failed_step)
                    .bind(status.is_terminal())
                    .bind(now)
                    .bind(status.is_terminal() || *status == WorkflowStatus::Paused)
                    .execute(&mut *$tx)
                    .await?
            }
            Transition::StepDecided {
                step,
                risk_level,
                capability_version,
                resolved_inputs,
                decision,
            } => {
                sqlx::query($crate::store::transition::SET_STEP_DECIDED)
                    .bind(workflow_id)
                    .bind(step)
                    .bind(risk_level)
                    .bind(capability_version)
                    .bind(resolved_inputs.to_string())
                    .bind(decision.to_string())
                    .execute(&mut *$tx)
                    .await?
            }
            Transition::Step {
                step,
                status,
                attempt,
                error,
            } => {
                let ends = !matches!(
                    status,
                    StepStatus::Pending
                        | StepStatus::Running
                        | StepStatus::AwaitingApproval
                        | StepStatus::Compensating
                );
                sqlx::query($crate::store::transition::SET_STEP_STATUS)
                    .bind(workflow_id)
                    .bind(step)
                    .bind(status.as_str())
                    .bind(*attempt)
                    .bind(error)
                    .bind(*status == StepStatus::Running)
                    .bind(ends)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?
            }
            Transition::StepSucceeded {
                step,
                outputs,
                undo,
            } => {
                sqlx::query($crate::store::transition::SET_STEP_SUCCEEDED)
                    .bind(workflow_id)
                    .bind(step)
                    .bind(outputs.to_string())
                    .bind(undo.to_string())
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?
            }
            Transition::CompensationPlanned {
                step,
                position,
                capability_id,
                inputs,
            } => {
                sqlx::query($crate::store::transition::INSERT_COMPENSATION)
                    .bind(workflow_id)
                    .bind(step)
                    .bind(*position)
                    .bind(capability_id)
                    .bind(inputs.to_string())
                    .execute(&mut *$tx)
                    .await?
            }
            Transition::Compensation {
                step,
                status,
                attempts,
                error,
            } => {
                sqlx::query($crate::store::transition::SET_COMPENSATION)
                    .bind(workflow_id)
                    .bind(step)
                    .bind(status.as_str())
                    .bind(*attempts)
                    .bind(error)
                    .bind(now)
                    .bind(matches!(
                        status,
                        CompensationStatus::Done | CompensationStatus::Failed
                    ))
                    .execute(&mut *$tx)
                    .await?
            }
            Transition::ApprovalRequested { step, approval, .. } => {
                $crate::store::approvals::insert_approval!($tx, approval);
                sqlx::query($crate::store::transition::SET_STEP_AWAITING)
                    .bind(workflow_id)
                    .bind(step)
                    .bind(&approval.approval_id)
                    .execute(&mut *$tx)
                    .await?
            }
            Transition::ApprovalDecided {
                approval_id,
                status,
                decided_by,
                comment,
                ..
            } => {
                let decided = sqlx::query($crate::store::approvals::DECIDE_APPROVAL)
                    .bind(approval_id)
                    .bind(status.as_str())
                    .bind(decided_by)
                    .bind(comment)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
                if decided.rows_affected() == 0 {
                    return Err(WorkflowError::FailedPrecondition(format!(
                        "approval {approval_id} is no longer PENDING"
                    )));
                }
                decided
            }
            Transition::ApprovalClosed {
                approval_id,
                from,
                status,
                reason,
                ..
            } => {
                let closed = sqlx::query($crate::store::approvals::CLOSE_APPROVAL)
                    .bind(approval_id)
                    .bind(from.as_str())
                    .bind(status.as_str())
                    .bind(reason)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
                if closed.rows_affected() == 0 {
                    return Err(WorkflowError::FailedPrecondition(format!(
                        "approval {approval_id} is no longer {from}"
                    )));
                }
                closed
            }
        }
    }};
}
