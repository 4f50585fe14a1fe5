//! Origin pools: round robin over each origin's upstreams, optional active health checks, and the
//! per-request upstream peer (timeouts, TLS, header-forwarding policy).
//!
//! Upstream connections are pooled and reused by Pingora's connector; this module only decides
//! where a request goes and with which limits.

use std::sync::Arc;
use std::time::Duration;

use pingora::lb::LoadBalancer;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::prelude::HttpPeer;
use pingora::upstreams::peer::HttpUpstreamRequestPolicy;

use crate::config::OriginConfig;

/// One named origin and its upstreams.
pub struct Origin {
    pub name: String,
    pool: Arc<LoadBalancer<RoundRobin>>,
    upstream_count: usize,
    tls: bool,
    sni: String,
    ca: Option<Arc<pingora::protocols::tls::CaType>>,
    /// Pingora pools upstream connections by address and TLS name, not by CA: a separate pool
    /// per origin and trust anchors keeps a connection verified for one origin from serving
    /// another that trusts different CAs.
    pool_key: u64,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// `edgewarden_upstream_duration_seconds` for this origin, resolved once.
    pub(crate) duration: prometheus::Histogram,
}

impl Origin {
    /// Next healthy upstream in round-robin order, or `None` when every upstream is down.
    pub fn select(&self) -> Option<Box<HttpPeer>> {
        let backend = self.pool.select(b"", self.upstream_count.max(1) * 2)?;
        // Origins are IP addresses; building the peer from the parsed address skips a
        // format-and-parse round trip per request.
        let addr = *backend.addr.as_inet()?;
        let mut peer = HttpPeer::new(addr, self.tls, self.sni.clone());
        peer.group_key = self.pool_key;
        let options = &mut peer.options;
        options.connection_timeout = Some(self.connect_timeout);
        options.total_connection_timeout = Some(self.connect_timeout);
        options.read_timeout = Some(self.read_timeout);
        options.write_timeout = Some(self.read_timeout);
        options.idle_timeout = Some(Duration::from_secs(60));
        options.ca = self.ca.clone();
        // Hop-by-hop request fields, including every field named in `Connection`, are removed by
        // Pingora under this policy; only WebSocket upgrades are forwarded.
        options.http_upstream_request_policy = HttpUpstreamRequestPolicy::standard();
        Some(Box::new(peer))
    }

    /// How many upstreams this origin has; bounds connect retries.
    pub fn upstream_count(&self) -> usize {
        self.upstream_count
    }
}

/// An origin's pool of upstreams, run in the background when it has a health check.
pub type HealthCheck = Arc<LoadBalancer<RoundRobin>>;

/// Build every origin. Origins with a health check also return the pool whose checks must run.
pub fn build(configs: &[OriginConfig]) -> std::io::Result<(Vec<Origin>, Vec<HealthCheck>)> {
    let mut origins = Vec::with_capacity(configs.len());
    let mut jobs = Vec::new();
    for config in configs {
        let addrs: Vec<String> = config.addresses.iter().map(ToString::to_string).collect();
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs)?;
        let pool = match &config.health_check {
            None => Arc::new(lb),
            Some(hc) => {
                match &hc.path {
                    None => lb.set_health_check(TcpHealthCheck::new()),
                    Some(path) => {
                        let mut check = HttpHealthCheck::new(&config.sni, config.tls);
                        check.req.set_uri(path.parse().map_err(|e| {
                            std::io::Error::other(format!("health_check.path: {e}"))
                        })?);
                        check.peer_template.options.connection_timeout =
                            Some(Duration::from_millis(config.connect_timeout_ms));
                        lb.set_health_check(Box::new(check));
                    }
                }
                lb.health_check_frequency = Some(Duration::from_secs(hc.interval_s));
                let pool = Arc::new(lb);
                jobs.push(pool.clone());
                pool
            }
        };
        let ca = match &config.ca_file {
            Some(path) => Some(crate::config::tls::load_ca(path).map_err(std::io::Error::other)?),
            None => None,
        };
        let pool_key = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            config.name.hash(&mut hasher);
            for cert in ca.iter().flat_map(|c| c.iter()) {
                cert.borrow_raw_cert().hash(&mut hasher);
            }
            hasher.finish()
        };
        origins.push(Origin {
            name: config.name.to_string(),
            ca,
            pool_key,
            pool,
            upstream_count: config.addresses.len(),
            tls: config.tls,
            sni: config.sni.clone(),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            read_timeout: Duration::from_millis(config.read_timeout_ms),
            duration: crate::metrics::get()
                .upstream_duration
                .with_label_values(&[config.name.as_str()]),
        });
    }
    Ok((origins, jobs))
}
