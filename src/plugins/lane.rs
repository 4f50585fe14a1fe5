//! The slow lane: where a plugin call goes once it has run longer than a well-behaved call does,
//! so that it never holds a proxy worker thread.
//!
//! A call starts on the request's own thread, where most calls end in microseconds without ever
//! being suspended. A call that is still running after [`HANDOFF_AFTER`] of processor time (it
//! yields at an epoch tick) is moved, suspended, to the lane: threads of their own at a lower
//! priority than the workers (`plugin_lane_nice`, default nice 10: a runnable worker
//! gets about nine times their share of a CPU, yet the gateway's own work does not starve them;
//! `SCHED_IDLE`, tried, left a new instance's first call waiting past its deadline on a busy
//! machine), running nothing but such calls and the building of
//! replacement instances. Why: a call that yields at every tick keeps its
//! worker thread's run queue non-empty, and a Tokio worker with a non-empty queue looks at its
//! sockets only every few dozen task polls. With a looping policy each of those polls is a tick
//! long, so every other connection on that thread waited tens of milliseconds per I/O event (a
//! neighbouring route's p99 reached half a second, BENCHMARKS.md).
//!
//! Each policy may have at most [`Lane::threads`] calls running long on the lane at once (its
//! bulkhead, [`Share`]): a further one waits, not polled and using no processor time, for one of
//! them to end or for its own deadline. While a policy has such a call, its next calls start on the
//! lane instead of on the request's thread, so a policy that loops on every request costs the
//! proxy's threads nothing past the first. Its requests are answered at their deadline; other
//! routes' are not delayed by it.
//!
//! A wasmtime call's future may be polled on any thread (its fiber's state moves with it), which
//! is what makes the move possible without starting the call again.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::Semaphore;

use super::clock::RunClock;
pub use crate::lane::Lane;

/// Processor time a call may run on the request's thread before it moves to the lane. Well
/// above what a plugin call takes (tens of microseconds), below the ticker's period, so a call
/// that straddles one tick stays where it is.
pub const HANDOFF_AFTER: Duration = Duration::from_micros(500);

impl Lane {
    /// Run a plugin call of the policy whose share of the lane is `share`: on this thread while it
    /// is short, or from its start on the lane while the policy has a call running long there;
    /// once it has run past [`HANDOFF_AFTER`] (counted in `slow` then), only on the lane and
    /// within the policy's share. `None` if it never finished.
    pub async fn call<T: Send + 'static>(
        &self,
        share: &Share,
        clock: Arc<RunClock>,
        slow: &IntCounter,
        mut call: impl Future<Output = T> + Unpin + Send + 'static,
    ) -> Option<T> {
        // Counted here when it moves from this thread; on the lane when it started there.
        let slow = if share.contended() {
            Some(slow.clone())
        } else {
            let here = poll_fn(|cx| match Pin::new(&mut call).poll(cx) {
                Poll::Ready(done) => Poll::Ready(Some(done)),
                Poll::Pending if clock.used() < HANDOFF_AFTER => Poll::Pending,
                Poll::Pending => Poll::Ready(None),
            })
            .await;
            if here.is_some() {
                return here;
            }
            slow.inc();
            None
        };
        let bounded = Bounded {
            call,
            clock,
            slots: share.slots.clone(),
            slot: None,
            acquiring: None,
            slow,
        };
        self.run(bounded).await.flatten()
    }
}

/// A policy's share of the lane: how many of its calls may run long there at once (its bulkhead).
pub struct Share {
    slots: Arc<Semaphore>,
    size: usize,
}

impl Share {
    pub fn new(size: usize) -> Share {
        let size = size.max(1);
        Share {
            slots: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// The policy has a call running long on the lane (or waiting to): its next calls start there
    /// too, so that a policy that loops on every request costs the proxy's threads nothing.
    pub fn contended(&self) -> bool {
        self.slots.available_permits() < self.size
    }
}

type Acquire = Pin<
    Box<
        dyn Future<Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>>
            + Send,
    >,
>;

/// A call on the lane: polled freely while short; past [`HANDOFF_AFTER`] only while it holds one
/// of its policy's slots (waiting for one, it is not polled and uses no processor time).
struct Bounded<F> {
    call: F,
    clock: Arc<RunClock>,
    slots: Arc<Semaphore>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    acquiring: Option<Acquire>,
    /// Counts the call once it runs past the handoff, unless it was counted before it came.
    slow: Option<IntCounter>,
}

impl<F: Future + Unpin> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if this.slot.is_none() && this.clock.used() >= HANDOFF_AFTER {
                if let Some(slow) = this.slow.take() {
                    slow.inc();
                }
                let acquiring = this
                    .acquiring
                    .get_or_insert_with(|| Box::pin(this.slots.clone().acquire_owned()));
                match acquiring.as_mut().poll(cx) {
                    Poll::Ready(Ok(slot)) => {
                        this.slot = Some(slot);
                        this.acquiring = None;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            }
            match Pin::new(&mut this.call).poll(cx) {
                Poll::Ready(done) => return Poll::Ready(Some(done)),
                Poll::Pending if this.slot.is_none() && this.clock.used() >= HANDOFF_AFTER => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A stand-in for a plugin call: each poll records the thread it ran on, then it yields
    /// (waking itself, as wasmtime does at an epoch tick) until `finish` is set.
    struct Call {
        threads: Arc<std::sync::Mutex<Vec<String>>>,
        finish: Arc<AtomicBool>,
        /// Each poll runs past the handoff on this clock (the first poll of a call charges the
        /// wall-clock time since it started).
        runs_long: Option<Arc<RunClock>>,
    }

    impl Future for Call {
        type Output = &'static str;

        fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<&'static str> {
            if let Some(clock) = &self.runs_long {
                std::thread::sleep(HANDOFF_AFTER * 2);
                clock.charge();
            }
            let finish = self.finish.load(Ordering::SeqCst);
            let name = std::thread::current().name().unwrap_or("").to_string();
            if let Ok(mut threads) = self.threads.lock() {
                threads.push(name);
            }
            if finish {
                Poll::Ready("done")
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    fn call() -> (Call, Arc<std::sync::Mutex<Vec<String>>>, Arc<AtomicBool>) {
        let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let finish = Arc::new(AtomicBool::new(false));
        let c = Call {
            threads: threads.clone(),
            finish: finish.clone(),
            runs_long: None,
        };
        (c, threads, finish)
    }

    /// A clock whose call has been charged more than the handoff (up to its first tick a call
    /// is charged the wall-clock time since it started).
    fn past_the_handoff() -> RunClock {
        let clock = RunClock::default();
        clock.start();
        std::thread::sleep(HANDOFF_AFTER * 2);
        assert!(clock.charge() >= HANDOFF_AFTER);
        clock
    }

    fn on_lane(threads: &std::sync::Mutex<Vec<String>>) -> usize {
        threads
            .lock()
            .map(|t| t.iter().filter(|n| *n == "plugin-lane").count())
            .unwrap_or(0)
    }

    fn counter() -> IntCounter {
        IntCounter::new("slow_calls", "slow calls").expect("counter")
    }

    #[tokio::test]
    async fn a_short_call_stays_on_the_callers_thread() {
        let lane = Lane::start("plugin-lane", 1, 0).expect("lane");
        let share = Share::new(1);
        let clock = Arc::new(RunClock::default());
        clock.start();
        let (c, threads, finish) = call();
        finish.store(true, Ordering::SeqCst);
        let slow = counter();
        let done = lane.call(&share, clock, &slow, c).await;
        assert_eq!(done, Some("done"));
        assert_eq!(slow.get(), 0);
        assert_eq!(on_lane(&threads), 0);
    }

    #[tokio::test]
    async fn a_call_that_ran_past_the_handoff_finishes_on_the_lane() {
        let lane = Lane::start("plugin-lane", 1, 0).expect("lane");
        let share = Share::new(1);
        let clock = Arc::new(past_the_handoff());
        let (c, threads, finish) = call();
        let finisher = {
            let threads = threads.clone();
            tokio::spawn(async move {
                while on_lane(&threads) == 0 {
                    tokio::task::yield_now().await;
                }
                finish.store(true, Ordering::SeqCst);
            })
        };
        let slow = counter();
        let done = lane.call(&share, clock, &slow, c).await;
        finisher.await.expect("finisher");
        assert_eq!(done, Some("done"));
        assert_eq!(slow.get(), 1);
        let threads = threads.lock().expect("threads").clone();
        assert_ne!(
            threads[0], "plugin-lane",
            "the first slice runs where it started"
        );
        assert_eq!(threads.last().map(String::as_str), Some("plugin-lane"));
        assert!(!share.contended(), "the slot is given back");
    }

    #[tokio::test]
    async fn a_policy_has_at_most_its_slots_running_long_and_its_next_call_starts_on_the_lane() {
        let lane = Lane::start("plugin-lane", 2, 0).expect("lane");
        let share = Arc::new(Share::new(1));
        let clock = Arc::new(past_the_handoff());
        let (first, first_threads, _never) = call();
        let (mut second, second_threads, second_finish) = call();
        let second_clock = Arc::new(RunClock::default());
        second_clock.start();
        second.runs_long = Some(second_clock.clone());
        let held = {
            let (lane, share, clock) = (lane.clone(), share.clone(), clock.clone());
            tokio::spawn(async move { lane.call(&share, clock, &counter(), first).await })
        };
        while on_lane(&first_threads) == 0 {
            tokio::task::yield_now().await;
        }
        // The first call holds the policy's one slot: the second starts on the lane, and past
        // the handoff waits there for the slot without being polled.
        let waiting = {
            let (lane, share) = (lane.clone(), share.clone());
            tokio::spawn(async move { lane.call(&share, second_clock, &counter(), second).await })
        };
        let polls =
            |t: &std::sync::Mutex<Vec<String>>| t.lock().map(|t| t.clone()).unwrap_or_default();
        while polls(&second_threads).is_empty() {
            tokio::task::yield_now().await;
        }
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            polls(&second_threads),
            ["plugin-lane"],
            "polled while waiting for the slot"
        );
        // The first call's caller stops waiting (its deadline): the lane task is cancelled and
        // the slot passes to the second call, which then finishes.
        held.abort();
        let _ = held.await;
        second_finish.store(true, Ordering::SeqCst);
        let done = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the second call got the slot")
            .expect("join");
        assert_eq!(done, Some("done"));
        assert!(
            polls(&second_threads).len() >= 2,
            "{:?}",
            polls(&second_threads)
        );
        assert!(!share.contended());
    }
}
