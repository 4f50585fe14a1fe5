//! `[[routes]]`: one route read from its table (`read_route`, a short step per key group), and
//! the checks across routes and sections (`check_references`).

use http::Method;

use super::names::Name;
use super::reader::{Problems, Section};
use super::{AuthMode, RequestLimits, RouteConfig, TokenSource};
use crate::target;

pub(super) fn read_route(mut s: Section<'_>, problems: &mut Problems) -> Option<RouteConfig> {
    let name = s.name(problems);
    let host = read_host(&mut s, problems);
    let path_prefix: Option<String> = s.required(problems, "path_prefix");
    let allow_path_parameters = s.or(problems, "allow_path_parameters", false);
    let case_insensitive = s.or(problems, "case_insensitive", false);
    if let Some(prefix) = &path_prefix {
        check_path_prefix(&s, prefix, problems);
    }
    let methods = read_methods(&mut s, problems);
    let origin: Option<Name> = s.required(problems, "origin");
    let auth = read_auth_mode(&mut s, problems);
    let policies = super::observe::read_route_policies(&mut s, problems);
    let debug_trace = s.or(problems, "debug_trace", false);
    let trace_sample_ratio = super::otel::read_ratio(&mut s, problems, "trace_sample_ratio");
    let issuers = s.or::<Vec<Name>>(problems, "issuers", Vec::new());
    let required_scopes = read_scopes(&mut s, problems);
    let token_from = read_token_from(&mut s, problems);
    let forward_authorization = s.or(problems, "forward_authorization", false);
    let limits = s.or::<Vec<Name>>(problems, "limits", Vec::new());
    let limit_cost = s.ranged(problems, "limit_cost", 1, 1, 1_000_000);
    let shield = s.or(problems, "shield", true);
    let cors = super::cors::read_cors(&mut s, methods.as_deref(), problems);
    let request_limits = read_request_limits(&mut s, problems);
    s.finish(problems);
    Some(RouteConfig {
        name: name?,
        host,
        path_prefix: path_prefix?,
        methods,
        origin: origin?,
        auth,
        policies,
        debug_trace,
        trace_sample_ratio,
        issuers,
        required_scopes,
        token_from,
        forward_authorization,
        allow_path_parameters,
        case_insensitive,
        limits,
        limit_cost,
        shield,
        cors,
        request_limits,
    })
}

/// `max_header_bytes`, `max_body_bytes`, `body_timeout_ms`: each off unless given.
fn read_request_limits(s: &mut Section<'_>, problems: &mut Problems) -> RequestLimits {
    let mut ranged = |key: &str, min: u64, max: u64| s.optional_ranged(problems, key, min, max);
    RequestLimits {
        max_header_bytes: ranged("max_header_bytes", 1024, 1 << 20).map(|v| v as usize),
        max_body_bytes: ranged("max_body_bytes", 0, 1 << 40),
        body_timeout: ranged("body_timeout_ms", 100, 3_600_000)
            .map(std::time::Duration::from_millis),
    }
}

/// `host`: a host name or IP literal, stored in canonical form (lower case, no trailing dot).
fn read_host(s: &mut Section<'_>, problems: &mut Problems) -> Option<String> {
    let host = s.optional::<String>(problems, "host")?;
    Some(match target::canonical_host(&host) {
        Ok(canonical) if !host.contains(':') || host.starts_with('[') && host.ends_with(']') => {
            canonical
        }
        _ => {
            problems.push(
                &s.key_path("host"),
                format!("{host:?} is not a host name (no port, scheme or path)"),
            );
            host.to_ascii_lowercase()
        }
    })
}

/// `path_prefix` must be canonical already: it is what canonical request paths are matched against.
fn check_path_prefix(s: &Section<'_>, prefix: &str, problems: &mut Problems) {
    if !is_canonical_prefix(prefix) {
        problems.push(
            &s.key_path("path_prefix"),
            format!("{prefix:?} must be a canonical absolute path such as \"/api\" (no query, ';' parameters, dot segments, empty segments, or escapes of unreserved characters or slashes)"),
        );
    }
}

/// `methods`: absent allows every method; present, a non-empty list of HTTP methods.
fn read_methods(s: &mut Section<'_>, problems: &mut Problems) -> Option<Vec<Method>> {
    let list = s.optional::<Vec<String>>(problems, "methods")?;
    if list.is_empty() {
        problems.push(
            &s.key_path("methods"),
            "must not be empty (leave it out to allow every method)",
        );
    }
    let mut methods = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(method) if !upper.is_empty() => methods.push(method),
            _ => problems.push(
                &format!("{}[{i}]", s.key_path("methods")),
                format!("{m:?} is not an HTTP method"),
            ),
        }
    }
    Some(methods)
}

/// `auth`: "required" (the default), "optional" or "off".
fn read_auth_mode(s: &mut Section<'_>, problems: &mut Problems) -> AuthMode {
    match s.optional::<String>(problems, "auth").as_deref() {
        None | Some("required") => AuthMode::Required,
        Some("optional") => AuthMode::Optional,
        Some("off") => AuthMode::Off,
        Some(other) => {
            problems.push(
                &s.key_path("auth"),
                format!("{other:?} is not one of \"required\", \"optional\", \"off\""),
            );
            AuthMode::Required
        }
    }
}

/// `required_scopes`: non-empty scope names without spaces.
fn read_scopes(s: &mut Section<'_>, problems: &mut Problems) -> Vec<String> {
    let scopes = s.or::<Vec<String>>(problems, "required_scopes", Vec::new());
    if scopes.iter().any(|sc| sc.is_empty() || sc.contains(' ')) {
        problems.push(
            &s.key_path("required_scopes"),
            "scopes are non-empty and contain no spaces",
        );
    }
    scopes
}

/// `token_from`: where the token is looked for, in order (`header` by default).
fn read_token_from(s: &mut Section<'_>, problems: &mut Problems) -> Vec<TokenSource> {
    let sources = s.or::<Vec<String>>(problems, "token_from", vec!["header".to_string()]);
    let mut parsed = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let one = match source.split_once(':') {
            None if source == "header" => Some(TokenSource::Header),
            Some(("cookie", name)) if valid_token_name(name) => {
                Some(TokenSource::Cookie(name.to_string()))
            }
            Some(("query", name)) if valid_token_name(name) => {
                Some(TokenSource::Query(name.to_string()))
            }
            _ => None,
        };
        match one {
            Some(one) => parsed.push(one),
            None => problems.push(
                &format!("{}[{i}]", s.key_path("token_from")),
                format!("{source:?} is not \"header\", \"cookie:NAME\" or \"query:NAME\""),
            ),
        }
    }
    if parsed.is_empty() {
        problems.push(&s.key_path("token_from"), "needs at least one source");
    }
    parsed
}

/// A prefix requests can match: its own canonical form, with no query or `;` parameters.
fn is_canonical_prefix(prefix: &str) -> bool {
    match target::parse(prefix.as_bytes(), None, false) {
        Ok(target::Parsed::Target(t)) => {
            t.target == prefix && !t.has_parameters && t.query().is_none()
        }
        _ => false,
    }
}

/// A cookie or query parameter name a token may come in.
fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Cross-references between routes and the rest of the file: origins and issuers exist, a route
/// that checks tokens has issuers (the only one by default), scopes need authentication, and no
/// two routes share host, prefix and a method.
pub(super) fn check_references(
    routes: &mut [(usize, RouteConfig)],
    origins: &[Name],
    issuers: &[Name],
    problems: &mut Problems,
) {
    for n in 0..routes.len() {
        let (earlier, rest) = routes.split_at_mut(n);
        let (index, route) = &mut rest[0];
        let path = super::reader::item_path("routes", *index, Some(&route.name));
        if !origins.contains(&route.origin) {
            problems.push(
                &format!("{path}.origin"),
                format!("no origin named {:?}", route.origin),
            );
        }
        for name in &route.issuers {
            if !issuers.contains(name) {
                problems.push(
                    &format!("{path}.issuers"),
                    format!("no issuer named {name:?}"),
                );
            }
        }
        if route.auth != AuthMode::Off && route.issuers.is_empty() {
            match issuers {
                [only] => route.issuers.push(only.clone()),
                [] => problems.push(
                    &format!("{path}.auth"),
                    "checking tokens needs at least one [[issuers]] entry (or set auth = \"off\")",
                ),
                _ => problems.push(
                    &format!("{path}.issuers"),
                    "several issuers are configured: list the ones this route accepts",
                ),
            }
        }
        if route.auth == AuthMode::Off && !route.required_scopes.is_empty() {
            problems.push(
                &format!("{path}.required_scopes"),
                "needs auth = \"required\" or \"optional\"",
            );
        }
        for (_, earlier) in earlier.iter() {
            let overlap = match (&earlier.methods, &route.methods) {
                (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                _ => true,
            };
            if earlier.host == route.host && earlier.path_prefix == route.path_prefix && overlap {
                problems.push(
                    &path,
                    format!("same host, path_prefix and methods as route {:?}: which one applies would be ambiguous", earlier.name),
                );
            }
        }
    }
}
