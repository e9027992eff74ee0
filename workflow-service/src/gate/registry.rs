//! Asking the registry what a capability is, with a cache kept exact by
//! `WatchCapabilities`.
//!
//! The cache holds answers of `GetCapability(id)` (the current revision).
//! It is used only while the change stream is live and caught up: every
//! change event drops the entry of its id, so a cached answer is never older
//! than the last change the registry reported. When the stream breaks the
//! whole cache is dropped and every lookup goes to the registry until the
//! stream has caught up again.
//!
//! A stalled connection (a network partition, a registry host that vanished)
//! reports no error by itself, so the stream asks for a heartbeat: the cache
//! is trusted only while the registry was heard from within three heartbeat
//! intervals, and a stream silent for that long is dropped and reopened.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use super::{GateError, with_retry};
use airt_kit::backoff::Backoff;
use airt_kit::credentials::Credentials;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct Cache {
    /// True while the watch stream is caught up.
    live: bool,
    /// `None` caches "not found".
    entries: HashMap<String, Option<pb::Capability>>,
    /// Bumped by every change event and liveness change, so an answer
    /// fetched before a change is never stored after it.
    generation: u64,
    /// When the stream last delivered anything (change, CaughtUp, Heartbeat).
    heard_at: Option<Instant>,
}

/// Heartbeat interval asked of the registry by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
/// Missed heartbeats after which the stream counts as stalled.
const MISSED_HEARTBEATS: u32 = 3;

#[derive(Debug, Clone)]
pub struct RegistryGate {
    client: RegistryServiceClient<Channel>,
    credentials: Credentials,
    cache: Arc<RwLock<Cache>>,
    heartbeat: Duration,
}

impl RegistryGate {
    pub fn new(channel: Channel, credentials: Credentials) -> Self {
        Self {
            client: RegistryServiceClient::new(channel),
            credentials,
            cache: Arc::default(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }

    /// Asks the registry for a heartbeat every `interval` (at least 100 ms);
    /// the cache is trusted for three intervals after the last message.
    #[must_use]
    pub fn with_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(100));
        self
    }

    fn stalled_after(&self) -> Duration {
        self.heartbeat * MISSED_HEARTBEATS
    }

    fn cached(&self, id: &str) -> Option<Option<pb::Capability>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let fresh = cache
            .heard_at
            .is_some_and(|at| at.elapsed() < self.stalled_after());
        if cache.live && fresh {
            cache.entries.get(id).cloned()
        } else {
            None
        }
    }

    /// Whether the registry is known (from the cache) to hold `id`.
    pub fn knows(&self, id: &str) -> bool {
        matches!(self.cached(id), Some(Some(_)))
    }

    fn generation(&self) -> u64 {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    fn store(&self, id: &str, answer: Option<pb::Capability>, fetched_at_generation: u64) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.live && cache.generation == fetched_at_generation {
            cache.entries.insert(id.to_owned(), answer);
        }
    }

    /// Whether answers currently come from the cache when present.
    pub fn cache_is_live(&self) -> bool {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.live
            && cache
                .heard_at
                .is_some_and(|at| at.elapsed() < self.stalled_after())
    }

    fn heard(&self) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.heard_at = Some(Instant::now());
    }

    /// The current revision of `id`, `None` when the registry does not know
    /// it, or an error once `deadline` passes with the registry unreachable.
    pub async fn capability(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<Option<pb::Capability>, GateError> {
        if let Some(answer) = self.cached(id) {
            return Ok(answer);
        }
        let generation = self.generation();
        let answer = with_retry("registry", deadline, |timeout| {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(pb::GetCapabilityRequest {
                capability_id: id.to_owned(),
                version: String::new(),
            });
            request.set_timeout(timeout);
            self.credentials.apply(&mut request);
            async move {
                match client.get_capability(request).await {
                    Ok(response) => Ok(response.into_inner().capability),
                    Err(status) if status.code() == Code::NotFound => Ok(None),
                    Err(status) => Err(status),
                }
            }
        })
        .await?;
        self.store(id, answer.clone(), generation);
        Ok(answer)
    }

    fn set_live(&self, live: bool) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.live = live;
        cache.generation += 1;
        if !live {
            cache.entries.clear();
        }
    }

    fn invalidate(&self, id: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.generation += 1;
        cache.entries.remove(id);
    }

    /// Follows the change feed until `stop` turns true, reconnecting (from
    /// the last revision seen) whenever the stream breaks.
    pub async fn follow(self, stop: CancellationToken) {
        use pb::watch_capabilities_response::Event;
        let mut since = 0;
        let restart = || Backoff::doubling(Duration::from_millis(100), Duration::from_secs(5));
        let mut backoff = restart();
        loop {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(pb::WatchCapabilitiesRequest {
                since_revision: since,
                id_prefix: String::new(),
                heartbeat_interval: prost_types::Duration::try_from(self.heartbeat).ok(),
            });
            self.credentials.apply(&mut request);
            let stream = tokio::select! {
                result = tokio::time::timeout(self.stalled_after(), client.watch_capabilities(request)) => result,
                () = stop.cancelled() => return,
            };
            if let Ok(Ok(response)) = stream {
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        message = tokio::time::timeout(self.stalled_after(), stream.message()) => message,
                        () = stop.cancelled() => {
                            self.set_live(false);
                            return;
                        }
                    };
                    let Ok(message) = message else {
                        tracing::warn!(
                            "registry change stream silent for {:?}; reconnecting",
                            self.stalled_after()
                        );
                        break;
                    };
                    if matches!(message, Ok(Some(_))) {
                        self.heard();
                    }
                    match message {
                        Ok(Some(pb::WatchCapabilitiesResponse {
                            event: Some(Event::Change(change)),
                        })) => {
                            since = since.max(change.registry_revision);
                            if let Some(id) = change
                                .capability
                                .as_ref()
                                .and_then(|c| c.spec.as_ref())
                                .map(|s| s.id.clone())
                            {
                                self.invalidate(&id);
                            }
                        }
                        Ok(Some(pb::WatchCapabilitiesResponse {
                            event: Some(Event::CaughtUp(caught_up)),
                        })) => {
                            since = since.max(caught_up.registry_revision);
                            self.set_live(true);
                            backoff = restart();
                        }
                        Ok(Some(pb::WatchCapabilitiesResponse {
                            event: Some(Event::Heartbeat(heartbeat)),
                        })) => {
                            since = since.max(heartbeat.registry_revision);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            // The stream broke (or never opened): answers are no longer exact.
            self.set_live(false);
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
