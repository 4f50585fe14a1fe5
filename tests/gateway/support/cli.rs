//! The binary's one-shot commands (`check`, `run` on a bad file, `drain`, `plugins build`,
//! `plugins new`), run to completion with their exit code and output.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::plugins::COMPONENTIZE_PY;

/// The gateway binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_edgewarden");

/// How a command ended.
#[derive(Debug)]
pub struct Output {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `edgewarden ARGS -c CONFIG`, with the plugin build tool in its environment.
pub fn edgewarden(args: &[&str], config: &Path) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(config)
        .env("EDGEWARDEN_COMPONENTIZE_PY", COMPONENTIZE_PY)
        .output()
        .expect("run edgewarden");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// As [`edgewarden`], off the async runtime (for commands that talk to a gateway of the test).
pub async fn edgewarden_async(args: &[&str], config: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let config: PathBuf = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        edgewarden(&args, &config)
    })
    .await
    .expect("join")
}
