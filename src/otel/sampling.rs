//! Which traces are kept. The first decision is made when the request starts (it travels to the
//! origin in `traceparent`); the last when it ends, when its outcome is known: failed and slow
//! requests are always kept, and kept traces of refused requests are capped per second, so a
//! flood of bad requests cannot flood the collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use opentelemetry::trace::TraceId;
use prometheus::IntCounter;

use crate::config::TracingConfig;

/// Why a trace was kept or not (`edgewarden_traces_total{decision}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Sampled,
    /// Not sampled, kept because the request failed (5xx, or no answer).
    Failed,
    /// Not sampled, kept because it took at least `slow_ms`.
    Slow,
    NotSampled,
    /// Sampled, but over `rejected_per_s`.
    Capped,
}

impl Kept {
    pub fn is_kept(self) -> bool {
        matches!(self, Kept::Sampled | Kept::Failed | Kept::Slow)
    }

    const ALL: [Kept; 5] = [
        Kept::Sampled,
        Kept::Failed,
        Kept::Slow,
        Kept::NotSampled,
        Kept::Capped,
    ];

    fn label(self) -> &'static str {
        match self {
            Kept::Sampled => "sampled",
            Kept::Failed => "failed",
            Kept::Slow => "slow",
            Kept::NotSampled => "not_sampled",
            Kept::Capped => "capped",
        }
    }
}

/// Whether a new trace is kept at `ratio`: a function of its id, so every gateway that sees the
/// same trace decides alike (the OpenTelemetry `TraceIdRatioBased` rule, on the id's low 63 bits).
pub fn ratio_keeps(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let low = u64::from_be_bytes(trace_id.to_bytes()[8..].try_into().unwrap_or_default()) >> 1;
    low < (ratio * (1u64 << 63) as f64) as u64
}

/// The end-of-request decision, with its counters resolved once.
pub struct Sampler {
    rejected_per_s: u64,
    /// The current second (since `epoch`) in the high 40 bits, traces kept in it in the low 24.
    window: AtomicU64,
    epoch: Instant,
    counters: [IntCounter; 5],
}

const COUNT_BITS: u32 = 24;

impl Sampler {
    pub fn new(config: &TracingConfig) -> Sampler {
        let m = crate::metrics::get();
        Sampler {
            rejected_per_s: config.rejected_per_s,
            window: AtomicU64::new(0),
            epoch: Instant::now(),
            counters: Kept::ALL.map(|k| m.traces.with_label_values(&[k.label()])),
        }
    }

    /// Keep the trace or not, and count why.
    pub fn decide(&self, head: bool, failed: bool, rejected: bool, slow: bool) -> Kept {
        let kept = match (head, failed, slow) {
            (_, true, _) if !head => Kept::Failed,
            (false, _, true) => Kept::Slow,
            (false, _, _) => Kept::NotSampled,
            (true, false, _) if rejected && !self.take_rejected() => Kept::Capped,
            (true, ..) => Kept::Sampled,
        };
        self.counters[kept as usize].inc();
        kept
    }

    /// One place among this second's `rejected_per_s`.
    fn take_rejected(&self) -> bool {
        let second = self.epoch.elapsed().as_secs();
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, count) = (current >> COUNT_BITS, current & ((1 << COUNT_BITS) - 1));
            let count = if window == second { count } else { 0 };
            if count >= self.rejected_per_s.min((1 << COUNT_BITS) - 1) {
                return false;
            }
            let next = (second << COUNT_BITS) | (count + 1);
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(rejected_per_s: u64) -> Sampler {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[[origins]]\nname = \"o\"\nupstreams = [\"127.0.0.1:1\"]\n\
             [[routes]]\nname = \"r\"\npath_prefix = \"/\"\norigin = \"o\"\nauth = \"off\"\n\
             [tracing]\nendpoint = \"http://127.0.0.1:4318\"\nrejected_per_s = {rejected_per_s}\n"
        );
        let config = crate::config::Config::from_str(&text, std::path::Path::new("unit.toml"))
            .expect("valid config");
        Sampler::new(config.tracing.as_ref().expect("tracing"))
    }

    #[test]
    fn the_ratio_keeps_about_that_share_of_random_ids() {
        let ids = (0..20_000u128)
            .map(|i| TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)));
        let kept = ids.filter(|id| ratio_keeps(*id, 0.25)).count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 20000 at 0.25");
        assert!(ratio_keeps(TraceId::from(7u128), 1.0));
        assert!(!ratio_keeps(TraceId::from(u128::MAX), 0.0));
    }

    #[test]
    fn failed_and_slow_requests_are_kept_unsampled() {
        let s = sampler(10);
        assert_eq!(s.decide(false, true, false, false), Kept::Failed);
        assert_eq!(s.decide(false, false, false, true), Kept::Slow);
        assert_eq!(s.decide(false, false, false, false), Kept::NotSampled);
        assert_eq!(s.decide(true, false, false, false), Kept::Sampled);
    }

    #[test]
    fn sampled_refusals_are_capped_per_second() {
        let s = sampler(3);
        let kept: Vec<Kept> = (0..5).map(|_| s.decide(true, false, true, false)).collect();
        assert_eq!(&kept[..3], &[Kept::Sampled; 3]);
        assert_eq!(&kept[3..], &[Kept::Capped; 2]);
        // Forwarded requests are not capped.
        assert_eq!(s.decide(true, false, false, false), Kept::Sampled);
    }
}
