//! The per-step pipeline: assess, obey the verdict, execute with retries
//! and a deadline, record the outputs and the undo record.

use std::time::Instant;

use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value};

use super::{ACTOR, Engine, Outcome, Run, approvals, parameters_of};
use crate::capabilities::{Catalogue, ExecutionContext, HandlerError, validate_inputs};
use crate::domain::template::{Scope, resolve};
use crate::domain::{StepSpec, StepStatus, StepType};
use crate::error::WorkflowError;
use crate::store::{ApprovalRow, Transition};

/// How a step (re)starts.
#[derive(Debug, Default)]
pub(super) struct StepStart {
    /// The granted approval of a step that waited for one.
    pub(super) approval: Option<ApprovalRow>,
    /// The attempt to start with (an interrupted attempt is made again).
    pub(super) first_attempt: u32,
}

/// Whether a step's inputs or outputs can be stored and served back.
fn storable(value: &Value) -> Result<(), String> {
    use airt_kit::limits::{MAX_STORED_BYTES, MAX_STORED_DEPTH, check_storable};
    check_storable(value, MAX_STORED_BYTES, MAX_STORED_DEPTH)
}

impl Engine {
    pub(super) async fn fail(
        &self,
        run: &Run,
        step: &StepSpec,
        status: StepStatus,
        reason: String,
    ) -> Result<Outcome, WorkflowError> {
        self.transition(
            &run.workflow_id,
            Transition::Step {
                step: step.name.clone(),
                status,
                attempt: None,
                error: reason.clone(),
            },
        )
        .await?;
        Ok(Outcome::Failed { reason })
    }

    /// The per-step pipeline, in SPEC order.
    pub(super) async fn run_step(
        &self,
        run: &Run,
        step: &StepSpec,
        start: StepStart,
    ) -> Result<Outcome, WorkflowError> {
        let StepStart {
            approval,
            first_attempt,
        } = start;
        if step.step_type == StepType::HumanApproval {
            return match approval {
                Some(approval) => self.pass_human_approval(run, step, &approval).await,
                None => self.request_human_approval(run, step).await,
            };
        }
        if run.deadline.is_some_and(|d| Instant::now() >= d) {
            return self
                .fail(
                    run,
                    step,
                    StepStatus::Failed,
                    "workflow exceeded options.max_duration".into(),
                )
                .await;
        }
        let deadline = self.step_deadline(run, step);
        // 1. Resolve inputs.
        let outputs = run.outputs();
        let scope = Scope {
            initial_state: &run.spec.initial_state,
            outputs: &outputs,
        };
        let inputs = match resolve(&Value::Object(step.inputs.clone()), scope) {
            Ok(value) if let Err(why) = storable(&value) => {
                let why = format!("inputs cannot be stored: {why}");
                return self.fail(run, step, StepStatus::Failed, why).await;
            }
            Ok(Value::Object(map)) => map,
            Ok(_) => Map::new(),
            Err(error) => {
                return self
                    .fail(run, step, StepStatus::Failed, format!("inputs: {error}"))
                    .await;
            }
        };
        // 2. The registry: what is it, how risky?
        let capability = match self
            .flushing_if_slow(
                &run.workflow_id,
                self.inner.registry.capability(&step.capability, deadline),
            )
            .await?
        {
            Ok(found) => found,
            Err(error) => {
                return self
                    .fail(run, step, StepStatus::Failed, error.to_string())
                    .await;
            }
        };
        let spec = capability.as_ref().and_then(|c| c.spec.clone());
        if let Some(spec) = &spec
            && spec.lifecycle == registry::CapabilityLifecycle::Frozen as i32
        {
            let reason = capability
                .as_ref()
                .map(|c| c.lifecycle_reason.clone())
                .unwrap_or_default();
            return self
                .fail(
                    run,
                    step,
                    StepStatus::Failed,
                    format!("capability {} is FROZEN: {reason}", step.capability),
                )
                .await;
        }
        // 3. Inputs against the parameters.
        let inputs = match &spec {
            Some(spec) => match validate_inputs(&parameters_of(spec), &inputs) {
                Ok(mut inputs) => {
                    Catalogue::normalise_paths(&spec.handler, &mut inputs);
                    inputs
                }
                Err(error) => {
                    return self
                        .fail(
                            run,
                            step,
                            StepStatus::Failed,
                            format!("invalid inputs: {}", error.message),
                        )
                        .await;
                }
            },
            None => inputs,
        };
        // 4. The policy, with the registry's risk.
        let context = self.policy_context(run, step, spec.as_ref(), &inputs);
        let record = match self
            .flushing_if_slow(
                &run.workflow_id,
                self.inner.policy.evaluate(context, deadline),
            )
            .await?
        {
            Ok(record) => record,
            Err(error) => {
                return self
                    .fail(run, step, StepStatus::Failed, error.to_string())
                    .await;
            }
        };
        // The decision is committed with the first attempt it allows (one
        // transaction), or on its own before anything else.
        let mut decided = Some(Self::decided(step, spec.as_ref(), inputs.clone(), &record));
        let allowed = record.decision == policy::Decision::Allow as i32 && spec.is_some();
        if !allowed && let Some(decided) = decided.take() {
            self.transition(&run.workflow_id, decided).await?;
        }
        // 5. Obey. An approval binds to the exact action: a changed action
        // voids it and asks again.
        match policy::Decision::try_from(record.decision) {
            Ok(policy::Decision::Allow) => {}
            Ok(policy::Decision::RequireApproval) => {
                let action = approvals::ActionFacts::new(step, spec.as_ref(), &inputs, &record);
                match &approval {
                    Some(granted) if granted.action_digest == action.digest(run, step) => {}
                    Some(granted) => {
                        let why = format!(
                            "the action changed after the request ({})",
                            action.changes_since(granted)
                        );
                        self.void_approval(run, &step.name, &granted.approval_id, &why)
                            .await?;
                        return self.request_action_approval(run, step, action).await;
                    }
                    None => return self.request_action_approval(run, step, action).await,
                }
            }
            _ => {
                let reason = format!("policy denied: rule {}: {}", record.rule_id, record.reason);
                return self.fail(run, step, StepStatus::Denied, reason).await;
            }
        }
        let Some(spec) = spec else {
            return self
                .fail(
                    run,
                    step,
                    StepStatus::Failed,
                    format!("unknown capability {}: no handler", step.capability),
                )
                .await;
        };
        // 6. Execute, retrying only what can succeed on retry.
        let mut backoff = step.retry.initial_backoff;
        let first = first_attempt.max(1);
        for attempt in first..=step.retry.max_attempts.max(first_attempt) {
            if attempt > first
                && let Some(outcome) = self
                    .recheck(run, step, &inputs, approval.as_ref(), attempt, deadline)
                    .await?
            {
                return Ok(outcome);
            }
            let running = Transition::Step {
                step: step.name.clone(),
                status: StepStatus::Running,
                attempt: Some(i64::from(attempt)),
                error: String::new(),
            };
            let transitions: Vec<Transition> =
                decided.take().into_iter().chain([running]).collect();
            self.commit_all(&run.workflow_id, ACTOR, &self.inner.owner, transitions)
                .await?;
            let ctx = ExecutionContext::new(
                &run.workflow_id,
                &step.name,
                attempt,
                deadline,
                self.inner.workspace.clone(),
            );
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result =
                match tokio::time::timeout(remaining, self.invoke(&spec, &ctx, &inputs)).await {
                    Ok(result) => result,
                    Err(_) => Err(HandlerError::new(
                        crate::capabilities::ErrorKind::Timeout,
                        format!("step {} timed out", step.name),
                    )
                    .retryable(false)),
                };
            match result {
                Ok(execution) if let Err(why) = storable(&execution.outputs) => {
                    let why = format!("the action ran, but its output cannot be stored: {why}");
                    return self.fail(run, step, StepStatus::Failed, why).await;
                }
                Ok(execution) => {
                    // 7. Outputs and the undo record, committed with SUCCEEDED
                    // (deferred: with the driver's next write).
                    self.defer(
                        &run.workflow_id,
                        Transition::StepSucceeded {
                            step: step.name.clone(),
                            outputs: execution.outputs.clone(),
                            undo: execution.undo.unwrap_or(Value::Null),
                        },
                    );
                    return Ok(Outcome::Succeeded(execution.outputs));
                }
                Err(error)
                    if error.retryable
                        && attempt < step.retry.max_attempts
                        && Instant::now() < deadline =>
                {
                    tracing::info!(workflow_id = %run.workflow_id, step = %step.name, attempt, %error, "retrying");
                    let jitter =
                        0.5 + (airt_kit::clock::now_micros().rem_euclid(1000) as f64) / 2000.0;
                    tokio::time::sleep(
                        backoff
                            .mul_f64(jitter)
                            .min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    backoff = backoff
                        .mul_f64(step.retry.multiplier)
                        .min(step.retry.max_backoff);
                }
                Err(error) => {
                    return self
                        .fail(run, step, StepStatus::Failed, error.to_string())
                        .await;
                }
            }
        }
        self.fail(run, step, StepStatus::Failed, "no attempt left".into())
            .await
    }

    /// Calls the handler a capability names: a built-in, or a remote HTTP endpoint.
    pub(super) async fn invoke(
        &self,
        spec: &registry::CapabilitySpec,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<crate::capabilities::Execution, HandlerError> {
        if let Some(name) = spec.handler.strip_prefix("builtin:") {
            self.inner.catalogue.check_pinned_spec(spec)?;
            let handler = self.inner.catalogue.handler(name).ok_or_else(|| {
                HandlerError::new(
                    crate::capabilities::ErrorKind::NotFound,
                    format!("no built-in handler {name}"),
                )
            })?;
            return handler.execute(ctx, inputs).await;
        }
        if let Some(url) = spec.handler.strip_prefix("http:") {
            return self.inner.remote.call(url, ctx, inputs).await;
        }
        Err(HandlerError::new(
            crate::capabilities::ErrorKind::NotFound,
            format!("unsupported handler {}", spec.handler),
        ))
    }
}
