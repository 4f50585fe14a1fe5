//! Runs the scenarios against each target, repeats them, checks every answer, and hands the
//! medians to the report.

use std::path::PathBuf;
use std::time::Duration;

use crate::oha::{self, Load, Measured};
use crate::python_edge;
use crate::report::{self, Row};
use crate::scenarios::{self, PUBLIC_PEM, Peer, Scenario, Setup, Tokens};
use crate::targets::{self, Target};

#[derive(clap::Args)]
pub struct Options {
    /// A few seconds per scenario, one repeat, no peer; fail on any wrong answer (CI).
    #[arg(long)]
    smoke: bool,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Runs per scenario and target; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Offered rate of the attack mix (requests/s; 90 % bad tokens, 10 % valid).
    #[arg(long, default_value_t = 4_000)]
    attack_rate: u32,
    /// Offer every scenario this many requests/s instead of as many as each target answers, so
    /// that CPU per request is compared at the same load (what a policy adds, say). A target that
    /// falls behind the rate shows it in its requests/s and latency.
    #[arg(long)]
    rate: Option<u32>,
    /// Leave HAProxy out.
    #[arg(long)]
    no_peer: bool,
    /// Only these scenarios (by name; the attack mix is "attack_mix").
    #[arg(long = "scenario")]
    only: Vec<String>,
    #[arg(long, default_value = "target/release/edgewarden")]
    edgewarden: PathBuf,
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    haproxy: PathBuf,
    #[arg(long, default_value = ".cache/tools/bin/oha")]
    oha: PathBuf,
    /// wasmtime-cli, for the seed geo router's `wasmtime serve` peer.
    #[arg(long, default_value = ".cache/tools/bin/wasmtime")]
    wasmtime: PathBuf,
    /// The wasi:http WIT files the peer component is built against.
    #[arg(long, default_value = ".cache/tools/wasi-http-wit")]
    wasi_http_wit: PathBuf,
    /// Built plugins (the gateway's plugin_cache_dir).
    #[arg(long, default_value = ".cache/plugins")]
    plugin_cache: PathBuf,
    /// Write the report (markdown) and the chart (SVG) here.
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long)]
    chart: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct TargetOptions {
    /// Full URL to load, e.g. https://gateway.example.com/api/item
    #[arg(long)]
    url: String,
    /// A file holding the bearer token to send.
    #[arg(long, conflicts_with = "key")]
    token_file: Option<PathBuf>,
    /// Or a private key (PEM) to mint an RS256 token with --iss/--aud/--sub/--kid.
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long)]
    iss: Option<String>,
    #[arg(long)]
    aud: Vec<String>,
    #[arg(long)]
    sub: Option<String>,
    #[arg(long)]
    kid: Option<String>,
    /// Offered requests/s (open model); leave out for as fast as possible.
    #[arg(long)]
    rate: Option<u32>,
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value = ".cache/tools/bin/oha")]
    oha: PathBuf,
}

/// CPUs to pin to: gateways on the first, generator and origin on the rest.
/// What every kind of run sets up first: the gateways' CPU and the load's (0 and 1 when there
/// are two), the origin on a runtime of its own, and a temporary directory for configurations.
pub struct Bench {
    pub gateway_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
    pub origin: crate::origin::Origin,
    pub dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
}

impl Bench {
    pub fn start() -> Result<Bench, String> {
        let (gateway_cpu, load_cpu) = match std::thread::available_parallelism().map(|n| n.get()) {
            Ok(n) if n >= 2 => (Some(0), Some(1)),
            _ => (None, None),
        };
        let (runtime, origin) = crate::origin::start_on_own_runtime()?;
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        Ok(Bench {
            gateway_cpu,
            load_cpu,
            origin,
            dir,
            runtime,
        })
    }
}

pub fn bench(options: &Options) -> Result<(), String> {
    let (duration, repeats, peer) = if options.smoke {
        (Duration::from_millis(1500), 1, false)
    } else {
        (
            Duration::from_secs(options.duration_s),
            options.repeats.max(1),
            !options.no_peer,
        )
    };
    let connections = if options.smoke {
        8
    } else {
        options.connections
    };
    let attack_rate = if options.smoke {
        600
    } else {
        options.attack_rate
    };
    let bench = Bench::start()?;
    let (gateway_cpu, load_cpu, origin, dir, runtime) = (
        bench.gateway_cpu,
        bench.load_cpu,
        &bench.origin,
        &bench.dir,
        &bench.runtime,
    );
    let root = crate::root();
    let tokens = Tokens::mint()?;
    let wanted = |name: &str| options.only.is_empty() || options.only.iter().any(|o| o == name);
    let scenarios: Vec<Scenario> = scenarios::all(&tokens)
        .into_iter()
        .filter(|s| wanted(s.name))
        .collect();

    let plugin_cache =
        std::path::absolute(&options.plugin_cache).map_err(|e| format!("plugin cache: {e}"))?;
    let needs = |setup: Setup| scenarios.iter().any(|s| s.setup == setup);
    let collector = needs(Setup::Traced)
        .then(|| crate::origin::collector(runtime))
        .transpose()
        .map_err(|e| format!("collector: {e}"))?;
    let setup = targets::Edgewarden {
        binary: &options.edgewarden,
        dir: dir.path(),
        root: &root,
        plugin_cache: &plugin_cache,
        // Smoke runs share a small machine with whatever else runs; they check answers, not
        // plugin speed, so preemption must not turn into 503s.
        plugin_timeout_ms: options.smoke.then_some(250),
        origin: origin.addr,
        collector: collector.as_ref().map(|c| c.addr),
        public_pem: PUBLIC_PEM,
        cpu: gateway_cpu,
    };
    let needs_peer = |p: Peer| peer && scenarios.iter().any(|s| s.peers.contains(&p));
    let attack = wanted("attack_mix");
    let edgewarden = (needs(Setup::Standard) || attack)
        .then(|| setup.start(Setup::Standard))
        .transpose()?;
    let no_cache = needs(Setup::NoCache)
        .then(|| setup.start(Setup::NoCache))
        .transpose()?;
    let seed_geo = needs(Setup::SeedGeo)
        .then(|| setup.start(Setup::SeedGeo))
        .transpose()?;
    let traced = needs(Setup::Traced)
        .then(|| setup.start(Setup::Traced))
        .transpose()?;
    let haproxy = (needs_peer(Peer::Haproxy) || (peer && attack))
        .then(|| {
            targets::start_haproxy(
                &options.haproxy,
                dir.path(),
                origin.addr,
                PUBLIC_PEM,
                gateway_cpu,
            )
        })
        .transpose()?;
    let (serve_reuse, serve_fresh) = if needs_peer(Peer::ServeReuse) || needs_peer(Peer::ServeFresh)
    {
        let tools = python_edge::Tools {
            wasmtime: options.wasmtime.clone(),
            wit: options.wasi_http_wit.clone(),
        };
        let cwasm = python_edge::build(&root, &tools, dir.path())?;
        let start = |reuse| python_edge::serve(&tools, &cwasm, reuse, gateway_cpu, dir.path());
        (
            needs_peer(Peer::ServeReuse)
                .then(|| start(true))
                .transpose()?,
            needs_peer(Peer::ServeFresh)
                .then(|| start(false))
                .transpose()?,
        )
    } else {
        (None, None)
    };
    if let Some(seed_geo) = &seed_geo {
        let mut answering = vec![(seed_geo, "/seed/"), (seed_geo, "/seed-fresh/")];
        answering.extend(serve_reuse.iter().chain(&serve_fresh).map(|t| (t, "/")));
        python_edge::same_answers(runtime, &answering)?;
    }
    let peer_target = |p: &Peer| match p {
        Peer::Haproxy => haproxy.as_ref(),
        Peer::ServeReuse => serve_reuse.as_ref(),
        Peer::ServeFresh => serve_fresh.as_ref(),
    };

    let mut failures: Vec<String> = Vec::new();
    // Repeats are the outer loop: every scenario runs once before any runs again, so the
    // machine's drift over the run reaches all of them alike, and a scenario is compared with its
    // baseline (`Scenario::baseline`) across the same stretch of time.
    let mut runs: Vec<Vec<(&'static str, Vec<Sample>)>> =
        scenarios.iter().map(|_| Vec::new()).collect();
    for repeat in 0..repeats {
        for (scenario, runs) in scenarios.iter().zip(runs.iter_mut()) {
            let mut chosen: Vec<&Target> = Vec::new();
            chosen.extend(match scenario.setup {
                Setup::Standard => edgewarden.as_ref(),
                Setup::NoCache => no_cache.as_ref(),
                Setup::SeedGeo => seed_geo.as_ref(),
                Setup::Traced => traced.as_ref(),
            });
            chosen.extend(scenario.peers.iter().filter_map(peer_target));
            for target in chosen {
                let load = Load {
                    url: format!("http://{}{}", target.addr, scenario.path),
                    headers: &scenario.headers,
                    duration,
                    connections,
                    rate: options.rate,
                    cpu: load_cpu,
                };
                let sample = measure(target, origin, &options.oha, &[load])?;
                let name = target.name;
                eprintln!(
                    "{:<16} {:<10} run {}: {:>9.0} req/s  p99 {:>7.3} ms  {:>6.1} µs CPU/req",
                    scenario.name,
                    name,
                    repeat + 1,
                    sample.measured[0].rps,
                    sample.measured[0].p99_ms,
                    sample.cpu_us_per_request()
                );
                failures.extend(check(scenario, name, &sample, connections));
                match runs.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, list)) => list.push(sample),
                    None => runs.push((name, vec![sample])),
                }
            }
        }
    }
    if let Some(collector) = &collector {
        eprintln!(
            "collector: {} exports, {} bytes of spans",
            collector.exports(),
            collector.bytes()
        );
        if collector.exports() == 0 {
            failures.push("the traced gateway exported no spans".into());
        }
    }
    let mut rows: Vec<Row> = scenarios
        .iter()
        .zip(&runs)
        .map(|(scenario, runs)| report::row(scenario, runs))
        .collect();

    if attack {
        let mut list: Vec<&Target> = edgewarden.iter().collect();
        list.extend(haproxy.as_ref());
        for target in list {
            let mut runs = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                let (alone, attacked, problems) = attack_mix(
                    target,
                    origin,
                    &options.oha,
                    &tokens,
                    attack_rate,
                    duration,
                    connections,
                    load_cpu,
                )?;
                failures.extend(problems);
                runs.push((alone, attacked));
            }
            rows.push(report::attack_row(target.name, &runs));
        }
    }

    let versions = report::Versions {
        haproxy: haproxy
            .is_some()
            .then(|| targets::haproxy_version(&options.haproxy)),
        wasmtime: (serve_reuse.is_some() || serve_fresh.is_some())
            .then(|| tool_version(&options.wasmtime)),
        oha: tool_version(&options.oha),
    };
    let text = report::markdown(
        &rows,
        &versions,
        &report::Load {
            duration,
            repeats,
            connections,
            rate: options.rate,
            attack_rate,
        },
    );
    println!("{text}");
    if let Some(path) = &options.report {
        std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &options.chart {
        report::chart(&rows, path)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("wrong answers:\n  {}", failures.join("\n  ")))
    }
}

/// One run of one or more concurrent loads against a target, with what the target and the
/// origin did meanwhile.
pub struct Sample {
    pub measured: Vec<Measured>,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
    pub origin_hits: u64,
}

impl Sample {
    pub fn cpu_us_per_request(&self) -> f64 {
        let requests: u64 = self.measured.iter().map(|m| m.requests).sum();
        if requests == 0 {
            return f64::NAN;
        }
        self.cpu.as_secs_f64() * 1e6 / requests as f64
    }
}

fn measure(
    target: &Target,
    origin: &crate::origin::Origin,
    oha_path: &std::path::Path,
    loads: &[Load<'_>],
) -> Result<Sample, String> {
    let hits_before = settled(origin);
    let before = target.usage()?;
    let measured: Result<Vec<Measured>, String> = std::thread::scope(|scope| {
        let handles: Vec<_> = loads
            .iter()
            .map(|load| scope.spawn(move || oha::run(oha_path, load)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "load thread panicked".to_string())?)
            .collect()
    });
    let measured = measured?;
    let after = target.usage()?;
    // Requests the generator abandoned at its deadline may still be on their way.
    let hits_after = settled(origin);
    Ok(Sample {
        measured,
        cpu: after.cpu.saturating_sub(before.cpu),
        peak_rss_kib: after.peak_rss_kib,
        origin_hits: hits_after - hits_before,
    })
}

/// The origin's hit count once it has stopped moving (100 ms without a hit, at most 5 s).
pub fn settled(origin: &crate::origin::Origin) -> u64 {
    let mut last = origin.hits();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = origin.hits();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Every answer must have the scenario's status; the origin must see exactly the accepted
/// requests (plus at most one abandoned in-flight request per connection at the deadline).
fn check(scenario: &Scenario, target: &str, sample: &Sample, connections: usize) -> Vec<String> {
    let m = &sample.measured[0];
    let mut problems = Vec::new();
    let right = m.count(scenario.status);
    if right != m.requests || m.requests == 0 || m.errors > 0 {
        problems.push(format!(
            "{} on {target}: expected every answer to be {}, got {:?} ({} errors)",
            scenario.name, scenario.status, m.statuses, m.errors
        ));
    }
    if scenario.reaches_origin {
        let (low, high) = (right, right + connections as u64);
        if sample.origin_hits < low || sample.origin_hits > high {
            problems.push(format!(
                "{} on {target}: origin saw {} requests for {right} accepted",
                scenario.name, sample.origin_hits
            ));
        }
    } else if sample.origin_hits != 0 {
        problems.push(format!(
            "{} on {target}: {} rejected requests reached the origin",
            scenario.name, sample.origin_hits
        ));
    }
    problems
}

/// One run of the attack mix: 90 % bad tokens (malformed, bad signature, expired in equal parts)
/// and 10 % valid at a fixed offered rate, after the valid stream alone at the same rate.
#[allow(clippy::too_many_arguments)]
fn attack_mix(
    target: &Target,
    origin: &crate::origin::Origin,
    oha_path: &std::path::Path,
    tokens: &Tokens,
    rate: u32,
    duration: Duration,
    connections: usize,
    cpu: Option<usize>,
) -> Result<(Sample, Sample, Vec<String>), String> {
    let url = format!("http://{}/api/item", target.addr);
    let bearer = |t: &str| vec![("authorization".to_string(), format!("Bearer {t}"))];
    let valid = bearer(&tokens.valid);
    let bad = [
        bearer("not-a.valid.token"),
        bearer(&tokens.bad_signature),
        bearer(&tokens.expired),
    ];
    let valid_rate = (rate / 10).max(1);
    let bad_rate = (rate - valid_rate) / 3;
    let per_stream = (connections / 4).max(2);
    let valid_load = |d| Load {
        url: url.clone(),
        headers: &valid,
        duration: d,
        connections: per_stream,
        rate: Some(valid_rate),
        cpu,
    };
    let baseline = measure(target, origin, oha_path, &[valid_load(duration)])?;
    let mut loads = vec![valid_load(duration)];
    for headers in &bad {
        loads.push(Load {
            url: url.clone(),
            headers,
            duration,
            connections: per_stream,
            rate: Some(bad_rate),
            cpu,
        });
    }
    let attacked = measure(target, origin, oha_path, &loads)?;
    let v = &attacked.measured[0];
    let mut problems = Vec::new();
    let ok = v.count(200);
    if ok != v.requests || v.errors > 0 {
        problems.push(format!(
            "attack_mix on {}: valid requests answered {:?} ({} errors)",
            target.name, v.statuses, v.errors
        ));
    }
    for (i, m) in attacked.measured.iter().enumerate().skip(1) {
        if m.count(401) != m.requests {
            problems.push(format!(
                "attack_mix on {}: bad stream {i} answered {:?}",
                target.name, m.statuses
            ));
        }
    }
    if attacked.origin_hits < ok || attacked.origin_hits > ok + per_stream as u64 {
        problems.push(format!(
            "attack_mix on {}: origin saw {} requests for {ok} valid",
            target.name, attacked.origin_hits
        ));
    }
    eprintln!(
        "attack_mix       {:<10} valid {}/{} ok, p99 {:.3} ms (alone {:.3} ms), bad {:.0} req/s",
        target.name,
        ok,
        v.requests,
        v.p99_ms,
        baseline.measured[0].p99_ms,
        attacked.measured.iter().skip(1).map(|m| m.rps).sum::<f64>()
    );
    Ok((baseline, attacked, problems))
}

fn tool_version(path: &std::path::Path) -> String {
    std::process::Command::new(path)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Users' mode: the same measurement against a deployment the user names.
pub fn target(options: &TargetOptions) -> Result<(), String> {
    let token = match (&options.token_file, &options.key) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .trim()
                .to_string(),
        ),
        (None, Some(key)) => {
            let pem =
                std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
            let spec = edgewarden_tools::mint::TokenSpec {
                alg: "RS256".into(),
                kid: options.kid.clone(),
                claims: None,
                sub: options.sub.clone().or(Some("loadtest".into())),
                iss: options.iss.clone(),
                aud: options.aud.clone(),
                scope: None,
                expires_in: 6 * 3600,
            };
            Some(edgewarden_tools::mint::token(&pem, &spec)?)
        }
        (None, None) => None,
    };
    let headers: Vec<(String, String)> = token
        .map(|t| vec![("authorization".to_string(), format!("Bearer {t}"))])
        .unwrap_or_default();
    let load = Load {
        url: options.url.clone(),
        headers: &headers,
        duration: Duration::from_secs(options.duration_s),
        connections: options.connections,
        rate: options.rate,
        cpu: None,
    };
    let m = oha::run(&options.oha, &load)?;
    println!("{}", report::target_summary(&options.url, &m));
    Ok(())
}
