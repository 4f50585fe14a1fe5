//! OTLP messages written straight as protobuf, with `prost`'s encoding primitives and the field
//! numbers of `opentelemetry-proto` (`opentelemetry/proto/{trace,common,resource}/v1`).
//!
//! A kept request's spans are written into one buffer as they are built: no `SpanData`, no
//! per-attribute allocation, no second conversion on the export side. The export thread wraps
//! the buffers of a batch in one `ExportTraceServiceRequest` ([`request`]); the JSON protocol
//! decodes that with `opentelemetry-proto`'s own types and serialises them.

use std::borrow::Cow;

use prost::encoding::{WireType, encode_key, encode_varint};

/// `ScopeSpans.spans`: the field each span of a request is written as.
pub const SCOPE_SPANS_SPAN: u32 = 2;

/// `Span` fields.
pub mod span {
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const TRACE_STATE: u32 = 3;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START: u32 = 7;
    pub const END: u32 = 8;
    pub const ATTRIBUTE: u32 = 9;
    pub const EVENT: u32 = 11;
    pub const LINK: u32 = 13;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;
}

/// `Span.Event` fields.
pub mod event {
    pub const TIME: u32 = 1;
    pub const NAME: u32 = 2;
    pub const ATTRIBUTE: u32 = 3;
}

/// `Span.Link` fields.
pub mod link {
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const ATTRIBUTE: u32 = 4;
    pub const FLAGS: u32 = 6;
}

/// `Status` fields and its error code.
pub mod status {
    pub const MESSAGE: u32 = 2;
    pub const CODE: u32 = 3;
    pub const ERROR: u64 = 2;
}

/// `SpanFlags`: the context's remoteness is known (and, with the second bit, remote).
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
pub const FLAG_IS_REMOTE: u32 = 0x200;

/// `Span.SpanKind`.
#[derive(Clone, Copy)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(value: &'static str) -> Value {
        Value::Str(Cow::Borrowed(value))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Str(Cow::Owned(value))
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Bool(value)
    }
}

/// A length-delimited field whose body `write` puts in `buf`. The length goes in front once the
/// body is written: one byte is kept for it, and the body moves only when it needs more.
pub fn nested(buf: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    encode_key(field, WireType::LengthDelimited, buf);
    let at = buf.len();
    buf.push(0);
    write(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(4);
        encode_varint(len as u64, &mut prefix);
        buf.splice(at..=at, prefix);
    }
}

/// A string field (an empty one is the default, and left out).
pub fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        bytes(buf, field, value.as_bytes());
    }
}

pub fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

pub fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    encode_key(field, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

pub fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    encode_key(field, WireType::ThirtyTwoBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// A varint field (zero is the default, and left out).
pub fn varint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        encode_key(field, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

/// A `KeyValue` holding a string borrowed from the request, as field `field` of its message.
pub fn str_attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    attribute_with(buf, field, key, |buf| bytes(buf, 1, value.as_bytes()));
}

/// A `KeyValue` as field `field` of its message.
pub fn attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    attribute_with(buf, field, key, |buf| match value {
        Value::Str(s) => bytes(buf, 1, s.as_bytes()),
        Value::Bool(b) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Value::Int(i) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(*i as u64, buf);
        }
    });
}

/// A `KeyValue` whose `AnyValue` body `value` writes. `AnyValue` is a oneof: its one field is
/// written even when it holds the default.
fn attribute_with(buf: &mut Vec<u8>, field: u32, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
    nested(buf, field, |buf| {
        string(buf, 1, key);
        nested(buf, 2, value);
    });
}

/// The `ExportTraceServiceRequest` of one batch: one resource (`resource` attributes), one
/// instrumentation scope, and the spans already written by requests (`ScopeSpans.spans` fields).
pub fn request<'a>(
    resource: &[(&str, Value)],
    scope: (&str, &str),
    spans: impl IntoIterator<Item = &'a [u8]>,
    size: usize,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(size + 256);
    // ExportTraceServiceRequest.resource_spans
    nested(&mut buf, 1, |buf| {
        // ResourceSpans.resource
        nested(buf, 1, |buf| {
            for (key, value) in resource {
                attribute(buf, 1, key, value);
            }
        });
        // ResourceSpans.scope_spans
        nested(buf, 2, |buf| {
            // ScopeSpans.scope
            nested(buf, 1, |buf| {
                string(buf, 1, scope.0);
                string(buf, 2, scope.1);
            });
            for chunk in spans {
                buf.extend_from_slice(chunk);
            }
        });
    });
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use prost::Message;

    fn one_span(name: &str, attributes: &[(&str, Value)]) -> Vec<u8> {
        let mut buf = Vec::new();
        nested(&mut buf, SCOPE_SPANS_SPAN, |buf| {
            bytes(buf, span::TRACE_ID, &[7; 16]);
            bytes(buf, span::SPAN_ID, &[9; 8]);
            string(buf, span::NAME, name);
            varint(buf, span::KIND, Kind::Server as u64);
            fixed64(buf, span::START, 1_700_000_000_000_000_000);
            fixed64(buf, span::END, 1_700_000_000_000_000_123);
            for (key, value) in attributes {
                attribute(buf, span::ATTRIBUTE, key, value);
            }
            nested(buf, span::STATUS, |buf| {
                string(buf, status::MESSAGE, "upstream 5xx");
                varint(buf, status::CODE, status::ERROR);
            });
            fixed32(buf, span::FLAGS, 1 | FLAG_HAS_IS_REMOTE);
        });
        buf
    }

    #[test]
    fn what_is_written_decodes_as_the_otlp_messages() {
        let long = "x".repeat(300);
        let first = one_span(
            "GET /api",
            &[
                ("url.path", Value::from(long.clone())),
                ("http.response.status_code", Value::Int(503)),
                ("negative", Value::Int(-2)),
                ("reused", Value::Bool(false)),
                ("empty", Value::from("")),
            ],
        );
        let second = one_span("GET", &[]);
        let size = first.len() + second.len();
        let body = request(
            &[("service.name", Value::from("edgewarden"))],
            ("edgewarden", "1.2.3"),
            [first.as_slice(), second.as_slice()],
            size,
        );
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let resource_spans = &decoded.resource_spans[0];
        let resource = resource_spans.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let scope_spans = &resource_spans.scope_spans[0];
        let scope = scope_spans.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("edgewarden", "1.2.3")
        );
        assert_eq!(scope_spans.spans.len(), 2);
        let span = &scope_spans.spans[0];
        assert_eq!(span.trace_id, vec![7; 16]);
        assert_eq!(span.span_id, vec![9; 8]);
        assert_eq!(span.name, "GET /api");
        assert_eq!(span.kind, 2);
        assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 123);
        assert_eq!(span.flags, 0x101);
        let status = span.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "upstream 5xx"));
        let value = |i: usize| {
            span.attributes[i]
                .value
                .as_ref()
                .unwrap()
                .value
                .clone()
                .unwrap()
        };
        assert_eq!(value(0), any_value::Value::StringValue(long));
        assert_eq!(value(1), any_value::Value::IntValue(503));
        assert_eq!(value(2), any_value::Value::IntValue(-2));
        assert_eq!(value(3), any_value::Value::BoolValue(false));
        assert_eq!(value(4), any_value::Value::StringValue(String::new()));
        assert_eq!(scope_spans.spans[1].name, "GET");
    }
}
