//! The local limit store: one GCRA cell per key, in a bounded cache.
//!
//! Keys are 64-bit keyed hashes (SipHash with a per-process random key, so a client cannot aim two
//! of its values at one cell), and the cells live in a `quick_cache` bounded by `max_keys`: an
//! attacker cycling through random keys cannot grow it. Its S3-FIFO eviction drops keys seen once
//! before keys seen often, so such a flood evicts mostly its own one-shot keys; a key that is
//! evicted anyway starts again with a full burst (the cost of a bound on memory). A check runs
//! under the cache shard's lock, so concurrent requests of one key never both spend the last cell.

use std::hash::{BuildHasher, Hasher, RandomState};

use quick_cache::sync::{Cache, EntryAction, EntryResult};

use super::gcra::{Quota, Verdict};

/// One key's state.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    /// GCRA's theoretical arrival time (ns on the shield clock); 0: never seen.
    tat: u64,
    /// Penalty box only: refused until this time.
    boxed_until: u64,
}

pub struct LocalStore {
    cells: Cache<u64, Cell>,
    hasher: RandomState,
}

impl LocalStore {
    pub fn new(max_keys: usize) -> LocalStore {
        LocalStore {
            cells: Cache::new(max_keys.max(1)),
            hasher: RandomState::new(),
        }
    }

    /// The cell key of a value, from its parts (hashed with their lengths, so parts never run
    /// into each other).
    pub fn key(&self, parts: &[&[u8]]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in parts {
            h.write_usize(part.len());
            h.write(part);
        }
        h.finish()
    }

    /// Spend `cost` of `key`'s quota at `now` if it fits.
    pub fn check(&self, key: u64, quota: &Quota, now: u64, cost: u64) -> Verdict {
        self.update(key, |cell| {
            let verdict = quota.check(cell.tat, now, cost);
            if let Verdict::Allow { tat, .. } = verdict {
                cell.tat = tat;
            }
            verdict
        })
    }

    /// Count one failure of `key`; when the failures fill `quota`, the key is boxed until
    /// `now + box_ns`. Returns whether this failure boxed it.
    pub fn fail(&self, key: u64, quota: &Quota, now: u64, box_ns: u64) -> bool {
        self.update(key, |cell| {
            let full = match quota.check(cell.tat, now, 1) {
                Verdict::Allow { tat, remaining, .. } => {
                    cell.tat = tat;
                    remaining == 0
                }
                Verdict::Deny { .. } => true,
            };
            if full && cell.boxed_until <= now {
                cell.boxed_until = now.saturating_add(box_ns);
                // The next window starts empty once the box opens.
                cell.tat = 0;
                return true;
            }
            false
        })
    }

    /// How long `key` stays boxed, if it is (nothing is written).
    pub fn boxed(&self, key: u64, now: u64) -> Option<u64> {
        let cell = self.cells.peek(&key)?;
        (cell.boxed_until > now).then(|| cell.boxed_until - now)
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Run `f` on `key`'s cell (a fresh one if absent) under the shard's lock.
    fn update<T>(&self, key: u64, f: impl Fn(&mut Cell) -> T) -> T {
        match self
            .cells
            .entry(&key, None, |_, cell| EntryAction::Retain(f(cell)))
        {
            EntryResult::Retained(out) => out,
            EntryResult::Vacant(guard) => {
                let mut cell = Cell::default();
                let out = f(&mut cell);
                let _ = guard.insert(cell);
                out
            }
            // `entry` without a timeout never times out, and the callback only retains; were it
            // to happen, the request is decided on a fresh cell.
            _ => f(&mut Cell::default()),
        }
    }
}
