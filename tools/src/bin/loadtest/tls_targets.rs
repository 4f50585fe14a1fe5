//! The targets of the TLS scenarios (`loadtest tls`): edgewarden, Pingora alone and HAProxy, each
//! with a TLS listener (HTTP/2 and HTTP/1.1 by ALPN) serving one ECDSA P-256 certificate made for
//! the run, and a plain listener beside it that only tells when the target is ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::scenarios::{AUDIENCE, ISSUER};
use crate::targets::{Target, free_addr, pinned};

/// An ECDSA P-256 certificate for `localhost` signed by a CA made with it, its key, both in one
/// file (HAProxy's `crt`), and the CA (for the harness's own HTTP/2 client).
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub combined: PathBuf,
    pub ca: PathBuf,
}

impl Certificate {
    pub fn write(dir: &Path) -> Result<Certificate, String> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let generate = || {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| format!("key: {e}"))
        };
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| format!("CA: {e}"))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, generate()?).map_err(|e| format!("CA: {e}"))?;
        let key = generate()?;
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .and_then(|params| params.signed_by(&key, &ca))
            .map_err(|e| format!("certificate: {e}"))?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let paths = Certificate {
            cert: dir.join("tls-cert.pem"),
            key: dir.join("tls-key.pem"),
            combined: dir.join("tls-haproxy.pem"),
            ca: dir.join("tls-ca.pem"),
        };
        for (path, text) in [
            (&paths.cert, cert_pem.clone()),
            (&paths.key, key_pem.clone()),
            (&paths.combined, format!("{cert_pem}{key_pem}")),
            (&paths.ca, ca.pem()),
        ] {
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(paths)
    }
}

/// edgewarden with one TLS listener and one plain one, `/api` needing the load test's token.
pub fn start_edgewarden(
    binary: &Path,
    dir: &Path,
    certificate: &Certificate,
    origin: SocketAddr,
    public_pem: &str,
    cpu: Option<usize>,
) -> Result<Target, String> {
    let command = pinned(cpu, binary);
    Ok(start_edgewarden_with(command, binary, dir, certificate, origin, public_pem, "")?.0)
}

/// The same, started by `command` (the binary, maybe under another program), with `more`
/// (TOML tables) added to its configuration; also returns its plaintext address (the target's
/// is the TLS one).
pub fn start_edgewarden_with(
    command: Command,
    binary: &Path,
    dir: &Path,
    certificate: &Certificate,
    origin: SocketAddr,
    public_pem: &str,
    more: &str,
) -> Result<(Target, SocketAddr), String> {
    let (plain, tls, admin) = (free_addr()?, free_addr()?, free_addr()?);
    let pem = public_pem.trim().replace('\n', "\\n");
    // The origin's connect timeout is HAProxy's `timeout connect 5s`: under this load a SYN to
    // the origin is sometimes dropped and sent again after 1 s, which the default 1 s would answer
    // with a 504.
    let config = format!(
        "[server]\nlisten = [\"{plain}\", {{ addr = \"{tls}\", tls = {{ cert = \"{}\", key = \"{}\" }} }}]\n\
         admin_listen = \"{admin}\"\nthreads = 1\n\n\
         [[issuers]]\nname = \"load\"\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
         algorithms = [\"RS256\"]\npublic_key_pem = \"{pem}\"\n\n\
         [[origins]]\nname = \"global\"\nupstreams = [\"{origin}\"]\n\
         connect_timeout_ms = 5000\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\norigin = \"global\"\n\
         auth = \"required\"\n\n{more}",
        certificate.cert.display(),
        certificate.key.display(),
    );
    let path = dir.join("edgewarden-tls.toml");
    std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    let target = crate::targets::run_edgewarden(command, binary, &path, tls, admin)?;
    Ok((target, plain))
}

/// Pingora alone with a TLS listener, answering every request 401 (`examples/pingora_floor`).
pub fn start_floor(
    binary: &Path,
    certificate: &Certificate,
    cpu: Option<usize>,
) -> Result<Target, String> {
    Ok(start_floor_with(pinned(cpu, binary), binary, certificate)?.0)
}

/// The same, started by `command` (the floor's binary, maybe under another program); also
/// returns its plaintext address (the target's is the TLS one).
pub fn start_floor_with(
    mut command: Command,
    binary: &Path,
    certificate: &Certificate,
) -> Result<(Target, SocketAddr), String> {
    let (plain, tls) = (free_addr()?, free_addr()?);
    let child = command
        .arg(plain.to_string())
        .arg("--tls")
        .arg(tls.to_string())
        .arg(&certificate.cert)
        .arg(&certificate.key)
        // Pingora logs every handshake h2load abandons when a run ends.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} (cargo build --release --example pingora_floor): {e}",
                binary.display()
            )
        })?;
    let target = Target::started("pingora-floor", tls, child, plain, "/api", 401)?;
    Ok((target, plain))
}

/// HAProxy with the same certificate, its native token checks on `/api` (as in the shield
/// scenarios, without the penalty box), and the origin behind.
pub fn start_haproxy(
    haproxy: &Path,
    dir: &Path,
    certificate: &Certificate,
    origin: SocketAddr,
    public_pem: &str,
    cpu: Option<usize>,
) -> Result<Target, String> {
    let (plain, tls) = (free_addr()?, free_addr()?);
    let key = dir.join("haproxy-tls-public.pem");
    std::fs::write(&key, public_pem).map_err(|e| format!("{}: {e}", key.display()))?;
    let deny = "http-request return status 401 content-type application/json string \
                '{\"error\":\"invalid_token\"}' hdr www-authenticate 'Bearer realm=\"haproxy\"'";
    let fail = |cond: &str| format!("  {deny} if api {cond}\n");
    let mut config = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  \
         option http-keep-alive\n\n\
         frontend fe\n  bind {plain}\n  bind {tls} ssl crt {} alpn h2,http/1.1\n  \
         acl api path_beg /api\n  \
         {deny} if api !{{ req.hdr(authorization) -m found }}\n",
        certificate.combined.display()
    );
    config.push_str(&crate::shield_targets::haproxy_token_checks(&key, &fail));
    config.push_str(&format!(
        "  http-request del-header authorization if api\n  default_backend be\n\n\
         backend be\n  server origin {origin}\n"
    ));
    let path = dir.join("haproxy-tls.cfg");
    std::fs::write(&path, &config).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut target = crate::targets::launch_haproxy(haproxy, &path, plain, cpu, "/api", 401)?;
    target.addr = tls;
    Ok(target)
}
