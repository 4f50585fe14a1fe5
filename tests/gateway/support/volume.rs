//! A configuration directory mounted the way Kubernetes mounts a ConfigMap: the file is a link
//! through `..data`, a link to the current version's directory, swapped atomically on update.

use std::path::Path;

/// Move `dir/edgewarden.toml` into a Kubernetes-style volume: `..v1/edgewarden.toml`, `..data`
/// pointing at `..v1`, and `edgewarden.toml` a link through `..data`.
pub fn as_mounted_volume(dir: &Path) {
    std::fs::create_dir(dir.join("..v1")).expect("v1");
    std::fs::rename(
        dir.join("edgewarden.toml"),
        dir.join("..v1/edgewarden.toml"),
    )
    .expect("move");
    std::os::unix::fs::symlink("..v1", dir.join("..data")).expect("..data");
    std::os::unix::fs::symlink("..data/edgewarden.toml", dir.join("edgewarden.toml"))
        .expect("link");
}

/// Publish `text` as the volume's next version, swapping `..data` atomically.
pub fn publish(dir: &Path, version: &str, text: &str) {
    std::fs::create_dir(dir.join(version)).expect("version dir");
    std::fs::write(dir.join(version).join("edgewarden.toml"), text).expect("write");
    std::os::unix::fs::symlink(version, dir.join("..data_tmp")).expect("tmp link");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
}
