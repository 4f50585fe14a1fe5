//! Continuous load for tests that change the gateway underneath it (reloads, restarts, kills):
//! clients looping on one request until stopped, every answer other than 200 recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{Conn, req};

pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` loops sending `GET path` with `headers`; with `mixed`, every other client opens
    /// a new connection per request, the others keep theirs alive (reopening after
    /// `Connection: close` or a failure).
    pub fn start(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        clients: usize,
        mixed: bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let raw = req("GET", path).headers(headers).bytes("x");
        let tasks = (0..clients)
            .map(|i| {
                let (stop, ok, failed, raw) =
                    (stop.clone(), ok.clone(), failed.clone(), raw.clone());
                let keep_alive = !mixed || i % 2 == 0;
                tokio::spawn(async move {
                    let mut conn: Option<Conn> = None;
                    while !stop.load(Ordering::Relaxed) {
                        if conn.is_none() {
                            conn = Conn::try_open(addr).await.ok();
                        }
                        let Some(c) = conn.as_mut() else {
                            failed.lock().expect("lock").push("connect".into());
                            continue;
                        };
                        c.send(&raw).await;
                        let reuse = match c.read_response(false).await {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                r.header("connection") != Some("close")
                            }
                            Ok(r) => {
                                failed
                                    .lock()
                                    .expect("lock")
                                    .push(format!("status {}", r.status));
                                false
                            }
                            Err(e) => {
                                failed.lock().expect("lock").push(e);
                                false
                            }
                        };
                        if !(keep_alive && reuse) {
                            conn = None;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> Vec<String> {
        self.failed.lock().expect("lock").clone()
    }

    /// Let the load run for 300 ms and check that requests succeeded meanwhile.
    pub async fn progresses(&self) {
        let before = self.ok();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(self.ok() > before, "no request succeeded for 300 ms");
    }

    /// Stop every client; returns the successes and the failures.
    pub async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let failed = self.failed.lock().expect("lock").clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

/// Wait until `check` holds, at most `timeout`, checking every 50 ms.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
