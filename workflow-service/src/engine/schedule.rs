//! Driving a workflow: what a run does with it, where it stands, which
//! steps start (a DAG, up to `max_parallel`), cancellation, and how it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airt_kit::Principal;
use serde_json::{Map, Value, json};

use super::{CancelFlag, Claim, Engine, Outcome, Progress, Run, StepStart};
use crate::domain::{StepStatus, WorkflowStatus, validate_workflow};
use crate::error::WorkflowError;
use crate::store::{ApprovalRow, Transition, WorkflowRow};

impl Engine {
    /// One step forward for a workflow whose slot is held.
    pub(super) async fn advance(
        &self,
        workflow_id: &str,
        flag: &CancelFlag,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let row = self.workflow_row(workflow_id).await?;
        let status = row.status()?;
        if status.is_terminal() {
            return Ok(status);
        }
        let run = Arc::new(self.load_run(&row).await?);
        if status == WorkflowStatus::RollingBack {
            // Interrupted rollback: continue at the first unfinished compensation.
            return self
                .rollback(&run, &row.failure_reason, &row.failed_step)
                .await;
        }
        if let Some((rollback, why)) = flag.requested()
            && status != WorkflowStatus::Running
        {
            return self.settle_cancel(&run, rollback, &why).await;
        }
        // PENDING means no step was touched: the first step write commits
        // RUNNING with it.
        let progress = if status == WorkflowStatus::Pending {
            Progress::default()
        } else {
            self.progress(&run).await?
        };
        if status == WorkflowStatus::Paused && !progress.actionable() {
            return Ok(status);
        }
        self.drive(&run, flag, status, progress).await
    }

    /// Stops a workflow that is not being driven: skips what has not run,
    /// then rolls back (ROLLED_BACK / COMPENSATION_FAILED) or stops
    /// (CANCELLED).
    pub(super) async fn settle_cancel(
        &self,
        run: &Run,
        rollback: bool,
        why: &str,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let reason = format!("cancelled: {why}");
        self.skip_remaining(run, &reason).await?;
        if rollback && !run.outputs().is_empty() {
            return self.rollback(run, &reason, "").await;
        }
        self.set_status(run, WorkflowStatus::Cancelled, &reason, "")
            .await?;
        Ok(WorkflowStatus::Cancelled)
    }

    /// Where a workflow stands: its steps, and the state of the approvals
    /// its waiting steps wait for.
    pub(super) async fn progress(&self, run: &Run) -> Result<Progress, WorkflowError> {
        let mut progress = Progress::default();
        let approvals: HashMap<String, ApprovalRow> = self
            .inner
            .store
            .approvals_of(&run.workflow_id)
            .await?
            .into_iter()
            .map(|a| (a.approval_id.clone(), a))
            .collect();
        for step in self.inner.store.steps(&run.workflow_id).await? {
            let name = step.step_name.clone();
            match step.status()? {
                StepStatus::Succeeded => {
                    progress.done.insert(name.clone());
                    progress.started.insert(name);
                }
                StepStatus::Pending => {}
                // Interrupted by a crash: run again from that attempt.
                StepStatus::Running => {
                    let attempt = u32::try_from(step.attempt.max(1)).unwrap_or(1);
                    // An approved step interrupted while executing keeps its
                    // approval (its digest is checked again).
                    if let Some(approval) = approvals.get(&step.approval_id)
                        && approval.status()? == crate::domain::ApprovalStatus::Approved
                    {
                        progress.approved.insert(name.clone(), approval.clone());
                    }
                    progress.interrupted.insert(name, attempt);
                }
                StepStatus::Failed
                | StepStatus::Denied
                | StepStatus::Rejected
                | StepStatus::Expired => {
                    progress
                        .failed
                        .get_or_insert((name.clone(), step.error.clone()));
                    progress.started.insert(name);
                }
                StepStatus::AwaitingApproval => {
                    let approval = approvals.get(&step.approval_id);
                    match approval.map(ApprovalRow::status).transpose()? {
                        Some(crate::domain::ApprovalStatus::Approved) => {
                            progress
                                .approved
                                .insert(name, approval.cloned().expect("checked above"));
                        }
                        Some(crate::domain::ApprovalStatus::Pending) => {
                            progress.waiting = true;
                            progress.started.insert(name);
                        }
                        Some(crate::domain::ApprovalStatus::Rejected) => {
                            let a = approval.expect("checked above");
                            let comment = if a.comment.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", a.comment)
                            };
                            let reason = format!(
                                "approval {} rejected by {}{comment}",
                                a.approval_id, a.decided_by
                            );
                            progress.started.insert(name.clone());
                            progress.settled.push((name, StepStatus::Rejected, reason));
                        }
                        Some(crate::domain::ApprovalStatus::Expired) => {
                            let a = approval.expect("checked above");
                            let reason = format!(
                                "approval {} expired at {} without a decision",
                                a.approval_id,
                                crate::domain::approval::rfc3339(a.expires_at_us)
                            );
                            progress.started.insert(name.clone());
                            progress.settled.push((name, StepStatus::Expired, reason));
                        }
                        // Voided before its replacement was requested: run
                        // the step again, which requests a new approval.
                        Some(crate::domain::ApprovalStatus::Void) | None => {
                            progress.orphaned = true;
                        }
                    }
                }
                _ => {
                    progress.started.insert(name);
                }
            }
        }
        Ok(progress)
    }

    /// A run's context from its stored row, with the outputs of the steps
    /// that already succeeded.
    pub(super) async fn load_run(&self, row: &WorkflowRow) -> Result<Run, WorkflowError> {
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
        let outputs = if row.status()? == WorkflowStatus::Pending {
            Map::new()
        } else {
            self.inner
                .store
                .steps(&row.workflow_id)
                .await?
                .into_iter()
                // Succeeded, possibly compensated since: their outputs feed
                // later steps and explicit compensations.
                .filter(|s| s.completed_seq > 0)
                .map(|s| {
                    (
                        s.step_name,
                        serde_json::from_str(&s.outputs).unwrap_or(Value::Null),
                    )
                })
                .collect()
        };
        Ok(Run {
            workflow_id: row.workflow_id.clone(),
            spec,
            submitter,
            deadline,
            outputs: Mutex::new(outputs),
        })
    }

    pub(super) async fn drive(
        &self,
        run: &Arc<Run>,
        flag: &CancelFlag,
        from: WorkflowStatus,
        progress: Progress,
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

        let Progress {
            mut done,
            mut started,
            mut approved,
            settled,
            waiting,
            failed,
            interrupted,
            ..
        } = progress;
        // A step that failed before an interruption fails the workflow.
        let mut failure: Option<(String, String)> = failed;
        // Rejected or expired approvals fail their steps.
        for (step, status, reason) in settled {
            self.transition(
                workflow_id,
                Transition::Step {
                    step: step.clone(),
                    status,
                    attempt: None,
                    error: reason.clone(),
                },
            )
            .await?;
            failure.get_or_insert((step, reason));
        }
        let max_parallel = run.spec.options.max_parallel as usize;
        let mut running = tokio::task::JoinSet::new();
        // While a step waits for a human no new step starts, except the
        // approved ones.
        let mut paused = waiting;
        loop {
            let mut spawned = false;
            if failure.is_none() && flag.requested().is_none() && !flag.lost() {
                for step in &run.spec.steps {
                    if running.len() >= max_parallel {
                        break;
                    }
                    let ready = !started.contains(&step.name)
                        && step.depends_on.iter().all(|d| done.contains(d))
                        && (!paused || approved.contains_key(&step.name));
                    if ready {
                        started.insert(step.name.clone());
                        let start = StepStart {
                            approval: approved.remove(&step.name),
                            first_attempt: interrupted.get(&step.name).copied().unwrap_or(1),
                        };
                        let (engine, run, step) = (self.clone(), run.clone(), step.clone());
                        running.spawn(async move {
                            let outcome = engine.run_step(&run, &step, start).await;
                            (step.name, outcome)
                        });
                        spawned = true;
                    }
                }
            }
            if !spawned && !running.is_empty() {
                // No step starts now whose first commit could carry them.
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
                    done.insert(name);
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
        // What is still deferred rides with the final status, unless the
        // stored steps are read first (skipping what is left, rolling back).
        if failure.is_some() || flag.requested().is_some() {
            self.flush(workflow_id).await?;
        }
        if let Some((rollback, why)) = flag.requested()
            && failure.is_none()
        {
            let reason = format!("cancelled: {why}");
            self.skip_remaining(run, &reason).await?;
            if rollback && !done.is_empty() {
                return self.rollback(run, &reason, "").await;
            }
            self.set_status(run, WorkflowStatus::Cancelled, &reason, "")
                .await?;
            return Ok(WorkflowStatus::Cancelled);
        }
        if let Some((step, reason)) = failure {
            self.skip_remaining(run, &reason).await?;
            // With nothing completed there is nothing to roll back: FAILED.
            if run.spec.options.auto_rollback && !done.is_empty() {
                return self.rollback(run, &reason, &step).await;
            }
            self.set_status(run, WorkflowStatus::Failed, &reason, &step)
                .await?;
            return Ok(WorkflowStatus::Failed);
        }
        if paused {
            self.set_status(run, WorkflowStatus::Paused, "", "").await?;
            return Ok(WorkflowStatus::Paused);
        }
        self.set_status(run, WorkflowStatus::Completed, "", "")
            .await?;
        Ok(WorkflowStatus::Completed)
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
