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
pub mod verify;

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::config::{AuthMode, Config, TokenSource};
use crate::origins::Jobs;
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

/// Everything authentication needs for one configuration.
pub struct Auth {
    pub verifier: Verifier,
    pub reserved: ReservedHeaders,
    /// Indexed like the configuration's routes.
    pub routes: Vec<RouteAuth>,
}

impl Auth {
    /// Build issuers (file and PEM keys load now) and the JWKS refreshers to run in the background.
    pub fn build(config: &Config) -> Result<(Auth, Jobs), String> {
        crypto::install();
        let mut issuers = Vec::with_capacity(config.issuers.len());
        let mut services: Jobs = Vec::new();
        let mut errors = Vec::new();
        for (i, issuer) in config.issuers.iter().enumerate() {
            let keys = match IssuerKeys::new(issuer, config.demo_key) {
                Ok(keys) => keys,
                Err(e) => {
                    errors.push(format!("issuers[{i}] ({}): {e}", issuer.name));
                    continue;
                }
            };
            if matches!(issuer.keys, crate::config::KeySource::JwksUrl(_)) {
                services.push(Arc::new(Refresher(keys.clone())));
            }
            issuers.push(Issuer::new(issuer.clone(), keys));
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let routes = config
            .routes
            .iter()
            .map(|r| RouteAuth {
                mode: r.auth,
                issuers: r
                    .issuers
                    .iter()
                    .filter_map(|name| config.issuers.iter().position(|i| &i.name == name))
                    .collect(),
                scopes: r.required_scopes.clone(),
                token_from: r.token_from.clone(),
                forward_authorization: r.forward_authorization,
            })
            .collect();
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
        let verifier = Verifier::new(issuers, cache, config.server.max_token_bytes);
        Ok((
            Auth {
                verifier,
                reserved,
                routes,
            },
            services,
        ))
    }

    /// Strip the headers only the gateway may set, check the route's one token, and on success set
    /// the identity headers and take the credentials off the request (`Authorization`, and the
    /// query parameter or cookie the token came in) unless the route forwards them. Returns the
    /// verified identity, if the request carried one.
    pub async fn authenticate(
        &self,
        req: &mut RequestHeader,
        route: usize,
    ) -> Result<Option<Identity>, AuthError> {
        self.reserved.strip(req);
        let Some(route_auth) = self.routes.get(route) else {
            return Ok(None);
        };
        if route_auth.mode == AuthMode::Off {
            return Ok(None);
        }
        let (identity, source) = match identity::extract_token(req, &route_auth.token_from)? {
            Some(token) => (
                self.verifier
                    .verify(token.value, &route_auth.issuers)
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

    /// Issuers some route relies on that have no usable keys, for readiness.
    pub fn not_ready(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (i, issuer) in self.verifier.issuers.iter().enumerate() {
            let used = self
                .routes
                .iter()
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
