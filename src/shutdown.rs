//! Process shutdown: which signals do what, and waiting for in-flight requests.
//!
//! * SIGTERM: stop accepting, let in-flight requests finish, exit as soon as none is left or when
//!   `shutdown_grace_s` runs out, whichever comes first.
//! * SIGINT: exit promptly.
//!
//! Either way, [`BeforeExit`] runs last, with a bound (queued spans are sent).
//!
//! Pingora on its own stops accepting at SIGTERM and then always sleeps its whole grace period,
//! and may linger after SIGINT while runtimes wind down; the watcher here ends the process itself
//! once the work is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{SignalKind, signal};

/// Count of requests between context creation and the end of their logging phase.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Decrements the count when the request's context is dropped.
pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// On while the admin listener has been asked to drain (`POST /drain`): readiness fails and every
/// answer closes its connection, so clients move to other replicas while this one still serves.
///
/// A drain ends only when it is cancelled (`POST /drain/cancel`) or the process exits; a
/// configuration reload does not end it, and a restarted process starts undrained.
#[derive(Clone, Default)]
pub struct Draining(Arc<DrainState>);

#[derive(Default)]
struct DrainState {
    on: std::sync::atomic::AtomicBool,
    cancelled: tokio::sync::Notify,
}

impl Draining {
    pub fn start(&self) {
        self.0.on.store(true, Ordering::Release);
    }

    /// End the drain; returns whether one was on. Wakes every [`Draining::cancelled`] future.
    pub fn cancel(&self) -> bool {
        let was_on = self.0.on.swap(false, Ordering::AcqRel);
        self.0.cancelled.notify_waiters();
        was_on
    }

    pub fn is_on(&self) -> bool {
        self.0.on.load(Ordering::Acquire)
    }

    /// Completes at the first [`Draining::cancel`] after this call (even before it is polled).
    pub fn cancelled(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.cancelled.notified()
    }
}

/// Work to finish just before the process exits (sending queued spans), given how long it may
/// take.
pub type BeforeExit = Arc<dyn Fn(Duration) + Send + Sync>;

/// Signal handling handed to Pingora's `Server::run`.
pub struct Signals {
    pub in_flight: InFlight,
    pub grace: Duration,
    pub before_exit: BeforeExit,
}

/// How long queued spans may take to leave after SIGTERM's requests are done, and after SIGINT.
const FLUSH_AFTER_TERM: Duration = Duration::from_secs(2);
const FLUSH_AFTER_INT: Duration = Duration::from_millis(200);

/// After stopping accepting, requests may still be between accept and header parse; wait this
/// long with nothing in flight before deciding the process is idle.
const SETTLE: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(10);

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(grace_s = self.grace.as_secs(), in_flight = self.in_flight.count(),
                    "SIGTERM: no longer accepting, finishing in-flight requests");
                let in_flight = self.in_flight.clone();
                let grace = self.grace;
                let before_exit = self.before_exit.clone();
                std::thread::spawn(move || {
                    exit_when_drained(&in_flight, grace);
                    before_exit(FLUSH_AFTER_TERM);
                    std::process::exit(0);
                });
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: exiting");
                let before_exit = self.before_exit.clone();
                std::thread::spawn(move || {
                    before_exit(FLUSH_AFTER_INT);
                    std::process::exit(0);
                });
                ShutdownSignal::FastShutdown
            }
        }
    }
}

/// Returns when no request is in flight any more, or when `grace` has run out.
fn exit_when_drained(in_flight: &InFlight, grace: Duration) {
    let deadline = Instant::now() + grace;
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                in_flight = in_flight.count(),
                "shutdown grace ran out; exiting"
            );
            return;
        }
        if in_flight.count() == 0 {
            let since = *idle_since.get_or_insert(now);
            if now.duration_since(since) >= SETTLE {
                tracing::info!("all in-flight requests finished; exiting");
                return;
            }
        } else {
            idle_since = None;
        }
        std::thread::sleep(POLL);
    }
}
