//! A circuit breaker for the Redis store: after `threshold` failed calls in a row it opens, and
//! calls skip Redis (answered at once by `on_store_error`) until `open_ns` has passed; then one
//! call at a time probes Redis, and a success closes it again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Whether a call may go to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Closed,
    /// Open, but this call is the one probe.
    Probe,
    Open,
}

pub struct Breaker {
    threshold: u64,
    open_ns: u64,
    failures: AtomicU64,
    /// 0: closed; otherwise open until this time (shield clock).
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    pub fn new(threshold: u64, open_ns: u64) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_ns,
            failures: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    pub fn gate(&self, now: u64) -> Gate {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            Gate::Closed
        } else if now < until {
            Gate::Open
        } else if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Gate::Probe
        } else {
            Gate::Open
        }
    }

    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    /// Count a failure; `true` when this one opened (or reopened) the breaker.
    pub fn failed(&self, now: u64) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let probe = self.probing.swap(false, Ordering::AcqRel);
        if probe || failures >= self.threshold {
            self.open_until
                .store(now.saturating_add(self.open_ns).max(1), Ordering::Release);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_the_threshold_probes_once_after_the_pause_and_closes_on_success() {
        let b = Breaker::new(3, 100);
        assert!(!b.failed(0) && !b.failed(0));
        assert_eq!(b.gate(0), Gate::Closed);
        assert!(b.failed(0), "the third failure opens it");
        assert_eq!(b.gate(50), Gate::Open);
        assert_eq!(b.gate(100), Gate::Probe);
        assert_eq!(b.gate(100), Gate::Open, "one probe at a time");
        assert!(b.failed(100), "a failed probe reopens it");
        assert_eq!(b.gate(150), Gate::Open);
        assert_eq!(b.gate(200), Gate::Probe);
        b.succeeded();
        assert_eq!(b.gate(200), Gate::Closed);
        assert!(!b.failed(200), "counting starts again");
    }
}
