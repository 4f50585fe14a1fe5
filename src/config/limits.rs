//! `[[limits]]` and `[shield]`: the named rate limits routes apply, and the shield stages that run
//! before a token is verified (penalty box, verification budget, negative cache).

use super::geo::read_networks;
use super::names::Name;
use super::reader::{Problems, Section};
use super::{
    LimitConfig, LimitKey, LimitKind, LimitMode, LimitStore, MAX_WINDOWS, OnStoreError,
    RedisConfig, RedisTls, ShieldConfig, TlsFiles, Window,
};

/// The largest `rate` and `burst`.
const MAX_RATE: u64 = 1_000_000_000;

/// One `[[limits]]` entry (`has_redis`: the file has a `[redis]` section).
pub(super) fn read_limit(
    mut s: Section<'_>,
    has_redis: bool,
    problems: &mut Problems,
) -> Option<LimitConfig> {
    let name = s.name(problems);
    let key = read_key(&mut s, problems);
    let kind = read_kind(&mut s, problems);
    let store = s.choice(
        problems,
        "store",
        [("local", LimitStore::Local), ("redis", LimitStore::Redis)],
    );
    if store == LimitStore::Redis && !has_redis {
        problems.push(
            &s.key_path("store"),
            "\"redis\" needs a [redis] section with its url",
        );
    }
    if key == Some(LimitKey::Policy) && matches!(kind, Some(LimitKind::Concurrency(_))) {
        problems.push(
            &s.key_path("concurrency"),
            "a policy's limit counts requests, not requests in flight: give it a rate",
        );
    }
    if store == LimitStore::Redis && matches!(kind, Some(LimitKind::Concurrency(_))) {
        problems.push(
            &s.key_path("store"),
            "a concurrency limit counts in this replica only: use \"local\"",
        );
    }
    let mode = s.choice(
        problems,
        "mode",
        [
            ("enforce", LimitMode::Enforce),
            ("shadow", LimitMode::Shadow),
        ],
    );
    s.finish(problems);
    Some(LimitConfig {
        name: name?,
        key: key?,
        kind: kind?,
        mode,
        store,
    })
}

/// `concurrency = N`, or `rate` (required) with `per_s` and `burst`, then any further `windows`.
fn read_kind(s: &mut Section<'_>, problems: &mut Problems) -> Option<LimitKind> {
    if let Some(max) = s.optional::<u64>(problems, "concurrency") {
        for key in ["rate", "per_s", "burst", "windows"] {
            if s.optional::<toml::Value>(problems, key).is_some() {
                problems.push(&s.key_path(key), "a concurrency limit has no rate windows");
            }
        }
        if !(1..=MAX_RATE).contains(&max) {
            problems.push(
                &s.key_path("concurrency"),
                format!("{max} is out of range 1..={MAX_RATE}"),
            );
            return None;
        }
        return Some(LimitKind::Concurrency(max));
    }
    let first = read_window(s, problems);
    let mut windows = vec![first?];
    for mut window in s.tables(problems, "windows") {
        let read = read_window(&mut window, problems);
        window.finish(problems);
        windows.extend(read);
    }
    if windows.len() > MAX_WINDOWS {
        problems.push(
            &s.key_path("windows"),
            format!("at most {} windows besides the first", MAX_WINDOWS - 1),
        );
        return None;
    }
    Some(LimitKind::Rate(windows))
}

/// `rate` (required) requests per `per_s` seconds (default 1), `burst` at once (default: `rate`).
fn read_window(s: &mut Section<'_>, problems: &mut Problems) -> Option<Window> {
    let rate: Option<u64> = s.required(problems, "rate");
    let rate = rate.filter(|&rate| {
        let fits = (1..=MAX_RATE).contains(&rate);
        if !fits {
            problems.push(
                &s.key_path("rate"),
                format!("{rate} is out of range 1..={MAX_RATE}"),
            );
        }
        fits
    });
    let per_s = s.ranged(problems, "per_s", 1, 1, 366 * 86_400);
    // Absent: the whole rate may come at once.
    let burst = s.ranged(problems, "burst", rate.unwrap_or(1), 1, MAX_RATE);
    Some(Window {
        rate: rate?,
        per_s,
        burst,
    })
}

/// `key = "client_ip" | "route" | "claim:PATH" | "header:NAME" | "policy"`.
fn read_key(s: &mut Section<'_>, problems: &mut Problems) -> Option<LimitKey> {
    let text: String = s.required(problems, "key")?;
    let key = match text.split_once(':') {
        None if text == "client_ip" => Some(LimitKey::ClientIp),
        None if text == "route" => Some(LimitKey::Route),
        None if text == "policy" => Some(LimitKey::Policy),
        Some(("claim", path)) => {
            let parts: Vec<String> = path.split('.').map(str::to_string).collect();
            (!parts.iter().any(String::is_empty)).then_some(LimitKey::Claim(parts))
        }
        Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .map(|h| LimitKey::Header(h.as_str().to_string())),
        _ => None,
    };
    if key.is_none() {
        problems.push(
            &s.key_path("key"),
            format!(
                "{text:?} is not \"client_ip\", \"route\", \"claim:PATH\" (dots for nesting), \
                 \"header:NAME\" or \"policy\""
            ),
        );
    }
    key
}

/// `[shield]`; absent, every stage is on with its default.
pub(super) fn read_shield(s: Option<Section<'_>>, problems: &mut Problems) -> ShieldConfig {
    let defaults = ShieldConfig::default();
    let Some(mut s) = s else {
        return defaults;
    };
    let d = &defaults;
    let enabled = s.or(problems, "enabled", d.enabled);
    let exempt = read_networks(&mut s, problems, "exempt");
    let max_keys = s.ranged(problems, "max_keys", d.max_keys as u64, 1_000, 100_000_000) as usize;
    let penalty_failures = s.ranged(
        problems,
        "penalty_failures",
        d.penalty_failures,
        0,
        1_000_000,
    );
    let penalty_window_s = s.ranged(problems, "penalty_window_s", d.penalty_window_s, 1, 86_400);
    let penalty_s = s.ranged(problems, "penalty_s", d.penalty_s, 1, 86_400);
    let verify_per_s = s.ranged(problems, "verify_per_s", d.verify_per_s, 0, 1_000_000);
    let verify_burst = s.ranged(problems, "verify_burst", d.verify_burst, 1, 1_000_000);
    let negative_cache_entries = s.ranged(
        problems,
        "negative_cache_entries",
        d.negative_cache_entries as u64,
        0,
        10_000_000,
    ) as usize;
    let negative_cache_ttl_s = s.ranged(
        problems,
        "negative_cache_ttl_s",
        d.negative_cache_ttl_s,
        1,
        3_600,
    );
    let connections_per_s = s.ranged(
        problems,
        "connections_per_s",
        d.connections_per_s,
        0,
        1_000_000,
    );
    let connections_burst = s.ranged(
        problems,
        "connections_burst",
        d.connections_burst,
        1,
        1_000_000,
    );
    s.finish(problems);
    ShieldConfig {
        enabled,
        exempt,
        max_keys,
        penalty_failures,
        penalty_window_s,
        penalty_s,
        verify_per_s,
        verify_burst,
        negative_cache_entries,
        negative_cache_ttl_s,
        connections_per_s,
        connections_burst,
    }
}

/// Every limit a route names exists and is keyed by something the request carries
/// (`names`: the names of the `[[limits]]` entries as written; `limits`: those that were read).
pub(super) fn check_route_limits<'a>(
    routes: impl Iterator<Item = (usize, &'a Name, &'a [Name])>,
    names: &[Name],
    limits: &[LimitConfig],
    problems: &mut Problems,
) {
    for (index, route, listed) in routes {
        let route = super::reader::item_path("routes", index, Some(route));
        for (i, name) in listed.iter().enumerate() {
            let path = format!("{route}.limits[{i}]");
            if !names.contains(name) {
                problems.push(&path, format!("{name:?} is not a [[limits]] entry"));
            } else if is_policy_limit(limits, name) == Some(true) {
                problems.push(
                    &path,
                    format!(
                        "{name:?} has key = \"policy\": policies spend it (list it in the \
                         policy file's `limits`), routes do not"
                    ),
                );
            }
        }
    }
}

/// Every limit a policy file lists exists and has `key = "policy"`.
pub(super) fn check_policy_limits(
    file: &str,
    listed: &[Name],
    names: &[Name],
    limits: &[LimitConfig],
    problems: &mut Problems,
) {
    for (i, name) in listed.iter().enumerate() {
        if !names.contains(name) {
            problems.push(
                file,
                format!("limits[{i}]: {name:?} is not a [[limits]] entry"),
            );
        } else if is_policy_limit(limits, name) == Some(false) {
            problems.push(
                file,
                format!(
                    "limits[{i}]: {name:?} is keyed by the request, not by the policy: give it \
                     key = \"policy\""
                ),
            );
        }
    }
}

/// Whether the limit `name` has `key = "policy"`; `None` when it was not read (its own problems
/// are reported).
fn is_policy_limit(limits: &[LimitConfig], name: &Name) -> Option<bool> {
    let limit = limits.iter().find(|l| &l.name == name)?;
    Some(limit.key == LimitKey::Policy)
}

/// `[redis]`.
pub(super) fn read_redis(
    mut s: Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<RedisConfig> {
    let url: Option<String> = s.required(problems, "url");
    let scheme_tls = url.as_deref().map(|url| {
        if let Some(rest) = url.strip_prefix("rediss://") {
            // redis-rs reads `#insecure` as "skip verifying the certificate": never.
            if rest.contains('#') {
                problems.push(
                    &s.key_path("url"),
                    "a rediss:// URL may not carry a #fragment (the certificate is always verified)",
                );
            }
            true
        } else {
            if !url.starts_with("redis://") {
                problems.push(
                    &s.key_path("url"),
                    format!("{url:?} is not a redis:// or rediss:// URL"),
                );
            }
            false
        }
    });
    let tls = read_redis_tls(&mut s, base, problems, scheme_tls.unwrap_or(false));
    let timeout_ms = s.ranged(problems, "timeout_ms", 10, 1, 10_000);
    let on_store_error = s.choice(
        problems,
        "on_store_error",
        [
            ("local", OnStoreError::Local),
            ("allow", OnStoreError::Allow),
            ("deny", OnStoreError::Deny),
        ],
    );
    let breaker_failures = s.ranged(problems, "breaker_failures", 5, 1, 10_000);
    let breaker_open_ms = s.ranged(problems, "breaker_open_ms", 1000, 10, 600_000);
    s.finish(problems);
    Some(RedisConfig {
        url: url?,
        tls,
        timeout_ms,
        on_store_error,
        breaker_failures,
        breaker_open_ms,
    })
}

/// `ca_file`, `client_cert` and `client_key` of `[redis]`: only with a `rediss://` URL (`tls`),
/// each file checked to hold PEM, the client's pair checked to match.
fn read_redis_tls(
    s: &mut Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
    tls: bool,
) -> Option<RedisTls> {
    let ca_file: Option<String> = s.optional(problems, "ca_file");
    let client_cert: Option<String> = s.optional(problems, "client_cert");
    let client_key: Option<String> = s.optional(problems, "client_key");
    if !tls {
        for (key, set) in [
            ("ca_file", ca_file.is_some()),
            ("client_cert", client_cert.is_some()),
            ("client_key", client_key.is_some()),
        ] {
            if set {
                problems.push(&s.key_path(key), "only applies with a rediss:// URL");
            }
        }
        return None;
    }
    let ca_file = ca_file.map(|path| base.join(path));
    if let Some(path) = &ca_file
        && let Err(e) = super::tls::load_ca(path)
    {
        problems.push(&s.key_path("ca_file"), e);
    }
    let client = match (client_cert, client_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: base.join(cert),
                key: base.join(key),
            };
            if let Err(e) = super::tls::certified_key(&files) {
                problems.push(&s.key_path("client_cert"), e);
            }
            Some(files)
        }
        (None, None) => None,
        (Some(_), None) => {
            problems.push(&s.key_path("client_key"), "needed with client_cert");
            None
        }
        (None, Some(_)) => {
            problems.push(&s.key_path("client_cert"), "needed with client_key");
            None
        }
    };
    Some(RedisTls { ca_file, client })
}
