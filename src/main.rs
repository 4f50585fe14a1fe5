//! Command-line entry point.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgewarden::config::{Config, ConfigError, DemoKey};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Targets, filter_fn};
use tracing_subscriber::prelude::*;

const ACCESS_LOG: &str = "edgewarden::access";

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// (Pingora's header maps and futures), and glibc's malloc was 15 % of a rejection's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Trust the repository's public demo key (config/demo/) if an issuer has it. Anyone can
        /// sign tokens with it: for tests only.
        #[arg(long)]
        allow_demo_key: bool,
    },
    /// Validate a configuration file and print every problem found.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
        /// Accept the repository's public demo key (config/demo/) if an issuer has it. Anyone
        /// can sign tokens with it: for tests only.
        #[arg(long)]
        allow_demo_key: bool,
    },
    /// Drain the running gateway this configuration describes (POST /drain on its admin_listen
    /// with its admin_token_file); returns once the drain has lasted drain_s.
    Drain {
        /// Configuration file of the running gateway.
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
        /// End the drain instead (POST /drain/cancel): ready again, connections kept alive.
        #[arg(long)]
        cancel: bool,
    },
    /// Sign a token with a private key (for tests, demos and load tests).
    Token {
        /// PEM private key (RSA, EC P-256/P-384 or Ed25519).
        #[arg(long)]
        key: PathBuf,
        /// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA.
        #[arg(long, default_value = "RS256")]
        alg: String,
        #[arg(long)]
        kid: Option<String>,
        #[arg(long)]
        sub: Option<String>,
        #[arg(long)]
        iss: Option<String>,
        /// Audience; repeat for several.
        #[arg(long)]
        aud: Vec<String>,
        /// Space-separated scopes (`scope` claim).
        #[arg(long)]
        scope: Option<String>,
        /// Seconds until `exp`; negative for an expired token.
        #[arg(long, default_value_t = 3600, allow_hyphen_values = true)]
        expires_in: i64,
        /// More claims as a JSON object, merged last.
        #[arg(long)]
        claims: Option<String>,
    },
    /// Print a JWKS with the public half of a private key.
    Jwks {
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "RS256")]
        alg: String,
        #[arg(long)]
        kid: String,
    },
    /// Build Python policy plugins, or start a new one.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Run the shipped example configuration in front of built-in echo origins.
    Demo {
        /// Configuration file (the example in the repository by default).
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Build every plugin under plugins_dir (componentize-py, then precompile); cached by content.
    Build {
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
    /// Create plugins_dir/NAME with a plugin.py and its pytest file.
    New {
        name: String,
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
}

fn plugins_command(command: PluginsCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        PluginsCommand::Build { config } => {
            let config = Config::load(&config)?;
            let built = edgewarden::plugins::build_all(&config)?;
            for line in built {
                println!("{line}");
            }
            Ok(())
        }
        PluginsCommand::New { name, config } => {
            let config = Config::load(&config)?;
            let dir = edgewarden::plugins::scaffold(&config.server.plugins_dir, &name)?;
            println!("created {}", dir.display());
            Ok(())
        }
    }
}

/// The configuration at `path`, with the demo key allowed only when the command line says so.
fn load(path: &std::path::Path, allow_demo_key: bool) -> Result<Config, ConfigError> {
    let mut config = Config::load(path)?;
    if allow_demo_key {
        tracing::warn!(
            "--allow-demo-key: the repository's public demo key is trusted; anyone can sign \
             tokens it accepts. Never use this outside tests."
        );
        config.demo_key = DemoKey::Allow;
    }
    Ok(config)
}

fn read(path: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("EDGEWARDEN_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn")
    });
    // Diagnostics go to stderr as text; the access log (target `edgewarden::access`, written only
    // when `[access_log]` is on) goes to stdout as JSON lines, from a writer thread so a slow
    // reader of stdout never stalls a request.
    let (stdout, _flush_on_exit) = tracing_appender::non_blocking(std::io::stdout());
    let access = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_target(false)
        .with_level(false)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(stdout)
        .with_filter(Targets::new().with_target(ACCESS_LOG, tracing::Level::INFO));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|meta| meta.target() != ACCESS_LOG))
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(access)
        .with(diagnostics)
        .init();

    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Check {
            config,
            allow_demo_key,
        } => match load(&config, allow_demo_key).and_then(|c| {
            // Everything a start would build, with every problem at once: origins, issuers and
            // their key files, geo databases, policies and their plugins (built and initialised).
            let summary = format!("{} routes, {} origins", c.routes.len(), c.origins.len());
            edgewarden::generation::Generation::build(c)
                .map(|_| summary)
                .map_err(|e| ConfigError {
                    file: config.clone(),
                    problems: e.iter().map(ToString::to_string).collect(),
                })
        }) {
            Ok(summary) => {
                println!("{}: OK ({summary})", config.display());
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Command::Run {
            config,
            allow_demo_key,
        } => match load(&config, allow_demo_key) {
            Ok(c) => edgewarden::server::run(c).map_err(Into::into),
            Err(e) => Err(e.into()),
        },
        Command::Drain { config, cancel } => {
            let action = if cancel {
                edgewarden::admin::client::Action::Cancel
            } else {
                edgewarden::admin::client::Action::Drain
            };
            edgewarden::admin::client::run(&config, action)
                .map(|done| println!("{done}"))
                .map_err(Into::into)
        }
        Command::Demo { config } => edgewarden::demo::run(&config),
        Command::Plugins { command } => plugins_command(command),
        Command::Token {
            key,
            alg,
            kid,
            sub,
            iss,
            aud,
            scope,
            expires_in,
            claims,
        } => read(&key).and_then(|pem| {
            let spec = edgewarden::mint::TokenSpec {
                alg,
                kid,
                claims,
                sub,
                iss,
                aud,
                scope,
                expires_in,
            };
            let token = edgewarden::mint::token(&pem, &spec)?;
            println!("{token}");
            Ok(())
        }),
        Command::Jwks { key, alg, kid } => read(&key).and_then(|pem| {
            println!("{}", edgewarden::mint::jwks(&pem, &alg, &kid)?);
            Ok(())
        }),
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
