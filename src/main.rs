//! Command-line entry point.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgewarden::config::{Config, ConfigError, DemoKey, ReadOptions};
use edgewarden::generation::Generation;

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
        /// Check a deployment's configuration off the machine it runs on (CI): no host name is
        /// looked up (upstreams are checked as host:port) and nothing is fetched.
        #[arg(long)]
        offline: bool,
        /// Read the file's absolute paths under this directory (/etc/x.pem is ROOT/etc/x.pem):
        /// a copy of the files the deployment mounts, laid out as it mounts them.
        #[arg(long, value_name = "ROOT")]
        root: Option<PathBuf>,
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
    /// Build Python policy plugins, or start a new one.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Build every plugin under plugins_dir (componentize-py, then precompile); cached by content.
    /// componentize-py: EDGEWARDEN_COMPONENTIZE_PY, else [server] componentize_py, else
    /// .venv/bin/componentize-py beside the config file (or beside plugins_dir), else PATH.
    Build {
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
    /// Create plugins_dir/NAME (plugin.py and its pytest file) and policies_dir/NAME.toml, and
    /// print the next commands.
    New {
        /// The plugin's name: a Python identifier of a-z, 0-9 and '_'.
        name: String,
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
    /// Run the plugins' tests (test_*.py beside each plugin.py) in CPython with pytest, the SDK
    /// and the test helpers this binary carries. Python: EDGEWARDEN_PYTHON, else the one beside
    /// componentize-py, else python3.
    Test {
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
        /// Only these plugins (directory names under plugins_dir).
        plugins: Vec<String>,
    },
}

fn plugins_command(command: PluginsCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        PluginsCommand::Build { config } => {
            let config = Config::load(&config)?;
            let built = edgewarden::plugins::build_all(&config)?;
            for line in built {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::New { name, config: path } => {
            let config = Config::load(&path)?;
            let written = edgewarden::plugins::scaffold(
                &config.server.plugins_dir,
                &config.server.policies_dir,
                &name,
            )?;
            for file in written {
                println!("created {}", file.display());
            }
            let c = path.display();
            println!(
                "\nNext:\n  \
                 edgewarden plugins test -c {c} {name}    # its tests, in CPython\n  \
                 edgewarden plugins build -c {c}          # compile it (componentize-py)\n  \
                 add policies = [\"{name}\"] to a route in {c}, list the headers it sets in \
                 allow_headers,\n  \
                 then start (edgewarden run -c {c}) or reload a running gateway (kill -HUP <pid>)"
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Test { config, plugins } => {
            let config = Config::load(&config)?;
            let status = edgewarden::plugins::python::run_tests(&config, &plugins)?;
            Ok(match status.code() {
                Some(0) => ExitCode::SUCCESS,
                Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                None => ExitCode::FAILURE,
            })
        }
    }
}

/// The configuration at `path`, with the demo key allowed only when the command line says so.
fn load(path: &std::path::Path, allow_demo_key: bool) -> Result<Config, ConfigError> {
    load_with(path, allow_demo_key, &ReadOptions::default())
}

fn load_with(
    path: &std::path::Path,
    allow_demo_key: bool,
    options: &ReadOptions,
) -> Result<Config, ConfigError> {
    let mut config = Config::load_with(path, options)?;
    if allow_demo_key {
        tracing::warn!(
            "--allow-demo-key: the repository's public demo key is trusted; anyone can sign \
             tokens it accepts. Never use this outside tests."
        );
        config.demo_key = DemoKey::Allow;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let _flush_on_exit = edgewarden::logging::init();

    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Check {
            config,
            allow_demo_key,
            offline,
            root,
        } => {
            match load_with(&config, allow_demo_key, &ReadOptions { offline, root }).and_then(|c| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let expiring = edgewarden::tls::expiring(&c.server.tls_listeners, now);
                Generation::check(c).map(|summary| (summary, expiring))
            }) {
                Ok((summary, expiring)) => {
                    for line in expiring {
                        println!("{}: warning: {line}", config.display());
                    }
                    println!("{}: OK ({summary})", config.display());
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
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
        Command::Plugins { command } => match plugins_command(command) {
            Ok(code) if code != ExitCode::SUCCESS => return code,
            other => other.map(drop),
        },
    };
    edgewarden::error::exit_code(result)
}
