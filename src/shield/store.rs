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
use crate::config::MAX_WINDOWS;

/// One key's state.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    /// GCRA's theoretical arrival time of each window (ns on the shield clock); 0: never seen.
    tats: [u64; MAX_WINDOWS],
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
        self.check_all(key, std::slice::from_ref(quota), now, cost)
            .0
    }

    /// Spend `cost` in every window of `quotas` (at most [`MAX_WINDOWS`]) if it fits in all of
    /// them, or in none. Returns the verdict (the tightest window's) and that window's index.
    pub fn check_all(&self, key: u64, quotas: &[Quota], now: u64, cost: u64) -> (Verdict, usize) {
        self.update(key, |cell| {
            let mut verdicts = [None; MAX_WINDOWS];
            for ((slot, quota), tat) in verdicts.iter_mut().zip(quotas).zip(cell.tats) {
                *slot = Some(quota.check(tat, now, cost));
            }
            let (verdict, window) = tightest(verdicts.iter().flatten().copied());
            if matches!(verdict, Verdict::Allow { .. }) {
                for (tat, verdict) in cell.tats.iter_mut().zip(verdicts) {
                    if let Some(Verdict::Allow { tat: next, .. }) = verdict {
                        *tat = next;
                    }
                }
            }
            (verdict, window)
        })
    }

    /// Count one failure of `key`; when the failures fill `quota`, the key is boxed until
    /// `now + box_ns`. Returns whether this failure boxed it.
    pub fn fail(&self, key: u64, quota: &Quota, now: u64, box_ns: u64) -> bool {
        self.update(key, |cell| {
            let full = match quota.check(cell.tats[0], now, 1) {
                Verdict::Allow { tat, remaining, .. } => {
                    cell.tats[0] = tat;
                    remaining == 0
                }
                Verdict::Deny { .. } => true,
            };
            if full && cell.boxed_until <= now {
                cell.boxed_until = now.saturating_add(box_ns);
                // The next window starts empty once the box opens.
                cell.tats[0] = 0;
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

/// The verdict that decides among several windows' (with its window's index): the refusal with
/// the longest wait, or if all allow, the one with the fewest requests remaining.
pub fn tightest(verdicts: impl Iterator<Item = Verdict>) -> (Verdict, usize) {
    let mut best: Option<(Verdict, usize)> = None;
    for (i, verdict) in verdicts.enumerate() {
        let tighter = match (best, verdict) {
            (None, _) => true,
            (Some((Verdict::Allow { .. }, _)), Verdict::Deny { .. }) => true,
            (
                Some((
                    Verdict::Deny {
                        retry_after_ns: a, ..
                    },
                    _,
                )),
                Verdict::Deny {
                    retry_after_ns: b, ..
                },
            ) => b > a,
            (
                Some((Verdict::Allow { remaining: a, .. }, _)),
                Verdict::Allow { remaining: b, .. },
            ) => b < a,
            (Some((Verdict::Deny { .. }, _)), Verdict::Allow { .. }) => false,
        };
        if tighter {
            best = Some((verdict, i));
        }
    }
    best.unwrap_or((
        Verdict::Allow {
            tat: 0,
            remaining: u64::MAX,
            reset_ns: 0,
        },
        0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_request_is_spent_in_every_window_or_in_none() {
        let store = LocalStore::new(100);
        // 3 per second, and 5 per minute.
        let quotas = [Quota::new(3, 1, 3), Quota::new(5, 60, 5)];
        let key = store.key(&[b"user"]);
        let allowed = |now| {
            matches!(
                store.check_all(key, &quotas, now, 1).0,
                Verdict::Allow { .. }
            )
        };
        assert!(allowed(S) && allowed(S) && allowed(S));
        let (refused, window) = store.check_all(key, &quotas, S, 1);
        assert!(matches!(refused, Verdict::Deny { .. }));
        assert_eq!(window, 0, "the per-second window refuses first");
        assert!(allowed(2 * S) && allowed(2 * S), "the minute has two left");
        let (refused, window) = store.check_all(key, &quotas, 2 * S, 1);
        assert_eq!(window, 1, "now the minute refuses");
        let Verdict::Deny { retry_after_ns, .. } = refused else {
            panic!("{refused:?}");
        };
        assert!(retry_after_ns > 10 * S, "{retry_after_ns}");
    }

    #[test]
    fn the_store_holds_at_most_its_bound_of_keys() {
        let store = LocalStore::new(1000);
        let quota = Quota::new(1, 1, 1);
        for i in 0u32..50_000 {
            store.check(store.key(&[&i.to_be_bytes()]), &quota, 1, 1);
        }
        assert!(store.len() <= 1000, "{}", store.len());
    }
}
