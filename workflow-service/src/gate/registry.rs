//! Asking the registry what a capability is, with a cache kept exact by
//! `WatchCapabilities`.
//!
//! The cache holds answers of `GetCapability(id)` (the current revision).
//! It is used only while the change stream is live and caught up: every
//! change event drops the entry of its id, so a cached answer is never older
//! than the last change the registry reported. When the stream breaks the
//! whole cache is dropped and every lookup goes to the registry until the
//! stream has caught up again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use super::{GateError, with_retry};
use crate::capabilities::publish::ServiceCredentials;

#[derive(Debug, Default)]
struct Cache {
    /// True while the watch stream is caught up.
    live: bool,
    /// `None` caches "not found".
    entries: HashMap<String, Option<pb::Capability>>,
    /// Bumped by every change event and liveness change, so an answer
    /// fetched before a change is never stored after it.
    generation: u64,
}

#[derive(Debug, Clone)]
pub struct RegistryGate {
    client: RegistryServiceClient<Channel>,
    credentials: ServiceCredentials,
    cache: Arc<RwLock<Cache>>,
}

impl RegistryGate {
    pub fn new(channel: Channel, credentials: ServiceCredentials) -> Self {
        Self {
            client: RegistryServiceClient::new(channel),
            credentials,
            cache: Arc::default(),
        }
    }

    fn cached(&self, id: &str) -> Option<Option<pb::Capability>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        if cache.live {
            cache.entries.get(id).cloned()
        } else {
            None
        }
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
        self.cache.read().unwrap_or_else(|p| p.into_inner()).live
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
    pub async fn follow(self, mut stop: watch::Receiver<bool>) {
        use pb::watch_capabilities_response::Event;
        let mut since = 0;
        let mut delay = Duration::from_millis(100);
        loop {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(pb::WatchCapabilitiesRequest {
                since_revision: since,
                id_prefix: String::new(),
            });
            self.credentials.apply(&mut request);
            let stream = tokio::select! {
                result = client.watch_capabilities(request) => result,
                _ = stop.wait_for(|s| *s) => return,
            };
            if let Ok(response) = stream {
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        _ = stop.wait_for(|s| *s) => {
                            self.set_live(false);
                            return;
                        }
                    };
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
                            delay = Duration::from_millis(100);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            // The stream broke (or never opened): answers are no longer exact.
            self.set_live(false);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
