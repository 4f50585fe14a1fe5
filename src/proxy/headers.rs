//! Header hygiene on both sides of the proxy: request framing checks, the request id, the forwarding fields, and hop-by-hop fields in upstream responses.
//!
//! Hop-by-hop request fields are removed by Pingora's upstream request policy, set in `origins`,
//! after `owned` has applied the client's `Connection` nominations; responses are cleaned here.

use std::fmt::Write as _;

use http::HeaderMap;
use http::header::{self, HeaderName};
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::Session;

use crate::owned::{REQUEST_ID, TRACE};
const MAX_REQUEST_ID_LEN: usize = 128;

/// Response fields that describe one connection, never the message.
/// Parsed once: removing by `&str` would parse each name again on every response.
const HOP_BY_HOP_RESPONSE: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
    header::UPGRADE,
];

/// The client's request id if it is a sane token, else a new one.
pub fn request_id(req: &RequestHeader) -> String {
    let mut values = req.headers.get_all(REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        let bytes = value.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if sane && let Ok(text) = value.to_str() {
            return text.to_string();
        }
    }
    // 32 lower-case hex digits, written without the formatting machinery.
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    uuid::Uuid::new_v4()
        .simple()
        .encode_lower(&mut buf)
        .to_owned()
}

/// Framing that two parsers could read differently. Pingora accepts Content-Length together with
/// Transfer-Encoding by dropping Content-Length (and closing afterwards); the gateway rejects such a
/// request instead, so it reads the raw header block when Transfer-Encoding is present. Several Host
/// fields are rejected too. Differing duplicate Content-Length values never get this far: Pingora
/// answers 400 itself.
pub fn framing_is_ambiguous(session: &Session) -> bool {
    let req = session.req_header();
    if req.headers.get_all(header::HOST).iter().count() > 1 {
        return true;
    }
    if !req.headers.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    let Some(h1) = session.as_downstream().as_http1() else {
        return false;
    };
    let raw = h1.get_headers_raw_bytes();
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"content-length")
    })
}

/// Append one hop to an `X-Forwarded-For` chain.
fn add_hop(chain: &mut String, hop: impl std::fmt::Display) {
    if !chain.is_empty() {
        chain.push_str(", ");
    }
    // Writing to a String cannot fail.
    let _ = write!(chain, "{hop}");
}

/// Forwarding fields an untrusted client may not set: whatever it sent is removed.
fn is_forwarding_field(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-forwarded-") || name == "forwarded" || name == "x-real-ip"
}

/// Fields the gateway adds on the way to the origin. From a trusted proxy (`trusted`) the
/// `X-Forwarded-For` and `Forwarded` chains are extended with the peer and `X-Real-IP` is kept;
/// from any other peer every forwarding field the client sent is replaced by the gateway's own.
pub fn add_forwarding(
    session: &Session,
    upstream: &mut RequestHeader,
    request_id: &str,
    trusted: bool,
) -> Result<()> {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let mut chain = String::new();
    if trusted {
        for previous in upstream.headers.get_all("x-forwarded-for") {
            if let Ok(previous) = previous.to_str() {
                add_hop(&mut chain, previous);
            }
        }
    } else {
        remove_forwarding_fields(upstream);
    }
    if let Some(ip) = peer {
        add_hop(&mut chain, ip);
    }
    upstream.remove_header("x-forwarded-for");
    if !chain.is_empty() {
        upstream.insert_header("x-forwarded-for", chain)?;
    }
    if trusted && let Some(ip) = peer {
        extend_forwarded(upstream, ip)?;
    }
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    upstream.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
    match forwarded_host(session) {
        Some(host) => upstream.insert_header("x-forwarded-host", host)?,
        None => {
            upstream.remove_header("x-forwarded-host");
        }
    }
    upstream.insert_header(REQUEST_ID, request_id)?;
    Ok(())
}

/// Every forwarding field a client sent (an untrusted peer speaks for nobody).
fn remove_forwarding_fields(upstream: &mut RequestHeader) {
    let sent: Vec<HeaderName> = upstream
        .headers
        .keys()
        .filter(|name| is_forwarding_field(name))
        .cloned()
        .collect();
    for name in sent {
        upstream.remove_header(&name);
    }
}

/// A trusted proxy's `Forwarded` chain (RFC 7239), extended with the peer; left out if it sent none.
fn extend_forwarded(upstream: &mut RequestHeader, peer: std::net::IpAddr) -> Result<()> {
    if !upstream.headers.contains_key(header::FORWARDED) {
        return Ok(());
    }
    let mut forwarded = String::new();
    for previous in upstream.headers.get_all(header::FORWARDED) {
        if let Ok(previous) = previous.to_str() {
            add_hop(&mut forwarded, previous);
        }
    }
    let hop = match peer {
        std::net::IpAddr::V4(v4) => format!("for={v4}"),
        std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    add_hop(&mut forwarded, hop);
    upstream.insert_header(header::FORWARDED, forwarded)
}

/// The host the client asked for: its `Host`, or the authority of an absolute-form target.
fn forwarded_host(session: &Session) -> Option<http::HeaderValue> {
    let req = session.req_header();
    req.headers.get(header::HOST).cloned().or_else(|| {
        req.uri
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
    })
}

/// Remove connection-scoped fields from an upstream response before it goes to the client.
/// A `101 Switching Protocols` answer keeps `Connection`/`Upgrade`, which it needs.
pub fn clean_response(resp: &mut ResponseHeader) {
    if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    for name in nominated(&resp.headers) {
        resp.remove_header(&name);
    }
    for name in &HOP_BY_HOP_RESPONSE {
        resp.remove_header(name);
    }
    // Only the gateway writes the decision trace.
    resp.remove_header(&TRACE);
}

/// Field names listed in `Connection` headers.
fn nominated(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| *name != header::TRANSFER_ENCODING && *name != header::CONTENT_LENGTH)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::request as req;

    #[test]
    fn request_id_keeps_sane_tokens_and_replaces_others() {
        assert_eq!(
            request_id(&req(&[("x-request-id", "abc-123_X.y:z")])),
            "abc-123_X.y:z"
        );
        for bad in ["", "has space", "a\"b", "<script>", &"x".repeat(129)] {
            let id = request_id(&req(&[("x-request-id", bad)]));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32, "{id}");
        }
        let two = request_id(&req(&[("x-request-id", "a"), ("x-request-id", "b")]));
        assert_eq!(two.len(), 32);
        assert_ne!(request_id(&req(&[])), request_id(&req(&[])));
    }

    #[test]
    fn response_cleaning_removes_hop_by_hop_and_nominated_fields() {
        let mut resp = ResponseHeader::build(200, None).expect("response");
        for (k, v) in [
            ("connection", "close, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("upgrade", "h2c"),
            ("x-kept", "1"),
        ] {
            resp.append_header(k, v).expect("header");
        }
        clean_response(&mut resp);
        let names: Vec<&str> = resp.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
