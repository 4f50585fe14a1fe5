//! The floor under edgewarden's early rejections: a Pingora 0.9 proxy whose `request_filter`
//! answers every request 401 with the same headers and JSON body shape as the gateway, on a
//! kept-alive connection, and does nothing else (no routing, no token lookup, no metrics).
//! Used by the comparison in BENCHMARKS.md ("Early rejections"); not part of the gateway.
//!
//! ```sh
//! cargo run --release --example pingora_floor -- 127.0.0.1:18080
//! ```

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, header};
use pingora::http::ResponseHeader;
use pingora::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor;

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let body = format!(
            "{{\"error\":\"missing_token\",\"message\":\"bearer token required\",\"request_id\":\"{id}\"}}"
        );
        let mut resp = ResponseHeader::build_no_case(401, Some(6))?;
        resp.insert_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )?;
        resp.insert_header(header::CONTENT_LENGTH, HeaderValue::from(body.len()))?;
        resp.insert_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
        resp.insert_header("x-request-id", id.as_str())?;
        resp.insert_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"edgewarden\""),
        )?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::new(ErrorType::ConnectNoRoute))
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    let conf = pingora::server::configuration::ServerConf {
        threads: 1,
        // As edgewarden runs by default (`server.work_stealing = false`).
        work_stealing: false,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Floor);
    service.add_tcp(&addr);
    server.add_service(service);
    server.run_forever();
}
