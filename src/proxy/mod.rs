//! The gateway's one `ProxyHttp` implementation: per-request context, access decisions in
//! `request_filter`, origin selection, header hygiene, and error answers.

mod headers;
pub mod owned;
pub mod record;
pub mod respond;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::auth::error::AuthError;
use crate::generation::{Current, Generation};
use crate::origins::Origin;
use crate::plugins::{self, Outcome};
use crate::routing::RouteMatch;
use crate::shutdown::{Draining, InFlight, InFlightGuard};
use crate::target::{self, TargetError};
use record::{Decided, Record};
use respond::Rejection;

/// The proxy application.
pub struct Gateway {
    current: Current,
    in_flight: InFlight,
    draining: Draining,
}

impl Gateway {
    pub fn new(current: Current, in_flight: InFlight, draining: Draining) -> Gateway {
        Gateway {
            current,
            in_flight,
            draining,
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    /// The generation this request is served from, start to end (a reload does not change it).
    generation: Arc<Generation>,
    request_id: String,
    /// Index of the matched route's origin.
    origin: Option<usize>,
    /// Upstream chosen while routing, used by the first connect attempt.
    peer: Option<Box<HttpPeer>>,
    connect_attempts: usize,
    /// The peer is one of `trusted_proxies`: its forwarding chain is extended, not replaced.
    trusted_peer: bool,
    record: Record,
    _in_flight: InFlightGuard,
}

impl Gateway {
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        rejection: Rejection,
    ) -> Result<bool> {
        ctx.record.decided = Decided::Rejected {
            code: rejection.code(),
            auth: matches!(rejection, Rejection::Auth(..)),
        };
        let trace = self.trace(ctx);
        respond::write(session, &rejection, &ctx.request_id, trace.as_deref()).await?;
        Ok(true)
    }

    /// The trace header's value, when this request asked for it.
    fn trace(&self, ctx: &RequestCtx) -> Option<String> {
        ctx.record
            .trace
            .then(|| ctx.record.trace_value(&ctx.generation))
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            generation: self.current.load_full(),
            request_id: String::new(),
            origin: None,
            peer: None,
            connect_attempts: 0,
            trusted_peer: false,
            record: Record::new(),
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = headers::request_id(session.req_header());
        if self.draining.is_on() {
            // Clients move to another replica after this answer.
            session.set_keepalive(None);
        }
        let generation = ctx.generation.clone();
        let generation = &*generation;
        if session.req_header().headers.contains_key(record::TRACE_KEY) {
            ctx.record.trace = record::has_trace_key(
                session.req_header(),
                generation.config.server.trace_secret.as_deref(),
            );
            session.req_header_mut().remove_header(record::TRACE_KEY);
        }
        if headers::framing_is_ambiguous(session) {
            return self.reject(session, ctx, Rejection::AmbiguousFraming).await;
        }
        let route_path = match target::canonicalise(session.req_header_mut()) {
            Ok(Some(path)) => path,
            Ok(None) => return self.reject(session, ctx, Rejection::ServerOptions).await,
            Err(e) => return self.reject(session, ctx, Rejection::Target(e)).await,
        };
        if owned::apply_connection_nominations(session.req_header_mut()).is_err() {
            return self.reject(session, ctx, Rejection::AmbiguousHeaders).await;
        }
        generation.owned.strip_aliases(session.req_header_mut());
        let req = session.req_header();
        let found =
            generation
                .router
                .find(route_path.host.as_deref(), &route_path.path, &req.method);
        match found {
            RouteMatch::Found(route) => {
                ctx.record.route = Some(route);
                if route_path.has_parameters
                    && !generation.config.routes[route].allow_path_parameters
                {
                    let refused = Rejection::Target(TargetError::PathParameters);
                    return self.reject(session, ctx, refused).await;
                }
                if generation.config.routes[route].debug_trace {
                    ctx.record.trace = true;
                }
                let timing = generation.config.access_log.enabled;
                // Read before authentication removes the reserved headers a trusted proxy may
                // have set.
                let peer = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip());
                ctx.trusted_peer =
                    peer.is_some_and(|ip| generation.geo.is_trusted(ip.to_canonical()));
                let client = generation.geo.client(peer, session.req_header());
                if timing {
                    ctx.record.client_ip = client.ip;
                }
                let auth = &generation.auth;
                let auth_started = timing.then(Instant::now);
                let authenticated = auth.authenticate(session.req_header_mut(), route).await;
                ctx.record.auth_time = auth_started.map(|t| t.elapsed());
                let identity = match authenticated {
                    Ok(identity) => identity,
                    Err(e) => {
                        let route_name = generation.config.routes[route].name.as_str();
                        crate::metrics::get()
                            .auth_rejections
                            .with_label_values(&[route_name, e.reason()])
                            .inc();
                        let scopes = match e {
                            AuthError::InsufficientScope => auth.routes[route].scopes.join(" "),
                            _ => String::new(),
                        };
                        return self.reject(session, ctx, Rejection::Auth(e, scopes)).await;
                    }
                };
                ctx.origin = generation.route_origin.get(route).copied();
                let country = generation.geo.country(&client);
                if timing {
                    ctx.record.country = country;
                }
                let mut chosen_by = None;
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
                    let plugins_started = timing.then(Instant::now);
                    let outcome = generation
                        .plugins
                        .run(route, session.req_header_mut(), &plugin_ctx)
                        .await;
                    ctx.record.plugins_time = plugins_started.map(|t| t.elapsed());
                    match outcome {
                        Outcome::Forward {
                            origin: None,
                            chosen_by: _,
                        } => {}
                        Outcome::Forward {
                            origin: Some(name),
                            chosen_by: policy,
                        } => {
                            ctx.origin = generation.origins.iter().position(|o| o.name == name);
                            chosen_by = policy;
                        }
                        Outcome::Respond {
                            policy,
                            status,
                            headers,
                            body,
                        } => {
                            ctx.record.decided = Decided::PolicyResponded { policy, status };
                            let trace = self.trace(ctx);
                            let answer = respond::PluginAnswer {
                                status,
                                headers,
                                body,
                            };
                            respond::write_plugin_answer(
                                session,
                                answer,
                                &ctx.request_id,
                                trace.as_deref(),
                            )
                            .await?;
                            return Ok(true);
                        }
                        Outcome::Failed { policy, why } => {
                            ctx.record.decided = Decided::PolicyFailed { policy, why };
                            let trace = self.trace(ctx);
                            respond::write(
                                session,
                                &Rejection::PolicyFailed,
                                &ctx.request_id,
                                trace.as_deref(),
                            )
                            .await?;
                            return Ok(true);
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
                match (ctx.peer.as_ref(), ctx.origin) {
                    (Some(_), Some(origin)) => {
                        ctx.record.decided = Decided::Forwarded { origin, chosen_by };
                        Ok(false)
                    }
                    _ => {
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
        if ctx.record.upstream_started.is_none() {
            ctx.record.upstream_started = Some(Instant::now());
        }
        if let Some(peer) = ctx.peer.take() {
            return Ok(peer);
        }
        let origin = ctx
            .origin
            .and_then(|i| ctx.generation.origins.get(i))
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
        // Counted; the deciding step is set only if proxying fails in the end.
        Self::count_upstream_error(ctx, &e);
        // Nothing was sent yet, so trying the next upstream is safe for any method.
        let upstreams = ctx
            .origin
            .and_then(|i| ctx.generation.origins.get(i))
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
        headers::add_forwarding(session, upstream, &ctx.request_id, ctx.trusted_peer)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::clean_response(resp);
        resp.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(trace) = self.trace(ctx) {
            resp.insert_header(record::TRACE, trace)?;
        }
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
        if !respond::is_connect_error(e) {
            Self::count_upstream_error(ctx, e);
        }
        ctx.record.decided = match (respond::upstream_error_kind(e), ctx.origin) {
            (Some(kind), Some(origin)) => Decided::UpstreamFailed { origin, kind },
            _ => Decided::Rejected {
                code: rejection.code(),
                auth: false,
            },
        };
        let error_code = rejection.status();
        let trace = self.trace(ctx);
        // Pingora does not reuse a client connection once proxying to the upstream has failed;
        // say so in the answer instead of advertising keep-alive.
        session.set_keepalive(None);
        if session.response_written().is_none()
            && let Err(write_error) =
                respond::write(session, &rejection, &ctx.request_id, trace.as_deref()).await
        {
            tracing::debug!(error = %write_error, "could not write error response");
        }
        tracing::debug!(error = %e, status = error_code, "request failed");
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map(|r| r.status.as_u16());
        ctx.record.finish(
            &ctx.generation,
            session.req_header(),
            &ctx.request_id,
            status,
        );
    }

    /// A client that hangs up before its answer is not a gateway fault (a load generator stopping
    /// mid-request logged one error line per connection): logged at debug by `fail_to_proxy`.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        e.esource == ErrorSource::Downstream && e.etype == ErrorType::ConnectionClosed
    }
}

impl Gateway {
    /// Count an upstream failure: each failed connect attempt, or the failure that ended proxying.
    fn count_upstream_error(ctx: &RequestCtx, e: &Error) {
        let Some(kind) = respond::upstream_error_kind(e) else {
            return;
        };
        let Some(origin) = ctx.origin else {
            return;
        };
        let name = ctx
            .generation
            .origins
            .get(origin)
            .map_or("", |o| o.name.as_str());
        crate::metrics::get()
            .upstream_errors
            .with_label_values(&[name, kind])
            .inc();
    }
}
