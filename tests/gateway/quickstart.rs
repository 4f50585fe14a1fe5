//! docs/quickstart.md, run as written by scripts/run-quickstart: its `sh` blocks, in order, as one
//! bash script in an empty directory, with this build's binaries first on PATH and the guide's ports
//! replaced by free ones. Every check in the guide (`test`, `grep -q`, `curl -f`) fails the script
//! when the gateway does not do what the guide says. (Its deploy step builds an image: scripts/test
//! runs it, with `--deploy`, after building the project's image.)

use std::path::Path;
use std::process::Command;

use super::support::cli::BIN;

#[test]
fn the_quickstart_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = Path::new(BIN).parent().expect("binaries' directory");
    assert!(
        bin_dir.join("edgewarden-dev").is_file(),
        "edgewarden-dev is built beside {BIN} (cargo build -p edgewarden-tools)"
    );
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let out = Command::new(root.join("scripts/run-quickstart"))
        .env("PATH", path)
        .output()
        .expect("scripts/run-quickstart runs");
    assert!(
        out.status.success(),
        "the guide failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}
