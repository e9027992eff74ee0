//! The registry's offered capabilities, kept between listings while the
//! change feed is live: a listing then reads no registry at all, and every
//! change (or a lost feed) drops the copy.
//!
//! Generations make it safe: each change, reconnect or loss bumps the
//! generation; a listing fetched at generation `g` is kept only if nothing
//! happened meanwhile (still `g`) and the feed is live.

use std::sync::{Arc, Mutex};

use airt_proto::registry::v1 as registry;

/// The cached capabilities.
pub type Capabilities = Arc<Vec<registry::Capability>>;

#[derive(Debug, Default)]
struct State {
    live: bool,
    generation: u64,
    cached: Option<(u64, Capabilities)>,
}

/// The cache, shared by every session.
#[derive(Debug, Default)]
pub struct Catalog {
    state: Mutex<State>,
}

impl Catalog {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The feed is (again) caught up, or lost: either way what is cached
    /// may be stale.
    pub fn set_live(&self, live: bool) {
        self.with(|s| {
            s.live = live;
            s.generation += 1;
            s.cached = None;
        });
    }

    /// The registry changed.
    pub fn invalidate(&self) {
        self.with(|s| {
            s.generation += 1;
            s.cached = None;
        });
    }

    /// The cached capabilities, if they are current.
    pub fn get(&self) -> Option<Capabilities> {
        self.with(|s| match &s.cached {
            Some((generation, capabilities)) if s.live && *generation == s.generation => {
                Some(capabilities.clone())
            }
            _ => None,
        })
    }

    /// The generation a fetch starting now belongs to (`None`: the feed is
    /// not live, so nothing fetched now may be kept).
    pub fn generation(&self) -> Option<u64> {
        self.with(|s| s.live.then_some(s.generation))
    }

    /// Keeps `capabilities` fetched at `generation` if nothing changed since.
    pub fn store(&self, generation: u64, capabilities: Capabilities) {
        self.with(|s| {
            if s.live && s.generation == generation {
                s.cached = Some((generation, capabilities));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some() -> Capabilities {
        Arc::new(vec![registry::Capability::default()])
    }

    #[test]
    fn nothing_is_kept_unless_the_feed_is_live_and_nothing_changed() {
        let catalog = Catalog::default();
        assert_eq!(catalog.generation(), None);
        catalog.store(0, some());
        assert!(catalog.get().is_none(), "kept without a live feed");

        catalog.set_live(true);
        let generation = catalog.generation().expect("live");
        catalog.store(generation, some());
        assert!(catalog.get().is_some());

        // A change while a listing was being fetched: that listing is dropped.
        let during = catalog.generation().expect("live");
        catalog.invalidate();
        catalog.store(during, some());
        assert!(catalog.get().is_none());

        let generation = catalog.generation().expect("live");
        catalog.store(generation, some());
        catalog.set_live(false);
        assert!(catalog.get().is_none(), "kept after the feed was lost");
    }
}
