//! The engine's writes: every transition is committed before the action it
//! announces, fenced by the workflow's lease; a driver's writes may be
//! deferred to ride with its next commit of the same workflow.

use tracing::Instrument as _;

use super::{ACTOR, Engine, FLUSH_AFTER, Run};
use crate::domain::{StepStatus, WorkflowStatus};
use crate::error::WorkflowError;
use crate::store::{Committed, LeaseClaim, Transition};

impl Engine {
    /// A write of the instance driving the workflow: committed only while
    /// it holds the lease.
    pub(super) async fn transition(
        &self,
        workflow_id: &str,
        transition: Transition,
    ) -> Result<(), WorkflowError> {
        let owner = self.inner.owner.clone();
        self.commit(workflow_id, ACTOR, &owner, transition).await
    }

    /// A change from outside the driver (a human's decision, a deadline):
    /// committed whoever drives the workflow.
    pub(super) async fn record_as(
        &self,
        workflow_id: &str,
        actor: &str,
        transition: Transition,
    ) -> Result<(), WorkflowError> {
        self.commit(workflow_id, actor, "", transition).await
    }

    /// [`Engine::record_as`] answering what was committed; with `claim`,
    /// it also takes the workflow's lease for this instance in the same
    /// statement when it is free, expired or this instance's (a decided
    /// workflow is resumed here at once).
    pub(super) async fn record_claiming(
        &self,
        workflow_id: &str,
        actor: &str,
        transition: Transition,
        claim: bool,
    ) -> Result<Committed, WorkflowError> {
        let claim = claim.then(|| LeaseClaim {
            owner: self.inner.owner.clone(),
            until_us: self.lease_until(),
        });
        self.commit_with(workflow_id, actor, "", vec![transition], claim)
            .await?
            .ok_or_else(|| WorkflowError::Corrupt("a decision without a commit".into()))
    }

    pub(super) async fn commit(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        transition: Transition,
    ) -> Result<(), WorkflowError> {
        self.commit_all(workflow_id, actor, lease_owner, vec![transition])
            .await
    }

    /// Commits `transitions` in one transaction; a driver's commit (with a
    /// lease owner) carries the workflow's deferred writes first.
    pub(super) async fn commit_all(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        transitions: Vec<Transition>,
    ) -> Result<(), WorkflowError> {
        self.commit_with(workflow_id, actor, lease_owner, transitions, None)
            .await
            .map(drop)
    }

    /// [`Engine::commit_all`] with an optional lease claim (only without
    /// a lease owner); `None` when there was nothing to write.
    async fn commit_with(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        mut transitions: Vec<Transition>,
        claim: Option<LeaseClaim>,
    ) -> Result<Option<Committed>, WorkflowError> {
        if !lease_owner.is_empty() {
            let held = self.take_deferred(workflow_id);
            if !held.is_empty() {
                transitions.splice(0..0, held);
            }
        }
        if transitions.is_empty() {
            return Ok(None);
        }
        let announces = transitions.iter().any(|transition| {
            matches!(
                transition,
                Transition::Workflow { deliveries, .. }
                | Transition::ApprovalRequested { deliveries, .. }
                | Transition::ApprovalDecided { deliveries, .. }
                | Transition::ApprovalClosed { deliveries, .. } if !deliveries.is_empty()
            )
        });
        let requests_approval = transitions
            .iter()
            .any(|transition| matches!(transition, Transition::ApprovalRequested { .. }));
        // A paused or final status written by the driver gives its lease up
        // in the same statement.
        let lets_go = !lease_owner.is_empty()
            && transitions.iter().any(|transition| {
                matches!(transition, Transition::Workflow { status, .. }
                    if *status == WorkflowStatus::Paused || status.is_terminal())
            });
        let span = tracing::info_span!("workflow.commit", workflow_id, writes = transitions.len());
        let committed = self
            .inner
            .store
            .apply_with(workflow_id, actor, lease_owner, claim, transitions)
            .instrument(span)
            .await?;
        if announces {
            self.inner.outbox.notify_one();
        }
        if requests_approval {
            self.inner.deadlines.notify_one();
        }
        if lets_go && let Some(slot) = self.existing_slot(workflow_id) {
            slot.cancel.set_let_go(true);
        }
        Ok(Some(committed))
    }

    /// Holds back a driver write so it commits in the same transaction as
    /// the driver's next write of this workflow: a step's SUCCEEDED with the
    /// next step's decision and first attempt, RUNNING with the first
    /// decision. Nothing acts on a deferred write before it is durable: the
    /// next side effect starts only after the commit that carries it. A
    /// crash before that commit loses only what a crash during the step
    /// would (the step runs again with the same idempotency key). The driver
    /// flushes whenever no commit is about to follow (see
    /// [`Engine::flushing_if_slow`]).
    pub(super) fn defer(&self, workflow_id: &str, transition: Transition) {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workflow_id.to_owned())
            .or_default()
            .push(transition);
    }

    pub(super) fn take_deferred(&self, workflow_id: &str) -> Vec<Transition> {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(workflow_id)
            .unwrap_or_default()
    }

    /// Commits the workflow's deferred writes, if any.
    pub(super) async fn flush(&self, workflow_id: &str) -> Result<(), WorkflowError> {
        let owner = self.inner.owner.clone();
        self.commit_all(workflow_id, ACTOR, &owner, Vec::new())
            .await
    }

    /// Awaits `work` (a question to the registry or the policy service);
    /// if it takes longer than [`FLUSH_AFTER`] the deferred writes are
    /// committed meanwhile rather than wait for it.
    pub(super) async fn flushing_if_slow<T>(
        &self,
        workflow_id: &str,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, WorkflowError> {
        let mut work = std::pin::pin!(work);
        tokio::select! {
            biased;
            done = &mut work => return Ok(done),
            () = tokio::time::sleep(FLUSH_AFTER) => {}
        }
        self.flush(workflow_id).await?;
        Ok(work.await)
    }

    /// Moves a step to `status` (no attempt, no error).
    pub(super) async fn mark(
        &self,
        workflow_id: &str,
        step: &str,
        status: StepStatus,
    ) -> Result<(), WorkflowError> {
        let step = step.to_owned();
        self.transition(
            workflow_id,
            Transition::Step {
                step,
                status,
                attempt: None,
                error: String::new(),
            },
        )
        .await
    }

    pub(super) async fn set_status(
        &self,
        run: &Run,
        status: WorkflowStatus,
        reason: &str,
        failed_step: &str,
    ) -> Result<(), WorkflowError> {
        let deliveries = if status.is_terminal() {
            let payload = crate::webhooks::workflow_finished(crate::webhooks::Finished {
                workflow_id: &run.workflow_id,
                workflow_name: &run.spec.name,
                submitter: &run.submitter.to_string(),
                status: status.as_str(),
                reason,
                failed_step,
            });
            self.inner
                .config
                .webhooks
                .deliveries("", "workflow.finished", &payload)
        } else {
            Vec::new()
        };
        self.transition(
            &run.workflow_id,
            Transition::Workflow {
                status,
                reason: reason.to_owned(),
                failed_step: failed_step.to_owned(),
                deliveries,
            },
        )
        .await
    }
}
