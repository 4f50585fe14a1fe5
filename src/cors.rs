//! CORS at the edge, the server's side of the Fetch standard's CORS protocol (fetch.spec.whatwg.org,
//! "CORS protocol"), for routes with a `cors` table: which request `Origin` is allowed, the answer
//! to a preflight, and the `Access-Control-*` fields of every response on the route (the origin's
//! own are replaced: on such a route they are the gateway's). The header values are built once per
//! configuration; a request costs a comparison of its `Origin` and a few field inserts.

use http::{HeaderName, HeaderValue, Method, header};
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::{AllowedOrigin, CorsConfig};

/// The response fields of the protocol, all owned by the gateway on a route with `cors`.
const FIELD_COUNT: usize = 6;
const FIELDS: [HeaderName; FIELD_COUNT] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// A route's CORS settings, compiled.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<AllowedOrigin>,
    /// `allow_origins = ["*"]` (never with credentials): every response says `*`.
    any: bool,
    credentials: bool,
    methods: HeaderValue,
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

/// What the request's `Origin` earned on a route with `cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Allowed: the value for `Access-Control-Allow-Origin` (the origin itself, or `*`).
    Allowed(HeaderValue),
    /// No `Origin`, several, or one not allowed: no CORS fields (the browser keeps the answer
    /// from the page), but the answer still varies by `Origin`.
    Denied,
}

impl Cors {
    pub fn new(config: &CorsConfig) -> std::result::Result<Cors, http::header::InvalidHeaderValue> {
        let join = |items: &mut dyn Iterator<Item = &str>| {
            HeaderValue::from_str(&items.collect::<Vec<_>>().join(", "))
        };
        let methods = join(&mut config.allow_methods.iter().map(Method::as_str))?;
        let headers = (!config.allow_headers.is_empty())
            .then(|| join(&mut config.allow_headers.iter().map(String::as_str)))
            .transpose()?;
        let expose = (!config.expose_headers.is_empty())
            .then(|| join(&mut config.expose_headers.iter().map(String::as_str)))
            .transpose()?;
        Ok(Cors {
            any: config.allow_origins.contains(&AllowedOrigin::Any),
            origins: config.allow_origins.clone(),
            credentials: config.allow_credentials,
            methods,
            headers,
            expose,
            max_age: HeaderValue::from(config.max_age_s),
        })
    }

    /// The grant of the request's `Origin` (exactly one field, matched byte for byte: browsers
    /// send the serialised origin, lower case).
    pub fn grant(&self, req: &RequestHeader) -> Grant {
        let mut values = req.headers.get_all(header::ORIGIN).iter();
        let (Some(origin), None) = (values.next(), values.next()) else {
            return Grant::Denied;
        };
        if self.any {
            return Grant::Allowed(HeaderValue::from_static("*"));
        }
        match origin.to_str() {
            Ok(text) if self.origins.iter().any(|allowed| matches(allowed, text)) => {
                Grant::Allowed(origin.clone())
            }
            _ => Grant::Denied,
        }
    }

    /// Set the protocol's fields on a response of the route: the origin's own are removed, the
    /// grant's written, and `Vary: Origin` added unless every origin gets `*`.
    pub fn apply(&self, resp: &mut ResponseHeader, grant: &Grant) -> Result<()> {
        self.grant_fields(resp, grant)?;
        if let (Grant::Allowed(_), Some(expose)) = (grant, &self.expose) {
            resp.append_header("access-control-expose-headers", expose.clone())?;
        }
        Ok(())
    }

    /// The fields of a preflight's answer: the grant's, and to an allowed origin the methods and
    /// request headers allowed and how long the browser may remember them. The lists are the
    /// configured ones, so the browser names exactly what is missing when a request asks for more.
    pub fn apply_preflight(&self, resp: &mut ResponseHeader, grant: &Grant) -> Result<()> {
        self.grant_fields(resp, grant)?;
        if let Grant::Allowed(_) = grant {
            resp.append_header("access-control-allow-methods", self.methods.clone())?;
            if let Some(headers) = &self.headers {
                resp.append_header("access-control-allow-headers", headers.clone())?;
            }
            resp.append_header("access-control-max-age", self.max_age.clone())?;
        }
        Ok(())
    }

    /// Every answer's part: no field but the gateway's, `Vary`, and the origin and credentials
    /// granted.
    fn grant_fields(&self, resp: &mut ResponseHeader, grant: &Grant) -> Result<()> {
        // One pass notes which of them the origin set (most set none), then only those are
        // removed: each removal also searches Pingora's case-preserving name map.
        let mut theirs = [false; FIELD_COUNT];
        for name in resp.headers.keys() {
            if let Some(i) = FIELDS.iter().position(|field| field == name) {
                theirs[i] = true;
            }
        }
        for (name, _) in FIELDS.iter().zip(theirs).filter(|(_, set)| *set) {
            resp.remove_header(name);
        }
        if !self.any {
            add_vary_origin(resp)?;
        }
        if let Grant::Allowed(origin) = grant {
            // None of these is present any more: appending is inserting. Names as static strings:
            // Pingora's case map would allocate a title-cased copy of a `HeaderName`.
            resp.append_header("access-control-allow-origin", origin.clone())?;
            if self.credentials {
                resp.append_header(
                    "access-control-allow-credentials",
                    HeaderValue::from_static("true"),
                )?;
            }
        }
        Ok(())
    }
}

/// The method a CORS preflight asks about: an `OPTIONS` request with `Origin` and a valid
/// `Access-Control-Request-Method`. `None`: not a preflight (an `OPTIONS` like any other).
pub fn preflight_method(req: &RequestHeader) -> Option<Method> {
    if req.method != Method::OPTIONS || !req.headers.contains_key(header::ORIGIN) {
        return None;
    }
    let asked = req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

fn matches(allowed: &AllowedOrigin, origin: &str) -> bool {
    match allowed {
        AllowedOrigin::Any => true,
        AllowedOrigin::Exact(exact) => exact == origin,
        AllowedOrigin::Subdomains {
            scheme,
            suffix,
            port,
        } => {
            let Some(authority) = origin
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_prefix("://"))
            else {
                return false;
            };
            let Some(host) = authority.strip_suffix(port.as_str()) else {
                return false;
            };
            // One or more labels of a host name before the domain: nothing that could end a host
            // early (':', '@', '/') or change how it is read.
            host.strip_suffix(suffix.as_str()).is_some_and(host_labels)
        }
    }
}

/// Non-empty DNS labels (lower-case letters, digits, '-') joined by single dots, in one pass:
/// this runs for every request from an origin matched against a subdomain pattern.
fn host_labels(labels: &str) -> bool {
    let mut previous = b'.';
    for b in labels.bytes() {
        let ok = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => true,
            b'.' => previous != b'.',
            _ => false,
        };
        if !ok {
            return false;
        }
        previous = b;
    }
    previous != b'.'
}

/// `Vary: Origin` beside what the origin said varies (unless it already names `Origin` or `*`).
fn add_vary_origin(resp: &mut ResponseHeader) -> Result<()> {
    let covered = resp.headers.get_all(header::VARY).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|name| name == "*" || name.eq_ignore_ascii_case("origin"))
        })
    });
    if !covered {
        resp.append_header("vary", HeaderValue::from_static("Origin"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        let allow_origins = origins
            .iter()
            .map(|o| AllowedOrigin::parse(o).expect("an origin"))
            .collect();
        Cors::new(&CorsConfig {
            allow_origins,
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["x-request-id".into()],
            allow_credentials: credentials,
            max_age_s: 600,
        })
        .expect("valid values")
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/api", None).expect("request");
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).expect("header");
        }
        req
    }

    fn granted(cors: &Cors, origin: &str) -> bool {
        matches!(
            cors.grant(&request("GET", &[("origin", origin)])),
            Grant::Allowed(_)
        )
    }

    #[test]
    fn origins_match_exactly_or_as_anchored_subdomains() {
        let c = cors(
            &[
                "https://app.example.com",
                "https://*.example.org",
                "http://*.dev.test:3000",
            ],
            true,
        );
        for (origin, want) in [
            ("https://app.example.com", true),
            ("https://APP.example.com", false),
            ("http://app.example.com", false),
            ("https://app.example.com:443", false),
            ("https://app.example.com.evil.com", false),
            ("https://evilapp.example.com", false),
            ("https://a.example.org", true),
            ("https://a.b.example.org", true),
            ("https://example.org", false),
            ("https://.example.org", false),
            ("https://a..example.org", false),
            ("https://evilexample.org", false),
            ("https://a.example.org.evil.com", false),
            ("https://a.example.org:8443", false),
            ("http://a.example.org", false),
            ("https://user@a.example.org", false),
            ("https://a.example.org/", false),
            ("http://x.dev.test:3000", true),
            ("http://x.dev.test", false),
            ("http://x.dev.test:30000", false),
            ("null", false),
            ("", false),
        ] {
            assert_eq!(granted(&c, origin), want, "{origin}");
        }
    }

    #[test]
    fn an_allowed_origin_is_echoed_with_credentials_and_exposed_headers() {
        let c = cors(&["https://app.example.com"], true);
        let grant = c.grant(&request("GET", &[("origin", "https://app.example.com")]));
        let mut resp = ResponseHeader::build(200, None).expect("response");
        resp.insert_header("access-control-allow-origin", "*")
            .expect("header");
        resp.insert_header("access-control-allow-methods", "PUT")
            .expect("header");
        resp.insert_header("vary", "Accept-Encoding")
            .expect("header");
        c.apply(&mut resp, &grant).expect("apply");
        let get = |name: &str| {
            resp.headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().expect("ascii").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            get("access-control-allow-origin"),
            ["https://app.example.com"]
        );
        assert_eq!(get("access-control-allow-credentials"), ["true"]);
        assert_eq!(get("access-control-expose-headers"), ["x-request-id"]);
        assert!(
            get("access-control-allow-methods").is_empty(),
            "the origin's own are removed"
        );
        assert_eq!(get("vary"), ["Accept-Encoding", "Origin"]);
    }

    #[test]
    fn a_denied_origin_gets_no_cors_fields_but_vary() {
        let c = cors(&["https://app.example.com"], false);
        for headers in [
            vec![("origin", "https://other.example.com")],
            vec![],
            vec![
                ("origin", "https://app.example.com"),
                ("origin", "https://app.example.com"),
            ],
        ] {
            let grant = c.grant(&request("GET", &headers));
            assert_eq!(grant, Grant::Denied, "{headers:?}");
            let mut resp = ResponseHeader::build(401, None).expect("response");
            resp.insert_header("access-control-allow-origin", "*")
                .expect("header");
            resp.insert_header("vary", "origin").expect("header");
            c.apply(&mut resp, &grant).expect("apply");
            assert!(
                !resp
                    .headers
                    .keys()
                    .any(|k| k.as_str().starts_with("access-control-"))
            );
            assert_eq!(
                resp.headers.get_all("vary").iter().count(),
                1,
                "origin already varied"
            );
        }
    }

    #[test]
    fn any_origin_gets_a_star_and_no_vary() {
        let c = cors(&["*"], false);
        let grant = c.grant(&request("GET", &[("origin", "https://anything.test")]));
        assert_eq!(grant, Grant::Allowed(HeaderValue::from_static("*")));
        let mut resp = ResponseHeader::build(200, None).expect("response");
        c.apply(&mut resp, &grant).expect("apply");
        assert_eq!(resp.headers["access-control-allow-origin"], "*");
        assert!(!resp.headers.contains_key("vary"));
        assert!(
            !resp
                .headers
                .contains_key("access-control-allow-credentials")
        );
    }

    #[test]
    fn a_preflight_is_an_options_with_origin_and_a_requested_method() {
        for (method, headers, want) in [
            (
                "OPTIONS",
                vec![
                    ("origin", "https://a.test"),
                    ("access-control-request-method", "DELETE"),
                ],
                Some(Method::DELETE),
            ),
            (
                "OPTIONS",
                vec![("access-control-request-method", "DELETE")],
                None,
            ),
            ("OPTIONS", vec![("origin", "https://a.test")], None),
            (
                "GET",
                vec![
                    ("origin", "https://a.test"),
                    ("access-control-request-method", "DELETE"),
                ],
                None,
            ),
            (
                "OPTIONS",
                vec![
                    ("origin", "https://a.test"),
                    ("access-control-request-method", "GET POST"),
                ],
                None,
            ),
        ] {
            assert_eq!(
                preflight_method(&request(method, &headers)),
                want,
                "{method} {headers:?}"
            );
        }
    }

    #[test]
    fn a_preflight_answer_lists_what_is_configured() {
        let c = cors(&["https://app.example.com"], false);
        let grant = c.grant(&request(
            "OPTIONS",
            &[("origin", "https://app.example.com")],
        ));
        let mut resp = ResponseHeader::build(204, None).expect("response");
        c.apply_preflight(&mut resp, &grant).expect("apply");
        assert_eq!(
            resp.headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert!(!resp.headers.contains_key("access-control-expose-headers"));
        assert_eq!(resp.headers["access-control-allow-methods"], "GET, POST");
        assert_eq!(
            resp.headers["access-control-allow-headers"],
            "authorization, content-type"
        );
        assert_eq!(resp.headers["access-control-max-age"], "600");
    }
}
