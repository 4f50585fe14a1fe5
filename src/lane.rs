//! Lanes: threads of their own, at a lower priority than the proxy's workers, for work that must
//! never hold a worker thread (a plugin call that runs long, a signature check).
//!
//! A worker thread serves many connections; whatever runs on it for long delays every one of
//! them. Work handed to a lane runs on its threads instead, at nice `nice` (default 10): a
//! runnable worker gets about nine times a lane thread's share of a CPU, so the gateway's own
//! request handling keeps its latency under a flood of such work, yet the lane is never starved
//! (`SCHED_IDLE`, tried for plugins, left work waiting past its deadline on a busy machine).
//!
//! The caller awaits the result; dropping that future cancels the work at its next suspension
//! (work that has not started yet never starts).

use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, OrErr};

/// A lane's threads; their runtime is stopped (its tasks dropped) when the lane is.
pub struct Lane {
    runtime: Option<tokio::runtime::Runtime>,
    threads: usize,
}

impl Lane {
    /// `name`: the threads' name. `nice`: their nice value, 0 to 19 (0: the workers' priority).
    pub fn start(name: &'static str, threads: usize, nice: i32) -> Result<Arc<Lane>, Error> {
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(1)
            .thread_name(name)
            .on_thread_start(move || lower_priority(name, nice))
            .enable_time()
            .build()
            .or_err(ErrorKind::Runtime, name)?;
        Ok(Arc::new(Lane {
            runtime: Some(runtime),
            threads,
        }))
    }

    /// How many threads the lane runs.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `work` on the lane; `None` if it did not finish (the lane stopped, or it panicked).
    /// Dropping the returned future cancels `work` at its next suspension.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let runtime = self.runtime.as_ref()?;
        let mut task = Cancel(runtime.spawn(work));
        (&mut task.0).await.ok()
    }

    /// Start `work` on the lane and let it run to its end.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(work);
        }
    }
}

#[cfg(test)]
impl Lane {
    /// Keep one of the lane's threads busy until the returned sender is dropped.
    pub async fn hold(&self) -> std::sync::mpsc::Sender<()> {
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        self.spawn(async move {
            let _ = started.send(());
            let _ = release.recv();
        });
        running.await.expect("a lane thread is held");
        hold
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its threads stop, which is not allowed on a thread that
        // runs async code (the last reference may go on one): stop it without waiting.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts the lane task when the caller stops waiting for it (deadline passed, client gone).
struct Cancel<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Cancel<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lower the calling thread's scheduling priority to `nice` (on Linux the nice value is per
/// thread). Failing to is logged, never fatal: the lane still keeps its work off the workers.
fn lower_priority(name: &'static str, nice: i32) {
    if nice == 0 {
        return;
    }
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::warn!(error = %e, lane = name, "lane thread keeps its priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_lanes_threads_at_its_priority() {
        let lane = Lane::start("test-lane", 1, 7).expect("lane");
        let (name, nice) = lane
            .run(async {
                let name = std::thread::current().name().map(str::to_owned);
                let tid = rustix::thread::gettid();
                (name, rustix::process::getpriority_process(Some(tid)))
            })
            .await
            .expect("finished");
        assert_eq!(name.as_deref(), Some("test-lane"));
        assert_eq!(nice.expect("priority"), 7);
    }

    #[tokio::test]
    async fn work_not_waited_for_never_starts() {
        let lane = Lane::start("test-lane", 1, 0).expect("lane");
        // Hold the lane's one thread, then queue work behind it and stop waiting for it.
        let hold = lane.hold().await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let queued = lane.run(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(1), queued).await;
        assert!(timed_out.is_err(), "the lane's one thread is held");
        drop(hold);
        // Work queued after the cancelled one runs; by then the cancelled one would have.
        assert_eq!(lane.run(async { 1 }).await, Some(1));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
