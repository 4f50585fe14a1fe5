//! `[[issuers]]`: who may sign tokens, with which algorithms and keys, and what their claims become.

use super::reader::{Problems, Section};
use super::{IssuerConfig, KeySource};
use crate::error::{Error, ErrorKind};
use crate::jwa::{ALGORITHMS, algorithm_from_name};

pub(super) fn read_issuer(
    mut s: Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<IssuerConfig> {
    let name = s.name(problems);
    let issuer: Option<String> = s.required(problems, "issuer");
    if issuer.as_deref() == Some("") {
        problems.push(&s.key_path("issuer"), "must not be empty");
    }
    let audiences: Option<Vec<String>> = s.required(problems, "audiences");
    if audiences
        .as_ref()
        .is_some_and(|a| a.is_empty() || a.iter().any(String::is_empty))
    {
        problems.push(
            &s.key_path("audiences"),
            "needs at least one non-empty audience",
        );
    }
    let algorithms = s
        .required::<Vec<String>>(problems, "algorithms")
        .map(|names| {
            if names.is_empty() {
                problems.push(&s.key_path("algorithms"), "needs at least one algorithm");
            }
            let mut algs = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match algorithm_from_name(name) {
                    Some(alg) => algs.push(alg),
                    None => problems.push(
                        &format!("{}[{i}]", s.key_path("algorithms")),
                        format!(
                            "{name:?} is not supported; use one of {}",
                            ALGORITHMS.map(|(n, _)| n).join(", ")
                        ),
                    ),
                }
            }
            algs
        });

    let keys = read_key_source(&mut s, issuer.as_deref(), base, problems);
    let refresh_interval_s = s.ranged(problems, "refresh_interval_s", 300, 1, 86_400);
    let max_stale_s = s.ranged(problems, "max_stale_s", 86_400, 0, 30 * 86_400);
    let unknown_kid_cooldown_s = s.ranged(problems, "unknown_kid_cooldown_s", 30, 1, 3600);
    let max_keys_without_kid = s.ranged(problems, "max_keys_without_kid", 4, 1, 16) as usize;
    let leeway_s = s.ranged(problems, "leeway_s", 30, 0, 600);
    let required_claims = s.or::<Vec<String>>(problems, "required_claims", vec!["sub".to_string()]);
    let claims_to_headers = s
        .optional::<toml::Table>(problems, "claims_to_headers")
        .map(|table| {
            let mut pairs = Vec::new();
            for (claim, header) in table {
                let path = format!("{}.{claim:?}", s.key_path("claims_to_headers"));
                let Some(header) = header.as_str() else {
                    problems.push(&path, "expected a header name (string)");
                    continue;
                };
                let lower = header.to_ascii_lowercase();
                if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                    problems.push(&path, format!("{header:?} is not a valid header name"));
                } else if claim.is_empty() || claim.split('.').any(str::is_empty) {
                    problems.push(&path, "claim path must be names separated by dots");
                } else {
                    pairs.push((claim, lower));
                }
            }
            pairs
        })
        .unwrap_or_default();
    s.finish(problems);
    Some(IssuerConfig {
        name: name?,
        issuer: issuer?,
        audiences: audiences?,
        algorithms: algorithms?,
        keys: keys?,
        refresh_interval_s,
        max_stale_s,
        unknown_kid_cooldown_s,
        max_keys_without_kid,
        leeway_s,
        required_claims,
        claims_to_headers,
    })
}

/// The one key source: `jwks_url`, `jwks_file`, `public_key_pem`, or OpenID Connect discovery
/// (`discovery = true`, at the issuer's `/.well-known/openid-configuration`, or `discovery_url`).
fn read_key_source(
    s: &mut Section<'_>,
    issuer: Option<&str>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<KeySource> {
    let url: Option<String> = s.optional(problems, "jwks_url");
    let file: Option<String> = s.optional(problems, "jwks_file");
    let pem: Option<String> = s.optional(problems, "public_key_pem");
    let discovery = read_discovery(s, issuer, problems);
    let given = [
        url.is_some(),
        file.is_some(),
        pem.is_some(),
        discovery.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => {
            problems.push(
                &s.key_path("jwks_url"),
                "one of jwks_url, jwks_file, public_key_pem or discovery is required",
            );
            return None;
        }
        1 => {}
        _ => {
            problems.push(
                &s.key_path("jwks_url"),
                "give only one of jwks_url, jwks_file, public_key_pem and discovery",
            );
            return None;
        }
    }
    if let Some(url) = url {
        if let Err(message) = check_key_url(&url) {
            problems.push(&s.key_path("jwks_url"), message);
        }
        return Some(KeySource::JwksUrl(url));
    }
    if let Some(file) = file {
        return Some(KeySource::JwksFile(base.join(file)));
    }
    pem.map(KeySource::PublicKeyPem)
        .or(discovery.flatten().map(KeySource::Discovery))
}

/// `discovery = true` or `discovery_url`: `Some(Some(url))` to fetch, `Some(None)` when asked for
/// but not usable (reported), `None` when not asked for.
fn read_discovery(
    s: &mut Section<'_>,
    issuer: Option<&str>,
    problems: &mut Problems,
) -> Option<Option<String>> {
    let on = s.optional::<bool>(problems, "discovery");
    let explicit: Option<String> = s.optional(problems, "discovery_url");
    let (key, url) = match (on, explicit) {
        (None | Some(false), None) => return None,
        (Some(true), Some(_)) => {
            problems.push(
                &s.key_path("discovery_url"),
                "give discovery = true (the issuer's own metadata) or discovery_url, not both",
            );
            return Some(None);
        }
        (_, Some(url)) => ("discovery_url", url),
        (Some(true), None) => {
            // OpenID Connect Discovery 1.0 §4: the issuer, without a trailing slash, then the
            // well-known path.
            let issuer = issuer?;
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            ("discovery", url)
        }
    };
    match check_key_url(&url) {
        Ok(()) => Some(Some(url)),
        Err(message) => {
            problems.push(&s.key_path(key), message);
            Some(None)
        }
    }
}

/// HTTPS, or plain HTTP to a loopback address only (local identity providers and tests): the rule
/// for every URL keys come from (`jwks_url`, discovery, a discovered `jwks_uri`).
pub fn check_key_url(url: &str) -> Result<(), Error> {
    let problem = |what: String| Error::new(ErrorKind::Config, what);
    let parsed: http::Uri = url
        .parse()
        .map_err(|_| problem(format!("{url:?} is not a URL")))?;
    let host = parsed.host().unwrap_or_default();
    match parsed.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http")
            if host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback()) =>
        {
            Ok(())
        }
        Some("http") => Err(problem(format!(
            "{url:?} must use https (plain http only for loopback addresses)"
        ))),
        _ => Err(problem(format!("{url:?} must be an https:// URL"))),
    }
}
