//! Command-line entry point.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgewarden::config::Config;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "edgewarden",
    version,
    about = "Edge gateway: authentication and policy in front of your origins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and print every problem found.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
    /// Run the shipped example configuration in front of built-in echo origins.
    Demo {
        /// Configuration file (the embedded example is used when it does not exist).
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("EDGEWARDEN_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} routes, {} origins)",
                    config.display(),
                    c.routes.len(),
                    c.origins.len()
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Command::Run { config } => match Config::load(&config) {
            Ok(c) => edgewarden::server::run(c).map_err(Into::into),
            Err(e) => Err(e.into()),
        },
        Command::Demo { config } => edgewarden::demo::run(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{e}");
            if !e.to_string().ends_with('\n') {
                eprintln!();
            }
            ExitCode::FAILURE
        }
    }
}
