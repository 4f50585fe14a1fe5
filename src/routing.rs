//! Route selection: host, then longest path prefix, then method.
//!
//! Matching reads the canonical host and path (`target`): the host lower case without port or
//! trailing dot, the path without `;` parameters. Routes with a `host` are tried before routes
//! without one (like virtual hosts); within a tier the longest matching `path_prefix` wins.
//! Prefixes match on path-segment boundaries: `/api` matches `/api` and `/api/users` but not
//! `/apix`, case-sensitively unless the route says `case_insensitive` (for origins that fold
//! case, such as IIS). Of the routes sharing the winning host and prefix, the one whose `methods`
//! allow the request's method applies; if none does the answer is 405 with the methods that would
//! have been accepted. `GET` implies `HEAD`.

use http::Method;

use crate::config::RouteConfig;
use crate::ids::RouteId;

/// The outcome of matching one request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch {
    /// The route (its position in the configuration's `routes`).
    Found(RouteId),
    /// The path matched but no route there takes this method; the value is for `Allow`.
    MethodNotAllowed(String),
    NotFound,
}

struct Entry {
    index: usize,
    host: Option<String>,
    prefix: String,
    case_insensitive: bool,
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
                case_insensitive: r.case_insensitive,
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

    /// `host` and `path` are canonical (`target::canonical_host`, `target::Target::route_path`).
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> RouteMatch {
        let host_matches = |e: &Entry| match (&e.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
        };
        let Some(best) = self
            .entries
            .iter()
            .find(|e| host_matches(e) && prefix_matches(&e.prefix, path, e.case_insensitive))
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
                return RouteMatch::Found(RouteId::at(entry.index));
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

fn prefix_matches(prefix: &str, path: &str, case_insensitive: bool) -> bool {
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    let same = if case_insensitive {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    let rest = &path[prefix.len()..];
    same && (prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, Name};

    fn route(
        name: &str,
        host: Option<&str>,
        prefix: &str,
        methods: Option<&[&str]>,
    ) -> RouteConfig {
        RouteConfig {
            name: Name::new(name).expect("name"),
            host: host.map(str::to_string),
            path_prefix: prefix.into(),
            methods: methods.map(|m| m.iter().map(|s| s.parse().expect("method")).collect()),
            origin: Name::new("o").expect("name"),
            auth: AuthMode::Off,
            policies: vec![],
            debug_trace: false,
            trace_sample_ratio: None,
            issuers: vec![],
            required_scopes: vec![],
            token_from: vec![],
            forward_authorization: false,
            allow_path_parameters: false,
            case_insensitive: false,
            limits: vec![],
            limit_cost: 1,
            shield: true,
            cors: None,
            request_limits: Default::default(),
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
            RouteMatch::Found(RouteId::at(1))
        );
        assert_eq!(
            r.find(None, "/api", &Method::GET),
            RouteMatch::Found(RouteId::at(1))
        );
        assert_eq!(
            r.find(None, "/apix", &Method::GET),
            RouteMatch::Found(RouteId::at(0))
        );
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::POST),
            RouteMatch::Found(RouteId::at(2))
        );
        assert_eq!(
            r.find(None, "/api/v2x", &Method::PUT),
            RouteMatch::Found(RouteId::at(1))
        );
        assert_eq!(
            r.find(None, "/static/app.js", &Method::GET),
            RouteMatch::Found(RouteId::at(5))
        );
        assert_eq!(
            r.find(None, "/static", &Method::GET),
            RouteMatch::Found(RouteId::at(0))
        );
    }

    #[test]
    fn methods_split_one_prefix_and_report_allow() {
        let r = table();
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::DELETE),
            RouteMatch::Found(RouteId::at(3))
        );
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::HEAD),
            RouteMatch::Found(RouteId::at(2))
        );
        assert_eq!(
            r.find(None, "/api/v2/x", &Method::PUT),
            RouteMatch::MethodNotAllowed("DELETE, GET, HEAD, POST".into())
        );
    }

    #[test]
    fn host_routes_take_precedence() {
        let r = table();
        assert_eq!(
            r.find(Some("admin.example.com"), "/api", &Method::GET),
            RouteMatch::Found(RouteId::at(4))
        );
        assert_eq!(
            r.find(Some("admin.example.com"), "/api", &Method::POST),
            RouteMatch::MethodNotAllowed("GET, HEAD".into())
        );
        assert_eq!(
            r.find(Some("other.example.com"), "/api", &Method::GET),
            RouteMatch::Found(RouteId::at(1))
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
    fn case_insensitive_routes_fold_ascii_case_only() {
        let mut iis = route("iis", None, "/Admin", None);
        iis.case_insensitive = true;
        let r = Router::new(&[route("root", None, "/", None), iis]);
        for path in ["/admin", "/ADMIN/x", "/aDmIn"] {
            assert_eq!(
                r.find(None, path, &Method::GET),
                RouteMatch::Found(RouteId::at(1)),
                "{path}"
            );
        }
        assert_eq!(
            r.find(None, "/adminx", &Method::GET),
            RouteMatch::Found(RouteId::at(0))
        );
        assert_eq!(
            r.find(None, "/adm", &Method::GET),
            RouteMatch::Found(RouteId::at(0))
        );
        assert_eq!(
            r.find(None, "/%C3%A9", &Method::GET),
            RouteMatch::Found(RouteId::at(0))
        );
    }
}
