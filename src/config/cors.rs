//! A route's `cors = { ... }` table: which web origins may call the route from a browser, and what
//! the gateway tells the browser about methods, request headers and response headers (the Fetch
//! standard's CORS protocol). Read and checked here; compiled for requests by `crate::cors`.

use http::Method;

use super::reader::{Problems, Section};

/// Methods allowed when neither `allow_methods` nor the route's `methods` says.
const DEFAULT_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];
/// Request headers allowed by default: the bearer token and a JSON body's type.
const DEFAULT_HEADERS: [&str; 2] = ["authorization", "content-type"];
/// How long a browser may cache a preflight's answer by default (Chromium caps it at 2 hours).
const DEFAULT_MAX_AGE_S: u64 = 600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    pub allow_origins: Vec<AllowedOrigin>,
    pub allow_methods: Vec<Method>,
    /// Lower-case field names.
    pub allow_headers: Vec<String>,
    /// Lower-case field names.
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_s: u64,
}

/// One entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `"*"`: any origin (never with credentials).
    Any,
    /// A serialised origin, `scheme://host[:port]`, lower case, compared byte for byte.
    Exact(String),
    /// `scheme://*.domain[:port]`: any host of one or more labels under `domain`.
    Subdomains {
        scheme: String,
        /// `.domain`, with its leading dot.
        suffix: String,
        /// `:port`, or empty.
        port: String,
    },
}

/// `cors`, when the route has the table.
pub(super) fn read_cors(
    route: &mut Section<'_>,
    route_methods: Option<&[Method]>,
    problems: &mut Problems,
) -> Option<CorsConfig> {
    let mut s = route.table(problems, "cors")?;
    let origins = s.or::<Vec<String>>(problems, "allow_origins", Vec::new());
    let allow_credentials = s.or(problems, "allow_credentials", false);
    let mut allow_origins = Vec::with_capacity(origins.len());
    if origins.is_empty() {
        problems.push(
            &s.key_path("allow_origins"),
            "list at least one origin such as \"https://app.example.com\"",
        );
    }
    for (i, origin) in origins.iter().enumerate() {
        let path = format!("{}[{i}]", s.key_path("allow_origins"));
        match AllowedOrigin::parse(origin) {
            Ok(AllowedOrigin::Any) if allow_credentials => problems.push(
                &path,
                "\"*\" cannot be combined with allow_credentials = true (the Fetch standard refuses it; list the origins)",
            ),
            Ok(parsed) => allow_origins.push(parsed),
            Err(why) => problems.push(&path, format!("{origin:?} {why}")),
        }
    }
    let allow_methods = read_methods(&mut s, route_methods, problems);
    let default_headers = DEFAULT_HEADERS.map(String::from).to_vec();
    let allow_headers = read_names(&mut s, "allow_headers", default_headers, problems);
    let expose_headers = read_names(&mut s, "expose_headers", Vec::new(), problems);
    let max_age_s = s.ranged(problems, "max_age_s", DEFAULT_MAX_AGE_S, 0, 86_400);
    s.finish(problems);
    Some(CorsConfig {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        allow_credentials,
        max_age_s,
    })
}

impl AllowedOrigin {
    /// An `allow_origins` entry: `*`, a serialised origin, or one with `*.` as its host's first
    /// label. `Err`: why it is none of these, to follow the entry in a message.
    pub fn parse(text: &str) -> Result<AllowedOrigin, &'static str> {
        if text == "*" {
            return Ok(AllowedOrigin::Any);
        }
        if text == "null" {
            return Err(
                "is the origin of sandboxed documents and local files, which any page can take on: it is never allowed",
            );
        }
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("is not an origin as browsers send it: scheme and host are lower case");
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or("is not an origin (scheme://host[:port])")?;
        if scheme != "https" && scheme != "http" {
            return Err("is not an origin: the scheme is http or https");
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(
                "is not an origin: no path, query, fragment or user (not even a trailing /)",
            );
        }
        let (host, port) = split_port(rest)?;
        if !port.is_empty() {
            let digits = port.strip_prefix(':').unwrap_or(port);
            let valid = digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0')
                && digits.parse::<u16>().is_ok_and(|p| p > 0);
            if !valid {
                return Err("is not an origin: the port is a number from 1 to 65535");
            }
            if (scheme == "https" && digits == "443") || (scheme == "http" && digits == "80") {
                return Err("names its scheme's default port, which browsers leave out of Origin");
            }
        }
        let (wildcard, domain) = match host.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, host),
        };
        let valid_host = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        let ip_literal = !wildcard
            && domain
                .strip_prefix('[')
                .and_then(|d| d.strip_suffix(']'))
                .is_some_and(|d| d.parse::<std::net::Ipv6Addr>().is_ok());
        if !valid_host && !ip_literal {
            return Err(
                "is not an origin: the host is lower-case letters, digits, '-' and '.', and '*' only as \"*.\" before a domain",
            );
        }
        if wildcard && !domain.contains('.') {
            return Err("matches every subdomain of a top-level domain: name a registrable domain");
        }
        Ok(if wildcard {
            AllowedOrigin::Subdomains {
                scheme: scheme.to_string(),
                suffix: format!(".{domain}"),
                port: port.to_string(),
            }
        } else {
            AllowedOrigin::Exact(text.to_string())
        })
    }
}

/// `host` and `:port` (or an empty port) of `host[:port]`, where host may be an IPv6 literal.
fn split_port(rest: &str) -> Result<(&str, &str), &'static str> {
    let host_end = if rest.starts_with('[') {
        rest.find(']')
            .map(|i| i + 1)
            .ok_or("is not an origin: an unclosed IPv6 literal")?
    } else {
        rest.find(':').unwrap_or(rest.len())
    };
    let (host, port) = rest.split_at(host_end);
    if !port.is_empty() && !port.starts_with(':') {
        return Err("is not an origin (scheme://host[:port])");
    }
    Ok((host, port))
}

/// `allow_methods`: absent, the route's `methods` or the common ones.
fn read_methods(
    s: &mut Section<'_>,
    route_methods: Option<&[Method]>,
    problems: &mut Problems,
) -> Vec<Method> {
    let default = route_methods.map_or_else(|| DEFAULT_METHODS.to_vec(), <[Method]>::to_vec);
    let Some(list) = s.optional::<Vec<String>>(problems, "allow_methods") else {
        return default;
    };
    let mut methods = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if m != "*" => methods.push(method),
            _ => problems.push(
                &format!("{}[{i}]", s.key_path("allow_methods")),
                format!("{m:?} is not an HTTP method (list the methods: \"*\" is not a wildcard with credentials)"),
            ),
        }
    }
    if list.is_empty() {
        problems.push(&s.key_path("allow_methods"), "must not be empty");
    }
    methods
}

/// `allow_headers` / `expose_headers`: field names, stored in lower case.
fn read_names(
    s: &mut Section<'_>,
    key: &str,
    default: Vec<String>,
    problems: &mut Problems,
) -> Vec<String> {
    let Some(list) = s.optional::<Vec<String>>(problems, key) else {
        return default;
    };
    let mut names = Vec::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        if name == "*" {
            problems.push(
                &format!("{}[{i}]", s.key_path(key)),
                "\"*\" is not allowed: it never covers Authorization and means nothing with credentials; list the names",
            );
        } else if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(
                &format!("{}[{i}]", s.key_path(key)),
                format!("{name:?} is not a header field name"),
            );
        } else {
            names.push(name.to_ascii_lowercase());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed_strictly() {
        let sub = |scheme: &str, suffix: &str, port: &str| AllowedOrigin::Subdomains {
            scheme: scheme.into(),
            suffix: suffix.into(),
            port: port.into(),
        };
        let exact = |s: &str| AllowedOrigin::Exact(s.into());
        for (text, want) in [
            ("*", Ok(AllowedOrigin::Any)),
            (
                "https://app.example.com",
                Ok(exact("https://app.example.com")),
            ),
            ("http://127.0.0.1:8080", Ok(exact("http://127.0.0.1:8080"))),
            ("http://[::1]:3000", Ok(exact("http://[::1]:3000"))),
            (
                "https://*.example.com",
                Ok(sub("https", ".example.com", "")),
            ),
            (
                "https://*.example.com:8443",
                Ok(sub("https", ".example.com", ":8443")),
            ),
        ] {
            assert_eq!(AllowedOrigin::parse(text), want, "{text}");
        }
        for text in [
            "null",
            "app.example.com",
            "ftp://example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://App.Example.com",
            "https://app.example.com:443",
            "http://app.example.com:80",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://app.example.com:",
            "https://*.com",
            "https://*",
            "https://a.*.example.com",
            "https://*example.com",
            "https://",
            "https://exa mple.com",
        ] {
            assert!(AllowedOrigin::parse(text).is_err(), "{text} was accepted");
        }
    }
}
