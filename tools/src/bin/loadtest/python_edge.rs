//! The Python-at-the-edge peer: the seed's geo router (`benches/python-edge`) built as a
//! `wasi:http/proxy` component with componentize-py, precompiled, and served by `wasmtime serve`,
//! either with its default of a fresh instance per request or reusing instances. Before anything
//! is measured, every target must give the same answers for the same visitors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::targets::{self, Target};

/// The world the component is built for, as the `wasmtime-wasi-http` crate's WIT files name it.
const WORLD: &str = "wasi:http/proxy@0.2.12";
/// Instances `wasmtime serve` may reuse: more than any run sends.
const REUSE: &str = "100000000";

/// What `scripts/setup-loadtest --peer` installed: wasmtime-cli and the wasi:http WIT files.
pub struct Tools {
    pub wasmtime: PathBuf,
    pub wit: PathBuf,
}

/// Build the seed geo router as a wasi:http component and precompile it for `wasmtime serve`.
pub fn build(root: &Path, tools: &Tools, dir: &Path) -> Result<PathBuf, String> {
    let wasm = dir.join("seed_geo_http.wasm");
    let cwasm = dir.join("seed_geo_http.cwasm");
    let edge = root.join("benches/python-edge");
    run(Command::new(root.join(".venv/bin/componentize-py"))
        .arg("-d")
        .arg(&tools.wit)
        .args(["-w", WORLD, "componentize", "-p"])
        .arg(edge.join("wasi_http"))
        .arg("-p")
        .arg(edge.join("seed_geo"))
        .arg("app")
        .arg("-o")
        .arg(&wasm))?;
    run(Command::new(&tools.wasmtime)
        .args(["compile", "-o"])
        .arg(&cwasm)
        .arg(&wasm))?;
    Ok(cwasm)
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `wasmtime serve` on an ephemeral loopback port, pinned like the gateways. Its log (one hyper
/// error per connection the load generator drops at the end of a run) goes to a file in `dir`.
pub fn serve(
    tools: &Tools,
    cwasm: &Path,
    reuse: bool,
    cpu: Option<usize>,
    dir: &Path,
) -> Result<Target, String> {
    let addr = targets::free_addr()?;
    let name = if reuse {
        "wasmtime-serve-reuse"
    } else {
        "wasmtime-serve-fresh"
    };
    let log_path = dir.join(format!("{name}.log"));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut command = targets::pinned(cpu, &tools.wasmtime);
    // CPython components import wasi:cli (stdio, environment), which serve refuses without -S cli.
    command
        .args(["serve", "-S", "cli=y", "--allow-precompiled", "--addr"])
        .arg(addr.to_string());
    if reuse {
        command.args(["--max-instance-reuse-count", REUSE]);
    }
    let child = command
        .arg(cwasm)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", tools.wasmtime.display()))?;
    Target::started(name, addr, child, addr, "/seed/", 200).map_err(|e| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        format!("{e}\n{log}")
    })
}

/// Every target must answer GB, FR and anyone else with the same three distinct messages.
pub fn same_answers(
    runtime: &tokio::runtime::Runtime,
    targets: &[(&Target, &str)],
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let mut seen: Vec<String> = Vec::new();
    for location in ["GB", "FR", "US"] {
        let mut answers = Vec::new();
        for (target, path) in targets {
            let url = format!("http://{}{path}", target.addr);
            let answer = runtime.block_on(async {
                let response = client
                    .get(&url)
                    // `wasmtime serve` reads the first; edgewarden, from a trusted proxy, only the
                    // second (see `scenarios::location`).
                    .header("x-user-location", location)
                    .header("cf-ipcountry", location)
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let kind = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                Ok::<_, reqwest::Error>(format!("{status} {kind} {}", response.text().await?))
            });
            let answer = answer.map_err(|e| format!("{url}: {e}"))?;
            answers.push((target.name, answer));
        }
        let first = &answers[0].1;
        if answers.iter().any(|(_, a)| a != first) || !first.starts_with("200 text/plain") {
            return Err(format!(
                "the seed geo router's builds answer {location} differently: {answers:?}"
            ));
        }
        seen.push(first.clone());
    }
    seen.dedup();
    if seen.len() != 3 {
        return Err(format!(
            "GB, FR and US should get three different messages, got {seen:?}"
        ));
    }
    Ok(())
}
