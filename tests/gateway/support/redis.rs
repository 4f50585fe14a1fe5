//! A real `redis-server` (Debian's, installed by `scripts/setup`) for one test: on a free loopback
//! address, without persistence, started and restarted on the same address, paused
//! (`CLIENT PAUSE`), stopped (`SIGSTOP`), resumed and killed. Killed when dropped. With
//! [`RedisServer::start_tls`] it also listens for TLS, with a certificate from a throwaway CA and
//! client certificates required (Redis's default).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::origins::free_port;
use super::pki::{Pki, pki, write_pki};

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// The TLS side of a server: its address, and the files its certificates are in.
pub struct Tls {
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate (and the client's, which is the same one).
    pub pki: Pki,
    dir: tempfile::TempDir,
}

impl Tls {
    /// Where [`Pki`]'s files are: `cert.pem`, `key.pem`, `ca.pem`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl RedisServer {
    /// Start on a free address; returns once the server says it accepts connections.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            addr: free_port(),
            child: None,
            tls: None,
        };
        server.spawn();
        server
    }

    /// As [`RedisServer::start`], also listening for TLS on another port of the same address,
    /// with a certificate for that address and client certificates required.
    pub fn start_tls() -> RedisServer {
        let addr = free_port();
        let tls_addr = std::net::TcpListener::bind((addr.ip(), 0))
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let pki = pki(&[&addr.ip().to_string()]);
        let dir = tempfile::tempdir().expect("dir");
        write_pki(dir.path(), &pki);
        let mut server = RedisServer {
            addr,
            child: None,
            tls: Some(Tls {
                addr: tls_addr,
                pki,
                dir,
            }),
        };
        server.spawn();
        server
    }

    /// The TLS side, for a server from [`RedisServer::start_tls`].
    pub fn tls(&self) -> &Tls {
        self.tls.as_ref().expect("started with start_tls")
    }

    /// `rediss://` URL of this server's TLS port.
    pub fn tls_url(&self) -> String {
        format!("rediss://{}", self.tls().addr)
    }

    /// `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", &self.addr.ip().to_string()])
            .args(["--port", &self.addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"]);
        if let Some(tls) = &self.tls {
            let file = |name: &str| tls.dir().join(name).display().to_string();
            command
                .args(["--tls-port", &tls.addr.port().to_string()])
                .args(["--tls-cert-file", &file("cert.pem")])
                .args(["--tls-key-file", &file("key.pem")])
                .args(["--tls-ca-cert-file", &file("ca.pem")])
                .args(["--tls-auth-clients", "yes"]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server (installed by scripts/setup)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Its own readiness signal: the log line it writes once the port is open.
        let ready = lines
            .by_ref()
            .any(|line| line.is_ok_and(|l| l.contains("Ready to accept connections")));
        assert!(ready, "redis-server exited before it was ready");
        // Keep reading its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// `SIGSTOP`: connections stay open and nothing answers.
    pub fn stop(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP");
    }

    /// `SIGCONT` after [`RedisServer::stop`].
    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT");
    }

    /// `SIGKILL`, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same address, empty, after [`RedisServer::kill`].
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Run one command and return its reply's first line (`+OK`, `:3`, ...).
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).expect("send");
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).expect("reply");
            reply.push(byte[0]);
        }
        String::from_utf8_lossy(&reply).trim_end().to_string()
    }

    /// `CLIENT PAUSE ms ALL`: every client's commands wait that long.
    pub fn pause(&self, ms: u64) {
        assert_eq!(
            self.command(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]),
            "+OK"
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stopped process must be resumed to die promptly.
            let _ = kill(self.pid(), Signal::SIGCONT);
        }
        self.kill();
    }
}
