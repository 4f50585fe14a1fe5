//! The epoch ticker: advances the engine's epoch every [`TICK`] while plugin code may be running,
//! which is what lets the host check each call's budget and make long calls yield.
//!
//! An idle gateway should cost nothing, so the ticker parks after [`IDLE_TICKS`] ticks in which no
//! call ran, and the next call wakes it. Under steady traffic it never parks, and a call pays an
//! increment and a decrement of the count of running calls plus two loads; only the first call
//! after a pause pays for the wake-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

use crate::error::{Error, ErrorKind, OrErr};

/// How often the engine's epoch advances; the granularity of plugin budgets.
pub const TICK: Duration = Duration::from_millis(1);
/// Consecutive ticks without any call after which the ticker parks (one second).
const IDLE_TICKS: u32 = 1000;

struct Shared {
    /// Calls (and instantiations) running now.
    active: AtomicUsize,
    /// Calls started since the ticker last looked.
    started: AtomicBool,
    /// The ticker is parked or about to park.
    parked: AtomicBool,
    stop: AtomicBool,
    /// Epoch increments so far.
    ticks: AtomicU64,
}

/// Owns the ticker thread; stops it when dropped.
pub struct Ticker {
    shared: Arc<Shared>,
    thread: Thread,
}

/// Keeps the ticker running while plugin code may run.
pub struct Busy {
    shared: Arc<Shared>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    pub fn start(engine: &Engine) -> Result<Arc<Ticker>, Error> {
        let shared = Arc::new(Shared {
            active: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
        });
        let (weak, state) = (engine.weak(), shared.clone());
        let handle = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || run(weak, state))
            .or_err(ErrorKind::Runtime, "epoch thread")?;
        Ok(Arc::new(Ticker {
            shared,
            thread: handle.thread().clone(),
        }))
    }

    /// Plugin code is about to run: the epoch must advance until the guard is dropped.
    pub fn busy(&self) -> Busy {
        let shared = &self.shared;
        shared.active.fetch_add(1, Ordering::SeqCst);
        if !shared.started.load(Ordering::Relaxed) {
            shared.started.store(true, Ordering::Relaxed);
        }
        if shared.parked.load(Ordering::SeqCst) {
            shared.parked.store(false, Ordering::SeqCst);
            self.thread.unpark();
        }
        Busy {
            shared: shared.clone(),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn run(engine: wasmtime::EngineWeak, shared: Arc<Shared>) {
    let mut idle = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
        let Some(engine) = engine.upgrade() else {
            break;
        };
        engine.increment_epoch();
        drop(engine);
        shared.ticks.fetch_add(1, Ordering::Relaxed);
        let ran = shared.started.swap(false, Ordering::Relaxed)
            || shared.active.load(Ordering::SeqCst) > 0;
        idle = if ran { 0 } else { idle.saturating_add(1) };
        if idle < IDLE_TICKS {
            continue;
        }
        // Announce the park, then look once more: a call that started in between either sees
        // `parked` and unparks us (the token makes `park` return at once) or is seen here.
        shared.parked.store(true, Ordering::SeqCst);
        if shared.active.load(Ordering::SeqCst) == 0 && !shared.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
        shared.parked.store(false, Ordering::SeqCst);
        idle = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ticks(ticker: &Ticker) -> u64 {
        ticker.shared.ticks.load(Ordering::Relaxed)
    }

    #[test]
    fn an_idle_ticker_parks_and_a_call_wakes_it() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).expect("engine");
        let ticker = Ticker::start(&engine).expect("ticker");
        let started = Instant::now();
        while !ticker.shared.parked.load(Ordering::SeqCst) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the ticker never parked"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let parked_at = ticks(&ticker);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            ticks(&ticker) <= parked_at + 1,
            "a parked ticker kept ticking"
        );
        let busy = ticker.busy();
        let woken = Instant::now();
        while ticks(&ticker) < parked_at + 5 {
            assert!(
                woken.elapsed() < Duration::from_secs(5),
                "the call did not wake the ticker"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // While a call runs, the ticker does not park however long it takes.
        std::thread::sleep(IDLE_TICKS * TICK + Duration::from_millis(200));
        assert!(!ticker.shared.parked.load(Ordering::SeqCst));
        drop(busy);
    }
}
