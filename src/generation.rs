//! A generation: everything a request needs, built from one validated configuration (origins,
//! authentication, policies with their warm plugin instances, geo, the route table), plus the
//! background jobs that keep it current (health checks, JWKS refreshes). The gateway serves from
//! one generation at a time; a reload builds the next one beside it and swaps (`reload`).

use std::sync::Arc;
use std::time::Duration;

use pingora::services::background::BackgroundService;

use crate::auth::{Auth, RouteAuth};
use crate::config::{Config, ConfigError, RouteConfig};
use crate::error::{Error, ErrorKind, Errors, OrErr};
use crate::geo::Geo;
use crate::ids::{OriginId, RouteId};
use crate::origins::{self, Origin};
use crate::owned::OwnedHeaders;
use crate::plugins::{ChainStep, Plugins};
use crate::routing::Router;
use crate::shield::{RouteShield, Shield};

/// How long a reload waits for a URL issuer's first JWKS fetch before falling back to the keys
/// the serving generation has for the same issuer and URL.
const JWKS_PRIME_TIMEOUT: Duration = Duration::from_secs(5);

/// Background jobs of one generation (health checks, JWKS refreshes), run while it serves.
pub type Jobs = Vec<Arc<dyn BackgroundService + Send + Sync>>;

/// Everything a request needs that was built from one configuration.
pub struct Generation {
    pub config: Config,
    pub auth: Auth,
    pub plugins: Plugins,
    pub geo: Geo,
    /// Penalty box, verification budget and `[[limits]]`, with their counters.
    pub shield: Arc<Shield>,
    /// `[tracing]`'s tracer and its export queue (`None`: tracing off).
    pub tracer: Option<Arc<crate::otel::Tracer>>,
    /// Request headers only the gateway writes.
    pub(crate) owned: OwnedHeaders,
    pub(crate) router: Router,
    /// In configuration order: `RouteId` and `OriginId` are positions here.
    routes: Vec<Route>,
    origins: Vec<Origin>,
}

/// One route with everything a request on it needs, resolved when the generation is built: a
/// route whose issuer, policy or origin is missing is a build error, so nothing falls back.
pub struct Route {
    pub id: RouteId,
    pub config: RouteConfig,
    pub auth: RouteAuth,
    /// The route's policies in order (empty: none).
    pub policies: Vec<ChainStep>,
    /// The headers its enforcing policies may set: client copies are removed before they run.
    pub policy_headers: crate::header_pattern::HeaderPatterns,
    pub origin: OriginId,
    /// The route's limits and whether the shield's stages apply.
    pub shield: RouteShield,
    /// `cors`: the browsers' origins allowed and the fields every answer on the route carries.
    pub cors: Option<crate::cors::Cors>,
    /// `edgewarden_request_duration_seconds` for this route, resolved once.
    pub(crate) duration: prometheus::Histogram,
    /// The route's request and authentication counters.
    pub(crate) counters: crate::metrics::RouteCounters,
}

impl Generation {
    /// Build every part of a configuration (blocking: plugins may be compiled). Every problem
    /// found is returned.
    pub fn build(config: Config) -> Result<(Generation, Jobs), Errors> {
        let mut errors = Errors::new();
        let origins =
            errors.ok(origins::build(&config.origins).or_err(ErrorKind::Origins, "origins"));
        let origin_id = |name: &str| {
            config
                .origins
                .iter()
                .position(|o| o.name == name)
                .map(OriginId::at)
        };
        let auth = errors.ok(Auth::build(&config));
        let plugins = errors.ok(Plugins::build(&config, origin_id, config.server.threads));
        let geo = errors.ok(Geo::build(&config));
        let shield = errors.ok(Shield::build(
            &config.shield,
            &config.limits,
            config.redis.as_ref(),
        ));
        let tracer = errors.ok(crate::otel::Tracer::build(config.tracing.as_ref()));
        let (
            Some((origins, health_checks)),
            Some((auth, refreshers)),
            Some(plugins),
            Some(geo),
            Some(shield),
            Some(tracer),
        ) = (origins, auth, plugins, geo, shield, tracer)
        else {
            return Err(errors);
        };
        let routes: Vec<Route> = config
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, route)| {
                errors.ok(Route::resolve(
                    RouteId::at(i),
                    route,
                    &config,
                    &plugins,
                    &shield,
                    origin_id,
                ))
            })
            .collect();
        let routes = errors.or_ok(routes)?;
        let mut jobs: Jobs = Vec::new();
        jobs.extend(health_checks.into_iter().map(|job| job as _));
        jobs.extend(refreshers.into_iter().map(|job| job as _));
        let router = Router::new(&config.routes);
        let owned = OwnedHeaders::build(&config);
        let generation = Generation {
            config,
            auth,
            plugins,
            geo,
            shield: Arc::new(shield),
            tracer,
            owned,
            router,
            routes,
            origins,
        };
        Ok((generation, jobs))
    }

    /// What `edgewarden check` does after [`Config::load`]: build everything a start would build
    /// (origins, issuers and their key files, geo databases, policies and their plugins, built and
    /// initialised) without binding a socket or serving anything, and report every problem at once
    /// as problems of the configuration's file. Returns a summary of what was checked.
    pub fn check(config: Config) -> Result<String, ConfigError> {
        let file = config.source.clone();
        let summary = format!(
            "{} routes, {} origins",
            config.routes.len(),
            config.origins.len()
        );
        Generation::build(config)
            .map(|_| summary)
            .map_err(|e| ConfigError {
                file,
                problems: e.iter().map(ToString::to_string).collect(),
            })
    }

    /// A route of this generation (ids are made only by its build, see `ids`).
    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id.index()]
    }

    /// An origin of this generation (ids are made only by its build, see `ids`).
    pub fn origin(&self, id: OriginId) -> &Origin {
        &self.origins[id.index()]
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Issuers and policies this generation's routes need that are not ready yet.
    pub fn not_ready(&self) -> Vec<String> {
        let mut missing = self.auth.not_ready(self.routes.iter().map(|r| &r.auth));
        missing.extend(self.plugins.not_ready());
        missing
    }

    /// Before a reloaded generation serves: fetch each URL issuer's keys once, and where that
    /// fails keep the keys `serving` has for the same issuer and URL, so a reload never turns
    /// valid tokens away while a JWKS endpoint is briefly unreachable.
    pub async fn prime_keys(&self, serving: &Generation) {
        for issuer in &self.config.issuers {
            let Some(url) = issuer.keys.url() else {
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

impl Route {
    fn resolve(
        id: RouteId,
        config: &RouteConfig,
        all: &Config,
        plugins: &Plugins,
        shield: &Shield,
        origin: impl Fn(&str) -> Option<OriginId>,
    ) -> Result<Route, Error> {
        let origin = origin(&config.origin).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("routes.{}: unknown origin {:?}", config.name, config.origin),
            )
        })?;
        Ok(Route {
            id,
            auth: RouteAuth::resolve(config, &all.issuers)?,
            policies: plugins.chain(config)?,
            policy_headers: plugins.headers_set_by(config),
            origin,
            shield: shield.resolve(config)?,
            cors: config
                .cors
                .as_ref()
                .map(crate::cors::Cors::new)
                .transpose()
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!("routes.{}.cors: {e}", config.name),
                    )
                })?,
            duration: crate::metrics::get()
                .request_duration
                .with_label_values(&[config.name.as_str()]),
            counters: crate::metrics::RouteCounters::new(config.name.as_str()),
            config: config.clone(),
        })
    }
}

/// Shared so the admin listener and the reloader see the generation requests are served from.
pub type Current = Arc<arc_swap::ArcSwap<Generation>>;
