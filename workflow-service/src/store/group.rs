//! Group commit: the transitions of several workflows that are ready at the
//! same time commit in one transaction, with one audit append and one
//! events insert, instead of one transaction (and one commit flush, one
//! turn at the audit chain's head lock) each.
//!
//! Callers queue a [`Job`] and wait for its answer; up to [`WRITERS`] writer
//! tasks take whatever is queued when they are free (no waiting for more:
//! a job alone commits at once) and answer each job after the commit, so
//! nothing a caller does next can act on an uncommitted write. Each job
//! keeps its own fence: a job whose lease was lost (or whose workflow does
//! not exist) writes nothing and gets its own error while the others
//! commit. Any other error inside the batch rolls it back and each job is
//! written again alone, so an error reaches only the job that caused it,
//! unless the database is unavailable (then every job gets that error at
//! once rather than wait for it again in turn). A failed COMMIT is never
//! retried (it may have taken effect): every job of that batch gets the
//! error.

use std::collections::VecDeque;
use std::sync::Mutex;

use airt_kit::audit::{AppendAudit as _, NewAuditEvent};
use airt_kit::db::{Database, TransactionTimer};
use serde_json::json;
use tokio::sync::oneshot;

use super::leases::{Lease, NEXT_EVENTS_CLAIMING, instance_prefix};
use super::{
    NEXT_EVENTS, NEXT_EVENTS_WITH_STATUS, Transition, WorkflowRow, WorkflowStore, approvals,
};
use crate::domain::{CompensationStatus, StepStatus, WorkflowStatus};
use crate::error::WorkflowError;

/// Transactions one process writes at the same time: one fills while the
/// other flushes its commit.
const WRITERS: usize = 2;
/// Transitions (events and audit entries) per transaction at most.
const MAX_BATCH_TRANSITIONS: usize = 256;

/// One caller's writes to one workflow, committed together.
#[derive(Debug)]
pub(super) struct Job {
    pub workflow_id: String,
    pub actor: String,
    /// Empty: no fence.
    pub lease_owner: String,
    /// A lease to take in the same statement (only without a fence).
    pub claim: Option<LeaseClaim>,
    pub work: Work,
    pub reply: oneshot::Sender<Result<Committed, WorkflowError>>,
}

/// The lease a job takes for `owner` until `until_us` when
/// [`WorkflowStore::claim`] would (free, expired, or `owner`'s instance's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaim {
    pub owner: String,
    pub until_us: i64,
}

/// What a committed job answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The sequence number of the job's last event.
    pub last_seq: i64,
    /// The time written into its rows (`decided_at_us`, `updated_at_us`).
    pub at_us: i64,
    /// The answer to the job's [`LeaseClaim`], if it made one.
    pub lease: Option<Lease>,
}

#[derive(Debug)]
pub(super) enum Work {
    /// Transitions of a stored workflow, in order.
    Transitions(Vec<Transition>),
    /// A new workflow: its row, its PENDING steps and its first event.
    Submission(Box<Submission>),
}

/// A new workflow's rows, as `WorkflowStore::create_leased` answers them.
#[derive(Debug)]
pub(super) struct Submission {
    pub row: WorkflowRow,
    /// The lease its submitter's instance takes at once (empty: none).
    pub lease_owner: String,
    pub lease_until_us: i64,
    pub steps: Vec<String>,
    pub detail: serde_json::Value,
}

impl Job {
    /// The events (and audit entries) it writes.
    fn weight(&self) -> usize {
        match &self.work {
            Work::Transitions(transitions) => transitions.len(),
            Work::Submission(_) => 1,
        }
    }
}

/// The jobs waiting for a writer.
#[derive(Debug, Default)]
pub(super) struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    writers: usize,
}

impl Queue {
    /// Queues `job`; true when the caller must start a writer for it.
    fn push(&self, job: Job) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.jobs.push_back(job);
        if state.writers < WRITERS {
            state.writers += 1;
            return true;
        }
        false
    }

    /// The next batch, oldest first; `None` (and the writer gives up its
    /// place, in the same critical section) when nothing waits.
    fn next_batch(&self, slot: &mut WriterSlot<'_>) -> Option<Vec<Job>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.jobs.is_empty() {
            state.writers -= 1;
            slot.held = false;
            return None;
        }
        let mut batch = Vec::new();
        let mut transitions = 0;
        while let Some(job) = state.jobs.front() {
            if !batch.is_empty() && transitions + job.weight() > MAX_BATCH_TRANSITIONS {
                break;
            }
            transitions += job.weight();
            batch.extend(state.jobs.pop_front());
        }
        Some(batch)
    }
}

/// A writer's place; given back if the writer task ends any other way than
/// finding the queue empty (a panic, the runtime shutting down).
struct WriterSlot<'a> {
    queue: &'a Queue,
    held: bool,
}

impl Drop for WriterSlot<'_> {
    fn drop(&mut self) {
        if self.held {
            let mut state = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
            state.writers -= 1;
        }
    }
}

/// Why a batch did not commit.
enum Failure {
    /// Before COMMIT: nothing was written.
    NotWritten(WorkflowError),
    /// COMMIT itself failed: it may or may not have taken effect.
    Commit(sqlx::Error),
}

/// Writes every job's transitions inside transaction `$tx` (one expansion
/// per backend); evaluates to each job's last event sequence, or its fence
/// error.
macro_rules! write_jobs {
    ($tx:ident, $jobs:expr, $now:expr) => {
        async {
            let (jobs, now): (&[Job], i64) = ($jobs, $now);
            let mut results = Vec::with_capacity(jobs.len());
            let mut audit = Vec::new();
            let mut events = Vec::new();
            for job in jobs {
                let workflow_id = job.workflow_id.as_str();
                let transitions = match &job.work {
                    Work::Transitions(transitions) => transitions.as_slice(),
                    Work::Submission(submission) => {
                        write_submission!($tx, submission);
                        // The workflow row was inserted with event_seq 1: this event.
                        let detail = submission.detail.to_string();
                        events.push((workflow_id, 1, "workflow.submitted", "", detail));
                        audit.push(
                            NewAuditEvent::new(
                                &job.actor,
                                "workflow.submitted",
                                "workflow",
                                workflow_id,
                            )
                            .with_details(submission.detail.clone()),
                        );
                        results.push(Ok(Committed {
                            last_seq: 1,
                            at_us: now,
                            lease: None,
                        }));
                        continue;
                    }
                };
                let count = i64::try_from(transitions.len()).unwrap_or(i64::MAX);
                // A claiming job's statement sets the lease, not a status.
                let folded = single_status(transitions).filter(|_| job.claim.is_none());
                let mut lease = None;
                // The sequence numbers of the job's events first: one
                // statement, and the fence (the lease check) before anything
                // of the job is written. Its one status change rides on that
                // statement (it updates the same row).
                let last: Option<i64> = match (folded.map(|i| &transitions[i]), &job.claim) {
                    (
                        Some(Transition::Workflow {
                            status,
                            reason,
                            failed_step,
                            ..
                        }),
                        _,
                    ) => {
                        sqlx::query_scalar(NEXT_EVENTS_WITH_STATUS)
                            .bind(workflow_id)
                            .bind(now)
                            .bind(&job.lease_owner)
                            .bind(count)
                            .bind(status.as_str())
                            .bind(reason)
                            .bind(failed_step)
                            .bind(status.is_terminal())
                            .bind(status.is_terminal() || *status == WorkflowStatus::Paused)
                            .fetch_optional(&mut *$tx)
                            .await?
                    }
                    (_, Some(claim)) => {
                        let answer: Option<(i64, bool, String)> =
                            sqlx::query_as(NEXT_EVENTS_CLAIMING)
                                .bind(workflow_id)
                                .bind(now)
                                .bind(count)
                                .bind(&claim.owner)
                                .bind(claim.until_us)
                                .bind(instance_prefix(&claim.owner))
                                .fetch_optional(&mut *$tx)
                                .await?;
                        answer.map(|(last, held, cancel_request)| {
                            lease = Some(Lease {
                                held,
                                cancel_request,
                            });
                            last
                        })
                    }
                    _ => {
                        sqlx::query_scalar(NEXT_EVENTS)
                            .bind(workflow_id)
                            .bind(now)
                            .bind(&job.lease_owner)
                            .bind(count)
                            .fetch_optional(&mut *$tx)
                            .await?
                    }
                };
                let Some(last) = last else {
                    results.push(Err(if job.lease_owner.is_empty() {
                        WorkflowError::NotFound(workflow_id.to_owned())
                    } else {
                        WorkflowError::LeaseLost(workflow_id.to_owned())
                    }));
                    continue;
                };
                for (index, (seq, transition)) in (last - count + 1..).zip(transitions).enumerate()
                {
                    let detail = transition.detail();
                    if folded != Some(index) {
                        let changed = write_transition!($tx, workflow_id, now, transition);
                        if changed.rows_affected() == 0
                            && !matches!(transition, Transition::CompensationPlanned { .. })
                        {
                            return Err(WorkflowError::NotFound(format!(
                                "{workflow_id}/{}",
                                transition.step()
                            )));
                        }
                    }
                    for delivery in transition.deliveries() {
                        approvals::insert_delivery!($tx, workflow_id, delivery, now);
                    }
                    events.push((
                        workflow_id,
                        seq,
                        transition.kind(),
                        transition.step(),
                        detail.to_string(),
                    ));
                    let mut audit_detail = detail;
                    if let Some(map) = audit_detail.as_object_mut() {
                        map.insert("step".into(), json!(transition.step()));
                        map.insert("event_seq".into(), json!(seq));
                    }
                    audit.push(
                        NewAuditEvent::new(&job.actor, transition.kind(), "workflow", workflow_id)
                            .with_details(audit_detail),
                    );
                }
                results.push(Ok(Committed {
                    last_seq: last,
                    at_us: now,
                    lease,
                }));
            }
            if !events.is_empty() {
                // At most MAX_BATCH_TRANSITIONS rows of 6 parameters (a
                // single job over that bound is the engine's own, far below
                // both backends' limits).
                let mut insert = sqlx::QueryBuilder::new(super::INSERT_EVENTS_PREFIX);
                insert.push_values(
                    &events,
                    |mut row, (workflow_id, seq, kind, step, detail)| {
                        row.push_bind(*workflow_id)
                            .push_bind(*seq)
                            .push_bind(now)
                            .push_bind(*kind)
                            .push_bind(*step)
                            .push_bind(detail.as_str());
                    },
                );
                insert.build().execute(&mut *$tx).await?;
                // Last, so the audit chain's head row (one lock for every
                // writer of this database) is held only from here to the
                // commit.
                $tx.append_audit_batch(&audit).await?;
            }
            Ok::<_, WorkflowError>(results)
        }
    };
}

/// Inserts a new workflow's row and its PENDING steps inside `$tx`.
macro_rules! write_submission {
    ($tx:ident, $submission:expr) => {{
        let submission: &Submission = $submission;
        let row = &submission.row;
        sqlx::query(super::INSERT_WORKFLOW)
            .bind(&row.workflow_id)
            .bind(&row.name)
            .bind(&row.draft_json)
            .bind(&row.submitter)
            .bind(&row.submitter_roles)
            .bind(&row.request_id)
            .bind(&row.owner)
            .bind(row.created_at_us)
            .bind(&submission.lease_owner)
            .bind(submission.lease_until_us)
            .bind(&row.trace_parent)
            .execute(&mut *$tx)
            .await?;
        // Every step PENDING, in one statement (a valid spec has 1 to
        // 1,000 steps: at most 3,000 parameters, under both backends' limits).
        let mut steps = sqlx::QueryBuilder::new(super::INSERT_STEPS_PREFIX);
        steps.push_values(
            submission.steps.iter().enumerate(),
            |mut step, (position, name)| {
                step.push_bind(&row.workflow_id)
                    .push_bind(name.as_str())
                    .push_bind(position as i64)
                    .push_unseparated(
                        ", 'PENDING', 0, '', '', '{}', 'null', '{}', '', '', 'null', 0, 0, 0",
                    );
            },
        );
        steps.build().execute(&mut *$tx).await?;
    }};
}

/// The position of the only workflow status change among `transitions`.
fn single_status(transitions: &[Transition]) -> Option<usize> {
    let mut statuses = transitions
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t, Transition::Workflow { .. }));
    match (statuses.next(), statuses.next()) {
        (Some((index, _)), None) => Some(index),
        _ => None,
    }
}

/// Commits `$jobs` in the transaction `$begin` opens.
macro_rules! commit_jobs_on {
    ($begin:expr, $jobs:expr, $now:expr) => {{
        let timer = TransactionTimer::start();
        let mut tx = $begin.await.map_err(|e| Failure::NotWritten(e.into()))?;
        let results = write_jobs!(tx, $jobs, $now)
            .await
            .map_err(Failure::NotWritten)?;
        timer.finish(tx.commit().await).map_err(Failure::Commit)?;
        Ok(results)
    }};
}

impl WorkflowStore {
    /// Commits `work` with other callers' (see the module's comment),
    /// taking the workflow's lease with it if `claim` says so.
    pub(super) async fn commit_work(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        claim: Option<LeaseClaim>,
        work: Work,
    ) -> Result<Committed, WorkflowError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Job {
            workflow_id: workflow_id.to_owned(),
            actor: actor.to_owned(),
            lease_owner: lease_owner.to_owned(),
            claim,
            work,
            reply,
        });
        answer.await.map_err(|_| {
            WorkflowError::Unavailable("the store stopped before answering a commit".into())
        })?
    }

    /// Queues `job` and starts a writer if one may start.
    fn queue(&self, job: Job) {
        if self.queue.push(job) {
            tokio::spawn(self.clone().write_queued());
        }
    }

    async fn write_queued(self) {
        let mut slot = WriterSlot {
            queue: &self.queue,
            held: true,
        };
        while let Some(batch) = self.queue.next_batch(&mut slot) {
            self.write_batch(batch).await;
        }
    }

    async fn write_batch(&self, mut jobs: Vec<Job>) {
        // Every transaction locks workflow rows in id order (the sort is
        // stable: one workflow's jobs keep theirs), so two writers, or two
        // replicas, never wait on each other in a cycle.
        jobs.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
        match self.commit_jobs(&jobs).await {
            Ok(results) => {
                for (job, result) in jobs.into_iter().zip(results) {
                    self.answer(job, result);
                }
            }
            Err(Failure::NotWritten(error)) if jobs.len() == 1 => {
                self.answer(jobs.remove(0), Err(error));
            }
            // The database is down or overloaded: every job would wait for
            // it again, one after the other; all of them get the error.
            Err(Failure::NotWritten(WorkflowError::Storage(error)))
                if airt_kit::db::is_unavailable(&error) =>
            {
                self.answer_all(jobs, error);
            }
            Err(Failure::NotWritten(_)) => {
                for job in jobs {
                    let result = match self.commit_jobs(std::slice::from_ref(&job)).await {
                        Ok(mut results) => results.pop().unwrap_or_else(|| {
                            Err(WorkflowError::Corrupt("a job without an answer".into()))
                        }),
                        Err(Failure::NotWritten(error)) => Err(error),
                        Err(Failure::Commit(error)) => Err(error.into()),
                    };
                    self.answer(job, result);
                }
            }
            Err(Failure::Commit(error)) => self.answer_all(jobs, error),
        }
    }

    /// The same database error for every job.
    fn answer_all(&self, jobs: Vec<Job>, error: sqlx::Error) {
        let mut jobs = jobs.into_iter();
        let first = jobs.next();
        for job in jobs {
            self.answer(job, Err(copy_of(&error).into()));
        }
        if let Some(first) = first {
            self.answer(first, Err(error.into()));
        }
    }

    async fn commit_jobs(
        &self,
        jobs: &[Job],
    ) -> Result<Vec<Result<Committed, WorkflowError>>, Failure> {
        let now = airt_kit::clock::now_micros();
        match &self.db {
            Database::Sqlite(pool) => {
                commit_jobs_on!(airt_kit::db::begin_immediate(pool), jobs, now)
            }
            Database::Postgres(pool) => commit_jobs_on!(pool.begin(), jobs, now),
        }
    }

    fn answer(&self, job: Job, result: Result<Committed, WorkflowError>) {
        if result.is_ok() {
            self.changes.changed(&job.workflow_id);
        }
        // The caller may have gone; what committed stays committed.
        let _ = job.reply.send(result);
    }
}

/// The same failure for another job of the batch (a driver error cannot be
/// cloned; what callers act on, unavailable or not, is kept).
fn copy_of(error: &sqlx::Error) -> sqlx::Error {
    let text = format!("the commit failed: {error}");
    if airt_kit::db::is_unavailable(error) {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            text,
        ))
    } else {
        sqlx::Error::Protocol(text)
    }
}
