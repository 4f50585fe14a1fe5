//! The admin listener: liveness and readiness for load balancers and orchestrators, and the
//! Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::generation::Current;
use crate::shutdown::Draining;

/// Answers `GET /healthz` (the process is alive), `GET /readyz` (every proxy listener accepts
/// connections, every issuer a route relies on has usable keys and every warm policy an
/// initialised instance; otherwise 503 with the list of what is missing), `GET /metrics`
/// (Prometheus text format), and `GET /drain` (or POST): from then on readiness fails and
/// answers close their connections; the reply comes after `[server] drain_s` seconds of serving,
/// so a Kubernetes `preStop` hook (`httpGet`) holds SIGTERM back until load balancers have moved
/// traffic away.
pub struct Admin {
    pub current: Current,
    pub draining: Draining,
    pub listening: Listening,
}

/// Set once every proxy listener accepts connections. The admin listener is a separate service
/// and can answer before the proxy's sockets are bound; until then the gateway is not ready.
#[derive(Clone, Default)]
pub struct Listening(Arc<AtomicBool>);

impl Listening {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

fn json(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let generation = self.current.load_full();
        // A preStop hook can only GET; POST is accepted for the usual way of changing state.
        let allowed = match req.uri.path() {
            "/drain" => [http::Method::GET, http::Method::POST].contains(&req.method),
            _ => req.method == http::Method::GET || req.method == http::Method::HEAD,
        };
        if !allowed {
            return json(405, serde_json::json!({"error": "method_not_allowed"}));
        }
        match req.uri.path() {
            "/drain" => self.drain(generation.config.server.drain_s).await,
            "/healthz" => json(200, serde_json::json!({"status": "ok"})),
            "/metrics" => {
                generation.auth.report_keys();
                generation.plugins.report_instances();
                let body = crate::metrics::get().render();
                Response::builder()
                    .status(200)
                    .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                    .header("cache-control", "no-store")
                    .header("content-length", body.len())
                    .body(body)
                    .unwrap_or_default()
            }
            "/readyz" if self.draining.is_on() => {
                json(503, serde_json::json!({"status": "draining"}))
            }
            "/readyz" => {
                let mut missing = Vec::new();
                if !self.listening.is_on() {
                    missing.push("proxy listeners: not accepting connections yet".to_string());
                }
                missing.extend(generation.auth.not_ready());
                missing.extend(generation.plugins.not_ready());
                if missing.is_empty() {
                    json(200, serde_json::json!({"status": "ready"}))
                } else {
                    json(
                        503,
                        serde_json::json!({"status": "not_ready", "missing": missing}),
                    )
                }
            }
            _ => json(404, serde_json::json!({"error": "not_found"})),
        }
    }
}

impl Admin {
    async fn drain(&self, drain_s: u64) -> Response<Vec<u8>> {
        if !self.draining.is_on() {
            tracing::info!(
                drain_s,
                "draining: readiness fails, connections close after their answer"
            );
        }
        self.draining.start();
        tokio::time::sleep(std::time::Duration::from_secs(drain_s)).await;
        json(
            200,
            serde_json::json!({"status": "draining", "waited_s": drain_s}),
        )
    }
}
