//! The active compiled policy set, held in memory: evaluation never reads
//! the database. A set activated by another replica is picked up by polling
//! the activation sequence.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::{CompiledPolicySet, parse_policy_set};
use crate::error::PolicyError;
use crate::store::PolicyStore;
use tokio_util::sync::CancellationToken;

/// How often replicas look for an activation made elsewhere.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Current {
    set: Arc<CompiledPolicySet>,
    /// Evaluated beside `set`, never enforced.
    shadow: Option<Arc<CompiledPolicySet>>,
    activation_seq: i64,
}

/// The set every decision uses; swapped atomically.
#[derive(Debug, Clone)]
pub struct ActivePolicy {
    current: Arc<RwLock<Current>>,
}

impl ActivePolicy {
    /// Loads the active set from the store, or the deny-all set when none
    /// was ever activated.
    pub async fn load(store: &PolicyStore) -> Result<Self, PolicyError> {
        let active = Self {
            current: Arc::new(RwLock::new(Current {
                set: Arc::new(CompiledPolicySet::deny_all()),
                shadow: None,
                activation_seq: 0,
            })),
        };
        active.refresh(store).await?;
        Ok(active)
    }

    /// The set to decide with (a cheap `Arc` clone).
    pub fn current(&self) -> Arc<CompiledPolicySet> {
        match self.current.read() {
            Ok(current) => current.set.clone(),
            Err(poisoned) => poisoned.into_inner().set.clone(),
        }
    }

    /// The shadow set, if one is active.
    pub fn shadow(&self) -> Option<Arc<CompiledPolicySet>> {
        match self.current.read() {
            Ok(current) => current.shadow.clone(),
            Err(poisoned) => poisoned.into_inner().shadow.clone(),
        }
    }

    fn activation_seq(&self) -> i64 {
        match self.current.read() {
            Ok(current) => current.activation_seq,
            Err(poisoned) => poisoned.into_inner().activation_seq,
        }
    }

    /// Installs `set` as active at `activation_seq` (keeping the shadow
    /// set), unless a newer activation is already installed.
    pub fn install(&self, set: Arc<CompiledPolicySet>, activation_seq: i64) {
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if activation_seq >= current.activation_seq {
            current.set = set;
            current.activation_seq = activation_seq;
        }
    }

    fn install_with_shadow(
        &self,
        set: Arc<CompiledPolicySet>,
        shadow: Option<Arc<CompiledPolicySet>>,
        activation_seq: i64,
    ) {
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if activation_seq >= current.activation_seq {
            *current = Current {
                set,
                shadow,
                activation_seq,
            };
        }
    }

    /// Reads the activation state and, if it changed, loads and compiles
    /// the active set. A stored set that no longer compiles is replaced by
    /// deny-all (fail closed) and logged.
    pub async fn refresh(&self, store: &PolicyStore) -> Result<(), PolicyError> {
        let state = store.state().await?;
        if state.activation_seq == self.activation_seq() {
            return Ok(());
        }
        let set = if state.active_revision.is_empty() {
            CompiledPolicySet::deny_all()
        } else {
            let stored = store.get(&state.active_revision).await?.ok_or_else(|| {
                PolicyError::Corrupt(format!(
                    "active revision {} is missing",
                    state.active_revision
                ))
            })?;
            match parse_policy_set(&stored.source_yaml) {
                Ok(parsed) => CompiledPolicySet::compile(parsed),
                Err(error) => {
                    tracing::error!(revision = %stored.revision, %error, "the active policy set no longer compiles; denying everything");
                    CompiledPolicySet::deny_all()
                }
            }
        };
        let shadow = if state.shadow_revision.is_empty() {
            None
        } else {
            let stored = store.get(&state.shadow_revision).await?;
            match stored.map(|s| parse_policy_set(&s.source_yaml)) {
                Some(Ok(parsed)) => Some(Arc::new(CompiledPolicySet::compile(parsed))),
                _ => {
                    tracing::error!(revision = %state.shadow_revision, "the shadow policy set is missing or no longer compiles; not shadowing");
                    None
                }
            }
        };
        tracing::info!(revision = %set.revision(), shadow = %state.shadow_revision, activation_seq = state.activation_seq, "active policy set loaded");
        self.install_with_shadow(Arc::new(set), shadow, state.activation_seq);
        Ok(())
    }

    /// Polls for activations by other replicas until `stop` turns true.
    pub async fn follow(self, store: PolicyStore, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFRESH_INTERVAL) => {}
                () = stop.cancelled() => return,
            }
            if let Err(error) = self.refresh(&store).await {
                tracing::warn!(%error, "cannot refresh the active policy set; keeping the current one");
            }
        }
    }
}
