//! Keeping the read cache true to the database: following the change feed
//! for changes committed by other replicas sharing it.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::RegistryStore;
use crate::error::RegistryError;

/// How often the change feed is read for other replicas' changes.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
const SYNC_PAGE: i64 = 1000;
const SELECT_CHANGED_IDS: &str = "SELECT registry_revision, capability_id FROM capability_changes \
     WHERE registry_revision > $1 ORDER BY registry_revision LIMIT $2";

impl RegistryStore {
    /// Reads the change feed past the cache's cursor and forgets every id
    /// that changed; on success the cache is verified as of the start of
    /// this call.
    pub async fn sync_changes(&self) -> Result<(), RegistryError> {
        let began = Instant::now();
        loop {
            let cursor = self.cache.cursor();
            let rows: Vec<(i64, String)> = airt_kit::with_pool!(&self.db, pool => {
                sqlx::query_as(SELECT_CHANGED_IDS)
                    .bind(cursor)
                    .bind(SYNC_PAGE)
                    .fetch_all(pool)
                    .await?
            });
            let exhausted = (rows.len() as i64) < SYNC_PAGE;
            let through = rows.last().map_or(cursor, |(revision, _)| *revision);
            self.cache.apply_changes(
                rows.iter().map(|(_, id)| id.as_str()),
                through,
                exhausted.then_some(began),
            );
            if exhausted {
                return Ok(());
            }
        }
    }

    /// Runs [`RegistryStore::sync_changes`] every [`SYNC_INTERVAL`] until
    /// `shutdown`. A failed read is logged; the cache stops answering once
    /// none succeeded within its staleness bound.
    pub async fn follow_changes(self, shutdown: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(SYNC_INTERVAL) => {}
                () = shutdown.cancelled() => return,
            }
            match self.sync_changes().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("reading the change feed again; the read cache answers again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot read the change feed; the read cache stops answering within its staleness bound");
                }
                Err(_) => {}
            }
        }
    }
}
