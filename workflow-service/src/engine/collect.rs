//! Undo data does not outlive its use: a step's undo slot in the workspace
//! (`.airt/undo/<slot>`: previous bytes, trashed files) is removed once its
//! workflow finished COMPLETED, FAILED, ROLLED_BACK or CANCELLED and the slot
//! has not changed for `undo_retention`. A COMPENSATION_FAILED workflow keeps
//! its undo data: an operator undoing its effects by hand needs it. Slots of
//! workflows this database does not know are left alone.

use std::time::{Duration, SystemTime};

use super::Engine;
use crate::domain::WorkflowStatus;
use crate::error::WorkflowError;
use tokio_util::sync::CancellationToken;

/// How often the workspace is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

impl Engine {
    /// Removes the undo slots of finished workflows older than the
    /// retention; returns how many were removed.
    pub async fn collect_undo_once(&self) -> Result<usize, WorkflowError> {
        let before = SystemTime::now()
            .checked_sub(self.inner.config.undo_retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let workspace = self.inner.workspace.clone();
        let slots = tokio::task::spawn_blocking(move || workspace.undo_slots(before))
            .await
            .map_err(|e| WorkflowError::Corrupt(format!("undo sweep: {e}")))?
            .map_err(|e| WorkflowError::Corrupt(format!("undo area unreadable: {e}")))?;
        let mut removed = 0;
        for slot in slots {
            let Some(workflow_id) = &slot.workflow_id else {
                continue;
            };
            let Some(row) = self.inner.store.get(workflow_id).await? else {
                continue;
            };
            let status = row.status()?;
            if !status.is_terminal() || status == WorkflowStatus::CompensationFailed {
                continue;
            }
            let workspace = self.inner.workspace.clone();
            let name = slot.name.clone();
            match tokio::task::spawn_blocking(move || workspace.discard_undo_slot(&name)).await {
                Ok(Ok(())) => removed += 1,
                Ok(Err(error)) => {
                    tracing::warn!(slot = %slot.name, %error, "undo slot not removed")
                }
                Err(error) => tracing::warn!(slot = %slot.name, %error, "undo slot not removed"),
            }
        }
        Ok(removed)
    }

    /// Sweeps the undo area every ten minutes until `shutdown`.
    pub async fn run_undo_collector(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                () = shutdown.cancelled() => return,
            }
            match self.collect_undo_once().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "undo data of finished workflows removed"),
                Err(error) => tracing::warn!(%error, "undo sweep failed; retrying later"),
            }
        }
    }
}
