//! What the metrics read at a scrape: counts over indexed columns, one
//! statement each.

use super::WorkflowStore;
use crate::error::WorkflowError;

/// Pending approvals: how many, and when the oldest was requested.
#[derive(Debug, Clone, Copy, Default)]
pub struct PendingApprovals {
    pub count: i64,
    pub oldest_requested_at_us: Option<i64>,
}

impl WorkflowStore {
    /// Workflows by status (as stored: `RUNNING`, `PAUSED`, …).
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, WorkflowError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as("SELECT status, COUNT(*) FROM workflows GROUP BY status").fetch_all(pool).await?
        }))
    }

    pub async fn pending_approvals(&self) -> Result<PendingApprovals, WorkflowError> {
        let (count, oldest): (i64, Option<i64>) = airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as("SELECT COUNT(*), MIN(requested_at_us) FROM approvals WHERE status = 'PENDING'")
                .fetch_one(pool)
                .await?
        });
        Ok(PendingApprovals {
            count,
            oldest_requested_at_us: oldest,
        })
    }

    /// Webhook deliveries not yet delivered nor given up.
    pub async fn outbox_backlog(&self) -> Result<i64, WorkflowError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'PENDING'").fetch_one(pool).await?
        }))
    }
}
