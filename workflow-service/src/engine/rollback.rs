//! The saga: completed steps are compensated in reverse completion order;
//! a status never claims an undo that did not happen.

use std::collections::HashMap;
use std::time::Instant;

use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::Value;

use super::{Engine, Run, parameters_of, undo};
use crate::capabilities::{ExecutionContext, validate_inputs};
use crate::domain::template::{Scope, resolve};
use crate::domain::{CompensationStatus, StepSpec, StepStatus, WorkflowStatus};
use crate::error::WorkflowError;
use crate::store::Transition;

impl Engine {
    /// Compensates completed steps in reverse completion order.
    pub(super) async fn rollback(
        &self,
        run: &Run,
        reason: &str,
        failed_step: &str,
    ) -> Result<WorkflowStatus, WorkflowError> {
        if self.status_of(&run.workflow_id).await? != WorkflowStatus::RollingBack {
            self.set_status(run, WorkflowStatus::RollingBack, reason, failed_step)
                .await?;
        }
        let mut completed: Vec<_> = self
            .inner
            .store
            .steps(&run.workflow_id)
            .await?
            .into_iter()
            .filter(|s| s.completed_seq > 0)
            .collect();
        completed.sort_by_key(|s| std::cmp::Reverse(s.completed_seq));
        // After an interruption: what was already planned and undone.
        let planned: HashMap<String, i64> = self
            .inner
            .store
            .compensations(&run.workflow_id)
            .await?
            .into_iter()
            .map(|c| (c.step_name, c.position))
            .collect();
        let mut position = planned.values().copied().max().unwrap_or(0);
        let outputs = run.outputs();
        let mut first_failure: Option<(String, String)> = None;
        for row in completed {
            let Some(step) = run.spec.steps.iter().find(|s| s.name == row.step_name) else {
                continue;
            };
            match row.status()? {
                StepStatus::Compensated => continue,
                StepStatus::CompensationFailed => {
                    first_failure.get_or_insert((step.name.clone(), row.error.clone()));
                    continue;
                }
                _ => {}
            }
            let undo: Value = serde_json::from_str(&row.undo).unwrap_or(Value::Null);
            let plan = match &step.compensation {
                Some(explicit) => {
                    let scope = Scope {
                        initial_state: &run.spec.initial_state,
                        outputs: &outputs,
                    };
                    match resolve(&Value::Object(explicit.inputs.clone()), scope) {
                        Ok(inputs) => Some((explicit.capability.clone(), inputs, true)),
                        Err(error) => {
                            first_failure.get_or_insert((
                                step.name.clone(),
                                format!("compensation inputs: {error}"),
                            ));
                            continue;
                        }
                    }
                }
                None if !undo.is_null() => Some((step.capability.clone(), undo.clone(), false)),
                None => match self.implicit_undo(step, &row).await {
                    undo::Undo::Nothing => None,
                    undo::Undo::Run { capability, inputs } => Some((capability, inputs, true)),
                    undo::Undo::Impossible(why) => {
                        first_failure.get_or_insert((step.name.clone(), why.clone()));
                        self.effect_stands(&run.workflow_id, &step.name, why)
                            .await?;
                        continue;
                    }
                },
            };
            let Some((capability, inputs, explicit)) = plan else {
                // It changed nothing: nothing to undo.
                continue;
            };
            // A compensation the workflow names is an action of its own: the
            // policy decides it like any step (the original decision covers
            // only the capability's own undo). Denied, or needing an approval
            // nobody can give mid-rollback: not run, the step stays to undo
            // by hand.
            let refusal = if explicit {
                self.compensation_refused(run, step, &capability, &inputs)
                    .await
            } else {
                None
            };
            if !planned.contains_key(&step.name) {
                position += 1;
                self.transition(
                    &run.workflow_id,
                    Transition::CompensationPlanned {
                        step: step.name.clone(),
                        position,
                        capability_id: capability.clone(),
                        inputs: inputs.clone(),
                    },
                )
                .await?;
                self.mark(&run.workflow_id, &step.name, StepStatus::Compensating)
                    .await?;
            }
            let (result, attempts) = match refusal {
                Some(why) => (Err(why), 0),
                None => {
                    self.attempt_compensation(run, step, &capability, &inputs, explicit)
                        .await?
                }
            };
            match result {
                Ok(()) => {
                    self.transition(
                        &run.workflow_id,
                        Transition::Compensation {
                            step: step.name.clone(),
                            status: CompensationStatus::Done,
                            attempts: i64::from(attempts),
                            error: String::new(),
                        },
                    )
                    .await?;
                    self.mark(&run.workflow_id, &step.name, StepStatus::Compensated)
                        .await?;
                }
                Err(error) => {
                    self.transition(
                        &run.workflow_id,
                        Transition::Compensation {
                            step: step.name.clone(),
                            status: CompensationStatus::Failed,
                            attempts: i64::from(attempts),
                            error: error.clone(),
                        },
                    )
                    .await?;
                    self.effect_stands(&run.workflow_id, &step.name, error.clone())
                        .await?;
                    first_failure.get_or_insert((step.name.clone(), error));
                }
            }
        }
        match first_failure {
            None => {
                self.set_status(run, WorkflowStatus::RolledBack, reason, failed_step)
                    .await?;
                Ok(WorkflowStatus::RolledBack)
            }
            Some((step, error)) => {
                let reason = format!("{reason}; compensation of step {step} failed: {error}");
                self.set_status(run, WorkflowStatus::CompensationFailed, &reason, &step)
                    .await?;
                Ok(WorkflowStatus::CompensationFailed)
            }
        }
    }

    /// Runs a planned compensation up to `compensation_attempts` times;
    /// returns the last result and the attempts made.
    pub(super) async fn attempt_compensation(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: &str,
        inputs: &Value,
        explicit: bool,
    ) -> Result<(Result<(), String>, u32), WorkflowError> {
        let mut result = Err(String::from("not attempted"));
        let mut attempts = 0;
        for attempt in 1..=self.inner.config.compensation_attempts {
            attempts = attempt;
            self.transition(
                &run.workflow_id,
                Transition::Compensation {
                    step: step.name.clone(),
                    status: CompensationStatus::Running,
                    attempts: i64::from(attempt),
                    error: String::new(),
                },
            )
            .await?;
            let mut ctx = ExecutionContext::new(
                &run.workflow_id,
                &step.name,
                attempt,
                Instant::now() + self.inner.config.default_step_timeout,
                self.inner.workspace.clone(),
            );
            if explicit {
                // An action of its own: a remote service must not mistake it
                // for a retry of the step it undoes.
                ctx.idempotency_key.push_str("/compensation");
            }
            result = self
                .compensate_once(&ctx, capability, inputs, explicit)
                .await;
            match &result {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(workflow_id = %run.workflow_id, step = %step.name, attempt, %error, "compensation failed")
                }
            }
        }
        Ok((result, attempts))
    }

    /// Why the policy (or an unreachable registry or policy service) does
    /// not let the explicit compensation `capability` run, if it does not.
    pub(super) async fn compensation_refused(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: &str,
        inputs: &Value,
    ) -> Option<String> {
        let deadline = Instant::now() + self.inner.config.default_step_timeout;
        let spec = match self.inner.registry.capability(capability, deadline).await {
            Ok(found) => found.and_then(|c| c.spec),
            Err(error) => return Some(error.to_string()),
        };
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        let mut context = self.policy_context(run, step, spec.as_ref(), &inputs);
        capability.clone_into(&mut context.capability_id);
        let record = match self.inner.policy.evaluate(context, deadline).await {
            Ok(record) => record,
            Err(error) => return Some(error.to_string()),
        };
        match policy::Decision::try_from(record.decision) {
            Ok(policy::Decision::Allow) => None,
            Ok(policy::Decision::RequireApproval) => Some(format!(
                "compensation {capability} requires approval (rule {}); not run, undo by hand",
                record.rule_id
            )),
            _ => Some(format!(
                "compensation {capability}: policy denied: rule {}: {}",
                record.rule_id, record.reason
            )),
        }
    }

    pub(super) async fn compensate_once(
        &self,
        ctx: &ExecutionContext,
        capability: &str,
        inputs: &Value,
        explicit: bool,
    ) -> Result<(), String> {
        if !explicit {
            // The capability's own undo, from its durable undo record.
            return self
                .inner
                .catalogue
                .compensate(capability, ctx, inputs)
                .await
                .map_err(|e| e.to_string());
        }
        let found = self
            .inner
            .registry
            .capability(capability, ctx.deadline)
            .await
            .map_err(|e| e.to_string())?;
        let lifecycle_reason = found.as_ref().map(|c| c.lifecycle_reason.clone());
        let spec = found
            .and_then(|c| c.spec)
            .ok_or_else(|| format!("unknown compensation capability {capability}"))?;
        if spec.lifecycle == registry::CapabilityLifecycle::Frozen as i32 {
            return Err(format!(
                "compensation capability {capability} is FROZEN: {}",
                lifecycle_reason.unwrap_or_default()
            ));
        }
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        let inputs = validate_inputs(&parameters_of(&spec), &inputs).map_err(|e| e.message)?;
        self.invoke(&spec, ctx, &inputs)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
