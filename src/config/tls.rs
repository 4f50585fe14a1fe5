//! TLS in the configuration: listeners that terminate TLS (certificate chain and key, checked to
//! load and to match), and the CA file an origin's certificate is verified against.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::reader::{Problems, Section};
use super::{ListenerTls, SniCertificate, TlsFiles};
use crate::error::{Error, ErrorKind, OrErr};

/// Every listener address, and the certificates of those that terminate TLS.
type Listeners = (Vec<SocketAddr>, Vec<(SocketAddr, ListenerTls)>);

/// `listen = ["127.0.0.1:8080", { addr = "0.0.0.0:8443", tls = { cert = "...", key = "..." } }]`:
/// each entry an address, or a table read key by key (so a misspelt key is named, with the key
/// it most likely meant).
pub(super) fn read_listen(
    s: &mut Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<Listeners> {
    let list: Vec<toml::Value> = s.required(problems, "listen")?;
    if list.is_empty() {
        problems.push(&s.key_path("listen"), "needs at least one address");
    }
    let mut seen = HashSet::new();
    let mut addrs = Vec::new();
    let mut tls = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let path = format!("{}[{i}]", s.key_path("listen"));
        let (text, listener_tls) = match entry {
            toml::Value::String(text) => (text.clone(), None),
            toml::Value::Table(table) => {
                let mut entry = Section::new(path.clone(), table);
                let addr: Option<String> = entry.required(problems, "addr");
                let listener_tls = entry
                    .table(problems, "tls")
                    .and_then(|t| read_listener_tls(t, base, problems));
                entry.finish(problems);
                let Some(addr) = addr else { continue };
                (addr, listener_tls)
            }
            other => {
                problems.push(
                    &path,
                    format!(
                        "expected an address or a table with addr, found {}",
                        other.type_str()
                    ),
                );
                continue;
            }
        };
        let addr = match text.parse::<SocketAddr>() {
            Ok(addr) if !seen.insert(addr) => {
                problems.push(&path, format!("{addr} is listed twice"));
                continue;
            }
            Ok(addr) => addr,
            Err(_) => {
                problems.push(&path, format!("{text:?} is not an IP:port address"));
                continue;
            }
        };
        addrs.push(addr);
        if let Some(listener_tls) = listener_tls {
            tls.push((addr, listener_tls));
        }
    }
    Some((addrs, tls))
}

/// A certificate chain and key of `s` (`cert`, `key`), checked to load and to match.
fn read_files(
    s: &mut Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<TlsFiles> {
    let cert: Option<String> = s.required(problems, "cert");
    let key: Option<String> = s.required(problems, "key");
    let files = TlsFiles {
        cert: base.join(cert?),
        key: base.join(key?),
    };
    if let Err(e) = certified_key(&files) {
        problems.push(s.path(), e);
    }
    Some(files)
}

/// A TLS listener's default certificate and its SNI certificates, each checked to load and to
/// match its key, and the names checked: well formed, each claimed by one certificate only.
fn read_listener_tls(
    mut s: Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<ListenerTls> {
    let default = read_files(&mut s, base, problems);
    let mut claimed = HashSet::new();
    let mut sni = Vec::new();
    for mut entry in s.tables(problems, "sni") {
        let files = read_files(&mut entry, base, problems);
        let listed: Option<Vec<String>> = entry.required(problems, "names");
        let names_path = entry.key_path("names");
        entry.finish(problems);
        let (Some(listed), Some(files)) = (listed, files) else {
            continue;
        };
        if listed.is_empty() {
            problems.push(&names_path, "needs at least one host name");
        }
        let mut names = Vec::with_capacity(listed.len());
        for name in listed {
            let lower = name.to_ascii_lowercase();
            if !sni_name(&lower) {
                problems.push(
                    &names_path,
                    format!(
                        "{name:?} is not a host name or a \"*.\" wildcard such as \"*.example.com\""
                    ),
                );
            } else if !claimed.insert(lower.clone()) {
                problems.push(
                    &names_path,
                    format!("{name:?} is already served by another certificate of this listener"),
                );
            } else {
                names.push(lower);
            }
        }
        sni.push(SniCertificate { names, files });
    }
    s.finish(problems);
    Some(ListenerTls {
        default: default?,
        sni,
    })
}

/// A DNS host name of labels (letters, digits, '-', not at a label's ends), or `*.` and one, with
/// at least two labels after the wildcard.
fn sni_name(name: &str) -> bool {
    let (wildcard, host) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let labels: Vec<&str> = host.split('.').collect();
    let label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    host.len() <= 253 && labels.iter().all(label) && labels.len() >= if wildcard { 2 } else { 1 }
}

/// When the first certificate of `files` stops being valid, as a Unix time.
pub fn not_after(files: &TlsFiles) -> Result<i64, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};

    let shown = files.cert.display();
    let leaf = CertificateDer::pem_file_iter(&files.cert)
        .or_err_with(ErrorKind::Tls, || shown.to_string())?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::Tls, format!("{shown}: no PEM certificate")))?
        .or_err_with(ErrorKind::Tls, || shown.to_string())?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| Error::new(ErrorKind::Tls, format!("{shown}: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

/// A listener's certificate chain and key, ready to serve (read from its files now): both load,
/// and the key belongs to the chain's first certificate.
pub fn certified_key(files: &TlsFiles) -> Result<pingora::tls::sign::CertifiedKey, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let (cert, key) = (files.cert.display(), files.key.display());
    for path in [&files.cert, &files.key] {
        std::fs::metadata(path).or_err_with(ErrorKind::Tls, || path.display().to_string())?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .or_err_with(ErrorKind::Tls, || cert.to_string())?;
    let private_key = PrivateKeyDer::from_pem_file(&files.key).ok();
    let Some(private_key) = private_key.filter(|_| !chain.is_empty()) else {
        return Err(Error::new(
            ErrorKind::Tls,
            format!(
                "{cert} / {key}: no PEM certificate in the first or no PEM private key in the second"
            ),
        ));
    };
    pingora::tls::install_default_crypto_provider();
    let provider = pingora::tls::CryptoProvider::get_default()
        .ok_or_else(|| Error::new(ErrorKind::Tls, "no TLS crypto provider"))?;
    pingora::tls::sign::CertifiedKey::from_der(chain, private_key, provider).map_err(|e| match e {
        pingora::tls::RusTlsError::InconsistentKeys(_) => Error::new(
            ErrorKind::Tls,
            format!("{cert} / {key}: the private key does not belong to the certificate"),
        ),
        e => Error::because(ErrorKind::Tls, format!("{cert} / {key}"), e),
    })
}

/// `ca_file`: PEM certificates an origin's certificate must chain to (instead of the system's).
pub(super) fn read_ca_file(
    s: &mut Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<PathBuf> {
    let path = base.join(s.optional::<String>(problems, "ca_file")?);
    if let Err(e) = load_ca(&path) {
        problems.push(&s.key_path("ca_file"), e);
    }
    Some(path)
}

/// Every certificate in a PEM file, for an origin's peer options.
pub fn load_ca(path: &Path) -> Result<Arc<pingora::protocols::tls::CaType>, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let shown = path.display();
    let mut store = pingora::tls::RootCertStore::empty();
    let mut certs = Vec::new();
    let iter =
        CertificateDer::pem_file_iter(path).or_err_with(ErrorKind::Tls, || shown.to_string())?;
    for cert in iter {
        let cert = cert.or_err_with(ErrorKind::Tls, || shown.to_string())?;
        // Parsed as a trust anchor first, so the wrapper below is given a valid certificate.
        store.add(cert.clone()).or_err_with(ErrorKind::Tls, || {
            format!("{shown}: not a usable CA certificate")
        })?;
        let raw = cert.as_ref().to_vec();
        certs.push(pingora::utils::tls::WrappedX509::new(raw, |raw| {
            pingora::utils::tls::parse_x509(raw)
        }));
    }
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::Tls,
            format!("{shown}: no PEM certificate"),
        ));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}
