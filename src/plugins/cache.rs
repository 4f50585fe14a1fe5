//! Remembered decisions of policies that declare their inputs (`[cache]` in a policy file).
//!
//! Such a policy sees only its inputs (`wire::view`), so its decision is a function of that view:
//! the view is the key, the plugin's answer the value, kept `ttl_s` seconds. A hit is checked
//! and applied like a fresh answer, without entering WebAssembly. Bounded twice: at most
//! `max_entries` entries (quick_cache's S3-FIFO eviction, the crate the token cache uses), and
//! no entry over [`MAX_ENTRY_BYTES`] (key and answer), so the cache holds at most
//! `max_entries × 4 KiB` whatever clients send. A reload builds new policies, and so new caches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

use crate::config::DecisionCacheConfig;

/// Largest key plus answer remembered; larger ones are answered by the plugin every time.
pub const MAX_ENTRY_BYTES: usize = 4096;

#[derive(Clone)]
struct Entry {
    answer: Arc<[u8]>,
    expires: Instant,
}

/// Counts evictions into the policy's metric.
#[derive(Clone)]
struct Evictions(prometheus::IntCounter);

impl Lifecycle<String, Entry> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: String, _: Entry) {
        self.0.inc();
    }
}

/// One policy's remembered decisions, with its metrics resolved once.
pub struct DecisionCache {
    entries: Cache<String, Entry, UnitWeighter, DefaultHashBuilder, Evictions>,
    ttl: Duration,
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
}

impl DecisionCache {
    pub fn new(policy: &str, config: &DecisionCacheConfig) -> DecisionCache {
        let m = crate::metrics::get();
        let capacity = usize::try_from(config.max_entries).unwrap_or(usize::MAX);
        DecisionCache {
            entries: Cache::with(
                capacity,
                config.max_entries,
                UnitWeighter,
                DefaultHashBuilder::default(),
                Evictions(m.plugin_cache_evictions.with_label_values(&[policy])),
            ),
            ttl: Duration::from_secs(config.ttl_s),
            hits: m.plugin_cache.with_label_values(&[policy, "hit"]),
            misses: m.plugin_cache.with_label_values(&[policy, "miss"]),
        }
    }

    /// The answer remembered for `view`, if it has not expired (counted as a hit or a miss).
    pub fn get(&self, view: &str) -> Option<Arc<[u8]>> {
        let found = self
            .entries
            .get(view)
            .filter(|entry| entry.expires > Instant::now());
        match found {
            Some(entry) => {
                self.hits.inc();
                Some(entry.answer)
            }
            None => {
                self.misses.inc();
                None
            }
        }
    }

    /// Remember `answer` for `view` (unless the two are over [`MAX_ENTRY_BYTES`]).
    pub fn insert(&self, view: String, answer: &[u8]) {
        if view.len() + answer.len() > MAX_ENTRY_BYTES {
            return;
        }
        let entry = Entry {
            answer: Arc::from(answer),
            expires: Instant::now() + self.ttl,
        };
        self.entries.insert(view, entry);
    }

    /// Entries held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheInput;

    /// Each test its own policy name: the counters are process-wide.
    fn cache(policy: &str, max_entries: u64, ttl_s: u64) -> DecisionCache {
        DecisionCache::new(
            policy,
            &DecisionCacheConfig {
                inputs: vec![CacheInput::Country],
                ttl_s,
                max_entries,
            },
        )
    }

    #[test]
    fn a_remembered_answer_is_found_by_its_exact_view() {
        let c = cache("exact", 10, 60);
        assert!(c.get("GB").is_none());
        c.insert("GB".into(), b"F1 0 0 1\0x-portal\0uk\0uk\0");
        assert_eq!(
            c.get("GB").as_deref(),
            Some(&b"F1 0 0 1\0x-portal\0uk\0uk\0"[..])
        );
        assert!(c.get("GBX").is_none() && c.get("FR").is_none());
        assert_eq!(c.hits.get(), 1);
        assert_eq!(c.misses.get(), 3);
    }

    #[test]
    fn the_cache_stays_within_its_entries_and_counts_evictions() {
        let c = cache("bounded", 100, 60);
        for i in 0..10_000 {
            c.insert(format!("key-{i}"), b"");
        }
        assert!(c.len() <= 100, "{} entries", c.len());
        let evictions = crate::metrics::get()
            .plugin_cache_evictions
            .with_label_values(&["bounded"])
            .get();
        assert!(evictions >= 9_900, "{evictions} evictions counted");
    }

    #[test]
    fn entries_too_large_to_remember_are_not_kept() {
        let c = cache("large", 10, 60);
        c.insert("big".into(), &vec![b'x'; MAX_ENTRY_BYTES]);
        assert!(c.get("big").is_none());
    }

    #[test]
    fn an_expired_answer_is_a_miss() {
        let c = cache("expired", 10, 60);
        c.entries.insert(
            "GB".into(),
            Entry {
                answer: Arc::from(&b""[..]),
                expires: Instant::now(),
            },
        );
        assert!(c.get("GB").is_none());
    }
}
