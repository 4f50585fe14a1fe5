//! TLS: listeners that terminate TLS and offer HTTP/2 by ALPN, and origins reached over TLS with
//! their certificate verified. Certificates are made at test time by a throwaway CA.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;

use crate::support::*;

/// A throwaway CA and a certificate it signed for `names`.
#[derive(Clone)]
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(names: &[&str]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "edgewarden test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("leaf params")
        .signed_by(&key, &ca)
        .expect("leaf");
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write_pki(dir: &Path, pki: &Pki) {
    std::fs::write(dir.join("cert.pem"), &pki.cert_pem).expect("cert");
    std::fs::write(dir.join("key.pem"), &pki.key_pem).expect("key");
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).expect("ca");
}

/// A gateway with a plain listener and a TLS one (certificate for `gateway.test`) in front of an
/// echo origin; the second value is the TLS listener's address.
async fn tls_gateway() -> (Gateway, std::net::SocketAddr, Pki) {
    let origin_ = echo_origin("o").await;
    let tls_addr = free_port();
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/", "o"))
        .with(route("private", "/private", "o").set("auth", "required"))
        .with(pem_issuer());
    let pki_files = pki.clone();
    let gw = Gateway::builder(config)
        .listener(serde_json::json!({
            "addr": tls_addr.to_string(),
            "tls": {"cert": "cert.pem", "key": "key.pem"},
        }))
        .setup(move |dir| write_pki(dir, &pki_files))
        .start()
        .await;
    (gw, tls_addr, pki)
}

fn client(pki: &Pki, tls_addr: std::net::SocketAddr, http1_only: bool) -> reqwest::Client {
    https_client(&pki.ca_pem, "gateway.test", tls_addr, http1_only)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_http1_and_negotiates_http2_by_alpn() {
    let (gw, tls_addr, pki) = tls_gateway().await;
    let url = format!("https://gateway.test:{}/hello?x=1", tls_addr.port());

    let h1 = client(&pki, tls_addr, true)
        .get(&url)
        .send()
        .await
        .expect("HTTPS/1.1 request");
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 200);
    let echoed: serde_json::Value = h1.json().await.expect("echo");
    assert_eq!(echoed["path"], "/hello");

    let h2_client = client(&pki, tls_addr, false);
    let h2 = h2_client.get(&url).send().await.expect("HTTP/2 request");
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), 200);
    let echoed: serde_json::Value = h2.json().await.expect("echo");
    assert_eq!(echoed["path"], "/hello");
    assert_eq!(echoed["query"], "x=1");
    // An early rejection over HTTP/2, then the same connection serves again.
    let denied = h2_client
        .get(format!("https://gateway.test:{}/private", tls_addr.port()))
        .send()
        .await
        .expect("HTTP/2 rejection");
    assert_eq!(denied.version(), reqwest::Version::HTTP_2);
    assert_eq!(denied.status(), 401);
    let body: serde_json::Value = denied.json().await.expect("json");
    assert_eq!(body["error"], "missing_token");
    let again = h2_client.get(&url).send().await.expect("again");
    assert_eq!(again.status(), 200);

    // The plain listener is unchanged.
    assert_eq!(get(gw.addr, "/x").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_over_tls_is_verified_against_the_configured_ca() {
    let origin_pki = pki(&["origin.test"]);
    pingora::tls::install_default_crypto_provider();
    let certs = vec![
        rustls_pki_types::CertificateDer::from_pem_slice(origin_pki.cert_pem.as_bytes())
            .expect("cert"),
    ];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(origin_pki.key_pem.as_bytes())
        .expect("key");
    let config = pingora::tls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = pingora::tls::TlsAcceptor::from(std::sync::Arc::new(config));
    let secure = tls_echo_origin("secure", acceptor).await;

    let other_ca = pki(&["origin.test"]);
    let tls_origin = |name: &str, sni: &str, ca_file: &str| {
        origin(name, &[secure.addr])
            .set("tls", true)
            .set("sni", sni)
            .set("ca_file", ca_file)
    };
    let config = Config::new()
        .with(tls_origin("verified", "origin.test", "origin-ca.pem"))
        .with(tls_origin("untrusted", "origin.test", "other-ca.pem"))
        .with(tls_origin("wrong-name", "elsewhere.test", "origin-ca.pem"))
        .with(route("verified", "/ok", "verified"))
        .with(route("untrusted", "/untrusted", "untrusted"))
        .with(route("wrong-name", "/wrong-name", "wrong-name"));
    let gw = Gateway::builder(config)
        .file("origin-ca.pem", &origin_pki.ca_pem)
        .file("other-ca.pem", &other_ca.ca_pem)
        .start()
        .await;

    let ok = get(gw.addr, "/ok/x").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["origin"], "secure");
    for path in ["/untrusted/x", "/wrong-name/x"] {
        let refused = get(gw.addr, path).await;
        assert_eq!(refused.status, 502, "{path}");
    }
    assert_eq!(
        secure.hits(),
        1,
        "only the verified connection carried a request"
    );
    let m = gw
        .metrics_when(|m| m.total("edgewarden_upstream_errors_total") >= 2.0)
        .await;
    assert_eq!(
        m.count(
            "edgewarden_upstream_errors_total",
            &[("origin", "untrusted"), ("kind", "tls")]
        ),
        1.0,
        "{}",
        m.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_a_rotated_certificate_to_new_connections() {
    let (gw, tls_addr, old) = tls_gateway().await;
    let url = format!("https://gateway.test:{}/x", tls_addr.port());
    let before = client(&old, tls_addr, false);
    assert_eq!(
        before.get(&url).send().await.expect("old cert").status(),
        200
    );

    let rotated = pki(&["gateway.test"]);
    write_pki(gw.dir(), &rotated);
    gw.reload_and_wait("ok").await;
    let after = client(&rotated, tls_addr, false);
    assert_eq!(
        after.get(&url).send().await.expect("rotated cert").status(),
        200
    );
    let stale = client(&old, tls_addr, true);
    assert!(
        stale.get(&url).send().await.is_err(),
        "a new connection is no longer served the old certificate"
    );

    // A rotation to a key that does not match is refused; the rotated certificate keeps serving.
    std::fs::write(gw.dir().join("key.pem"), &old.key_pem).expect("mismatched key");
    gw.reload_and_wait("error").await;
    let again = client(&rotated, tls_addr, true);
    assert_eq!(
        again.get(&url).send().await.expect("still served").status(),
        200
    );
}

/// A request body that sends one chunk and then nothing, never ending.
struct StallingBody(Option<bytes::Bytes>);

impl hyper::body::Body for StallingBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        match self.0.take() {
            Some(chunk) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// Pingora 0.9 has no read timeout on an HTTP/2 stream's body, so `body_timeout_ms` is checked as
/// each piece arrives; a body that stops altogether is bounded by the origin's read timeout, and
/// the connection's other streams go on being served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_that_stops_is_cut_by_the_origins_read_timeout() {
    let recording = RecordingOrigin::start().await;
    let tls_addr = free_port();
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        .with(origin("o", &[recording.addr]).set("read_timeout_ms", 1000))
        .with(route("upload", "/", "o").set("body_timeout_ms", 500));
    let pki_files = pki.clone();
    let _gw = Gateway::builder(config)
        .listener(serde_json::json!({
            "addr": tls_addr.to_string(),
            "tls": {"cert": "cert.pem", "key": "key.pem"},
        }))
        .setup(move |dir| write_pki(dir, &pki_files))
        .start()
        .await;
    let h2_client = client(&pki, tls_addr, false);
    let url = format!("https://gateway.test:{}/upload", tls_addr.port());
    // One connection, made before the two streams share it.
    let warm = h2_client
        .post(&url)
        .body("warm")
        .send()
        .await
        .expect("warm");
    assert_eq!(warm.version(), reqwest::Version::HTTP_2);
    let started = std::time::Instant::now();
    let stalled = h2_client
        .post(&url)
        .body(reqwest::Body::wrap(StallingBody(Some("first".into()))))
        .send();
    let other = async {
        let resp = h2_client.post(&url).body("whole").send().await;
        (resp.map(|r| r.status()), started.elapsed())
    };
    let (stalled, (other, other_took)) = tokio::join!(
        tokio::time::timeout(std::time::Duration::from_secs(10), stalled),
        other
    );
    let took = started.elapsed();
    let resp = stalled
        .expect("no answer within 10 s")
        .expect("HTTP/2 answer");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 504, "after {took:?}");
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    assert_eq!(other.expect("the other stream"), 200);
    assert!(
        other_took < std::time::Duration::from_millis(900),
        "{other_took:?}"
    );
}
