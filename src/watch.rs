//! Which files a configuration is made of, and a cheap fingerprint of them, so a reload can be
//! triggered when they change. Kubernetes updates a mounted ConfigMap or Secret by swapping a
//! `..data` symlink, which watchers of single files miss; the fingerprint follows symlinks and
//! records each file's size, modification time and inode, so a swap is seen like an edit.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::{Config, KeySource};

/// Files below a watched directory are listed at most this deep, and at most this many.
const MAX_DEPTH: usize = 4;
const MAX_FILES: usize = 10_000;

/// What the files looked like at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(PathBuf, Option<Seen>)>);

/// A file's size, modification time and inode (`None`: it could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen(u64, Option<SystemTime>, u64);

/// The configuration file, the policy and plugin directories, and every file a key, a
/// certificate, the admin token or the geo database is read from.
pub fn watched(config: &Config) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = vec![config.source.clone()];
    files.extend(config.server.admin_token.as_ref().map(|t| t.file.clone()));
    for issuer in &config.issuers {
        if let KeySource::JwksFile(path) = &issuer.keys {
            files.push(path.clone());
        }
    }
    for (_, tls) in &config.server.tls_listeners {
        for pair in tls.files() {
            files.push(pair.cert.clone());
            files.push(pair.key.clone());
        }
    }
    files.extend(config.origins.iter().filter_map(|o| o.ca_file.clone()));
    files.extend(config.geo.as_ref().and_then(|g| g.mmdb.clone()));
    let dirs = vec![
        config.server.policies_dir.clone(),
        config.server.plugins_dir.clone(),
    ];
    (files, dirs)
}

/// Fingerprint `files` and every file under `dirs` (compiled Python caches left out).
pub fn fingerprint(files: &[PathBuf], dirs: &[PathBuf]) -> Fingerprint {
    let mut all: Vec<PathBuf> = files.to_vec();
    for dir in dirs {
        list(dir, 0, &mut all);
    }
    all.sort();
    all.dedup();
    Fingerprint(
        all.into_iter()
            .map(|path| {
                let seen = std::fs::metadata(&path).ok().map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    Seen(m.len(), m.modified().ok(), m.ino())
                });
                (path, seen)
            })
            .collect(),
    )
}

fn list(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH || out.len() >= MAX_FILES {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "__pycache__" || name.to_string_lossy().starts_with(".pytest") {
            continue;
        }
        // Follows symlinks: a linked plugin or a `..data` swap is seen through.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => list(&path, depth + 1, out),
            Ok(_) if out.len() < MAX_FILES => out.push(path),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_swap_changes_the_fingerprint_and_a_touch_free_read_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for version in ["v1", "v2"] {
            std::fs::create_dir(root.join(version)).expect("dir");
            std::fs::write(
                root.join(version).join("a.toml"),
                format!("x = \"{version}\""),
            )
            .expect("file");
        }
        std::os::unix::fs::symlink("v1", root.join("..data")).expect("link");
        std::os::unix::fs::symlink("..data/a.toml", root.join("a.toml")).expect("link");
        let files = [root.join("a.toml")];
        let first = fingerprint(&files, &[]);
        assert_eq!(first, fingerprint(&files, &[]));
        std::os::unix::fs::symlink("v2", root.join("..data_tmp")).expect("link");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        assert_ne!(first, fingerprint(&files, &[]));
    }

    #[test]
    fn a_new_file_in_a_watched_directory_changes_the_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("p/__pycache__")).expect("dir");
        let dirs = [dir.path().join("p")];
        let first = fingerprint(&[], &dirs);
        std::fs::write(dir.path().join("p/__pycache__/x.pyc"), "cache").expect("file");
        assert_eq!(first, fingerprint(&[], &dirs), "caches are not watched");
        std::fs::write(dir.path().join("p/new.toml"), "x = 1").expect("file");
        assert_ne!(first, fingerprint(&[], &dirs));
    }
}
