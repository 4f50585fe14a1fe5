//! The gateway's one `ProxyHttp` implementation: per-request context, access decisions in
//! `request_filter`, origin selection, header hygiene, and error answers.

mod headers;
pub mod respond;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::auth::Auth;
use crate::auth::error::AuthError;
use crate::config::Config;
use crate::geo::Geo;
use crate::origins::Origin;
use crate::plugins::{self, Outcome, Plugins};
use crate::routing::{RouteMatch, Router, path_is_ambiguous};
use crate::shutdown::{InFlight, InFlightGuard};
use respond::Rejection;

/// Everything a request needs that was built from one configuration.
pub struct Generation {
    pub config: Config,
    pub auth: Auth,
    pub plugins: Plugins,
    pub geo: Geo,
    router: Router,
    origins: Vec<Origin>,
    /// For each route, the index of its origin.
    route_origin: Vec<usize>,
}

impl Generation {
    pub fn new(
        config: Config,
        auth: Auth,
        plugins: Plugins,
        geo: Geo,
        origins: Vec<Origin>,
    ) -> Generation {
        let router = Router::new(&config.routes);
        let route_origin = config
            .routes
            .iter()
            .map(|r| origins.iter().position(|o| o.name == r.origin).unwrap_or(0))
            .collect();
        Generation {
            config,
            auth,
            plugins,
            geo,
            router,
            origins,
            route_origin,
        }
    }
}

/// The proxy application.
pub struct Gateway {
    generation: Arc<Generation>,
    in_flight: InFlight,
}

impl Gateway {
    pub fn new(generation: Arc<Generation>, in_flight: InFlight) -> Gateway {
        Gateway {
            generation,
            in_flight,
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    request_id: String,
    /// Index of the matched route's origin.
    origin: Option<usize>,
    /// Upstream chosen while routing, used by the first connect attempt.
    peer: Option<Box<HttpPeer>>,
    connect_attempts: usize,
    _in_flight: InFlightGuard,
}

impl Gateway {
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        rejection: Rejection,
    ) -> Result<bool> {
        respond::write(session, &rejection, &ctx.request_id).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            request_id: String::new(),
            origin: None,
            peer: None,
            connect_attempts: 0,
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = headers::request_id(session.req_header());
        if headers::framing_is_ambiguous(session) {
            return self.reject(session, ctx, Rejection::AmbiguousFraming).await;
        }
        let req = session.req_header();
        if path_is_ambiguous(req.uri.path()) {
            return self.reject(session, ctx, Rejection::AmbiguousPath).await;
        }
        let generation = &self.generation;
        let found = generation
            .router
            .find(headers::request_host(req), req.uri.path(), &req.method);
        match found {
            RouteMatch::Found(route) => {
                // Read before authentication removes the reserved headers a trusted proxy may
                // have set.
                let peer = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip());
                let client = generation.geo.client(peer, session.req_header());
                let auth = &generation.auth;
                let identity = match auth.authenticate(session.req_header_mut(), route).await {
                    Ok(identity) => identity,
                    Err(e) => {
                        let scopes = match e {
                            AuthError::InsufficientScope => auth.routes[route].scopes.join(" "),
                            _ => String::new(),
                        };
                        return self.reject(session, ctx, Rejection::Auth(e, scopes)).await;
                    }
                };
                ctx.origin = generation.route_origin.get(route).copied();
                let country = generation.geo.country(&client);
                if let (Some(name), Some(country)) = (generation.geo.header(), country) {
                    session
                        .req_header_mut()
                        .insert_header(name.clone(), country.as_str())?;
                }
                if generation.plugins.route_has_policies(route) {
                    let plugin_ctx = plugins::Context {
                        client_ip: client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                        route: &generation.config.routes[route].name,
                        claims_json: identity
                            .as_ref()
                            .and_then(|i| serde_json::to_string(&*i.claims).ok()),
                        country: country.map(|c| c.as_str().to_string()),
                    };
                    match generation
                        .plugins
                        .run(route, session.req_header_mut(), &plugin_ctx)
                        .await
                    {
                        Outcome::Forward { origin: None } => {}
                        Outcome::Forward { origin: Some(name) } => {
                            ctx.origin = generation.origins.iter().position(|o| o.name == name);
                        }
                        Outcome::Respond {
                            status,
                            headers,
                            body,
                        } => {
                            respond::write_plugin_answer(
                                session,
                                status,
                                headers,
                                body,
                                &ctx.request_id,
                            )
                            .await?;
                            return Ok(true);
                        }
                        Outcome::Failed => {
                            return self.reject(session, ctx, Rejection::PolicyFailed).await;
                        }
                    }
                }
                // Choosing the upstream here lets "no healthy upstream" be answered like any other
                // early rejection, keeping the client connection; after Pingora has started on the
                // upstream, any failure closes it.
                ctx.peer = ctx
                    .origin
                    .and_then(|i| generation.origins.get(i))
                    .and_then(Origin::select);
                match ctx.peer {
                    Some(_) => Ok(false),
                    None => {
                        self.reject(session, ctx, Rejection::NoHealthyUpstream)
                            .await
                    }
                }
            }
            RouteMatch::MethodNotAllowed(allow) => {
                self.reject(session, ctx, Rejection::MethodNotAllowed(allow))
                    .await
            }
            RouteMatch::NotFound => self.reject(session, ctx, Rejection::NoRoute).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.connect_attempts += 1;
        if let Some(peer) = ctx.peer.take() {
            return Ok(peer);
        }
        let origin = ctx
            .origin
            .and_then(|i| self.generation.origins.get(i))
            .ok_or_else(respond::no_healthy_upstream)?;
        origin.select().ok_or_else(respond::no_healthy_upstream)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent yet, so trying the next upstream is safe for any method.
        let upstreams = ctx
            .origin
            .and_then(|i| self.generation.origins.get(i))
            .map_or(1, Origin::upstream_count);
        e.set_retry(ctx.connect_attempts < upstreams);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::add_forwarding(session, upstream, &ctx.request_id)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::clean_response(resp);
        resp.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let Some(rejection) = Rejection::from_proxy_error(e) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if ctx.request_id.is_empty() {
            ctx.request_id = headers::request_id(session.req_header());
        }
        let error_code = rejection.status();
        // Pingora does not reuse a client connection once proxying to the upstream has failed;
        // say so in the answer instead of advertising keep-alive.
        session.set_keepalive(None);
        if session.response_written().is_none()
            && let Err(write_error) = respond::write(session, &rejection, &ctx.request_id).await
        {
            tracing::debug!(error = %write_error, "could not write error response");
        }
        tracing::debug!(error = %e, status = error_code, "request failed");
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    /// A client that hangs up before its answer is not a gateway fault (a load generator stopping
    /// mid-request logged one error line per connection): logged at debug by `fail_to_proxy`.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        e.esource == ErrorSource::Downstream && e.etype == ErrorType::ConnectionClosed
    }
}
