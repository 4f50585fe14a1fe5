//! `edgewarden-dev`: the demo and the token and JWKS helpers, for development, tests and load
//! tests. The gateway itself is the `edgewarden` binary.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgewarden-dev",
    version,
    about = "edgewarden's development tooling: the demo, test tokens and JWKS documents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shipped example configuration in front of built-in echo origins.
    Demo {
        /// Configuration file (the example in the repository by default).
        #[arg(short, long, default_value = "config/edgewarden.toml")]
        config: PathBuf,
    },
    /// Sign a token with a private key (for tests, demos and load tests). An issuer accepts it
    /// only with its `iss` and one of its audiences: give --iss and --aud.
    Token {
        /// PEM private key (RSA, EC P-256/P-384 or Ed25519).
        #[arg(long)]
        key: PathBuf,
        /// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA.
        #[arg(long, default_value = "RS256")]
        alg: String,
        /// Key id for the token's header: the `kid` of the key in the issuer's JWKS.
        #[arg(long)]
        kid: Option<String>,
        /// Subject (`sub` claim): who the token identifies.
        #[arg(long)]
        sub: Option<String>,
        /// Issuer (`iss` claim): exactly the `issuer` of an `[[issuers]]` entry.
        #[arg(long)]
        iss: Option<String>,
        /// Audience (`aud` claim), one of the issuer's `audiences`; repeat for several.
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
    /// Print a JWKS with the public half of a private key (serve it as `jwks_url`, or save it
    /// as `jwks_file`).
    Jwks {
        /// PEM private key (RSA, EC P-256/P-384 or Ed25519); only its public half is printed.
        #[arg(long)]
        key: PathBuf,
        /// The algorithm the key signs with, recorded as the JWK's `alg`.
        #[arg(long, default_value = "RS256")]
        alg: String,
        /// Key id (`kid`) of the JWK; tokens name it in their header (`token --kid`).
        #[arg(long)]
        kid: String,
    },
}

/// Print `text` and a newline; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn read(path: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn main() -> ExitCode {
    // The demo runs the gateway: its diagnostics and access log go where the gateway's do.
    let _flush_on_exit = edgewarden::logging::init();

    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Demo { config } => edgewarden_tools::demo::run(&config),
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
            let spec = edgewarden_tools::mint::TokenSpec {
                alg,
                kid,
                claims,
                sub,
                iss,
                aud,
                scope,
                expires_in,
            };
            let token = edgewarden_tools::mint::token(&pem, &spec)?;
            let missing = edgewarden_tools::mint::missing_claims(&spec);
            if !missing.is_empty() {
                eprintln!(
                    "warning: the token has no {} claim: an issuer with default settings refuses \
                     it (401); give --iss, --aud and --sub",
                    missing.join(", ")
                );
            }
            print(&token)
        }),
        Command::Jwks { key, alg, kid } => {
            read(&key).and_then(|pem| print(&edgewarden_tools::mint::jwks(&pem, &alg, &kid)?))
        }
    };
    edgewarden::error::exit_code(result)
}
