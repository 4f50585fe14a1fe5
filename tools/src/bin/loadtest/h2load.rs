//! Drives load over TLS with h2load (Debian's `nghttp2-client`): HTTP/2 with many streams per
//! connection, HTTP/1.1 over TLS (`--h1`), or one new TLS connection per request at a fixed rate.
//! h2load counts answers by status class and errors; the latencies come from its per-request log.

use std::path::Path;
use std::time::Duration;

/// How the load is offered.
#[derive(Clone, Copy)]
pub enum Mode {
    /// Kept-alive connections, each with `streams` requests in flight, for the run's duration.
    KeepAlive {
        connections: usize,
        streams: usize,
        h1: bool,
    },
    /// One request per connection: `rate` new TLS connections per second, for the duration.
    NewConnectionEach { rate: u32 },
    /// Kept-alive HTTP/2 connections, each sending `rps` requests per second.
    Rate { connections: usize, rps: u32 },
    /// One kept-alive connection with `streams` requests in flight, for exactly `requests`
    /// requests (the duration is not used).
    Count {
        requests: u64,
        streams: usize,
        h1: bool,
    },
}

/// One h2load run.
pub struct Run<'a> {
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub mode: Mode,
    pub duration: Duration,
    pub cpu: Option<usize>,
}

/// What h2load measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Requests that were answered.
    pub done: u64,
    pub rps: f64,
    /// Answers by status class: 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; 4],
    /// Requests that failed (connection errors, resets, timeouts).
    pub errored: u64,
    pub p99_ms: f64,
    /// The negotiated protocol h2load reports (`h2`, `http/1.1`).
    pub protocol: String,
}

impl Measured {
    /// Answers in the class of `status` (e.g. 401 → the 4xx count).
    pub fn in_class(&self, status: u16) -> u64 {
        match status / 100 {
            2..=5 => self.classes[usize::from(status / 100 - 2)],
            _ => 0,
        }
    }
}

/// Exactly `requests` requests to `url` on one kept-alive connection with `streams` in flight
/// (`h1`: HTTP/1.1), every one answered and in the class of `status`.
pub fn count(
    h2load: &Path,
    log_dir: &Path,
    url: &str,
    headers: &[(String, String)],
    (requests, streams, h1): (u64, usize, bool),
    status: u16,
) -> Result<(), String> {
    let run = Run {
        url,
        headers,
        mode: Mode::Count {
            requests,
            streams,
            h1,
        },
        duration: Duration::from_secs(1),
        cpu: None,
    };
    let measured = self::run(h2load, log_dir, &run)?;
    if measured.done != requests || measured.in_class(status) != requests {
        return Err(format!(
            "{} of {requests} answered, {} in the class of {status}",
            measured.done,
            measured.in_class(status)
        ));
    }
    Ok(())
}

pub fn run(h2load: &Path, log_dir: &Path, run: &Run<'_>) -> Result<Measured, String> {
    let log = log_dir.join("h2load-requests.log");
    let _ = std::fs::remove_file(&log);
    let mut command = crate::targets::pinned(run.cpu, h2load);
    command.args(["-t1"]);
    let secs = run.duration.as_secs().max(1);
    match run.mode {
        Mode::KeepAlive {
            connections,
            streams,
            h1,
        } => {
            command
                .args(["-c", &connections.to_string()])
                .args(["-m", &streams.to_string()])
                // No warm-up phase: the gateway's CPU time is read around the whole run, so every
                // request it served must be counted.
                .args(["-D", &secs.to_string()]);
            if h1 {
                command.arg("--h1");
            }
        }
        Mode::Rate { connections, rps } => {
            command
                .args(["-c", &connections.to_string()])
                .args(["--rps", &rps.to_string()])
                .args(["-D", &secs.to_string()]);
        }
        Mode::Count {
            requests,
            streams,
            h1,
        } => {
            command
                .args(["-c", "1", "-m", &streams.to_string()])
                .args(["-n", &requests.to_string()]);
            if h1 {
                command.arg("--h1");
            }
        }
        Mode::NewConnectionEach { rate } => {
            // -c connections of one request each (-n = -c), created `rate / 10` every 100 ms.
            let total = u64::from(rate) * secs;
            command
                .args(["-n", &total.to_string(), "-c", &total.to_string()])
                .args(["-r", &(rate / 10).max(1).to_string()])
                .args(["--rate-period", "100ms"]);
        }
    }
    for (name, value) in run.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    command.arg(format!("--log-file={}", log.display()));
    command.arg(run.url);
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", h2load.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "h2load failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut measured = parse(&stdout)?;
    let text = std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    measured.p99_ms = p99_ms(&text);
    Ok(measured)
}

/// The figures of h2load's summary.
fn parse(out: &str) -> Result<Measured, String> {
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .ok_or_else(|| format!("no `{prefix}` in h2load's output:\n{out}"))
    };
    // "finished in 5.00s, 150268.40 req/s, 21.93MB/s"
    let rps = line("finished in ")?
        .split(", ")
        .find_map(|f| f.strip_suffix(" req/s")?.parse().ok())
        .ok_or_else(|| format!("no req/s in h2load's output:\n{out}"))?;
    // "requests: 10 total, 10 started, 10 done, 10 succeeded, 0 failed, 0 errored, 0 timeout"
    let requests = line("requests: ")?;
    let count = |text: &str, what: &str| -> u64 {
        text.split(", ")
            .find_map(|f| f.strip_suffix(what)?.trim().parse().ok())
            .unwrap_or(0)
    };
    // "status codes: 0 2xx, 0 3xx, 10 4xx, 0 5xx"
    let statuses = line("status codes: ")?;
    let protocol = line("Application protocol: ")
        .map(|p| p.trim().to_string())
        .unwrap_or_default();
    Ok(Measured {
        done: count(requests, " done"),
        rps,
        classes: [
            count(statuses, " 2xx"),
            count(statuses, " 3xx"),
            count(statuses, " 4xx"),
            count(statuses, " 5xx"),
        ],
        errored: count(requests, " errored") + count(requests, " timeout"),
        p99_ms: 0.0,
        protocol,
    })
}

/// The 99th percentile of the request durations in h2load's log (one line per request:
/// start time, status, duration in microseconds, tab-separated).
fn p99_ms(log: &str) -> f64 {
    let mut durations: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if durations.is_empty() {
        return 0.0;
    }
    durations.sort_unstable();
    let index = (durations.len() * 99).div_ceil(100).saturating_sub(1);
    durations[index] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_of_h2load() {
        let out = "finished in 5.00s, 150268.40 req/s, 21.93MB/s\n\
                   requests: 751342 total, 751342 started, 751340 done, 0 succeeded, 751340 failed, 2 errored, 1 timeout\n\
                   status codes: 0 2xx, 0 3xx, 751340 4xx, 0 5xx\n\
                   Application protocol: h2\n";
        let m = parse(out).unwrap();
        assert_eq!(m.done, 751_340);
        assert_eq!(m.in_class(401), 751_340);
        assert_eq!(m.in_class(200), 0);
        assert_eq!(m.errored, 3);
        assert_eq!(m.protocol, "h2");
        assert!((m.rps - 150_268.4).abs() < 0.01);
    }

    #[test]
    fn p99_is_read_from_the_request_log() {
        let log: String = (1..=100)
            .map(|i| format!("0\t401\t{}\n", i * 1000))
            .collect();
        assert_eq!(p99_ms(&log), 99.0);
    }
}
