//! `ExecuteAction`: one capability run as a governed action.
//!
//! An action is a one-step workflow named `action`, submitted as the caller
//! through [`crate::engine::Engine::submit`]: the registry lookup, the
//! parameter check, the policy (before the run and before every attempt),
//! the approval, the execution, the audit, the durability and the recovery
//! after a crash are exactly a workflow step's. This module only builds the
//! one-step spec, waits a bounded time for the outcome and answers with it.

use std::time::Duration;

use airt_kit::Principal;
use airt_proto::workflow::v1 as pb;
use tokio::time::Instant;
use tonic::Status;

use super::{WorkflowApi, invalid};
use crate::domain::spec::StepDraft;
use crate::domain::{WorkflowDraft, WorkflowStatus};
use crate::store::WorkflowRow;

/// How long an action is waited for when the request does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The longest wait a request may ask for (an RPC should not hang longer).
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The name of the workflow, and of its one step, that carry an action.
pub(crate) const ACTION: &str = "action";

/// The wait a request asks for, within bounds.
fn wait_of(wait: Option<&prost_types::Duration>) -> Result<Duration, Status> {
    let Some(wait) = wait else {
        return Ok(DEFAULT_WAIT);
    };
    if wait.seconds < 0 || wait.nanos < 0 {
        return Err(invalid("wait", "must not be negative"));
    }
    let wait = Duration::new(wait.seconds.unsigned_abs(), wait.nanos.unsigned_abs());
    if wait > MAX_WAIT {
        return Err(invalid("wait", "must be at most 60s"));
    }
    Ok(wait)
}

/// The one-step workflow carrying the action.
fn draft(req: &pb::ExecuteActionRequest) -> Result<WorkflowDraft, Status> {
    let capability = req.capability_id.trim();
    if capability.is_empty() {
        return Err(invalid("capability_id", "is required"));
    }
    if capability.len() > 256 {
        return Err(invalid("capability_id", "is longer than 256 bytes"));
    }
    if req.agent.len() > 256 {
        return Err(invalid("agent", "is longer than 256 bytes"));
    }
    let inputs = req
        .inputs
        .as_ref()
        .map(airt_kit::json::from_proto_struct)
        .unwrap_or_default();
    Ok(WorkflowDraft {
        name: ACTION.into(),
        steps: vec![StepDraft {
            name: ACTION.into(),
            agent: req.agent.clone(),
            capability: capability.to_owned(),
            inputs,
            ..StepDraft::default()
        }],
        ..WorkflowDraft::default()
    })
}

/// Submits (or finds, by `request_id`) the action and answers with its
/// outcome, waiting for it at most the request's `wait`.
pub(super) async fn execute(
    api: &WorkflowApi,
    caller: Principal,
    req: pb::ExecuteActionRequest,
) -> Result<pb::ExecuteActionResponse, Status> {
    let wait = wait_of(req.wait.as_ref())?;
    if req.request_id.len() > 256 {
        return Err(invalid("request_id", "is longer than 256 bytes"));
    }
    let draft = draft(&req)?;
    let request_id = (!req.request_id.is_empty()).then(|| req.request_id.clone());
    let (row, submitted) = api.engine.submit(draft, caller.clone(), request_id).await?;
    let created = submitted.is_some();
    if created {
        tracing::info!(workflow_id = %row.workflow_id, capability = %req.capability_id, %caller, "action submitted");
    }
    let row = settle(api, row, wait).await?;
    let mut answer = outcome(api, &row).await?;
    answer.created = created;
    Ok(answer)
}

/// `GetAction`: where a visible action stands, waiting at most `wait`.
pub(super) async fn get(
    api: &WorkflowApi,
    caller: &Principal,
    req: pb::GetActionRequest,
) -> Result<pb::GetActionResponse, Status> {
    let wait = match req.wait.as_ref() {
        None => Duration::ZERO,
        Some(wait) => wait_of(Some(wait))?,
    };
    let row = api.visible(caller, &req.workflow_id).await?;
    if row.name != ACTION {
        return Err(airt_kit::status::error(
            tonic::Code::FailedPrecondition,
            "NOT_AN_ACTION",
            format!(
                "workflow {} is not an action (its name is {:?})",
                row.workflow_id, row.name
            ),
        ));
    }
    let row = settle(api, row, wait).await?;
    let answer = outcome(api, &row).await?;
    Ok(pb::GetActionResponse {
        status: answer.status,
        workflow_id: answer.workflow_id,
        outputs: answer.outputs,
        error: answer.error,
        decision: answer.decision,
        approval: answer.approval,
    })
}

/// The action's workflow once it rests (finished or paused), or as it is
/// when `wait` runs out.
async fn settle(
    api: &WorkflowApi,
    mut row: WorkflowRow,
    wait: Duration,
) -> Result<WorkflowRow, Status> {
    let deadline = Instant::now() + wait;
    let changes = api.engine.store().subscribe(&row.workflow_id);
    loop {
        let mut changed = std::pin::pin!(changes.notified());
        changed.as_mut().enable();
        row = api
            .engine
            .store()
            .get(&row.workflow_id)
            .await?
            .unwrap_or(row);
        let rests = row
            .status()
            .is_ok_and(|s| s.is_terminal() || s == WorkflowStatus::Paused);
        if rests || Instant::now() >= deadline {
            return Ok(row);
        }
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep(api.watch_poll) => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = api.shutdown.cancelled() => return Ok(row),
        }
    }
}

/// What the action's workflow says about the action.
async fn outcome(
    api: &WorkflowApi,
    row: &WorkflowRow,
) -> Result<pb::ExecuteActionResponse, Status> {
    use pb::ActionStatus as A;
    use pb::StepStatus as S;
    let snapshot = api.snapshot(row).await?;
    let step = snapshot.steps.first().cloned().unwrap_or_default();
    let workflow_status = pb::WorkflowStatus::try_from(snapshot.status).unwrap_or_default();
    let step_status = S::try_from(step.status).unwrap_or_default();
    let status = match (workflow_status, step_status) {
        (pb::WorkflowStatus::Completed, _) => A::Succeeded,
        (_, S::Denied) => A::Denied,
        (_, S::AwaitingApproval) => A::AwaitingApproval,
        (_, S::Rejected) => A::Rejected,
        (_, S::Expired) => A::Expired,
        (pb::WorkflowStatus::Cancelled, _) => A::Cancelled,
        (
            pb::WorkflowStatus::Failed
            | pb::WorkflowStatus::RolledBack
            | pb::WorkflowStatus::CompensationFailed,
            _,
        ) => A::Failed,
        _ => A::Running,
    };
    let error = match status {
        A::Succeeded | A::Running | A::AwaitingApproval => String::new(),
        _ if !snapshot.failure_reason.is_empty() => snapshot.failure_reason.clone(),
        _ => step.error.clone(),
    };
    let approval = match (status, step.approval_id.is_empty()) {
        (A::AwaitingApproval, false) => pending(api, &step.approval_id).await?,
        _ => None,
    };
    Ok(pb::ExecuteActionResponse {
        status: status as i32,
        workflow_id: snapshot.workflow_id.clone(),
        outputs: (status == A::Succeeded)
            .then(|| step.outputs.clone())
            .flatten(),
        error,
        decision: step.decision.clone(),
        approval,
        created: false,
    })
}

async fn pending(
    api: &WorkflowApi,
    approval_id: &str,
) -> Result<Option<pb::PendingApproval>, Status> {
    let Some(approval) = api.engine.store().approval(approval_id).await? else {
        return Ok(None);
    };
    Ok(Some(pb::PendingApproval {
        approval_id: approval.approval_id.clone(),
        message: approval.message.clone(),
        approver_roles: approval.approver_roles(),
        expire_time: Some(airt_kit::clock::timestamp_from_micros(
            approval.expires_at_us,
        )),
    }))
}
