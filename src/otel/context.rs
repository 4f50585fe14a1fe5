//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): `traceparent` and `tracestate`
//! read strictly, and the gateway's own `traceparent` written for the origin.
//!
//! A malformed `traceparent` (or more than one) is ignored: the gateway starts a new trace. A
//! `tracestate` is kept only beside a valid `traceparent`, and dropped whole when any of its
//! members is malformed, a key repeats, or it has more than 32 members or 512 characters.

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use pingora::http::RequestHeader;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Most `tracestate` members (the specification's limit).
const MAX_STATE_MEMBERS: usize = 32;
/// Longest `tracestate` kept, all members together (what the specification asks to propagate).
const MAX_STATE_LEN: usize = 512;

/// A valid incoming `traceparent`, with the `tracestate` that came with it (if valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
    /// Validated members, in order.
    pub state: Vec<(String, String)>,
}

/// The request's trace context, if it carries a valid one.
pub fn incoming(req: &RequestHeader) -> Option<Incoming> {
    let mut parents = req.headers.get_all(TRACEPARENT).iter();
    let (Some(value), None) = (parents.next(), parents.next()) else {
        return None;
    };
    let (trace_id, parent_id, flags) = parse_traceparent(value.as_bytes())?;
    let mut state_lists = Vec::new();
    for value in req.headers.get_all(TRACESTATE) {
        state_lists.push(value.as_bytes());
    }
    Some(Incoming {
        trace_id,
        parent_id,
        sampled: flags & 1 == 1,
        state: parse_tracestate(&state_lists).unwrap_or_default(),
    })
}

/// `version-traceid-parentid-flags`. Version `00` is exactly 55 characters; a later version is at
/// least that, with a `-` after the flags when longer, and is read as version `00`; `ff` is
/// invalid. Hex is lower case; an all-zero trace or parent id is invalid.
pub fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    if value.len() < 55 {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    match version {
        0xff => return None,
        0x00 if value.len() != 55 => return None,
        0x00 => {}
        _ if value.len() > 55 && value[55] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace = [0u8; 16];
    for (i, byte) in trace.iter_mut().enumerate() {
        *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
    }
    let mut parent = [0u8; 8];
    for (i, byte) in parent.iter_mut().enumerate() {
        *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&value[53..55])?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((
        TraceId::from_bytes(trace),
        SpanId::from_bytes(parent),
        flags,
    ))
}

/// Two lower-case hex digits.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// The members of every `tracestate` field, in order; `None` when any is malformed.
pub fn parse_tracestate(fields: &[&[u8]]) -> Option<Vec<(String, String)>> {
    let total: usize = fields.iter().map(|f| f.len()).sum::<usize>() + fields.len();
    if total > MAX_STATE_LEN + 1 {
        return None;
    }
    let mut members: Vec<(String, String)> = Vec::new();
    for field in fields {
        let text = std::str::from_utf8(field).ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, value) = member.split_once('=')?;
            if !valid_key(key) || !valid_value(value) || members.iter().any(|(k, _)| k == key) {
                return None;
            }
            members.push((key.to_string(), value.to_string()));
            if members.len() > MAX_STATE_MEMBERS {
                return None;
            }
        }
    }
    Some(members)
}

/// `simple-key` or `tenant-id@system-id`.
fn valid_key(key: &str) -> bool {
    let rest_ok = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(&c))
    };
    match key.split_once('@') {
        None => {
            key.len() <= 256
                && key.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
                && rest_ok(key)
        }
        Some((tenant, system)) => {
            let tenant_first = tenant.as_bytes().first();
            let system_first = system.as_bytes().first();
            (1..=241).contains(&tenant.len())
                && tenant_first.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && rest_ok(tenant)
                && (1..=14).contains(&system.len())
                && system_first.is_some_and(u8::is_ascii_lowercase)
                && rest_ok(system)
        }
    }
}

/// 1 to 256 printable characters but `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// The `traceparent` the origin receives: version 00, the gateway's span as parent, and the
/// gateway's sampling decision.
pub fn traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &trace_id.to_bytes());
    out.push('-');
    push_hex(&mut out, &span_id.to_bytes());
    out.push('-');
    push_hex(&mut out, &[flags.to_u8()]);
    out
}

/// Lower-case hex, two digits a byte.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// A `tracestate` value from its members.
pub fn tracestate(members: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

#[cfg(test)]
mod tests;
