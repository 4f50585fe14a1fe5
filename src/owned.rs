//! Request headers the gateway owns, made final before the gateway writes any of them.
//!
//! Whatever the gateway tells the origin (identity claims, the country, plugin headers,
//! `X-Forwarded-*`, `X-Request-Id`) must reach it as written, and nothing a client sends may be
//! read as one of them. Three client tricks are closed here, before authentication:
//!
//! - **`Connection` nominations.** A proxy removes the fields `Connection` names on the way out
//!   (RFC 9110 §7.6.1), so a client naming `x-internal-user-id` there would have the header the
//!   gateway wrote removed. The nominated fields are removed now, from the client's request, and
//!   `Connection` keeps only its connection options (`close`, `keep-alive`, `upgrade`), so
//!   nothing the gateway writes later is nominated. Nominating a field that frames or addresses
//!   the request (`Host`, `Content-Length`, `Transfer-Encoding`) is refused.
//! - **Underscore aliases.** CGI, WSGI and PHP origins read `X_Internal_User_Id` and
//!   `X-Internal-User-Id` as the same variable (`HTTP_X_INTERNAL_USER_ID`). A header whose name,
//!   with `_` read as `-`, is owned by the gateway is removed; `drop_underscore_headers` removes
//!   every name holding `_`, as NGINX does by default.
//! - **Path and method overrides** (`X-Original-URL`, `X-Rewrite-URL`, `X-HTTP-Method-Override`,
//!   …), which IIS, Symfony and several frameworks obey: the origin would serve another path or
//!   method than the one routed and authorised. Always removed.
//!
//! Forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) are owned too: `headers`
//! (`proxy::headers`) replaces them for untrusted peers and extends the chain for trusted ones.

use http::header::{self, HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::config::Config;
use crate::header_pattern::HeaderPatterns;

/// Headers that make an origin serve another path or method than the request line's.
const OVERRIDES: [HeaderName; 6] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-override-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// The request id, kept from a trusted client or made by the gateway, sent both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The request header that asks for the decision trace, carrying `[server] trace_secret`.
pub const TRACE_KEY: HeaderName = HeaderName::from_static("x-edgewarden-trace-key");
/// The response header that names the deciding step.
pub const TRACE: HeaderName = HeaderName::from_static("x-edgewarden-trace");

/// Names the gateway writes or decides on every request, besides the configured ones (the last
/// three are [`REQUEST_ID`], [`TRACE`] and [`TRACE_KEY`]).
const GATEWAY_WRITES: [&str; 6] = [
    "x-forwarded-*",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "x-edgewarden-trace",
    "x-edgewarden-trace-key",
];

/// The request header names the gateway owns: exact names and `prefix*` patterns, lower case.
pub struct OwnedHeaders {
    names: HeaderPatterns,
    drop_all_underscores: bool,
}

impl OwnedHeaders {
    /// Reserved headers, claim headers, the country header, every header a policy may set, and
    /// what the gateway writes itself.
    pub fn build(config: &Config) -> OwnedHeaders {
        let configured = config
            .server
            .reserved_headers
            .iter()
            .chain(
                config
                    .issuers
                    .iter()
                    .flat_map(|i| i.claims_to_headers.iter().map(|(_, h)| h)),
            )
            .chain(config.geo.iter().map(|g| &g.header))
            .chain(config.policies.iter().flat_map(|p| p.allow_headers.iter()))
            .map(String::as_str);
        OwnedHeaders {
            names: HeaderPatterns::new(configured.chain(GATEWAY_WRITES)),
            drop_all_underscores: config.server.drop_underscore_headers,
        }
    }

    /// Whether the gateway owns `name` (lower case).
    pub fn owns(&self, name: &str) -> bool {
        self.names.matches(name)
    }

    /// Remove override headers and the headers whose name with `_` read as `-` is owned (every
    /// name holding `_` with `drop_underscore_headers`).
    pub fn strip_aliases(&self, req: &mut RequestHeader) {
        // One pass over the names; nothing is allocated or removed in the common case.
        let doomed: Vec<HeaderName> = req
            .headers
            .keys()
            .filter(|name| {
                let text = name.as_str();
                (text.starts_with("x-") && OVERRIDES.contains(name))
                    || (text.contains('_')
                        && (self.drop_all_underscores || self.owns(&text.replace('_', "-"))))
            })
            .cloned()
            .collect();
        for name in doomed {
            req.remove_header(&name);
        }
    }
}

/// Remove every client-sent copy of the headers `names` matches (any case, every duplicate).
pub fn remove_matching(names: &HeaderPatterns, req: &mut RequestHeader) {
    let doomed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|name| names.matches(name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

/// `Connection` nominated a field that frames or addresses the request.
#[derive(Debug, PartialEq, Eq)]
pub struct FramingNominated;

/// Apply the client's `Connection` nominations now: remove the nominated fields and leave only
/// connection options in `Connection`, so the removal a proxy does on the way out cannot reach
/// a header the gateway writes afterwards.
pub fn apply_connection_nominations(req: &mut RequestHeader) -> Result<(), FramingNominated> {
    // The common cases: no Connection field, or one that holds a single option.
    let mut values = req.headers.get_all(header::CONNECTION).iter();
    match (values.next(), values.next()) {
        (None, _) => return Ok(()),
        (Some(value), None)
            if value.as_bytes().eq_ignore_ascii_case(b"keep-alive")
                || value.as_bytes().eq_ignore_ascii_case(b"close") =>
        {
            return Ok(());
        }
        _ => {}
    }
    let mut options: Vec<&'static str> = Vec::new();
    let mut nominated: Vec<HeaderName> = Vec::new();
    for value in req.headers.get_all(header::CONNECTION) {
        let text = value.to_str().map_err(|_| FramingNominated)?;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let option = ["close", "keep-alive", "upgrade"]
                .into_iter()
                .find(|o| token.eq_ignore_ascii_case(o));
            if let Some(option) = option {
                if !options.contains(&option) {
                    options.push(option);
                }
                continue;
            }
            let name = HeaderName::from_bytes(token.to_ascii_lowercase().as_bytes())
                .map_err(|_| FramingNominated)?;
            if name == header::HOST
                || name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
            {
                return Err(FramingNominated);
            }
            nominated.push(name);
        }
    }
    if nominated.is_empty() {
        return Ok(());
    }
    for name in &nominated {
        req.remove_header(name);
    }
    req.remove_header(&header::CONNECTION);
    if !options.is_empty() {
        let value = HeaderValue::from_str(&options.join(", ")).map_err(|_| FramingNominated)?;
        req.insert_header(header::CONNECTION, value)
            .map_err(|_| FramingNominated)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::request as req;

    fn names(r: &RequestHeader) -> Vec<String> {
        let mut names: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_gateway_owns_the_headers_it_writes() {
        for name in [REQUEST_ID, TRACE, TRACE_KEY] {
            assert!(GATEWAY_WRITES.contains(&name.as_str()), "{name}");
        }
    }

    fn owned(drop_all: bool) -> OwnedHeaders {
        OwnedHeaders {
            names: HeaderPatterns::new([
                "x-user-location",
                "x-request-id",
                "x-internal-*",
                "x-forwarded-*",
            ]),
            drop_all_underscores: drop_all,
        }
    }

    #[test]
    fn nominated_fields_go_now_and_connection_keeps_only_options() {
        let mut r = req(&[
            ("connection", "keep-alive, X-Internal-User-Id"),
            ("connection", "x-secret"),
            ("x-internal-user-id", "evil"),
            ("x-secret", "1"),
            ("x-kept", "1"),
        ]);
        assert_eq!(apply_connection_nominations(&mut r), Ok(()));
        assert_eq!(names(&r), ["connection", "x-kept"]);
        assert_eq!(r.headers["connection"], "keep-alive");
        let mut r = req(&[("connection", "x-a"), ("x-a", "1")]);
        assert_eq!(apply_connection_nominations(&mut r), Ok(()));
        assert!(names(&r).is_empty());
        let mut r = req(&[("connection", "close")]);
        assert_eq!(apply_connection_nominations(&mut r), Ok(()));
        assert_eq!(r.headers["connection"], "close");
    }

    #[test]
    fn nominating_framing_or_host_is_refused() {
        for bad in [
            "host",
            "Content-Length",
            "keep-alive, transfer-encoding",
            "x y",
        ] {
            let mut r = req(&[("connection", bad)]);
            assert_eq!(
                apply_connection_nominations(&mut r),
                Err(FramingNominated),
                "{bad}"
            );
        }
    }

    #[test]
    fn underscore_aliases_of_owned_names_and_overrides_are_removed() {
        let mut r = req(&[
            ("x_internal_user_id", "evil"),
            ("x-internal_user-id", "evil"),
            ("x_user_location", "GB"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x_request_id", "1"),
            ("x_custom_thing", "kept"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-kept", "1"),
        ]);
        owned(false).strip_aliases(&mut r);
        assert_eq!(names(&r), ["x-kept", "x_custom_thing"]);
        owned(true).strip_aliases(&mut r);
        assert_eq!(names(&r), ["x-kept"]);
    }
}
