//! Test harness: real gateway processes, real echo origins, a small raw HTTP/1.1 client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use edgewarden_tools::echo::{self, EchoOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_edgewarden");

/// Start an echo origin on an ephemeral loopback port.
pub async fn echo_origin(name: &str) -> EchoOrigin {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo origin");
    echo::spawn(listener, name).expect("spawn echo origin")
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

/// A free address for a listener that the gateway process will bind: a random address in
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

/// What `Gateway::launch` waits for before it returns.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// Both listeners accept and `/readyz` answers 200.
    Ready,
    /// Both listeners accept.
    Listeners,
    /// Nothing: the process was started.
    Nothing,
}

/// A gateway process; killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
    /// The config file and its `[server]` section as written at start.
    pub config_path: PathBuf,
    config_head: String,
}

impl Gateway {
    /// Start a gateway with `[server]` filled in and `body` (origins and routes) appended.
    /// `{grace}` in `server_extra` is not interpreted; it is inserted into `[server]` as is.
    pub async fn start(body: &str) -> Gateway {
        Gateway::start_with(body, "").await
    }

    pub async fn start_with(body: &str, server_extra: &str) -> Gateway {
        Gateway::launch(body, server_extra, "", Wait::Ready, &|_| {}, None).await
    }

    /// Start with policies and plugins: `setup` writes files into the gateway's directory first.
    /// Plugins are built once per test run into a shared cache.
    pub async fn start_with_plugins(body: &str, setup: &dyn Fn(&std::path::Path)) -> Gateway {
        Gateway::start_with_plugins_and(body, "", setup).await
    }

    /// As `start_with_plugins`, with `server_extra` added to `[server]`.
    pub async fn start_with_plugins_and(
        body: &str,
        server_extra: &str,
        setup: &dyn Fn(&std::path::Path),
    ) -> Gateway {
        let cache = concat!(env!("CARGO_TARGET_TMPDIR"), "/plugin-cache");
        let extra = format!(
            "policies_dir = \"policies\"\nplugins_dir = \"plugins\"\nplugin_cache_dir = \"{cache}\"\n{server_extra}"
        );
        Gateway::launch(body, &extra, "", Wait::Ready, setup, None).await
    }

    /// Start and return at once, waiting for nothing (for tests of start-up itself).
    pub async fn spawn(body: &str) -> Gateway {
        Gateway::launch(body, "", "", Wait::Nothing, &|_| {}, None).await
    }

    /// Start and wait only for the listeners, not for readiness.
    pub async fn start_unready(body: &str) -> Gateway {
        Gateway::launch(body, "", "", Wait::Listeners, &|_| {}, None).await
    }

    /// Start with `server_extra` in `[server]` after `setup` wrote files into the directory.
    pub async fn start_with_setup(
        body: &str,
        server_extra: &str,
        setup: &dyn Fn(&std::path::Path),
    ) -> Gateway {
        Gateway::launch(body, server_extra, "", Wait::Ready, setup, None).await
    }

    /// Start with more listeners: `listen_extra` is appended to the `listen` array (with `{dir}`
    /// replaced by the gateway's directory, where `setup` may write files).
    pub async fn start_with_listeners(
        body: &str,
        listen_extra: &str,
        setup: &dyn Fn(&std::path::Path),
    ) -> Gateway {
        Gateway::launch(body, "", listen_extra, Wait::Ready, setup, None).await
    }

    /// Start on these addresses (a replica restarted in place); `None` if it does not get ready.
    pub async fn start_at(
        addr: SocketAddr,
        admin: SocketAddr,
        body: &str,
        server_extra: &str,
    ) -> Gateway {
        Gateway::launch(
            body,
            server_extra,
            "",
            Wait::Ready,
            &|_| {},
            Some((addr, admin)),
        )
        .await
    }

    async fn launch(
        body: &str,
        server_extra: &str,
        listen_extra: &str,
        wait: Wait,
        setup: &dyn Fn(&std::path::Path),
        fixed: Option<(SocketAddr, SocketAddr)>,
    ) -> Gateway {
        // Ports are picked by the kernel, released, then handed to the gateway; if another process
        // takes one in between, the gateway exits at once and we try again with new ports.
        for _ in 0..5 {
            let (addr, admin) = fixed.unwrap_or_else(|| (free_port(), free_port()));
            let dir = tempfile::tempdir().expect("tempdir");
            let extra = match listen_extra {
                "" => String::new(),
                more => format!(
                    ", {}",
                    more.replace("{dir}", &dir.path().display().to_string())
                ),
            };
            let config_head = format!(
                "[server]\nlisten = [\"{addr}\"{extra}]\nadmin_listen = \"{admin}\"\nthreads = 2\n{server_extra}\n"
            );
            let config = format!("{config_head}{body}");
            setup(dir.path());
            let path = dir.path().join("edgewarden.toml");
            std::fs::write(&path, config).expect("write config");
            let stderr_path = dir.path().join("stderr.log");
            let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
            let stdout_path = dir.path().join("stdout.log");
            let stdout = std::fs::File::create(&stdout_path).expect("stdout file");
            let child = Command::new(BIN)
                .args(["run", "-c"])
                .arg(&path)
                .env("EDGEWARDEN_LOG", "info")
                .env(
                    "EDGEWARDEN_COMPONENTIZE_PY",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/componentize-py"),
                )
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .expect("spawn gateway");
            let mut gw = Gateway {
                child,
                addr,
                admin,
                _dir: dir,
                stderr_path,
                stdout_path,
                config_path: path.clone(),
                config_head,
            };
            if wait == Wait::Nothing {
                return gw;
            }
            // Generous: the first gateway to use a plugin builds and compiles it.
            if gw
                .wait_ready(Duration::from_secs(600), wait == Wait::Ready)
                .await
            {
                return gw;
            }
        }
        panic!("gateway did not start");
    }

    /// Ready when both listeners accept and the admin readiness endpoint says so.
    async fn wait_ready(&mut self, timeout: Duration, until_ready: bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("gateway exited early ({status}):\n{}", self.stderr());
                return false;
            }
            // The gateway logs "edgewarden ready" once its own listeners accept. The probe is a
            // real HTTP exchange on the proxy port (a path the gateway rejects itself, so no origin
            // sees it): a bare connect could be the kernel connecting the socket to itself.
            if self.stderr().contains("edgewarden ready")
                && request(self.addr, "GET", "/probe/../ready", &[])
                    .await
                    .is_ok_and(|r| r.status == 400)
                && let Ok(resp) = get(self.admin, "/readyz").await
                && (resp.status == 200 || !until_ready)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Replace the config file's body (everything after `[server]`); `reload` applies it.
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(&self.config_path, format!("{}{body}", self.config_head)).expect("rewrite");
    }

    /// Ask the gateway to reload its configuration (SIGHUP), once its reloader listens, and wait
    /// until the reload has been counted with `result` ("ok" or "error").
    pub async fn reload_and_wait(&self, result: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.stderr().contains("SIGHUP reloads the configuration") {
            assert!(Instant::now() < deadline, "reloader not started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reloads = async || {
            self.metrics()
                .await
                .count("edgewarden_config_reloads_total", &[("result", result)])
        };
        let before = reloads().await;
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
        while reloads().await <= before {
            assert!(
                Instant::now() < deadline,
                "no {result} reload counted:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the gateway wrote to standard output (the access log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// A scrape of the admin listener's `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        let resp = get(self.admin, "/metrics").await.expect("metrics");
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        Metrics(String::from_utf8(resp.body).expect("utf-8"))
    }

    /// The first scrape for which `ready` holds (or the last one after 10 s): the gateway counts
    /// a request just after writing its response, so a client can see the answer first.
    pub async fn metrics_when(&self, ready: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.metrics().await;
            if ready(&m) || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway stderr ---\n{}", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-case names; repeated fields keep every value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// For echo-origin answers: the request headers the origin received, name → values.
    pub fn origin_saw(&self) -> HashMap<String, Vec<String>> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let json = self.json();
        let headers = json["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("not an echo answer: {json}"));
        for pair in headers {
            let k = pair[0].as_str().expect("name").to_string();
            let v = pair[1].as_str().expect("value").to_string();
            map.entry(k).or_default().push(v);
        }
        map
    }
}

/// A client connection that sends raw bytes and reads whole responses.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).await.expect("connect")
    }

    pub async fn try_open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Connect from a chosen loopback source address (the client IP the gateway sees).
    pub async fn open_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> Conn {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind((source, 0).into()).expect("bind source");
        let stream = socket.connect(addr).await.expect("connect");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.expect("write request");
    }

    /// Read one response; `Err` when the connection closed before a full response.
    pub async fn read_response(&mut self, head_request: bool) -> Result<Response, String> {
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        self.buf.drain(..head_end);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let body = if head_request || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(len) = find("content-length") {
            let len: usize = len.parse().map_err(|_| "bad content-length".to_string())?;
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            self.read_chunked().await?
        } else {
            // Close-delimited.
            while self.fill().await.is_ok() {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break pos;
                }
                self.fill().await?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
            .await
            .map_err(|_| "timed out reading".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// True when the peer closed the connection (read returns 0 or reset) within `wait`.
    pub async fn is_closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 1];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }
}

/// One request on a fresh connection: `GET path` with extra raw header lines.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let mut conn = Conn::try_open(addr).await?;
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    conn.send(raw.as_bytes()).await;
    conn.read_response(method == "HEAD").await
}

/// One `GET` on a fresh connection from `source`.
pub async fn get_from(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut conn = Conn::open_from(source, addr).await;
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    conn.send(raw.as_bytes()).await;
    conn.read_response(false).await.expect("response")
}

pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    request(addr, "GET", path, &[]).await
}

/// `[[origins]]` entry for these upstreams.
pub fn origin(name: &str, upstreams: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = upstreams.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[origins]]\nname = \"{name}\"\nupstreams = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// `[[routes]]` entry with `auth = "off"`.
pub fn route(name: &str, prefix: &str, origin: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\norigin = \"{origin}\"\nauth = \"off\"\n{extra}\n"
    )
}

/// A Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series `name` with exactly these labels, if present.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        wanted.sort();
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, rest) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.strip_suffix('}')?),
                    None => (series, ""),
                };
                let mut have: Vec<String> = if rest.is_empty() {
                    Vec::new()
                } else {
                    rest.split("\",")
                        .map(|p| p.trim_end_matches('"').to_string() + "\"")
                        .collect()
                };
                have.sort();
                (series_name == name && have == wanted).then(|| value.parse().ok())?
            })
    }

    /// The sum of every series named `name`.
    pub fn total(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// As `value`, 0 when the series is absent.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

/// The admin token tests use: `server_extra` [`ADMIN_TOKEN_FILE`] with [`write_admin_token`] as
/// the setup.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789-abcdefghijkl";
pub const ADMIN_TOKEN_FILE: &str = "admin_token_file = \"admin-token\"";

/// Write [`ADMIN_TOKEN`] to `dir/admin-token`.
pub fn write_admin_token(dir: &std::path::Path) {
    std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).expect("admin token");
}

/// `POST path` on the admin listener, with `Authorization: Bearer <token>` when given.
pub async fn admin_post(
    admin: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<Response, String> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Length", "0")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    request(admin, "POST", path, &headers).await
}
