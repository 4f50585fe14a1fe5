//! `loadtest tls`: the gateways over TLS, as most clients at the edge reach them, with h2load on
//! the other core: HTTP/2 with many streams per connection, HTTP/1.1 over TLS, one new TLS
//! connection per request, a valid token proxied over HTTP/2, and valid users beside a rapid-reset
//! flood (streams opened and cancelled at once, a new connection each time the gateway closes
//! one: `rapid_reset`), their p99 beside their p99 alone. Pingora alone
//! (`examples/pingora_floor --tls`) answers the same 401 as the floor of the rejection rows;
//! HAProxy serves the same ECDSA P-256 certificate. Every run checks its answers: their status
//! class, the negotiated protocol, and what reached the origin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::h2load::{self, Mode};
use crate::report::{Figures, Samples, median};
use crate::run::settled;
use crate::scenarios::{PUBLIC_PEM, Tokens};
use crate::targets::{Common, Target, Targets, Who};
use crate::tls_targets::{self as tt, Certificate};

#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    common: Common,
    /// New TLS connections per second offered in `h2_new_connection_401`.
    #[arg(long, default_value_t = 2000)]
    new_connection_rate: u32,
    #[arg(long, default_value = "/usr/bin/h2load")]
    h2load: PathBuf,
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    mode: Mode,
    /// With the valid token (proxied, 200) or without any (401).
    valid: bool,
    /// Run once alone, then again beside a rapid-reset flood.
    flood: bool,
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
            flood: false,
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
            flood: false,
            targets: ALL,
        },
        Scenario {
            name: "h2_new_connection_401",
            what: "one new TLS connection (HTTP/2) per request, offered at a fixed rate, no token → 401",
            mode: Mode::NewConnectionEach {
                rate: new_connection_rate,
            },
            valid: false,
            flood: false,
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
            flood: false,
            targets: &[Who::Edgewarden, Who::Haproxy],
        },
        Scenario {
            name: "h2_rapid_reset",
            what: "valid users (HTTP/2, 8 connections × 125 requests/s) alone, then beside a \
                   rapid-reset flood from one connection at a time",
            mode: Mode::Rate {
                connections: 8,
                rps: 125,
            },
            valid: true,
            flood: true,
            targets: &[Who::Edgewarden, Who::Haproxy],
        },
    ]
}

/// One run of one scenario on one target.
struct Sample {
    rps: f64,
    cpu_us: f64,
    p99_ms: f64,
    /// Flood scenarios: the valid users' p99 alone, and what the flood did.
    flood: Option<FloodSample>,
}

struct FloodSample {
    p99_alone_ms: f64,
    resets_per_s: f64,
    connections: u64,
    valid_answered: u64,
}

pub fn run(options: &Options) -> Result<(), String> {
    let (duration, repeats, peer) = options.common.plan();
    let rate = if options.common.smoke {
        200
    } else {
        options.new_connection_rate.max(10)
    };
    let bench = crate::run::Bench::start()?;
    let (gateway_cpu, load_cpu, origin, dir) =
        (bench.gateway_cpu, bench.load_cpu, &bench.origin, &bench.dir);
    let certificate = Certificate::write(dir.path())?;
    let tokens = Tokens::mint()?;
    let scenarios: Vec<Scenario> = scenarios(rate)
        .into_iter()
        .filter(|s| options.common.wants(s.name))
        .collect();
    let wants = |who: Who| scenarios.iter().any(|s| s.targets.contains(&who));
    let edgewarden = tt::start_edgewarden(
        &options.common.picked.edgewarden,
        dir.path(),
        &certificate,
        origin.addr,
        PUBLIC_PEM,
        gateway_cpu,
    )?;
    let floor = wants(Who::Floor)
        .then(|| tt::start_floor(&options.common.picked.floor, &certificate, gateway_cpu))
        .transpose()?;
    let haproxy = (peer && wants(Who::Haproxy))
        .then(|| {
            tt::start_haproxy(
                &options.common.haproxy,
                dir.path(),
                &certificate,
                origin.addr,
                PUBLIC_PEM,
                gateway_cpu,
            )
        })
        .transpose()?;
    let targets = Targets {
        floor,
        edgewarden,
        haproxy,
    };

    let mut samples = Samples::new();
    for repeat in 0..repeats {
        for scenario in &scenarios {
            for who in scenario.targets {
                let Some(target) = targets.get(*who) else {
                    continue;
                };
                let headers = if scenario.valid {
                    vec![("authorization".into(), format!("Bearer {}", tokens.valid))]
                } else {
                    Vec::new()
                };
                let run = Run {
                    options,
                    dir: dir.path(),
                    origin,
                    certificate: &certificate,
                    duration,
                    load_cpu,
                };
                let (sample, problems) = if scenario.flood {
                    run.flood(scenario, target, &headers)?
                } else {
                    run.one(scenario, target, &headers)?
                };
                let figures = Figures {
                    rps: sample.rps,
                    p99_ms: sample.p99_ms,
                    cpu_us: sample.cpu_us,
                };
                samples.record(
                    (scenario.name, target.name, repeat),
                    figures,
                    sample,
                    problems,
                );
            }
        }
    }
    let text = report(&scenarios, &samples, options, duration, repeats, rate);
    samples.finish(&text, options.common.picked.report.as_deref())
}

/// What every run of one invocation shares.
struct Run<'a> {
    options: &'a Options,
    dir: &'a Path,
    origin: &'a crate::origin::Origin,
    certificate: &'a Certificate,
    duration: Duration,
    load_cpu: Option<usize>,
}

impl Run<'_> {
    fn h2load(
        &self,
        scenario: &Scenario,
        target: &Target,
        headers: &[(String, String)],
    ) -> Result<h2load::Measured, String> {
        let url = format!("https://localhost:{}/api/item", target.addr.port());
        h2load::run(
            &self.options.h2load,
            self.dir,
            &h2load::Run {
                url: &url,
                headers,
                mode: scenario.mode,
                duration: self.duration,
                cpu: self.load_cpu,
            },
        )
    }

    fn one(
        &self,
        scenario: &Scenario,
        target: &Target,
        headers: &[(String, String)],
    ) -> Result<(Sample, Vec<String>), String> {
        let hits = settled(self.origin);
        let before = target.usage()?;
        let m = self.h2load(scenario, target, headers)?;
        let after = target.usage()?;
        let hits = settled(self.origin) - hits;
        let mut problems = answers(scenario, &m);
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
                flood: None,
            },
            problems,
        ))
    }

    /// The valid users alone, then beside the rapid-reset flood (started first, stopped last).
    fn flood(
        &self,
        scenario: &Scenario,
        target: &Target,
        headers: &[(String, String)],
    ) -> Result<(Sample, Vec<String>), String> {
        let alone = self.h2load(scenario, target, headers)?;
        let mut problems = answers(scenario, &alone);
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let flood_ms = self.duration.as_millis() + 1000;
        let flood = crate::targets::pinned(self.load_cpu, &exe)
            .arg("rapid-reset-client")
            .args(["--addr", &target.addr.to_string()])
            .arg("--ca")
            .arg(&self.certificate.ca)
            .args(["--duration-ms", &flood_ms.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("rapid-reset-client: {e}"))?;
        let before = target.usage()?;
        let beside = self.h2load(scenario, target, headers);
        let after = target.usage()?;
        let out = flood
            .wait_with_output()
            .map_err(|e| format!("rapid-reset-client: {e}"))?;
        let beside = beside?;
        problems.extend(answers(scenario, &beside));
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("rapid-reset-client printed {text:?}: {e}"))?;
        let resets = v["resets"].as_u64().unwrap_or(0);
        if resets == 0 {
            problems.push(format!("the flood reset no stream: {text}"));
        }
        let cpu = after.cpu.saturating_sub(before.cpu);
        Ok((
            Sample {
                rps: beside.rps,
                cpu_us: cpu.as_secs_f64() * 1e6 / beside.done.max(1) as f64,
                p99_ms: beside.p99_ms,
                flood: Some(FloodSample {
                    p99_alone_ms: alone.p99_ms,
                    resets_per_s: resets as f64 / (flood_ms as f64 / 1000.0),
                    connections: v["connections"].as_u64().unwrap_or(0),
                    valid_answered: beside.in_class(200),
                }),
            },
            problems,
        ))
    }
}

/// Every answer of the scenario's status, none failed, over the scenario's protocol.
fn answers(scenario: &Scenario, m: &h2load::Measured) -> Vec<String> {
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
    problems
}

fn report(
    scenarios: &[Scenario],
    samples: &Samples<Sample>,
    options: &Options,
    duration: Duration,
    repeats: usize,
    rate: u32,
) -> String {
    let med = |scenario: &str, target: &str, f: &dyn Fn(&Sample) -> f64| {
        samples
            .find(scenario, target)
            .map(|list| median(list.iter().map(f).collect()))
    };
    let mut out = format!(
        "Machine: {} CPUs. {} s per run, median of {repeats}; h2load on CPU 1, each gateway on CPU 0 \
         with one thread, the same ECDSA P-256 certificate; new connections offered at {rate}/s. \
         {} · {}\n\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        duration.as_secs(),
        crate::shield::version(&options.h2load, "--version"),
        crate::shield::version(&options.common.haproxy, "-v"),
    );
    for scenario in scenarios {
        out.push_str(&format!("- `{}`: {}\n", scenario.name, scenario.what));
    }
    if scenarios.iter().any(|s| !s.flood) {
        out.push_str(
            "\n| scenario | target | req/s | CPU µs/req | p99 ms | req/s ÷ HAProxy | \
             HAProxy's CPU/req ÷ this | CPU over Pingora alone |\n|---|---|---|---|---|---|---|---|\n",
        );
    }
    for scenario in scenarios.iter().filter(|s| !s.flood) {
        let peer_rps = med(scenario.name, "haproxy", &|s| s.rps);
        let peer_cpu = med(scenario.name, "haproxy", &|s| s.cpu_us);
        let floor_cpu = med(scenario.name, "pingora-floor", &|s| s.cpu_us);
        for (_, target, _) in samples.runs.iter().filter(|(s, _, _)| *s == scenario.name) {
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
    let floods: Vec<_> = samples
        .runs
        .iter()
        .filter(|(_, _, list)| list.iter().all(|s| s.flood.is_some()))
        .collect();
    if !floods.is_empty() {
        out.push_str(
            "\n| flood | target | valid users 200 | valid p99 alone ms | beside the flood ms | ratio | \
             streams reset/s | flood connections |\n|---|---|---|---|---|---|---|---|\n",
        );
    }
    for (scenario, target, list) in floods {
        let floods: Vec<&FloodSample> = list.iter().filter_map(|s| s.flood.as_ref()).collect();
        let alone = median(floods.iter().map(|f| f.p99_alone_ms).collect());
        let beside = median(list.iter().map(|s| s.p99_ms).collect());
        out.push_str(&format!(
            "| {scenario} | {target} | {} | {alone:.3} | {beside:.3} | {:.2} | {:.0} | {} |\n",
            floods.iter().map(|f| f.valid_answered).sum::<u64>(),
            beside / alone,
            median(floods.iter().map(|f| f.resets_per_s).collect()),
            floods.iter().map(|f| f.connections).sum::<u64>(),
        ));
    }
    out
}
