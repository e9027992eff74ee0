//! Open `WatchWorkflow` streams, bounded per principal and in all: each
//! costs a task and a wake-up per poll, so one caller cannot hold thousands
//! open. Past a bound the call is RESOURCE_EXHAUSTED (`TOO_MANY_WATCHERS`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tonic::{Code, Status};

/// The bounds and the streams open now.
#[derive(Debug, Clone)]
pub struct Watchers {
    open: Arc<Mutex<Open>>,
    total: usize,
    per_principal: usize,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_principal: HashMap<String, usize>,
}

/// One open stream; dropping it (the stream ended) frees its place.
#[derive(Debug)]
pub struct WatchSlot {
    watchers: Watchers,
    principal: String,
}

impl Watchers {
    pub fn new(total: usize, per_principal: usize) -> Self {
        Self {
            open: Arc::default(),
            total,
            per_principal,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more stream of `principal`, if the bounds allow.
    pub fn open(&self, principal: &str) -> Result<WatchSlot, Status> {
        let mut open = self.lock();
        let mine = open.by_principal.get(principal).copied().unwrap_or(0);
        if mine >= self.per_principal {
            return Err(airt_kit::status::error(
                Code::ResourceExhausted,
                "TOO_MANY_WATCHERS",
                format!(
                    "{principal} already watches {mine} workflows (at most {}); close a stream first",
                    self.per_principal
                ),
            ));
        }
        if open.total >= self.total {
            return Err(airt_kit::status::error(
                Code::ResourceExhausted,
                "TOO_MANY_WATCHERS",
                format!(
                    "this replica serves its maximum of {} watch streams",
                    self.total
                ),
            ));
        }
        open.total += 1;
        *open.by_principal.entry(principal.to_owned()).or_default() += 1;
        Ok(WatchSlot {
            watchers: self.clone(),
            principal: principal.to_owned(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.watchers.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_principal.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                open.by_principal.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_principal_and_in_all_and_freed_on_drop() {
        let watchers = Watchers::new(3, 2);
        let a1 = watchers.open("user:a").expect("first");
        let _a2 = watchers.open("user:a").expect("second");
        let refused = watchers.open("user:a").expect_err("third of a");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let _b1 = watchers.open("user:b").expect("b");
        assert!(watchers.open("user:c").is_err(), "total reached");
        drop(a1);
        assert!(watchers.open("user:c").is_ok(), "a place was freed");
    }
}
