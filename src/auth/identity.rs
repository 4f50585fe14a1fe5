//! The request side of authentication: finding the request's one bearer token, taking it off the
//! request before it is forwarded, checking scopes, and the identity headers only the gateway may
//! set.
//!
//! One token per request (RFC 6750 §2: a client uses one method only). Every source the route
//! configures is examined, and a token found in more than one place is refused as ambiguous
//! ([`AuthError::AmbiguousToken`]: 400, `error="invalid_request"`): in two configured sources, in
//! two `Authorization` fields, or in a query parameter or cookie given twice (cookies are counted
//! across every `Cookie` field). Sources that are not configured are not looked at.
//!
//! - Query parameter names are compared after percent-decoding (`access%5Ftoken` is `access_token`
//!   to most origins, and `+` is a space); cookie names exactly, around optional whitespace.
//! - An empty value (`access_token=`, `access_token` alone, `session=`) still counts as a place:
//!   beside a token anywhere else it makes the request ambiguous. Alone it is no token, as an absent
//!   one would be (an empty `Bearer` credential alone is malformed).
//! - [`remove_token`] takes a used token off the request before forwarding: its query parameter
//!   (the rest of the query kept byte for byte) or its cookie (the other cookies kept).

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};

use super::error::AuthError;
use crate::config::TokenSource;
use crate::header_pattern::HeaderPatterns;

/// The request's one bearer token and the configured source it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'r, 's> {
    pub value: &'r str,
    pub source: &'s TokenSource,
}

/// The request's bearer token, when exactly one configured place carries one; an error when
/// several do (see the module documentation) or the one found is malformed.
pub fn extract_token<'r, 's>(
    req: &'r RequestHeader,
    sources: &'s [TokenSource],
) -> Result<Option<Token<'r, 's>>, AuthError> {
    let mut tally = Tally::default();
    for (i, source) in sources.iter().enumerate() {
        // A source listed twice is still one place.
        if sources[..i].contains(source) {
            continue;
        }
        match source {
            TokenSource::Header => {
                if let Some(value) = from_authorization(req)? {
                    tally.add(source, value)?;
                }
            }
            TokenSource::Cookie(name) => {
                for value in cookie_values(req, name) {
                    tally.add(source, value)?;
                }
            }
            TokenSource::Query(name) => {
                for value in query_values(req, name) {
                    tally.add(source, value.as_bytes())?;
                }
            }
        }
    }
    tally.token()
}

/// The one place found so far; a second is an error.
#[derive(Default)]
struct Tally<'r, 's> {
    found: Option<(&'s TokenSource, &'r [u8])>,
}

impl<'r, 's> Tally<'r, 's> {
    fn add(&mut self, source: &'s TokenSource, value: &'r [u8]) -> Result<(), AuthError> {
        if self.found.is_some() {
            return Err(AuthError::AmbiguousToken);
        }
        self.found = Some((source, value));
        Ok(())
    }

    /// The token in the one place found: an empty cookie or query value is no token.
    fn token(self) -> Result<Option<Token<'r, 's>>, AuthError> {
        let Some((source, raw)) = self.found else {
            return Ok(None);
        };
        let text =
            std::str::from_utf8(raw).map_err(|_| AuthError::Malformed("token is not text"))?;
        let value = match source {
            TokenSource::Header => text,
            TokenSource::Cookie(_) => text.trim_matches('"'),
            TokenSource::Query(_) => text,
        };
        match (value.is_empty(), source) {
            (false, _) => Ok(Some(Token { value, source })),
            (true, TokenSource::Header) => Err(AuthError::Malformed("empty bearer token")),
            (true, _) => Ok(None),
        }
    }
}

/// The credential of an `Authorization: Bearer` field (possibly empty); `None` without such a
/// field or with another scheme. Several fields are ambiguous.
fn from_authorization(req: &RequestHeader) -> Result<Option<&[u8]>, AuthError> {
    let mut values = req.headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::AmbiguousToken);
    }
    let text = value
        .to_str()
        .map_err(|_| AuthError::Malformed("Authorization header is not text"))?;
    let Some((scheme, token)) = text.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    Ok(Some(token.trim_matches(' ').as_bytes()))
}

/// Every `name=value` pair of every `Cookie` field, names and values without surrounding
/// whitespace; bytes, so a field that is not text cannot hide a cookie.
fn cookie_pairs(req: &RequestHeader) -> impl Iterator<Item = (&[u8], &[u8])> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|field| field.as_bytes().split(|b| *b == b';'))
        .filter_map(cookie_pair)
}

fn cookie_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = pair.iter().position(|b| *b == b'=')?;
    Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
}

fn cookie_values<'r>(req: &'r RequestHeader, name: &str) -> impl Iterator<Item = &'r [u8]> {
    cookie_pairs(req)
        .filter(move |(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v)
}

/// The values of the query parameters called `name` (after percent-decoding the name); a
/// parameter without `=` has the empty value.
fn query_values<'r>(req: &'r RequestHeader, name: &str) -> impl Iterator<Item = &'r str> {
    req.uri
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(move |(k, _)| query_name_is(k, name))
        .map(|(_, v)| v)
}

/// Whether the raw query parameter name `raw` is `name` once percent-decoded (`+` is a space).
/// Invalid escapes stand for themselves.
pub fn query_name_is(raw: &str, name: &str) -> bool {
    PercentDecoded(raw.as_bytes()).eq(name.bytes())
}

/// The bytes of a query component with its escapes decoded.
struct PercentDecoded<'a>(&'a [u8]);

impl Iterator for PercentDecoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        if first == b'%'
            && let [hi, lo, tail @ ..] = rest
            && let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo))
        {
            self.0 = tail;
            return Some((hi << 4) | lo);
        }
        self.0 = rest;
        Some(if first == b'+' { b' ' } else { first })
    }
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// Take the token off the request before it is forwarded, when it came in the query or a cookie:
/// every query parameter of that name goes, the rest of the query kept byte for byte (and the `?`
/// dropped when nothing is left), or every cookie of that name, the other cookies kept (a `Cookie`
/// field left empty goes). The `Authorization` header is the caller's to remove.
pub fn remove_token(req: &mut RequestHeader, source: &TokenSource) -> Result<(), AuthError> {
    match source {
        TokenSource::Header => Ok(()),
        TokenSource::Query(name) => remove_query_parameter(req, name),
        TokenSource::Cookie(name) => remove_cookie(req, name),
    }
}

const NOT_REWRITTEN: AuthError = AuthError::Malformed("request cannot be rewritten");

/// Rebuilt from the request's current URI (an earlier step may have rewritten its path), never
/// from the request line.
fn remove_query_parameter(req: &mut RequestHeader, name: &str) -> Result<(), AuthError> {
    let Some(kept) = req.uri.query().and_then(|q| query_without(q, name)) else {
        return Ok(());
    };
    let path = req.uri.path();
    let path_and_query = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{kept}")
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).map_err(|_| NOT_REWRITTEN)?);
    let uri = Uri::from_parts(parts).map_err(|_| NOT_REWRITTEN)?;
    req.set_uri(uri);
    Ok(())
}

/// `query` without the parameters called `name`; `None` when it has none.
fn query_without(query: &str, name: &str) -> Option<String> {
    let mut removed = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let raw = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let hit = query_name_is(raw, name);
            removed |= hit;
            !hit
        })
        .collect();
    removed.then(|| kept.join("&"))
}

fn remove_cookie(req: &mut RequestHeader, name: &str) -> Result<(), AuthError> {
    let fields: Vec<HeaderValue> = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .cloned()
        .collect();
    let rewritten: Vec<Option<Vec<u8>>> = fields
        .iter()
        .map(|field| cookies_without(field.as_bytes(), name))
        .collect();
    if rewritten.iter().all(Option::is_none) {
        return Ok(());
    }
    req.remove_header(&header::COOKIE);
    for (field, rewritten) in fields.into_iter().zip(rewritten) {
        let value = match rewritten {
            None => field,
            Some(rest) if rest.is_empty() => continue,
            Some(rest) => HeaderValue::from_bytes(&rest).map_err(|_| NOT_REWRITTEN)?,
        };
        req.append_header(header::COOKIE, value)
            .map_err(|_| NOT_REWRITTEN)?;
    }
    Ok(())
}

/// One `Cookie` field without the cookies called `name`, the others joined by `"; "`; `None` when
/// it has none.
fn cookies_without(field: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut removed = false;
    let mut kept: Vec<u8> = Vec::with_capacity(field.len());
    for pair in field.split(|b| *b == b';') {
        if cookie_pair(pair).is_some_and(|(k, _)| k == name.as_bytes()) {
            removed = true;
            continue;
        }
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    removed.then_some(kept)
}

/// Whether the token grants every `required` scope (`scope`: space-separated; `scp`: array or string).
pub fn has_scopes(claims: &Map<String, Value>, required: &[String]) -> bool {
    if required.is_empty() {
        return true;
    }
    let mut granted: Vec<&str> = Vec::new();
    if let Some(Value::String(scope)) = claims.get("scope") {
        granted.extend(scope.split(' ').filter(|s| !s.is_empty()));
    }
    match claims.get("scp") {
        Some(Value::Array(list)) => granted.extend(list.iter().filter_map(Value::as_str)),
        Some(Value::String(scp)) => granted.extend(scp.split(' ').filter(|s| !s.is_empty())),
        _ => {}
    }
    required.iter().all(|r| granted.contains(&r.as_str()))
}

/// Headers only the gateway sets: exact names and `prefix*` patterns.
pub struct ReservedHeaders(HeaderPatterns);

impl ReservedHeaders {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a String>) -> ReservedHeaders {
        ReservedHeaders(HeaderPatterns::new(
            patterns.into_iter().map(String::as_str),
        ))
    }

    /// Remove every client-sent copy of a reserved header (header names are case-insensitive and
    /// stored lower case, so mixed-case spoofs and duplicates all go).
    pub fn strip(&self, req: &mut RequestHeader) {
        crate::owned::remove_matching(&self.0, req);
    }
}

/// The header values `claims_to_headers` produces for these claims. Strings go as they are,
/// numbers and booleans as text, arrays joined by ","; objects, nulls and values that are not valid
/// header text are left out.
pub fn claim_headers(
    claims: &Map<String, Value>,
    mapping: &[(String, String)],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(mapping.len());
    for (path, header) in mapping {
        let mut parts = path.split('.');
        let mut value = parts.next().and_then(|first| claims.get(first));
        for part in parts {
            value = value.and_then(|v| v.get(part));
        }
        let Some(text) = value.and_then(as_header_text) else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.as_bytes()),
            HeaderValue::from_str(&text),
        ) {
            out.push((name, value));
        }
    }
    out
}

fn as_header_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|v| match v {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    scalar => as_header_text(scalar),
                })
                .collect();
            parts.map(|p| p.join(","))
        }
        Value::Object(_) | Value::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(headers: &[(&str, &str)], uri: &str) -> RequestHeader {
        crate::testing::request_to(uri, headers)
    }

    fn all() -> [TokenSource; 3] {
        [
            TokenSource::Header,
            TokenSource::Cookie("session".into()),
            TokenSource::Query("access_token".into()),
        ]
    }

    fn value<'r>(
        found: Result<Option<Token<'r, '_>>, AuthError>,
    ) -> Result<Option<&'r str>, AuthError> {
        found.map(|t| t.map(|t| t.value))
    }

    #[test]
    fn the_token_comes_from_whichever_configured_place_has_it() {
        let all = all();
        let r = req(&[("authorization", "bEaReR  abc.def.ghi")], "/");
        let found = extract_token(&r, &all).expect("one token");
        assert_eq!(
            found.map(|t| (t.value, t.source)),
            Some(("abc.def.ghi", &all[0]))
        );
        let r = req(&[("cookie", "a=1; session=\"tok.en.x\"")], "/");
        let found = extract_token(&r, &all).expect("one token");
        assert_eq!(
            found.map(|t| (t.value, t.source)),
            Some(("tok.en.x", &all[1]))
        );
        let r = req(&[], "/p?x=1&access_token=q.q.q");
        let found = extract_token(&r, &all).expect("one token");
        assert_eq!(found.map(|t| (t.value, t.source)), Some(("q.q.q", &all[2])));
        let r = req(&[("authorization", "Basic Zm9vOmJhcg==")], "/");
        assert_eq!(value(extract_token(&r, &[TokenSource::Header])), Ok(None));
        let r = req(&[("cookie", "session=x")], "/?access_token=y");
        assert_eq!(
            value(extract_token(&r, &[TokenSource::Header])),
            Ok(None),
            "only configured sources count"
        );
        let r = req(&[("authorization", "Bearer a.b.c")], "/?access_token=y");
        assert_eq!(
            value(extract_token(&r, &all[..2])),
            Ok(Some("a.b.c")),
            "a token where the route does not look is not a second place"
        );
        let twice = [TokenSource::Header, TokenSource::Header];
        let r = req(&[("authorization", "Bearer a.b.c")], "/");
        assert_eq!(
            value(extract_token(&r, &twice)),
            Ok(Some("a.b.c")),
            "a source listed twice is one place"
        );
    }

    type Headers<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn a_token_in_more_than_one_place_is_ambiguous() {
        let all = all();
        let cases: [(Headers, &str, &str); 12] = [
            (
                &[("authorization", "Bearer h")],
                "/?access_token=q",
                "header and query",
            ),
            (
                &[("authorization", "Bearer h"), ("cookie", "session=c")],
                "/",
                "header and cookie",
            ),
            (
                &[("cookie", "session=c")],
                "/?access_token=q",
                "query and cookie",
            ),
            (&[], "/?access_token=q&x=1&access_token=q", "query twice"),
            (
                &[],
                "/?access_token=q&access%5Ftoken=q",
                "query twice, once percent-encoded",
            ),
            (
                &[],
                "/?%61ccess%5ftoken=q&access_token=r",
                "lower-case escapes",
            ),
            (
                &[("cookie", "session=a; x=1; session=b")],
                "/",
                "cookie twice in one field",
            ),
            (
                &[("cookie", "session=a"), ("cookie", "session=b")],
                "/",
                "cookie in two fields",
            ),
            (
                &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
                "/",
                "two Authorization fields",
            ),
            (
                &[("authorization", "Bearer h")],
                "/?access_token=",
                "an empty value still counts",
            ),
            (
                &[("authorization", "Bearer h")],
                "/?access_token",
                "a name without value still counts",
            ),
            (
                &[("cookie", "session=; session=c")],
                "/",
                "an empty cookie still counts",
            ),
        ];
        for (headers, uri, what) in cases {
            let r = req(headers, uri);
            assert_eq!(
                value(extract_token(&r, &all)),
                Err(AuthError::AmbiguousToken),
                "{what}"
            );
        }
    }

    #[test]
    fn an_empty_value_alone_is_no_token() {
        let all = all();
        let r = req(&[("cookie", "session=; a=1")], "/?access_token=");
        // Two places, even though both are empty: still ambiguous.
        assert_eq!(
            value(extract_token(&r, &all)),
            Err(AuthError::AmbiguousToken)
        );
        let r = req(&[("cookie", "session=\"\"")], "/");
        assert_eq!(value(extract_token(&r, &all)), Ok(None));
        let r = req(&[], "/?access_token=&b=2");
        assert_eq!(value(extract_token(&r, &all)), Ok(None));
        let r = req(&[("authorization", "Bearer  ")], "/");
        assert!(matches!(
            extract_token(&r, &all),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn query_names_are_compared_percent_decoded() {
        assert!(query_name_is("access_token", "access_token"));
        assert!(query_name_is("access%5Ftoken", "access_token"));
        assert!(query_name_is("%61%63cess_token", "access_token"));
        assert!(!query_name_is("access_token%", "access_token"));
        assert!(
            query_name_is("a%", "a%"),
            "an invalid escape stands for itself"
        );
        assert!(query_name_is("a%zz", "a%zz"));
        assert!(query_name_is("a+b", "a b"));
        assert!(!query_name_is("Access_token", "access_token"));
        assert!(!query_name_is("access_token2", "access_token"));
    }

    fn uri_after_removal(uri: &str, source: &TokenSource) -> String {
        let mut r = req(&[], uri);
        remove_token(&mut r, source).expect("removed");
        String::from_utf8_lossy(r.raw_path()).into_owned()
    }

    #[test]
    fn a_query_token_is_removed_and_the_rest_of_the_query_kept() {
        let q = TokenSource::Query("access_token".into());
        let cases = [
            ("/p?x=1&access_token=t&y=%20z&w", "/p?x=1&y=%20z&w"),
            ("/p?access_token=t", "/p"),
            ("/p?access%5Ftoken=t&a=1", "/p?a=1"),
            ("/p?a=1&&access_token=t", "/p?a=1&"),
            ("/p?a=1&access_token_x=2", "/p?a=1&access_token_x=2"),
            ("/p", "/p"),
            ("http://host/p?access_token=t&a=1", "/p?a=1"),
        ];
        for (uri, expected) in cases {
            assert_eq!(uri_after_removal(uri, &q), expected, "{uri}");
        }
        assert_eq!(
            uri_after_removal("/p?access_token=t", &TokenSource::Header),
            "/p?access_token=t",
            "a header token leaves the query alone"
        );
    }

    #[test]
    fn query_removal_starts_from_the_current_path_not_the_request_line() {
        let mut r = req(&[], "/a/./b?access_token=t&k=v");
        let canonical: Uri = "/a/b?access_token=t&k=v".parse().expect("uri");
        r.set_uri(canonical);
        remove_token(&mut r, &TokenSource::Query("access_token".into())).expect("removed");
        assert_eq!(r.uri.to_string(), "/a/b?k=v");
        assert_eq!(r.raw_path(), b"/a/b?k=v");
    }

    fn cookies_after_removal(fields: &[&str]) -> Vec<String> {
        let headers: Vec<(&str, &str)> = fields.iter().map(|f| ("cookie", *f)).collect();
        let mut r = req(&headers, "/");
        remove_token(&mut r, &TokenSource::Cookie("session".into())).expect("removed");
        r.headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn a_cookie_token_is_removed_and_the_other_cookies_kept() {
        assert_eq!(cookies_after_removal(&["a=1; session=t;b=2"]), ["a=1; b=2"]);
        assert_eq!(cookies_after_removal(&["session=t", "c=3"]), ["c=3"]);
        assert_eq!(
            cookies_after_removal(&["theme=dark;  x=1", " session=t "]),
            ["theme=dark;  x=1"],
            "a field without the cookie is kept byte for byte"
        );
        assert!(cookies_after_removal(&["session=t"]).is_empty());
        assert_eq!(
            cookies_after_removal(&["sessionx=1; a=session=2"]),
            ["sessionx=1; a=session=2"]
        );
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let need = vec!["read".to_string(), "write".to_string()];
        let c = |v: Value| v.as_object().cloned().expect("object");
        assert!(has_scopes(&c(json!({"scope": "read write admin"})), &need));
        assert!(has_scopes(&c(json!({"scp": ["write", "read"]})), &need));
        assert!(!has_scopes(&c(json!({"scope": "read"})), &need));
        assert!(!has_scopes(&c(json!({"scope": "readwrite"})), &need));
        assert!(has_scopes(&c(json!({})), &[]));
    }

    #[test]
    fn reserved_headers_go_in_every_spelling() {
        let reserved =
            ReservedHeaders::new(&["x-internal-*".to_string(), "x-user-location".to_string()]);
        let mut r = req(
            &[
                ("X-Internal-User-Id", "evil"),
                ("x-INTERNAL-user-id", "evil2"),
                ("X-User-Location", "GB"),
                ("x-kept", "1"),
            ],
            "/",
        );
        reserved.strip(&mut r);
        let names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn claims_become_headers() {
        let claims = json!({"sub": "u-1", "org": {"id": 42, "tags": ["a", "b"]}, "admin": true, "nested": {"o": {}}})
            .as_object()
            .cloned()
            .expect("object");
        let mapping = vec![
            ("sub".to_string(), "x-internal-user-id".to_string()),
            ("org.id".to_string(), "x-org-id".to_string()),
            ("org.tags".to_string(), "x-org-tags".to_string()),
            ("admin".to_string(), "x-admin".to_string()),
            ("nested.o".to_string(), "x-skipped".to_string()),
            ("missing.path".to_string(), "x-missing".to_string()),
        ];
        let got: Vec<(String, String)> = claim_headers(&claims, &mapping)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_str().expect("text").to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-internal-user-id".to_string(), "u-1".to_string()),
                ("x-org-id".to_string(), "42".to_string()),
                ("x-org-tags".to_string(), "a,b".to_string()),
                ("x-admin".to_string(), "true".to_string()),
            ]
        );
    }
}
