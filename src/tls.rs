//! Certificates of the TLS listeners: read from their files at start and again at each reload,
//! so a rotated certificate is served to new connections without a restart (the file paths
//! themselves are fixed at start).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};

use crate::config::TlsFiles;
use crate::config::tls::certified_key;
use crate::error::Error;

/// The current certificate of each TLS listener.
pub struct ListenerCerts {
    slots: Vec<Slot>,
}

struct Slot {
    addr: SocketAddr,
    files: TlsFiles,
    current: Arc<ArcSwap<CertifiedKey>>,
}

/// Hands the listener's current certificate to every new handshake.
#[derive(Debug)]
struct Resolver(Arc<ArcSwap<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl ListenerCerts {
    pub fn load(listeners: &[(SocketAddr, TlsFiles)]) -> Result<ListenerCerts, Error> {
        let slots = listeners
            .iter()
            .map(|(addr, files)| {
                let key =
                    certified_key(files).map_err(|e| e.within(format!("TLS listener {addr}")))?;
                Ok(Slot {
                    addr: *addr,
                    files: files.clone(),
                    current: Arc::new(ArcSwap::from_pointee(key)),
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
    pub fn read_again(&self) -> Result<Vec<CertifiedKey>, Error> {
        self.slots
            .iter()
            .map(|s| {
                certified_key(&s.files).map_err(|e| e.within(format!("TLS listener {}", s.addr)))
            })
            .collect()
    }

    /// Serve these certificates (from [`ListenerCerts::read_again`]) to new connections.
    pub fn install(&self, keys: Vec<CertifiedKey>) {
        for (slot, key) in self.slots.iter().zip(keys) {
            slot.current.store(Arc::new(key));
        }
    }
}
