//! Passive health (Envoy's outlier detection): what real requests say about each upstream.
//!
//! Every attempt on an upstream ends as a success (a response header other than 502/503/504) or a
//! failure (a connect error, a timeout, an unreadable or missing answer, or 502/503/504). After
//! `consecutive_failures` failures in a row the upstream is taken out of the rotation for
//! `eject_s`, doubled each time it is taken out again (up to `max_eject_s`) until it serves a
//! request well. At most `max_ejected_percent` of an origin's upstreams are out at once (at
//! least one, never all), so passive health alone never leaves an origin without upstreams.
//!
//! The state is a few atomics per upstream, read on every selection; it belongs to one
//! generation and starts afresh on reload.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::config::PassiveHealthConfig;

/// One origin's passive health: a slot per upstream, in the configuration's order.
pub struct PassiveHealth {
    config: PassiveHealthConfig,
    /// The most upstreams out at once.
    max_out: usize,
    upstreams: Box<[Slot]>,
    epoch: Instant,
    /// `edgewarden_upstream_ejections_total` for this origin, resolved once.
    ejections: prometheus::IntCounter,
}

#[derive(Default)]
struct Slot {
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the upstream is out; 0: in.
    out_until_ms: AtomicU64,
    /// Times taken out since it last served well: the next time out is doubled this many times.
    times_out: AtomicU32,
}

impl PassiveHealth {
    pub fn new(
        config: PassiveHealthConfig,
        upstreams: usize,
        ejections: prometheus::IntCounter,
    ) -> PassiveHealth {
        let share = upstreams * config.max_ejected_percent as usize / 100;
        PassiveHealth {
            max_out: share.max(1).min(upstreams.saturating_sub(1)),
            upstreams: (0..upstreams).map(|_| Slot::default()).collect(),
            config,
            epoch: Instant::now(),
            ejections,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether upstream `index` is out of the rotation now.
    pub fn is_out(&self, index: usize) -> bool {
        self.upstreams.get(index).is_some_and(|slot| {
            let until = slot.out_until_ms.load(Relaxed);
            until != 0 && until > self.now_ms()
        })
    }

    /// An attempt on upstream `index` got a usable answer.
    pub fn succeeded(&self, index: usize) {
        if let Some(slot) = self.upstreams.get(index) {
            // Loads first: the common case writes nothing, keeping the line shared between cores.
            if slot.failures.load(Relaxed) != 0 {
                slot.failures.store(0, Relaxed);
            }
            if slot.times_out.load(Relaxed) != 0 && !self.is_out(index) {
                slot.times_out.store(0, Relaxed);
            }
        }
    }

    /// An attempt on upstream `index` failed; returns whether this failure took it out.
    pub fn failed(&self, index: usize) -> bool {
        let Some(slot) = self.upstreams.get(index) else {
            return false;
        };
        let failures = slot.failures.fetch_add(1, Relaxed) + 1;
        if failures < self.config.consecutive_failures || self.is_out(index) {
            return false;
        }
        let out_now = (0..self.upstreams.len())
            .filter(|&i| self.is_out(i))
            .count();
        if out_now >= self.max_out {
            return false;
        }
        let times = slot.times_out.fetch_add(1, Relaxed).min(16);
        let eject_ms = (self.config.eject_s * 1000)
            .saturating_mul(1 << times)
            .min(self.config.max_eject_s * 1000);
        let until = (self.now_ms() + eject_ms).max(1);
        let previous = slot.out_until_ms.swap(until, Relaxed);
        slot.failures.store(0, Relaxed);
        // Two failures racing past the threshold take it out once.
        let newly_out = previous == 0 || previous <= self.now_ms();
        if newly_out {
            self.ejections.inc();
            tracing::warn!(
                upstream = index,
                eject_ms,
                "upstream taken out after failures in a row"
            );
        }
        newly_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(upstreams: usize, percent: u32) -> PassiveHealth {
        let config = PassiveHealthConfig {
            consecutive_failures: 3,
            eject_s: 30,
            max_eject_s: 300,
            max_ejected_percent: percent,
        };
        PassiveHealth::new(
            config,
            upstreams,
            prometheus::IntCounter::new("t", "t").expect("counter"),
        )
    }

    #[test]
    fn an_upstream_is_taken_out_after_failures_in_a_row_only() {
        let h = health(3, 50);
        assert!(!h.failed(0));
        assert!(!h.failed(0));
        h.succeeded(0);
        assert!(!h.failed(0));
        assert!(!h.failed(0));
        assert!(!h.is_out(0), "a success in between restarts the count");
        assert!(h.failed(0));
        assert!(h.is_out(0));
        assert!(!h.is_out(1));
        assert_eq!(h.ejections.get(), 1);
    }

    #[test]
    fn never_more_than_the_allowed_share_and_never_all() {
        let h = health(3, 100);
        for i in 0..3 {
            for _ in 0..3 {
                h.failed(i);
            }
        }
        assert_eq!((0..3).filter(|&i| h.is_out(i)).count(), 2, "one stays in");
        let single = health(1, 100);
        for _ in 0..10 {
            assert!(!single.failed(0));
        }
        assert!(!single.is_out(0));
        let half_of_four = health(4, 10);
        for i in 0..4 {
            for _ in 0..3 {
                half_of_four.failed(i);
            }
        }
        assert_eq!(
            (0..4).filter(|&i| half_of_four.is_out(i)).count(),
            1,
            "a small share still allows one"
        );
    }

    #[test]
    fn each_time_out_again_lasts_twice_as_long_up_to_the_cap() {
        let h = health(2, 50);
        let slot = &h.upstreams[0];
        let mut lengths = Vec::new();
        for _ in 0..6 {
            for _ in 0..3 {
                h.failed(0);
            }
            let until = slot.out_until_ms.load(Relaxed);
            lengths.push((until - h.now_ms() + 500) / 1000);
            // Back in without having served well: the next time out is longer.
            slot.out_until_ms.store(0, Relaxed);
        }
        assert_eq!(lengths, [30, 60, 120, 240, 300, 300]);
        h.succeeded(0);
        for _ in 0..3 {
            h.failed(0);
        }
        let until = slot.out_until_ms.load(Relaxed);
        assert_eq!(
            (until - h.now_ms() + 500) / 1000,
            30,
            "serving well resets it"
        );
    }
}
