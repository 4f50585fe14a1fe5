//! TLS: listeners that terminate TLS and offer HTTP/2 by ALPN, and origins reached over TLS with
//! their certificate verified. Certificates are made at test time by a throwaway CA.

use rustls_pki_types::pem::PemObject;

use crate::support::*;

fn client(pki: &Pki, tls_addr: std::net::SocketAddr, http1_only: bool) -> reqwest::Client {
    https_client(&pki.ca_pem, "gateway.test", tls_addr, http1_only)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_http1_and_negotiates_http2_by_alpn() {
    let (gw, tls_addr, pki, _origin) = tls_echo_gateway().await;
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
    let (gw, tls_addr, old, _origin) = tls_echo_gateway().await;
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

/// The certificate the TLS listener at `addr` serves to a client asking for `name` (no name when
/// `name` is an IP address), whatever it is.
async fn served_cert(addr: std::net::SocketAddr, name: &str) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .http1_only()
        .resolve(name, addr)
        .build()
        .expect("client");
    let resp = client
        .get(format!("https://{name}:{}/x", addr.port()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

/// A gateway whose TLS listener has a default certificate, one for an exact name and one for a
/// wildcard, each from its own CA; and the three.
async fn sni_gateway() -> (Gateway, std::net::SocketAddr, [Pki; 3]) {
    let echo = echo_origin("o").await;
    let tls_addr = free_port();
    let default = pki(&["gateway.test"]);
    let exact = pki(&["api.example.test"]);
    let wildcard = pki(&["*.tenants.test"]);
    let config = Config::new()
        .with(origin("o", &[echo.addr]))
        .with(route("api", "/", "o"));
    let files = [default.clone(), exact.clone(), wildcard.clone()];
    let gw = Gateway::builder(config)
        .listener(serde_json::json!({
            "addr": tls_addr.to_string(),
            "tls": {
                "cert": "cert.pem", "key": "key.pem",
                "sni": [
                    {"names": ["api.example.test"], "cert": "exact/cert.pem", "key": "exact/key.pem"},
                    {"names": ["*.tenants.test"], "cert": "wild/cert.pem", "key": "wild/key.pem"},
                ],
            },
        }))
        .setup(move |dir| {
            write_pki(dir, &files[0]);
            for (sub, pki) in [("exact", &files[1]), ("wild", &files[2])] {
                std::fs::create_dir_all(dir.join(sub)).expect("dir");
                write_pki(&dir.join(sub), pki);
            }
        })
        .start()
        .await;
    (gw, tls_addr, [default, exact, wildcard])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_exact_name_then_a_one_label_wildcard_then_the_default() {
    let (_gw, tls_addr, [default, exact, wildcard]) = sni_gateway().await;
    let cases = [
        ("api.example.test", &exact, "an exact name"),
        ("API.Example.TEST", &exact, "names compare without case"),
        (
            "acme.tenants.test",
            &wildcard,
            "one label under the wildcard",
        ),
        (
            "a.b.tenants.test",
            &default,
            "a wildcard covers one label only",
        ),
        ("tenants.test", &default, "nor the domain itself"),
        ("other.test", &default, "an unknown name"),
        ("127.0.0.1", &default, "no name at all"),
    ];
    for (name, expected, why) in cases {
        let served = if name == "127.0.0.1" {
            served_cert(tls_addr, &tls_addr.ip().to_string()).await
        } else {
            served_cert(tls_addr, name).await
        };
        assert!(served == der(&expected.cert_pem), "{name}: {why}");
    }
    // A client that verifies gets through with the certificate's own CA.
    let verified = https_client(&wildcard.ca_pem, "acme.tenants.test", tls_addr, false)
        .get(format!("https://acme.tenants.test:{}/x", tls_addr.port()))
        .send()
        .await
        .expect("verified");
    assert_eq!(verified.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_a_rotated_sni_certificate_and_exports_every_expiry() {
    let (gw, tls_addr, [_, exact, _]) = sni_gateway().await;
    assert!(served_cert(tls_addr, "api.example.test").await == der(&exact.cert_pem));
    let listener = tls_addr.to_string();
    let expiry = |m: &Metrics, file: &str| {
        m.value(
            "edgewarden_tls_certificate_expiry_timestamp_seconds",
            &[("listener", listener.as_str()), ("certificate", file)],
        )
    };
    let before = gw.metrics().await;
    let exact_file = gw.dir().join("exact/cert.pem").display().to_string();
    let default_file = gw.dir().join("cert.pem").display().to_string();
    assert!(expiry(&before, &default_file).is_some(), "{}", before.0);

    let until = civil_date(unix_now() / 86_400 + 400);
    let rotated = pki_until(&["api.example.test"], Some(until));
    write_pki(&gw.dir().join("exact"), &rotated);
    gw.reload_and_wait("ok").await;
    assert!(served_cert(tls_addr, "api.example.test").await == der(&rotated.cert_pem));
    let after = gw.metrics().await;
    let exported = expiry(&after, &exact_file).expect("exported") as i64;
    let expected = (unix_now() / 86_400 + 400) * 86_400;
    assert_eq!(exported, expected, "the rotated certificate's expiry");
}

#[test]
fn check_names_certificates_that_expire_soon_or_have_expired() {
    let dir = tempfile::tempdir().expect("dir");
    let today = unix_now() / 86_400;
    let soon = pki_until(&["soon.test"], Some(civil_date(today + 10)));
    let expired = pki_until(&["old.test"], Some(civil_date(today - 3)));
    let fine = pki(&["gateway.test"]);
    write_pki(dir.path(), &fine);
    for (sub, pki) in [("soon", &soon), ("old", &expired)] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("dir");
        write_pki(&dir.path().join(sub), pki);
    }
    let config = Config::new()
        .server(
            "listen",
            serde_json::json!([{
                "addr": "127.0.0.1:18443",
                "tls": {
                    "cert": "cert.pem", "key": "key.pem",
                    "sni": [
                        {"names": ["soon.test"], "cert": "soon/cert.pem", "key": "soon/key.pem"},
                        {"names": ["old.test"], "cert": "old/cert.pem", "key": "old/key.pem"},
                    ],
                },
            }]),
        )
        .with(origin("o", &["127.0.0.1:9000".parse().expect("addr")]))
        .with(route("api", "/", "o"));
    let out = edgewarden(&["check"], &config.write_in(dir.path()));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", out.stdout);
    assert!(
        warnings[0].ends_with("soon/cert.pem expires in 9 days"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].ends_with("old/cert.pem expired 3 days ago"),
        "{}",
        warnings[1]
    );
    assert!(out.stdout.contains(": OK ("), "{}", out.stdout);
}
