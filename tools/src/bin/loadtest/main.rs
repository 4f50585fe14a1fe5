//! `loadtest`: edgewarden beside HAProxy under the same load, scenario by scenario, with the same
//! load generator (oha), the gateways pinned to one CPU and the generator and origin to another.
//! `scripts/loadtest` installs what it needs and runs it; `--smoke` is the quick correctness run
//! CI does; `target` measures a user's own deployment.

mod oha;
mod origin;
mod python_edge;
mod report;
mod run;
mod scenarios;
mod targets;

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Target(options)) => run::target(&options),
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
