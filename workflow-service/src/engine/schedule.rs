//! Driving a workflow: what a run does with it, where it stands, which
//! steps start (a DAG, up to `max_parallel`), cancellation, and how it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument as _;

use airt_kit::Principal;
use serde_json::{Value, json};

use super::{CancelFlag, Claim, Engine, Outcome, Run, StepStart};
use crate::domain::approval::rfc3339;
use crate::domain::progress::{self, ApprovalState, Ending, Entry, Progress, StepState};
use crate::domain::{StepSpec, StepStatus, WorkflowStatus, validate_workflow};
use crate::error::WorkflowError;
use crate::store::{ApprovalRow, StepRow, Transition, WorkflowRow};

/// Where a run picks a workflow up: its progress and the granted approvals
/// the approved steps run with.
#[derive(Debug, Default)]
pub(super) struct Resumed {
    progress: Progress,
    approvals: HashMap<String, ApprovalRow>,
}

impl Engine {
    /// One step forward for a workflow whose slot is held.
    pub(super) async fn advance(
        &self,
        workflow_id: &str,
        flag: &CancelFlag,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let row = self.workflow_row(workflow_id).await?;
        let status = row.status()?;
        let entry = progress::entry(status, flag.requested().is_some());
        if entry == Entry::Finished {
            return Ok(status);
        }
        // Every run of a workflow (first, after an approval, after a
        // takeover) is a span in the trace of its submission.
        let span = tracing::info_span!(
            parent: None,
            "workflow.run",
            workflow_id,
            workflow = %row.name,
            from = status.as_str(),
            to = tracing::field::Empty,
        );
        airt_kit::trace::continue_traceparent(&span, &row.trace_parent);
        let ended = self
            .advance_from(row, entry, flag)
            .instrument(span.clone())
            .await;
        if let Ok(status) = &ended {
            span.record("to", status.as_str());
        }
        ended
    }

    async fn advance_from(
        &self,
        row: WorkflowRow,
        entry: Entry,
        flag: &CancelFlag,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let status = row.status()?;
        let (run, steps) = self.load_run(&row).await?;
        let run = Arc::new(run);
        let progress = match entry {
            // Interrupted rollback: continue at the first unfinished compensation.
            Entry::ContinueRollback => {
                return self
                    .rollback(&run, &row.failure_reason, &row.failed_step)
                    .await;
            }
            // Cancelled while nobody drove it: skip what has not run, then
            // roll back or stop.
            Entry::SettleCancel => {
                let completed_any = !run.outputs().is_empty();
                return self.finish(&run, flag, None, completed_any, false).await;
            }
            // No step was touched: the first step write commits RUNNING with it.
            Entry::Start => Resumed::default(),
            Entry::Resume | Entry::Finished => self.progress(&run, steps).await?,
        };
        if status == WorkflowStatus::Paused && !progress.progress.actionable() {
            return Ok(status);
        }
        self.drive(&run, flag, status, progress).await
    }

    /// Where a workflow stands: its steps (`steps` as this run read them,
    /// read now if `None`: only the driver changes them), and the state of
    /// the approvals its waiting steps wait for (see [`progress::progress`]).
    pub(super) async fn progress(
        &self,
        run: &Run,
        steps: Option<Vec<StepRow>>,
    ) -> Result<Resumed, WorkflowError> {
        let steps = match steps {
            Some(steps) => steps,
            None => self.inner.store.steps(&run.workflow_id).await?,
        };
        let approvals = self.inner.store.approvals_of(&run.workflow_id).await?;
        let mut approval_states = HashMap::new();
        for approval in &approvals {
            approval_states.insert(
                approval.approval_id.as_str(),
                (approval.status()?, rfc3339(approval.expires_at_us)),
            );
        }
        let states = steps
            .iter()
            .map(|step| {
                Ok(StepState {
                    name: &step.step_name,
                    status: step.status()?,
                    attempt: step.attempt,
                    error: &step.error,
                    approval_id: &step.approval_id,
                })
            })
            .collect::<Result<Vec<_>, WorkflowError>>()?;
        let by_id: HashMap<&str, &ApprovalRow> = approvals
            .iter()
            .map(|a| (a.approval_id.as_str(), a))
            .collect();
        let progress = progress::progress(&states, |id| {
            let row = by_id.get(id)?;
            let (status, expires_at) = approval_states.get(id)?;
            Some(ApprovalState {
                status: *status,
                decided_by: &row.decided_by,
                comment: &row.comment,
                expires_at,
            })
        });
        let approvals = progress
            .approved
            .values()
            .filter_map(|id| by_id.get(id.as_str()))
            .map(|row| (row.approval_id.clone(), (*row).clone()))
            .collect();
        Ok(Resumed {
            progress,
            approvals,
        })
    }

    /// A run's context from its stored row, with the outputs of the steps
    /// that already succeeded.
    /// The run of a stored workflow, and its steps when they were read
    /// (for the outputs of those that succeeded; a PENDING workflow has
    /// none).
    pub(super) async fn load_run(
        &self,
        row: &WorkflowRow,
    ) -> Result<(Run, Option<Vec<StepRow>>), WorkflowError> {
        let spec = validate_workflow(&row.draft()?).map_err(WorkflowError::InvalidWorkflow)?;
        let roles: Vec<String> = serde_json::from_str(&row.submitter_roles).unwrap_or_default();
        let submitter = Principal::parse(&row.submitter, roles)
            .map_err(|e| WorkflowError::Corrupt(e.to_string()))?;
        // The workflow's time limit counts from its submission, across pauses
        // and restarts.
        let elapsed_us = airt_kit::clock::now_micros().saturating_sub(row.created_at_us);
        let elapsed = Duration::from_micros(u64::try_from(elapsed_us).unwrap_or(0));
        let deadline = spec
            .options
            .max_duration
            .map(|d| Instant::now() + d.saturating_sub(elapsed));
        // A PENDING workflow has no step touched, hence no outputs.
        let steps = if row.status()? == WorkflowStatus::Pending {
            None
        } else {
            Some(self.inner.store.steps(&row.workflow_id).await?)
        };
        let outputs = steps
            .iter()
            .flatten()
            // Succeeded, possibly compensated since: their outputs feed
            // later steps and explicit compensations.
            .filter(|s| s.completed_seq > 0)
            .map(|s| {
                (
                    s.step_name.clone(),
                    serde_json::from_str(&s.outputs).unwrap_or(Value::Null),
                )
            })
            .collect();
        let run = Run {
            workflow_id: row.workflow_id.clone(),
            spec,
            submitter,
            deadline,
            outputs: Mutex::new(outputs),
        };
        Ok((run, steps))
    }

    pub(super) async fn drive(
        &self,
        run: &Arc<Run>,
        flag: &CancelFlag,
        from: WorkflowStatus,
        resumed: Resumed,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let workflow_id = run.workflow_id.as_str();
        if from != WorkflowStatus::Running {
            self.defer(
                workflow_id,
                Transition::Workflow {
                    status: WorkflowStatus::Running,
                    reason: String::new(),
                    failed_step: String::new(),
                    deliveries: Vec::new(),
                },
            );
        }
        if from == WorkflowStatus::Pending
            && run.spec.options.preflight
            && let Some((step, reason)) = self
                .flushing_if_slow(workflow_id, self.preflight(run))
                .await??
        {
            for other in run.spec.steps.iter().filter(|s| s.name != step) {
                self.mark(workflow_id, &other.name, StepStatus::Skipped)
                    .await?;
            }
            self.set_status(run, WorkflowStatus::Failed, &reason, &step)
                .await?;
            return Ok(WorkflowStatus::Failed);
        }
        let Resumed {
            mut progress,
            mut approvals,
        } = resumed;
        // A step that failed before an interruption fails the workflow.
        let mut failure = progress.failed.take();
        // Rejected or expired approvals fail their steps.
        for (step, status, reason) in std::mem::take(&mut progress.settled) {
            let error = reason.clone();
            let settled = Transition::Step {
                step: step.clone(),
                status,
                attempt: None,
                error,
            };
            self.transition(workflow_id, settled).await?;
            failure.get_or_insert((step, reason));
        }
        let max_parallel = run.spec.options.max_parallel as usize;
        let mut running = tokio::task::JoinSet::new();
        // While a step waits for a human no new step starts, except the
        // approved ones.
        let mut paused = progress.waiting;
        loop {
            let mut started_now = false;
            if failure.is_none() && flag.requested().is_none() && !flag.lost() {
                let capacity = max_parallel.saturating_sub(running.len());
                let ready: Vec<StepSpec> = progress::ready(
                    &run.spec.steps,
                    &progress.started,
                    &progress.done,
                    paused,
                    &progress.approved,
                    capacity,
                )
                .into_iter()
                .cloned()
                .collect();
                for step in ready {
                    progress.started.insert(step.name.clone());
                    let start = StepStart {
                        approval: progress
                            .approved
                            .remove(&step.name)
                            .and_then(|id| approvals.remove(&id)),
                        first_attempt: progress.interrupted.get(&step.name).copied().unwrap_or(1),
                    };
                    let (engine, run) = (self.clone(), run.clone());
                    running.spawn(
                        async move {
                            let outcome = engine.run_step(&run, &step, start).await;
                            (step.name, outcome)
                        }
                        .in_current_span(),
                    );
                    started_now = true;
                }
            }
            if progress::must_flush(started_now, running.len(), false) {
                self.flush(workflow_id).await?;
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (name, outcome) =
                joined.map_err(|e| WorkflowError::Corrupt(format!("step task: {e}")))?;
            match outcome? {
                Outcome::Succeeded(outputs) => {
                    run.outputs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), outputs);
                    progress.done.insert(name);
                }
                Outcome::Failed { reason, .. } => {
                    failure.get_or_insert((name, reason));
                }
                Outcome::AwaitingApproval => paused = true,
            }
        }
        if flag.lost() {
            return Err(WorkflowError::LeaseLost(run.workflow_id.clone()));
        }
        let completed_any = !progress.done.is_empty();
        self.finish(run, flag, failure, completed_any, paused).await
    }

    /// Ends a drive with nothing in flight: FAILED or rolled back after a
    /// failure, CANCELLED or rolled back after a cancellation, PAUSED, or
    /// COMPLETED (see [`progress::ending`]).
    async fn finish(
        &self,
        run: &Run,
        flag: &CancelFlag,
        failure: Option<(String, String)>,
        completed_any: bool,
        paused: bool,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let cancel = flag.requested();
        let ending = progress::ending(
            failure.is_some(),
            cancel.as_ref().map(|(rollback, _)| *rollback),
            completed_any,
            run.spec.options.auto_rollback,
            paused,
        );
        // What is still deferred rides with the final status, unless the
        // stored steps are read first (skipping what is left, rolling back).
        let stopping = matches!(ending, Ending::Fail { .. } | Ending::Cancel { .. });
        if progress::must_flush(false, 0, stopping) {
            self.flush(&run.workflow_id).await?;
        }
        let (status, reason, step) = match ending {
            Ending::Fail { rollback } => {
                let (step, reason) = failure.unwrap_or_default();
                self.skip_remaining(run, &reason).await?;
                if rollback {
                    return self.rollback(run, &reason, &step).await;
                }
                (WorkflowStatus::Failed, reason, step)
            }
            Ending::Cancel { rollback } => {
                let why = cancel.map(|(_, why)| why).unwrap_or_default();
                let reason = format!("cancelled: {why}");
                self.skip_remaining(run, &reason).await?;
                if rollback {
                    return self.rollback(run, &reason, "").await;
                }
                (WorkflowStatus::Cancelled, reason, String::new())
            }
            Ending::Pause => (WorkflowStatus::Paused, String::new(), String::new()),
            Ending::Complete => (WorkflowStatus::Completed, String::new(), String::new()),
        };
        self.set_status(run, status, &reason, &step).await?;
        Ok(status)
    }

    /// Marks every step that has not started, or waits for approval,
    /// SKIPPED; the approvals they wait for become VOID.
    pub(super) async fn skip_remaining(&self, run: &Run, why: &str) -> Result<(), WorkflowError> {
        for step in self.inner.store.steps(&run.workflow_id).await? {
            let status = step.status()?;
            if status == StepStatus::AwaitingApproval && !step.approval_id.is_empty() {
                self.void_approval(run, &step.step_name, &step.approval_id, why)
                    .await?;
            }
            if matches!(status, StepStatus::Pending | StepStatus::AwaitingApproval) {
                self.mark(&run.workflow_id, &step.step_name, StepStatus::Skipped)
                    .await?;
            }
        }
        Ok(())
    }

    /// Cancels a workflow that has not finished: no new step starts; with
    /// `rollback`, completed steps are compensated (ROLLED_BACK or
    /// COMPENSATION_FAILED), otherwise it stops where it is (CANCELLED).
    /// A paused workflow is settled before this returns; one with steps in
    /// flight stops when they finish.
    pub async fn cancel(
        &self,
        workflow_id: &str,
        caller: &Principal,
        rollback: bool,
        reason: &str,
    ) -> Result<WorkflowRow, WorkflowError> {
        let row = self.workflow_row(workflow_id).await?;
        let status = row.status()?;
        if status.is_terminal() {
            return Err(WorkflowError::FailedPrecondition(format!(
                "workflow {workflow_id} is already {status}"
            )));
        }
        // For whichever instance drives it (it reads this with its lease).
        self.inner
            .store
            .request_cancel(
                workflow_id,
                &caller.to_string(),
                &json!({"rollback": rollback, "reason": reason}),
            )
            .await?;
        let slot = self.slot(workflow_id);
        slot.cancel.request(rollback, reason);
        match slot.drive.try_lock() {
            Ok(driving) => {
                let result = self.drive_leased(workflow_id, &slot, Claim::Take).await;
                drop(driving);
                self.release(workflow_id, &result);
                result?;
            }
            // Being driven: it sees the request; settle afterwards if it
            // paused before it did.
            Err(_) => self.run_in_background(workflow_id),
        }
        self.workflow_row(workflow_id).await
    }

    /// The stored workflow, or NOT_FOUND.
    pub(super) async fn workflow_row(
        &self,
        workflow_id: &str,
    ) -> Result<WorkflowRow, WorkflowError> {
        self.inner
            .store
            .get(workflow_id)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(workflow_id.to_owned()))
    }

    pub(super) async fn status_of(
        &self,
        workflow_id: &str,
    ) -> Result<WorkflowStatus, WorkflowError> {
        self.workflow_row(workflow_id).await?.status()
    }
}
