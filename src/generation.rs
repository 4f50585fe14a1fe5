//! A generation: everything a request needs, built from one validated configuration (origins,
//! authentication, policies with their warm plugin instances, geo, the route table), plus the
//! background jobs that keep it current (health checks, JWKS refreshes). The gateway serves from
//! one generation at a time; a reload builds the next one beside it and swaps (`reload`).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::config::{Config, KeySource};
use crate::geo::Geo;
use crate::origins::{self, Jobs, Origin};
use crate::plugins::Plugins;
use crate::proxy::owned::OwnedHeaders;
use crate::proxy::record::Sampler;
use crate::routing::Router;

/// How long a reload waits for a URL issuer's first JWKS fetch before falling back to the keys
/// the serving generation has for the same issuer and URL.
const JWKS_PRIME_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a request needs that was built from one configuration.
pub struct Generation {
    pub config: Config,
    pub auth: Auth,
    pub plugins: Plugins,
    pub geo: Geo,
    /// Request headers only the gateway writes.
    pub(crate) owned: OwnedHeaders,
    pub(crate) router: Router,
    pub(crate) origins: Vec<Origin>,
    /// For each route, the index of its origin.
    pub(crate) route_origin: Vec<usize>,
    /// Duration histograms resolved per route and per origin (indexed alike).
    pub(crate) route_duration: Vec<prometheus::Histogram>,
    pub(crate) upstream_duration: Vec<prometheus::Histogram>,
    pub(crate) sampler: Sampler,
}

impl Generation {
    /// Build every part of a configuration (blocking: plugins may be compiled). Every problem
    /// found is returned, one per line.
    pub fn build(config: Config) -> Result<(Generation, Jobs), String> {
        let mut errors = Vec::new();
        let origins = origins::build(&config.origins)
            .map_err(|e| errors.push(format!("origins: {e}")))
            .ok();
        let auth = Auth::build(&config).map_err(|e| errors.push(e)).ok();
        let plugins = Plugins::build(
            &config,
            config.server.plugin_cache_dir.clone(),
            config.server.threads,
        )
        .map_err(|e| errors.push(e))
        .ok();
        let geo = Geo::build(&config).map_err(|e| errors.push(e)).ok();
        let (Some((origins, mut jobs)), Some((auth, auth_jobs)), Some(plugins), Some(geo)) =
            (origins, auth, plugins, geo)
        else {
            return Err(errors.join("\n"));
        };
        jobs.extend(auth_jobs);
        let router = Router::new(&config.routes);
        let owned = OwnedHeaders::build(&config);
        let route_origin = config
            .routes
            .iter()
            .map(|r| origins.iter().position(|o| o.name == r.origin).unwrap_or(0))
            .collect();
        let m = crate::metrics::get();
        let route_duration = config
            .routes
            .iter()
            .map(|r| m.request_duration.with_label_values(&[r.name.as_str()]))
            .collect();
        let upstream_duration = origins
            .iter()
            .map(|o| m.upstream_duration.with_label_values(&[o.name.as_str()]))
            .collect();
        let generation = Generation {
            config,
            auth,
            plugins,
            geo,
            owned,
            router,
            origins,
            route_origin,
            route_duration,
            upstream_duration,
            sampler: Sampler::default(),
        };
        Ok((generation, jobs))
    }

    /// Before a reloaded generation serves: fetch each URL issuer's keys once, and where that
    /// fails keep the keys `serving` has for the same issuer and URL, so a reload never turns
    /// valid tokens away while a JWKS endpoint is briefly unreachable.
    pub async fn prime_keys(&self, serving: &Generation) {
        for issuer in &self.config.issuers {
            let KeySource::JwksUrl(url) = &issuer.keys else {
                continue;
            };
            let Some(keys) = self.auth.issuer_keys(&issuer.name) else {
                continue;
            };
            match tokio::time::timeout(JWKS_PRIME_TIMEOUT, keys.refresh()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(issuer = %issuer.name, error = %e, "JWKS fetch on reload failed")
                }
                Err(_) => tracing::warn!(issuer = %issuer.name, "JWKS fetch on reload timed out"),
            }
            let same_source = serving
                .config
                .issuers
                .iter()
                .any(|old| old.name == issuer.name && old.keys == issuer.keys);
            if same_source && let Some(old) = serving.auth.issuer_keys(&issuer.name) {
                keys.adopt(&old);
                tracing::info!(issuer = %issuer.name, %url, "keeping the serving keys until the next refresh");
            }
        }
    }
}

/// Shared so the admin listener and the reloader see the generation requests are served from.
pub type Current = Arc<arc_swap::ArcSwap<Generation>>;
