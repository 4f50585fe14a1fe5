//! The built-in echo origin used by `edgewarden-dev demo`, the tests and the benchmarks: a real
//! HTTP/1.1 server that answers every request with JSON describing what it received.
//!
//! Two request headers let a demo or a test shape the answer: `x-echo-delay-ms: N` waits N ms
//! (at most 60 s) before answering, and each `x-echo-set: name=value` adds a response header.
//! `GET /health` answers 200 while the origin is healthy and 503 once [`EchoOrigin::set_healthy`]
//! turned it off, for health-check demos and tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const MAX_BODY: usize = 1024 * 1024;
const MAX_DELAY_MS: u64 = 60_000;

/// A running echo origin.
pub struct EchoOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    hits: AtomicUsize,
    connections: AtomicUsize,
    unhealthy: AtomicBool,
}

impl EchoOrigin {
    /// Requests answered so far (health checks excluded).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.unhealthy.store(!healthy, Ordering::SeqCst);
    }
}

/// Serve on `listener` in the current Tokio runtime until the runtime ends.
pub fn spawn(listener: TcpListener, name: &str) -> std::io::Result<EchoOrigin> {
    serve(listener, name, None)
}

/// As [`spawn`], over TLS with this acceptor's certificate (HTTP/1.1).
pub fn spawn_tls(
    listener: TcpListener,
    name: &str,
    acceptor: pingora::tls::TlsAcceptor,
) -> std::io::Result<EchoOrigin> {
    serve(listener, name, Some(acceptor))
}

fn serve(
    listener: TcpListener,
    name: &str,
    tls: Option<pingora::tls::TlsAcceptor>,
) -> std::io::Result<EchoOrigin> {
    let addr = listener.local_addr()?;
    let state = Arc::new(State::default());
    let name: Arc<str> = Arc::from(name);
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let name = name.clone();
            let state = shared.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, name.clone(), state.clone()));
                let http = http1::Builder::new();
                let _ = match tls {
                    None => http.serve_connection(TokioIo::new(stream), service).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                        Err(_) => return,
                    },
                };
            });
        }
    });
    Ok(EchoOrigin { addr, state })
}

async fn answer(
    req: Request<Incoming>,
    name: Arc<str>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/health" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
        if state.unhealthy.load(Ordering::SeqCst) {
            *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        return Ok(resp);
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    let delay = req
        .headers()
        .get("x-echo-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| ms.min(MAX_DELAY_MS));
    let extra: Vec<(HeaderName, HeaderValue)> = req
        .headers()
        .get_all("x-echo-set")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split_once('='))
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        })
        .collect();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let json = serde_json::json!({
        "origin": &*name,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in extra {
        resp.headers_mut().append(k, v);
    }
    Ok(resp)
}
