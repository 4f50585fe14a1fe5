//! OpenTelemetry traces: W3C Trace Context at the trust boundary (`context`), a per-request
//! recorder the request path feeds ([`RequestTrace`]), the keep-or-drop decision made when the
//! request ends (`sampling`), spans written as OTLP protobuf from what was recorded (`spans`,
//! `wire`), and OTLP/HTTP export on a thread of its own that drops rather than waits (`export`).
//!
//! Nothing here runs unless `[tracing]` is in the configuration. With it, every request gets a
//! trace id and the origin a `traceparent` naming the gateway's upstream span; the spans of a
//! request are built only when it is kept.

pub mod context;
mod export;
mod sampling;
mod spans;
mod wire;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use pingora::http::RequestHeader;

use crate::config::{TraceTrust, TracingConfig};
use crate::error::Error;
use context::Incoming;

/// A generation's tracer: its settings, id source, sampler state and export queue.
pub struct Tracer {
    config: TracingConfig,
    ids: RandomIdGenerator,
    sampler: sampling::Sampler,
    queue: export::Queue,
}

impl Tracer {
    /// The tracer of `[tracing]`, its export thread started; `None` when tracing is off.
    pub fn build(config: Option<&TracingConfig>) -> Result<Option<Arc<Tracer>>, Error> {
        let Some(config) = config.filter(|c| c.enabled) else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Tracer {
            config: config.clone(),
            ids: RandomIdGenerator::default(),
            sampler: sampling::Sampler::new(config),
            queue: export::Queue::start(config)?,
        })))
    }

    /// A request's trace: a new trace, or the incoming one continued when its sender is trusted
    /// (`trust_incoming`). An untrusted sender's valid context is kept only as a link.
    pub fn begin(&self, req: &RequestHeader, trusted_peer: bool, started: Instant) -> RequestTrace {
        let incoming = context::incoming(req);
        let trusted = match self.config.trust_incoming {
            TraceTrust::Always => true,
            TraceTrust::Never => false,
            TraceTrust::TrustedProxies => trusted_peer,
        };
        let (trace_id, parent, link) = match incoming {
            Some(incoming) if trusted => (incoming.trace_id, Some(incoming), None),
            Some(incoming) => (self.ids.new_trace_id(), None, Some(incoming)),
            None => (self.ids.new_trace_id(), None, None),
        };
        RequestTrace {
            trace_id,
            span_id: self.ids.new_span_id(),
            parent,
            link,
            head: None,
            started,
            client: None,
            issuer: None,
            steps: Vec::new(),
            pending: Vec::new(),
            attempts: Vec::new(),
        }
    }

    /// The sampler's first decision for this request (made once): a trusted parent's flag, else
    /// the route's ratio or `sample_ratio`.
    pub fn head_sampled(&self, trace: &mut RequestTrace, route_ratio: Option<f64>) -> bool {
        *trace.head.get_or_insert_with(|| match &trace.parent {
            Some(parent) => parent.sampled,
            None => sampling::ratio_keeps(
                trace.trace_id,
                route_ratio.unwrap_or(self.config.sample_ratio),
            ),
        })
    }

    /// Send the spans queued so far, waiting at most `limit` (the process is about to exit).
    pub fn flush(&self, limit: Duration) -> bool {
        let limit = limit.min(Duration::from_millis(self.config.export_timeout_ms));
        self.queue.flush(limit)
    }

    /// A new span id, for an upstream attempt.
    pub fn new_span_id(&self) -> SpanId {
        self.ids.new_span_id()
    }

    /// The request has ended: keep its trace or not (`outcome` is all that takes), and only when
    /// it is kept, ask `describe` for the rest and queue its spans.
    pub fn finish<'a>(
        &self,
        mut trace: RequestTrace,
        outcome: Ended,
        describe: impl FnOnce() -> spans::End<'a>,
    ) {
        let head = self.head_sampled(&mut trace, outcome.route_ratio);
        let slow = self
            .config
            .slow_ms
            .is_some_and(|ms| trace.started.elapsed() >= Duration::from_millis(ms));
        let kept = self
            .sampler
            .decide(head, outcome.failed, outcome.rejected, slow);
        if kept.is_kept() {
            let end = describe();
            let mut spans = Vec::with_capacity(SPANS_BYTES);
            let count = spans::build(
                &trace,
                &end,
                outcome.failed,
                || self.ids.new_span_id(),
                &mut spans,
            );
            self.queue.push(spans, count);
        }
    }
}

/// Room for a request's spans, written at once: a forwarded request takes about 1.1 KiB.
const SPANS_BYTES: usize = 2048;

/// How a request ended, as far as keeping its trace goes.
pub struct Ended {
    pub route_ratio: Option<f64>,
    /// The gateway's or the upstream's failure (a 5xx, or no answer).
    pub failed: bool,
    /// The gateway refused the request (a 4xx of its own).
    pub rejected: bool,
}

/// What one request's trace records while it runs; its spans are built only if it is kept.
pub struct RequestTrace {
    pub trace_id: TraceId,
    /// The gateway's server span.
    pub span_id: SpanId,
    /// A trusted sender's context: the parent of the server span.
    parent: Option<Incoming>,
    /// An untrusted sender's context, recorded as a link.
    link: Option<Incoming>,
    head: Option<bool>,
    started: Instant,
    client: Option<IpAddr>,
    /// The verifying issuer's index, named when the spans are built.
    issuer: Option<usize>,
    steps: Vec<Step>,
    /// Spans recorded while a step runs, made its children when it ends.
    pending: Vec<Step>,
    attempts: Vec<Attempt>,
}

/// A step of the request path that ran: a child span of the server span, with spans of its own
/// (a policy call within the policies step).
struct Step {
    name: Cow<'static, str>,
    start: Instant,
    end: Instant,
    /// `edgewarden.outcome`.
    outcome: &'static str,
    /// One more attribute: the refusing limit, the deciding policy.
    detail: Option<(&'static str, Arc<str>)>,
    attributes: Vec<(&'static str, Value)>,
    events: Vec<Event>,
    children: Vec<Step>,
}

/// Something that happened within a step (a policy's `log` line).
struct Event {
    name: &'static str,
    at: Instant,
    attributes: Vec<(&'static str, Value)>,
}

/// One attempt to reach an upstream: a client span.
struct Attempt {
    span_id: SpanId,
    start: Instant,
    address: Option<SocketAddr>,
    connected: Option<(Instant, bool)>,
    end: Option<Instant>,
    status: Option<u16>,
    error: Option<&'static str>,
}

impl RequestTrace {
    /// The client's address, as the gateway reads it (after `trusted_proxies`).
    pub fn set_client(&mut self, ip: Option<IpAddr>) {
        self.client = ip;
    }

    /// A step that ran from `start` until now, its outcome (`passed`, or the code of the answer
    /// it gave) and one more attribute, with the policy calls made meanwhile as children.
    pub fn step(
        &mut self,
        name: &'static str,
        start: Instant,
        outcome: &'static str,
        detail: Option<(&'static str, Arc<str>)>,
    ) {
        self.steps.push(Step {
            name: Cow::Borrowed(name),
            start,
            end: Instant::now(),
            outcome,
            detail,
            attributes: Vec::new(),
            events: Vec::new(),
            children: std::mem::take(&mut self.pending),
        });
    }

    /// The issuer (its index among the verifier's) that verified the token.
    pub fn set_issuer(&mut self, issuer: usize) {
        self.issuer = Some(issuer);
    }

    pub fn issuer(&self) -> Option<usize> {
        self.issuer
    }

    /// A span within the step under way (a policy's call), with log lines as events at its end;
    /// it becomes the step's child when the step ends.
    pub fn within_step(
        &mut self,
        name: String,
        (start, end): (Instant, Instant),
        outcome: &'static str,
        attributes: Vec<(&'static str, Value)>,
        logs: Vec<(&'static str, String)>,
    ) {
        let events = logs
            .into_iter()
            .map(|(level, message)| Event {
                name: "log",
                at: end,
                attributes: vec![
                    ("log.level", Value::from(level)),
                    ("log.message", Value::from(message)),
                ],
            })
            .collect();
        self.pending.push(Step {
            name: Cow::Owned(name),
            start,
            end,
            outcome,
            detail: None,
            attributes,
            events,
            children: Vec::new(),
        });
    }

    /// An attempt to reach `address` starts now (ending the one before it, if still open).
    pub fn attempt(&mut self, span_id: SpanId, address: Option<SocketAddr>) {
        let now = Instant::now();
        if let Some(previous) = self.attempts.last_mut() {
            previous.end.get_or_insert(now);
        }
        self.attempts.push(Attempt {
            span_id,
            start: now,
            address,
            connected: None,
            end: None,
            status: None,
            error: None,
        });
    }

    pub fn connected(&mut self, reused: bool) {
        if let Some(attempt) = self.attempts.last_mut() {
            attempt.connected = Some((Instant::now(), reused));
        }
    }

    pub fn upstream_status(&mut self, status: u16) {
        if let Some(attempt) = self.attempts.last_mut() {
            attempt.status = Some(status);
        }
    }

    /// The current attempt failed (`kind`: the upstream error's label).
    pub fn attempt_failed(&mut self, kind: &'static str) {
        if let Some(attempt) = self.attempts.last_mut() {
            attempt.error = Some(kind);
            attempt.end.get_or_insert_with(Instant::now);
        }
    }

    /// The span the origin's `traceparent` names: the current upstream attempt's.
    pub fn upstream_span(&self) -> SpanId {
        self.attempts.last().map_or(self.span_id, |a| a.span_id)
    }

    /// The `tracestate` to forward: a trusted parent's, else none.
    pub fn forwarded_state(&self) -> Option<String> {
        let parent = self.parent.as_ref()?;
        (!parent.state.is_empty()).then(|| context::tracestate(&parent.state))
    }
}

pub use spans::End;
pub use wire::Value;

/// Instants placed on the wall clock, from one reading of both clocks taken when the spans are
/// built (a request not kept never reads the wall clock).
struct Wall {
    now: SystemTime,
    at: Instant,
}

impl Wall {
    fn now() -> Wall {
        Wall {
            now: SystemTime::now(),
            at: Instant::now(),
        }
    }

    /// `instant` in nanoseconds since the Unix epoch.
    fn nanos(&self, instant: Instant) -> u64 {
        let at = self.now - self.at.saturating_duration_since(instant);
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn now_nanos(&self) -> u64 {
        self.nanos(self.at)
    }
}
