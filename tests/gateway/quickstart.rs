//! docs/quickstart.md, run as written: its `sh` blocks, in order, as one bash script in an empty
//! directory, with this build's binaries first on PATH and the guide's ports replaced by free ones.
//! Every check in the guide (`test`, `grep -q`, `curl -f`) fails the script when the gateway does
//! not do what the guide says.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use super::support::cli::BIN;

/// The guide's ports: the API, the gateway, the admin listener.
const PORTS: [&str; 3] = ["127.0.0.1:9000", "127.0.0.1:8080", "127.0.0.1:9901"];

/// The `sh` blocks of a Markdown file, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn free_port() -> String {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string()
}

#[test]
fn the_quickstart_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/quickstart.md")).expect("the guide");
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 10, "{} sh blocks", blocks.len());
    let mut script =
        String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for block in &blocks {
        script.push_str(block);
    }
    for port in PORTS {
        script = script.replace(port, &free_port());
    }
    let bin_dir = Path::new(BIN).parent().expect("binaries' directory");
    assert!(
        bin_dir.join("edgewarden-dev").is_file(),
        "edgewarden-dev is built beside {BIN} (cargo build -p edgewarden-tools)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    // A wait that never ends (a port the guide forgot) fails the test instead of hanging it.
    let out = Command::new("timeout")
        .args(["--kill-after=10", "600", "bash", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("EDGEWARDEN_COMPONENTIZE_PY")
        .env_remove("EDGEWARDEN_PYTHON")
        .output()
        .expect("bash runs");
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the guide failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- gateway.log\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}
