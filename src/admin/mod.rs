//! The admin listener: liveness and readiness for load balancers and orchestrators, the
//! Prometheus metrics (all open, read-only), and draining (state-changing, behind the admin
//! token: `control`). `client` is the other side, used by `edgewarden drain`.

pub mod client;
pub mod control;

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
/// (Prometheus text format), and, with `Authorization: Bearer <admin token>`, `POST /drain` and
/// `POST /drain/cancel` (see `control`).
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

/// A JSON answer that is never cached.
fn json(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    json_with(status, body, &[])
}

/// A JSON answer with extra header fields.
fn json_with(status: u16, body: serde_json::Value, headers: &[(&str, &str)]) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("content-length", body.len());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let generation = self.current.load_full();
        let path = session.req_header().uri.path().to_string();
        if let Some(endpoint) = control::Endpoint::at(&path) {
            let token = generation.config.server.admin_token.as_ref();
            let drain_s = generation.config.server.drain_s;
            return control::answer(endpoint, session, token, &self.draining, drain_s).await;
        }
        let method = &session.req_header().method;
        if method != http::Method::GET && method != http::Method::HEAD {
            return json_with(
                405,
                serde_json::json!({"error": "method_not_allowed"}),
                &[("allow", "GET, HEAD")],
            );
        }
        match path.as_str() {
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
                missing.extend(generation.not_ready());
                // A refused reload leaves the previous configuration serving: still ready, and
                // said so, since when.
                let refused = crate::metrics::get().config_reload_refused_since.get();
                let mut body = if missing.is_empty() {
                    serde_json::json!({"status": "ready"})
                } else {
                    serde_json::json!({"status": "not_ready", "missing": missing})
                };
                if refused > 0 {
                    body["reload_refused_since"] = refused.into();
                }
                json(if missing.is_empty() { 200 } else { 503 }, body)
            }
            _ => json(404, serde_json::json!({"error": "not_found"})),
        }
    }
}
