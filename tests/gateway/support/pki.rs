//! Throwaway certificate authorities and the certificates they sign, made at test time, and
//! gateways with a TLS listener serving one of them.

use std::net::SocketAddr;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;

use super::{Config, EchoOrigin, Gateway, echo_origin, free_port, origin, pem_issuer, route};

/// A throwaway CA and a certificate it signed for `names`.
#[derive(Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki(names: &[&str]) -> Pki {
    pki_until(names, None)
}

/// As [`pki`], with the leaf certificate valid until the start of `not_after` (year, month, day).
pub fn pki_until(names: &[&str], not_after: Option<(i32, u8, u8)>) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "edgewarden test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    if let Some((year, month, day)) = not_after {
        params.not_after = rcgen::date_time_ymd(year, month, day);
    }
    let cert = params.signed_by(&key, &ca).expect("leaf");
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

pub fn write_pki(dir: &Path, pki: &Pki) {
    std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("cert");
    std::fs::write(dir.join("key.pem"), &pki.key_pem).expect("key");
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).expect("ca");
}

/// The calendar date `days` days after 1970-01-01 (proleptic Gregorian).
pub fn civil_date(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The DER of a PEM certificate.
pub fn der(pem: &str) -> Vec<u8> {
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("cert")
        .to_vec()
}

/// A gateway with `config`, its plain listener and a TLS one on a free address serving `pki`'s
/// certificate (HTTP/2 offered by ALPN); the second value is the TLS listener's address.
pub async fn tls_listener_gateway(config: Config, pki: &Pki) -> (Gateway, SocketAddr) {
    let tls_addr = free_port();
    let files = pki.clone();
    let gw = Gateway::builder(config)
        .listener(serde_json::json!({
            "addr": tls_addr.to_string(),
            "tls": {"cert": "cert.pem", "key": "key.pem"},
        }))
        .setup(move |dir| write_pki(dir, &files))
        .start()
        .await;
    (gw, tls_addr)
}

/// A gateway with a TLS listener (certificate for `gateway.test`) before an echo origin: `/` is
/// public, `/private` needs a token.
pub async fn tls_echo_gateway() -> (Gateway, SocketAddr, Pki, EchoOrigin) {
    let echo = echo_origin("o").await;
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        .with(origin("o", &[echo.addr]))
        .with(route("api", "/", "o"))
        .with(route("private", "/private", "o").set("auth", "required"))
        .with(pem_issuer());
    let (gw, tls_addr) = tls_listener_gateway(config, &pki).await;
    (gw, tls_addr, pki, echo)
}
