//! Drives closed-loop load with wrk (Debian's `wrk`), the generator for the rejection scenarios:
//! on one core it keeps HAProxy busy, which oha cannot, so the gateways' answers per second and CPU
//! per answer are theirs, not the generator's. A Lua `done` hook prints the figures as JSON.
//!
//! wrk counts answers only as 2xx/3xx or not; which status a scenario gets is checked on one request
//! before the run (`preflight`), and the run checks that every answer was of the same class.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// One wrk run.
pub struct Run<'a> {
    pub addr: SocketAddr,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub duration: Duration,
    pub connections: usize,
    pub cpu: Option<usize>,
}

/// What wrk measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub requests: u64,
    pub rps: f64,
    /// Answers that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub errors: u64,
    pub p99_ms: f64,
}

const DONE: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

pub fn run(wrk: &Path, script_dir: &Path, run: &Run<'_>) -> Result<Measured, String> {
    let script = script_dir.join("done.lua");
    if !script.exists() {
        std::fs::write(&script, DONE).map_err(|e| format!("{}: {e}", script.display()))?;
    }
    let mut command = crate::targets::pinned(run.cpu, wrk);
    command
        .args(["-t1", "-c", &run.connections.to_string()])
        .args(["-d", &format!("{}s", run.duration.as_secs().max(1))])
        .arg("-s")
        .arg(&script);
    for (name, value) in run.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    command.arg(format!("http://{}{}", run.addr, run.path));
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", wrk.display()))?;
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no figures in wrk's output: {stdout}"))?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("wrk's figures: {e}"))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let secs = n("duration_us") as f64 / 1e6;
    Ok(Measured {
        requests: n("requests"),
        rps: if secs > 0.0 {
            n("requests") as f64 / secs
        } else {
            0.0
        },
        non_2xx: n("non_2xx"),
        errors: n("errors"),
        p99_ms: n("p99_us") as f64 / 1000.0,
    })
}

/// The status of one request with `headers` to `path`, on a connection of its own.
pub fn preflight(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: loadtest\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .map_err(|e| format!("{addr}: {e}"))?;
    std::str::from_utf8(answer.get(9..12).unwrap_or(&[]))
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}: no status in the answer"))
}
