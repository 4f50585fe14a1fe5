//! Who the client is and where it is, decided by the gateway: the client address (believing
//! `X-Forwarded-For` only from `[server] trusted_proxies`) and its country (a trusted proxy's
//! country header, else the `[geo] mmdb` database on the client address). The country reaches the
//! origin in `[geo] header` (client-sent copies are always removed) and plugins as
//! `request.country`.

use std::net::IpAddr;

use http::HeaderName;
use ipnet::IpNet;
use maxminddb::PathElement;
use pingora::http::RequestHeader;

use crate::config::Config;
use crate::error::{Error, ErrorKind, OrErr};

/// An ISO 3166-1 alpha-2 code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country([u8; 2]);

impl Country {
    /// Two ASCII letters, any case; anything else is not a country.
    pub fn parse(text: &[u8]) -> Option<Country> {
        match text {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// What the gateway knows about the client before the request's headers are cleaned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client {
    /// The peer, or the first untrusted address in `X-Forwarded-For` when the peer is trusted.
    pub ip: Option<IpAddr>,
    /// The country a trusted proxy stated, if any.
    stated_country: Option<Country>,
}

/// The geo settings of one configuration.
pub struct Geo {
    trusted: Vec<IpNet>,
    mmdb: Option<maxminddb::Reader<Vec<u8>>>,
    country_header: Option<HeaderName>,
    /// `None` when `[geo]` is not configured: no country is decided.
    header: Option<HeaderName>,
}

impl Geo {
    pub fn build(config: &Config) -> Result<Geo, Error> {
        let mut geo = Geo {
            trusted: config.server.trusted_proxies.clone(),
            mmdb: None,
            country_header: None,
            header: None,
        };
        let Some(settings) = &config.geo else {
            return Ok(geo);
        };
        let name = |text: &str| {
            HeaderName::from_bytes(text.as_bytes())
                .or_err_with(ErrorKind::Geo, || format!("geo: {text:?}"))
        };
        geo.header = Some(name(&settings.header)?);
        geo.country_header = settings.country_header.as_deref().map(name).transpose()?;
        if let Some(path) = &settings.mmdb {
            let reader = maxminddb::Reader::open_readfile(path)
                .or_err_with(ErrorKind::Geo, || format!("geo.mmdb: {}", path.display()))?;
            geo.mmdb = Some(reader);
        }
        Ok(geo)
    }

    /// The header the gateway sets to the country, when `[geo]` is configured.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// Whether `ip` is one of `[server] trusted_proxies`.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Decide the client address and read any country a trusted proxy stated. Call before the
    /// gateway removes reserved headers.
    pub fn client(&self, peer: Option<IpAddr>, req: &RequestHeader) -> Client {
        let Some(peer) = peer.map(|ip| ip.to_canonical()) else {
            return Client::default();
        };
        if !self.is_trusted(peer) {
            return Client {
                ip: Some(peer),
                stated_country: None,
            };
        }
        Client {
            ip: Some(self.forwarded_client(peer, req)),
            stated_country: self.stated_country(req),
        }
    }

    /// Walk `X-Forwarded-For` from the right while the hops are trusted proxies; the first
    /// untrusted address is the client. An entry that is not an address ends the walk at the last
    /// hop that was believed.
    fn forwarded_client(&self, peer: IpAddr, req: &RequestHeader) -> IpAddr {
        let mut client = peer;
        for value in req.headers.get_all("x-forwarded-for").iter().rev() {
            for entry in value.as_bytes().rsplit(|&b| b == b',') {
                let Some(ip) = parse_hop(entry) else {
                    return client;
                };
                client = ip;
                if !self.is_trusted(ip) {
                    return client;
                }
            }
        }
        client
    }

    /// A country stated by a trusted proxy, in the configured CDN header only: exactly one
    /// well-formed value counts. A copy of the gateway's own header is never believed, from any
    /// peer; it is removed and written anew.
    fn stated_country(&self, req: &RequestHeader) -> Option<Country> {
        let single = |name: &HeaderName| {
            let mut values = req.headers.get_all(name).iter();
            let first = values.next()?;
            if values.next().is_some() {
                return None;
            }
            Country::parse(first.as_bytes().trim_ascii())
        };
        self.country_header.as_ref().and_then(single)
    }

    /// The client's country: what a trusted proxy stated, else the database's answer.
    /// `None` when `[geo]` is not configured or nothing is known.
    pub fn country(&self, client: &Client) -> Option<Country> {
        self.header.as_ref()?;
        if client.stated_country.is_some() {
            return client.stated_country;
        }
        let (reader, ip) = (self.mmdb.as_ref()?, client.ip?);
        let path = [PathElement::Key("country"), PathElement::Key("iso_code")];
        match reader
            .lookup(ip)
            .and_then(|found| found.decode_path::<&str>(&path))
        {
            Ok(code) => code.and_then(|c| Country::parse(c.as_bytes())),
            Err(e) => {
                tracing::debug!(error = %e, "geo lookup failed");
                None
            }
        }
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`192.0.2.1:80`,
/// `[2001:db8::1]:80`).
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(trusted: &[&str]) -> Geo {
        Geo {
            trusted: trusted.iter().map(|t| t.parse().expect("cidr")).collect(),
            mmdb: None,
            country_header: Some(HeaderName::from_static("cf-ipcountry")),
            header: Some(HeaderName::from_static("x-user-location")),
        }
    }

    use crate::testing::request as req;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let g = geo(&["10.0.0.0/8"]);
        let r = req(&[("x-forwarded-for", "1.2.3.4"), ("cf-ipcountry", "GB")]);
        let c = g.client(Some(ip("192.0.2.9")), &r);
        assert_eq!(c.ip, Some(ip("192.0.2.9")));
        assert_eq!(g.country(&c), None);
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right_to_the_first_untrusted_hop() {
        let g = geo(&["10.0.0.0/8"]);
        let r = req(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        let c = g.client(Some(ip("10.0.0.1")), &r);
        assert_eq!(
            c.ip,
            Some(ip("198.51.100.7")),
            "the spoofable left part is ignored"
        );
    }

    #[test]
    fn a_garbled_hop_ends_the_walk_at_the_last_believed_address() {
        let g = geo(&["10.0.0.0/8"]);
        let r = req(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.2.2.2")]);
        let c = g.client(Some(ip("10.0.0.1")), &r);
        assert_eq!(c.ip, Some(ip("10.2.2.2")));
    }

    #[test]
    fn hops_with_ports_and_mapped_addresses_are_understood() {
        let g = geo(&["10.0.0.0/8"]);
        let r = req(&[("x-forwarded-for", "[2001:db8::1]:443, 10.0.0.3:80")]);
        let c = g.client(Some(ip("::ffff:10.0.0.1")), &r);
        assert_eq!(c.ip, Some(ip("2001:db8::1")));
    }

    #[test]
    fn trusted_proxy_speaks_only_through_the_cdn_header_with_one_clean_value() {
        let g = geo(&["10.0.0.0/8"]);
        let peer = Some(ip("10.0.0.1"));
        let c = g.client(peer, &req(&[("cf-ipcountry", "fr")]));
        assert_eq!(
            g.country(&c).map(|c| c.as_str().to_string()),
            Some("FR".into())
        );
        let c = g.client(
            peer,
            &req(&[("cf-ipcountry", "FR"), ("x-user-location", "GB")]),
        );
        assert_eq!(
            g.country(&c),
            Country::parse(b"FR"),
            "the gateway's own header is not believed"
        );
        let c = g.client(peer, &req(&[("x-user-location", "GB")]));
        assert_eq!(g.country(&c), None);
        let c = g.client(
            peer,
            &req(&[("cf-ipcountry", "GB"), ("cf-ipcountry", "FR")]),
        );
        assert_eq!(g.country(&c), None, "two values: believe neither");
        let c = g.client(peer, &req(&[("cf-ipcountry", "GBR")]));
        assert_eq!(g.country(&c), None);
    }

    #[test]
    fn country_codes_are_two_letters() {
        assert_eq!(Country::parse(b"gb").map(|c| c.0), Some(*b"GB"));
        for bad in [&b""[..], b"G", b"G1", b"GBR", b"\xc3\xa9"] {
            assert!(Country::parse(bad).is_none(), "{bad:?}");
        }
    }
}
