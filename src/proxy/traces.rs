//! The request path's side of OpenTelemetry tracing (`otel`): an upstream attempt's client span,
//! the `traceparent` the origin receives, and the request's spans handed over when it ends.

use pingora::Result;
use pingora::http::RequestHeader;
use pingora::prelude::{HttpPeer, Session};

use super::record::{Decided, Outcome};
use super::{Gateway, RequestCtx};
use crate::otel::context::{TRACEPARENT, TRACESTATE, traceparent};

/// `traceparent` and `tracestate` as header names, made at compile time.
const TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
const TRACESTATE_NAME: http::HeaderName = http::HeaderName::from_static(TRACESTATE);

impl Gateway {
    /// An attempt to reach `peer` starts: a new client span.
    pub(super) fn trace_attempt(&self, ctx: &mut RequestCtx, peer: &HttpPeer) {
        let (Some(trace), Some(tracer)) = (ctx.trace.as_deref_mut(), &ctx.generation.tracer) else {
            return;
        };
        let address = peer._address.as_inet().copied();
        trace.attempt(tracer.new_span_id(), address);
    }

    /// The origin receives the gateway's `traceparent` (its upstream span as parent, its sampling
    /// decision), and `tracestate` only from a trusted parent: what the client sent is replaced.
    pub(super) fn propagate_trace(
        &self,
        ctx: &mut RequestCtx,
        upstream: &mut RequestHeader,
    ) -> Result<()> {
        let (Some(trace), Some(tracer)) = (ctx.trace.as_deref_mut(), &ctx.generation.tracer) else {
            return Ok(());
        };
        let ratio = ctx
            .record
            .route
            .and_then(|id| ctx.generation.route(id).config.trace_sample_ratio);
        let sampled = tracer.head_sampled(trace, ratio);
        let parent = traceparent(trace.trace_id, trace.upstream_span(), sampled);
        upstream.insert_header(TRACEPARENT_NAME, parent)?;
        match trace.forwarded_state() {
            Some(state) => upstream.insert_header(TRACESTATE_NAME, state)?,
            None => {
                upstream.remove_header(TRACESTATE);
            }
        }
        Ok(())
    }

    /// The request has ended: the tracer keeps its trace or not.
    pub(super) fn finish_trace(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        trace: crate::otel::RequestTrace,
        status: Option<u16>,
    ) {
        let Some(tracer) = &ctx.generation.tracer else {
            return;
        };
        let route = ctx.record.route.map(|id| ctx.generation.route(id));
        let outcome = ctx.record.outcome(status);
        let ended = crate::otel::Ended {
            route_ratio: route.and_then(|r| r.config.trace_sample_ratio),
            failed: outcome == Outcome::Error,
            rejected: outcome == Outcome::Rejected,
        };
        let issuer = trace.issuer();
        tracer.finish(trace, ended, || {
            let req = session.req_header();
            let reason = match &ctx.record.decided {
                Decided::Rejected { code, .. } => Some(*code),
                Decided::Limited { .. } => Some("rate_limited"),
                Decided::PolicyFailed { why, .. } => Some(why.label()),
                Decided::UpstreamFailed { kind, .. } => Some(kind.label()),
                _ => None,
            };
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            let header = |name| req.headers.get(name).and_then(|v| v.to_str().ok());
            let issuer = issuer
                .and_then(|i| ctx.generation.auth.verifier.issuers.get(i))
                .map(|i| i.config.name.as_str());
            crate::otel::End {
                method: req.method.as_str(),
                path: req.uri.path(),
                scheme: if tls { "https" } else { "http" },
                host: header(http::header::HOST).or_else(|| req.uri.host()),
                user_agent: header(http::header::USER_AGENT),
                request_id: &ctx.request_id,
                route: route.map(|r| (r.config.name.as_str(), r.config.path_prefix.as_str())),
                status,
                issuer,
                reason,
                decision: ctx.record.trace_value(&ctx.generation),
            }
        });
    }
}
