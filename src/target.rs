//! The request target in one canonical form, made once before routing (RFC 3986 §6.2.2).
//!
//! Everything after this step — routing, authentication, policies, the access log and the request
//! line the origin receives — reads the same canonical path, so what was authorised is what is
//! forwarded. A target is either refused, with a closed-set reason, or rewritten into the form a
//! lenient origin (Tomcat, Go, Flask, ASP.NET, PHP) would read the same way:
//!
//! - only origin-form (`/path?query`), or absolute-form `http(s)://authority/path` whose authority
//!   is the request's host (it is forwarded in origin-form); `*` is for `OPTIONS` only;
//! - percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, every other
//!   escape is written with upper-case hex, and characters a path may not hold literally
//!   (non-ASCII, space, `"`, `<`, `>`, `^`, `` ` ``, `{`, `|`, `}`) are encoded;
//! - refused: malformed escapes, encoded `/`, `\`, `;`, an encoded `%` followed by two hex digits
//!   (a second decoding would change the path), NUL and other control characters raw or encoded, a raw `\` or `#`,
//!   bytes that do not decode to UTF-8 (overlong forms of `/`), dot-segments and empty segments
//!   (also once `;` parameters are stripped);
//! - `;` parameters in a segment (`/api;jsessionid=1`) are refused unless the route allows them,
//!   and then the route is matched on the path without them.
//!
//! The host is canonicalised too: lower case, no port, no trailing dot.

use std::fmt;

use http::HeaderValue;
use http::header;
use pingora::http::RequestHeader;

/// Why a request target was refused. Each maps to one rejection code (see `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Neither origin-form nor an http(s) absolute-form URI, or `*` on a method other than OPTIONS.
    NotOriginForm,
    /// An absolute-form URI whose authority is not the request's host, or has user information.
    AuthorityMismatch,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// An encoded `/`, `\` or `;`, an encoded `%` before two hex digits, or an encoded control
    /// character.
    EncodedSeparator,
    /// A raw `\`, `#` or control character.
    ForbiddenCharacter,
    /// Decoded bytes that are not UTF-8.
    NotUtf8,
    /// `.` or `..` as a segment (also once parameters are stripped).
    DotSegment,
    /// An empty segment (`//`), which origins merge.
    EmptySegment,
    /// `;` parameters on a route that does not allow them.
    PathParameters,
    /// A Host (or authority) that is not a valid host name, IP literal and optional port.
    BadHost,
}

impl TargetError {
    /// The closed-set rejection code: the JSON `error` field and the metric label.
    pub fn code(self) -> &'static str {
        match self {
            TargetError::NotOriginForm | TargetError::AuthorityMismatch => "invalid_target",
            TargetError::BadHost => "invalid_host",
            TargetError::PathParameters => "path_parameters",
            TargetError::BadEscape
            | TargetError::EncodedSeparator
            | TargetError::ForbiddenCharacter
            | TargetError::NotUtf8
            | TargetError::DotSegment
            | TargetError::EmptySegment => "ambiguous_path",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            TargetError::NotOriginForm => "request target must be an absolute path",
            TargetError::AuthorityMismatch => "request target names another host",
            TargetError::BadEscape => "malformed percent-encoding in the path",
            TargetError::EncodedSeparator => {
                "encoded separator, percent sign or control character in the path"
            }
            TargetError::ForbiddenCharacter => "backslash, '#' or control character in the path",
            TargetError::NotUtf8 => "the path does not decode to UTF-8",
            TargetError::DotSegment => "dot-segments in the path",
            TargetError::EmptySegment => "empty segment in the path",
            TargetError::PathParameters => "';' parameters in the path",
            TargetError::BadHost => "the host is not a valid host name",
        }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for TargetError {}

/// A request target in canonical origin-form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `path` or `path?query`: what the origin receives.
    pub target: String,
    /// Length of the path within `target`.
    path_len: usize,
    /// Whether some segment carries `;` parameters.
    pub has_parameters: bool,
}

impl Target {
    /// The canonical path, parameters included.
    pub fn path(&self) -> &str {
        &self.target[..self.path_len]
    }

    /// The canonical query, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.get(self.path_len + 1..)
    }

    /// The path routes are matched on: the canonical path without `;` parameters.
    pub fn route_path(&self) -> std::borrow::Cow<'_, str> {
        if !self.has_parameters {
            return std::borrow::Cow::Borrowed(self.path());
        }
        let mut out = String::with_capacity(self.path_len);
        for (i, segment) in self.path().split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(segment.split(';').next().unwrap_or_default());
        }
        std::borrow::Cow::Owned(out)
    }
}

/// What routing reads of a canonical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath {
    /// The canonical host, when the request names one.
    pub host: Option<String>,
    /// The canonical path without `;` parameters.
    pub path: String,
    pub has_parameters: bool,
}

/// Make the request's host and target canonical, in place: routing, authentication, policies,
/// the log and the origin all read the result. `Ok(None)`: `OPTIONS *`, for the gateway to answer.
pub fn canonicalise(req: &mut RequestHeader) -> Result<Option<RoutePath>, TargetError> {
    let host = host_of(req)?;
    if let Some(path) = already_canonical(req.raw_path())? {
        return Ok(Some(RoutePath {
            host,
            path: path.to_string(),
            has_parameters: false,
        }));
    }
    let is_options = req.method == http::Method::OPTIONS;
    let target = match parse(req.raw_path(), host.as_deref(), is_options)? {
        Parsed::ServerOptions => return Ok(None),
        Parsed::Target(target) => target,
    };
    if target.target.as_bytes() != req.raw_path() {
        // An HTTP/2 request keeps its scheme and authority; only the path and query change.
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(
            target
                .target
                .parse()
                .map_err(|_| TargetError::NotOriginForm)?,
        );
        let uri = http::Uri::from_parts(parts).map_err(|_| TargetError::NotOriginForm)?;
        req.set_uri(uri);
    }
    Ok(Some(RoutePath {
        host,
        path: target.route_path().into_owned(),
        has_parameters: target.has_parameters,
    }))
}

/// The request's canonical host (`canonical_host`): the URI's authority (HTTP/2's
/// `:authority`, HTTP/1.1's absolute form) if any, else the Host field. An authority or Host field
/// written in another form (upper case, a trailing dot) is rewritten to the canonical host, its
/// port kept, so the origin reads the host that was routed. An authority and a Host field that
/// name different hosts are refused: origins would disagree on which one counts.
fn host_of(req: &mut RequestHeader) -> Result<Option<String>, TargetError> {
    let from_authority = match req.uri.authority() {
        None => None,
        Some(authority) => {
            let host = canonical_host(authority.as_str())?;
            if let Some(written) = written_canonically(authority.as_str(), &host) {
                let mut parts = req.uri.clone().into_parts();
                parts.authority = Some(written.parse().map_err(|_| TargetError::BadHost)?);
                let uri = http::Uri::from_parts(parts).map_err(|_| TargetError::BadHost)?;
                req.set_uri(uri);
            }
            Some(host)
        }
    };
    let Some(value) = req.headers.get(header::HOST) else {
        return Ok(from_authority);
    };
    let raw = value.to_str().map_err(|_| TargetError::BadHost)?;
    let host = canonical_host(raw)?;
    if from_authority.as_ref().is_some_and(|named| *named != host) {
        return Err(TargetError::BadHost);
    }
    if let Some(written) = written_canonically(raw, &host) {
        let value = HeaderValue::from_str(&written).map_err(|_| TargetError::BadHost)?;
        req.insert_header(header::HOST, value)
            .map_err(|_| TargetError::BadHost)?;
    }
    Ok(Some(host))
}

/// `raw` (a host and maybe a port) with its host written as `host`, its canonical form, when
/// `raw` writes it otherwise (upper case or a trailing dot); `None` when it is already canonical.
fn written_canonically(raw: &str, host: &str) -> Option<String> {
    let name_end = match raw.strip_prefix('[') {
        Some(_) => raw.find(']').map_or(raw.len(), |i| i + 1),
        None => raw.bytes().position(|b| b == b':').unwrap_or(raw.len()),
    };
    let (name, port) = raw.split_at(name_end);
    // `host` is the name lower-cased, without a trailing dot (and brackets): the name is
    // canonical exactly when it is `host` as written.
    let written = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if written == host {
        return None;
    }
    Some(match raw.starts_with('[') {
        true => format!("[{host}]{port}"),
        false => format!("{host}{port}"),
    })
}

/// What the raw request target asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `OPTIONS *`: a question about the server, answered by the gateway.
    ServerOptions,
    Target(Target),
}

/// Canonicalise the raw request target of a request for `host` (already canonical, see
/// [`canonical_host`]). `is_options`: the method is OPTIONS.
pub fn parse(raw: &[u8], host: Option<&str>, is_options: bool) -> Result<Parsed, TargetError> {
    if raw == b"*" {
        return if is_options {
            Ok(Parsed::ServerOptions)
        } else {
            Err(TargetError::NotOriginForm)
        };
    }
    let origin_form = match raw.first() {
        Some(b'/') => raw,
        _ => strip_authority(raw, host)?,
    };
    canonical_target(origin_form).map(Parsed::Target)
}

/// The path of an origin-form target that is canonical as sent (the common case), found without
/// building a copy: nothing to decode or encode, no parameters, and its segments pass. `None`:
/// the general rules of [`parse`] decide.
fn already_canonical(raw: &[u8]) -> Result<Option<&str>, TargetError> {
    if raw.first() != Some(&b'/') {
        return Ok(None);
    }
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, &raw[raw.len()..]),
    };
    if !path.iter().all(|&b| PATH_LITERAL[usize::from(b)])
        || !query.iter().all(|&b| QUERY_LITERAL[usize::from(b)])
    {
        return Ok(None);
    }
    check_segments(path)?;
    // Path literals are ASCII.
    Ok(std::str::from_utf8(path).ok())
}

/// The path-and-query of an absolute-form target whose authority is `host`.
fn strip_authority<'r>(raw: &'r [u8], host: Option<&str>) -> Result<&'r [u8], TargetError> {
    let scheme_end = raw
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(TargetError::NotOriginForm)?;
    let scheme = &raw[..scheme_end];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(TargetError::NotOriginForm);
    }
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority =
        std::str::from_utf8(&rest[..authority_end]).map_err(|_| TargetError::BadHost)?;
    if authority.contains('@') {
        return Err(TargetError::AuthorityMismatch);
    }
    let named = canonical_host(authority)?;
    if Some(named.as_str()) != host {
        return Err(TargetError::AuthorityMismatch);
    }
    match &rest[authority_end..] {
        [] => Ok(b"/"),
        [b'/', ..] => Ok(&rest[authority_end..]),
        // `http://host?q`: no path; refused rather than invented.
        _ => Err(TargetError::NotOriginForm),
    }
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Literal in a path without encoding: unreserved, sub-delims, `:`, `@`, `/` (RFC 3986 §3.3),
/// `;` handled by the caller.
const fn is_path_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// [`is_path_literal`] as a table, for the scan every request makes.
const PATH_LITERAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_path_literal(b as u8);
        b += 1;
    }
    table
};

/// Bytes a query keeps as sent: path literals, `%`, `?` and `;`.
const QUERY_LITERAL: [bool; 256] = {
    let mut table = PATH_LITERAL;
    table[b'%' as usize] = true;
    table[b'?' as usize] = true;
    table[b';' as usize] = true;
    table
};

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Two hex digits: what `%` would start if the path were decoded a second time.
fn is_escape(pair: Option<&[u8]>) -> bool {
    matches!(pair, Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Canonicalise an origin-form target (starts with `/`).
fn canonical_target(raw: &[u8]) -> Result<Target, TargetError> {
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let mut out = Vec::with_capacity(raw.len() + 8);
    let has_parameters = canonical_path(path, &mut out)?;
    check_segments(&out)?;
    let path_len = out.len();
    if let Some(query) = query {
        out.push(b'?');
        canonical_query(query, &mut out)?;
    }
    // Every byte written is ASCII.
    let target = String::from_utf8(out).map_err(|_| TargetError::NotUtf8)?;
    Ok(Target {
        target,
        path_len,
        has_parameters,
    })
}

/// Write the canonical form of `path` into the empty `out`: unreserved escapes decoded, other
/// escapes and characters a path may not hold literally written as upper-case `%XX`. Returns
/// whether the path has `;` parameters.
fn canonical_path(path: &[u8], out: &mut Vec<u8>) -> Result<bool, TargetError> {
    // The common case: nothing to decode, encode or look at twice.
    if path.iter().all(|&b| PATH_LITERAL[usize::from(b)]) {
        out.extend_from_slice(path);
        return Ok(false);
    }
    // Whether the fully decoded path holds non-ASCII bytes, which must then be UTF-8.
    let mut decoded_non_ascii = false;
    let mut has_parameters = false;
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                decoded_non_ascii |= push_escape(path, i, out)?;
                i += 3;
                continue;
            }
            b';' => {
                has_parameters = true;
                out.push(b);
            }
            b'\\' | b'#' => return Err(TargetError::ForbiddenCharacter),
            _ if b.is_ascii_control() => return Err(TargetError::ForbiddenCharacter),
            _ if is_path_literal(b) => out.push(b),
            _ => {
                decoded_non_ascii |= !b.is_ascii();
                push_escaped(out, b);
            }
        }
        i += 1;
    }
    if decoded_non_ascii && std::str::from_utf8(&decode(out)).is_err() {
        return Err(TargetError::NotUtf8);
    }
    Ok(has_parameters)
}

/// The escape at `path[i]` (a `%`), canonical: decoded when unreserved, refused when it hides a
/// separator, a control character or another escape, else re-written in upper-case hex. Returns
/// whether it stands for a non-ASCII byte.
fn push_escape(path: &[u8], i: usize, out: &mut Vec<u8>) -> Result<bool, TargetError> {
    let (Some(hi), Some(lo)) = (
        path.get(i + 1).copied().and_then(hex_value),
        path.get(i + 2).copied().and_then(hex_value),
    ) else {
        return Err(TargetError::BadEscape);
    };
    let value = hi << 4 | lo;
    if is_unreserved(value) {
        out.push(value);
        return Ok(false);
    }
    if matches!(value, b'/' | b'\\' | b';')
        || value.is_ascii_control()
        || (value == b'%' && is_escape(path.get(i + 3..i + 5)))
    {
        return Err(TargetError::EncodedSeparator);
    }
    push_escaped(out, value);
    Ok(!value.is_ascii())
}

/// The query as sent, with non-ASCII and characters a URI may not hold literally encoded.
/// Control characters and `#` are refused.
fn canonical_query(query: &[u8], out: &mut Vec<u8>) -> Result<(), TargetError> {
    if query.iter().all(|&b| QUERY_LITERAL[usize::from(b)]) {
        out.extend_from_slice(query);
        return Ok(());
    }
    for &b in query {
        match b {
            b'#' => return Err(TargetError::ForbiddenCharacter),
            _ if b.is_ascii_control() => return Err(TargetError::ForbiddenCharacter),
            b'%' | b'?' | b';' => out.push(b),
            _ if is_path_literal(b) => out.push(b),
            _ => push_escaped(out, b),
        }
    }
    Ok(())
}

/// Every escape in `path` decoded.
fn decode(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        match (
            path[i],
            path.get(i + 1).copied().and_then(hex_value),
            path.get(i + 2).copied().and_then(hex_value),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Refuse dot-segments and empty segments, with and without `;` parameters.
fn check_segments(path: &[u8]) -> Result<(), TargetError> {
    let mut segments = path.split(|&b| b == b'/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let name = segment.split(|&b| b == b';').next().unwrap_or_default();
        if name == b"." || name == b".." {
            return Err(TargetError::DotSegment);
        }
        // A trailing slash is an empty last segment, and fine unless it carries parameters.
        if name.is_empty() && (!last || segment.len() > 1) {
            return Err(TargetError::EmptySegment);
        }
    }
    Ok(())
}

/// The bytes of a host name's labels: letters, digits, `-` and `_`.
static HOST_LABEL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// A host as routes match it: lower case, without port or trailing dot; IPv6 literals without
/// brackets. Refuses anything that is not a host name, an IP literal and an optional port.
pub fn canonical_host(raw: &str) -> Result<String, TargetError> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(TargetError::BadHost)?;
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(TargetError::BadHost);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(TargetError::BadHost)?),
        };
        (literal, port)
    } else {
        let end = raw.bytes().position(|b| b == b':').unwrap_or(raw.len());
        // Past the end (no ':'), `get` gives no port.
        (&raw[..end], raw.get(end + 1..))
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(TargetError::BadHost);
    }
    if raw.starts_with('[') {
        return Ok(host.to_ascii_lowercase());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > 253 {
        return Err(TargetError::BadHost);
    }
    // Labels of 1 to 63 letters, digits, '-' or '_'; then lower-cased.
    let mut label = 0;
    for b in host.bytes() {
        if b == b'.' && label > 0 {
            label = 0;
        } else if HOST_LABEL[usize::from(b)] && label < 63 {
            label += 1;
        } else {
            return Err(TargetError::BadHost);
        }
    }
    if label == 0 {
        return Err(TargetError::BadHost);
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
