//! Verified-token cache: a token seen and verified once skips parsing and the signature check.
//!
//! Keyed by the token's exact text. Bounded by entries and by bytes; an entry is only used until
//! the token's `exp`, and only while the issuer's key set is the one it was verified against (a
//! rotation drops every older verification for that issuer).

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use serde_json::{Map, Value};

/// One successful verification.
pub struct Verified {
    /// Index of the issuer that signed it.
    pub issuer: usize,
    pub claims: Arc<Map<String, Value>>,
    /// Unix seconds after which the entry must not be used: the token's `exp` plus the leeway.
    pub exp: u64,
    /// The generation of the key set whose key verified it (from the same snapshot as the key).
    pub generation: u64,
    /// Approximate bytes held, for the byte bound.
    pub size: u64,
}

#[derive(Clone)]
struct ByBytes {
    /// Smallest weight of an entry: `bytes / entries`, so the entry bound holds too.
    floor: u64,
}

impl Weighter<Arc<str>, Arc<Verified>> for ByBytes {
    fn weight(&self, key: &Arc<str>, value: &Arc<Verified>) -> u64 {
        (key.len() as u64 + value.size).max(self.floor)
    }
}

pub struct TokenCache {
    cache: Cache<Arc<str>, Arc<Verified>, ByBytes>,
}

impl TokenCache {
    /// `None` when either bound is zero (cache off).
    pub fn new(max_entries: usize, max_bytes: usize) -> Option<TokenCache> {
        if max_entries == 0 || max_bytes == 0 {
            return None;
        }
        let floor = (max_bytes / max_entries).max(1) as u64;
        Some(TokenCache {
            cache: Cache::with_weighter(max_entries, max_bytes as u64, ByBytes { floor }),
        })
    }

    /// A usable entry for `token`, given the current time and the issuer generations.
    pub fn get(
        &self,
        token: &str,
        now: u64,
        generation_of: impl Fn(usize) -> u64,
    ) -> Option<Arc<Verified>> {
        let entry = self.cache.get(token)?;
        if now > entry.exp || generation_of(entry.issuer) != entry.generation {
            self.cache.remove(token);
            return None;
        }
        Some(entry)
    }

    pub fn insert(&self, token: &str, verified: Verified) {
        self.cache.insert(Arc::from(token), Arc::new(verified));
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(exp: u64, generation: u64) -> Verified {
        Verified {
            issuer: 0,
            claims: Arc::new(Map::new()),
            exp,
            generation,
            size: 100,
        }
    }

    #[test]
    fn entries_expire_with_the_token_and_with_the_key_set() {
        let cache = TokenCache::new(10, 1 << 20).expect("cache on");
        cache.insert("t", verified(1000, 1));
        assert!(cache.get("t", 999, |_| 1).is_some());
        assert!(
            cache.get("t", 999, |_| 2).is_none(),
            "rotation drops the entry"
        );
        cache.insert("t", verified(1000, 1));
        assert!(
            cache.get("t", 1001, |_| 1).is_none(),
            "expired entry is not used"
        );
    }

    #[test]
    fn bounds_hold_and_zero_turns_it_off() {
        assert!(TokenCache::new(0, 100).is_none());
        let cache = TokenCache::new(50, 1 << 20).expect("cache on");
        for i in 0..500 {
            cache.insert(&format!("token-{i}"), verified(u64::MAX, 1));
        }
        assert!(cache.len() <= 50, "{} entries", cache.len());
    }
}
