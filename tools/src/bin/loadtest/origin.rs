//! The origin every target proxies to: answers `200 ok` as fast as hyper can, and counts hits so
//! the report can say exactly how many requests got through. Beside it, the OTLP collector a
//! traced gateway exports to: it reads each export whole, counts it, and accepts it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub struct Origin {
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
}

impl Origin {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// Listen on an ephemeral loopback port and serve on `runtime`.
pub fn start(runtime: &tokio::runtime::Runtime) -> std::io::Result<Origin> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Origin { addr, hits })
}

/// The origin on a runtime of its own (one worker thread), which serves it while it is kept.
pub fn start_on_own_runtime() -> Result<(tokio::runtime::Runtime, Origin), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let origin = start(&runtime).map_err(|e| format!("origin: {e}"))?;
    Ok((runtime, origin))
}

/// The OTLP/HTTP collector of traced scenarios: answers every export with an empty 200 (an empty
/// `ExportTraceServiceResponse`), counting exports and their bytes.
pub struct Collector {
    pub addr: SocketAddr,
    exports: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl Collector {
    pub fn exports(&self) -> u64 {
        self.exports.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

pub fn collector(runtime: &tokio::runtime::Runtime) -> std::io::Result<Collector> {
    use http_body_util::BodyExt;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (exports, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (e, b) = (exports.clone(), bytes.clone());
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (e, b) = (e.clone(), b.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (e, b) = (e.clone(), b.clone());
                    async move {
                        let body = req.into_body().collect().await.map(|c| c.to_bytes());
                        e.fetch_add(1, Ordering::Relaxed);
                        b.fetch_add(body.map_or(0, |b| b.len() as u64), Ordering::Relaxed);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Collector {
        addr,
        exports,
        bytes,
    })
}
