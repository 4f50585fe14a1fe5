//! A real browser for one test: Debian's Chromium (installed by `scripts/setup`), headless, with a
//! profile of its own, opening pages that a [`PageServer`] on loopback serves. A page reports what
//! it saw by POSTing JSON to `/result/NAME` of its own origin; the test reads it back with
//! [`PageServer::result`]. The browser is killed when the value is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// Pages by path, and the results pages posted.
pub struct PageServer {
    pub addr: SocketAddr,
    pages: Arc<Mutex<HashMap<String, String>>>,
    results: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, String)>>,
    waiting: Mutex<HashMap<String, String>>,
}

impl PageServer {
    pub async fn start() -> PageServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the page server");
        let addr = listener.local_addr().expect("addr");
        let pages: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let served = pages.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (pages, tx) = (served.clone(), tx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (pages, tx) = (pages.clone(), tx.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let (status, body) = if let Some(name) = path.strip_prefix("/result/") {
                                let name = name.to_string();
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                let text = body
                                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                                    .unwrap_or_default();
                                let _ = tx.send((name, text));
                                (204, String::new())
                            } else {
                                match pages.lock().ok().and_then(|p| p.get(&path).cloned()) {
                                    Some(page) => (200, page),
                                    None => (404, String::new()),
                                }
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(status).expect("status");
                            resp.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PageServer {
            addr,
            pages,
            results: tokio::sync::Mutex::new(rx),
            waiting: Mutex::default(),
        }
    }

    /// Serve `html` at `path`.
    pub fn page(&self, path: &str, html: &str) {
        if let Ok(mut pages) = self.pages.lock() {
            pages.insert(path.to_string(), html.to_string());
        }
    }

    /// What the page posted to `/result/NAME`, waiting for it up to a minute.
    pub async fn result(&self, name: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(text) = self.waiting.lock().ok().and_then(|mut w| w.remove(name)) {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("result {name} is not JSON ({e}): {text}"));
            }
            let mut results = self.results.lock().await;
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some((posted, text))) => {
                    if let Ok(mut waiting) = self.waiting.lock() {
                        waiting.insert(posted, text);
                    }
                }
                _ => panic!("no result {name} from the browser within a minute"),
            }
        }
    }
}

/// A headless Chromium showing one page.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile directory");
        let child = Command::new("chromium")
            .args([
                "--headless",
                // Tests may run as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium (installed by scripts/setup)");
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
