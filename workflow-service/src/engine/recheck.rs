//! Every attempt is a decision. A step's first attempt runs on the decision
//! committed with it; before each retry the engine asks again — the registry
//! (still registered, not FROZEN) and the policy (still ALLOW, or still
//! covered by the granted approval's digest) — so a capability frozen or a
//! policy changed to DENY between attempts stops the step before the
//! handler is called again. The registry answer comes from the gate's cache
//! (kept current by the change feed); the policy call is one evaluation per
//! retry, which only follows a failure.

use std::time::Instant;

use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value};

use super::approvals::ActionFacts;
use super::{Engine, Outcome, Run};
use crate::domain::{StepSpec, StepStatus};
use crate::error::WorkflowError;
use crate::store::ApprovalRow;

impl Engine {
    /// `None` when attempt `attempt` may go ahead; otherwise what became of
    /// the step (failed, denied, or waiting for a new approval).
    pub(super) async fn recheck(
        &self,
        run: &Run,
        step: &StepSpec,
        inputs: &Map<String, Value>,
        approval: Option<&ApprovalRow>,
        attempt: u32,
        deadline: Instant,
    ) -> Result<Option<Outcome>, WorkflowError> {
        let before = format!("before attempt {attempt}");
        let capability = match self
            .inner
            .registry
            .capability(&step.capability, deadline)
            .await
        {
            Ok(Some(capability)) => capability,
            Ok(None) => {
                let why = format!(
                    "{before}: capability {} is no longer registered",
                    step.capability
                );
                return self
                    .fail(run, step, StepStatus::Failed, why)
                    .await
                    .map(Some);
            }
            Err(error) => {
                let why = format!("{before}: {error}");
                return self
                    .fail(run, step, StepStatus::Failed, why)
                    .await
                    .map(Some);
            }
        };
        let Some(spec) = capability.spec else {
            let why = format!("{before}: capability {} has no spec", step.capability);
            return self
                .fail(run, step, StepStatus::Failed, why)
                .await
                .map(Some);
        };
        if spec.lifecycle == registry::CapabilityLifecycle::Frozen as i32 {
            let why = format!(
                "{before}: capability {} is FROZEN: {}",
                step.capability, capability.lifecycle_reason
            );
            return self
                .fail(run, step, StepStatus::Failed, why)
                .await
                .map(Some);
        }
        let context = self.policy_context(run, step, Some(&spec), inputs);
        let record = match self.inner.policy.evaluate(context, deadline).await {
            Ok(record) => record,
            Err(error) => {
                let why = format!("{before}: {error}");
                return self
                    .fail(run, step, StepStatus::Failed, why)
                    .await
                    .map(Some);
            }
        };
        match policy::Decision::try_from(record.decision) {
            Ok(policy::Decision::Allow) => Ok(None),
            Ok(policy::Decision::RequireApproval) => {
                let action = ActionFacts::new(step, Some(&spec), inputs, &record);
                match approval {
                    Some(granted) if granted.action_digest == action.digest(run, step) => Ok(None),
                    Some(granted) => {
                        let why = format!(
                            "{before}: the action changed after the approval ({})",
                            action.changes_since(granted)
                        );
                        self.void_approval(run, &step.name, &granted.approval_id, &why)
                            .await?;
                        self.request_action_approval(run, step, action)
                            .await
                            .map(Some)
                    }
                    None => self
                        .request_action_approval(run, step, action)
                        .await
                        .map(Some),
                }
            }
            _ => {
                let why = format!(
                    "policy denied {before}: rule {}: {}",
                    record.rule_id, record.reason
                );
                self.fail(run, step, StepStatus::Denied, why)
                    .await
                    .map(Some)
            }
        }
    }
}
