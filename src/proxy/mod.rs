//! The gateway's one `ProxyHttp` implementation: per-request context, access decisions in
//! `request_filter` (its steps in `steps`), origin selection, header hygiene, and error answers.

mod access_log;
mod headers;
pub mod limits;
pub mod record;
pub mod respond;
mod steps;
mod traces;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::cors::{Cors, Grant};
use crate::generation::{Current, Generation};
use crate::ids::OriginId;
use crate::owned;
use crate::shutdown::{Draining, InFlight, InFlightGuard};
use record::{Decided, Record};
use respond::Rejection;
use steps::Answer;

/// The proxy application.
pub struct Gateway {
    current: Current,
    in_flight: InFlight,
    draining: Draining,
    sampler: access_log::Sampler,
}

impl Gateway {
    pub fn new(current: Current, in_flight: InFlight, draining: Draining) -> Gateway {
        Gateway {
            current,
            in_flight,
            draining,
            sampler: access_log::Sampler::default(),
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    /// The generation this request is served from, start to end (a reload does not change it).
    generation: Arc<Generation>,
    request_id: String,
    /// The origin the request goes to: its route's, or one a policy chose.
    origin: Option<OriginId>,
    /// Upstream chosen while routing, used by the first connect attempt.
    peer: Option<Box<HttpPeer>>,
    /// The upstream of the current attempt, and those tried before it.
    upstream: Attempts,
    /// The peer is one of `trusted_proxies`: its forwarding chain is extended, not replaced.
    trusted_peer: bool,
    record: Record,
    /// Places taken in concurrency limits, given back when the request ends (with this context).
    permits: Vec<crate::shield::Permit>,
    /// What the request's `Origin` earned, on a route with `cors`.
    cors: Option<Grant>,
    /// The route's bounds on the body, enforced while it streams.
    body: BodyLimits,
    /// The request's OpenTelemetry trace, when `[tracing]` is on.
    trace: Option<Box<crate::otel::RequestTrace>>,
    _in_flight: InFlightGuard,
}

/// A body's bounds while it streams (`max_body_bytes`, `body_timeout_ms`), and how much of it
/// has been read (a request whose body has started is never tried again).
#[derive(Default)]
struct BodyLimits {
    limit: Option<u64>,
    read: u64,
    deadline: Option<Instant>,
}

/// The upstreams a request has been sent to, attempt by attempt.
#[derive(Default)]
struct Attempts {
    /// The upstream (its index in the origin) of the current attempt.
    current: Option<usize>,
    /// A bit per upstream index tried so far (indices from 64 on are not remembered).
    tried: u64,
    count: u32,
}

impl Attempts {
    fn choose(&mut self, index: usize) {
        self.current = Some(index);
        if index < 64 {
            self.tried |= 1 << index;
        }
        self.count += 1;
    }

    /// Distinct upstreams tried so far (of the first 64; those past them are not remembered).
    fn distinct(&self) -> u32 {
        self.tried.count_ones()
    }
}

impl RequestCtx {
    /// The route's CORS settings and the request's grant, on a route with `cors`.
    fn cors(&self) -> Option<(&Cors, &Grant)> {
        let grant = self.cors.as_ref()?;
        let cors = self.generation.route(self.record.route?).cors.as_ref()?;
        Some((cors, grant))
    }
}

impl Gateway {
    /// Write the gateway's own answer and record the decision.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        answer: Answer,
    ) -> Result<()> {
        ctx.record.decided = answer.decided();
        let trace = self.trace(ctx);
        let (id, trace, cors) = (&ctx.request_id, trace.as_deref(), ctx.cors());
        match answer {
            Answer::Reject(rejection) => {
                respond::write(session, &rejection, id, trace, cors).await?;
            }
            Answer::Policy { answer, .. } => {
                respond::write_plugin_answer(session, answer, id, trace, cors).await?;
            }
            Answer::PolicyFailed { .. } => {
                let rejection = Rejection::PolicyFailed;
                respond::write(session, &rejection, id, trace, cors).await?;
            }
        }
        Ok(())
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

    /// No downstream modules. Pingora's default adds a response-compression module, disabled,
    /// that is still set up and called for every request; the gateway compresses nothing (the
    /// origin's encoding passes through untouched).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            generation: self.current.load_full(),
            request_id: String::new(),
            origin: None,
            peer: None,
            upstream: Attempts::default(),
            trusted_peer: false,
            record: Record::new(),
            permits: Vec::new(),
            cors: None,
            body: BodyLimits::default(),
            trace: None,
            _in_flight: self.in_flight.enter(),
        }
    }

    /// The steps of `steps`, in the README's order; an early answer is written here, once.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.decide(session, ctx).await {
            Ok(()) => Ok(false),
            Err(answer) => {
                self.answer(session, ctx, answer).await?;
                Ok(true)
            }
        }
    }

    /// The route's body bounds, chunk by chunk: a chunk that would take the body past
    /// `max_body_bytes` is not sent (413), and a body still arriving at its deadline is cut (408);
    /// each read waits at most for what is left of the deadline.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let limits = &mut ctx.body;
        limits.read += body.as_ref().map_or(0, |b| b.len() as u64);
        if limits.limit.is_some_and(|limit| limits.read > limit) {
            return Err(respond::body_too_large());
        }
        if let Some(deadline) = limits.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(respond::body_timeout());
            }
            session.as_downstream_mut().set_read_timeout(Some(left));
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.record.upstream_started.is_none() {
            ctx.record.upstream_started = Some(Instant::now());
        }
        if let Some(peer) = ctx.peer.take() {
            self.trace_attempt(ctx, &peer);
            return Ok(peer);
        }
        let origin = ctx
            .generation
            .origin(ctx.origin.ok_or_else(respond::no_healthy_upstream)?);
        // A retry: an upstream not tried yet, else (a reused connection that was found dead) any.
        let (index, peer) = origin
            .select(ctx.upstream.tried)
            .or_else(|| origin.select(0))
            .ok_or_else(respond::no_healthy_upstream)?;
        ctx.upstream.choose(index);
        self.trace_attempt(ctx, &peer);
        Ok(peer)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(trace) = ctx.trace.as_deref_mut() {
            trace.connected(reused);
        }
        Ok(())
    }

    /// Nothing was sent yet, so the next untried upstream may have the request, whatever its
    /// method, while the origin's `retries` last.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Counted; the deciding step is set only if proxying fails in the end.
        Self::count_upstream_error(ctx, &e);
        let retry = self
            .attempt_failed(ctx, true)
            .is_some_and(|origin| ctx.upstream.distinct() < origin.upstream_count() as u32);
        e.set_retry(retry);
        self.count_retry(ctx, retry);
        e
    }

    /// A failure after the connection was made. Only a reused connection found dead (Pingora's
    /// `ReusedOnly`) is tried again, and only for an idempotent request with no body started and
    /// no answer begun: a request that may have reached the origin's application is not repeated.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        upstream_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer {peer}"));
        let upstream_side = respond::UpstreamErrorKind::of(&e).is_some();
        let may_retry = self.attempt_failed(ctx, upstream_side).is_some()
            && session.req_header().method.is_idempotent()
            && ctx.body.read == 0
            && session.response_written().is_none();
        if may_retry {
            e.retry.decide_reuse(upstream_reused);
        } else {
            e.set_retry(false);
        }
        self.count_retry(ctx, e.retry());
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::add_forwarding(session, upstream, &ctx.request_id, ctx.trusted_peer)?;
        self.propagate_trace(ctx, upstream)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(trace) = ctx.trace.as_deref_mut() {
            trace.upstream_status(resp.status.as_u16());
        }
        if let (Some(origin), Some(upstream)) = (ctx.origin, ctx.upstream.current) {
            let gateway_failure = matches!(resp.status.as_u16(), 502..=504);
            ctx.generation
                .origin(origin)
                .report(upstream, !gateway_failure);
        }
        headers::clean_response(resp);
        if let Some((cors, grant)) = ctx.cors() {
            cors.apply(resp, grant)?;
        }
        resp.insert_header(owned::REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(trace) = self.trace(ctx) {
            resp.insert_header(owned::TRACE, trace)?;
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
        let kind = respond::UpstreamErrorKind::of(e);
        if !kind.is_some_and(respond::UpstreamErrorKind::is_connect) {
            Self::count_upstream_error(ctx, e);
        }
        if kind.is_some() && session.response_written().is_some() {
            // The origin stopped mid-body: the client's response ends here, its connection
            // closed so the missing rest cannot be mistaken for a complete answer.
            Self::count(ctx, &crate::metrics::get().upstream_truncated);
        }
        ctx.record.decided = match (kind, ctx.origin) {
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
            && let Err(write_error) = respond::write(
                session,
                &rejection,
                &ctx.request_id,
                trace.as_deref(),
                ctx.cors(),
            )
            .await
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
        let trace_id = ctx.trace.as_ref().map(|t| t.trace_id);
        ctx.record.finish(
            &ctx.generation,
            &self.sampler,
            session.req_header(),
            &ctx.request_id,
            status,
            trace_id,
        );
        if let Some(trace) = ctx.trace.take() {
            self.finish_trace(session, ctx, *trace, status);
        }
    }

    /// A client that goes away before its answer is not a gateway fault: an HTTP/1 connection
    /// closed, an HTTP/2 stream reset or its connection dropped, a write to a client that is gone.
    /// A load generator stopping mid-run logged one error line per stream in flight. Such
    /// requests are in the access log (and logged at debug by `fail_to_proxy`); errors of the
    /// gateway's own or of the origin's are still logged.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        e.esource == ErrorSource::Downstream
            && matches!(
                e.etype,
                ErrorType::ConnectionClosed
                    | ErrorType::H2Error
                    | ErrorType::WriteError
                    | ErrorType::ReadError
            )
    }
}

impl Gateway {
    /// Count an upstream failure: each failed connect attempt, or the failure that ended proxying.
    fn count_upstream_error(ctx: &mut RequestCtx, e: &Error) {
        let Some(kind) = respond::UpstreamErrorKind::of(e) else {
            return;
        };
        if let Some(trace) = ctx.trace.as_deref_mut() {
            trace.attempt_failed(kind.label());
        }
        let Some(origin) = ctx.origin else {
            return;
        };
        let name = ctx.generation.origin(origin).name.as_str();
        crate::metrics::get()
            .upstream_errors
            .with_label_values(&[name, kind.label()])
            .inc();
    }

    /// Count one event of an origin-labelled counter.
    fn count(ctx: &RequestCtx, counter: &prometheus::IntCounterVec) {
        if let Some(origin) = ctx.origin {
            let name = ctx.generation.origin(origin).name.as_str();
            counter.with_label_values(&[name]).inc();
        }
    }

    /// An attempt failed: passive health hears of it when the upstream is to blame
    /// (`upstream_side`). Returns the origin when the request may still be tried again.
    fn attempt_failed<'c>(
        &self,
        ctx: &'c RequestCtx,
        upstream_side: bool,
    ) -> Option<&'c crate::origins::Origin> {
        let origin = ctx.generation.origin(ctx.origin?);
        if upstream_side && let Some(upstream) = ctx.upstream.current {
            origin.report(upstream, false);
        }
        (ctx.upstream.count <= origin.retries).then_some(origin)
    }

    fn count_retry(&self, ctx: &RequestCtx, retry: bool) {
        if retry {
            Self::count(ctx, &crate::metrics::get().upstream_retries);
        }
    }
}
