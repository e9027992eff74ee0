//! The read cache in front of `GetCapability` / `BatchGetCapabilities`.
//!
//! Reads far outnumber changes, and a read that reaches the database costs
//! more than the rest of the call. The cache holds the revisions returned by
//! reads, per capability id (the current revision and exact versions), and
//! forgets an id when it changes:
//!
//! - changes committed by this process are forgotten before the writer's
//!   call returns (read-your-writes on one replica);
//! - changes committed by other replicas sharing the database are found by
//!   following the change feed (`RegistryStore::sync_changes`, once a
//!   second), so they show after at most one poll;
//! - the cache answers only while the feed was read successfully within
//!   [`MAX_STALENESS`]; when the database stops answering the polls, every
//!   read goes to the database again (and fails closed if it is down).
//!
//! A read that raced a change is not stored: each fill carries the
//! invalidation epoch it started in and is dropped if the epoch moved.
//! Misses are never cached (no entry for an id that does not exist), and the
//! cache is bounded by the size of the specs it holds: past
//! [`MAX_BYTES`], arbitrary ids are evicted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::StoredCapability;

/// How long the cache answers after the last successful read of the change
/// feed (polled every second): other replicas' changes show within one
/// poll, and within this bound if polls fail.
pub const MAX_STALENESS: Duration = Duration::from_secs(3);
/// Spec bytes held at most (the canonical JSON of each cached revision).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// What one entry costs beyond its spec (keys, map slots, metadata).
const ENTRY_OVERHEAD: usize = 256;

/// The cached revisions of one id.
#[derive(Default)]
struct Entry {
    current: Option<Arc<StoredCapability>>,
    versions: HashMap<String, Arc<StoredCapability>>,
    bytes: usize,
}

struct Inner {
    ids: HashMap<String, Entry>,
    bytes: usize,
    /// Moves on every invalidation; a fill that started in another epoch
    /// may hold what an invalidation meant to forget.
    epoch: u64,
    /// The start of the last successful read of the change feed.
    verified_at: Instant,
    /// The last registry revision whose change was applied.
    cursor: i64,
}

/// A fill ticket: the epoch a read began in.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

pub struct ReadCache {
    inner: Mutex<Inner>,
    max_staleness: Duration,
    max_bytes: usize,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("ReadCache")
            .field("ids", &inner.ids.len())
            .field("bytes", &inner.bytes)
            .field("cursor", &inner.cursor)
            .finish()
    }
}

impl ReadCache {
    /// An empty cache, verified as of `verified_at` with the change feed
    /// applied up to `cursor`, answering for `max_staleness` after each
    /// successful read of the feed and holding at most `max_bytes`.
    pub fn with_bounds(
        cursor: i64,
        verified_at: Instant,
        max_staleness: Duration,
        max_bytes: usize,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                ids: HashMap::new(),
                bytes: 0,
                epoch: 0,
                verified_at,
                cursor,
            }),
            max_staleness,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent, so a panic elsewhere
        // while the lock was held poisons nothing that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached revision, if the cache may answer now.
    pub fn get(&self, id: &str, version: Option<&str>) -> Option<Arc<StoredCapability>> {
        let inner = self.lock();
        if inner.verified_at.elapsed() > self.max_staleness {
            return None;
        }
        let entry = inner.ids.get(id)?;
        match version {
            Some(version) => entry.versions.get(version).cloned(),
            None => entry.current.clone(),
        }
    }

    /// The epoch to hand to [`ReadCache::fill`] after reading the database.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.lock().epoch)
    }

    /// Stores what a read found, unless something changed since it began.
    /// `bytes` is the size of the revision's spec.
    pub fn fill(
        &self,
        began: Epoch,
        version: Option<&str>,
        stored: &Arc<StoredCapability>,
        bytes: usize,
    ) {
        let cost = bytes + ENTRY_OVERHEAD;
        if cost > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != began.0 {
            return;
        }
        let id = stored.spec.id.as_str();
        while inner.bytes + cost > self.max_bytes {
            let Some(victim) = inner.ids.keys().find(|k| k.as_str() != id).cloned() else {
                break;
            };
            inner.forget(&victim);
        }
        if inner.bytes + cost > self.max_bytes {
            return;
        }
        let entry = inner.ids.entry(id.to_owned()).or_default();
        let replaced = match version {
            Some(version) => entry.versions.insert(version.to_owned(), stored.clone()),
            None => entry.current.replace(stored.clone()),
        };
        if replaced.is_none() {
            entry.bytes += cost;
            inner.bytes += cost;
        }
    }

    /// Forgets every cached revision of `id`.
    pub fn invalidate(&self, id: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.forget(id);
    }

    /// Where the next read of the change feed starts.
    pub fn cursor(&self) -> i64 {
        self.lock().cursor
    }

    /// Applies changes read from the feed: forgets their ids and moves the
    /// cursor to `through`. `verified` is when the read that reached the
    /// end of the feed began (`None` while more pages follow).
    pub fn apply_changes<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        through: i64,
        verified: Option<Instant>,
    ) {
        let mut inner = self.lock();
        let mut changed = false;
        for id in ids {
            inner.forget(id);
            changed = true;
        }
        if changed {
            inner.epoch += 1;
        }
        inner.cursor = inner.cursor.max(through);
        if let Some(verified) = verified {
            inner.verified_at = inner.verified_at.max(verified);
        }
    }

    /// Ids cached and spec bytes held (the service's gauges).
    pub fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.ids.len(), inner.bytes)
    }
}

impl Inner {
    fn forget(&mut self, id: &str) {
        if let Some(entry) = self.ids.remove(id) {
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Lifecycle, SpecDraft, validate};

    fn stored(id: &str, version: &str) -> Arc<StoredCapability> {
        let yaml = format!(
            "id: {id}\nname: {id}\noperation_type: READ\nrisk: {{level: LOW}}\n\
             side_effects: {{reversible: true, scope: LOCAL}}\n\
             compensation: {{supported: false, strategy: NONE}}\n\
             metadata: {{version: \"{version}\"}}\nhandler: \"builtin:test.noop\"\n"
        );
        let spec = validate(&SpecDraft::from_text(&yaml).expect("yaml"))
            .expect("valid")
            .0;
        Arc::new(StoredCapability {
            spec,
            lifecycle: Lifecycle::Active,
            lifecycle_reason: String::new(),
            content_digest: String::new(),
            registry_revision: 1,
            registered_by: "user:root".into(),
            created_at_us: 0,
            updated_at_us: 0,
        })
    }

    fn fresh() -> ReadCache {
        ReadCache::with_bounds(0, Instant::now(), Duration::from_secs(60), 10_000)
    }

    #[test]
    fn answers_what_was_filled_until_the_id_changes() {
        let cache = fresh();
        let a = stored("crm.a", "1.0.0");
        cache.fill(cache.epoch(), None, &a, 100);
        cache.fill(cache.epoch(), Some("1.0.0"), &a, 100);
        assert!(Arc::ptr_eq(&cache.get("crm.a", None).unwrap(), &a));
        assert!(cache.get("crm.a", Some("1.0.0")).is_some());
        assert!(cache.get("crm.a", Some("2.0.0")).is_none());
        assert!(cache.get("crm.b", None).is_none());
        cache.invalidate("crm.a");
        assert!(cache.get("crm.a", None).is_none());
        assert!(cache.get("crm.a", Some("1.0.0")).is_none());
        assert_eq!(cache.size(), (0, 0));
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let cache = fresh();
        let began = cache.epoch();
        cache.invalidate("crm.a");
        cache.fill(began, None, &stored("crm.a", "1.0.0"), 100);
        assert!(cache.get("crm.a", None).is_none());
        let began = cache.epoch();
        cache.apply_changes(["crm.other"], 5, Some(Instant::now()));
        cache.fill(began, None, &stored("crm.a", "1.0.0"), 100);
        assert!(cache.get("crm.a", None).is_none());
        assert_eq!(cache.cursor(), 5);
    }

    #[test]
    fn changes_from_the_feed_forget_their_ids_only() {
        let cache = fresh();
        cache.fill(cache.epoch(), None, &stored("crm.a", "1.0.0"), 100);
        cache.fill(cache.epoch(), None, &stored("crm.b", "1.0.0"), 100);
        cache.apply_changes(["crm.a"], 7, Some(Instant::now()));
        assert!(cache.get("crm.a", None).is_none());
        assert!(cache.get("crm.b", None).is_some());
        // An empty read of the feed keeps the cursor and entries.
        cache.apply_changes([], 3, Some(Instant::now()));
        assert_eq!(cache.cursor(), 7);
        assert!(cache.get("crm.b", None).is_some());
    }

    #[test]
    fn answers_nothing_once_the_feed_was_not_read_within_the_bound() {
        let verified = Instant::now();
        let cache = ReadCache::with_bounds(0, verified, Duration::from_millis(20), 10_000);
        cache.fill(cache.epoch(), None, &stored("crm.a", "1.0.0"), 100);
        assert!(cache.get("crm.a", None).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get("crm.a", None).is_none());
        cache.apply_changes([], 0, Some(Instant::now()));
        assert!(cache.get("crm.a", None).is_some());
    }

    #[test]
    fn holds_at_most_its_byte_budget() {
        let cache = ReadCache::with_bounds(0, Instant::now(), Duration::from_secs(60), 2_000);
        for i in 0..20 {
            cache.fill(
                cache.epoch(),
                None,
                &stored(&format!("crm.c{i}"), "1.0.0"),
                500,
            );
            let (_, bytes) = cache.size();
            assert!(bytes <= 2_000, "{bytes} bytes held");
        }
        let (ids, _) = cache.size();
        assert_eq!(ids, 2, "two entries of 756 bytes fit in 2,000");
        assert!(
            cache.get("crm.c19", None).is_some(),
            "the newest fill stays"
        );
        // A revision larger than the whole budget is never held.
        cache.fill(cache.epoch(), None, &stored("crm.big", "1.0.0"), 5_000);
        assert!(cache.get("crm.big", None).is_none());
    }
}
