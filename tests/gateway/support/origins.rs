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
