//! The admin listener: liveness and readiness for load balancers and orchestrators, and the
//! Prometheus metrics.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::generation::Current;

/// Answers `GET /healthz` (the process is alive), `GET /readyz` (the configuration is loaded,
/// every issuer a route relies on has usable keys and every warm policy an initialised instance;
/// otherwise 503 with the list of what is missing) and `GET /metrics` (Prometheus text format).
pub struct Admin {
    pub current: Current,
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
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return json(405, serde_json::json!({"error": "method_not_allowed"}));
        }
        let generation = self.current.load_full();
        match req.uri.path() {
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
            "/readyz" => {
                let mut missing = generation.auth.not_ready();
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
