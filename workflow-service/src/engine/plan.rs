//! Before anything runs: a submitted workflow is checked against the
//! registry (every capability registered and not FROZEN, static inputs
//! fitting its parameters); a plan adds the policy's decision per step;
//! preflight fails a workflow whose step would be refused or denied.

use airt_proto::policy::v1::EvaluationPurpose;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use airt_kit::Principal;
use airt_kit::status::FieldViolation;
use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;

use super::assess::{GateFailure, StepInputs};
use super::{Engine, Run};
use crate::domain::verdict::{Refusal, Verdict};
use crate::domain::{
    StepSpec, StepStatus, StepType, WorkflowDraft, WorkflowSpec, validate_workflow,
};
use crate::error::WorkflowError;
use crate::store::Transition;

/// How long a submission waits for the registry's answers before it is
/// accepted unchecked (each step is checked again when it runs).
const SUBMIT_CHECK_WAIT: Duration = Duration::from_secs(2);

/// What a plan says of one step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub step_name: String,
    /// `None` for a HUMAN_APPROVAL step.
    pub capability: Option<registry::Capability>,
    /// `None` for HUMAN_APPROVAL steps.
    pub decision: Option<policy::DecisionRecord>,
    /// Inputs that depend on earlier steps' outputs.
    pub deferred_inputs: Vec<String>,
}

impl Engine {
    /// A valid spec this deployment runs: its `metadata.environment`, a
    /// label, may not claim another environment than the deployment's.
    pub(super) fn admit(&self, draft: &WorkflowDraft) -> Result<WorkflowSpec, WorkflowError> {
        let spec = validate_workflow(draft).map_err(WorkflowError::InvalidWorkflow)?;
        let deployed = &self.inner.config.environment;
        if !spec.environment.is_empty() && !deployed.is_empty() && &spec.environment != deployed {
            return Err(WorkflowError::InvalidWorkflow(vec![FieldViolation::new(
                "spec.metadata.environment",
                format!(
                    "this deployment is {deployed:?}, not {:?}; the environment comes from the service's configuration",
                    spec.environment
                ),
            )]));
        }
        Ok(spec)
    }

    /// Every statically knowable problem of a valid spec, from the
    /// registry: unknown or FROZEN capabilities, missing, unknown or
    /// mistyped inputs that need no earlier step's output. A registry that
    /// cannot answer within [`SUBMIT_CHECK_WAIT`] leaves the workflow
    /// unchecked here: its steps are checked when they run (fail closed).
    pub(super) async fn check_statically(&self, run: &Run) -> Result<(), WorkflowError> {
        let wait = SUBMIT_CHECK_WAIT.min(self.inner.config.default_step_timeout);
        let deadline = Instant::now() + wait;
        let mut violations = Vec::new();
        for (index, step) in actions(&run.spec) {
            let inputs = StepInputs::statically(run, step);
            match self.examine(step, inputs, deadline, None).await {
                Ok(_) => {}
                Err(GateFailure::Refused(refusal)) if refusal.is_static() => {
                    violations.extend(refusal.violations(index));
                }
                // Unanswered (all lookups share one deadline): what was found
                // is still reported; the rest is checked when it runs.
                Err(GateFailure::Refused(refusal)) => {
                    tracing::warn!(step = %step.name, %refusal, "step submitted unchecked; it is checked when it runs");
                }
                Err(GateFailure::Engine(error)) => return Err(error),
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(WorkflowError::InvalidWorkflow(violations))
        }
    }

    /// Preflight: the first step that would be refused or denied fails the
    /// workflow before anything runs. Returns that step and the reason.
    pub(super) async fn preflight(
        &self,
        run: &Run,
    ) -> Result<Option<(String, String)>, WorkflowError> {
        for (_, step) in actions(&run.spec) {
            let deadline = self.step_deadline(run, step);
            let inputs = StepInputs::statically(run, step);
            let assessment = match self
                .assess(
                    run,
                    step,
                    inputs,
                    deadline,
                    None,
                    EvaluationPurpose::Preview,
                )
                .await
            {
                Ok(assessment) => assessment,
                Err(GateFailure::Refused(refusal)) => {
                    let reason = format!("preflight: step {}: {refusal}", step.name);
                    return Ok(Some((step.name.clone(), reason)));
                }
                Err(GateFailure::Engine(error)) => return Err(error),
            };
            if let Verdict::Deny { rule, reason } = &assessment.verdict {
                let reason = format!(
                    "preflight: step {}: policy denied: rule {rule}: {reason}",
                    step.name
                );
                let examined = &assessment.examined;
                self.record_decision(
                    run,
                    step,
                    Some(&examined.spec),
                    examined.inputs.clone(),
                    &assessment.record,
                )
                .await?;
                let denied = Transition::Step {
                    step: step.name.clone(),
                    status: StepStatus::Denied,
                    attempt: None,
                    error: reason.clone(),
                };
                self.transition(&run.workflow_id, denied).await?;
                let capability = Some(step.capability.as_str());
                self.metrics()
                    .step(capability, StepStatus::Denied, Duration::ZERO);
                return Ok(Some((step.name.clone(), reason)));
            }
        }
        Ok(None)
    }

    /// What would happen to each step of `draft` if `submitter` submitted
    /// it now: capability, risk and policy decision per step, from the
    /// statically known inputs. Every static problem of every step is one
    /// INVALID_ARGUMENT, all at once. Nothing is stored or executed.
    pub async fn plan(
        &self,
        draft: &WorkflowDraft,
        submitter: Principal,
    ) -> Result<Vec<StepPlan>, WorkflowError> {
        let spec = self.admit(draft)?;
        let deadline = spec.options.max_duration.map(|d| Instant::now() + d);
        let run = Run {
            workflow_id: String::new(),
            spec,
            submitter,
            deadline,
            outputs: Mutex::default(),
        };
        let mut plans = Vec::new();
        let mut violations: Vec<FieldViolation> = Vec::new();
        for (index, step) in run.spec.steps.iter().enumerate() {
            let mut plan = StepPlan {
                step_name: step.name.clone(),
                capability: None,
                decision: None,
                deferred_inputs: Vec::new(),
            };
            if step.step_type == StepType::Action {
                let deadline = self.step_deadline(&run, step);
                let inputs = StepInputs::statically(&run, step);
                match self
                    .assess(
                        &run,
                        step,
                        inputs,
                        deadline,
                        None,
                        EvaluationPurpose::Preview,
                    )
                    .await
                {
                    Ok(assessment) => {
                        plan.capability = Some(assessment.examined.capability);
                        plan.decision = Some(assessment.record);
                        plan.deferred_inputs = assessment.examined.pending;
                    }
                    Err(GateFailure::Refused(Refusal::Unanswered(why))) => {
                        return Err(WorkflowError::Unavailable(why));
                    }
                    Err(GateFailure::Refused(refusal)) => {
                        violations.extend(refusal.violations(index));
                    }
                    Err(GateFailure::Engine(error)) => return Err(error),
                }
            }
            plans.push(plan);
        }
        if !violations.is_empty() {
            return Err(WorkflowError::InvalidWorkflow(violations));
        }
        Ok(plans)
    }
}

/// The ACTION steps of a spec, with their positions.
fn actions(spec: &WorkflowSpec) -> impl Iterator<Item = (usize, &StepSpec)> {
    spec.steps
        .iter()
        .enumerate()
        .filter(|(_, step)| step.step_type == StepType::Action)
}
