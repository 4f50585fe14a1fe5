//! The request side of authentication: finding the token, checking scopes, and the identity
//! headers only the gateway may set.

use http::header::{self, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};

use super::error::AuthError;
use crate::config::TokenSource;

/// The bearer token from the first configured source that has one.
/// Several `Authorization` fields are ambiguous and rejected.
pub fn extract_token<'r>(
    req: &'r RequestHeader,
    sources: &[TokenSource],
) -> Result<Option<&'r str>, AuthError> {
    for source in sources {
        let found = match source {
            TokenSource::Header => from_authorization(req)?,
            TokenSource::Cookie(name) => from_cookie(req, name),
            TokenSource::Query(name) => from_query(req, name),
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn from_authorization(req: &RequestHeader) -> Result<Option<&str>, AuthError> {
    let mut values = req.headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed("several Authorization headers"));
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
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::Malformed("empty bearer token"));
    }
    Ok(Some(token))
}

fn from_cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

fn from_query<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.uri
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
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

/// Headers only the gateway sets: exact names and `prefix*` patterns, all lower case.
pub struct ReservedHeaders {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl ReservedHeaders {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a String>) -> ReservedHeaders {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for p in patterns {
            match p.strip_suffix('*') {
                Some(prefix) => prefixes.push(prefix.to_ascii_lowercase()),
                None => exact.push(p.to_ascii_lowercase()),
            }
        }
        ReservedHeaders { exact, prefixes }
    }

    /// Remove every client-sent copy of a reserved header (header names are case-insensitive and
    /// stored lower case, so mixed-case spoofs and duplicates all go).
    pub fn strip(&self, req: &mut RequestHeader) {
        let doomed: Vec<HeaderName> = req
            .headers
            .keys()
            .filter(|name| {
                let name = name.as_str();
                self.exact.iter().any(|e| e == name)
                    || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
            })
            .cloned()
            .collect();
        for name in doomed {
            req.remove_header(&name);
        }
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
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).expect("request");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    #[test]
    fn token_sources_in_order() {
        let all = [
            TokenSource::Header,
            TokenSource::Cookie("session".into()),
            TokenSource::Query("access_token".into()),
        ];
        let r = req(&[("authorization", "bEaReR  abc.def.ghi")], "/");
        assert_eq!(extract_token(&r, &all), Ok(Some("abc.def.ghi")));
        let r = req(
            &[("cookie", "a=1; session=tok.en.x")],
            "/?access_token=q.q.q",
        );
        assert_eq!(extract_token(&r, &all), Ok(Some("tok.en.x")));
        let r = req(&[], "/p?x=1&access_token=q.q.q");
        assert_eq!(extract_token(&r, &all), Ok(Some("q.q.q")));
        let r = req(&[("authorization", "Basic Zm9vOmJhcg==")], "/");
        assert_eq!(extract_token(&r, &[TokenSource::Header]), Ok(None));
        let r = req(
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
            "/",
        );
        assert!(extract_token(&r, &[TokenSource::Header]).is_err());
        let r = req(&[("cookie", "session=x")], "/?access_token=y");
        assert_eq!(
            extract_token(&r, &[TokenSource::Header]),
            Ok(None),
            "only configured sources count"
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
