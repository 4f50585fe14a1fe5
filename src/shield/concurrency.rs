//! Concurrency limits: requests of one key in flight at once. A [`Permit`] is taken when the
//! request passes the limit and given back when it is dropped, with the request's context, after
//! the response (or the client's departure). Entries exist only while a request holds one, so
//! memory is bounded by the requests in flight; the map is sharded to keep locks short.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

#[derive(Default)]
pub struct InFlight {
    shards: [Mutex<HashMap<u64, u64>>; SHARDS],
}

/// One request in flight for a key; dropping it gives the place back.
pub struct Permit {
    counts: Arc<InFlight>,
    key: u64,
}

impl InFlight {
    /// A place for `key` if fewer than `max` are taken.
    pub fn acquire(self: &Arc<InFlight>, key: u64, max: u64) -> Option<Permit> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let taken = shard.entry(key).or_insert(0);
        if *taken >= max {
            if *taken == 0 {
                shard.remove(&key);
            }
            return None;
        }
        *taken += 1;
        Some(Permit {
            counts: self.clone(),
            key,
        })
    }

    /// Requests of `key` in flight.
    #[cfg(test)]
    pub fn count(&self, key: u64) -> u64 {
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.get(&key).copied().unwrap_or(0)
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, u64>> {
        &self.shards[(key % SHARDS as u64) as usize]
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut shard = self
            .counts
            .shard(self.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(taken) = shard.get_mut(&self.key) {
            *taken = taken.saturating_sub(1);
            if *taken == 0 {
                shard.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_up_to_the_limit_and_given_back_on_drop() {
        let counts = Arc::new(InFlight::default());
        let a = counts.acquire(1, 2).expect("first");
        let b = counts.acquire(1, 2).expect("second");
        assert!(counts.acquire(1, 2).is_none(), "third refused");
        assert!(counts.acquire(2, 2).is_some(), "another key");
        drop(a);
        assert_eq!(counts.count(1), 1);
        let _c = counts.acquire(1, 2).expect("a place came back");
        drop(b);
        assert_eq!(counts.count(1), 1);
        assert!(counts.acquire(3, 0).is_none());
        assert_eq!(counts.count(3), 0, "no entry left behind");
    }
}
