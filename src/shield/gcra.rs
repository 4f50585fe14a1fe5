//! GCRA, the generic cell rate algorithm (ITU-T I.371; the algorithm behind `redis-cell` and
//! `governor`): a limit of `rate` requests per `per_s` seconds with `burst` requests at once is one
//! number per key, the theoretical arrival time (TAT) of the next request. A request of cost `c`
//! is allowed when `max(TAT, now) + c·T` lies at most `τ` ahead of now, where `T = per_s / rate`
//! is the emission interval and `τ = burst · T` the tolerance; allowing it moves TAT there.
//!
//! Pure arithmetic on nanoseconds: the caller supplies the clock, so tests drive time directly.

/// One limit's shape, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per window (the `q` of `RateLimit-Policy`).
    pub rate: u64,
    /// The window in seconds (the `w` of `RateLimit-Policy`).
    pub per_s: u64,
    /// Requests allowed at once.
    pub burst: u64,
    /// `T`: one request's share of the window.
    interval_ns: u64,
    /// `τ`: how far ahead of now TAT may be.
    tolerance_ns: u64,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: store `tat`; `remaining` more requests of cost 1 would be allowed right now, and
    /// the full burst is back after `reset_ns`.
    Allow {
        tat: u64,
        remaining: u64,
        reset_ns: u64,
    },
    /// Refused: the same request would be allowed after `retry_after_ns`. TAT is unchanged.
    Deny { retry_after_ns: u64, reset_ns: u64 },
}

const NS: u64 = 1_000_000_000;

impl Quota {
    /// `rate` and `burst` at least 1, `per_s` at least 1 (checked by the config reader).
    pub fn new(rate: u64, per_s: u64, burst: u64) -> Quota {
        let (rate, per_s, burst) = (rate.max(1), per_s.max(1), burst.max(1));
        let interval_ns = (per_s.saturating_mul(NS) / rate).max(1);
        Quota {
            rate,
            per_s,
            burst,
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst),
        }
    }

    /// Decide a request of `cost` at `now` for a key whose stored TAT is `tat` (0: never seen).
    pub fn check(&self, tat: u64, now: u64, cost: u64) -> Verdict {
        let start = tat.max(now);
        let new_tat = start.saturating_add(self.interval_ns.saturating_mul(cost));
        let ahead = new_tat - now;
        if ahead <= self.tolerance_ns {
            Verdict::Allow {
                tat: new_tat,
                remaining: (self.tolerance_ns - ahead) / self.interval_ns,
                reset_ns: ahead,
            }
        } else {
            Verdict::Deny {
                retry_after_ns: ahead - self.tolerance_ns,
                reset_ns: start - now,
            }
        }
    }

    /// `T` and `τ` in microseconds, for the Redis store (whose clock is in microseconds).
    pub fn micros(&self) -> (u64, u64) {
        let interval = (self.interval_ns / 1000).max(1);
        (interval, interval.saturating_mul(self.burst))
    }

    /// Whether a key whose TAT is `tat` would be refused a request of cost 1 at `now`, without
    /// spending anything.
    pub fn is_exhausted(&self, tat: u64, now: u64) -> bool {
        matches!(self.check(tat, now, 1), Verdict::Deny { .. })
    }
}

/// Whole seconds, rounded up: what `Retry-After` and the `t` parameter carry.
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS;

    /// Run `n` requests of cost 1 at `now`, storing TAT like a store would; how many were allowed.
    fn burst(quota: &Quota, tat: &mut u64, now: u64, n: u64) -> u64 {
        let mut allowed = 0;
        for _ in 0..n {
            if let Verdict::Allow { tat: next, .. } = quota.check(*tat, now, 1) {
                *tat = next;
                allowed += 1;
            }
        }
        allowed
    }

    #[test]
    fn a_fresh_key_gets_exactly_its_burst_at_once() {
        let quota = Quota::new(100, 60, 20);
        let mut tat = 0;
        assert_eq!(burst(&quota, &mut tat, 1000 * S, 50), 20);
    }

    #[test]
    fn after_the_burst_requests_come_back_at_the_steady_rate() {
        // 10 per second: one request every 100 ms.
        let quota = Quota::new(10, 1, 5);
        let mut tat = 0;
        let t0 = 50 * S;
        assert_eq!(burst(&quota, &mut tat, t0, 5), 5);
        assert_eq!(
            burst(&quota, &mut tat, t0 + S / 20, 1),
            0,
            "50 ms later: nothing yet"
        );
        assert_eq!(
            burst(&quota, &mut tat, t0 + S / 10, 1),
            1,
            "100 ms later: one"
        );
        assert_eq!(burst(&quota, &mut tat, t0 + S / 10, 1), 0);
        // One second later: ten more cells have drained but the burst caps what is allowed at once.
        assert_eq!(burst(&quota, &mut tat, t0 + S + S / 10, 20), 5);
    }

    #[test]
    fn a_refusal_says_when_to_retry_and_the_burst_resets_after_a_quiet_window() {
        let quota = Quota::new(2, 10, 2); // one request per 5 s, two at once
        let mut tat = 0;
        let now = 100 * S;
        assert_eq!(burst(&quota, &mut tat, now, 2), 2);
        match quota.check(tat, now, 1) {
            Verdict::Deny {
                retry_after_ns,
                reset_ns,
            } => {
                assert_eq!(retry_after_ns, 5 * S);
                assert_eq!(reset_ns, 10 * S);
                assert_eq!(ceil_secs(retry_after_ns), 5);
            }
            other => panic!("{other:?}"),
        }
        assert!(quota.is_exhausted(tat, now + 5 * S - 1));
        assert!(!quota.is_exhausted(tat, now + 5 * S));
        // After the whole window the key is as good as new.
        assert_eq!(burst(&quota, &mut tat, now + 10 * S, 5), 2);
    }

    #[test]
    fn a_cost_above_one_spends_several_cells_and_reports_what_remains() {
        let quota = Quota::new(10, 1, 10);
        match quota.check(0, S, 4) {
            Verdict::Allow {
                remaining,
                reset_ns,
                ..
            } => {
                assert_eq!(remaining, 6);
                assert_eq!(reset_ns, 4 * S / 10);
            }
            other => panic!("{other:?}"),
        }
        let mut tat = 0;
        for _ in 0..2 {
            if let Verdict::Allow { tat: next, .. } = quota.check(tat, S, 4) {
                tat = next;
            }
        }
        assert!(
            matches!(quota.check(tat, S, 4), Verdict::Deny { .. }),
            "8 of 10 spent: a cost of 4 no longer fits"
        );
        assert!(matches!(
            quota.check(tat, S, 2),
            Verdict::Allow { remaining: 0, .. }
        ));
    }

    #[test]
    fn extreme_settings_saturate_instead_of_overflowing() {
        // A debug build panics on overflow, so these calls are the assertion.
        let huge = Quota::new(1, u64::MAX / NS, u64::MAX);
        huge.check(u64::MAX - 1, 0, u64::MAX);
        huge.check(0, u64::MAX, u64::MAX);
        let fast = Quota::new(u64::MAX, 1, 1);
        assert!(matches!(fast.check(0, 0, 1), Verdict::Allow { .. }));
    }
}
