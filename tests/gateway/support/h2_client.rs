//! A raw HTTP/2 client (the `h2` crate over rustls) for what reqwest will not send: streams reset
//! at will, pseudo-headers written as given, oversized header lists.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;

use super::pki::Pki;

/// A raw HTTP/2 connection to the TLS listener at `addr` (trusting `pki`'s CA), and the task
/// driving it, which ends with how the connection ended.
pub async fn raw_h2(
    pki: &Pki,
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    pingora::tls::install_default_crypto_provider();
    let mut roots = pingora::tls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("ca"))
        .expect("root");
    let mut config = pingora::tls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = pingora::tls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("gateway.test").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS");
    let (send, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
    (send, tokio::spawn(connection))
}

pub fn h2_get(path: &str) -> ::http::Request<()> {
    ::http::Request::get(format!("https://gateway.test{path}"))
        .body(())
        .expect("request")
}

/// `GET path` on a new stream of `send`'s connection: its status, answered within 5 s.
pub async fn h2_status(send: h2::client::SendRequest<bytes::Bytes>, path: &str) -> u16 {
    let mut send = send.ready().await.expect("the connection takes a stream");
    let (response, _) = send.send_request(h2_get(path), true).expect("request");
    tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered")
        .expect("response")
        .status()
        .as_u16()
}

/// `GET` with this `:authority` and `:path` on a new stream of `send`'s connection: the status
/// and the body, answered within 5 s.
pub async fn h2_exchange(
    send: &h2::client::SendRequest<bytes::Bytes>,
    authority: &str,
    path: &str,
) -> (u16, Vec<u8>) {
    let mut send = send
        .clone()
        .ready()
        .await
        .expect("the connection takes a stream");
    let request = ::http::Request::get(format!("https://{authority}{path}"))
        .body(())
        .expect("request");
    let (response, _) = send.send_request(request, true).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered")
        .expect("response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, bytes)
}
