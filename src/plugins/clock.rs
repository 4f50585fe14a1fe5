//! Plugin time budgets count the time a plugin actually runs. A call that yields at an epoch tick
//! waits while other requests use the thread; that wait is not the plugin's doing, so it is not
//! charged. Otherwise a busy gateway would time out well-behaved plugins and answer 503 exactly
//! when it is loaded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Running time of the current call of one instance.
pub struct RunClock {
    base: Instant,
    /// Nanoseconds after `base` when the call last started running.
    resumed: AtomicU64,
    /// Nanoseconds of running charged so far.
    used: AtomicU64,
}

impl Default for RunClock {
    fn default() -> Self {
        RunClock {
            base: Instant::now(),
            resumed: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }
}

impl RunClock {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A new call starts running now.
    pub fn start(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.resume();
    }

    /// The call runs again after waiting.
    pub fn resume(&self) {
        self.resumed.store(self.now(), Ordering::Relaxed);
    }

    /// Charge the running since the last (re)start and return the call's total.
    pub fn charge(&self) -> Duration {
        let now = self.now();
        let since = now.saturating_sub(self.resumed.swap(now, Ordering::Relaxed));
        let used = self.used.fetch_add(since, Ordering::Relaxed) + since;
        Duration::from_nanos(used)
    }
}

/// Polls a plugin call, telling the clock each time the call runs again.
pub struct Timed<'a, T> {
    inner: Pin<Box<dyn Future<Output = T> + Send + 'a>>,
    clock: Arc<RunClock>,
}

impl<'a, T> Timed<'a, T> {
    pub fn new(inner: impl Future<Output = T> + Send + 'a, clock: Arc<RunClock>) -> Self {
        clock.start();
        Timed {
            inner: Box::pin(inner),
            clock,
        }
    }
}

impl<T> Future for Timed<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.clock.resume();
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_between_runs_is_not_charged() {
        let clock = RunClock::default();
        clock.start();
        std::thread::sleep(Duration::from_millis(5));
        let first = clock.charge();
        assert!(first >= Duration::from_millis(5));
        // Suspended: time passes, then the call resumes.
        std::thread::sleep(Duration::from_millis(30));
        clock.resume();
        std::thread::sleep(Duration::from_millis(5));
        let total = clock.charge();
        assert!(total >= Duration::from_millis(10), "{total:?}");
        assert!(
            total < Duration::from_millis(30),
            "the wait was charged: {total:?}"
        );
    }
}
