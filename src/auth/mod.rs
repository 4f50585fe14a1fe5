//! Bearer-token authentication in native code: finding the request's one token (and taking it off
//! the request before forwarding), strict JWS parsing, keys and JWKS refresh, verification (ring
//! through jsonwebtoken), the verified-token cache, scopes, and the identity headers only the
//! gateway may set.

pub mod cache;
pub mod crypto;
pub mod demo_key;
pub mod error;
pub mod identity;
pub mod jwks;
pub mod jws;
pub mod keys;
pub mod negative;
pub mod offload;
pub mod verify;

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::config::{AuthMode, Config, IssuerConfig, RouteConfig, TokenSource};
use crate::error::{Error, ErrorKind, Errors};
use crate::lane::Lane;
use crate::shield::Budget;
use error::AuthError;
use identity::ReservedHeaders;
use jwks::{IssuerKeys, Refresher};
use verify::{Identity, Issuer, Verifier};

/// A route's authentication settings, resolved against the issuer list.
pub struct RouteAuth {
    pub mode: AuthMode,
    /// Indexes into the verifier's issuers.
    pub issuers: Vec<usize>,
    pub scopes: Vec<String>,
    pub token_from: Vec<TokenSource>,
    pub forward_authorization: bool,
}

impl RouteAuth {
    /// The route's settings with its issuers resolved; an issuer name the configuration does not
    /// define is an error (never skipped: the route would accept fewer or more tokens than it says).
    pub fn resolve(route: &RouteConfig, issuers: &[IssuerConfig]) -> Result<RouteAuth, Error> {
        let issuers = route
            .issuers
            .iter()
            .map(|name| {
                issuers.iter().position(|i| &i.name == name).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("routes.{}: unknown issuer {name:?}", route.name),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(RouteAuth {
            mode: route.auth,
            issuers,
            scopes: route.required_scopes.clone(),
            token_from: route.token_from.clone(),
            forward_authorization: route.forward_authorization,
        })
    }
}

/// Everything authentication needs for one configuration.
pub struct Auth {
    pub verifier: Verifier,
    pub reserved: ReservedHeaders,
}

impl Auth {
    /// Build issuers (file and PEM keys load now) and the JWKS refreshers to run in the background.
    /// Every issuer whose keys do not load is reported.
    pub fn build(config: &Config) -> Result<(Auth, Vec<Arc<Refresher>>), Errors> {
        crypto::install();
        let mut issuers = Vec::with_capacity(config.issuers.len());
        let mut services = Vec::new();
        let mut errors = Errors::new();
        for (i, issuer) in config.issuers.iter().enumerate() {
            let keys = match IssuerKeys::new(issuer, config.demo_key) {
                Ok(keys) => keys,
                Err(e) => {
                    errors.push(e.within(format!("issuers[{i}] ({})", issuer.name)));
                    continue;
                }
            };
            if issuer.keys.url().is_some() {
                services.push(Arc::new(Refresher(keys.clone())));
            }
            issuers.push(Issuer::new(issuer.clone(), keys));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let targets: Vec<String> = config
            .issuers
            .iter()
            .flat_map(|i| i.claims_to_headers.iter().map(|(_, h)| h.clone()))
            .collect();
        let geo_header = config.geo.as_ref().map(|g| g.header.clone());
        let reserved = ReservedHeaders::new(
            config
                .server
                .reserved_headers
                .iter()
                .chain(targets.iter())
                .chain(geo_header.iter()),
        );
        let cache = cache::TokenCache::new(
            config.server.token_cache_entries,
            config.server.token_cache_bytes,
        );
        let shield = &config.shield;
        let negative = shield
            .enabled
            .then(|| {
                negative::NegativeCache::new(
                    shield.negative_cache_entries,
                    shield.negative_cache_ttl_s,
                )
            })
            .flatten();
        let mut verifier = Verifier::new(issuers, cache, negative, config.server.max_token_bytes);
        if config.server.signature_threads > 0 {
            let lane = Lane::start(
                "signature-lane",
                config.server.signature_threads,
                config.server.signature_nice,
            )?;
            verifier = verifier.with_lane(offload::SignatureLane::new(lane));
        }
        Ok((Auth { verifier, reserved }, services))
    }

    /// Strip the headers only the gateway may set, check the route's one token, and on success set
    /// the identity headers and take the credentials off the request (`Authorization`, and the
    /// query parameter or cookie the token came in) unless the route forwards them. Returns the
    /// verified identity, if the request carried one.
    pub async fn authenticate(
        &self,
        req: &mut RequestHeader,
        route_auth: &RouteAuth,
        budget: &Budget<'_>,
    ) -> Result<Option<Identity>, AuthError> {
        self.reserved.strip(req);
        if route_auth.mode == AuthMode::Off {
            return Ok(None);
        }
        let (identity, source) = match identity::extract_token(req, &route_auth.token_from)? {
            Some(token) => (
                self.verifier
                    .verify(token.value, &route_auth.issuers, budget)
                    .await?,
                token.source,
            ),
            None if route_auth.mode == AuthMode::Required => return Err(AuthError::MissingToken),
            None => return Ok(None),
        };
        if !identity::has_scopes(&identity.claims, &route_auth.scopes) {
            return Err(AuthError::InsufficientScope);
        }
        self.set_identity_headers(req, &identity);
        if !route_auth.forward_authorization {
            req.remove_header(&http::header::AUTHORIZATION);
            identity::remove_token(req, source)?;
        }
        Ok(Some(identity))
    }

    fn set_identity_headers(&self, req: &mut RequestHeader, identity: &Identity) {
        let mapping = self
            .verifier
            .issuers
            .get(identity.issuer)
            .map(|i| i.config.claims_to_headers.as_slice())
            .unwrap_or_default();
        for (name, value) in identity::claim_headers(&identity.claims, mapping) {
            if let Err(e) = req.insert_header(name, value) {
                tracing::debug!(error = %e, "identity header not set");
            }
        }
    }

    /// Issuers one of `routes` relies on that have no usable keys, for readiness.
    pub fn not_ready<'a>(
        &self,
        routes: impl Iterator<Item = &'a RouteAuth> + Clone,
    ) -> Vec<String> {
        let mut missing = Vec::new();
        for (i, issuer) in self.verifier.issuers.iter().enumerate() {
            let used = routes
                .clone()
                .any(|r| r.mode != AuthMode::Off && r.issuers.contains(&i));
            if used && issuer.keys.current().is_none() {
                missing.push(format!("issuer {}: no usable keys", issuer.config.name));
            }
        }
        missing
    }

    /// Set the key-count and key-age gauges of this configuration's issuers (at scrape time);
    /// issuers a reload removed disappear.
    pub fn report_keys(&self) {
        let m = crate::metrics::get();
        m.jwks_keys.reset();
        m.jwks_age.reset();
        for issuer in &self.verifier.issuers {
            let name = issuer.config.name.as_str();
            let (count, age) = issuer.keys.status();
            m.jwks_keys.with_label_values(&[name]).set(count as i64);
            if let Some(age) = age {
                m.jwks_age.with_label_values(&[name]).set(age.as_secs_f64());
            }
        }
    }

    pub fn issuer_keys(&self, name: &str) -> Option<Arc<IssuerKeys>> {
        self.verifier
            .issuers
            .iter()
            .find(|i| i.config.name == name)
            .map(|i| i.keys.clone())
    }
}
