//! Reads each section of the config file and checks values and cross-references.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use toml::Table;

use super::names::Name;
use super::reader::{Problems, Section};
use super::routes;
use super::{
    Config, HealthCheckConfig, IssuerConfig, LimitConfig, OriginConfig, PassiveHealthConfig,
    PolicyConfig, RouteConfig, ServerConfig,
};
use crate::error::{Error, ErrorKind};

pub(super) fn read(
    table: &Table,
    base: &super::reader::Base,
    source: &Path,
    problems: &mut Problems,
) -> Option<Config> {
    let mut root = Section::new("", table);
    let server = match root.table(problems, "server") {
        Some(section) => read_server(section, base, problems),
        None => {
            problems.push("server", "missing (required)");
            None
        }
    };
    let origins: Vec<OriginConfig> = root
        .tables(problems, "origins")
        .into_iter()
        .filter_map(|s| read_origin(s, base, problems))
        .collect();
    let issuers: Vec<IssuerConfig> = root
        .tables(problems, "issuers")
        .into_iter()
        .filter_map(|s| super::issuers::read_issuer(s, base, problems))
        .collect();
    let indexed_routes: Vec<(usize, RouteConfig)> = root
        .tables(problems, "routes")
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| routes::read_route(s, problems).map(|r| (i, r)))
        .collect();
    let limits: Vec<LimitConfig> = root
        .tables(problems, "limits")
        .into_iter()
        .filter_map(|s| super::limits::read_limit(s, table.contains_key("redis"), problems))
        .collect();
    let shield = super::limits::read_shield(root.table(problems, "shield"), problems);
    let redis = root
        .table(problems, "redis")
        .and_then(|s| super::limits::read_redis(s, base, problems));
    let geo_section = root.table(problems, "geo");
    let access_log = root
        .table(problems, "access_log")
        .map(|section| super::observe::read_access_log(section, problems))
        .unwrap_or_default();
    let tracing = root
        .table(problems, "tracing")
        .and_then(|section| super::otel::read_tracing(section, problems));
    root.finish(problems);
    let geo = geo_section.map(|section| {
        let trusted = server
            .as_ref()
            .is_some_and(|s| !s.trusted_proxies.is_empty());
        super::geo::read_geo(section, base, trusted, problems)
    });

    if origins.is_empty() && !table.contains_key("origins") {
        problems.push("origins", "at least one [[origins]] entry is required");
    }
    if indexed_routes.is_empty() && !table.contains_key("routes") {
        problems.push("routes", "at least one [[routes]] entry is required");
    }
    // Names as written, so a section with problems of its own is still counted in the checks
    // across sections, and does not also make every route that names it look wrong.
    let origin_names = raw_names(table, "origins");
    let issuer_names = raw_names(table, "issuers");
    let limit_names = raw_names(table, "limits");
    check_unique("origins", origin_names.iter().map(Name::as_str), problems);
    check_unique("issuers", issuer_names.iter().map(Name::as_str), problems);
    check_unique(
        "routes",
        raw_names(table, "routes").iter().map(Name::as_str),
        problems,
    );
    check_unique("limits", limit_names.iter().map(Name::as_str), problems);
    super::limits::check_route_limits(
        indexed_routes
            .iter()
            .map(|(i, r)| (*i, &r.name, r.limits.as_slice())),
        &limit_names,
        &limits,
        problems,
    );
    let mut indexed_routes = indexed_routes;
    routes::check_references(&mut indexed_routes, &origin_names, &issuer_names, problems);
    let policies = match &server {
        Some(server) => read_policies(
            &indexed_routes,
            server,
            &origin_names,
            (&limit_names, &limits),
            problems,
        ),
        None => Vec::new(),
    };
    let routes: Vec<RouteConfig> = indexed_routes.into_iter().map(|(_, r)| r).collect();

    let server = server?;
    if let Some(admin) = server.admin_listen
        && server.listen.contains(&admin)
    {
        problems.push(
            "server.admin_listen",
            format!("{admin} is also in server.listen"),
        );
    }
    Some(Config {
        source: source.to_path_buf(),
        server,
        origins,
        routes,
        issuers,
        policies,
        geo,
        access_log,
        limits,
        shield,
        redis,
        tracing,
        demo_key: super::DemoKey::Refuse,
    })
}

/// Read each policy file named by some route, once, and check what it refers to.
fn read_policies(
    routes: &[(usize, RouteConfig)],
    server: &ServerConfig,
    origins: &[Name],
    (limit_names, limits): (&[Name], &[LimitConfig]),
    problems: &mut Problems,
) -> Vec<PolicyConfig> {
    let mut policies: Vec<PolicyConfig> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (_, route) in routes {
        for name in route.policies.iter().map(|p| &p.name) {
            if seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            let Some(policy) = super::policies::read_policy(
                name,
                &server.policies_dir,
                &server.plugins_dir,
                problems,
            ) else {
                continue;
            };
            for origin in &policy.allow_origins {
                if !origins.contains(origin) {
                    problems.push(
                        &policy.file.display().to_string(),
                        format!("allow_origins: no origin named {origin:?}"),
                    );
                }
            }
            super::limits::check_policy_limits(
                &policy.file.display().to_string(),
                &policy.limits,
                limit_names,
                limits,
                problems,
            );
            policies.push(policy);
        }
    }
    policies
}

fn read_server(
    mut s: Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<ServerConfig> {
    let listen = super::tls::read_listen(&mut s, base, problems);
    let admin_listen = super::admin::read_admin_listen(&mut s, problems);
    let admin_token = super::admin::read_admin_token(&mut s, base, problems);
    let threads = s.ranged(problems, "threads", 2, 1, 256);
    let work_stealing = s.or(problems, "work_stealing", false);
    let plugin_lane_threads = s.ranged(problems, "plugin_lane_threads", 1, 1, 64);
    let plugin_lane_nice = s.ranged(problems, "plugin_lane_nice", 10, 0, 19);
    let signature_threads = s.ranged(problems, "signature_threads", threads, 0, 256);
    let signature_nice = s.ranged(problems, "signature_nice", 10, 0, 19);
    let shutdown_grace_s = s.ranged(problems, "shutdown_grace_s", 10, 0, 3600);
    let shutdown_timeout_s = s.ranged(problems, "shutdown_timeout_s", 1, 0, 600);
    let drain_s = s.ranged(problems, "drain_s", 5, 0, 600);
    let watch_interval_s = s.ranged(problems, "watch_interval_s", 0, 0, 3600);
    // Beside the configuration file unless it says otherwise.
    let policies_dir = base.join(s.or(problems, "policies_dir", String::from("policies")));
    let plugins_dir = base.join(s.or(problems, "plugins_dir", String::from("plugins")));
    let plugin_cache_dir =
        base.join(s.or(problems, "plugin_cache_dir", String::from(".cache/plugins")));
    let componentize_py = s
        .optional::<String>(problems, "componentize_py")
        .map(|path| clean(base.join(path)));
    let max_token_bytes = s.ranged(problems, "max_token_bytes", 8192, 256, 65_536) as usize;
    let token_cache_entries =
        s.ranged(problems, "token_cache_entries", 10_000, 0, 10_000_000) as usize;
    let token_cache_bytes = s.ranged(problems, "token_cache_bytes", 16 << 20, 0, 4 << 30) as usize;
    let reserved_headers = s
        .or::<Vec<String>>(
            problems,
            "reserved_headers",
            vec!["x-internal-*".to_string(), "x-user-location".to_string()],
        )
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let lower = h.to_ascii_lowercase();
            let name = lower.strip_suffix('*').unwrap_or(&lower);
            if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(
                    &format!("{}[{i}]", s.key_path("reserved_headers")),
                    format!("{h:?} is not a header name (a trailing * matches a prefix)"),
                );
                return None;
            }
            Some(lower)
        })
        .collect();
    let trusted_proxies = super::geo::read_trusted_proxies(&mut s, problems);
    let drop_underscore_headers = s.or(problems, "drop_underscore_headers", false);
    let trace_secret = super::observe::read_trace_secret(&mut s, problems);
    s.finish(problems);
    let (listen, tls_listeners) = listen?;
    Some(ServerConfig {
        listen,
        tls_listeners,
        admin_listen,
        admin_token,
        threads: threads as usize,
        work_stealing,
        plugin_lane_threads: plugin_lane_threads as usize,
        plugin_lane_nice: plugin_lane_nice as i32,
        signature_threads: signature_threads as usize,
        signature_nice: signature_nice as i32,
        shutdown_grace_s,
        shutdown_timeout_s,
        drain_s,
        watch_interval_s,
        policies_dir: clean(policies_dir),
        plugins_dir: clean(plugins_dir),
        plugin_cache_dir: clean(plugin_cache_dir),
        componentize_py,
        max_token_bytes,
        token_cache_entries,
        token_cache_bytes,
        reserved_headers,
        trusted_proxies,
        drop_underscore_headers,
        trace_secret,
    })
}

fn read_origin(
    mut s: Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<OriginConfig> {
    let name = s.name(problems);
    let upstreams: Option<Vec<String>> = s.required(problems, "upstreams");
    let connect_timeout_ms = s.ranged(problems, "connect_timeout_ms", 1000, 1, 60_000);
    let read_timeout_ms = s.ranged(problems, "read_timeout_ms", 30_000, 1, 3_600_000);
    let tls = s.or(problems, "tls", false);
    let sni: Option<String> = s.optional(problems, "sni");
    let ca_file = super::tls::read_ca_file(&mut s, base, problems);
    if ca_file.is_some() && !tls {
        problems.push(&s.key_path("ca_file"), "only applies with tls = true");
    }
    let health_check = s.table(problems, "health_check").map(|mut hc| {
        let path: Option<String> = hc.optional(problems, "path");
        if let Some(p) = &path
            && (!p.starts_with('/')
                || p.chars()
                    .any(|c| c.is_ascii_whitespace() || c.is_ascii_control()))
        {
            problems.push(
                &hc.key_path("path"),
                format!("{p:?} must be an absolute path such as \"/health\""),
            );
        }
        let interval_s = hc.ranged(problems, "interval_s", 5, 1, 3600);
        hc.finish(problems);
        HealthCheckConfig { path, interval_s }
    });
    let retries = s.ranged(problems, "retries", 2, 0, 10) as u32;
    let passive_health = read_passive_health(&mut s, problems);

    let mut addresses = Vec::new();
    if let Some(list) = &upstreams {
        if list.is_empty() {
            problems.push(&s.key_path("upstreams"), "needs at least one host:port");
        }
        for (i, text) in list.iter().enumerate() {
            let path = format!("{}[{i}]", s.key_path("upstreams"));
            match resolve_upstream(text, base.resolve_names) {
                Ok(addr) => addresses.push(addr),
                Err(message) => problems.push(&path, message),
            }
        }
    }
    let sni = sni.unwrap_or_else(|| {
        upstreams
            .as_ref()
            .and_then(|u| u.first())
            .and_then(|u| u.rsplit_once(':'))
            .map(|(host, _)| host.trim_matches(['[', ']']).to_string())
            .unwrap_or_default()
    });
    if tls && sni.is_empty() {
        problems.push(
            &s.key_path("sni"),
            "must name the host the origin's certificate is issued for (verification is never skipped)",
        );
    }
    s.finish(problems);
    Some(OriginConfig {
        name: name?,
        upstreams: upstreams?,
        addresses,
        connect_timeout_ms,
        read_timeout_ms,
        tls,
        sni,
        ca_file,
        health_check,
        retries,
        passive_health,
    })
}

/// `passive_health = { ... }`: on by default; `enabled = false` turns it off.
fn read_passive_health(
    s: &mut Section<'_>,
    problems: &mut Problems,
) -> Option<PassiveHealthConfig> {
    let defaults = PassiveHealthConfig {
        consecutive_failures: 5,
        eject_s: 30,
        max_eject_s: 300,
        max_ejected_percent: 50,
    };
    let Some(mut t) = s.table(problems, "passive_health") else {
        return Some(defaults);
    };
    let enabled = t.or(problems, "enabled", true);
    let consecutive_failures = t.ranged(
        problems,
        "consecutive_failures",
        defaults.consecutive_failures.into(),
        1,
        1000,
    ) as u32;
    let eject_s = t.ranged(problems, "eject_s", defaults.eject_s, 1, 3600);
    let max_eject_s = t.ranged(
        problems,
        "max_eject_s",
        defaults.max_eject_s.max(eject_s),
        1,
        86_400,
    );
    if max_eject_s < eject_s {
        problems.push(
            &t.key_path("max_eject_s"),
            format!("{max_eject_s} is less than eject_s ({eject_s})"),
        );
    }
    let max_ejected_percent = t.ranged(
        problems,
        "max_ejected_percent",
        defaults.max_ejected_percent.into(),
        1,
        100,
    ) as u32;
    t.finish(problems);
    enabled.then_some(PassiveHealthConfig {
        consecutive_failures,
        eject_s,
        max_eject_s,
        max_ejected_percent,
    })
}

/// The `name`s of the tables in array `key`, read raw (for references to sections with other
/// errors); a name that breaks the rule is reported by its own section.
fn raw_names(table: &Table, key: &str) -> Vec<Name> {
    table
        .get(key)
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    item.get("name")
                        .and_then(|n| n.as_str())
                        .and_then(|n| Name::new(n).ok())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check_unique<'a>(section: &str, names: impl Iterator<Item = &'a str>, problems: &mut Problems) {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            problems.push(section, format!("name {name:?} is used twice"));
        }
    }
}

/// Resolve `host:port` once, at load time.
fn resolve_upstream(text: &str, resolve: bool) -> Result<SocketAddr, Error> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let problem = |what: String| Error::new(ErrorKind::Config, what);
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(problem(format!("{text:?} needs a port (host:port)")));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(problem(format!("{text:?} is not host:port")));
    };
    if host.is_empty() {
        return Err(problem(format!("{text:?} is not host:port")));
    }
    if !resolve {
        // `check --offline`: the name's syntax only; the address is never used.
        return match http::uri::Authority::try_from(host) {
            Ok(_) if !host.contains(['/', '@']) => Ok(SocketAddr::from(([0, 0, 0, 0], port))),
            _ => Err(problem(format!("{host:?} is not a host name"))),
        };
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| problem(format!("{text:?} resolved to no address"))),
        Err(e) => Err(Error::because(
            ErrorKind::Config,
            format!("cannot resolve {text:?}"),
            e,
        )),
    }
}

/// Drop `.` and `..` components lexically so messages show readable paths.
fn clean(path: PathBuf) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if out.file_name().is_some() && !out.ends_with("..") =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
