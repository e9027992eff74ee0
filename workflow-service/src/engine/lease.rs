//! Who drives a workflow: the lease (claimed, renewed, released, lost),
//! one slot per workflow in this process, the bound on runs at once, and
//! the recovery scan that resumes orphaned and decided workflows.

use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use serde_json::Value;

use super::Engine;
use crate::domain::WorkflowStatus;
use crate::error::WorkflowError;
use tokio_util::sync::CancellationToken;

/// How a run gets the workflow's lease.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Claim {
    /// Claim it (free, expired, or ours already).
    Take,
    /// The workflow was stored with this instance's lease moments ago.
    AlreadyHeld,
    /// Taken moments ago with a decision on its approval (the answer of
    /// that claim, held).
    Claimed(crate::store::Lease),
}

/// Who drives a workflow in this process, and whether it is to be cancelled.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) drive: tokio::sync::Mutex<()>,
    pub(super) cancel: CancelFlag,
}

/// A cancellation request (whether to roll back, and why), and whether this
/// instance lost the workflow's lease and must stop.
#[derive(Debug, Default)]
pub(super) struct CancelFlag {
    request: Mutex<Option<(bool, String)>>,
    lost: std::sync::atomic::AtomicBool,
    /// This run committed a PAUSED or final status, which gave the lease up.
    let_go: std::sync::atomic::AtomicBool,
}

impl CancelFlag {
    pub(super) fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn set_lost(&self, lost: bool) {
        self.lost.store(lost, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn let_go(&self) -> bool {
        self.let_go.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn set_let_go(&self, let_go: bool) {
        self.let_go
            .store(let_go, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes over a cancellation persisted by any replica (JSON
    /// `{"rollback": bool, "reason": "..."}`; empty: none).
    pub(super) fn absorb(&self, persisted: &str) {
        if let Ok(request) = serde_json::from_str::<Value>(persisted) {
            self.request(
                request["rollback"].as_bool().unwrap_or(false),
                request["reason"].as_str().unwrap_or_default(),
            );
        }
    }

    pub(super) fn requested(&self) -> Option<(bool, String)> {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn request(&self, rollback: bool, reason: &str) {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert((rollback, reason.to_owned()));
    }
}

/// Workflows claimed per recovery scan.
const RECOVERY_BATCH: i64 = 128;

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Engine {
    /// Drives a stored workflow as far as it can go: PENDING starts it,
    /// PAUSED resumes it when an approval was decided, RUNNING and
    /// ROLLING_BACK (left by a crashed instance) continue where they
    /// stopped. Takes the workflow's lease first and renews it while
    /// working; when another instance holds it, nothing happens here.
    /// Serialised per workflow in this process.
    pub async fn run(&self, workflow_id: &str) -> Result<WorkflowStatus, WorkflowError> {
        self.run_with(workflow_id, Claim::Take).await
    }

    pub(super) async fn run_with(
        &self,
        workflow_id: &str,
        claim: Claim,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let queued = Instant::now();
        let _permit = self
            .inner
            .active
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WorkflowError::Corrupt("the engine is shutting down".into()))?;
        // A lease taken at submission or with a decision may have run out
        // while waiting.
        let claim = if queued.elapsed() > self.inner.config.lease_ttl / 3 {
            Claim::Take
        } else {
            claim
        };
        let slot = self.slot(workflow_id);
        let result = {
            let (_driving, claim) = match slot.drive.try_lock() {
                Ok(driving) => (driving, claim),
                // Another run of it here came first: what that run wrote
                // since (a PAUSED gives the lease up) may have undone a
                // claim taken with a decision; claim it again.
                Err(_) => {
                    let driving = slot.drive.lock().await;
                    let claim = match claim {
                        Claim::Claimed(_) => Claim::Take,
                        claim => claim,
                    };
                    (driving, claim)
                }
            };
            self.drive_leased(workflow_id, &slot, claim).await
        };
        self.release(workflow_id, &result);
        result
    }

    pub(super) fn lease_until(&self) -> i64 {
        airt_kit::clock::now_micros()
            + i64::try_from(self.inner.config.lease_ttl.as_micros()).unwrap_or(i64::MAX / 4)
    }

    /// With the slot held: claim, drive while renewing, release.
    pub(super) async fn drive_leased(
        &self,
        workflow_id: &str,
        slot: &Arc<Slot>,
        claim: Claim,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let owner = self.inner.owner.clone();
        // A run that claimed the lease gives it up if the workflow turns out
        // paused or finished without this run writing so.
        let claimed = claim != Claim::AlreadyHeld;
        let lease = match claim {
            Claim::Take => {
                self.inner
                    .store
                    .claim(workflow_id, &owner, self.lease_until())
                    .await?
            }
            // Any cancellation so far was requested through this process
            // (the slot carries it); later ones come with the renewals.
            Claim::AlreadyHeld => crate::store::Lease {
                held: true,
                cancel_request: String::new(),
            },
            Claim::Claimed(lease) => lease,
        };
        if !lease.held {
            // Another instance drives it; it sees any cancellation too.
            return self.status_of(workflow_id).await;
        }
        slot.cancel.set_lost(false);
        slot.cancel.set_let_go(false);
        slot.cancel.absorb(&lease.cancel_request);
        // Aborted however this run ends: also when its future is dropped (a
        // caller that went away) or panics, so no renewer outlives its run.
        let renewer = AbortOnDrop(tokio::spawn(
            self.clone()
                .renew_lease(workflow_id.to_owned(), slot.clone()),
        ));
        let result = self.advance(workflow_id, &slot.cancel).await;
        drop(renewer);
        // Whatever is still deferred belongs to a run that stopped on an
        // error: it is lost as in a crash, and recovery repeats the step.
        let dropped = self.take_deferred(workflow_id);
        if !dropped.is_empty() {
            tracing::warn!(
                workflow_id,
                writes = dropped.len(),
                "run stopped with uncommitted writes; recovery will repeat them"
            );
        }
        match &result {
            // A run that wrote its PAUSED or final status gave the lease up
            // in that statement; a claimed workflow may have been paused or
            // finished already when claimed, and still holds it.
            Ok(status)
                if claimed
                    && !slot.cancel.let_go()
                    && (*status == WorkflowStatus::Paused || status.is_terminal()) =>
            {
                // Nothing to drive until a decision: any instance may resume it.
                if let Err(error) = self.inner.store.release(workflow_id, &owner).await {
                    tracing::warn!(workflow_id, %error, "lease not released; it will expire");
                }
            }
            Err(WorkflowError::LeaseLost(_)) => {
                tracing::warn!(
                    workflow_id,
                    "lease lost to another instance; stopped driving"
                );
            }
            _ => {}
        }
        result
    }

    /// Renews the lease every third of its lifetime; on losing it, or after
    /// failing to renew for two thirds of it, tells the driver to stop
    /// (before another instance may take over).
    pub(super) async fn renew_lease(self, workflow_id: String, slot: Arc<Slot>) {
        let ttl = self.inner.config.lease_ttl;
        let owner = self.inner.owner.clone();
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            match self
                .inner
                .store
                .renew(&workflow_id, &owner, self.lease_until())
                .await
            {
                Ok(lease) if lease.held => {
                    renewed = Instant::now();
                    slot.cancel.absorb(&lease.cancel_request);
                }
                Ok(_) => {
                    slot.cancel.set_lost(true);
                    return;
                }
                Err(error) => {
                    tracing::warn!(workflow_id, %error, "lease renewal failed");
                    if renewed.elapsed() >= ttl * 2 / 3 {
                        slot.cancel.set_lost(true);
                        return;
                    }
                }
            }
        }
    }

    /// Resumes what this instance should drive: workflows whose lease
    /// expired (or is this instance's, from before a restart), and paused
    /// ones with a decided approval. Returns how many were started.
    pub async fn recover_once(&self) -> Result<usize, WorkflowError> {
        // Claim only what can start now: a claimed workflow waiting for a
        // free run would hold a lease nobody renews.
        let free = self.inner.active.available_permits();
        let batch = i64::try_from(free)
            .unwrap_or(RECOVERY_BATCH)
            .min(RECOVERY_BATCH);
        if batch == 0 {
            return Ok(0);
        }
        let owner = self.inner.owner.clone();
        let mut ids = self
            .inner
            .store
            .claim_orphans(&owner, self.lease_until(), batch)
            .await?;
        let taken_over = ids.len();
        if (ids.len() as i64) < batch {
            let paused = batch - ids.len() as i64;
            ids.extend(self.inner.store.decided_paused(&owner, paused).await?);
        }
        let mut started = 0;
        for id in ids {
            if self.is_driving(&id) {
                continue;
            }
            started += 1;
            self.run_in_background(&id);
        }
        self.metrics().recovered(taken_over, started);
        Ok(started)
    }

    /// Looks for work to recover at start-up and then every
    /// `recovery_interval` until `shutdown`.
    pub async fn run_recovery(self, shutdown: CancellationToken) {
        loop {
            match self.recover_once().await {
                Ok(0) => {}
                // A full batch: there may be more; look again at once.
                Ok(n) if n >= RECOVERY_BATCH as usize => {
                    tracing::info!(workflows = n, "resumed workflows");
                    continue;
                }
                Ok(n) => tracing::info!(workflows = n, "resumed workflows"),
                Err(error) => tracing::warn!(%error, "recovery scan failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.recovery_interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Whether this process is driving the workflow right now.
    pub(super) fn is_driving(&self, workflow_id: &str) -> bool {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(workflow_id)
            .is_some_and(|slot| slot.drive.try_lock().is_err())
    }

    /// [`Engine::run`] in the background.
    pub(super) fn run_in_background(&self, workflow_id: &str) {
        self.run_in_background_with(workflow_id, Claim::Take);
    }

    /// [`Engine::run_with`] in the background.
    pub(super) fn run_in_background_with(&self, workflow_id: &str, claim: Claim) {
        let (engine, id) = (self.clone(), workflow_id.to_owned());
        tokio::spawn(async move {
            if let Err(error) = engine.run_with(&id, claim).await {
                tracing::error!(workflow_id = %id, %error, "workflow run stopped on an internal error");
            }
        });
    }

    pub(super) fn slot(&self, workflow_id: &str) -> Arc<Slot> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workflow_id.to_owned())
            .or_default()
            .clone()
    }

    /// The slot of a workflow this process drives, if any.
    pub(super) fn existing_slot(&self, workflow_id: &str) -> Option<Arc<Slot>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(workflow_id)
            .cloned()
    }

    /// Forgets the slot of a finished workflow.
    pub(super) fn release(
        &self,
        workflow_id: &str,
        result: &Result<WorkflowStatus, WorkflowError>,
    ) {
        if matches!(result, Ok(status) if status.is_terminal()) {
            self.inner
                .slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(workflow_id);
        }
    }
}
