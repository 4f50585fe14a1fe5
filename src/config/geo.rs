//! `[server] trusted_proxies` and `[geo]`: which peers may speak for the client, and how the
//! gateway decides the client's country.

use ipnet::IpNet;

use super::GeoConfig;
use super::reader::{Problems, Section};

/// `trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]`: CIDRs, or single addresses.
pub(super) fn read_trusted_proxies(s: &mut Section<'_>, problems: &mut Problems) -> Vec<IpNet> {
    read_networks(s, problems, "trusted_proxies")
}

/// A list of CIDRs or single addresses under `key`.
pub(super) fn read_networks(s: &mut Section<'_>, problems: &mut Problems, key: &str) -> Vec<IpNet> {
    let list: Vec<String> = s.or(problems, key, Vec::new());
    let mut nets = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) if net.trunc() != net => problems.push(
                &format!("{}[{i}]", s.key_path(key)),
                format!(
                    "{text:?} has host bits set (did you mean \"{}\"?)",
                    net.trunc()
                ),
            ),
            Ok(net) => nets.push(net),
            Err(_) => problems.push(
                &format!("{}[{i}]", s.key_path(key)),
                format!("{text:?} is not an IP address or CIDR such as \"10.0.0.0/8\""),
            ),
        }
    }
    nets
}

pub(super) fn read_geo(
    mut s: Section<'_>,
    base: &super::reader::Base,
    has_trusted_proxies: bool,
    problems: &mut Problems,
) -> GeoConfig {
    let mmdb = s.optional::<String>(problems, "mmdb").and_then(|text| {
        let path = base.join(&text);
        match maxminddb::Reader::open_readfile(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                problems.push(
                    &s.key_path("mmdb"),
                    format!("{}: not a readable MaxMind database: {e}", path.display()),
                );
                None
            }
        }
    });
    let mut header_name = |key: &str, default: Option<&str>| -> Option<String> {
        let text = s
            .optional::<String>(problems, key)
            .or(default.map(str::to_string))?;
        let lower = text.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            problems.push(&s.key_path(key), format!("{text:?} is not a header name"));
            return None;
        }
        Some(lower)
    };
    let country_header = header_name("country_header", None);
    let header = header_name("header", Some("x-user-location"))
        .unwrap_or_else(|| "x-user-location".to_string());
    if country_header.is_some() && !has_trusted_proxies {
        problems.push(
            &s.key_path("country_header"),
            "is only honoured from server.trusted_proxies, and that list is empty",
        );
    }
    if country_header.as_deref() == Some(header.as_str()) {
        problems.push(
            &s.key_path("country_header"),
            format!("{header:?} is already the header the gateway sets (geo.header); leave country_header out"),
        );
    }
    s.finish(problems);
    GeoConfig {
        mmdb,
        country_header,
        header,
    }
}
