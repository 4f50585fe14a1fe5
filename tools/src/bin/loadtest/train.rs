//! `loadtest train`: the traffic a profile-guided build of edgewarden learns from
//! (`scripts/build-pgo`). An instrumented binary counts which branches and functions each request
//! runs; the optimised build then lays the hot paths out together, so a request touches fewer
//! lines of code and the processor fetches fewer of them again (BENCHMARKS.md, "Where the CPU
//! time goes that instructions do not show, and a profile-guided build").
//!
//! The traffic is what the gateway meets in production and in the comparisons: tokens missing,
//! valid (proxied to a real origin) and forged (until the address's penalty box shuts), each over
//! HTTP/1.1 and over HTTP/2 with TLS; then valid requests through the shipped Python policies
//! (the load test's `geo_warm` and `plugins_warm` routes), so that the plugin path is not laid
//! out as cold code. Pingora alone (`examples/pingora_floor`, the reference the
//! comparisons measure against) gets its own requests, so that its build is optimised the same
//! way. Each program is stopped with SIGINT and waited for: the instrumented runtime writes its
//! profile when the process exits. Every answer's status class is checked, and the origin's hits.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::h2load;
use crate::scenarios::{PUBLIC_PEM, Setup, Tokens};
use crate::targets::Target;
use crate::tls_targets::{Certificate, start_edgewarden_with, start_floor_with};

#[derive(clap::Args)]
pub struct Options {
    /// Requests per phase (eight phases on edgewarden, three on Pingora alone).
    #[arg(long, default_value_t = 20000)]
    pub requests: u64,
    /// The instrumented gateway.
    #[arg(long, default_value = "target/pgo-generate/release/edgewarden")]
    pub edgewarden: PathBuf,
    /// The instrumented Pingora alone.
    #[arg(
        long,
        default_value = "target/pgo-generate/release/examples/pingora_floor"
    )]
    pub floor: PathBuf,
    #[arg(long, default_value = "/usr/bin/h2load")]
    pub h2load: PathBuf,
    /// Built plugins (the gateway's plugin_cache_dir), shared with the load test.
    #[arg(long, default_value = ".cache/plugins")]
    pub plugin_cache: PathBuf,
}

/// The load test's scenarios whose requests go through Python policies, sent over HTTP/1.1.
const THROUGH_POLICIES: [&str; 2] = ["geo_warm", "plugins_warm"];

/// One kind of request, sent on one connection: HTTP/2 over TLS with 8 streams in flight, or
/// HTTP/1.1 in plain text.
struct Phase {
    name: &'static str,
    tls: bool,
    token: Token,
    /// The class every answer must be in (the forged phases: 401 until the box shuts, then 429).
    status: u16,
}

enum Token {
    Missing,
    Valid,
    Forged,
}

const fn phase(name: &'static str, tls: bool, token: Token, status: u16) -> Phase {
    Phase {
        name,
        tls,
        token,
        status,
    }
}

const GATEWAY: [Phase; 6] = [
    phase("no token, HTTP/1.1", false, Token::Missing, 401),
    phase("no token, HTTP/2", true, Token::Missing, 401),
    phase("valid token, HTTP/1.1", false, Token::Valid, 200),
    phase("valid token, HTTP/2", true, Token::Valid, 200),
    phase("forged token, HTTP/1.1", false, Token::Forged, 429),
    phase("forged token, HTTP/2", true, Token::Forged, 429),
];

/// What Pingora alone answers (401 to everything): the comparisons' requests.
const FLOOR: [Phase; 3] = [
    phase("no token, HTTP/1.1", false, Token::Missing, 401),
    phase("no token, HTTP/2", true, Token::Missing, 401),
    phase("forged token, HTTP/1.1", false, Token::Forged, 401),
];

pub fn run(options: &Options) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let certificate = Certificate::write(dir.path())?;
    let tokens = Tokens::mint()?;
    let (_runtime, origin) = crate::origin::start_on_own_runtime()?;

    let binary = &options.edgewarden;
    let shield = "[shield]\npenalty_failures = 50\npenalty_window_s = 60\npenalty_s = 600\n";
    let gateway = start_edgewarden_with(
        Command::new(binary),
        binary,
        dir.path(),
        &certificate,
        origin.addr,
        PUBLIC_PEM,
        shield,
    )?;
    play(options, &gateway, &GATEWAY, &tokens, dir.path())?;
    let valid = 2 * options.requests;
    if origin.hits() != valid {
        return Err(format!(
            "the origin received {} requests, {valid} were valid",
            origin.hits()
        ));
    }
    gateway.0.interrupt()?;
    through_policies(options, &origin, &tokens, dir.path())?;

    let floor = start_floor_with(Command::new(&options.floor), &options.floor, &certificate)?;
    play(options, &floor, &FLOOR, &tokens, dir.path())?;
    floor.0.interrupt()?;
    eprintln!("loadtest: trained");
    Ok(())
}

/// Valid requests through the shipped Python policies: the load test's gateway (plain HTTP, its
/// standard routes), each scenario's path and headers.
fn through_policies(
    options: &Options,
    origin: &crate::origin::Origin,
    tokens: &Tokens,
    dir: &Path,
) -> Result<(), String> {
    let root = crate::root();
    let gateway = crate::targets::Edgewarden {
        binary: &options.edgewarden,
        dir,
        root: &root,
        plugin_cache: &options.plugin_cache,
        plugin_timeout_ms: None,
        origin: origin.addr,
        collector: None,
        public_pem: PUBLIC_PEM,
        cpu: None,
    }
    .start(Setup::Standard)?;
    let before = origin.hits();
    for scenario in crate::scenarios::all(tokens)
        .into_iter()
        .filter(|s| THROUGH_POLICIES.contains(&s.name))
    {
        let url = format!("http://{}{}", gateway.addr, scenario.path);
        let connection = (options.requests, 1, true);
        h2load::count(
            &options.h2load,
            dir,
            &url,
            &scenario.headers,
            connection,
            scenario.status,
        )
        .map_err(|e| format!("{}: {e}", scenario.name))?;
        eprintln!("loadtest: edgewarden: {}", scenario.name);
    }
    let through = origin.hits() - before;
    let sent = THROUGH_POLICIES.len() as u64 * options.requests;
    if through != sent {
        return Err(format!(
            "the origin received {through} of the {sent} requests sent through policies"
        ));
    }
    gateway.interrupt()
}

/// Send each phase's requests to `target` (its TLS address, and its plain-text one).
fn play(
    options: &Options,
    (target, plain): &(Target, std::net::SocketAddr),
    phases: &[Phase],
    tokens: &Tokens,
    dir: &Path,
) -> Result<(), String> {
    for phase in phases {
        let url = match phase.tls {
            true => format!("https://{}/api", target.addr),
            false => format!("http://{plain}/api"),
        };
        let token = match phase.token {
            Token::Missing => None,
            Token::Valid => Some(&tokens.valid),
            Token::Forged => Some(&tokens.bad_signature),
        };
        let headers: Vec<(String, String)> = token
            .map(|t| ("authorization".to_string(), format!("Bearer {t}")))
            .into_iter()
            .collect();
        let connection = match phase.tls {
            true => (options.requests, 8, false),
            false => (options.requests, 1, true),
        };
        h2load::count(
            &options.h2load,
            dir,
            &url,
            &headers,
            connection,
            phase.status,
        )
        .map_err(|e| format!("{} on {}: {e}", phase.name, target.name))?;
        eprintln!("loadtest: {}: {}", target.name, phase.name);
    }
    Ok(())
}
