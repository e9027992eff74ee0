//! The registry's metrics: capabilities by lifecycle (read at each scrape),
//! the read cache's size and the WatchCapabilities streams open now.

use airt_kit::metrics::{Family, Gauge, Labels, Metrics};

use crate::store::RegistryStore;

/// Handed to the API, which counts open watch streams.
#[derive(Debug, Clone)]
pub struct RegistryMetrics {
    watchers: Gauge,
}

impl RegistryMetrics {
    pub fn new(metrics: &Metrics, store: &RegistryStore) -> Self {
        let watchers = Gauge::default();
        metrics.register(
            "registry_watch_streams",
            "WatchCapabilities streams open on this replica",
            watchers.clone(),
        );
        let capabilities: Family<Labels<1>, Gauge> = Family::default();
        metrics.register(
            "registry_capabilities",
            "Capabilities by the lifecycle of their current version",
            capabilities.clone(),
        );
        let cached_ids: Gauge = Gauge::default();
        metrics.register(
            "registry_cache_ids",
            "Capability ids held by the read cache of GetCapability",
            cached_ids.clone(),
        );
        let cached_bytes: Gauge = Gauge::default();
        metrics.register(
            "registry_cache_bytes",
            "Spec bytes held by the read cache of GetCapability",
            cached_bytes.clone(),
        );
        let store = store.clone();
        metrics.on_scrape(move || {
            let (store, capabilities) = (store.clone(), capabilities.clone());
            let (ids, bytes) = store.cache_size();
            cached_ids.set(ids as i64);
            cached_bytes.set(bytes as i64);
            async move {
                match store.count_by_lifecycle().await {
                    Ok(counts) => {
                        capabilities.clear();
                        for (lifecycle, count) in counts {
                            capabilities
                                .get_or_create(&[("lifecycle", lifecycle.into())])
                                .set(count);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot count capabilities for metrics"),
                }
            }
        });
        Self { watchers }
    }

    /// Counts one open watch stream until the guard drops.
    pub fn watching(&self) -> WatchGuard {
        self.watchers.inc();
        WatchGuard(self.watchers.clone())
    }
}

/// One open watch stream.
#[derive(Debug)]
pub struct WatchGuard(Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
