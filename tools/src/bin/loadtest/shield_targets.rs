//! The targets of the shield scenarios (`loadtest shield`): edgewarden with the shield on and its
//! limits, HAProxy doing the same with stick tables, Pingora alone answering every request 401
//! (`examples/pingora_floor`), and the Redis server edgewarden's shared limit uses.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::scenarios::{AUDIENCE, ISSUER};
use crate::targets::{Target, free_addr, pinned};

/// A client address with this many refused tokens in 60 s is refused 429 for 60 s, by both
/// gateways (edgewarden's `[shield]` default).
pub const PENALTY_FAILURES: u32 = 50;
/// `/limited`: requests per second per client address.
pub const LIMITED_RATE: u32 = 100;

/// edgewarden with the shield on (its defaults) and the limits the scenarios use; `/api` needs a
/// token, `/limited` has a per-address limit, `/local` and `/redis` a per-user limit that never
/// refuses, counted locally or in Redis.
pub fn start_edgewarden(
    binary: &Path,
    dir: &Path,
    origin: SocketAddr,
    redis: SocketAddr,
    public_pem: &str,
    cpu: Option<usize>,
) -> Result<Target, String> {
    let addr = free_addr()?;
    let admin = free_addr()?;
    let pem = public_pem.trim().replace('\n', "\\n");
    let config = format!(
        "[server]\nlisten = [\"{addr}\"]\nadmin_listen = \"{admin}\"\nthreads = 1\n\n\
         [shield]\npenalty_failures = {PENALTY_FAILURES}\npenalty_window_s = 60\npenalty_s = 60\n\n\
         [redis]\nurl = \"redis://{redis}\"\ntimeout_ms = 10\n\n\
         [[issuers]]\nname = \"load\"\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
         algorithms = [\"RS256\"]\npublic_key_pem = \"{pem}\"\n\n\
         [[origins]]\nname = \"global\"\nupstreams = [\"{origin}\"]\n\n\
         [[limits]]\nname = \"per-ip\"\nkey = \"client_ip\"\nrate = {LIMITED_RATE}\nper_s = 1\n\n\
         [[limits]]\nname = \"per-user-local\"\nkey = \"claim:sub\"\nrate = 1000000000\n\n\
         [[limits]]\nname = \"per-user-redis\"\nkey = \"claim:sub\"\nrate = 1000000000\n\
         store = \"redis\"\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\norigin = \"global\"\n\
         auth = \"required\"\n\n\
         [[routes]]\nname = \"limited\"\npath_prefix = \"/limited\"\norigin = \"global\"\n\
         auth = \"off\"\nlimits = [\"per-ip\"]\n\n\
         [[routes]]\nname = \"local\"\npath_prefix = \"/local\"\norigin = \"global\"\n\
         auth = \"required\"\nlimits = [\"per-user-local\"]\n\n\
         [[routes]]\nname = \"redis\"\npath_prefix = \"/redis\"\norigin = \"global\"\n\
         auth = \"required\"\nlimits = [\"per-user-redis\"]\n"
    );
    let path = dir.join("edgewarden-shield.toml");
    std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::targets::run_edgewarden(pinned(cpu, binary), binary, &path, addr, admin)
}

/// HAProxy with the same jobs: its native JWT checks on `/api` (as in the main load test), a
/// stick table counting each address's refused tokens (the penalty box: past
/// [`PENALTY_FAILURES`] in 60 s, 429) and one counting requests per second on `/limited`.
pub fn start_haproxy(
    haproxy: &Path,
    dir: &Path,
    origin: SocketAddr,
    public_pem: &str,
    cpu: Option<usize>,
) -> Result<Target, String> {
    let addr = free_addr()?;
    let key = dir.join("haproxy-shield-public.pem");
    std::fs::write(&key, public_pem).map_err(|e| format!("{}: {e}", key.display()))?;
    let refuse = "http-request return status 429 content-type application/json string \
                  '{\"error\":\"rate_limited\"}' hdr retry-after 60";
    let deny = "http-request return status 401 content-type application/json string \
                '{\"error\":\"invalid_token\"}' hdr www-authenticate 'Bearer realm=\"haproxy\"'";
    // A refused token counts toward the penalty box, then is answered.
    let fail = |cond: &str| {
        format!("  http-request sc-inc-gpc0(0) if api {cond}\n  {deny} if api {cond}\n")
    };
    let mut config = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  \
         option http-keep-alive\n\n\
         backend penalty\n  stick-table type ip size 100k expire 60s store gpc0,gpc0_rate(60s)\n\n\
         backend per_ip\n  stick-table type ip size 100k expire 10s store http_req_rate(1s)\n\n\
         frontend fe\n  bind {addr}\n  acl api path_beg /api\n  acl limited path_beg /limited\n  \
         http-request track-sc0 src table penalty if api\n  \
         {refuse} if api {{ sc0_gpc0_rate(penalty) gt {PENALTY_FAILURES} }}\n  \
         http-request track-sc1 src table per_ip if limited\n  \
         {refuse} if limited {{ sc1_http_req_rate(per_ip) gt {LIMITED_RATE} }}\n  \
         {deny} if api !{{ req.hdr(authorization) -m found }}\n"
    );
    config.push_str(&haproxy_token_checks(&key, &fail));
    config.push_str(&format!(
        "  http-request del-header authorization if api\n  default_backend be\n\n\
         backend be\n  server origin {origin}\n"
    ));
    let path = dir.join("haproxy-shield.cfg");
    std::fs::write(&path, &config).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::targets::launch_haproxy(haproxy, &path, addr, cpu, "/limited", 200)
}

/// HAProxy's native checks of a bearer token on the `api` ACL, as edgewarden's issuer checks it:
/// RS256 only, the signature against `key`, `exp`, `iss` and `aud`; `fail(condition)` gives the
/// lines that answer a request for which `condition` holds.
pub fn haproxy_token_checks(key: &Path, fail: &dyn Fn(&str) -> String) -> String {
    let mut lines = String::from(
        "  http-request set-var(txn.bearer) http_auth_bearer if api\n  \
         http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg') if api\n",
    );
    lines.push_str(&fail("!{ var(txn.alg) -m str RS256 }"));
    lines.push_str(&fail(&format!(
        "!{{ var(txn.bearer),jwt_verify(txn.alg,\"{}\") -m int 1 }}",
        key.display()
    )));
    lines.push_str(
        "  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int') if api\n  \
         http-request set-var(txn.now) date() if api\n",
    );
    lines.push_str(&fail("{ var(txn.exp),sub(txn.now) -m int lt 0 }"));
    lines.push_str(&fail(&format!(
        "!{{ var(txn.bearer),jwt_payload_query('$.iss') -m str {ISSUER} }}"
    )));
    lines.push_str(&fail(&format!(
        "!{{ var(txn.bearer),jwt_payload_query('$.aud') -m str {AUDIENCE} }}"
    )));
    lines
}

/// Pingora alone, answering every request 401 (`examples/pingora_floor`).
pub fn start_floor(binary: &Path, cpu: Option<usize>) -> Result<Target, String> {
    let addr = free_addr()?;
    let child = pinned(cpu, binary)
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} (cargo build --release --example pingora_floor): {e}",
                binary.display()
            )
        })?;
    Target::started("pingora-floor", addr, child, addr, "/api", 401)
}

/// A Redis server on an ephemeral loopback port, without persistence; stopped when dropped.
pub struct Redis {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    pub fn start(server: &Path, cpu: Option<usize>) -> Result<Redis, String> {
        let addr = free_addr()?;
        let child = pinned(cpu, server)
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
        let mut redis = Redis { addr, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.command(&["PING"]).as_deref() != Ok("+PONG") {
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING".into());
            }
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(format!("redis-server exited ({status})"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    /// Script calls so far (`EVAL` and `EVALSHA`, from `INFO commandstats`).
    pub fn script_calls(&self) -> Result<u64, String> {
        let info = self.command(&["INFO", "commandstats"])?;
        Ok(info
            .lines()
            .filter(|l| l.starts_with("cmdstat_eval"))
            .filter_map(|l| {
                l.split_once("calls=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }

    /// One command in RESP; the reply as text (a bulk string's content, or the status line).
    fn command(&self, args: &[&str]) -> Result<String, String> {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut conn = std::net::TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        conn.write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(conn);
        let mut first = String::new();
        reader.read_line(&mut first).map_err(|e| e.to_string())?;
        let first = first.trim_end().to_string();
        let Some(len) = first.strip_prefix('$') else {
            return Ok(first);
        };
        let len: usize = len.parse().map_err(|_| format!("reply {first:?}"))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        String::from_utf8(body).map_err(|e| e.to_string())
    }
}

/// A counter of edgewarden's Prometheus metrics (summed over its labels).
pub fn metric(admin: SocketAddr, name: &str) -> Result<f64, String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(admin).map_err(|e| format!("{admin}: {e}"))?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    conn.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

/// `hog_neighbour`'s policy: the test plugin `misbehave` looping on every request, stopped at
/// 50 ms of processor time or 200 ms of waiting, whichever comes first (503).
const HOG_POLICY: &str = "plugin = \"misbehave\"\ntimeout_ms = 50\ndeadline_ms = 200\n\
                          on_error = \"deny\"\n\n[settings]\nmode = \"loop\"\n";

/// edgewarden for `hog_neighbour`: two worker threads, as a small deployment has, a route
/// `/api` (a valid token, proxied) and a route `/hog` whose policy loops on every request.
/// `root` is the repository (the test plugins are in `tests/plugins`).
pub fn start_neighbours(
    binary: &Path,
    dir: &Path,
    root: &Path,
    plugin_cache: &Path,
    origin: SocketAddr,
    public_pem: &str,
    cpu: Option<usize>,
) -> Result<Target, String> {
    let addr = free_addr()?;
    let admin = free_addr()?;
    let policies = dir.join("policies-hog");
    std::fs::create_dir_all(&policies).map_err(|e| format!("{}: {e}", policies.display()))?;
    let hog = policies.join("hog.toml");
    std::fs::write(&hog, HOG_POLICY).map_err(|e| format!("{}: {e}", hog.display()))?;
    let pem = public_pem.trim().replace('\n', "\\n");
    let config = format!(
        "[server]\nlisten = [\"{addr}\"]\nadmin_listen = \"{admin}\"\nthreads = 2\n\
         policies_dir = \"{}\"\nplugins_dir = \"{}\"\nplugin_cache_dir = \"{}\"\n\n\
         [shield]\nenabled = false\n\n\
         [[issuers]]\nname = \"load\"\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
         algorithms = [\"RS256\"]\npublic_key_pem = \"{pem}\"\n\n\
         [[origins]]\nname = \"global\"\nupstreams = [\"{origin}\"]\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\norigin = \"global\"\n\
         auth = \"required\"\n\n\
         [[routes]]\nname = \"hog\"\npath_prefix = \"/hog\"\norigin = \"global\"\n\
         auth = \"off\"\npolicies = [\"hog\"]\n",
        policies.display(),
        root.join("tests/plugins").display(),
        plugin_cache.display(),
    );
    let path = dir.join("edgewarden-hog.toml");
    std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::targets::launch_edgewarden(binary, root, &path, addr, admin, cpu)
}
