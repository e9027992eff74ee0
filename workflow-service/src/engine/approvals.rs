//! Approvals in the engine: requesting one (with its digest, deadline and
//! webhook), a human's decision, voiding one whose action changed, and the
//! durable deadlines that expire them.

use std::time::Duration;

use airt_kit::Principal;
use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value, json};

use super::{Claim, Engine, Outcome, Run, decision_json, risk_name};
use crate::domain::approval::{Action, DecisionCheck, Pending, Refusal, Verdict, check_decision};
use crate::domain::template::{Scope, resolve};
use crate::domain::{ApprovalStatus, StepSpec};
use crate::error::WorkflowError;
use crate::store::{ApprovalRow, Transition};
use crate::webhooks;
use tokio_util::sync::CancellationToken;

/// The role that may decide approvals the policy requires.
const DEFAULT_APPROVER_ROLE: &str = "approver";
/// How often the deadline sweeper looks when no deadline is near (other
/// replicas' approvals).
const DEADLINE_POLL: Duration = Duration::from_secs(1);
/// Decisions that raced with another change are re-checked this often.
const DECIDE_ATTEMPTS: usize = 3;

/// What an ACTION step would do, as the policy was asked about it.
#[derive(Debug, Clone)]
pub(crate) struct ActionFacts {
    capability_id: String,
    capability_version: String,
    risk_level: String,
    inputs: Map<String, Value>,
    decision: Value,
    policy_revision: String,
    rule_id: String,
    reason: String,
}

/// The full command line of a program-execution action, each argument
/// quoted so spaces and options are visible as the program will see them.
fn command_line(inputs: &Map<String, Value>) -> Option<String> {
    let program = inputs.get("program")?.as_str()?;
    let args = inputs.get("args").and_then(Value::as_array);
    let words = args.into_iter().flatten().map(|a| match a.as_str() {
        Some(word) => format!("{word:?}"),
        None => a.to_string(),
    });
    Some(
        std::iter::once(program.to_owned())
            .chain(words)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl ActionFacts {
    pub(crate) fn new(
        step: &StepSpec,
        capability: Option<&registry::CapabilitySpec>,
        inputs: &Map<String, Value>,
        record: &policy::DecisionRecord,
    ) -> Self {
        Self {
            capability_id: step.capability.clone(),
            capability_version: capability
                .and_then(|c| c.metadata.as_ref())
                .map(|m| m.version.clone())
                .unwrap_or_default(),
            risk_level: capability
                .and_then(|c| c.risk.as_ref())
                .map_or("HIGH", |r| risk_name(r.level))
                .to_owned(),
            inputs: inputs.clone(),
            decision: decision_json(record),
            policy_revision: record.policy_revision.clone(),
            rule_id: record.rule_id.clone(),
            reason: record.reason.clone(),
        }
    }

    pub(crate) fn digest(&self, run: &Run, step: &StepSpec) -> String {
        Action {
            workflow_id: &run.workflow_id,
            step_name: &step.name,
            capability_id: &self.capability_id,
            capability_version: &self.capability_version,
            risk_level: &self.risk_level,
            inputs: &self.inputs,
            principal: &run.submitter.to_string(),
            policy_revision: &self.policy_revision,
        }
        .digest()
    }

    /// What differs from the action `approval` was requested for.
    pub(crate) fn changes_since(&self, approval: &ApprovalRow) -> String {
        let mut changes = Vec::new();
        if approval.capability_version != self.capability_version {
            changes.push(format!(
                "capability version {} -> {}",
                approval.capability_version, self.capability_version
            ));
        }
        if approval.risk_level != self.risk_level {
            changes.push(format!(
                "risk {} -> {}",
                approval.risk_level, self.risk_level
            ));
        }
        let before: Map<String, Value> =
            serde_json::from_str(&approval.resolved_inputs).unwrap_or_default();
        if before != self.inputs {
            changes.push("resolved inputs".into());
        }
        let revision = serde_json::from_str::<Value>(&approval.decision)
            .ok()
            .and_then(|d| d["policy_revision"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if revision != self.policy_revision {
            changes.push("policy revision".into());
        }
        if changes.is_empty() {
            changes.push("action digest".into());
        }
        changes.join(", ")
    }
}

impl Engine {
    /// A policy-required approval for an ACTION step.
    pub(crate) async fn request_action_approval(
        &self,
        run: &Run,
        step: &StepSpec,
        action: ActionFacts,
    ) -> Result<Outcome, WorkflowError> {
        let digest = action.digest(run, step);
        let mut message = format!(
            "{} ({} risk) for {}: rule {}: {}",
            action.capability_id, action.risk_level, run.submitter, action.rule_id, action.reason
        );
        if action.capability_id == "sys.exec.run"
            && let Some(command) = command_line(&action.inputs)
        {
            // What will run, word for word: an approver decides on this.
            message.push_str(&format!("; runs: {command}"));
        }
        let now = airt_kit::clock::now_micros();
        let approval = ApprovalRow {
            approval_id: uuid::Uuid::now_v7().to_string(),
            workflow_id: run.workflow_id.clone(),
            workflow_name: run.spec.name.clone(),
            step_name: step.name.clone(),
            capability_id: action.capability_id,
            capability_version: action.capability_version,
            risk_level: action.risk_level,
            resolved_inputs: Value::Object(action.inputs).to_string(),
            decision: action.decision.to_string(),
            action_digest: digest,
            approver_roles: json!([DEFAULT_APPROVER_ROLE]).to_string(),
            message,
            status: ApprovalStatus::Pending.as_str().to_owned(),
            requested_for: run.submitter.to_string(),
            decided_by: String::new(),
            comment: String::new(),
            status_reason: String::new(),
            requested_at_us: now,
            expires_at_us: now + micros(self.inner.config.approval_timeout),
            decided_at_us: 0,
        };
        self.request_approval(run, step, approval).await
    }

    /// The approval a HUMAN_APPROVAL step stands for.
    pub(crate) async fn request_human_approval(
        &self,
        run: &Run,
        step: &StepSpec,
    ) -> Result<Outcome, WorkflowError> {
        let config = step
            .approval
            .clone()
            .unwrap_or_else(|| crate::domain::spec::ApprovalConfig {
                approver_roles: vec![DEFAULT_APPROVER_ROLE.into()],
                timeout: None,
                message: String::new(),
            });
        let outputs = run.outputs();
        let scope = Scope {
            initial_state: &run.spec.initial_state,
            outputs: &outputs,
        };
        let message = match resolve(&Value::String(config.message.clone()), scope) {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(error) => {
                return self
                    .fail(
                        run,
                        step,
                        crate::domain::StepStatus::Failed,
                        format!("approval.message: {error}"),
                    )
                    .await;
            }
        };
        let inputs: Map<String, Value> = [("message".to_owned(), json!(message))]
            .into_iter()
            .collect();
        let digest = Action {
            workflow_id: &run.workflow_id,
            step_name: &step.name,
            capability_id: "",
            capability_version: "",
            risk_level: "",
            inputs: &inputs,
            principal: &run.submitter.to_string(),
            policy_revision: "",
        }
        .digest();
        let now = airt_kit::clock::now_micros();
        let timeout = config.timeout.unwrap_or(self.inner.config.approval_timeout);
        let approval = ApprovalRow {
            approval_id: uuid::Uuid::now_v7().to_string(),
            workflow_id: run.workflow_id.clone(),
            workflow_name: run.spec.name.clone(),
            step_name: step.name.clone(),
            capability_id: String::new(),
            capability_version: String::new(),
            risk_level: String::new(),
            resolved_inputs: Value::Object(inputs).to_string(),
            decision: "{}".into(),
            action_digest: digest,
            approver_roles: json!(config.approver_roles).to_string(),
            message,
            status: ApprovalStatus::Pending.as_str().to_owned(),
            requested_for: run.submitter.to_string(),
            decided_by: String::new(),
            comment: String::new(),
            status_reason: String::new(),
            requested_at_us: now,
            expires_at_us: now + micros(timeout),
            decided_at_us: 0,
        };
        self.request_approval(run, step, approval).await
    }

    async fn request_approval(
        &self,
        run: &Run,
        step: &StepSpec,
        approval: ApprovalRow,
    ) -> Result<Outcome, WorkflowError> {
        let deliveries = self.inner.config.webhooks.deliveries(
            &approval.approval_id,
            "approval.requested",
            &webhooks::approval_requested(
                &approval,
                self.inner.config.webhooks.console_url.as_deref(),
            ),
        );
        tracing::info!(workflow_id = %run.workflow_id, step = %step.name, approval_id = %approval.approval_id, "approval requested");
        // Deferred: it rides with the driver's next commit, the PAUSED
        // status when nothing else is in flight (nothing acts on it before:
        // the step waits). The deadline scanner is woken after that commit.
        self.defer(
            &run.workflow_id,
            Transition::ApprovalRequested {
                step: step.name.clone(),
                approval: Box::new(approval),
                deliveries,
            },
        );
        Ok(Outcome::AwaitingApproval)
    }

    /// A granted HUMAN_APPROVAL step succeeds with who decided.
    pub(crate) async fn pass_human_approval(
        &self,
        run: &Run,
        step: &StepSpec,
        approval: &ApprovalRow,
    ) -> Result<Outcome, WorkflowError> {
        let outputs = json!({
            "approved": true,
            "approval_id": approval.approval_id,
            "decided_by": approval.decided_by,
            "comment": approval.comment,
        });
        self.transition(
            &run.workflow_id,
            Transition::StepSucceeded {
                step: step.name.clone(),
                outputs: outputs.clone(),
                undo: Value::Null,
            },
        )
        .await?;
        Ok(Outcome::Succeeded(outputs))
    }

    /// Makes a PENDING or APPROVED approval VOID (no-op once it is closed).
    pub(crate) async fn void_approval(
        &self,
        run: &Run,
        step: &str,
        approval_id: &str,
        why: &str,
    ) -> Result<(), WorkflowError> {
        let Some(approval) = self.inner.store.approval(approval_id).await? else {
            return Ok(());
        };
        let from = approval.status()?;
        if !matches!(from, ApprovalStatus::Pending | ApprovalStatus::Approved) {
            return Ok(());
        }
        let closed = Transition::ApprovalClosed {
            step: step.to_owned(),
            approval_id: approval_id.to_owned(),
            from,
            status: ApprovalStatus::Void,
            reason: why.to_owned(),
            deliveries: Vec::new(),
        };
        match self.transition(&run.workflow_id, closed).await {
            // Decided or expired meanwhile: nothing to void.
            Err(WorkflowError::FailedPrecondition(_)) => Ok(()),
            other => other,
        }
    }

    /// A human's decision. The caller must hold an approver role and must
    /// not have submitted the workflow; the same decision again answers the
    /// same and changes nothing; a different one is refused. Approving
    /// resumes the workflow, which executes the approved step.
    pub async fn decide(
        &self,
        approval_id: &str,
        caller: &Principal,
        verdict: Verdict,
        comment: &str,
    ) -> Result<ApprovalRow, WorkflowError> {
        for _ in 0..DECIDE_ATTEMPTS {
            let approval = self
                .inner
                .store
                .approval(approval_id)
                .await?
                .ok_or_else(|| WorkflowError::ApprovalNotFound(approval_id.to_owned()))?;
            let roles = approval.approver_roles();
            let facts = Pending {
                approval_id,
                status: approval.status()?,
                approver_roles: &roles,
                requested_for: &approval.requested_for,
                decided_by: &approval.decided_by,
                expires_at_us: approval.expires_at_us,
            };
            match check_decision(facts, caller, verdict, airt_kit::clock::now_micros()) {
                Ok(DecisionCheck::AlreadyDecided) => return Ok(approval),
                Ok(DecisionCheck::Apply) => {}
                Err(Refusal::NotAnApprover(message)) => {
                    return Err(WorkflowError::PermissionDenied {
                        reason: "NOT_AN_APPROVER",
                        message,
                    });
                }
                Err(Refusal::SelfApproval(message)) => {
                    return Err(WorkflowError::PermissionDenied {
                        reason: "SELF_APPROVAL",
                        message,
                    });
                }
                Err(Refusal::Expired(message)) => {
                    return Err(WorkflowError::ApprovalExpired(message));
                }
                Err(Refusal::Conflict(message)) => {
                    return Err(WorkflowError::ApprovalConflict(message));
                }
            }
            let status = verdict.status();
            let decided_by = caller.to_string();
            let deliveries = self.inner.config.webhooks.deliveries(
                approval_id,
                "approval.decided",
                &webhooks::approval_decided(&approval, status.as_str(), &decided_by, comment),
            );
            let decided = Transition::ApprovalDecided {
                step: approval.step_name.clone(),
                approval_id: approval_id.to_owned(),
                status,
                decided_by: decided_by.clone(),
                comment: comment.to_owned(),
                deliveries,
            };
            // When a run may start here at once, the decision also claims
            // the workflow's lease for it (one transaction less before the
            // resumed step).
            let claim = self.inner.active.available_permits() > 0;
            let committed = match self
                .record_claiming(&approval.workflow_id, &decided_by, decided, claim)
                .await
            {
                // Changed meanwhile (decided, expired or void): check again.
                Err(WorkflowError::FailedPrecondition(_)) => continue,
                Err(error) => return Err(error),
                Ok(committed) => committed,
            };
            tracing::info!(approval_id, workflow_id = %approval.workflow_id, %status, by = %caller, "approval decided");
            self.metrics().approval_decided(status.as_str());
            let claim = match committed.lease {
                Some(lease) if lease.held => Claim::Claimed(lease),
                // Not claimed (no run free here) or held by another
                // instance: claimed again when it may start.
                _ => Claim::Take,
            };
            self.run_in_background_with(&approval.workflow_id, claim);
            // The row as the decision wrote it (the statement changed only
            // these columns of a PENDING approval).
            return Ok(ApprovalRow {
                status: status.as_str().to_owned(),
                decided_by,
                comment: comment.to_owned(),
                decided_at_us: committed.at_us,
                ..approval
            });
        }
        Err(WorkflowError::ApprovalConflict(format!(
            "approval {approval_id} keeps changing; try again"
        )))
    }

    /// Expires every PENDING approval past its deadline and resumes its
    /// workflow (which fails the step as EXPIRED and rolls back). Returns
    /// how many expired.
    pub async fn expire_overdue(&self) -> Result<usize, WorkflowError> {
        let now = airt_kit::clock::now_micros();
        let mut expired = 0;
        for approval in self.inner.store.overdue_approvals(now, 100).await? {
            let reason = format!(
                "no decision before {}",
                crate::domain::approval::rfc3339(approval.expires_at_us)
            );
            let deliveries = self.inner.config.webhooks.deliveries(
                &approval.approval_id,
                "approval.decided",
                &webhooks::approval_decided(
                    &approval,
                    ApprovalStatus::Expired.as_str(),
                    "",
                    &reason,
                ),
            );
            let closed = Transition::ApprovalClosed {
                step: approval.step_name.clone(),
                approval_id: approval.approval_id.clone(),
                from: ApprovalStatus::Pending,
                status: ApprovalStatus::Expired,
                reason,
                deliveries,
            };
            match self
                .record_as(&approval.workflow_id, super::ACTOR, closed)
                .await
            {
                Ok(()) => {
                    tracing::info!(approval_id = %approval.approval_id, workflow_id = %approval.workflow_id, "approval expired");
                    expired += 1;
                    self.run_in_background(&approval.workflow_id);
                }
                // Decided (or expired by another replica) meanwhile.
                Err(WorkflowError::FailedPrecondition(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(expired)
    }

    /// Fires approval deadlines until `shutdown`: they are rows in the
    /// database, so deadlines that passed while the service was down fire
    /// at start-up.
    pub async fn run_deadlines(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.expire_overdue().await {
                tracing::warn!(%error, "approval deadlines unreadable; retrying");
            }
            let wait = match self.inner.store.next_approval_deadline().await {
                Ok(Some(at)) => {
                    let micros = at.saturating_sub(airt_kit::clock::now_micros()).max(0);
                    Duration::from_micros(micros as u64).min(DEADLINE_POLL)
                }
                _ => DEADLINE_POLL,
            };
            tokio::select! {
                () = self.inner.deadlines.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX / 4)
}
