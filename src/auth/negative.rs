//! The negative cache: tokens whose signature did not verify, so the same forged token sent again
//! is refused without another signature check.
//!
//! Keyed by a 64-bit keyed hash of the token text (SipHash, random per process: a client cannot
//! make its forged token collide with someone's valid one on purpose, and a chance collision is
//! about one in 2^64 per pair). Bounded by entries; an entry lives `ttl` at most and only while
//! its issuer's key set is the one that refused it (a rotation may make the token valid).

use std::hash::{BuildHasher, RandomState};

use quick_cache::sync::Cache;

#[derive(Debug, Clone, Copy)]
struct Refused {
    issuer: usize,
    generation: u64,
    /// Unix seconds after which the entry is not used.
    until: u64,
}

pub struct NegativeCache {
    entries: Cache<u64, Refused>,
    hasher: RandomState,
    ttl_s: u64,
}

impl NegativeCache {
    /// `None` when `max_entries` is zero (off).
    pub fn new(max_entries: usize, ttl_s: u64) -> Option<NegativeCache> {
        (max_entries > 0).then(|| NegativeCache {
            entries: Cache::new(max_entries),
            hasher: RandomState::new(),
            ttl_s,
        })
    }

    /// Whether `token` failed its signature check under the current keys of its issuer.
    pub fn refused(&self, token: &str, now: u64, generation_of: impl Fn(usize) -> u64) -> bool {
        let key = self.hasher.hash_one(token);
        let Some(entry) = self.entries.peek(&key) else {
            return false;
        };
        if now > entry.until || generation_of(entry.issuer) != entry.generation {
            self.entries.remove(&key);
            return false;
        }
        true
    }

    pub fn insert(&self, token: &str, issuer: usize, generation: u64, now: u64) {
        let refused = Refused {
            issuer,
            generation,
            until: now.saturating_add(self.ttl_s),
        };
        self.entries.insert(self.hasher.hash_one(token), refused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_is_remembered_until_its_ttl_or_a_key_change() {
        let cache = NegativeCache::new(100, 30).expect("on");
        cache.insert("forged", 0, 7, 1000);
        assert!(cache.refused("forged", 1000, |_| 7));
        assert!(!cache.refused("other", 1000, |_| 7));
        assert!(
            !cache.refused("forged", 1000, |_| 8),
            "new keys: check again"
        );
        cache.insert("forged", 0, 7, 1000);
        assert!(cache.refused("forged", 1030, |_| 7));
        assert!(!cache.refused("forged", 1031, |_| 7), "past the ttl");
    }

    #[test]
    fn the_cache_is_bounded_and_zero_turns_it_off() {
        assert!(NegativeCache::new(0, 30).is_none());
        let cache = NegativeCache::new(100, 30).expect("on");
        for i in 0..10_000 {
            cache.insert(&format!("forged-{i}"), 0, 1, 0);
        }
        assert!(cache.entries.len() <= 100, "{}", cache.entries.len());
    }
}
