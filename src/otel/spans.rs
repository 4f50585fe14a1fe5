//! A kept request's spans, written as OTLP protobuf (`wire`) from its [`RequestTrace`] when it
//! ends: the server span named `{method} {route}` with the HTTP semantic-convention attributes, a
//! child span per step that ran, and a client span per upstream attempt.

use std::borrow::Cow;

use opentelemetry::trace::SpanId;

use super::context::Incoming;
use super::wire::{self, Kind, Value, span};
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

/// What every span of a request shares.
struct Common<'a> {
    trace_id: [u8; 16],
    state: &'a str,
    wall: Wall,
}

/// A span's fields before its attributes.
struct Head<'a> {
    span_id: SpanId,
    parent: Option<SpanId>,
    parent_remote: bool,
    kind: Kind,
    name: &'a str,
    start: u64,
    end: u64,
}

impl Common<'_> {
    fn head(&self, buf: &mut Vec<u8>, head: &Head<'_>) {
        wire::bytes(buf, span::TRACE_ID, &self.trace_id);
        wire::bytes(buf, span::SPAN_ID, &head.span_id.to_bytes());
        wire::string(buf, span::TRACE_STATE, self.state);
        if let Some(parent) = head.parent {
            wire::bytes(buf, span::PARENT_SPAN_ID, &parent.to_bytes());
        }
        wire::string(buf, span::NAME, head.name);
        wire::varint(buf, span::KIND, head.kind as u64);
        wire::fixed64(buf, span::START, head.start);
        wire::fixed64(buf, span::END, head.end);
        let remote = if head.parent_remote {
            wire::FLAG_IS_REMOTE
        } else {
            0
        };
        // Every kept span is sampled.
        wire::fixed32(buf, span::FLAGS, 1 | wire::FLAG_HAS_IS_REMOTE | remote);
    }
}

fn attr(buf: &mut Vec<u8>, key: &str, value: impl Into<Value>) {
    wire::attribute(buf, span::ATTRIBUTE, key, &value.into());
}

fn str_attr(buf: &mut Vec<u8>, key: &str, value: &str) {
    wire::str_attribute(buf, span::ATTRIBUTE, key, value);
}

fn error_status(buf: &mut Vec<u8>, message: &str) {
    wire::nested(buf, span::STATUS, |buf| {
        wire::string(buf, wire::status::MESSAGE, message);
        wire::varint(buf, wire::status::CODE, wire::status::ERROR);
    });
}

/// Write every span of `trace` into `out` (the server span first); returns how many.
/// `failed`: the gateway's or the upstream's failure (a 5xx, or no answer).
pub fn build(
    trace: &RequestTrace,
    end: &End<'_>,
    failed: bool,
    mut new_id: impl FnMut() -> SpanId,
    out: &mut Vec<u8>,
) -> u64 {
    let state = trace
        .parent
        .as_ref()
        .filter(|p| !p.state.is_empty())
        .map(|p| super::context::tracestate(&p.state));
    let common = Common {
        trace_id: trace.trace_id.to_bytes(),
        state: state.as_deref().unwrap_or(""),
        wall: Wall::now(),
    };
    let wall = &common.wall;
    let mut count = 1;
    wire::nested(out, wire::SCOPE_SPANS_SPAN, |buf| {
        let name = match end.route {
            Some((_, prefix)) => Cow::Owned(format!("{} {prefix}", end.method)),
            None => Cow::Borrowed(end.method),
        };
        common.head(
            buf,
            &Head {
                span_id: trace.span_id,
                parent: trace.parent.as_ref().map(|p| p.parent_id),
                parent_remote: trace.parent.is_some(),
                kind: Kind::Server,
                name: &name,
                start: wall.nanos(trace.started),
                end: wall.now_nanos(),
            },
        );
        server_attributes(buf, trace, end, failed);
        if let Some(incoming) = &trace.link {
            link(buf, incoming);
        }
        if failed {
            error_status(buf, end.reason.unwrap_or("error"));
        }
    });
    let mut steps: Vec<(SpanId, &Step)> = trace.steps.iter().map(|s| (trace.span_id, s)).collect();
    while let Some((parent, step)) = steps.pop() {
        let span_id = new_id();
        count += 1;
        wire::nested(out, wire::SCOPE_SPANS_SPAN, |buf| {
            common.head(
                buf,
                &Head {
                    span_id,
                    parent: Some(parent),
                    parent_remote: false,
                    kind: Kind::Internal,
                    name: &step.name,
                    start: wall.nanos(step.start),
                    end: wall.nanos(step.end),
                },
            );
            for (key, value) in &step.attributes {
                wire::attribute(buf, span::ATTRIBUTE, key, value);
            }
            if let Some((key, value)) = &step.detail {
                str_attr(buf, key, value);
            }
            if let (Some(issuer), "authenticate") = (end.issuer, &*step.name) {
                str_attr(buf, "edgewarden.issuer", issuer);
            }
            attr(buf, "edgewarden.outcome", step.outcome);
            for event in &step.events {
                wire::nested(buf, span::EVENT, |buf| {
                    wire::fixed64(buf, wire::event::TIME, wall.nanos(event.at));
                    wire::string(buf, wire::event::NAME, event.name);
                    for (key, value) in &event.attributes {
                        wire::attribute(buf, wire::event::ATTRIBUTE, key, value);
                    }
                });
            }
        });
        steps.extend(step.children.iter().map(|c| (span_id, c)));
    }
    for (resend, attempt) in trace.attempts.iter().enumerate() {
        count += 1;
        wire::nested(out, wire::SCOPE_SPANS_SPAN, |buf| {
            common.head(
                buf,
                &Head {
                    span_id: attempt.span_id,
                    parent: Some(trace.span_id),
                    parent_remote: false,
                    kind: Kind::Client,
                    name: end.method,
                    start: wall.nanos(attempt.start),
                    end: wall.nanos(attempt.end.unwrap_or(wall.at)),
                },
            );
            str_attr(buf, "http.request.method", end.method);
            if let Some(address) = attempt.address {
                attr(buf, "server.address", address.ip().to_string());
                attr(buf, "server.port", i64::from(address.port()));
            }
            if resend > 0 {
                attr(buf, "http.request.resend_count", resend as i64);
            }
            if let Some(status) = attempt.status {
                attr(buf, "http.response.status_code", i64::from(status));
            }
            if let Some(error) = attempt.error {
                attr(buf, "error.type", error);
            }
            if let Some((at, reused)) = attempt.connected {
                wire::nested(buf, span::EVENT, |buf| {
                    wire::fixed64(buf, wire::event::TIME, wall.nanos(at));
                    wire::string(buf, wire::event::NAME, "connected");
                    let connect_us = at.saturating_duration_since(attempt.start).as_micros();
                    let attributes = [
                        ("edgewarden.connection.reused", Value::Bool(reused)),
                        ("edgewarden.connect_us", Value::Int(connect_us as i64)),
                    ];
                    for (key, value) in &attributes {
                        wire::attribute(buf, wire::event::ATTRIBUTE, key, value);
                    }
                });
            }
            if attempt.error.is_some() || attempt.status.is_some_and(|s| s >= 500) {
                error_status(buf, attempt.error.unwrap_or("upstream 5xx"));
            }
        });
    }
    count
}

fn server_attributes(buf: &mut Vec<u8>, trace: &RequestTrace, end: &End<'_>, failed: bool) {
    str_attr(buf, "http.request.method", end.method);
    str_attr(buf, "url.path", end.path);
    attr(buf, "url.scheme", end.scheme);
    str_attr(buf, "edgewarden.request_id", end.request_id);
    str_attr(buf, "edgewarden.decision", &end.decision);
    if let Some((name, prefix)) = end.route {
        str_attr(buf, "http.route", prefix);
        str_attr(buf, "edgewarden.route", name);
    }
    if let Some(status) = end.status {
        attr(buf, "http.response.status_code", i64::from(status));
    }
    if let Some(ip) = trace.client {
        attr(buf, "client.address", ip.to_string());
    }
    if let Some(host) = end.host {
        str_attr(buf, "server.address", host);
    }
    if let Some(agent) = end.user_agent {
        str_attr(buf, "user_agent.original", agent);
    }
    if failed {
        match (end.reason, end.status) {
            (Some(reason), _) => attr(buf, "error.type", reason),
            (None, Some(status)) => attr(buf, "error.type", status.to_string()),
            (None, None) => attr(buf, "error.type", "no_response"),
        }
    }
}

/// An untrusted sender's context, as a link (never the parent).
fn link(buf: &mut Vec<u8>, incoming: &Incoming) {
    wire::nested(buf, span::LINK, |buf| {
        wire::bytes(buf, wire::link::TRACE_ID, &incoming.trace_id.to_bytes());
        wire::bytes(buf, wire::link::SPAN_ID, &incoming.parent_id.to_bytes());
        wire::attribute(
            buf,
            wire::link::ATTRIBUTE,
            "edgewarden.link",
            &Value::from("untrusted_parent"),
        );
        let sampled = u32::from(incoming.sampled);
        let flags = sampled | wire::FLAG_HAS_IS_REMOTE | wire::FLAG_IS_REMOTE;
        wire::fixed32(buf, wire::link::FLAGS, flags);
    });
}
