//! Route selection: host, then longest path prefix, then method.
//!
//! Routes with a `host` are tried before routes without one (like virtual hosts); within a tier
//! the longest matching `path_prefix` wins. Prefixes match on path-segment boundaries: `/api`
//! matches `/api` and `/api/users` but not `/apix`. Of the routes sharing the winning host and
//! prefix, the one whose `methods` allow the request's method applies; if none does the answer is
//! 405 with the methods that would have been accepted. `GET` implies `HEAD`.

use http::Method;

use crate::config::RouteConfig;

/// The outcome of matching one request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch {
    /// Index of the route in the configuration's `routes`.
    Found(usize),
    /// The path matched but no route there takes this method; the value is for `Allow`.
    MethodNotAllowed(String),
    NotFound,
}

struct Entry {
    index: usize,
    host: Option<String>,
    prefix: String,
    methods: Option<Vec<Method>>,
}

impl Entry {
    fn allows(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(list) => {
                list.contains(method) || (*method == Method::HEAD && list.contains(&Method::GET))
            }
        }
    }
}

/// Route table, sorted once at load.
pub struct Router {
    entries: Vec<Entry>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut entries: Vec<Entry> = routes
            .iter()
            .enumerate()
            .map(|(index, r)| Entry {
                index,
                host: r.host.clone(),
                prefix: r.path_prefix.clone(),
                methods: r.methods.clone(),
            })
            .collect();
        // Host-specific first, then longer prefixes, then configuration order.
        entries.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
                .then(a.index.cmp(&b.index))
        });
        Router { entries }
    }

    /// `host` is the request's host without port, any case; `path` is the decoded-free raw path.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> RouteMatch {
        let host_matches = |e: &Entry| match (&e.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        let Some(best) = self
            .entries
            .iter()
            .find(|e| host_matches(e) && prefix_matches(&e.prefix, path))
        else {
            return RouteMatch::NotFound;
        };
        let group = self
            .entries
            .iter()
            .filter(|e| e.host == best.host && e.prefix == best.prefix && host_matches(e));
        let mut allow: Vec<String> = Vec::new();
        for entry in group {
            if entry.allows(method) {
                return RouteMatch::Found(entry.index);
            }
            for m in entry.methods.iter().flatten() {
                allow.push(m.to_string());
                if *m == Method::GET {
                    allow.push("HEAD".to_string());
                }
            }
        }
        allow.sort();
        allow.dedup();
        RouteMatch::MethodNotAllowed(allow.join(", "))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// Paths whose meaning depends on how the origin normalises them: dot segments (plain or
/// percent-encoded), encoded slashes or backslashes, backslashes, empty segments and control
/// characters. A gateway that routed such a path by its raw text could send `/public/../admin` past
/// the checks on `/admin`, so these requests are rejected rather than repaired.
pub fn path_is_ambiguous(path: &str) -> bool {
    let bytes = path.as_bytes();
    if path.contains("//") || bytes.iter().any(|&b| b == b'\\' || b.is_ascii_control()) {
        return true;
    }
    // Encoded slash, backslash or NUL, in either case.
    let encoded_separator = bytes.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'f') | (b'5', b'c') | (b'0', b'0')
            )
    });
    encoded_separator || path.split('/').any(is_dot_segment)
}

/// `.` or `..`, with any dot possibly written `%2e` / `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;

    fn route(
        name: &str,
        host: Option<&str>,
        prefix: &str,
        methods: Option<&[&str]>,
    ) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            host: host.map(str::to_string),
            path_prefix: prefix.into(),
            methods: methods.map(|m| m.iter().map(|s| s.parse().expect("method")).collect()),
            origin: "o".into(),
            auth: AuthMode::Off,
            policies: vec![],
            debug_trace: false,
            issuers: vec![],
            required_scopes: vec![],
            token_from: vec![],
            forward_authorization: false,
        }
    }

    fn table() -> Router {
        Router::new(&[
            route("root", None, "/", None),
            route("api", None, "/api", None),
            route("api-v2", None, "/api/v2", Some(&["GET", "POST"])),
            route("api-v2-delete", None, "/api/v2", Some(&["DELETE"])),
            route("admin-host", Some("admin.example.com"), "/", Some(&["GET"])),
            route("static", None, "/static/", None),
        ])
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = table();
        assert_eq!(
            r.find(None, "/api/users", &Method::GET),
            RouteMatch::Found(1)
        );
        assert_eq!(r.find(None, "/api", &Method::GET), RouteMatch::Found(1));
        assert_eq!(r.find(None, "/apix", &Method::GET), RouteMatch::Found(0));
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::POST),
            RouteMatch::Found(2)
        );
        assert_eq!(r.find(None, "/api/v2x", &Method::PUT), RouteMatch::Found(1));
        assert_eq!(
            r.find(None, "/static/app.js", &Method::GET),
            RouteMatch::Found(5)
        );
        assert_eq!(r.find(None, "/static", &Method::GET), RouteMatch::Found(0));
    }

    #[test]
    fn methods_split_one_prefix_and_report_allow() {
        let r = table();
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::DELETE),
            RouteMatch::Found(3)
        );
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::HEAD),
            RouteMatch::Found(2)
        );
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::PUT),
            RouteMatch::MethodNotAllowed("DELETE, GET, HEAD, POST".into())
        );
    }

    #[test]
    fn host_routes_take_precedence_case_insensitively() {
        let r = table();
        assert_eq!(
            r.find(Some("ADMIN.example.com"), "/api", &Method::GET),
            RouteMatch::Found(4)
        );
        assert_eq!(
            r.find(Some("admin.example.com"), "/api", &Method::POST),
            RouteMatch::MethodNotAllowed("GET, HEAD".into())
        );
        assert_eq!(
            r.find(Some("other.example.com"), "/api", &Method::GET),
            RouteMatch::Found(1)
        );
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::new(&[route("api", Some("a.test"), "/api", None)]);
        assert_eq!(
            r.find(Some("a.test"), "/other", &Method::GET),
            RouteMatch::NotFound
        );
        assert_eq!(
            r.find(Some("b.test"), "/api", &Method::GET),
            RouteMatch::NotFound
        );
        assert_eq!(r.find(None, "/api", &Method::GET), RouteMatch::NotFound);
    }

    #[test]
    fn ambiguous_paths_are_detected() {
        for bad in [
            "/a/../admin",
            "/a/./b",
            "/..",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "//admin",
            "/a%00",
            "/a/%2E",
            "/a/%2e%2e",
            "/a%2Fb",
        ] {
            assert!(path_is_ambiguous(bad), "{bad}");
        }
        for good in [
            "/",
            "/api/v1.2/x",
            "/a/..b",
            "/a/.well-known/jwks.json",
            "/a%20b",
            "/a/...",
            "/a/%2e%2e%2e",
            "/a/.%2",
        ] {
            assert!(!path_is_ambiguous(good), "{good}");
        }
    }
}
