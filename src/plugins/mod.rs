//! Python policy plugins, compiled to WebAssembly components and run in-process: building
//! (`build`), hosting (`host`), checking what they decide (`decision`), and running a route's
//! chain of policies in order (here). The first policy that answers ends the chain.

mod bindings;
pub mod build;
pub mod decision;
pub mod host;

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::config::{Config, OnError, PolicyConfig};
use bindings::edgewarden::policy::types::Request;
use decision::{Allowed, Checked};
use host::{PolicyHost, Runtime};

/// What a route's policies decided.
pub enum Outcome {
    /// Go on to the origin, possibly another one.
    Forward { origin: Option<String> },
    /// Answer with this response.
    Respond {
        status: u16,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        body: Vec<u8>,
    },
    /// A policy with `on_error = "deny"` failed: answer 503.
    Failed,
}

/// Facts about the request that plugins see besides its header.
pub struct Context<'a> {
    pub client_ip: String,
    pub route: &'a str,
    pub claims_json: Option<String>,
    pub country: Option<String>,
}

struct Loaded {
    config: PolicyConfig,
    host: Arc<PolicyHost>,
}

/// Every policy of one configuration, built and warmed.
pub struct Plugins {
    policies: Vec<Loaded>,
    /// For each route, indexes into `policies`, in order.
    routes: Vec<Vec<usize>>,
    _runtime: Option<Runtime>,
}

impl Plugins {
    /// Build, compile and warm every policy some route uses (blocking; start-up only).
    /// `warm` is the number of initialised instances to keep per warm policy.
    pub fn build(
        config: &Config,
        cache_dir: std::path::PathBuf,
        warm: usize,
    ) -> Result<Plugins, String> {
        let routes_use_policies = config.routes.iter().any(|r| !r.policies.is_empty());
        if !routes_use_policies {
            return Ok(Plugins {
                policies: Vec::new(),
                routes: vec![Vec::new(); config.routes.len()],
                _runtime: None,
            });
        }
        let runtime = Runtime::new()?;
        let builder = build::Builder::new(cache_dir, &config.server.plugins_dir);
        let warmer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("plugin warm-up runtime: {e}"))?;
        let mut policies = Vec::with_capacity(config.policies.len());
        let mut errors = Vec::new();
        for policy in &config.policies {
            let dir = config.server.plugins_dir.join(&policy.plugin);
            let built = match builder.build(&runtime.engine, &policy.plugin, &dir) {
                Ok(built) => built,
                Err(e) => {
                    errors.push(format!("{}: {e}", policy.file.display()));
                    continue;
                }
            };
            tracing::info!(policy = %policy.name, plugin = %policy.plugin, how = %built.note, "plugin ready");
            let host = match runtime.prepare(policy, &built.component) {
                Ok(host) => host,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let Err(e) = warmer.block_on(host.warm_up(warm)) {
                errors.push(format!("{}: {e}", policy.file.display()));
                continue;
            }
            policies.push(Loaded {
                config: policy.clone(),
                host,
            });
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let routes = config
            .routes
            .iter()
            .map(|r| {
                r.policies
                    .iter()
                    .filter_map(|name| policies.iter().position(|p| &p.config.name == name))
                    .collect()
            })
            .collect();
        Ok(Plugins {
            policies,
            routes,
            _runtime: Some(runtime),
        })
    }

    pub fn route_has_policies(&self, route: usize) -> bool {
        self.routes.get(route).is_some_and(|p| !p.is_empty())
    }

    /// Policies whose plugin has no initialised instance (readiness).
    pub fn not_ready(&self) -> Vec<String> {
        self.policies
            .iter()
            .filter(|p| {
                p.config.isolation == crate::config::Isolation::Warm && p.host.instances() == 0
            })
            .map(|p| format!("policy {}: no initialised instance", p.config.name))
            .collect()
    }

    /// Run the route's policies in order on `req`, applying each forward decision before the next.
    pub async fn run(&self, route: usize, req: &mut RequestHeader, ctx: &Context<'_>) -> Outcome {
        let Some(chain) = self.routes.get(route) else {
            return Outcome::Forward { origin: None };
        };
        let mut origin = None;
        for &index in chain {
            let Some(policy) = self.policies.get(index) else {
                continue;
            };
            let input = request_for(req, ctx);
            let checked = match policy.host.call(&input).await {
                Ok(decision) => {
                    let allowed = Allowed {
                        headers: &policy.config.allow_headers,
                        origins: &policy.config.allow_origins,
                    };
                    decision::check(decision, &allowed).map_err(|why| {
                        tracing::warn!(policy = %policy.config.name, %why, "plugin output refused");
                    })
                }
                Err(_) => Err(()),
            };
            match checked {
                Ok(Checked::Respond {
                    status,
                    headers,
                    body,
                }) => {
                    return Outcome::Respond {
                        status,
                        headers,
                        body,
                    };
                }
                Ok(Checked::Forward {
                    set,
                    append,
                    remove,
                    origin: chosen,
                    path,
                }) => {
                    if let Err(why) = decision::apply(req, set, append, remove, path) {
                        tracing::warn!(policy = %policy.config.name, %why, "plugin decision not applied");
                        if policy.config.on_error == OnError::Deny {
                            return Outcome::Failed;
                        }
                    }
                    if chosen.is_some() {
                        origin = chosen;
                    }
                }
                Err(()) if policy.config.on_error == OnError::Deny => return Outcome::Failed,
                Err(()) => {}
            }
        }
        Outcome::Forward { origin }
    }
}

fn request_for(req: &RequestHeader, ctx: &Context<'_>) -> Request {
    Request {
        method: req.method.to_string(),
        path: req.uri.path().to_string(),
        query: req.uri.query().map(str::to_string),
        headers: req
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        client_ip: ctx.client_ip.clone(),
        route: ctx.route.to_string(),
        claims_json: ctx.claims_json.clone(),
        country: ctx.country.clone(),
    }
}
