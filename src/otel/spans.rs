//! A kept request's spans, built from its [`RequestTrace`] when it ends: the server span named
//! `{method} {route}` with the HTTP semantic-convention attributes, a child span per step that
//! ran, and a client span per upstream attempt.

use std::borrow::Cow;
use std::sync::LazyLock;

use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::context::Incoming;
use super::{RequestTrace, Step, Wall};

/// What the request path knows when a request ends.
pub struct End<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub scheme: &'static str,
    pub host: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
    /// The route's name and `path_prefix`, when one matched.
    pub route: Option<(&'a str, &'a str)>,
    pub status: Option<u16>,
    /// The name of the issuer that verified the token.
    pub issuer: Option<&'a str>,
    /// Why, when the gateway answered itself or the upstream failed.
    pub reason: Option<&'static str>,
    /// The decision trace's summary of the deciding step.
    pub decision: String,
}

static SCOPE: LazyLock<InstrumentationScope> = LazyLock::new(|| {
    InstrumentationScope::builder("edgewarden")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
});

/// Every span of `trace`, the server span first.
/// `failed`: the gateway's or the upstream's failure (a 5xx, or no answer).
pub fn build(
    trace: &RequestTrace,
    end: &End<'_>,
    failed: bool,
    mut new_id: impl FnMut() -> SpanId,
) -> Vec<SpanData> {
    let scope = &*SCOPE;
    let wall = Wall::now();
    let state = match &trace.parent {
        Some(parent) => {
            TraceState::from_key_value(parent.state.iter().map(|(k, v)| (k, v))).unwrap_or_default()
        }
        None => TraceState::default(),
    };
    let context = |span_id| {
        SpanContext::new(
            trace.trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            state.clone(),
        )
    };
    let mut spans = Vec::with_capacity(1 + trace.steps.len() + trace.attempts.len());
    let name = match end.route {
        Some((_, prefix)) => format!("{} {prefix}", end.method),
        None => end.method.to_string(),
    };
    let mut links = SpanLinks::default();
    links.links = trace.link.iter().map(link).collect();
    let status = if failed {
        Status::error(end.reason.unwrap_or("error"))
    } else {
        Status::Unset
    };
    spans.push(SpanData {
        span_context: context(trace.span_id),
        parent_span_id: trace
            .parent
            .as_ref()
            .map_or(SpanId::INVALID, |p| p.parent_id),
        parent_span_is_remote: trace.parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(name),
        start_time: wall.of(trace.started),
        end_time: wall.now,
        attributes: server_attributes(trace, end, failed),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status,
        instrumentation_scope: scope.clone(),
    });
    let child =
        |parent, span_id, kind, name: Cow<'static, str>, start, end_at, attributes, events| {
            SpanData {
                span_context: context(span_id),
                parent_span_id: parent,
                parent_span_is_remote: false,
                span_kind: kind,
                name,
                start_time: wall.of(start),
                end_time: wall.of(end_at),
                attributes,
                dropped_attributes_count: 0,
                events,
                links: SpanLinks::default(),
                status: Status::Unset,
                instrumentation_scope: scope.clone(),
            }
        };
    let mut steps: Vec<(SpanId, &Step)> = trace.steps.iter().map(|s| (trace.span_id, s)).collect();
    while let Some((parent, step)) = steps.pop() {
        let span_id = new_id();
        let mut events = SpanEvents::default();
        events.events = step
            .events
            .iter()
            .map(|e| {
                opentelemetry::trace::Event::new(e.name, wall.of(e.at), e.attributes.clone(), 0)
            })
            .collect();
        let mut attributes = step.attributes.clone();
        if let Some((key, value)) = &step.detail {
            attributes.push(KeyValue::new(*key, value.to_string()));
        }
        if let (Some(issuer), "authenticate") = (end.issuer, &*step.name) {
            attributes.push(KeyValue::new("edgewarden.issuer", issuer.to_string()));
        }
        attributes.push(KeyValue::new("edgewarden.outcome", step.outcome));
        spans.push(child(
            parent,
            span_id,
            SpanKind::Internal,
            step.name.clone(),
            step.start,
            step.end,
            attributes,
            events,
        ));
        steps.extend(step.children.iter().map(|c| (span_id, c)));
    }
    for (resend, attempt) in trace.attempts.iter().enumerate() {
        let mut attributes = vec![KeyValue::new("http.request.method", end.method.to_string())];
        if let Some(address) = attempt.address {
            attributes.push(KeyValue::new("server.address", address.ip().to_string()));
            attributes.push(KeyValue::new("server.port", i64::from(address.port())));
        }
        if resend > 0 {
            attributes.push(KeyValue::new("http.request.resend_count", resend as i64));
        }
        if let Some(status) = attempt.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(error) = attempt.error {
            attributes.push(KeyValue::new("error.type", error));
        }
        let mut events = SpanEvents::default();
        if let Some((at, reused)) = attempt.connected {
            events.events.push(opentelemetry::trace::Event::new(
                "connected",
                wall.of(at),
                vec![
                    KeyValue::new("edgewarden.connection.reused", reused),
                    KeyValue::new(
                        "edgewarden.connect_us",
                        at.saturating_duration_since(attempt.start).as_micros() as i64,
                    ),
                ],
                0,
            ));
        }
        let mut span = child(
            trace.span_id,
            attempt.span_id,
            SpanKind::Client,
            Cow::Owned(end.method.to_string()),
            attempt.start,
            attempt.end.unwrap_or(wall.at),
            attributes,
            events,
        );
        if attempt.error.is_some() || attempt.status.is_some_and(|s| s >= 500) {
            span.status = Status::error(attempt.error.unwrap_or("upstream 5xx"));
        }
        spans.push(span);
    }
    spans
}

fn server_attributes(trace: &RequestTrace, end: &End<'_>, failed: bool) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("http.request.method", end.method.to_string()),
        KeyValue::new("url.path", end.path.to_string()),
        KeyValue::new("url.scheme", end.scheme),
        KeyValue::new("edgewarden.request_id", end.request_id.to_string()),
        KeyValue::new("edgewarden.decision", end.decision.clone()),
    ];
    if let Some((name, prefix)) = end.route {
        attributes.push(KeyValue::new("http.route", prefix.to_string()));
        attributes.push(KeyValue::new("edgewarden.route", name.to_string()));
    }
    if let Some(status) = end.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(ip) = trace.client {
        attributes.push(KeyValue::new("client.address", ip.to_string()));
    }
    if let Some(host) = end.host {
        attributes.push(KeyValue::new("server.address", host.to_string()));
    }
    if let Some(agent) = end.user_agent {
        attributes.push(KeyValue::new("user_agent.original", agent.to_string()));
    }
    if failed {
        let error = end.reason.map_or_else(
            || {
                end.status
                    .map_or("no_response".to_string(), |s| s.to_string())
            },
            str::to_string,
        );
        attributes.push(KeyValue::new("error.type", error));
    }
    attributes
}

/// An untrusted sender's context, as a link (never the parent).
fn link(incoming: &Incoming) -> Link {
    let flags = if incoming.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let context = SpanContext::new(
        incoming.trace_id,
        incoming.parent_id,
        flags,
        true,
        TraceState::default(),
    );
    Link::new(
        context,
        vec![KeyValue::new("edgewarden.link", "untrusted_parent")],
        0,
    )
}
