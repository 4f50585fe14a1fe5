//! The floor under edgewarden's early rejections: a Pingora 0.9 proxy whose `request_filter`
//! answers every request 401 with the same headers and JSON body shape as the gateway, on a
//! kept-alive connection, and does nothing else (no routing, no token lookup, no metrics).
//! Used by the comparisons in BENCHMARKS.md ("Early rejections", the shield and TLS load tests);
//! not part of the gateway.
//!
//! With `--tls ADDR CERT KEY` it also listens on ADDR with TLS and HTTP/2 offered by ALPN, set up
//! as edgewarden sets up its TLS listeners (Pingora's intermediate settings, `enable_h2`).
//!
//! ```sh
//! cargo run --release --example pingora_floor -- 127.0.0.1:18080
//! cargo run --release --example pingora_floor -- 127.0.0.1:18080 --tls 127.0.0.1:18443 cert.pem key.pem
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    let tls = match args.get(1).map(String::as_str) {
        None => None,
        Some("--tls") if args.len() == 5 => Some((&args[2], &args[3], &args[4])),
        Some(_) => {
            eprintln!("usage: pingora_floor [ADDR] [--tls TLS_ADDR CERT KEY]");
            std::process::exit(2);
        }
    };
    let conf = pingora::server::configuration::ServerConf {
        threads: 1,
        // As edgewarden runs by default (`server.work_stealing = false`).
        work_stealing: false,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Floor);
    service.add_tcp(&addr);
    if let Some((tls_addr, cert, key)) = tls {
        let mut settings = match pingora::listeners::tls::TlsSettings::intermediate(cert, key) {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("pingora_floor: {cert}, {key}: {e}");
                std::process::exit(1);
            }
        };
        settings.enable_h2();
        service.add_tls_with_settings(tls_addr, None, settings);
    }
    server.add_service(service);
    server.run_forever();
}
