//! Plugin time budgets count the processor time a plugin's call uses, not the time that passes.
//!
//! Two kinds of waiting are not the plugin's doing and are not charged:
//! - a call that yields at an epoch tick waits while other requests use the thread; otherwise a
//!   busy gateway would time out well-behaved plugins and answer 503 exactly when it is loaded;
//! - a thread that is runnable but not running (the machine's other work, a virtual CPU woken
//!   from idle) or blocked on a page fault from disk. After a few idle minutes on a 2-core
//!   virtual machine, first calls took tens of milliseconds to over half a second of wall time
//!   and 10–16 major page faults.
//!
//! Reading a thread's CPU clock is a system call (~0.8 µs on that machine) while most calls end
//! in tens of microseconds, well before an epoch tick. So a call is timed on the wall clock until
//! its first tick, that part capped at [`FIRST_SLICE_CAP`], and on the thread's CPU clock from then
//! on. Waiting that is not on a CPU (a plugin sleeping through WASI, say) is bounded separately by
//! the policy's wall-clock `deadline_ms` (see `host`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

/// Most wall-clock time charged for the part of a call before its first epoch tick. Ticks come
/// every millisecond, so more than this means the thread waited.
pub const FIRST_SLICE_CAP: Duration = Duration::from_millis(2);

/// Running time of the current call of one instance.
pub struct RunClock {
    base: Instant,
    /// The call has seen an epoch tick: `resumed` is on the thread's CPU clock, not the wall clock.
    on_cpu: AtomicBool,
    /// When the call last started running, in nanoseconds on the clock `on_cpu` names.
    resumed: AtomicU64,
    /// Nanoseconds of running charged so far.
    used: AtomicU64,
}

impl Default for RunClock {
    fn default() -> Self {
        RunClock {
            base: Instant::now(),
            on_cpu: AtomicBool::new(false),
            resumed: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RunClock {
    fn wall(&self) -> u64 {
        nanos(self.base.elapsed())
    }

    /// The calling thread's CPU time. Should that clock be unreadable, the wall clock stands in
    /// (the budget then counts waiting too: stricter, never looser).
    fn thread_cpu(&self) -> u64 {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map_or_else(|_| self.wall(), |t| nanos(Duration::from(t)))
    }

    /// A new call starts running now.
    pub fn start(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.on_cpu.store(false, Ordering::Relaxed);
        self.resumed.store(self.wall(), Ordering::Relaxed);
    }

    /// The call runs again after waiting (possibly on another thread).
    pub fn resume(&self) {
        let now = if self.on_cpu.load(Ordering::Relaxed) {
            self.thread_cpu()
        } else {
            self.wall()
        };
        self.resumed.store(now, Ordering::Relaxed);
    }

    /// Running charged to the call at its last epoch tick.
    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.used.load(Ordering::Relaxed))
    }

    /// Charge the running since the last (re)start and return the call's total. Called at epoch
    /// ticks, on the thread running the call.
    pub fn charge(&self) -> Duration {
        let since = if self.on_cpu.swap(true, Ordering::Relaxed) {
            let now = self.thread_cpu();
            now.saturating_sub(self.resumed.swap(now, Ordering::Relaxed))
        } else {
            let ran = self
                .wall()
                .saturating_sub(self.resumed.load(Ordering::Relaxed));
            self.resumed.store(self.thread_cpu(), Ordering::Relaxed);
            ran.min(nanos(FIRST_SLICE_CAP))
        };
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

    /// Burn `d` of this thread's processor time (not wall time: on a busy machine the thread
    /// may be off the CPU for part of a wall-clock interval, and that is not charged).
    fn spin(d: Duration) {
        let cpu = || {
            nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
                .map(Duration::from)
                .expect("thread CPU clock")
        };
        let until = cpu() + d;
        while cpu() < until {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn waiting_between_runs_is_not_charged() {
        let clock = RunClock::default();
        clock.start();
        spin(Duration::from_millis(1));
        let first = clock.charge();
        assert!(first >= Duration::from_millis(1), "{first:?}");
        // Suspended: time passes, then the call resumes.
        std::thread::sleep(Duration::from_millis(30));
        clock.resume();
        spin(Duration::from_millis(5));
        let total = clock.charge();
        assert!(total >= Duration::from_millis(3), "{total:?}");
        assert!(
            total < Duration::from_millis(30),
            "the wait was charged: {total:?}"
        );
    }

    #[test]
    fn a_thread_that_is_not_running_is_not_charged_after_the_first_tick() {
        let clock = RunClock::default();
        clock.start();
        clock.charge();
        // Blocked inside the call (as on a page fault from disk): no CPU time passes.
        std::thread::sleep(Duration::from_millis(40));
        spin(Duration::from_millis(2));
        let total = clock.charge();
        assert!(total >= Duration::from_millis(1), "{total:?}");
        assert!(
            total < Duration::from_millis(30),
            "time off the CPU was charged: {total:?}"
        );
    }

    #[test]
    fn waiting_before_the_first_tick_is_capped() {
        let clock = RunClock::default();
        clock.start();
        std::thread::sleep(Duration::from_millis(40));
        let total = clock.charge();
        assert!(total <= FIRST_SLICE_CAP, "{total:?}");
    }

    #[test]
    fn a_busy_call_is_charged_its_running_time() {
        let clock = RunClock::default();
        clock.start();
        let mut total = Duration::ZERO;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(40) {
            spin(Duration::from_millis(1));
            total = clock.charge();
        }
        // Charged close to what ran, less whatever the machine took away from this thread.
        assert!(total >= Duration::from_millis(5), "{total:?}");
        assert!(total <= Duration::from_millis(42), "{total:?}");
    }
}
