//! The saga: completed steps are compensated in reverse completion order;
//! a status never claims an undo that did not happen.

use airt_proto::policy::v1::EvaluationPurpose;
use std::collections::HashMap;
use tokio::time::Instant;

use serde_json::Value;

use super::assess::{Examined, GateFailure, StepInputs};
use super::{Engine, Run, undo};
use crate::capabilities::ExecutionContext;
use crate::domain::template::{Scope, resolve};
use crate::domain::verdict::Verdict;
use crate::domain::{CompensationStatus, StepSpec, StepStatus, WorkflowStatus};
use crate::error::WorkflowError;
use crate::store::{StepRow, Transition};

/// How one completed step is undone, decided from its spec and row.
#[derive(Debug)]
enum UndoPlan {
    /// It changed nothing: nothing to undo.
    Nothing,
    /// Run `capability` with `inputs`; `action` when it is an action of its
    /// own (gated by the registry and the policy), not the capability's
    /// built-in undo.
    Run {
        capability: String,
        inputs: Value,
        action: bool,
    },
    /// It cannot be undone: why.
    Impossible(String),
}

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
        let mut first_failure: Option<(String, String)> = None;
        for row in completed {
            let Some(step) = run.spec.steps.iter().find(|s| s.name == row.step_name) else {
                continue;
            };
            let failure = match row.status()? {
                StepStatus::Compensated => None,
                StepStatus::CompensationFailed => Some(row.error.clone()),
                _ => {
                    let plan = self.undo_plan(run, step, &row).await;
                    let known = planned.contains_key(&step.name);
                    if !known && matches!(plan, UndoPlan::Run { .. }) {
                        position += 1;
                    }
                    self.undo_step(run, step, plan, (!known).then_some(position))
                        .await?
                }
            };
            if let Some(error) = failure {
                first_failure.get_or_insert((step.name.clone(), error));
            }
        }
        let (status, reason, step) = match first_failure {
            None => (
                WorkflowStatus::RolledBack,
                reason.to_owned(),
                failed_step.to_owned(),
            ),
            Some((step, error)) => (
                WorkflowStatus::CompensationFailed,
                format!("{reason}; compensation of step {step} failed: {error}"),
                step,
            ),
        };
        self.set_status(run, status, &reason, &step).await?;
        self.metrics().rolled_back(status);
        Ok(status)
    }

    /// How a completed step is undone: its explicit `compensation`, its
    /// capability's undo record, or the undo capability its spec names.
    async fn undo_plan(&self, run: &Run, step: &StepSpec, row: &StepRow) -> UndoPlan {
        let undo: Value = serde_json::from_str(&row.undo).unwrap_or(Value::Null);
        match &step.compensation {
            Some(explicit) => {
                let outputs = run.outputs();
                let scope = Scope {
                    initial_state: &run.spec.initial_state,
                    outputs: &outputs,
                };
                match resolve(&Value::Object(explicit.inputs.clone()), scope) {
                    Ok(inputs) => UndoPlan::Run {
                        capability: explicit.capability.clone(),
                        inputs,
                        action: true,
                    },
                    Err(error) => UndoPlan::Impossible(format!("compensation inputs: {error}")),
                }
            }
            None if !undo.is_null() => UndoPlan::Run {
                capability: step.capability.clone(),
                inputs: undo,
                action: false,
            },
            None => match self.implicit_undo(step, row).await {
                undo::Undo::Nothing => UndoPlan::Nothing,
                undo::Undo::Run { capability, inputs } => UndoPlan::Run {
                    capability,
                    inputs,
                    action: true,
                },
                undo::Undo::Impossible(why) => UndoPlan::Impossible(why),
            },
        }
    }

    /// Carries out `plan` for one step (planning the compensation at
    /// `position` first, when it is new); returns why it failed, if it did.
    async fn undo_step(
        &self,
        run: &Run,
        step: &StepSpec,
        plan: UndoPlan,
        position: Option<i64>,
    ) -> Result<Option<String>, WorkflowError> {
        let (capability, inputs, action) = match plan {
            UndoPlan::Nothing => return Ok(None),
            UndoPlan::Impossible(why) => {
                self.effect_stands(&run.workflow_id, &step.name, why.clone())
                    .await?;
                return Ok(Some(why));
            }
            UndoPlan::Run {
                capability,
                inputs,
                action,
            } => (capability, inputs, action),
        };
        let gated = if action {
            Some(
                self.gate_compensation(run, step, &capability, &inputs)
                    .await,
            )
        } else {
            None
        };
        if let Some(position) = position {
            let planned = Transition::CompensationPlanned {
                step: step.name.clone(),
                position,
                capability_id: capability.clone(),
                inputs: inputs.clone(),
            };
            self.transition(&run.workflow_id, planned).await?;
            self.mark(&run.workflow_id, &step.name, StepStatus::Compensating)
                .await?;
        }
        let (result, attempts) = match &gated {
            Some(Err(why)) => (Err(why.clone()), 0),
            Some(Ok(examined)) => {
                self.attempt_compensation(run, step, Compensation::Action(examined))
                    .await?
            }
            None => {
                let own = Compensation::Own {
                    capability: &capability,
                    undo: &inputs,
                };
                self.attempt_compensation(run, step, own).await?
            }
        };
        let (status, error) = match &result {
            Ok(()) => (CompensationStatus::Done, String::new()),
            Err(error) => (CompensationStatus::Failed, error.clone()),
        };
        let outcome = Transition::Compensation {
            step: step.name.clone(),
            status,
            attempts: i64::from(attempts),
            error: error.clone(),
        };
        self.transition(&run.workflow_id, outcome).await?;
        match result {
            Ok(()) => {
                self.mark(&run.workflow_id, &step.name, StepStatus::Compensated)
                    .await?;
                Ok(None)
            }
            Err(error) => {
                self.effect_stands(&run.workflow_id, &step.name, error.clone())
                    .await?;
                Ok(Some(error))
            }
        }
    }

    /// Runs a planned compensation up to `compensation_attempts` times;
    /// returns the last result and the attempts made.
    pub(super) async fn attempt_compensation(
        &self,
        run: &Run,
        step: &StepSpec,
        action: Compensation<'_>,
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
            result = match action {
                // The capability's own undo, from its durable undo record.
                Compensation::Own { capability, undo } => self
                    .inner
                    .catalogue
                    .compensate(capability, &ctx, undo)
                    .await
                    .map_err(|e| e.to_string()),
                Compensation::Action(examined) => {
                    // An action of its own: a remote service must not mistake
                    // it for a retry of the step it undoes.
                    ctx.idempotency_key.push_str("/compensation");
                    self.invoke(&examined.spec, &ctx, &examined.inputs)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            };
            match &result {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(workflow_id = %run.workflow_id, step = %step.name, attempt, %error, "compensation failed")
                }
            }
        }
        Ok((result, attempts))
    }

    /// The gate for a compensation that is an action of its own (named by
    /// the workflow, or the capability's undo capability): the registry and
    /// the policy decide it like any step — the original decision covers
    /// only the capability's own undo. Refused, denied, or needing an
    /// approval nobody can give mid-rollback: not run, and why.
    pub(super) async fn gate_compensation(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: &str,
        inputs: &Value,
    ) -> Result<Examined, String> {
        let deadline = Instant::now() + self.inner.config.default_step_timeout;
        let mut action = step.clone();
        capability.clone_into(&mut action.capability);
        let inputs = StepInputs::resolved(inputs.as_object().cloned().unwrap_or_default());
        let assessment = match self
            .assess(
                run,
                &action,
                inputs,
                deadline,
                None,
                EvaluationPurpose::Continue,
            )
            .await
        {
            Ok(assessment) => assessment,
            Err(GateFailure::Refused(refusal)) => {
                return Err(format!("compensation {capability}: {refusal}"));
            }
            Err(GateFailure::Engine(error)) => return Err(error.to_string()),
        };
        match assessment.verdict {
            Verdict::Allow => Ok(assessment.examined),
            Verdict::RequireApproval { rule, .. } => Err(format!(
                "compensation {capability} requires approval (rule {rule}); not run, undo by hand"
            )),
            Verdict::Deny { rule, reason } => Err(format!(
                "compensation {capability}: policy denied: rule {rule}: {reason}"
            )),
        }
    }
}

/// What undoes a completed step.
#[derive(Debug, Clone, Copy)]
pub(super) enum Compensation<'a> {
    /// The capability's own undo, with its undo record.
    Own {
        capability: &'a str,
        undo: &'a Value,
    },
    /// An action that passed the gate.
    Action(&'a Examined),
}
