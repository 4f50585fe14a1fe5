//! `loadtest tls`: the gateways over TLS, as most clients at the edge reach them, with h2load on
//! the other core: HTTP/2 with many streams per connection, HTTP/1.1 over TLS, one new TLS
//! connection per request, and a valid token proxied over HTTP/2. Pingora alone
//! (`examples/pingora_floor --tls`) answers the same 401 as the floor of the rejection rows;
//! HAProxy serves the same ECDSA P-256 certificate. Every run checks its answers: their status
//! class, the negotiated protocol, and what reached the origin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::h2load::{self, Mode};
use crate::report::median;
use crate::run::settled;
use crate::scenarios::{PUBLIC_PEM, Tokens};
use crate::targets::Target;
use crate::tls_targets::{self as tt, Certificate};

#[derive(clap::Args)]
pub struct Options {
    /// A quick correctness run: 1 s runs, one repeat, no HAProxy; fails on any wrong answer.
    #[arg(long)]
    smoke: bool,
    #[arg(long, default_value_t = 5)]
    duration_s: u64,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// New TLS connections per second offered in `h2_new_connection_401`.
    #[arg(long, default_value_t = 2000)]
    new_connection_rate: u32,
    /// Leave HAProxy out.
    #[arg(long)]
    no_peer: bool,
    /// Only these scenarios (by name).
    #[arg(long = "scenario")]
    only: Vec<String>,
    #[arg(long, default_value = "target/release/edgewarden")]
    edgewarden: PathBuf,
    /// Pingora alone (cargo build --release --example pingora_floor).
    #[arg(long, default_value = "target/release/examples/pingora_floor")]
    floor: PathBuf,
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    haproxy: PathBuf,
    #[arg(long, default_value = "/usr/bin/h2load")]
    h2load: PathBuf,
    /// Write the report (markdown) here too.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Floor,
    Edgewarden,
    Haproxy,
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    mode: Mode,
    /// With the valid token (proxied, 200) or without any (401).
    valid: bool,
    targets: &'static [Who],
}

const ALL: &[Who] = &[Who::Floor, Who::Edgewarden, Who::Haproxy];

fn scenarios(new_connection_rate: u32) -> Vec<Scenario> {
    vec![
        Scenario {
            name: "h2_401",
            what: "HTTP/2, 8 connections × 32 streams, no token → 401",
            mode: Mode::KeepAlive {
                connections: 8,
                streams: 32,
                h1: false,
            },
            valid: false,
            targets: ALL,
        },
        Scenario {
            name: "h1_tls_401",
            what: "HTTP/1.1 over TLS, 32 kept-alive connections, no token → 401",
            mode: Mode::KeepAlive {
                connections: 32,
                streams: 1,
                h1: true,
            },
            valid: false,
            targets: ALL,
        },
        Scenario {
            name: "h2_new_connection_401",
            what: "one new TLS connection (HTTP/2) per request, offered at a fixed rate, no token → 401",
            mode: Mode::NewConnectionEach {
                rate: new_connection_rate,
            },
            valid: false,
            targets: ALL,
        },
        Scenario {
            name: "h2_valid",
            what: "HTTP/2, 8 connections × 32 streams, valid token, proxied → 200",
            mode: Mode::KeepAlive {
                connections: 8,
                streams: 32,
                h1: false,
            },
            valid: true,
            targets: &[Who::Edgewarden, Who::Haproxy],
        },
    ]
}

/// One run of one scenario on one target.
struct Sample {
    rps: f64,
    cpu_us: f64,
    p99_ms: f64,
}

pub fn run(options: &Options) -> Result<(), String> {
    let (duration, repeats, peer, rate) = if options.smoke {
        (Duration::from_secs(1), 1, false, 200)
    } else {
        (
            Duration::from_secs(options.duration_s.max(1)),
            options.repeats.max(1),
            !options.no_peer,
            options.new_connection_rate.max(10),
        )
    };
    let (gateway_cpu, load_cpu) = match std::thread::available_parallelism().map(|n| n.get()) {
        Ok(n) if n >= 2 => (Some(0), Some(1)),
        _ => (None, None),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let origin = crate::origin::start(&runtime).map_err(|e| format!("origin: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let certificate = Certificate::write(dir.path())?;
    let tokens = Tokens::mint()?;
    let scenarios: Vec<Scenario> = scenarios(rate)
        .into_iter()
        .filter(|s| options.only.is_empty() || options.only.iter().any(|o| o == s.name))
        .collect();
    let wants = |who: Who| scenarios.iter().any(|s| s.targets.contains(&who));
    let edgewarden = tt::start_edgewarden(
        &options.edgewarden,
        dir.path(),
        &certificate,
        origin.addr,
        PUBLIC_PEM,
        gateway_cpu,
    )?;
    let floor = wants(Who::Floor)
        .then(|| tt::start_floor(&options.floor, &certificate, gateway_cpu))
        .transpose()?;
    let haproxy = (peer && wants(Who::Haproxy))
        .then(|| {
            tt::start_haproxy(
                &options.haproxy,
                dir.path(),
                &certificate,
                origin.addr,
                PUBLIC_PEM,
                gateway_cpu,
            )
        })
        .transpose()?;
    let target = |who: Who| match who {
        Who::Floor => floor.as_ref(),
        Who::Edgewarden => Some(&edgewarden),
        Who::Haproxy => haproxy.as_ref(),
    };

    let mut failures = Vec::new();
    let mut samples: Vec<(&'static str, &'static str, Vec<Sample>)> = Vec::new();
    for repeat in 0..repeats {
        for scenario in &scenarios {
            for who in scenario.targets {
                let Some(target) = target(*who) else { continue };
                let headers = if scenario.valid {
                    vec![("authorization".into(), format!("Bearer {}", tokens.valid))]
                } else {
                    Vec::new()
                };
                let (sample, problems) = one_run(
                    options,
                    dir.path(),
                    &origin,
                    scenario,
                    target,
                    &headers,
                    duration,
                    load_cpu,
                )?;
                eprintln!(
                    "{:<22} {:<14} run {}: {:>9.0} req/s  p99 {:>7.3} ms  {:>7.1} µs CPU/req",
                    scenario.name,
                    target.name,
                    repeat + 1,
                    sample.rps,
                    sample.p99_ms,
                    sample.cpu_us
                );
                failures.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("{} on {}: {p}", scenario.name, target.name)),
                );
                match samples
                    .iter_mut()
                    .find(|(s, t, _)| *s == scenario.name && *t == target.name)
                {
                    Some((_, _, list)) => list.push(sample),
                    None => samples.push((scenario.name, target.name, vec![sample])),
                }
            }
        }
    }
    let text = report(&scenarios, &samples, options, duration, repeats, rate);
    println!("{text}");
    if let Some(path) = &options.report {
        std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("wrong answers:\n  {}", failures.join("\n  ")))
    }
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    options: &Options,
    dir: &Path,
    origin: &crate::origin::Origin,
    scenario: &Scenario,
    target: &Target,
    headers: &[(String, String)],
    duration: Duration,
    load_cpu: Option<usize>,
) -> Result<(Sample, Vec<String>), String> {
    let url = format!("https://localhost:{}/api/item", target.addr.port());
    let hits = settled(origin);
    let before = target.usage()?;
    let m = h2load::run(
        &options.h2load,
        dir,
        &h2load::Run {
            url: &url,
            headers,
            mode: scenario.mode,
            duration,
            cpu: load_cpu,
        },
    )?;
    let after = target.usage()?;
    let hits = settled(origin) - hits;
    let mut problems = Vec::new();
    let status = if scenario.valid { 200 } else { 401 };
    if m.done == 0 || m.errored > 0 || m.in_class(status) != m.done {
        problems.push(format!(
            "{} answered, {} failed, by class (2xx, 3xx, 4xx, 5xx) {:?}; expected every answer {status}",
            m.done, m.errored, m.classes
        ));
    }
    let protocol = match scenario.mode {
        Mode::KeepAlive { h1: true, .. } => "http/1.1",
        _ => "h2",
    };
    if m.protocol != protocol {
        problems.push(format!("negotiated {:?}, expected {protocol}", m.protocol));
    }
    if scenario.valid && hits < m.done {
        problems.push(format!(
            "origin saw {hits} requests for {} answered 200",
            m.done
        ));
    }
    if !scenario.valid && hits > 0 {
        problems.push(format!("origin saw {hits} requests that had no token"));
    }
    let cpu = after.cpu.saturating_sub(before.cpu);
    Ok((
        Sample {
            rps: m.rps,
            cpu_us: cpu.as_secs_f64() * 1e6 / m.done.max(1) as f64,
            p99_ms: m.p99_ms,
        },
        problems,
    ))
}

fn report(
    scenarios: &[Scenario],
    samples: &[(&'static str, &'static str, Vec<Sample>)],
    options: &Options,
    duration: Duration,
    repeats: usize,
    rate: u32,
) -> String {
    let med = |scenario: &str, target: &str, f: &dyn Fn(&Sample) -> f64| {
        samples
            .iter()
            .find(|(s, t, _)| *s == scenario && *t == target)
            .map(|(_, _, list)| median(list.iter().map(f).collect()))
    };
    let mut out = format!(
        "Machine: {} CPUs. {} s per run, median of {repeats}; h2load on CPU 1, each gateway on CPU 0 \
         with one thread, the same ECDSA P-256 certificate; new connections offered at {rate}/s. \
         {} · {}\n\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        duration.as_secs(),
        crate::shield::version(&options.h2load, "--version"),
        crate::shield::version(&options.haproxy, "-v"),
    );
    for scenario in scenarios {
        out.push_str(&format!("- `{}`: {}\n", scenario.name, scenario.what));
    }
    out.push_str(
        "\n| scenario | target | req/s | CPU µs/req | p99 ms | req/s ÷ HAProxy | \
         HAProxy's CPU/req ÷ this | CPU over Pingora alone |\n|---|---|---|---|---|---|---|---|\n",
    );
    for scenario in scenarios {
        let peer_rps = med(scenario.name, "haproxy", &|s| s.rps);
        let peer_cpu = med(scenario.name, "haproxy", &|s| s.cpu_us);
        let floor_cpu = med(scenario.name, "pingora-floor", &|s| s.cpu_us);
        for (_, target, _) in samples.iter().filter(|(s, _, _)| *s == scenario.name) {
            let (Some(rps), Some(cpu), Some(p99)) = (
                med(scenario.name, target, &|s| s.rps),
                med(scenario.name, target, &|s| s.cpu_us),
                med(scenario.name, target, &|s| s.p99_ms),
            ) else {
                continue;
            };
            let ratio = |peer: Option<f64>, f: &dyn Fn(f64) -> f64| match peer {
                Some(p) if *target != "haproxy" => format!("{:.2}", f(p)),
                _ => "—".into(),
            };
            let over = match floor_cpu {
                Some(f) if *target == "edgewarden" => format!("{:+.2} µs", cpu - f),
                _ => "—".into(),
            };
            out.push_str(&format!(
                "| {} | {target} | {rps:.0} | {cpu:.2} | {p99:.3} | {} | {} | {over} |\n",
                scenario.name,
                ratio(peer_rps, &|p| rps / p),
                ratio(peer_cpu, &|p| p / cpu),
            ));
        }
    }
    out
}
