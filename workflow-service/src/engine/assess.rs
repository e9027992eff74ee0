//! The gate, once for run, preflight and plan: resolve the inputs, ask the
//! registry, check the inputs against the spec, ask the policy.

use std::sync::Mutex;
use std::time::Instant;

use airt_kit::Principal;
use airt_kit::json::to_proto_struct;
use airt_proto::common::v1 as common;
use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value, json};

use super::{Engine, Run, decision_json, risk_name};
use crate::capabilities::Catalogue;
use crate::domain::template::{Scope, resolve};
use crate::domain::{
    StepSpec, StepStatus, StepType, WorkflowDraft, WorkflowSpec, validate_workflow,
};
use crate::error::WorkflowError;
use crate::gate::GateError;
use crate::store::Transition;

/// The registry's answer and the policy decision for one step, from its
/// statically known inputs.
#[derive(Debug)]
pub(super) struct Assessment {
    capability: Option<registry::Capability>,
    known: Map<String, Value>,
    deferred: Vec<String>,
    decision: policy::DecisionRecord,
}

/// What preflight says of one step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub step_name: String,
    /// `None` for an unknown capability (treated as HIGH risk) or a
    /// HUMAN_APPROVAL step.
    pub capability: Option<registry::Capability>,
    /// `None` for HUMAN_APPROVAL steps.
    pub decision: Option<policy::DecisionRecord>,
    /// Inputs that depend on earlier steps' outputs.
    pub deferred_inputs: Vec<String>,
}

impl Engine {
    pub(super) fn step_deadline(&self, run: &Run, step: &StepSpec) -> Instant {
        let own = Instant::now()
            + step
                .timeout
                .unwrap_or(self.inner.config.default_step_timeout);
        run.deadline.map_or(own, |d| d.min(own))
    }

    pub(super) fn policy_context(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: Option<&registry::CapabilitySpec>,
        inputs: &Map<String, Value>,
    ) -> policy::PolicyContext {
        policy::PolicyContext {
            principal: Some(run.submitter.to_proto()),
            agent: step.agent.clone(),
            workflow_id: run.workflow_id.clone(),
            step_name: step.name.clone(),
            capability_id: step.capability.clone(),
            // Risk comes from the registry; an unknown capability is HIGH.
            risk_level: capability
                .and_then(|c| c.risk.as_ref())
                .map_or(common::RiskLevel::High as i32, |r| r.level),
            requires_approval: capability
                .and_then(|c| c.risk.as_ref())
                .is_some_and(|r| r.requires_approval),
            operation_type: capability.map_or(0, |c| c.operation_type),
            inputs: Some(to_proto_struct(inputs)),
            environment: self.inner.config.environment.clone(),
        }
    }

    /// A valid spec this deployment runs: its `metadata.environment`, a
    /// label, may not claim another environment than the deployment's.
    pub(super) fn admit(&self, draft: &WorkflowDraft) -> Result<WorkflowSpec, WorkflowError> {
        let spec = validate_workflow(draft).map_err(WorkflowError::InvalidWorkflow)?;
        let deployed = &self.inner.config.environment;
        if !spec.environment.is_empty() && !deployed.is_empty() && &spec.environment != deployed {
            return Err(WorkflowError::InvalidWorkflow(vec![
                airt_kit::status::FieldViolation::new(
                    "spec.metadata.environment",
                    format!(
                        "this deployment is {deployed:?}, not {:?}; the environment comes from the service's configuration",
                        spec.environment
                    ),
                ),
            ]));
        }
        Ok(spec)
    }

    /// Looks up and evaluates one ACTION step with its statically known
    /// inputs (those that need earlier steps' outputs are deferred).
    pub(super) async fn assess(&self, run: &Run, step: &StepSpec) -> Result<Assessment, GateError> {
        let deadline = self.step_deadline(run, step);
        let empty = Map::new();
        let scope = Scope {
            initial_state: &run.spec.initial_state,
            outputs: &empty,
        };
        let mut known = Map::new();
        let mut deferred = Vec::new();
        for (key, value) in &step.inputs {
            match resolve(value, scope) {
                Ok(value) => {
                    known.insert(key.clone(), value);
                }
                Err(_) => deferred.push(key.clone()),
            }
        }
        let capability = self
            .inner
            .registry
            .capability(&step.capability, deadline)
            .await?;
        let spec = capability.as_ref().and_then(|c| c.spec.clone());
        if let Some(spec) = &spec {
            Catalogue::normalise_paths(&spec.handler, &mut known);
        }
        let context = self.policy_context(run, step, spec.as_ref(), &known);
        let decision = self.inner.policy.evaluate(context, deadline).await?;
        Ok(Assessment {
            capability,
            known,
            deferred,
            decision,
        })
    }

    /// Preflight: the first step that would be denied fails the workflow
    /// before anything runs. Returns that step and the reason.
    pub(super) async fn preflight(
        &self,
        run: &Run,
    ) -> Result<Option<(String, String)>, WorkflowError> {
        for step in run
            .spec
            .steps
            .iter()
            .filter(|s| s.step_type == StepType::Action)
        {
            let assessment = match self.assess(run, step).await {
                Ok(assessment) => assessment,
                Err(error) => {
                    return Ok(Some((
                        step.name.clone(),
                        format!("preflight: step {}: {error}", step.name),
                    )));
                }
            };
            let record = &assessment.decision;
            if record.decision == policy::Decision::Deny as i32 {
                let reason = format!(
                    "preflight: step {}: policy denied: rule {}: {}",
                    step.name, record.rule_id, record.reason
                );
                let spec = assessment.capability.as_ref().and_then(|c| c.spec.as_ref());
                self.record_decision(run, step, spec, assessment.known.clone(), record)
                    .await?;
                self.transition(
                    &run.workflow_id,
                    Transition::Step {
                        step: step.name.clone(),
                        status: StepStatus::Denied,
                        attempt: None,
                        error: reason.clone(),
                    },
                )
                .await?;
                return Ok(Some((step.name.clone(), reason)));
            }
        }
        Ok(None)
    }

    /// What would happen to each step of `draft` if `submitter` submitted
    /// it now: capability, risk and policy decision per step, from the
    /// statically known inputs. Nothing is stored or executed.
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
        for step in &run.spec.steps {
            if step.step_type == StepType::HumanApproval {
                plans.push(StepPlan {
                    step_name: step.name.clone(),
                    capability: None,
                    decision: None,
                    deferred_inputs: Vec::new(),
                });
                continue;
            }
            let assessment = self
                .assess(&run, step)
                .await
                .map_err(|e| WorkflowError::Unavailable(e.to_string()))?;
            plans.push(StepPlan {
                step_name: step.name.clone(),
                capability: assessment.capability,
                decision: Some(assessment.decision),
                deferred_inputs: assessment.deferred,
            });
        }
        Ok(plans)
    }

    /// Records the registry's answer and the decision, with the exact
    /// inputs the decision was obtained for.
    pub(super) async fn record_decision(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: Option<&registry::CapabilitySpec>,
        inputs: Map<String, Value>,
        record: &policy::DecisionRecord,
    ) -> Result<(), WorkflowError> {
        let decided = Self::decided(step, capability, inputs, record);
        self.transition(&run.workflow_id, decided).await
    }

    /// The registry's answer and the decision for a step, as a transition.
    pub(super) fn decided(
        step: &StepSpec,
        capability: Option<&registry::CapabilitySpec>,
        inputs: Map<String, Value>,
        record: &policy::DecisionRecord,
    ) -> Transition {
        let risk = capability
            .and_then(|c| c.risk.as_ref())
            .map_or("HIGH", |r| risk_name(r.level));
        let version = capability
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.version.clone())
            .unwrap_or_default();
        let mut decision = decision_json(record);
        if capability
            .is_some_and(|c| c.lifecycle == registry::CapabilityLifecycle::Deprecated as i32)
        {
            // Flagged on the step, its event and its audit entry.
            decision["warnings"] = json!([format!("capability {} is DEPRECATED", step.capability)]);
        }
        Transition::StepDecided {
            step: step.name.clone(),
            risk_level: risk.to_owned(),
            capability_version: version,
            resolved_inputs: Value::Object(inputs),
            decision,
        }
    }
}
