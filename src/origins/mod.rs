//! Origin pools: round robin over each origin's upstreams, optional active health checks,
//! passive health from real requests (`passive`), and the per-request upstream peer (timeouts,
//! TLS, header-forwarding policy).
//!
//! Upstream connections are pooled and reused by Pingora's connector; this module only decides
//! where a request goes and with which limits.

mod passive;

use std::net::SocketAddr;
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
    /// The upstreams in the configuration's order: an upstream's index is its place here.
    addresses: Vec<SocketAddr>,
    passive: Option<passive::PassiveHealth>,
    /// More attempts a request may make after its first fails before anything was sent.
    pub retries: u32,
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
    /// Next upstream in round-robin order that is healthy (active checks), not taken out by
    /// passive health, and not in `avoid` (a bit per upstream index, for retries), with its
    /// index; `None` when there is none. Should passive health have taken out every upstream
    /// that is otherwise a candidate, they are used anyway: it never empties an origin alone.
    pub fn select(&self, avoid: u64) -> Option<(usize, Box<HttpPeer>)> {
        let iterations = self.addresses.len().max(1) * 2;
        let index = |addr: &SocketAddr| self.addresses.iter().position(|a| a == addr);
        let candidate = |backend: &pingora::lb::Backend, healthy: bool, passive: bool| {
            let Some(i) = backend.addr.as_inet().and_then(index) else {
                return false;
            };
            healthy
                && (i >= 64 || avoid & (1 << i) == 0)
                && !(passive && self.passive.as_ref().is_some_and(|p| p.is_out(i)))
        };
        let backend = self
            .pool
            .select_with(b"", iterations, |b, healthy| candidate(b, healthy, true))
            .or_else(|| {
                self.passive.as_ref()?;
                self.pool
                    .select_with(b"", iterations, |b, healthy| candidate(b, healthy, false))
            })?;
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
        Some((index(&addr)?, Box::new(peer)))
    }

    /// What an attempt on upstream `index` says about its health: `true` for a usable answer.
    pub fn report(&self, index: usize, ok: bool) {
        if let Some(passive) = &self.passive {
            if ok {
                passive.succeeded(index);
            } else {
                passive.failed(index);
            }
        }
    }

    /// How many upstreams this origin has.
    pub fn upstream_count(&self) -> usize {
        self.addresses.len()
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
            addresses: config.addresses.clone(),
            passive: config.passive_health.clone().map(|passive| {
                let ejections = crate::metrics::get()
                    .upstream_ejections
                    .with_label_values(&[config.name.as_str()]);
                passive::PassiveHealth::new(passive, config.addresses.len(), ejections)
            }),
            retries: config.retries,
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
