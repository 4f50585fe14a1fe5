//! The request path's steps, in the order of the README's diagram: begin → framing → canonical
//! request → route (and CORS) → request limits → client → shield → authenticate → limits → country → policies → upstream. Each step either lets
//! the request go on or stops it with an [`Answer`], which `request_filter` writes (and records)
//! in one place.

use std::sync::Arc;
use std::time::Instant;

use pingora::prelude::Session;

use super::respond::Rejection;
use super::{Gateway, RequestCtx, headers, record};
use crate::auth::error::AuthError;
use crate::auth::verify::Identity;
use crate::config::AuthMode;
use crate::cors::{self, Grant};
use crate::generation::{Generation, Route};
use crate::geo::{Client, Country};
use crate::owned;
use crate::plugins::{self, Failure, Outcome, PolicyAnswer};
use crate::proxy::record::Decided;
use crate::routing::RouteMatch;
use crate::target::{self, RoutePath, TargetError};

/// Why the gateway answers a request itself instead of forwarding it.
pub(super) enum Answer {
    Reject(Rejection),
    /// A policy answered (already validated: status, headers, body size).
    Policy {
        policy: Arc<str>,
        answer: PolicyAnswer,
    },
    /// A policy failed and its policy says `on_error = "deny"`.
    PolicyFailed {
        policy: Arc<str>,
        why: Failure,
    },
}

impl From<Rejection> for Answer {
    fn from(rejection: Rejection) -> Answer {
        Answer::Reject(rejection)
    }
}

impl Answer {
    /// The answer's code: the rejection's, or what the policy did.
    fn code(&self) -> &'static str {
        match self {
            Answer::Reject(rejection) => rejection.code(),
            Answer::Policy { .. } => "responded",
            Answer::PolicyFailed { why, .. } => why.label(),
        }
    }

    /// The decision to record for this answer.
    pub(super) fn decided(&self) -> Decided {
        match self {
            Answer::Reject(Rejection::Limited(refusal)) => Decided::Limited {
                limit: refusal.limit.clone(),
                stage: refusal.stage,
            },
            Answer::Reject(rejection) => Decided::Rejected {
                code: rejection.code(),
                auth: matches!(rejection, Rejection::Auth(..)),
            },
            Answer::Policy { policy, answer } => Decided::PolicyResponded {
                policy: policy.clone(),
                status: answer.status,
            },
            Answer::PolicyFailed { policy, why } => Decided::PolicyFailed {
                policy: policy.clone(),
                why: *why,
            },
        }
    }
}

type Step<T> = Result<T, Answer>;

/// When the request is traced, the time a step starts.
fn clock(ctx: &RequestCtx) -> Option<Instant> {
    ctx.trace.as_ref().map(|_| Instant::now())
}

/// A step that ran since `start`, as a span of the request's trace: its outcome (`passed`, or
/// the code of the answer it gave), and the limit or policy that decided, or what `detail` takes
/// from its result.
fn traced<T>(
    ctx: &mut RequestCtx,
    name: &'static str,
    start: Option<Instant>,
    result: &Step<T>,
    detail: impl FnOnce(&T) -> Option<(&'static str, Arc<str>)>,
) {
    let (Some(trace), Some(start)) = (ctx.trace.as_deref_mut(), start) else {
        return;
    };
    let (outcome, detail) = match result {
        Ok(value) => ("passed", detail(value)),
        Err(answer @ Answer::Reject(Rejection::Limited(refusal))) => (
            answer.code(),
            Some(("edgewarden.limit", refusal.limit.clone())),
        ),
        Err(answer @ (Answer::Policy { policy, .. } | Answer::PolicyFailed { policy, .. })) => {
            (answer.code(), Some(("edgewarden.policy", policy.clone())))
        }
        Err(answer) => (answer.code(), None),
    };
    trace.step(name, start, outcome, detail);
}

impl Gateway {
    /// Run every step; `Ok`: forward to the upstream chosen in `ctx`.
    pub(super) async fn decide(&self, session: &mut Session, ctx: &mut RequestCtx) -> Step<()> {
        let generation = ctx.generation.clone();
        let generation = &*generation;
        self.begin(session, ctx, generation);
        if headers::framing_is_ambiguous(session) {
            // Content-Length with Transfer-Encoding, or several Host fields.
            return Err(Rejection::AmbiguousFraming.into());
        }
        let canonical = canonical_request(session, generation)?;
        let route = route(session, ctx, generation, &canonical)?;
        if route.config.request_limits.any() {
            request_limits(session, ctx, route)?;
        }
        let client = client(session, ctx, generation);
        let start = clock(ctx);
        let shielded = shield(ctx, generation, route, &client).await;
        traced(ctx, "shield", start, &shielded, |_| None);
        shielded?;
        let start = (route.auth.mode != AuthMode::Off)
            .then(|| clock(ctx))
            .flatten();
        let identity = authenticate(session, ctx, generation, route, &client).await;
        if let (Some(trace), Ok(Some(identity))) = (ctx.trace.as_deref_mut(), &identity) {
            trace.set_issuer(identity.issuer);
        }
        traced(ctx, "authenticate", start, &identity, |_| None);
        let identity = identity?;
        let start = clock(ctx);
        let limited = limits(session, ctx, generation, route, identity.as_ref()).await;
        traced(ctx, "limits", start, &limited, |_| None);
        limited?;
        let country = country(session, ctx, generation, &client)?;
        let start = (!route.policies.is_empty()).then(|| clock(ctx)).flatten();
        let chosen_by = policies(session, ctx, generation, route, &client, identity, country).await;
        traced(ctx, "policies", start, &chosen_by, |chosen| {
            chosen.clone().map(|p| ("edgewarden.policy", p))
        });
        choose_upstream(ctx, generation, chosen_by?)
    }

    /// The request id, whether the peer is a trusted proxy, drain mode, whether the decision trace
    /// was asked for, and the request's OpenTelemetry trace when `[tracing]` is on.
    fn begin(&self, session: &mut Session, ctx: &mut RequestCtx, generation: &Generation) {
        ctx.request_id = headers::request_id(session.req_header());
        let peer = session.client_addr().and_then(|a| a.as_inet());
        ctx.trusted_peer = peer.is_some_and(|a| generation.geo.is_trusted(a.ip().to_canonical()));
        if let Some(tracer) = &generation.tracer {
            let trace = tracer.begin(session.req_header(), ctx.trusted_peer, ctx.record.started);
            ctx.trace = Some(Box::new(trace));
        }
        if self.draining.is_on() {
            // Clients move to another replica after this answer.
            session.set_keepalive(None);
        }
        if session.req_header().headers.contains_key(owned::TRACE_KEY) {
            ctx.record.trace = record::has_trace_key(
                session.req_header(),
                generation.config.server.trace_secret.as_deref(),
            );
            session.req_header_mut().remove_header(&owned::TRACE_KEY);
        }
    }
}

/// The host and target made canonical (`target`), then the headers the gateway owns made final
/// (`owned`): everything after reads, and the origin receives, this one form.
fn canonical_request(session: &mut Session, generation: &Generation) -> Step<RoutePath> {
    let req = session.req_header_mut();
    let canonical = match target::canonicalise(req) {
        Ok(Some(canonical)) => canonical,
        // `OPTIONS *` asks about the server: the gateway answers.
        Ok(None) => return Err(Rejection::ServerOptions.into()),
        Err(e) => return Err(Rejection::Target(e).into()),
    };
    owned::apply_connection_nominations(req).map_err(|_| Rejection::AmbiguousHeaders)?;
    generation.owned.strip_aliases(req);
    Ok(canonical)
}

/// Host, then longest prefix, then method (404 / 405); `;` parameters only where allowed.
fn route<'g>(
    session: &Session,
    ctx: &mut RequestCtx,
    generation: &'g Generation,
    canonical: &RoutePath,
) -> Step<&'g Route> {
    let req = session.req_header();
    let host = canonical.host.as_deref();
    // A CORS preflight is answered for the route that would serve the request it asks about,
    // before authentication (browsers send it without credentials); on other routes it is an
    // OPTIONS like any other.
    if let Some(asked) = cors::preflight_method(req)
        && let RouteMatch::Found(id) = generation.router.find(host, &canonical.path, &asked)
        && let Some(cors) = &generation.route(id).cors
    {
        ctx.record.route = Some(id);
        let grant = cors.grant(req);
        let answer = match grant {
            Grant::Allowed(_) => Rejection::CorsPreflight,
            Grant::Denied => Rejection::CorsOriginNotAllowed,
        };
        ctx.cors = Some(grant);
        return Err(answer.into());
    }
    let route = match generation.router.find(host, &canonical.path, &req.method) {
        RouteMatch::Found(id) => generation.route(id),
        RouteMatch::MethodNotAllowed(allow) => {
            return Err(Rejection::MethodNotAllowed(allow).into());
        }
        RouteMatch::NotFound => return Err(Rejection::NoRoute.into()),
    };
    ctx.record.route = Some(route.id);
    if let Some(cors) = &route.cors {
        ctx.cors = Some(cors.grant(req));
    }
    if route.config.debug_trace {
        ctx.record.trace = true;
    }
    if canonical.has_parameters && !route.config.allow_path_parameters {
        return Err(Rejection::Target(TargetError::PathParameters).into());
    }
    ctx.origin = Some(route.origin);
    Ok(route)
}

/// The route's bounds on the request that its head decides (`limits::check_head`: 431, 413); a
/// chunked body's count and the body's deadline are kept for `request_body_filter`, which
/// enforces them while the body streams.
fn request_limits(session: &mut Session, ctx: &mut RequestCtx, route: &Route) -> Step<()> {
    let limits = &route.config.request_limits;
    super::limits::check_head(limits, session.req_header())?;
    ctx.body.limit = limits.max_body_bytes;
    if let Some(timeout) = limits.body_timeout
        && !session.as_downstream_mut().is_body_empty()
    {
        ctx.body.deadline = Some(Instant::now() + timeout);
        session.as_downstream_mut().set_read_timeout(Some(timeout));
    }
    Ok(())
}

/// Who the client is: the peer, or what a trusted proxy forwarded. Read before authentication
/// removes the reserved headers a trusted proxy may have set.
fn client(session: &Session, ctx: &mut RequestCtx, generation: &Generation) -> Client {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let client = generation.geo.client(peer, session.req_header());
    if let Some(trace) = ctx.trace.as_deref_mut() {
        trace.set_client(client.ip);
    }
    if generation.config.access_log.enabled {
        ctx.record.client_ip = client.ip;
    }
    client
}

/// The shield before the token is read: the penalty box, then the route's limits keyed by client
/// address or route (429).
async fn shield(
    ctx: &mut RequestCtx,
    generation: &Generation,
    route: &Route,
    client: &Client,
) -> Step<()> {
    generation
        .shield
        .before_auth(&route.shield, client.ip, &mut ctx.permits)
        .await
        .map_err(|refusal| Rejection::Limited(refusal).into())
}

/// The route's token check (401 / 403, RFC 6750), counted by reason; a signature check spends the
/// client address's verification budget, and a refused token counts toward its penalty box.
async fn authenticate(
    session: &mut Session,
    ctx: &mut RequestCtx,
    generation: &Generation,
    route: &Route,
    client: &Client,
) -> Step<Option<Identity>> {
    let started = generation.config.access_log.enabled.then(Instant::now);
    let budget = generation.shield.budget(&route.shield, client.ip);
    let authenticated = generation
        .auth
        .authenticate(session.req_header_mut(), &route.auth, &budget)
        .await;
    ctx.record.auth_time = started.map(|t| t.elapsed());
    authenticated.map_err(|e| {
        if let (AuthError::OverBudget, Some(refusal)) = (&e, budget.refusal()) {
            return Rejection::Limited(refusal).into();
        }
        if e.is_failed_token() {
            generation.shield.auth_failed(&route.shield, client.ip);
        }
        route.counters.auth_rejection(e.index(), e.reason());
        let scopes = match e {
            AuthError::InsufficientScope => route.auth.scopes.join(" "),
            _ => String::new(),
        };
        Rejection::Auth(e, scopes).into()
    })
}

/// The route's limits keyed by the verified token's claims or by header values (429).
async fn limits(
    session: &Session,
    ctx: &mut RequestCtx,
    generation: &Generation,
    route: &Route,
    identity: Option<&Identity>,
) -> Step<()> {
    let claims = identity.map(|i| &*i.claims);
    generation
        .shield
        .after_auth(
            &route.shield,
            claims,
            session.req_header(),
            &mut ctx.permits,
        )
        .await
        .map_err(|refusal| Rejection::Limited(refusal).into())
}

/// The client's country, set in `[geo] header` for the origin when known.
fn country(
    session: &mut Session,
    ctx: &mut RequestCtx,
    generation: &Generation,
    client: &Client,
) -> Step<Option<Country>> {
    let country = generation.geo.country(client);
    if generation.config.access_log.enabled {
        ctx.record.country = country;
    }
    if let (Some(name), Some(country)) = (generation.geo.header(), country) {
        session
            .req_header_mut()
            .insert_header(name.clone(), country.as_str())
            .map_err(|_| Rejection::Internal)?;
    }
    Ok(country)
}

/// The route's policies in order, after client copies of the headers they may set are removed;
/// returns the policy that chose the origin, if one did.
async fn policies(
    session: &mut Session,
    ctx: &mut RequestCtx,
    generation: &Generation,
    route: &Route,
    client: &Client,
    identity: Option<Identity>,
    country: Option<Country>,
) -> Step<Option<Arc<str>>> {
    if route.policies.is_empty() {
        return Ok(None);
    }
    if !route.policy_headers.is_empty() {
        // What the route's policies may set reaches the origin only from them.
        owned::remove_matching(&route.policy_headers, session.req_header_mut());
    }
    let plugin_ctx = plugins::Context::new(
        client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        &route.config.name,
        identity.as_ref().map(|i| &*i.claims),
        country.map(|c| c.as_str().to_string()),
        &generation.shield,
    );
    let started = generation.config.access_log.enabled.then(Instant::now);
    let mut calls = ctx.trace.as_ref().map(|_| Vec::new());
    let outcome = generation
        .plugins
        .run_observed(
            &route.policies,
            session.req_header_mut(),
            &plugin_ctx,
            calls.as_mut(),
        )
        .await;
    ctx.record.plugins_time = started.map(|t| t.elapsed());
    if let (Some(trace), Some(calls)) = (ctx.trace.as_deref_mut(), calls) {
        for call in calls {
            trace_policy_call(trace, call);
        }
    }
    match outcome {
        Outcome::Forward { origin: None, .. } => Ok(None),
        Outcome::Forward {
            origin: Some(origin),
            chosen_by,
            cached,
        } => {
            ctx.origin = Some(origin);
            ctx.record.policy_cached = cached;
            Ok(chosen_by)
        }
        Outcome::Respond {
            policy,
            answer,
            cached,
        } => {
            ctx.record.policy_cached = cached;
            Err(Answer::Policy { policy, answer })
        }
        Outcome::Failed { policy, why } => Err(Answer::PolicyFailed { policy, why }),
    }
}

/// An enforcing policy's call as a span of the policies step, `policy NAME`: its isolation,
/// outcome and running time, its `log` lines as events.
fn trace_policy_call(trace: &mut crate::otel::RequestTrace, call: plugins::ObservedCall) {
    use crate::otel::Value;
    let mut attributes = vec![
        ("edgewarden.policy", Value::from(call.policy.to_string())),
        ("edgewarden.policy.isolation", Value::from(call.isolation)),
    ];
    if call.cached {
        attributes.push(("edgewarden.policy.cached", Value::Bool(true)));
    }
    if let Some(ran) = call.facts.ran {
        attributes.push((
            "edgewarden.policy.cpu_us",
            Value::Int(ran.as_micros() as i64),
        ));
    }
    let name = format!("policy {}", call.policy);
    let span = (call.start, call.end);
    trace.within_step(name, span, call.outcome, attributes, call.facts.logs);
}

/// Choosing the upstream here lets "no healthy upstream" be answered like any other early
/// rejection, keeping the client connection; after Pingora has started on the upstream, any
/// failure closes it.
fn choose_upstream(
    ctx: &mut RequestCtx,
    generation: &Generation,
    chosen_by: Option<Arc<str>>,
) -> Step<()> {
    let Some(origin) = ctx.origin else {
        return Err(Rejection::NoHealthyUpstream.into());
    };
    let Some((upstream, peer)) = generation.origin(origin).select(0) else {
        return Err(Rejection::NoHealthyUpstream.into());
    };
    ctx.upstream.choose(upstream);
    ctx.peer = Some(peer);
    ctx.record.decided = Decided::Forwarded { origin, chosen_by };
    Ok(())
}
