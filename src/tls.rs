//! Certificates of the TLS listeners: each listener's default certificate and those chosen by
//! the name a client asks for (SNI: exact names, then a `*.` wildcard for the first label, then
//! the default). All are read from their files at start and again at each reload, so a rotated
//! certificate is served to new connections without a restart (the file paths themselves are
//! fixed at start); `/metrics` exports when each one expires.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};

use crate::config::tls::{certified_key, not_after};
use crate::config::{ListenerTls, TlsFiles};
use crate::error::Error;

/// The current certificates of each TLS listener.
pub struct ListenerCerts {
    slots: Vec<Slot>,
}

struct Slot {
    addr: SocketAddr,
    tls: ListenerTls,
    current: Arc<ArcSwap<Certs>>,
}

/// One listener's certificates, loaded.
#[derive(Debug)]
pub struct Certs {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the domain under the wildcard: `*.example.com` is found as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Each certificate's file and expiry (Unix time), for the metrics.
    expiry: Vec<(String, i64)>,
}

impl Certs {
    fn load(addr: SocketAddr, tls: &ListenerTls) -> Result<Certs, Error> {
        let within = |e: Error| e.within(format!("TLS listener {addr}"));
        let load = |files: &TlsFiles| -> Result<(Arc<CertifiedKey>, i64), Error> {
            let key = certified_key(files).map_err(within)?;
            Ok((Arc::new(key), not_after(files).map_err(within)?))
        };
        let (default, default_expiry) = load(&tls.default)?;
        let mut certs = Certs {
            default,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            expiry: vec![(tls.default.cert.display().to_string(), default_expiry)],
        };
        for sni in &tls.sni {
            let (key, expiry) = load(&sni.files)?;
            certs
                .expiry
                .push((sni.files.cert.display().to_string(), expiry));
            for name in &sni.names {
                match name.strip_prefix("*.") {
                    Some(domain) => certs.wildcard.insert(domain.to_string(), key.clone()),
                    None => certs.exact.insert(name.clone(), key.clone()),
                };
            }
        }
        Ok(certs)
    }

    /// The certificate for a client asking for `name` (or for no name).
    pub fn select(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        // rustls hands over the name as sent; host names compare without regard to case.
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, domain)| self.wildcard.get(domain))
            .unwrap_or(&self.default)
    }

    fn export_expiry(&self, addr: SocketAddr) {
        let gauge = &crate::metrics::get().tls_certificate_expiry;
        let listener = addr.to_string();
        for (file, expiry) in &self.expiry {
            gauge
                .with_label_values(&[listener.as_str(), file.as_str()])
                .set(*expiry);
        }
    }
}

/// Hands the listener's current certificate for the name asked for to every new handshake.
#[derive(Debug)]
struct Resolver(Arc<ArcSwap<Certs>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().select(hello.server_name()).clone())
    }
}

impl ListenerCerts {
    pub fn load(listeners: &[(SocketAddr, ListenerTls)]) -> Result<ListenerCerts, Error> {
        let slots = listeners
            .iter()
            .map(|(addr, tls)| {
                let certs = Certs::load(*addr, tls)?;
                certs.export_expiry(*addr);
                Ok(Slot {
                    addr: *addr,
                    tls: tls.clone(),
                    current: Arc::new(ArcSwap::from_pointee(certs)),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(ListenerCerts { slots })
    }

    /// The certificate resolver of the listener at `addr`, if it terminates TLS.
    pub fn resolver(&self, addr: SocketAddr) -> Option<Arc<dyn ResolvesServerCert>> {
        self.slots
            .iter()
            .find(|s| s.addr == addr)
            .map(|s| Arc::new(Resolver(s.current.clone())) as Arc<dyn ResolvesServerCert>)
    }

    /// Read every listener's files again. Nothing is installed unless all of them load.
    pub fn read_again(&self) -> Result<Vec<Certs>, Error> {
        self.slots
            .iter()
            .map(|s| Certs::load(s.addr, &s.tls))
            .collect()
    }

    /// Serve these certificates (from [`ListenerCerts::read_again`]) to new connections.
    pub fn install(&self, certs: Vec<Certs>) {
        for (slot, certs) in self.slots.iter().zip(certs) {
            certs.export_expiry(slot.addr);
            slot.current.store(Arc::new(certs));
        }
    }
}

/// Certificates that `check` names: those that expire within this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// A line for each listener certificate that expires within [`EXPIRY_WARNING_DAYS`] of `now`
/// (Unix time) or has expired. Certificates that do not load are the configuration's problems,
/// reported by its validation.
pub fn expiring(listeners: &[(SocketAddr, ListenerTls)], now: i64) -> Vec<String> {
    let mut lines = Vec::new();
    for (addr, tls) in listeners {
        for files in tls.files() {
            let Ok(expiry) = not_after(files) else {
                continue;
            };
            let days = (expiry - now).div_euclid(86_400);
            let file = files.cert.display();
            if expiry <= now {
                lines.push(format!(
                    "TLS listener {addr}: {file} expired {} days ago",
                    -days - 1
                ));
            } else if days < EXPIRY_WARNING_DAYS {
                lines.push(format!(
                    "TLS listener {addr}: {file} expires in {days} days"
                ));
            }
        }
    }
    lines
}
