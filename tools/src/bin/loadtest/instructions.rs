//! `loadtest instructions`: what edgewarden executes for an early answer, beside Pingora alone
//! answering the same request, counted by callgrind. Instructions are not time, but they are the
//! same on a busy machine as on a quiet one, so a difference of a few per cent between two builds or
//! two gateways shows in one run where CPU time needs many.
//!
//! Each gateway runs under `valgrind --tool=callgrind` with counting off. After a warm-up (which
//! also fills the penalty box of the scenario that needs it), counting is switched on
//! (`callgrind_control -i on`) for exactly `--requests` requests from h2load on one kept-alive
//! connection, then off, and the counts are dumped and read with `callgrind_annotate`. Every
//! answer's status class is checked, and the first answer's status beforehand.
//!
//! `memcpy` is reported apart: glibc copies large blocks with `rep movsb`, which callgrind counts
//! once per byte although the processor moves many bytes per cycle. In a Pingora server most of it
//! is the per-request future of the HTTP session being moved, so it grows with the size of a
//! request's state more than with the work done.
//!
//! `--cache` also runs callgrind's cache and branch-predictor simulation: instructions are not
//! all alike, and a gateway whose code does not fit the instruction cache pays for each line it
//! fetches again. It reports, per request, the first-level instruction and data cache misses, the
//! mispredicted branches, and callgrind's cycle estimate from them (KCachegrind's
//! `Ir + 10 × (L1 misses + mispredicts) + 100 × LL misses`), a model, not a measurement of time.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::h2load;
use crate::scenarios::{PUBLIC_PEM, Tokens};
use crate::targets::{Picked, Target};
use crate::tls_targets::{Certificate, start_edgewarden_with, start_floor_with};

/// Requests of the warm-up, not counted: connections and caches set up, and the penalty box
/// of the address filled (its threshold is [`PENALTY_FAILURES`]).
const WARM_UP: u64 = 300;
const PENALTY_FAILURES: u32 = 50;

#[derive(clap::Args)]
pub struct Options {
    /// Requests counted per scenario and gateway.
    #[arg(long, default_value_t = 2000)]
    pub requests: u64,
    #[command(flatten)]
    pub picked: Picked,
    #[arg(long, default_value = "/usr/bin/h2load")]
    pub h2load: PathBuf,
    /// Keep callgrind's dumps in this folder (`TARGET-SCENARIO.callgrind.1`), to read with
    /// `callgrind_annotate --inclusive=yes`.
    #[arg(long)]
    pub dumps: Option<PathBuf>,
    /// Also simulate the caches and the branch predictor (slower): misses per request.
    #[arg(long)]
    pub cache: bool,
}

/// One request shape, sent to both gateways.
struct Scenario {
    name: &'static str,
    about: &'static str,
    tls: bool,
    h1: bool,
    streams: usize,
    /// The request carries a forged token (the penalty-box scenario).
    forged: bool,
    /// What edgewarden answers (Pingora alone always answers 401).
    status: u16,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "h1_401",
        about: "HTTP/1.1, one kept-alive connection, no token → 401",
        tls: false,
        h1: true,
        streams: 1,
        forged: false,
        status: 401,
    },
    Scenario {
        name: "h1_penalty_box",
        about: "HTTP/1.1, a forged token from an address in the penalty box → 429 \
                (Pingora alone: 401 to the same request)",
        tls: false,
        h1: true,
        streams: 1,
        forged: true,
        status: 429,
    },
    Scenario {
        name: "h2_401",
        about: "HTTP/2 over TLS, one connection with 8 streams in flight, no token → 401",
        tls: true,
        h1: false,
        streams: 8,
        forged: false,
        status: 401,
    },
];

/// A gateway under callgrind (its address is the TLS one), with its plaintext address.
struct Counted {
    target: Target,
    plain: std::net::SocketAddr,
    out: PathBuf,
}

impl Counted {
    /// A started target (and its plain-text address) whose counts are dumped to `out`.
    fn new((target, plain): (Target, std::net::SocketAddr), out: PathBuf) -> Counted {
        Counted { target, plain, out }
    }
}

/// What one gateway executed per request in one scenario.
struct Count {
    total: f64,
    memcpy: f64,
    /// With `--cache`: what the simulated caches and branch predictor missed.
    misses: Option<Misses>,
}

/// Per request, from callgrind's cache and branch simulation.
#[derive(Debug, PartialEq)]
struct Misses {
    /// First-level instruction cache misses.
    i1: f64,
    /// First-level data cache misses, reads and writes.
    d1: f64,
    /// Last-level misses, instructions and data.
    ll: f64,
    /// Mispredicted branches, conditional and indirect.
    branches: f64,
}

impl Misses {
    /// KCachegrind's cycle estimate: each first-level miss and mispredict ~10 cycles, each
    /// last-level miss ~100, every instruction 1.
    fn cycles(&self, instructions: f64) -> f64 {
        instructions + 10.0 * (self.i1 + self.d1 + self.branches) + 100.0 * self.ll
    }
}

pub fn run(options: &Options) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let certificate = Certificate::write(dir.path())?;
    let tokens = Tokens::mint()?;
    let forged = vec![(
        "authorization".to_string(),
        format!("Bearer {}", tokens.bad_signature),
    )];
    let mut report = format!(
        "Instructions per request (callgrind), {} requests counted after {WARM_UP} of warm-up.\n\n\
         | scenario | target | instructions | of which memcpy | without memcpy | edgewarden over Pingora alone (without memcpy) |\n\
         |---|---|---|---|---|---|\n",
        options.requests
    );
    let mut cache = String::from(
        "\nWith the cache and branch simulation (callgrind's model of this machine's caches), per request:\n\n\
         | scenario | target | I1 misses | D1 misses | LL misses | mispredicted branches | cycle estimate | edgewarden over Pingora alone |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut about = String::new();
    for scenario in SCENARIOS.iter().filter(|s| options.picked.wants(s.name)) {
        about.push_str(&format!("- `{}`: {}\n", scenario.name, scenario.about));
        let headers: &[(String, String)] = if scenario.forged { &forged } else { &[] };
        let floor = start_floor(options, &certificate, dir.path(), scenario.name)?;
        let floor_count = count(options, &floor, scenario, headers, 401, dir.path())?;
        drop(floor);
        let edgewarden = start_edgewarden(options, &certificate, dir.path(), scenario.name)?;
        let count = count(
            options,
            &edgewarden,
            scenario,
            headers,
            scenario.status,
            dir.path(),
        )?;
        drop(edgewarden);
        if let Some(keep) = &options.dumps {
            keep_dumps(dir.path(), keep, scenario.name)?;
        }
        let rest = |c: &Count| c.total - c.memcpy;
        for (who, c) in [("pingora-floor", &floor_count), ("edgewarden", &count)] {
            let over = match who {
                "edgewarden" => {
                    let extra = rest(c) - rest(&floor_count);
                    format!("{extra:+.0} ({:+.1} %)", 100.0 * extra / rest(&floor_count))
                }
                _ => "—".to_string(),
            };
            report.push_str(&format!(
                "| {} | {who} | {:.0} | {:.0} | {:.0} | {over} |\n",
                scenario.name,
                c.total,
                c.memcpy,
                rest(c)
            ));
        }
        if let (Some(f), Some(e)) = (&floor_count.misses, &count.misses) {
            let floor_cycles = f.cycles(floor_count.total);
            for (who, c, m) in [
                ("pingora-floor", &floor_count, f),
                ("edgewarden", &count, e),
            ] {
                let cycles = m.cycles(c.total);
                let over = match who {
                    "edgewarden" => format!(
                        "{:+.0} ({:+.1} %)",
                        cycles - floor_cycles,
                        100.0 * (cycles - floor_cycles) / floor_cycles
                    ),
                    _ => "—".to_string(),
                };
                cache.push_str(&format!(
                    "| {} | {who} | {:.0} | {:.0} | {:.1} | {:.0} | {cycles:.0} | {over} |\n",
                    scenario.name, m.i1, m.d1, m.ll, m.branches
                ));
            }
        }
        eprintln!("loadtest: {} counted", scenario.name);
    }
    let cache = if options.cache { cache } else { String::new() };
    let report = format!("{report}{cache}\n{about}");
    println!("{report}");
    if let Some(path) = &options.picked.report {
        std::fs::write(path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Copy a scenario's two dumps into `keep`.
fn keep_dumps(dir: &Path, keep: &Path, scenario: &str) -> Result<(), String> {
    std::fs::create_dir_all(keep).map_err(|e| format!("{}: {e}", keep.display()))?;
    for target in ["floor", "edgewarden"] {
        let name = format!("{target}-{scenario}.callgrind.1");
        std::fs::copy(dir.join(&name), keep.join(&name))
            .map_err(|e| format!("{}: {e}", keep.join(&name).display()))?;
    }
    Ok(())
}

/// `program` under callgrind, counting nothing until told, its counts dumped to `out`.
fn callgrind(program: &Path, out: &Path, cache: bool) -> Command {
    let mut command = Command::new("valgrind");
    command.args(["--tool=callgrind", "--instr-atstart=no"]);
    if cache {
        command.args(["--cache-sim=yes", "--branch-sim=yes"]);
    }
    command
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--log-file={}.log", out.display()))
        .arg(program);
    command
}

fn start_floor(
    options: &Options,
    certificate: &Certificate,
    dir: &Path,
    scenario: &str,
) -> Result<Counted, String> {
    let out = dir.join(format!("floor-{scenario}.callgrind"));
    let binary = &options.picked.floor;
    let started = start_floor_with(callgrind(binary, &out, options.cache), binary, certificate)?;
    Ok(Counted::new(started, out))
}

/// edgewarden as the TLS scenarios run it (`/api` needs a token; its origin is never reached),
/// with the shield's penalty box at the shield scenarios' threshold.
fn start_edgewarden(
    options: &Options,
    certificate: &Certificate,
    dir: &Path,
    scenario: &str,
) -> Result<Counted, String> {
    let out = dir.join(format!("edgewarden-{scenario}.callgrind"));
    let binary = &options.picked.edgewarden;
    let shield = format!(
        "[shield]\npenalty_failures = {PENALTY_FAILURES}\npenalty_window_s = 60\npenalty_s = 600\n"
    );
    let origin = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let started = start_edgewarden_with(
        callgrind(binary, &out, options.cache),
        binary,
        dir,
        certificate,
        origin,
        PUBLIC_PEM,
        &shield,
    )?;
    Ok(Counted::new(started, out))
}

/// Warm up, count `options.requests` requests, and read the counts back per request.
fn count(
    options: &Options,
    gateway: &Counted,
    scenario: &Scenario,
    headers: &[(String, String)],
    status: u16,
    dir: &Path,
) -> Result<Count, String> {
    let url = match scenario.tls {
        true => format!("https://{}/api", gateway.target.addr),
        false => format!("http://{}/api", gateway.plain),
    };
    let load = |requests: u64| -> Result<(), String> {
        let connection = (requests, scenario.streams, scenario.h1);
        h2load::count(&options.h2load, dir, &url, headers, connection, status)
            .map_err(|e| format!("{} on {}: {e}", scenario.name, gateway.target.name))
    };
    load(WARM_UP)?;
    let first = first_status(gateway.plain, headers)?;
    if first != status {
        return Err(format!(
            "{} on {}: answered {first}, expected {status}",
            scenario.name, gateway.target.name
        ));
    }
    let pid = gateway.target.pid().to_string();
    control(&["-i", "on", &pid])?;
    load(options.requests)?;
    control(&["-i", "off", &pid])?;
    control(&["-d", &pid])?;
    let dump = PathBuf::from(format!("{}.1", gateway.out.display()));
    let (total, memcpy) = read_counts(&dump)?;
    let n = options.requests as f64;
    let misses = match options.cache {
        true => {
            let text =
                std::fs::read_to_string(&dump).map_err(|e| format!("{}: {e}", dump.display()))?;
            let misses = parse_misses(&text, n)
                .ok_or_else(|| format!("{}: no cache simulation totals", dump.display()))?;
            Some(misses)
        }
        false => None,
    };
    Ok(Count {
        total: total as f64 / n,
        memcpy: memcpy as f64 / n,
        misses,
    })
}

fn control(args: &[&str]) -> Result<(), String> {
    let output = Command::new("callgrind_control")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "callgrind_control {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

/// The status of one plaintext HTTP/1.1 request to `/api` with `headers`.
fn first_status(addr: std::net::SocketAddr, headers: &[(String, String)]) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut request = "GET /api HTTP/1.1\r\nHost: loadtest\r\nConnection: close\r\n".to_string();
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut answer = Vec::new();
    conn.write_all(request.as_bytes())
        .and_then(|()| conn.read_to_end(&mut answer))
        .map_err(|e| format!("{addr}: {e}"))?;
    std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "{addr}: no status in {:?}",
                String::from_utf8_lossy(&answer)
            )
        })
}

/// The program's total instructions and those in glibc's `memcpy`/`memmove`, from a dump.
fn read_counts(dump: &Path) -> Result<(u64, u64), String> {
    let output = Command::new("callgrind_annotate")
        .arg("--threshold=100")
        .arg(dump)
        .output()
        .map_err(|e| format!("cannot run callgrind_annotate: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_counts(&text).ok_or_else(|| {
        format!(
            "{}: no totals in callgrind_annotate's output",
            dump.display()
        )
    })
}

fn parse_counts(text: &str) -> Option<(u64, u64)> {
    let number = |line: &str| -> Option<u64> {
        line.split_whitespace()
            .next()?
            .replace(',', "")
            .parse()
            .ok()
    };
    let total = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(number)?;
    let memcpy = text
        .lines()
        .filter(|l| {
            let function = l.rsplit(':').next().unwrap_or_default();
            l.contains('%')
                && (function.starts_with("__memcpy") || function.starts_with("__memmove"))
        })
        .filter_map(number)
        .sum();
    Some((total, memcpy))
}

/// The simulated misses per request, from a dump's `events:` and `totals:` lines.
fn parse_misses(dump: &str, requests: f64) -> Option<Misses> {
    let field = |prefix: &str| -> Option<&str> {
        dump.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let names: Vec<&str> = field("events:")?.split_whitespace().collect();
    let values: Vec<f64> = field("totals:")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if names.len() != values.len() {
        return None;
    }
    let sum = |events: &[&str]| -> Option<f64> {
        let total: f64 = events
            .iter()
            .map(|e| Some(values[names.iter().position(|n| n == e)?]))
            .sum::<Option<f64>>()?;
        Some(total / requests)
    };
    Some(Misses {
        i1: sum(&["I1mr"])?,
        d1: sum(&["D1mr", "D1mw"])?,
        ll: sum(&["ILmr", "DLmr", "DLmw"])?,
        branches: sum(&["Bcm", "Bim"])?,
    })
}

#[cfg(test)]
mod tests {
    use super::{Misses, parse_counts, parse_misses};

    #[test]
    fn misses_per_request_are_read_from_a_dumps_totals() {
        let dump = "\
version: 1
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim
summary: 0
totals: 86708729 43999113 41260172 3374868 1305840 1408441 2457 1557 3477 35917755 446118 728862 276796
";
        let misses = parse_misses(dump, 2000.0).expect("misses");
        assert_eq!(
            misses,
            Misses {
                i1: 1687.434,
                d1: (1305840.0 + 1408441.0) / 2000.0,
                ll: (2457.0 + 1557.0 + 3477.0) / 2000.0,
                branches: (446118.0 + 276796.0) / 2000.0,
            }
        );
        let without = "events: Ir\ntotals: 86708729\n";
        assert_eq!(parse_misses(without, 2000.0), None);
    }

    #[test]
    fn totals_and_memcpy_are_read_from_callgrind_annotate() {
        let text = "\
--------------------------------------------------------------------------------
Ir                   
--------------------------------------------------------------------------------
194,309,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                   file:function
--------------------------------------------------------------------------------
77,495,662 (39.88%)  ./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S:__memcpy_avx_unaligned_erms [/usr/lib/x86_64-linux-gnu/libc.so.6]
 6,955,169 ( 3.58%)  ???:pingora_core::protocols::http::v1::server::HttpSession::read_request::{{closure}} [/tmp/floor]
     1,000 ( 0.01%)  ./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S:__memmove_avx_unaligned_erms [/usr/lib/x86_64-linux-gnu/libc.so.6]
";
        assert_eq!(parse_counts(text), Some((194_309_000, 77_496_662)));
        assert_eq!(parse_counts("no totals here"), None);
    }
}
