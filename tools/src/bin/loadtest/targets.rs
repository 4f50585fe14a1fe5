//! The gateways under test: edgewarden and the HAProxy peer, each started with an equivalent
//! configuration, pinned to one CPU, and observed through /proc (CPU time, peak RSS).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scenarios::{AUDIENCE, ISSUER, Setup};

/// The options the shield and TLS runs share: how long, how often, which scenarios, and where
/// each target's binary is.
#[derive(clap::Args)]
pub struct Common {
    /// A quick correctness run: 1 s runs, one repeat, no HAProxy; fails on any wrong answer.
    #[arg(long)]
    pub smoke: bool,
    #[arg(long, default_value_t = 5)]
    pub duration_s: u64,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Leave HAProxy out.
    #[arg(long)]
    pub no_peer: bool,
    #[command(flatten)]
    pub picked: Picked,
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    pub haproxy: PathBuf,
}

/// Which scenarios run, against which builds, and where the report goes: shared by the shield,
/// TLS and instruction-count runs.
#[derive(clap::Args)]
pub struct Picked {
    /// Only these scenarios (by name).
    #[arg(long = "scenario")]
    pub only: Vec<String>,
    #[arg(long, default_value = "target/release/edgewarden")]
    pub edgewarden: PathBuf,
    /// Pingora alone (cargo build --release --example pingora_floor).
    #[arg(long, default_value = "target/release/examples/pingora_floor")]
    pub floor: PathBuf,
    /// Write the report (markdown) here too.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

impl Picked {
    /// Whether the scenario named `name` was asked for.
    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

impl Common {
    /// Each run's duration, the repeats, and whether HAProxy runs.
    pub fn plan(&self) -> (Duration, usize, bool) {
        if self.smoke {
            (Duration::from_secs(1), 1, false)
        } else {
            (
                Duration::from_secs(self.duration_s.max(1)),
                self.repeats.max(1),
                !self.no_peer,
            )
        }
    }

    /// Whether the scenario named `name` was asked for.
    pub fn wants(&self, name: &str) -> bool {
        self.picked.wants(name)
    }
}

/// Which target a scenario of the shield or TLS runs measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Floor,
    Edgewarden,
    Haproxy,
}

/// The targets of one shield or TLS run: edgewarden always; Pingora alone and HAProxy when a
/// scenario wants them.
pub struct Targets {
    pub floor: Option<Target>,
    pub edgewarden: Target,
    pub haproxy: Option<Target>,
}

impl Targets {
    pub fn get(&self, who: Who) -> Option<&Target> {
        match who {
            Who::Floor => self.floor.as_ref(),
            Who::Edgewarden => Some(&self.edgewarden),
            Who::Haproxy => self.haproxy.as_ref(),
        }
    }
}

/// A running gateway process; killed when dropped.
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// edgewarden's admin listener (metrics), when the harness reads it.
    pub admin: Option<SocketAddr>,
    child: Child,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) and peak RSS of a process and its threads.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

impl Target {
    /// A gateway process, ready once `ready` answers GET `path` with `status`; killed (by drop)
    /// if it never does.
    pub fn started(
        name: &'static str,
        addr: SocketAddr,
        child: Child,
        ready: SocketAddr,
        path: &str,
        status: u16,
    ) -> Result<Target, String> {
        let mut target = Target {
            name,
            addr,
            admin: None,
            child,
        };
        wait_http(ready, path, status, &mut target.child).map_err(|e| format!("{name}: {e}"))?;
        Ok(target)
    }

    pub fn usage(&self) -> Result<Usage, String> {
        usage_of(self.child.id())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop the process with SIGINT, as an operator would, and wait for it to exit (an
    /// instrumented build writes its profile then). Killed if it has not exited in 30 s.
    pub fn interrupt(mut self) -> Result<(), String> {
        let name = self.name;
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        if !sent.success() {
            return Err(format!("{name}: SIGINT not delivered"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("{name} exited with {status} on SIGINT")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => return Err(format!("{name} still running 30 s after SIGINT")),
                Err(e) => return Err(format!("{name}: {e}")),
            }
        }
    }
}

pub fn usage_of(pid: u32) -> Result<Usage, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the command name.
    let cpu_ticks = ticks(11) + ticks(12);
    let cpu = Duration::from_secs_f64(cpu_ticks as f64 / USER_HZ as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(Usage { cpu, peak_rss_kib })
}

/// Clock ticks per second in /proc/*/stat: 100 on every Linux this runs on.
const USER_HZ: u64 = 100;

pub fn free_addr() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener.local_addr().map_err(|e| format!("addr: {e}"))
}

pub fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Wait until `addr` answers GET `path` with `want`.
fn wait_http(addr: SocketAddr, path: &str, want: u16, child: &mut Child) -> Result<(), String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early ({status})"));
        }
        if let Ok(mut conn) = TcpStream::connect(addr) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: loadtest\r\nConnection: close\r\n\r\n");
            let mut answer = Vec::new();
            if conn.write_all(request.as_bytes()).is_ok() && conn.read_to_end(&mut answer).is_ok() {
                let status: Option<u16> = std::str::from_utf8(answer.get(9..12).unwrap_or(&[]))
                    .ok()
                    .and_then(|s| s.parse().ok());
                if status == Some(want) {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("not ready in time".into())
}

/// How to run edgewarden for the load test: one worker thread, the public key of the load test's
/// issuer, and one route per kind of scenario.
pub struct Edgewarden<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    pub root: &'a Path,
    pub plugin_cache: &'a Path,
    /// Replaces the shipped policies' `timeout_ms`.
    pub plugin_timeout_ms: Option<u64>,
    pub origin: SocketAddr,
    /// The OTLP collector a traced gateway exports to.
    pub collector: Option<SocketAddr>,
    pub public_pem: &'a str,
    pub cpu: Option<usize>,
}

impl Edgewarden<'_> {
    /// Start a gateway configured for `setup`.
    pub fn start(&self, setup: Setup) -> Result<Target, String> {
        let addr = free_addr()?;
        let admin = free_addr()?;
        let pem = self.public_pem.trim().replace('\n', "\\n");
        let shipped = (self.root.join("python-plugins"), self.root.join("policies"));
        let edge = self.root.join("benches/python-edge");
        // Where the plugins and the policy files they run with come from.
        let (label, cache, (plugins_dir, policy_files), routes): (&str, &str, _, &[Route]) =
            match setup {
                Setup::Standard => ("standard", "", shipped, &STANDARD),
                Setup::NoCache => ("nocache", "token_cache_entries = 0\n", shipped, &STANDARD),
                Setup::SeedGeo => ("seed", "", (edge.clone(), edge.join("policies")), &SEED_GEO),
                Setup::Traced => ("traced", "", shipped, &STANDARD),
            };
        let policies = self.write_policies(label, &policy_files, routes)?;
        // The scenarios measure each check's own cost: the shield, which would turn a repeated
        // forged token into a negative-cache hit or a penalty-box refusal, is off.
        let mut config = format!(
            "[server]\nlisten = [\"{addr}\"]\nadmin_listen = \"{admin}\"\nthreads = 1\n{cache}\
             trusted_proxies = [\"127.0.0.1/32\"]\npolicies_dir = \"{}\"\nplugins_dir = \"{}\"\n\
             plugin_cache_dir = \"{}\"\n\n\
             [geo]\ncountry_header = \"cf-ipcountry\"\n\n\
             [shield]\nenabled = false\n\n\
             [[issuers]]\nname = \"load\"\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
             algorithms = [\"RS256\"]\npublic_key_pem = \"{pem}\"\n\n",
            policies.display(),
            plugins_dir.display(),
            self.plugin_cache.display(),
        );
        for name in ["global", "uk", "fr"] {
            config.push_str(&format!(
                "[[origins]]\nname = \"{name}\"\nupstreams = [\"{}\"]\n\n",
                self.origin
            ));
        }
        if setup == Setup::Traced {
            let collector = self
                .collector
                .ok_or("a traced gateway needs the collector")?;
            config.push_str(&format!(
                "[tracing]\nendpoint = \"http://{collector}\"\nsample_ratio = 0.01\n\n"
            ));
        }
        // A traced gateway has the standard routes, so that it differs from the standard one
        // only by tracing, and one more whose every request is traced.
        let traced_all: &[Route] = if setup == Setup::Traced {
            &TRACED_ALL
        } else {
            &[]
        };
        for route in routes.iter().chain(traced_all) {
            let policies: Vec<String> = route.policies.iter().map(|p| format!("{p:?}")).collect();
            config.push_str(&format!(
                "[[routes]]\nname = \"{}\"\npath_prefix = \"{}\"\norigin = \"global\"\n\
                 auth = \"{}\"\npolicies = [{}]\n{}\n",
                route.name,
                route.prefix,
                route.auth,
                policies.join(", "),
                route.extra,
            ));
        }
        let path = self.dir.join(format!("edgewarden-{label}.toml"));
        write(&path, &config)?;
        launch_edgewarden(self.binary, self.root, &path, addr, admin, self.cpu)
    }

    /// The policies `routes` use, from the policy files in `source_dir` (`policies/`, or
    /// `benches/python-edge/policies/` for the seed geo router); a `-fresh` name is the same policy
    /// with `isolation = "fresh"`. Only a `-cached` name keeps the file's `[cache]` table: the
    /// other scenarios measure calls into the plugin.
    fn write_policies(
        &self,
        label: &str,
        source_dir: &Path,
        routes: &[Route],
    ) -> Result<std::path::PathBuf, String> {
        let policies = self.dir.join(format!("policies-{label}"));
        std::fs::create_dir_all(&policies).map_err(|e| format!("{}: {e}", policies.display()))?;
        for name in routes.iter().flat_map(|r| r.policies.iter()) {
            let base = name
                .strip_suffix("-fresh")
                .or_else(|| name.strip_suffix("-cached"))
                .unwrap_or(name);
            let source = source_dir.join(format!("{base}.toml"));
            let mut text = std::fs::read_to_string(&source)
                .map_err(|e| format!("{}: {e}", source.display()))?;
            if let Some(ms) = self.plugin_timeout_ms {
                let kept: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.starts_with("timeout_ms"))
                    .collect();
                text = format!("timeout_ms = {ms}\n{}\n", kept.join("\n"));
            }
            if name.ends_with("-fresh") {
                text = text.replace("isolation = \"warm\"", "isolation = \"fresh\"");
            }
            if !name.ends_with("-cached") {
                text = without_table(&text, "cache");
            }
            write(&policies.join(format!("{name}.toml")), &text)?;
        }
        Ok(policies)
    }
}

/// `text` (TOML) without the table `[name]`: its header and every line up to the next header.
fn without_table(text: &str, name: &str) -> String {
    let header = format!("[{name}]");
    let mut inside = false;
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim_start().starts_with('[') {
            inside = line.trim() == header;
        }
        if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// A route of the load test's gateway configuration.
struct Route {
    name: &'static str,
    prefix: &'static str,
    auth: &'static str,
    policies: &'static [&'static str],
    /// More of the route's table, as TOML lines.
    extra: &'static str,
}

const STANDARD: [Route; 8] = [
    Route {
        name: "auth",
        prefix: "/api",
        auth: "required",
        policies: &[],
        extra: "",
    },
    Route {
        name: "open",
        prefix: "/open",
        auth: "off",
        policies: &[],
        extra: "",
    },
    Route {
        name: "identity",
        prefix: "/identity",
        auth: "required",
        policies: &["identity"],
        extra: "",
    },
    Route {
        name: "geo",
        prefix: "/geo",
        auth: "required",
        policies: &["geo"],
        extra: "",
    },
    Route {
        name: "plugins",
        prefix: "/plugins",
        auth: "required",
        policies: &["identity", "geo"],
        extra: "",
    },
    Route {
        name: "plugins_fresh",
        prefix: "/fresh",
        auth: "required",
        policies: &["identity-fresh", "geo-fresh"],
        extra: "",
    },
    Route {
        name: "geo_cached",
        prefix: "/geo-cached",
        auth: "required",
        policies: &["geo-cached"],
        extra: "",
    },
    Route {
        name: "identity_cached",
        prefix: "/identity-cached",
        auth: "required",
        policies: &["identity-cached"],
        extra: "",
    },
];

const TRACED_ALL: [Route; 1] = [Route {
    name: "all",
    prefix: "/all",
    auth: "required",
    policies: &[],
    extra: "trace_sample_ratio = 1.0\n",
}];

const SEED_GEO: [Route; 2] = [
    Route {
        name: "seed",
        prefix: "/seed/",
        auth: "off",
        policies: &["seed_geo"],
        extra: "",
    },
    Route {
        name: "seed_fresh",
        prefix: "/seed-fresh/",
        auth: "off",
        policies: &["seed_geo-fresh"],
        extra: "",
    },
];

pub fn launch_edgewarden(
    binary: &Path,
    root: &Path,
    config: &Path,
    addr: SocketAddr,
    admin: SocketAddr,
    cpu: Option<usize>,
) -> Result<Target, String> {
    let mut command = pinned(cpu, binary);
    // The seed geo router's plugins directory has no .venv beside it.
    command.env(
        "EDGEWARDEN_COMPONENTIZE_PY",
        root.join(".venv/bin/componentize-py"),
    );
    run_edgewarden(command, binary, config, addr, admin)
}

/// `edgewarden run -c config` (warnings and errors on standard error), ready once its admin
/// listener's `/readyz` answers 200.
pub fn run_edgewarden(
    mut command: Command,
    binary: &Path,
    config: &Path,
    addr: SocketAddr,
    admin: SocketAddr,
) -> Result<Target, String> {
    let child = command
        .args(["run", "-c"])
        .arg(config)
        .env("EDGEWARDEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut target = Target::started("edgewarden", addr, child, admin, "/readyz", 200)?;
    target.admin = Some(admin);
    Ok(target)
}

/// HAProxy doing the same job with its native JWT support: 401 without a bearer token, RS256
/// only, `jwt_verify` against the same public key, then `exp`, `iss` and `aud`; `/open` proxies
/// without checks. One thread, like the edgewarden under test.
pub fn start_haproxy(
    haproxy: &Path,
    dir: &Path,
    origin: SocketAddr,
    public_pem: &str,
    cpu: Option<usize>,
) -> Result<Target, String> {
    let addr = free_addr()?;
    let key = dir.join("haproxy-public.pem");
    write(&key, public_pem)?;
    let deny = "http-request return status 401 content-type application/json string \
                '{\"error\":\"invalid_token\"}' hdr www-authenticate 'Bearer realm=\"haproxy\"'";
    let config = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  \
         option http-keep-alive\n\n\
         frontend fe\n  bind {addr}\n  acl open path_beg /open\n  \
         http-request set-var(txn.bearer) http_auth_bearer if !open\n  \
         {deny} if !open !{{ var(txn.bearer) -m found }}\n  \
         http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg') if !open\n  \
         {deny} if !open !{{ var(txn.alg) -m str RS256 }}\n  \
         {deny} if !open !{{ var(txn.bearer),jwt_verify(txn.alg,\"{key}\") -m int 1 }}\n  \
         http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int') if !open\n  \
         http-request set-var(txn.now) date() if !open\n  \
         {deny} if !open {{ var(txn.exp),sub(txn.now) -m int lt 0 }}\n  \
         {deny} if !open !{{ var(txn.bearer),jwt_payload_query('$.iss') -m str {ISSUER} }}\n  \
         {deny} if !open !{{ var(txn.bearer),jwt_payload_query('$.aud') -m str {AUDIENCE} }}\n  \
         http-request del-header authorization if !open\n  \
         default_backend be\n\n\
         backend be\n  server origin {origin}\n",
        key = key.display(),
    );
    let path = dir.join("haproxy.cfg");
    write(&path, &config)?;
    launch_haproxy(haproxy, &path, addr, cpu, "/api", 401)
}

/// Check HAProxy's configuration at `path`, start it pinned to `cpu`, and wait until `addr`
/// answers GET `ready_path` with `status`.
pub fn launch_haproxy(
    haproxy: &Path,
    path: &Path,
    addr: SocketAddr,
    cpu: Option<usize>,
    ready_path: &str,
    status: u16,
) -> Result<Target, String> {
    let check = Command::new(haproxy)
        .args(["-c", "-q", "-f"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", haproxy.display()))?;
    if !check.status.success() {
        return Err(format!(
            "haproxy rejects its configuration: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    let child = pinned(cpu, haproxy)
        .args(["-db", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start haproxy: {e}"))?;
    Target::started("haproxy", addr, child, addr, ready_path, status)
}

pub fn haproxy_version(haproxy: &Path) -> String {
    Command::new(haproxy)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
