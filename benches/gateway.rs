//! What policy plugins add through the running gateway (criterion): the real `edgewarden` binary
//! (built with the bench profile) in front of an echo origin on loopback, one keep-alive client
//! connection, a valid RS256 token (cache hit) on every request, and 0, 1 or 2 warm Python
//! policies on the route (`identity`, then `identity` + `geo`; the shipped plugins).
//!
//! - `gateway_round_trip/{0,1,2}_plugins`: client-observed latency per request (wall clock).
//! - `gateway_cpu/{0,1,2}_plugins`: CPU time the gateway process spent per request (all its
//!   threads, read with `clock_getcpuclockid`), reported by criterion as if it were time.
//!
//! The origin and the client run in this process, so their CPU is not counted in `gateway_cpu`.
//! Each case is checked (status and what the origin saw) before it is timed.
//! Needs `.venv` (scripts/setup); plugins build into `.cache/plugins` on the first run.
//!
//! Run: `cargo bench --bench gateway -- --warm-up-time 1 --measurement-time 3`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use edgewarden_tools::mint::{self, TokenSpec};
use nix::time::{ClockId, clock_getcpuclockid, clock_gettime};
use nix::unistd::Pid;

const PRIVATE_PEM: &str = include_str!("../tests/data/keys/rsa2048-private.pem");
const PUBLIC_PEM: &str = include_str!("../tests/data/keys/rsa2048-public.pem");
const CASES: [(&str, &str); 3] = [
    ("0_plugins", ""),
    ("1_plugins", "\"identity\""),
    ("2_plugins", "\"identity\", \"geo\""),
];

struct Running {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn start_gateway(origin: SocketAddr) -> Running {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let admin = free_addr();
    let pem = PUBLIC_PEM.trim().replace('\n', "\\n");
    let mut text = format!(
        "[server]\nlisten = [\"{addr}\"]\nadmin_listen = \"{admin}\"\nthreads = 2\n\
         trusted_proxies = [\"127.0.0.1/32\"]\npolicies_dir = \"{}\"\nplugins_dir = \"{}\"\n\
         plugin_cache_dir = \"{}\"\n\
         [geo]\ncountry_header = \"cf-ipcountry\"\n\
         [[issuers]]\nname = \"bench\"\nissuer = \"https://id.bench.edgewarden\"\n\
         audiences = [\"api\"]\nalgorithms = [\"RS256\"]\npublic_key_pem = \"{pem}\"\n",
        root.join("policies").display(),
        root.join("python-plugins").display(),
        root.join(".cache/plugins").display(),
    );
    for name in ["global", "uk", "fr"] {
        text.push_str(&format!(
            "[[origins]]\nname = \"{name}\"\nupstreams = [\"{origin}\"]\n"
        ));
    }
    for (name, policies) in CASES {
        text.push_str(&format!(
            "[[routes]]\nname = \"r{name}\"\npath_prefix = \"/{name}\"\norigin = \"global\"\n\
             policies = [{policies}]\n"
        ));
    }
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, text).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_edgewarden"))
        .args(["run", "-c"])
        .arg(&path)
        .env("EDGEWARDEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway");
    let running = Running {
        child,
        addr,
        _dir: dir,
    };
    // Ready when the admin endpoint says so (plugins built, compiled and warm).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(mut conn) = TcpStream::connect(admin) {
            let (status, _) = exchange(&mut conn, "/readyz", "");
            if status == 200 {
                return running;
            }
        }
        assert!(Instant::now() < deadline, "gateway not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One GET on a keep-alive connection; returns the status and the body.
fn exchange(conn: &mut TcpStream, path: &str, extra: &str) -> (u16, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n");
    conn.write_all(request.as_bytes()).expect("write");
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = conn.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("length"))
        .expect("content-length");
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, buf[head_end..head_end + length].to_vec())
}

fn cpu_time(clock: ClockId) -> Duration {
    let t = clock_gettime(clock).expect("gateway cpu clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn through_gateway(c: &mut Criterion) {
    let origin_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let origin = origin_runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        edgewarden_tools::echo::spawn(listener, "origin").expect("echo origin")
    });
    let gateway = start_gateway(origin.addr);
    let clock = clock_getcpuclockid(Pid::from_raw(gateway.child.id() as i32)).expect("cpu clock");
    let token = mint::token(
        PRIVATE_PEM,
        &TokenSpec {
            alg: "RS256".into(),
            kid: None,
            claims: Some(r#"{"email": "alice@example.com"}"#.into()),
            sub: Some("alice".into()),
            iss: Some("https://id.bench.edgewarden".into()),
            aud: vec!["api".into()],
            scope: None,
            expires_in: 86_400,
        },
    )
    .expect("token");
    let extra = format!("Authorization: Bearer {token}\r\ncf-ipcountry: GB\r\n");
    let mut conn = TcpStream::connect(gateway.addr).expect("connect");
    conn.set_nodelay(true).expect("nodelay");

    for (name, _) in CASES {
        let path = format!("/{name}/page");
        let (status, body) = exchange(&mut conn, &path, &extra);
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
        let seen: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
        let has = |header: &str, value: &str| {
            seen["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .any(|pair| pair[0] == header && pair[1] == value)
        };
        assert!(has("x-user-location", "GB"), "{name}: {seen}");
        let plugins = name.as_bytes()[0] - b'0';
        assert_eq!(
            has("x-internal-email", "alice@example.com"),
            plugins >= 1,
            "{name}"
        );
        assert_eq!(has("x-portal", "uk"), plugins >= 2, "{name}");
    }

    let mut group = c.benchmark_group("gateway_round_trip");
    for (name, _) in CASES {
        let path = format!("/{name}/page");
        group.bench_function(name, |b| b.iter(|| exchange(&mut conn, &path, &extra)));
    }
    group.finish();

    let mut group = c.benchmark_group("gateway_cpu");
    for (name, _) in CASES {
        let path = format!("/{name}/page");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let before = cpu_time(clock);
                for _ in 0..iters {
                    exchange(&mut conn, &path, &extra);
                }
                cpu_time(clock).saturating_sub(before)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, through_gateway);
criterion_main!(benches);
