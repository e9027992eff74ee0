//! What happens next to a workflow, decided from its stored steps and
//! approvals — plain functions, no IO. The engine reads the rows, asks
//! these functions, and carries out the answer:
//!
//! - [`entry`]: what a run does with a workflow in a given status;
//! - [`progress`]: where a started workflow stands (done, waiting,
//!   interrupted, settled by a human, failed);
//! - [`ready`]: which steps start now;
//! - [`must_flush`]: when deferred writes are committed on their own;
//! - [`ending`]: the workflow's next status once no step is in flight.

use std::collections::{HashMap, HashSet};

use super::{ApprovalStatus, StepSpec, StepStatus, WorkflowStatus};

/// A stored step, as far as progress is concerned.
#[derive(Debug, Clone, Copy)]
pub struct StepState<'a> {
    pub name: &'a str,
    pub status: StepStatus,
    /// The attempt last started (0 before the first).
    pub attempt: i64,
    pub error: &'a str,
    /// The approval the step waits for (or ran with); empty if none.
    pub approval_id: &'a str,
}

/// A stored approval, as far as progress is concerned.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalState<'a> {
    pub status: ApprovalStatus,
    pub decided_by: &'a str,
    pub comment: &'a str,
    /// The deadline, as RFC 3339 text (for the reason of an expiry).
    pub expires_at: &'a str,
}

/// Where a workflow stands, from its stored steps and approvals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Succeeded steps.
    pub done: HashSet<String>,
    /// Steps not to schedule again (done, waiting, or settled below).
    pub started: HashSet<String>,
    /// Steps whose approval was granted, with its id: they run now.
    pub approved: HashMap<String, String>,
    /// Steps whose approval was rejected or expired: status and reason.
    pub settled: Vec<(String, StepStatus, String)>,
    /// A step still waits for a decision.
    pub waiting: bool,
    /// A waiting step's approval was voided before a new one was requested.
    pub orphaned: bool,
    /// The first step that had already failed (DENIED, FAILED, ...), with its error.
    pub failed: Option<(String, String)>,
    /// Steps interrupted while RUNNING, with their attempt: executed again
    /// from that attempt, under the same idempotency key.
    pub interrupted: HashMap<String, u32>,
}

impl Progress {
    /// Whether anything can happen to a paused workflow now.
    pub fn actionable(&self) -> bool {
        !self.approved.is_empty() || !self.settled.is_empty() || self.orphaned
    }
}

/// What a run does with a workflow it holds, by the workflow's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Finished: nothing to do.
    Finished,
    /// A rollback was interrupted: continue it.
    ContinueRollback,
    /// Cancelled while nobody drove it: settle the cancellation.
    SettleCancel,
    /// Never started: run it (no step row to read).
    Start,
    /// Started (RUNNING after a crash, or PAUSED): read its progress; a
    /// PAUSED one goes on only when [`Progress::actionable`].
    Resume,
}

/// What a run does with a workflow in `status`, with a cancellation
/// `cancel_requested` or not. A RUNNING workflow sees a cancellation as it
/// drives (its steps in flight finish first).
pub fn entry(status: WorkflowStatus, cancel_requested: bool) -> Entry {
    match status {
        s if s.is_terminal() => Entry::Finished,
        WorkflowStatus::RollingBack => Entry::ContinueRollback,
        WorkflowStatus::Running => Entry::Resume,
        _ if cancel_requested => Entry::SettleCancel,
        WorkflowStatus::Pending => Entry::Start,
        _ => Entry::Resume,
    }
}

/// Where a started workflow stands. `approval_of` finds a step's approval
/// by id (`None`: no such approval).
pub fn progress<'a>(
    steps: &[StepState<'a>],
    approval_of: impl Fn(&str) -> Option<ApprovalState<'a>>,
) -> Progress {
    let mut progress = Progress::default();
    for step in steps {
        let name = step.name.to_owned();
        let approval = || approval_of(step.approval_id);
        match step.status {
            StepStatus::Succeeded => {
                progress.done.insert(name.clone());
                progress.started.insert(name);
            }
            StepStatus::Pending => {}
            // Interrupted by a crash: run again from that attempt. An
            // approved step keeps its approval (its digest is checked again).
            StepStatus::Running => {
                let attempt = u32::try_from(step.attempt.max(1)).unwrap_or(1);
                if approval().is_some_and(|a| a.status == ApprovalStatus::Approved) {
                    progress
                        .approved
                        .insert(name.clone(), step.approval_id.to_owned());
                }
                progress.interrupted.insert(name, attempt);
            }
            StepStatus::Failed
            | StepStatus::Denied
            | StepStatus::Rejected
            | StepStatus::Expired => {
                progress
                    .failed
                    .get_or_insert((name.clone(), step.error.to_owned()));
                progress.started.insert(name);
            }
            StepStatus::AwaitingApproval => awaiting(&mut progress, step, approval()),
            StepStatus::Skipped
            | StepStatus::Compensating
            | StepStatus::Compensated
            | StepStatus::CompensationFailed => {
                progress.started.insert(name);
            }
        }
    }
    progress
}

/// A step waiting for `approval`.
fn awaiting(progress: &mut Progress, step: &StepState<'_>, approval: Option<ApprovalState<'_>>) {
    let name = step.name.to_owned();
    let id = step.approval_id;
    match approval {
        Some(a) if a.status == ApprovalStatus::Approved => {
            progress.approved.insert(name, id.to_owned());
        }
        Some(a) if a.status == ApprovalStatus::Pending => {
            progress.waiting = true;
            progress.started.insert(name);
        }
        Some(a) if a.status == ApprovalStatus::Rejected => {
            let comment = if a.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", a.comment)
            };
            let reason = format!("approval {id} rejected by {}{comment}", a.decided_by);
            progress.started.insert(name.clone());
            progress.settled.push((name, StepStatus::Rejected, reason));
        }
        Some(a) if a.status == ApprovalStatus::Expired => {
            let reason = format!(
                "approval {id} expired at {} without a decision",
                a.expires_at
            );
            progress.started.insert(name.clone());
            progress.settled.push((name, StepStatus::Expired, reason));
        }
        // Voided before its replacement was requested: run the step again,
        // which requests a new approval.
        _ => progress.orphaned = true,
    }
}

/// The steps that start now, in spec order: not started, every dependency
/// done, and — while a step waits for a human — only approved ones; at
/// most `capacity`.
pub fn ready<'s>(
    steps: &'s [StepSpec],
    started: &HashSet<String>,
    done: &HashSet<String>,
    paused: bool,
    approved: &HashMap<String, String>,
    capacity: usize,
) -> Vec<&'s StepSpec> {
    steps
        .iter()
        .filter(|step| {
            !started.contains(&step.name)
                && step.depends_on.iter().all(|d| done.contains(d))
                && (!paused || approved.contains_key(&step.name))
        })
        .take(capacity)
        .collect()
}

/// Whether the driver commits its deferred writes on their own now. A
/// deferred write (a step's SUCCEEDED, a first decision) rides with the
/// driver's next commit of the workflow; when no step starts now whose
/// first commit could carry it while others are in flight, or when the
/// stored steps are about to be read (a failure or a cancellation), it is
/// committed at once.
pub fn must_flush(started_now: bool, in_flight: usize, stopping: bool) -> bool {
    stopping || (!started_now && in_flight > 0)
}

/// A workflow's next status once nothing is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Cancelled: skip what is left, then roll back or stop (CANCELLED).
    Cancel { rollback: bool },
    /// A step failed: skip what is left, then roll back or fail (FAILED).
    Fail { rollback: bool },
    /// A step waits for a human.
    Pause,
    /// Every step succeeded.
    Complete,
}

/// What becomes of a workflow whose steps stopped running: a failure wins
/// over a cancellation (the failure is the reason it stops); a rollback
/// happens only if something completed and it was asked for
/// (`auto_rollback`, or a cancellation with rollback).
pub fn ending(
    failed: bool,
    cancel: Option<bool>,
    completed_any: bool,
    auto_rollback: bool,
    paused: bool,
) -> Ending {
    if failed {
        return Ending::Fail {
            rollback: auto_rollback && completed_any,
        };
    }
    if let Some(rollback) = cancel {
        return Ending::Cancel {
            rollback: rollback && completed_any,
        };
    }
    if paused {
        Ending::Pause
    } else {
        Ending::Complete
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
