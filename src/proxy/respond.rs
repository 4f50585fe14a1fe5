//! Responses the gateway writes itself, and the one place that maps a failure to an HTTP status and
//! a short, closed-set error code (later also the metric label).
//!
//! Every such response is a small JSON body `{"error": code, "message": ..., "request_id": ...}`
//! written with `write_response_header`, so the client connection stays alive where HTTP allows it
//! (Pingora's `respond_error` always sends `Connection: close`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, header};
use pingora::http::ResponseHeader;
use pingora::prelude::Session;
use pingora::{Error, ErrorSource, ErrorType, OrErr, Result};

use crate::auth::error::AuthError;
use crate::cors::{Cors, Grant};
use crate::plugins::PolicyAnswer;
use crate::shield::Refusal;
use crate::target::TargetError;

/// Largest unread request body the gateway drains to keep a connection alive after answering early;
/// anything larger (or of unknown length, or waiting on `Expect: 100-continue`) closes the
/// connection instead, so a rejected request's body can never be read as a next request.
const MAX_DRAIN_BYTES: usize = 64 * 1024;
/// How long the gateway waits for that small body to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// The methods `OPTIONS *` reports: what the gateway forwards at all (routes narrow it).
const SERVER_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Content-Length together with Transfer-Encoding, or several Host headers.
    AmbiguousFraming,
    /// A request target or host the gateway does not forward: not origin-form, or a path whose
    /// meaning depends on how the origin normalises it (see `target`).
    Target(TargetError),
    /// `Connection` nominates a field that frames or addresses the request.
    AmbiguousHeaders,
    /// `OPTIONS *`: answered by the gateway (204 with `Allow`), never forwarded.
    ServerOptions,
    NoRoute,
    /// The value is the `Allow` header.
    MethodNotAllowed(String),
    NoHealthyUpstream,
    UpstreamUnavailable,
    UpstreamTimeout,
    BadRequest,
    Internal,
    /// A policy plugin failed and its policy says `on_error = "deny"`.
    PolicyFailed,
    /// A token problem; the string is the route's required scopes for a 403 challenge.
    Auth(AuthError, String),
    /// The shield refused: a limit, the penalty box or the verification budget (429).
    Limited(Refusal),
    /// A CORS preflight from an allowed origin (204 with the route's `Access-Control-*` fields).
    CorsPreflight,
    /// A CORS preflight from an origin the route does not allow (403, no CORS fields).
    CorsOriginNotAllowed,
    /// The header fields are larger than the route's `max_header_bytes` (431).
    HeadersTooLarge,
    /// The body is larger than the route's `max_body_bytes`: declared, or counted while it
    /// streamed (413).
    BodyTooLarge,
    /// The body did not arrive within the route's `body_timeout_ms`, or stalled (408).
    BodyTimeout,
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::AmbiguousFraming
            | Rejection::Target(_)
            | Rejection::AmbiguousHeaders
            | Rejection::BadRequest => 400,
            Rejection::ServerOptions | Rejection::CorsPreflight => 204,
            Rejection::CorsOriginNotAllowed => 403,
            Rejection::HeadersTooLarge => 431,
            Rejection::BodyTooLarge => 413,
            Rejection::BodyTimeout => 408,
            Rejection::NoRoute => 404,
            Rejection::MethodNotAllowed(_) => 405,
            Rejection::Internal => 500,
            Rejection::PolicyFailed => 503,
            Rejection::UpstreamUnavailable => 502,
            Rejection::NoHealthyUpstream => 503,
            Rejection::UpstreamTimeout => 504,
            Rejection::Auth(e, _) => e.status(),
            Rejection::Limited(_) => 429,
        }
    }

    /// Stable, low-cardinality code: the JSON `error` field and the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::AmbiguousFraming => "ambiguous_framing",
            Rejection::Target(e) => e.code(),
            Rejection::AmbiguousHeaders => "ambiguous_headers",
            Rejection::ServerOptions => "server_options",
            Rejection::NoRoute => "no_route",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::NoHealthyUpstream => "no_healthy_upstream",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::BadRequest => "bad_request",
            Rejection::Internal => "internal_error",
            Rejection::PolicyFailed => "policy_failed",
            Rejection::Auth(e, _) => e.reason(),
            Rejection::Limited(_) => "rate_limited",
            Rejection::CorsPreflight => "cors_preflight",
            Rejection::CorsOriginNotAllowed => "cors_origin_not_allowed",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BodyTimeout => "body_timeout",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Rejection::AmbiguousFraming => "request framing is ambiguous",
            Rejection::Target(e) => e.description(),
            Rejection::AmbiguousHeaders => "Connection nominates a field that frames the request",
            Rejection::ServerOptions => "",
            Rejection::NoRoute => "no route for this host and path",
            Rejection::MethodNotAllowed(_) => "method not allowed on this route",
            Rejection::NoHealthyUpstream => "no healthy upstream for this route",
            Rejection::UpstreamUnavailable => "upstream is unavailable",
            Rejection::UpstreamTimeout => "upstream did not answer in time",
            Rejection::BadRequest => "malformed request",
            Rejection::Internal => "internal error",
            Rejection::PolicyFailed => "a policy could not decide",
            Rejection::Auth(e, _) => e.description(),
            Rejection::Limited(_) => "too many requests; retry after the time in Retry-After",
            Rejection::CorsPreflight => "",
            Rejection::CorsOriginNotAllowed => "this origin may not call this route from a browser",
            Rejection::HeadersTooLarge => "request header fields larger than this route allows",
            Rejection::BodyTooLarge => "request body larger than this route allows",
            Rejection::BodyTimeout => "request body did not arrive in time",
        }
    }

    /// Whether the connection must close after this answer whatever the request body looks like.
    fn must_close(&self) -> bool {
        matches!(
            self,
            Rejection::AmbiguousFraming
                | Rejection::AmbiguousHeaders
                | Rejection::BadRequest
                | Rejection::BodyTimeout
        )
    }

    /// Map a Pingora proxy failure. `None`: the client is gone, write nothing.
    pub fn from_proxy_error(e: &Error) -> Option<Rejection> {
        use ErrorType::*;
        match *e.etype() {
            NO_HEALTHY_UPSTREAM => return Some(Rejection::NoHealthyUpstream),
            BODY_TOO_LARGE => return Some(Rejection::BodyTooLarge),
            BODY_TIMEOUT => return Some(Rejection::BodyTimeout),
            _ => {}
        }
        Some(match (e.esource(), e.etype()) {
            (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => return None,
            // The client stopped sending its body (Pingora's idle read timeout, or what is left
            // of the route's body_timeout_ms).
            (ErrorSource::Downstream, ReadTimedout) => Rejection::BodyTimeout,
            (ErrorSource::Downstream, _) => Rejection::BadRequest,
            (_, ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout) => {
                Rejection::UpstreamTimeout
            }
            (ErrorSource::Upstream, _) => Rejection::UpstreamUnavailable,
            (_, InvalidHTTPHeader) => Rejection::BadRequest,
            _ => Rejection::Internal,
        })
    }
}

/// Why reaching or reading an upstream failed: the closed set of the `kind` label of
/// `edgewarden_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    ConnectTimeout,
    ConnectRefused,
    ConnectError,
    Tls,
    ReadTimeout,
    WriteTimeout,
    ReadError,
    WriteError,
    Protocol,
    Other,
}

impl UpstreamErrorKind {
    /// The kind of `e`; `None` for failures that are not about reaching or reading an upstream.
    pub fn of(e: &Error) -> Option<UpstreamErrorKind> {
        use ErrorType::*;
        use UpstreamErrorKind as Kind;
        // The client's side failing (gone, or too slow with its body) is not the upstream's.
        if e.esource() == &ErrorSource::Downstream {
            return None;
        }
        Some(match e.etype() {
            ConnectTimedout => Kind::ConnectTimeout,
            ConnectRefused => Kind::ConnectRefused,
            ConnectNoRoute | ConnectError | BindError | SocketError | ConnectProxyFailure => {
                Kind::ConnectError
            }
            TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => Kind::Tls,
            ReadTimedout => Kind::ReadTimeout,
            WriteTimedout => Kind::WriteTimeout,
            ReadError | ConnectionClosed => Kind::ReadError,
            WriteError => Kind::WriteError,
            InvalidHTTPHeader | H1Error | H2Error | InvalidH2 | H2Downgrade => Kind::Protocol,
            HTTPStatus(_) | Custom(_) => return None,
            _ if e.esource() == &ErrorSource::Upstream => Kind::Other,
            _ => return None,
        })
    }

    /// A failure to connect (counted by `fail_to_connect`, attempt by attempt).
    pub fn is_connect(self) -> bool {
        use UpstreamErrorKind as Kind;
        matches!(
            self,
            Kind::ConnectTimeout | Kind::ConnectRefused | Kind::ConnectError | Kind::Tls
        )
    }

    pub fn label(self) -> &'static str {
        use UpstreamErrorKind as Kind;
        match self {
            Kind::ConnectTimeout => "connect_timeout",
            Kind::ConnectRefused => "connect_refused",
            Kind::ConnectError => "connect_error",
            Kind::Tls => "tls",
            Kind::ReadTimeout => "read_timeout",
            Kind::WriteTimeout => "write_timeout",
            Kind::ReadError => "read_error",
            Kind::WriteError => "write_error",
            Kind::Protocol => "protocol",
            Kind::Other => "other",
        }
    }
}

/// Write `rejection` as the whole response, with the decision trace header when asked for and
/// the route's CORS fields on a route with `cors`. Returns the status written.
pub async fn write(
    session: &mut Session,
    rejection: &Rejection,
    request_id: &str,
    trace: Option<&str>,
    cors: Option<(&Cors, &Grant)>,
) -> Result<u16> {
    if rejection.must_close() || !drain_small_body(session).await {
        session.set_keepalive(None);
    }
    let status = rejection.status();
    let body = if status == 204 {
        Vec::new()
    } else {
        ErrorBody {
            error: rejection.code(),
            message: rejection.message(),
            request_id,
        }
        .to_json()
    };
    let mut resp = rejection_header(rejection, body.len(), request_id, trace)?;
    match (cors, rejection) {
        (Some((cors, grant)), Rejection::CorsPreflight) => {
            cors.apply_preflight(&mut resp, grant)?
        }
        (Some((cors, grant)), _) => cors.apply(&mut resp, grant)?,
        (None, _) => {}
    }
    send(session, resp, body).await?;
    Ok(status)
}

/// The header of a rejection: JSON framing, never cached, the request id, the trace when asked
/// for, and the fields its status calls for (`Allow`, `WWW-Authenticate`, the rate-limit fields).
///
/// Written straight into `http`'s header map: every name is a known, valid constant, so none is
/// parsed again or copied into Pingora's case-preserving name map (standard names go out
/// title-cased, others in lower case; HTTP field names are case-insensitive).
fn rejection_header(
    rejection: &Rejection,
    body_len: usize,
    request_id: &str,
    trace: Option<&str>,
) -> Result<ResponseHeader> {
    let status = rejection.status();
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::from_u16(status)
        .or_err(ErrorType::InvalidHTTPHeader, "invalid status")?;
    let fields = &mut parts.headers;
    fields.reserve(8);
    // A 204 carries neither a body nor its framing (RFC 9110 §8.6).
    if status != 204 {
        fields.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        fields.insert(header::CONTENT_LENGTH, number(body_len as u64));
    }
    fields.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    fields.insert(crate::owned::REQUEST_ID, field_value(request_id)?);
    if let Some(trace) = trace {
        fields.insert(crate::owned::TRACE, field_value(trace)?);
    }
    match rejection {
        Rejection::MethodNotAllowed(allow) => {
            fields.insert(header::ALLOW, field_value(allow)?);
        }
        Rejection::ServerOptions => {
            fields.insert(header::ALLOW, HeaderValue::from_static(SERVER_METHODS));
        }
        Rejection::Auth(e, scopes) => {
            if let Some(challenge) = e.challenge(scopes) {
                fields.insert(header::WWW_AUTHENTICATE, owned_value(challenge)?);
            }
        }
        Rejection::Limited(refusal) => {
            fields.insert(header::RETRY_AFTER, number(refusal.retry_after_s));
            fields.insert(RATELIMIT_POLICY, refusal.policy.clone());
            fields.insert(RATELIMIT, owned_value(refusal.ratelimit_field())?);
        }
        _ => {}
    }
    Ok(ResponseHeader::from(parts))
}

/// A number as a field value. Below 1000 (a rejection's `Content-Length`, most `Retry-After`s)
/// it is a slice of a static table: no allocation, nor a free when the answer is dropped.
fn number(n: u64) -> HeaderValue {
    if let Ok(small @ 0..1000) = usize::try_from(n) {
        let digits = match small {
            0..10 => 1,
            10..100 => 2,
            _ => 3,
        };
        let end = 3 * small + 3;
        if let Some(Ok(text)) = DIGITS.get(end - digits..end).map(std::str::from_utf8) {
            return HeaderValue::from_static(text);
        }
    }
    HeaderValue::from(n)
}

/// 000 to 999, three digits each.
static DIGITS: [u8; 3000] = {
    let mut table = [0u8; 3000];
    let mut n = 0;
    while n < 1000 {
        table[3 * n] = b'0' + (n / 100) as u8;
        table[3 * n + 1] = b'0' + (n / 10 % 10) as u8;
        table[3 * n + 2] = b'0' + (n % 10) as u8;
        n += 1;
    }
    table
};

/// The IETF draft's rate-limit fields (draft-ietf-httpapi-ratelimit-headers).
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A field value the gateway writes: refused (500) if it could not be sent as is.
fn field_value(text: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(text).or_err(ErrorType::InvalidHTTPHeader, "invalid header value")
}

/// The same for a value built for this answer, kept without a copy.
fn owned_value(text: String) -> Result<HeaderValue> {
    HeaderValue::try_from(text).or_err(ErrorType::InvalidHTTPHeader, "invalid header value")
}

/// Send a gateway-written answer: the header, then the body unless the request was `HEAD` or
/// the body is empty. Every answer the gateway writes itself goes out here. A failed write is the
/// client's doing (it went away, or reset its stream), and is marked so.
async fn send(session: &mut Session, resp: ResponseHeader, body: Vec<u8>) -> Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session
        .write_response_header(Box::new(resp), head_only)
        .await
        .map_err(|e| e.into_down())?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await
            .map_err(|e| e.into_down())?;
    }
    Ok(())
}

/// The JSON body of every answer the gateway writes itself.
struct ErrorBody<'a> {
    error: &'static str,
    message: &'static str,
    request_id: &'a str,
}

impl ErrorBody<'_> {
    /// `{"error":...,"message":...,"request_id":...}`, written directly: the fields are plain
    /// strings, and only one that needs escaping goes through serde_json.
    fn to_json(&self) -> Vec<u8> {
        // The fixed part is 41 bytes; a string that needs escaping may grow it again.
        let mut out =
            Vec::with_capacity(48 + self.error.len() + self.message.len() + self.request_id.len());
        out.extend_from_slice(b"{\"error\":");
        json_string(&mut out, self.error);
        out.extend_from_slice(b",\"message\":");
        json_string(&mut out, self.message);
        out.extend_from_slice(b",\"request_id\":");
        json_string(&mut out, self.request_id);
        out.push(b'}');
        out
    }
}

/// `text` as a JSON string: as is between quotes when nothing in it needs escaping (no quote,
/// backslash or control character), else escaped by serde_json.
fn json_string(out: &mut Vec<u8>, text: &str) {
    if !needs_escaping(text.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing a string into a Vec cannot fail.
        out.extend_from_slice(b"\"\"");
    }
}

/// Whether `text` holds a quote, a backslash or a control character (below 0x20), eight bytes at
/// a time: a word has a byte below `n` (`n` ≤ 0x80) when `(w - n·ONES) & !w & HIGHS` is not zero,
/// and a byte equal to `c` when `w ^ c·ONES` has a zero byte. Both tests are exact.
fn needs_escaping(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let Ok(bytes) = <[u8; 8]>::try_from(word) else {
            return true;
        };
        let w = u64::from_le_bytes(bytes);
        if below(w, 0x20)
            || below(w ^ (ONES * u64::from(b'"')), 1)
            || below(w ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Write a plugin's answer, with the decision trace header when asked for and the route's CORS
/// fields on a route with `cors`.
pub async fn write_plugin_answer(
    session: &mut Session,
    answer: PolicyAnswer,
    request_id: &str,
    trace: Option<&str>,
    cors: Option<(&Cors, &Grant)>,
) -> Result<()> {
    let PolicyAnswer {
        status,
        headers,
        body,
    } = answer;
    if !drain_small_body(session).await {
        session.set_keepalive(None);
    }
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 3))?;
    for (name, value) in headers {
        resp.append_header(name, value)?;
    }
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(crate::owned::REQUEST_ID, request_id)?;
    if let Some(trace) = trace {
        resp.insert_header(crate::owned::TRACE, trace)?;
    }
    if let Some((cors, grant)) = cors {
        cors.apply(&mut resp, grant)?;
    }
    send(session, resp, body).await
}

/// An early answer leaves the request body unread, and Pingora closes a connection whose request
/// body was not finished. Read and discard the body first when it is known, small and arriving
/// promptly, so the connection can serve the next request. `false`: the connection must close.
async fn drain_small_body(session: &mut Session) -> bool {
    if session.as_downstream_mut().is_body_empty() {
        return true;
    }
    let req = session.req_header();
    if req.headers.contains_key(header::EXPECT)
        || req.headers.contains_key(header::TRANSFER_ENCODING)
    {
        return false;
    }
    let small = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len <= MAX_DRAIN_BYTES);
    small
        && matches!(
            tokio::time::timeout(
                DRAIN_TIMEOUT,
                session.as_downstream_mut().drain_request_body()
            )
            .await,
            Ok(Ok(()))
        )
}

/// A Pingora error carrying one of our rejections' statuses, for hooks that must return `Result`.
/// The error type of [`no_healthy_upstream`], so that only that failure is answered as one.
const NO_HEALTHY_UPSTREAM: ErrorType = ErrorType::Custom("no healthy upstream");

/// Every upstream of the request's origin is down (found when Pingora asks for a peer again).
pub fn no_healthy_upstream() -> Box<Error> {
    Error::explain(NO_HEALTHY_UPSTREAM, "no healthy upstream")
}

const BODY_TOO_LARGE: ErrorType = ErrorType::Custom("request body too large");
const BODY_TIMEOUT: ErrorType = ErrorType::Custom("request body too slow");

/// The streamed body went past the route's `max_body_bytes`: proxying stops before the chunk that
/// crossed it is sent, and the client is answered 413.
pub fn body_too_large() -> Box<Error> {
    Error::explain(BODY_TOO_LARGE, "request body larger than max_body_bytes")
}

/// The body's deadline (`body_timeout_ms`) passed while it streamed: answered 408.
pub fn body_timeout() -> Box<Error> {
    Error::explain(BODY_TIMEOUT, "request body slower than body_timeout_ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_values_http_would_write() {
        for n in (0..2000).chain([9_999, 10_000, u64::from(u32::MAX), u64::MAX]) {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn escaping_is_needed_exactly_for_quotes_backslashes_and_control_characters() {
        for byte in 0..=255u8 {
            let naive = byte < 0x20 || byte == b'"' || byte == b'\\';
            for len in 1..20 {
                for at in 0..len {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    assert_eq!(needs_escaping(&text), naive, "{byte:#x} at {at} of {len}");
                }
            }
        }
        assert!(!needs_escaping(b""));
        assert!(!needs_escaping("bearer token required, ünïcode".as_bytes()));
    }

    #[test]
    fn the_body_is_the_json_serde_would_write() {
        for (error, message, id) in [
            ("missing_token", "bearer token required", "0f3a"),
            ("x", "quote \" and backslash \\ and tab \t", "id\u{1}é"),
            ("", "", ""),
        ] {
            let body = ErrorBody {
                error,
                message,
                request_id: id,
            }
            .to_json();
            let want = serde_json::json!({"error": error, "message": message, "request_id": id});
            let got: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(got, want);
            assert_eq!(body, serde_json::to_vec(&want).expect("json"));
        }
    }
}
