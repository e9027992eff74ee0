//! Wake-ups for the watchers of a workflow when this process commits a
//! change to it, so `WatchWorkflow` answers at once instead of at its next
//! poll (which remains for changes committed by other replicas).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The workflows someone in this process is watching.
#[derive(Debug, Clone, Default)]
pub struct ChangeFeed {
    watched: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl ChangeFeed {
    /// Interest in `workflow_id` for as long as the subscription lives.
    pub fn subscribe(&self, workflow_id: &str) -> ChangeSubscription {
        let notify = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workflow_id.to_owned())
            .or_default()
            .clone();
        ChangeSubscription {
            feed: self.clone(),
            workflow_id: workflow_id.to_owned(),
            notify,
        }
    }

    /// Wakes every watcher of `workflow_id` (a commit just happened).
    pub(crate) fn changed(&self, workflow_id: &str) {
        if let Some(notify) = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(workflow_id)
        {
            notify.notify_waiters();
        }
    }
}

/// One watcher's interest in one workflow.
#[derive(Debug)]
pub struct ChangeSubscription {
    feed: ChangeFeed,
    workflow_id: String,
    notify: Arc<Notify>,
}

impl ChangeSubscription {
    /// Resolves at the next commit to the workflow. Create it (and
    /// `enable` it) before reading the state, so a commit in between is not
    /// missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for ChangeSubscription {
    fn drop(&mut self) {
        let mut watched = self.feed.watched.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and this one: nobody else watches.
        if Arc::strong_count(&self.notify) <= 2 {
            watched.remove(&self.workflow_id);
        }
    }
}
