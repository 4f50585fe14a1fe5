//! Origins on loopback: echo origins that answer with what they received, and a port where
//! nothing listens. The only place the tests name the echo origin's crate path.

use std::net::SocketAddr;

use edgewarden_tools::echo;
pub use edgewarden_tools::echo::EchoOrigin;
use tokio::net::TcpListener;

/// An echo origin on an ephemeral loopback port.
pub async fn echo_origin(name: &str) -> EchoOrigin {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo origin");
    echo::spawn(listener, name).expect("spawn echo origin")
}

/// An echo origin speaking TLS with `acceptor`'s certificate.
pub async fn tls_echo_origin(name: &str, acceptor: pingora::tls::TlsAcceptor) -> EchoOrigin {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo origin");
    echo::spawn_tls(listener, name, acceptor).expect("spawn TLS echo origin")
}

/// A loopback port held bound but not listening for the test's lifetime: connections to it are
/// refused, and no other test can be handed the same port meanwhile.
pub struct DeadPort {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        let addr = socket
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet");
        DeadPort {
            addr,
            _socket: socket,
        }
    }
}

/// A free address for a listener that another process will bind: a random address in
/// 127.0.0.0/8 (so other tests and other test runs on the machine, which use 127.0.0.1, never take
/// it) with a port the kernel picked for it (bound once, then released).
pub fn free_port() -> SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let [a, b, c, ..] = random.to_le_bytes();
    let ip = std::net::Ipv4Addr::new(127, a.max(2), b, c.max(1));
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
    listener.local_addr().expect("addr")
}

/// An origin that records every byte each connection sent it: it answers 200 once a request is
/// complete (its Content-Length reached, or a chunked body's last chunk), and records a
/// connection's bytes when it answers or when the gateway closes it mid-request.
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl RecordingOrigin {
    pub async fn start() -> RecordingOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recording origin");
        let addr = listener.local_addr().expect("addr");
        let seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let mut bytes = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => bytes.extend_from_slice(&buf[..n]),
                        }
                        if complete_request_len(&bytes).is_some() {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                .await;
                            break;
                        }
                    }
                    if let Ok(mut seen) = record.lock() {
                        seen.push(bytes);
                    }
                });
            }
        });
        RecordingOrigin { addr, seen }
    }

    /// The connections recorded so far, each as the bytes it carried.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// How a `MisbehavingOrigin` treats each request it reads in full.
#[derive(Clone)]
pub enum Misbehaviour {
    /// Never answers; holds the connection open.
    NeverAnswers,
    /// Closes the connection without a byte of answer.
    ClosesEarly,
    /// Sends these bytes as its answer, then closes.
    Sends(Vec<u8>),
    /// Sends a 200 header promising 100 bytes, 10 of them, then nothing more.
    StallsMidBody,
    /// Answers a connection's first request (200, kept alive), then closes the connection when
    /// the next request on it has arrived, without answering: a pooled connection found dead.
    DropsSecondRequest,
}

/// An origin that misbehaves in one chosen way, recording every request it read in full.
pub struct MisbehavingOrigin {
    pub addr: SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl MisbehavingOrigin {
    pub async fn start(how: Misbehaviour) -> MisbehavingOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind misbehaving origin");
        let addr = listener.local_addr().expect("addr");
        let requests: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
        let record = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (record, how) = (record.clone(), how.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 8192];
                    let mut answered = 0;
                    loop {
                        let Some(len) = complete_request_len(&pending) else {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let request: Vec<u8> = pending.drain(..len).collect();
                        if let Ok(mut seen) = record.lock() {
                            seen.push(request);
                        }
                        let reply: &[u8] = match &how {
                            Misbehaviour::NeverAnswers | Misbehaviour::StallsMidBody => {
                                if matches!(how, Misbehaviour::StallsMidBody) {
                                    let _ = stream
                                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                                        .await;
                                }
                                // Hold the connection until the gateway gives up on it.
                                let _ = stream.read(&mut buf).await;
                                return;
                            }
                            Misbehaviour::ClosesEarly => return,
                            Misbehaviour::Sends(bytes) => bytes,
                            Misbehaviour::DropsSecondRequest if answered == 0 => {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                            }
                            Misbehaviour::DropsSecondRequest => return,
                        };
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                        answered += 1;
                        if matches!(how, Misbehaviour::Sends(_)) {
                            return;
                        }
                    }
                });
            }
        });
        MisbehavingOrigin { addr, requests }
    }

    /// Every request read in full so far, as its bytes.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The length of the whole request at the start of `bytes` (the head, then Content-Length bytes
/// or a chunked body up to its last chunk), once it has all arrived.
fn complete_request_len(bytes: &[u8]) -> Option<usize> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return bytes[end..].ends_with(b"0\r\n\r\n").then_some(bytes.len());
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (bytes.len() >= end + length).then_some(end + length)
}
