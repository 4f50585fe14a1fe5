//! `loadtest shield`: how well each gateway shields its origin, scenario by scenario, in one run.
//!
//! - Rejections with wrk (closed loop, it keeps HAProxy busy on one core): a missing token beside
//!   Pingora alone answering the same 401 (`examples/pingora_floor`) and HAProxy; a per-address
//!   limit's refusals beside a HAProxy stick table; and, last (it shuts the penalty box on the
//!   generator's address), a forged token from an address in the penalty box.
//! - Floods with the harness's own generator (`flood`), which binds client addresses: a new forged
//!   token on every request from one address, then from 64, at a fixed rate (`--flood-rate`), while
//!   valid users (127.0.0.1) send a steady stream. Each run uses addresses no earlier run used, so each starts before the box
//!   shuts. The report gives the valid users' success and p99 beside their p99 without the flood.
//! - The limits' own cost: a valid token on a route without a limit, with a local limit, and with
//!   a Redis one (the Redis script calls per request counted on the server).
//! - A looping policy beside a plain route (`hog_neighbour`, a gateway of its own with two worker
//!   threads): the plain route's valid users alone, then beside clients that keep a route whose
//!   policy never returns busy; the report gives their p99 both ways and when the looping requests
//!   were answered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::flood::Counted;
use crate::report::{Figures, Samples, median};
use crate::run::settled;
use crate::scenarios::{PUBLIC_PEM, Tokens};
use crate::shield_targets::{self as st, Redis};
use crate::targets::{Common, Target, Targets, Who};
use crate::wrk;

#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    common: Common,
    /// Connections of the closed-loop streams (wrk, and each flood).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Offered requests/s of the valid users during the floods.
    #[arg(long, default_value_t = 1000)]
    valid_rate: u32,
    /// Offered requests/s of each flood; 0: as fast as the gateway answers (which then queues
    /// everyone, valid users included, behind the flood's connections).
    #[arg(long, default_value_t = 20_000)]
    flood_rate: u32,
    #[arg(long, default_value = "/usr/bin/wrk")]
    wrk: PathBuf,
    #[arg(long, default_value = "/usr/bin/redis-server")]
    redis_server: PathBuf,
    /// Built plugins (the gateway's plugin_cache_dir), for `hog_neighbour`.
    #[arg(long, default_value = ".cache/plugins")]
    plugin_cache: PathBuf,
    /// Clients keeping the looping route busy in `hog_neighbour` (closed loop).
    #[arg(long, default_value_t = 4)]
    hogs: usize,
}

#[derive(Clone)]
enum Kind {
    /// wrk on `path`; `status`: what every answer must be (`None`: 200s and 429s, the limit's).
    Wrk {
        path: &'static str,
        headers: Vec<(String, String)>,
        status: Option<u16>,
        /// Send the same load for a second first (to shut the penalty box).
        warm_up: bool,
    },
    /// Forged tokens from `sources` addresses while valid users send a steady stream.
    Flood { sources: u8 },
    /// Valid users on a plain route while clients keep a looping policy's route busy.
    Neighbour,
}

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    targets: &'static [Who],
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {token}"))]
}

fn all(tokens: &Tokens) -> Vec<Scenario> {
    use Who::*;
    vec![
        Scenario {
            name: "no_token",
            what: "no Authorization header → 401",
            kind: Kind::Wrk {
                path: "/api/item",
                headers: Vec::new(),
                status: Some(401),
                warm_up: false,
            },
            targets: &[Floor, Edgewarden, Haproxy],
        },
        Scenario {
            name: "limit_refused",
            what: "auth off, 100 requests/s per address: past it 429",
            kind: Kind::Wrk {
                path: "/limited/item",
                headers: Vec::new(),
                status: None,
                warm_up: false,
            },
            targets: &[Edgewarden, Haproxy],
        },
        Scenario {
            name: "valid_cached",
            what: "valid token, proxied, no limit",
            kind: Kind::Wrk {
                path: "/api/item",
                headers: bearer(&tokens.valid),
                status: Some(200),
                warm_up: false,
            },
            targets: &[Edgewarden],
        },
        Scenario {
            name: "local_limit",
            what: "the same with a claim:sub limit counted in the gateway",
            kind: Kind::Wrk {
                path: "/local/item",
                headers: bearer(&tokens.valid),
                status: Some(200),
                warm_up: false,
            },
            targets: &[Edgewarden],
        },
        Scenario {
            name: "redis_limit",
            what: "the same limit counted in Redis (store = \"redis\")",
            kind: Kind::Wrk {
                path: "/redis/item",
                headers: bearer(&tokens.valid),
                status: Some(200),
                warm_up: false,
            },
            targets: &[Edgewarden],
        },
        Scenario {
            name: "flood_one_address",
            what: "a new forged token per request from one address, valid users beside",
            kind: Kind::Flood { sources: 1 },
            targets: &[Edgewarden, Haproxy],
        },
        Scenario {
            name: "flood_64_addresses",
            what: "the same from 64 addresses",
            kind: Kind::Flood { sources: 64 },
            targets: &[Edgewarden, Haproxy],
        },
        Scenario {
            name: "hog_neighbour",
            what: "valid users on a plain route beside clients on a route whose policy loops \
                   (timeout_ms = 50, deadline_ms = 200; two worker threads)",
            kind: Kind::Neighbour,
            targets: &[Edgewarden],
        },
        Scenario {
            name: "penalty_box",
            what: "a forged token from an address in the penalty box → 429",
            kind: Kind::Wrk {
                path: "/api/item",
                headers: bearer(&tokens.bad_signature),
                status: Some(429),
                warm_up: true,
            },
            // Pingora alone answers the same request (the forged token in it) 401: the floor for
            // a request of this size.
            targets: &[Floor, Edgewarden, Haproxy],
        },
    ]
}

/// One run of one scenario on one target.
#[derive(Clone, Default)]
struct Sample {
    rps: f64,
    p99_ms: f64,
    cpu_us: f64,
    /// Redis script calls per request.
    redis_per_request: Option<f64>,
    /// edgewarden's signature checks per second.
    checks_per_s: Option<f64>,
    /// Floods: answers by status, and the valid users' figures alone and under the flood.
    flood: Option<(Counted, Counted, Counted)>,
    /// `hog_neighbour`: the looping requests, and the valid users alone and beside them.
    neighbour: Option<(Counted, Counted, Counted)>,
}

pub fn run(options: &Options) -> Result<(), String> {
    let (duration, repeats, peer) = options.common.plan();
    let connections = if options.common.smoke {
        8
    } else {
        options.connections
    };
    let bench = crate::run::Bench::start()?;
    let (gateway_cpu, load_cpu, origin, dir) =
        (bench.gateway_cpu, bench.load_cpu, &bench.origin, &bench.dir);
    let tokens = Tokens::mint()?;
    let scenarios: Vec<Scenario> = all(&tokens)
        .into_iter()
        .filter(|s| options.common.wants(s.name))
        .collect();
    let wants = |who: Who| scenarios.iter().any(|s| s.targets.contains(&who));
    let redis = Redis::start(&options.redis_server, load_cpu)?;
    let edgewarden = st::start_edgewarden(
        &options.common.picked.edgewarden,
        dir.path(),
        origin.addr,
        redis.addr,
        PUBLIC_PEM,
        gateway_cpu,
    )?;
    let floor = wants(Who::Floor)
        .then(|| st::start_floor(&options.common.picked.floor, gateway_cpu))
        .transpose()?;
    let haproxy = (peer && wants(Who::Haproxy))
        .then(|| {
            st::start_haproxy(
                &options.common.haproxy,
                dir.path(),
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
    let neighbours = scenarios
        .iter()
        .any(|s| matches!(s.kind, Kind::Neighbour))
        .then(|| {
            st::start_neighbours(
                &options.common.picked.edgewarden,
                dir.path(),
                &crate::root(),
                &options.plugin_cache,
                origin.addr,
                PUBLIC_PEM,
                gateway_cpu,
            )
        })
        .transpose()?;
    let env = Env {
        options,
        dir: dir.path(),
        origin,
        redis: &redis,
        tokens: &tokens,
        duration,
        connections,
        load_cpu,
    };

    let mut samples = Samples::new();
    // The penalty box shuts on the generator's address (127.0.0.1) for a minute: its scenario's
    // runs come after every other run.
    let (last, first): (Vec<&Scenario>, Vec<&Scenario>) =
        scenarios.iter().partition(|s| s.name == "penalty_box");
    let rounds = (0..repeats)
        .map(|r| (r, &first))
        .chain((0..repeats).map(|r| (r, &last)));
    for (repeat, phase) in rounds {
        for scenario in phase.iter() {
            for who in scenario.targets {
                let target = match (&scenario.kind, &neighbours) {
                    (Kind::Neighbour, Some(neighbours)) => neighbours,
                    _ => match targets.get(*who) {
                        Some(target) => target,
                        None => continue,
                    },
                };
                let (sample, problems) = match &scenario.kind {
                    Kind::Wrk { .. } => env.wrk(scenario, target)?,
                    Kind::Flood { sources } => {
                        // Addresses no earlier run used: 127.0.0.2 .. for one, 127.0.0.10 .. for 64.
                        let first = if *sources == 1 {
                            2 + repeat as u8
                        } else {
                            10u8.saturating_add((repeat as u8).saturating_mul(*sources))
                        };
                        env.flood(target, *sources, first)?
                    }
                    Kind::Neighbour => env.neighbour(target)?,
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
    let text = report(
        &scenarios,
        &samples,
        options,
        duration,
        repeats,
        connections,
    );
    samples.finish(&text, options.common.picked.report.as_deref())
}

struct Env<'a> {
    options: &'a Options,
    dir: &'a Path,
    origin: &'a crate::origin::Origin,
    redis: &'a Redis,
    tokens: &'a Tokens,
    duration: Duration,
    connections: usize,
    load_cpu: Option<usize>,
}

impl Env<'_> {
    fn wrk(&self, scenario: &Scenario, target: &Target) -> Result<(Sample, Vec<String>), String> {
        let Kind::Wrk {
            path,
            headers,
            status,
            warm_up,
        } = &scenario.kind
        else {
            return Err("not a wrk scenario".into());
        };
        let load = |duration| wrk::Run {
            addr: target.addr,
            path,
            headers,
            duration,
            connections: self.connections,
            cpu: self.load_cpu,
        };
        if *warm_up {
            wrk::run(&self.options.wrk, self.dir, &load(Duration::from_secs(1)))?;
        }
        let mut problems = Vec::new();
        if let Some(want) = status {
            // Pingora alone answers everything 401.
            let want = if target.name == "pingora-floor" {
                &401
            } else {
                want
            };
            let got = wrk::preflight(target.addr, path, headers)?;
            if got != *want {
                problems.push(format!("answered {got}, expected {want}"));
            }
        }
        let hits = settled(self.origin);
        let calls = self.redis.script_calls()?;
        let checks = self.checks(target)?;
        let before = target.usage()?;
        let m = wrk::run(&self.options.wrk, self.dir, &load(self.duration))?;
        let after = target.usage()?;
        let hits = settled(self.origin) - hits;
        let calls = self.redis.script_calls()? - calls;
        let checks = self.checks(target)?.zip(checks).map(|(a, b)| a - b);
        if m.requests == 0 || m.errors > 0 {
            problems.push(format!("{} requests, {} errors", m.requests, m.errors));
        }
        let accepted = m.requests - m.non_2xx;
        match status {
            Some(200) if m.non_2xx > 0 => problems.push(format!("{} answers not 2xx", m.non_2xx)),
            Some(s) if *s != 200 && accepted > 0 => {
                problems.push(format!("{accepted} answers 2xx, expected {s}"))
            }
            None if m.non_2xx == 0 => problems.push("the limit refused nothing".into()),
            _ => {}
        }
        // Every accepted request, and only those, reached the origin (give or take the requests
        // in flight when wrk stopped).
        let slack = self.connections as u64;
        if hits + slack < accepted || hits > accepted + slack {
            problems.push(format!(
                "origin saw {hits} requests for {accepted} accepted"
            ));
        }
        let cpu = after.cpu.saturating_sub(before.cpu);
        Ok((
            Sample {
                rps: m.rps,
                p99_ms: m.p99_ms,
                cpu_us: per_request(cpu, m.requests),
                redis_per_request: (scenario.name == "redis_limit")
                    .then(|| calls as f64 / m.requests.max(1) as f64),
                checks_per_s: checks.map(|c| c / self.duration.as_secs_f64()),
                flood: None,
                neighbour: None,
            },
            problems,
        ))
    }

    fn flood(
        &self,
        target: &Target,
        sources: u8,
        first: u8,
    ) -> Result<(Sample, Vec<String>), String> {
        let alone = self.valid_alone(target)?;
        let flood_rate = if self.options.common.smoke {
            2_000
        } else {
            self.options.flood_rate
        };
        let flood = Stream {
            addr: target.addr,
            path: "/api/item",
            valid_path: None,
            sources,
            first,
            connections: self.connections,
            rate: (flood_rate > 0).then_some(flood_rate),
            duration: self.duration,
            token: Token::Forged(self.tokens.bad_signature.clone()),
            valid_beside: Some((self.tokens.valid.clone(), self.options.valid_rate)),
        };
        let hits = settled(self.origin);
        let checks = self.checks(target)?;
        let before = target.usage()?;
        let mut measured = self.stream(&flood)?;
        let after = target.usage()?;
        let hits = settled(self.origin) - hits;
        let checks = self.checks(target)?.zip(checks).map(|(a, b)| a - b);
        if measured.len() != 2 {
            return Err(
                "flood-client measured one stream, not the flood and the valid users".into(),
            );
        }
        let valid = measured.remove(1);
        let bad = measured.remove(0);
        let mut problems = Vec::new();
        valid_users_checked(&valid, &alone, hits, &mut problems);
        let refused = bad.count(401) + bad.count(429);
        if refused != bad.requests || bad.requests == 0 {
            problems.push(format!("forged tokens answered {:?}", bad.statuses));
        }
        let cpu = after.cpu.saturating_sub(before.cpu);
        Ok((
            Sample {
                rps: bad.rps,
                p99_ms: valid.p99_ms,
                cpu_us: per_request(cpu, bad.requests + valid.requests),
                redis_per_request: None,
                checks_per_s: checks.map(|c| c / self.duration.as_secs_f64()),
                flood: Some((bad, alone, valid)),
                neighbour: None,
            },
            problems,
        ))
    }

    /// Valid users on `/api` alone, then beside `--hogs` clients looping on `/hog` (closed loop):
    /// every valid request answered 200 and proxied, every looping one 503.
    fn neighbour(&self, target: &Target) -> Result<(Sample, Vec<String>), String> {
        let alone = self.valid_alone(target)?;
        let hogs = Stream {
            addr: target.addr,
            path: "/hog/item",
            valid_path: Some("/api/item"),
            sources: 1,
            first: 2,
            connections: self.options.hogs,
            rate: None,
            duration: self.duration,
            token: Token::Valid(self.tokens.valid.clone()),
            valid_beside: Some((self.tokens.valid.clone(), self.options.valid_rate)),
        };
        let hits = settled(self.origin);
        let before = target.usage()?;
        let mut measured = self.stream(&hogs)?;
        let after = target.usage()?;
        let hits = settled(self.origin) - hits;
        if measured.len() != 2 {
            return Err(
                "flood-client measured one stream, not the loops and the valid users".into(),
            );
        }
        let valid = measured.remove(1);
        let looping = measured.remove(0);
        let mut problems = Vec::new();
        valid_users_checked(&valid, &alone, hits, &mut problems);
        if looping.count(503) != looping.requests || looping.requests == 0 {
            problems.push(format!("looping requests answered {:?}", looping.statuses));
        }
        let cpu = after.cpu.saturating_sub(before.cpu);
        Ok((
            Sample {
                rps: looping.rps,
                p99_ms: valid.p99_ms,
                cpu_us: per_request(cpu, looping.requests + valid.requests),
                redis_per_request: None,
                checks_per_s: None,
                flood: None,
                neighbour: Some((looping, alone, valid)),
            },
            problems,
        ))
    }

    /// The valid users alone: 8 paced connections on `/api` at `--valid-rate`.
    fn valid_alone(&self, target: &Target) -> Result<Counted, String> {
        let valid = Stream {
            addr: target.addr,
            path: "/api/item",
            valid_path: None,
            sources: 1,
            first: 1,
            connections: 8,
            rate: Some(self.options.valid_rate),
            duration: self.duration,
            token: Token::Valid(self.tokens.valid.clone()),
            valid_beside: None,
        };
        self.stream(&valid)?
            .into_iter()
            .next()
            .ok_or_else(|| "flood-client measured nothing".to_string())
    }

    /// Run a `flood-client` child pinned to the load CPU; what each of its streams measured.
    fn stream(&self, s: &Stream) -> Result<Vec<Counted>, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let mut c = crate::targets::pinned(self.load_cpu, &exe);
        c.arg("flood-client")
            .args(["--addr", &s.addr.to_string()])
            .args(["--path", s.path])
            .args(["--sources", &s.sources.to_string()])
            .args(["--first-source", &s.first.to_string()])
            .args(["--connections", &s.connections.to_string()])
            .args(["--duration-ms", &s.duration.as_millis().to_string()]);
        if let Some(rate) = s.rate {
            c.args(["--rate", &rate.to_string()]);
        }
        match &s.token {
            Token::Valid(t) => c.args(["--token", t]),
            Token::Forged(t) => c.args(["--forge-from", t]),
        };
        if let Some((token, rate)) = &s.valid_beside {
            c.args(["--valid-token", token])
                .args(["--valid-rate", &rate.to_string()]);
        }
        if let Some(path) = s.valid_path {
            c.args(["--valid-path", path]);
        }
        let out = c
            .stdout(std::process::Stdio::piped())
            .output()
            .map_err(|e| format!("flood-client: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("flood-client printed {text:?}: {e}"))?;
        Ok(v["streams"]
            .as_array()
            .map(|streams| streams.iter().map(Counted::from_json).collect())
            .unwrap_or_default())
    }

    /// edgewarden's signature checks so far (`None` for other targets).
    fn checks(&self, target: &Target) -> Result<Option<f64>, String> {
        target
            .admin
            .map(|admin| st::metric(admin, "edgewarden_signature_checks_total"))
            .transpose()
    }
}

struct Stream {
    addr: SocketAddr,
    path: &'static str,
    /// The valid users' path beside the stream, when not `path`.
    valid_path: Option<&'static str>,
    sources: u8,
    first: u8,
    connections: usize,
    rate: Option<u32>,
    duration: Duration,
    token: Token,
    /// Valid users beside the stream, in the same generator: their token and rate.
    valid_beside: Option<(String, u32)>,
}

enum Token {
    Valid(String),
    Forged(String),
}

/// The valid users' answers, beside a stream and alone, were all 200, and the origin saw those
/// beside it (`hits`, give or take the 8 in flight at the end).
fn valid_users_checked(valid: &Counted, alone: &Counted, hits: u64, problems: &mut Vec<String>) {
    let ok = valid.count(200);
    if ok != valid.requests || valid.errors > 0 || alone.count(200) != alone.requests {
        problems.push(format!(
            "valid users answered {:?} ({} errors), alone {:?}",
            valid.statuses, valid.errors, alone.statuses
        ));
    }
    if hits < ok || hits > ok + 8 {
        problems.push(format!("origin saw {hits} requests for {ok} valid"));
    }
}

fn per_request(cpu: Duration, requests: u64) -> f64 {
    if requests == 0 {
        return f64::NAN;
    }
    cpu.as_secs_f64() * 1e6 / requests as f64
}

fn report(
    scenarios: &[Scenario],
    samples: &Samples<Sample>,
    options: &Options,
    duration: Duration,
    repeats: usize,
    connections: usize,
) -> String {
    let find = |scenario: &str, target: &str| samples.find(scenario, target);
    let med = |list: &[Sample], f: &dyn Fn(&Sample) -> f64| median(list.iter().map(f).collect());
    let mut out = String::new();
    let push = |out: &mut String, line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    push(
        &mut out,
        format!(
            "Machine: {} CPUs. {} s per run, median of {repeats}; wrk and the flood generator on \
             CPU 1 with {connections} connections, each gateway on CPU 0 with one thread; floods \
             offered at {} req/s (0: closed loop), valid users at {} req/s. {} · {}\n",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            duration.as_secs(),
            options.flood_rate,
            options.valid_rate,
            version(&options.wrk, "-v"),
            version(&options.common.haproxy, "-v"),
        ),
    );
    for scenario in scenarios {
        push(
            &mut out,
            format!("- `{}`: {}", scenario.name, scenario.what),
        );
    }
    push(&mut out, String::new());
    push(
        &mut out,
        "| scenario | target | req/s | CPU µs/req | p99 ms | ÷ HAProxy req/s | CPU over Pingora alone |"
            .into(),
    );
    push(&mut out, "|---|---|---|---|---|---|---|".into());
    let no_token_floor = find("no_token", "pingora-floor").map(|l| med(l, &|s| s.cpu_us));
    for scenario in scenarios
        .iter()
        .filter(|s| matches!(s.kind, Kind::Wrk { .. }))
    {
        let peer = find(scenario.name, "haproxy").map(|l| med(l, &|s| s.rps));
        for (s, target, list) in samples.runs.iter().filter(|(s, _, _)| *s == scenario.name) {
            let rps = med(list, &|s| s.rps);
            let cpu = med(list, &|s| s.cpu_us);
            let ratio = match (peer, *target) {
                (Some(p), t) if t != "haproxy" => format!("{:.2}", rps / p),
                _ => "—".into(),
            };
            // Against Pingora alone answering the same request (the scenario's own floor run),
            // else its missing-token 401.
            let floor_cpu = find(s, "pingora-floor")
                .map(|l| med(l, &|s| s.cpu_us))
                .or(no_token_floor);
            let over = match (floor_cpu, *target) {
                (Some(f), "edgewarden") if *s == "no_token" || *s == "penalty_box" => {
                    format!("{:+.2} µs", cpu - f)
                }
                _ => "—".into(),
            };
            push(
                &mut out,
                format!(
                    "| {s} | {target} | {rps:.0} | {cpu:.2} | {:.3} | {ratio} | {over} |",
                    med(list, &|s| s.p99_ms)
                ),
            );
        }
    }
    if let Some(list) = find("redis_limit", "edgewarden") {
        push(
            &mut out,
            format!(
                "\nRedis script calls per request (`redis_limit`): {:.2}",
                med(list, &|s| s.redis_per_request.unwrap_or(f64::NAN))
            ),
        );
    }
    let floods: Vec<_> = samples
        .runs
        .iter()
        .filter(|(_, _, l)| l[0].flood.is_some())
        .collect();
    if !floods.is_empty() {
        push(
            &mut out,
            "\n| flood | target | forged req/s | answered 401 / 429 | signature checks/s | \
             CPU µs/req | valid users 200 | valid p99 alone | under the flood | ratio |"
                .into(),
        );
        push(&mut out, "|---|---|---|---|---|---|---|---|---|---|".into());
        for (scenario, target, list) in floods {
            let floods: Vec<&(Counted, Counted, Counted)> =
                list.iter().filter_map(|s| s.flood.as_ref()).collect();
            let sum = |f: &dyn Fn(&(Counted, Counted, Counted)) -> u64| -> u64 {
                floods.iter().map(|x| f(x)).sum()
            };
            let alone = median(floods.iter().map(|f| f.1.p99_ms).collect());
            let under = median(floods.iter().map(|f| f.2.p99_ms).collect());
            let checks = med(list, &|s| s.checks_per_s.unwrap_or(f64::NAN));
            push(
                &mut out,
                format!(
                    "| {scenario} | {target} | {:.0} | {} / {} | {} | {:.2} | {}/{} | {alone:.3} | \
                     {under:.3} | {:.2} |",
                    med(list, &|s| s.rps),
                    sum(&|f| f.0.count(401)),
                    sum(&|f| f.0.count(429)),
                    if checks.is_finite() {
                        format!("{checks:.0}")
                    } else {
                        "—".into()
                    },
                    med(list, &|s| s.cpu_us),
                    sum(&|f| f.2.count(200)),
                    sum(&|f| f.2.requests),
                    under / alone,
                ),
            );
        }
    }
    let neighbours: Vec<_> = samples
        .runs
        .iter()
        .filter(|(_, _, l)| l[0].neighbour.is_some())
        .collect();
    if !neighbours.is_empty() {
        push(
            &mut out,
            format!(
                "\n| neighbour | target | looping req/s ({} clients) | answered 503 | looping p50 / p99 ms | \
                 CPU µs/req | valid users 200 | valid p99 alone | beside the loops | ratio |",
                options.hogs
            ),
        );
        push(&mut out, "|---|---|---|---|---|---|---|---|---|---|".into());
        for (scenario, target, list) in neighbours {
            let runs: Vec<&(Counted, Counted, Counted)> =
                list.iter().filter_map(|s| s.neighbour.as_ref()).collect();
            let sum = |f: &dyn Fn(&(Counted, Counted, Counted)) -> u64| -> u64 {
                runs.iter().map(|x| f(x)).sum()
            };
            let alone = median(runs.iter().map(|f| f.1.p99_ms).collect());
            let beside = median(runs.iter().map(|f| f.2.p99_ms).collect());
            push(
                &mut out,
                format!(
                    "| {scenario} | {target} | {:.0} | {}/{} | {:.1} / {:.1} | {:.2} | {}/{} | \
                     {alone:.3} | {beside:.3} | {:.2} |",
                    med(list, &|s| s.rps),
                    sum(&|f| f.0.count(503)),
                    sum(&|f| f.0.requests),
                    median(runs.iter().map(|f| f.0.p50_ms).collect()),
                    median(runs.iter().map(|f| f.0.p99_ms).collect()),
                    med(list, &|s| s.cpu_us),
                    sum(&|f| f.2.count(200)),
                    sum(&|f| f.2.requests),
                    beside / alone,
                ),
            );
        }
    }
    out
}

pub fn version(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{} (version unknown)", program.display()))
}
