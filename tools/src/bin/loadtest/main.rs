//! `loadtest`: edgewarden beside HAProxy under the same load, scenario by scenario, with the same
//! load generator (oha), the gateways pinned to one CPU and the generator and origin to another.
//! `scripts/loadtest` installs what it needs and runs it; `--smoke` is the quick correctness run
//! CI does; `target` measures a user's own deployment; `shield` measures how each gateway shields
//! its origin (rejections with wrk beside Pingora alone and HAProxy, floods from many addresses,
//! limits local and in Redis); `tls` measures them over TLS (HTTP/2 and HTTP/1.1, kept-alive and one
//! connection per request) with h2load, beside Pingora alone and HAProxy; `instructions` counts
//! what each early answer executes (callgrind), edgewarden beside Pingora alone; `train` is the
//! traffic a profile-guided build learns from.

mod flood;
mod h2load;
mod instructions;
mod oha;
mod origin;
mod python_edge;
mod rapid_reset;
mod report;
mod run;
mod scenarios;
mod shield;
mod shield_targets;
mod targets;
mod tls;
mod tls_targets;
mod train;
mod wrk;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadtest", about = "Load-test edgewarden beside HAProxy")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: run::Options,
}

#[derive(Subcommand)]
enum Command {
    /// Measure your own deployment: a URL, a token (or a key to mint one), a rate and a duration.
    Target(run::TargetOptions),
    /// How well the gateways shield the origin: rejections, floods, limits (see BENCHMARKS.md).
    Shield(shield::Options),
    /// The gateways over TLS: HTTP/2 and HTTP/1.1, kept-alive and one connection per request.
    Tls(tls::Options),
    /// Instructions per early answer (callgrind), edgewarden beside Pingora alone.
    Instructions(instructions::Options),
    /// The traffic a profile-guided build learns from (scripts/build-pgo runs it).
    Train(train::Options),
    /// The flood generator the shield scenarios run (one stream; prints JSON).
    #[command(hide = true)]
    FloodClient(flood::ClientOptions),
    /// The rapid-reset flood the TLS scenarios run (one process; prints JSON).
    #[command(hide = true)]
    RapidResetClient(rapid_reset::ClientOptions),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Target(options)) => run::target(&options),
        Some(Command::Shield(options)) => shield::run(&options),
        Some(Command::Tls(options)) => tls::run(&options),
        Some(Command::Instructions(options)) => instructions::run(&options),
        Some(Command::Train(options)) => train::run(&options),
        Some(Command::FloodClient(options)) => flood::client(&options),
        Some(Command::RapidResetClient(options)) => rapid_reset::client(&options),
        None => run::bench(&cli.bench),
    };
    if let Err(e) = result {
        eprintln!("loadtest: {e}");
        std::process::exit(1);
    }
}

/// The repository root (where `policies/` and `python-plugins/` are): the parent of this crate's
/// directory (`tools/`).
fn root() -> PathBuf {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR"));
    tools.parent().unwrap_or(tools).to_path_buf()
}
