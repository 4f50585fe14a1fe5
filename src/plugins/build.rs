//! Plugin build pipeline: Python sources → WebAssembly component (componentize-py) → native code
//! for the running engine (wasmtime precompile). Both steps are cached by content hash, so an
//! unchanged plugin costs a file read on the next start.
//!
//! The WIT world and the SDK are embedded in this binary and written next to the cache, so a
//! plugin is always built against exactly the interface the host speaks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ring::digest::{Context, SHA256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::{Error, ErrorKind, OrErr};

/// Files every plugin is built with, embedded from the repository at compile time.
const EMBEDDED: [(&str, &str); 4] = [
    ("wit/policy.wit", include_str!("../../wit/policy.wit")),
    (
        "sdk/edgewarden/__init__.py",
        include_str!("../../python-plugins/sdk/edgewarden/__init__.py"),
    ),
    (
        "sdk/edgewarden/_wire.py",
        include_str!("../../python-plugins/sdk/edgewarden/_wire.py"),
    ),
    (
        "sdk/edgewarden_guest.py",
        include_str!("../../python-plugins/sdk/edgewarden_guest.py"),
    ),
];
/// The test helpers `edgewarden plugins test` loads into pytest (not part of a build).
const TESTING: (&str, &str) = (
    "testing/edgewarden_pytest.py",
    include_str!("../../python-plugins/testing/edgewarden_pytest.py"),
);
use super::python::{COMPONENTIZE_PY_VERSION, Located};
/// Longest componentize-py output kept in an error.
const MAX_ERROR_CHARS: usize = 4000;

/// Where builds happen and which componentize-py runs them.
pub struct Builder {
    pub cache_dir: PathBuf,
    pub componentize_py: Located,
    /// The configuration file's directory, where the install hint puts a virtualenv.
    pub config_dir: PathBuf,
}

/// A plugin compiled for this engine.
pub struct Built {
    pub component: Component,
    /// What the step cost: "cached", or seconds spent building and compiling.
    pub note: String,
}

impl Builder {
    /// Builds in `config`'s `plugin_cache_dir` with the componentize-py found for it
    /// ([`super::python::componentize_py`]).
    pub fn new(config: &crate::config::Config) -> Builder {
        Builder {
            cache_dir: config.server.plugin_cache_dir.clone(),
            componentize_py: super::python::componentize_py(config),
            config_dir: super::python::config_dir(config),
        }
    }

    /// Build (or reuse) `plugin_dir` as a component and load it into `engine`.
    ///
    /// A cache that already holds the component works read-only (a container image ships it so):
    /// nothing is written unless something must be built, and native code compiled because the
    /// shipped precompiled copy does not fit this engine or CPU is used from memory when it
    /// cannot be stored.
    pub fn build(&self, engine: &Engine, name: &str, plugin_dir: &Path) -> Result<Built, Error> {
        let hash = source_hash(plugin_dir)?;
        let started = Instant::now();
        let wasm = self.cache_dir.join(format!("{name}-{hash}.wasm"));
        // One builder per plugin at a time, across processes: others wait, then find the result.
        // Held until this function returns.
        let _lock = if wasm.is_file() {
            self.try_lock(name)
        } else {
            std::fs::create_dir_all(&self.cache_dir)
                .or_err_with(BUILD, || shown(&self.cache_dir))?;
            let lock = self.lock(name)?;
            Some(lock)
        };
        let mut built_now = false;
        if !wasm.is_file() {
            let support = self.write_support()?;
            self.componentize(name, plugin_dir, &support, &wasm)?;
            built_now = true;
        }
        let engine_hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        let native = self
            .cache_dir
            .join(format!("{name}-{hash}-{engine_hash:016x}.cwasm"));
        if native.is_file() {
            // SAFETY: `deserialize_file` trusts the file to be native code this engine wrote. Only
            // this gateway writes into its cache directory (below), and wasmtime still checks the
            // engine version and settings recorded in the artifact; on any mismatch it errors and
            // the component is compiled again from the .wasm.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, &native) } {
                Ok(component) => {
                    let note = if built_now {
                        format!("built in {:.1}s", started.elapsed().as_secs_f64())
                    } else {
                        "cached".to_string()
                    };
                    return Ok(Built { component, note });
                }
                Err(e) => {
                    tracing::warn!(plugin = name, error = %e, "precompiled plugin not usable; compiling again")
                }
            }
        }
        let bytes = std::fs::read(&wasm).or_err_with(BUILD, || shown(&wasm))?;
        let component = Component::new(engine, &bytes)
            .or_err_with(BUILD, || format!("plugin {name}: compiling"))?;
        let stored = component
            .serialize()
            .or_err_with(BUILD, || format!("plugin {name}: serializing"))
            .and_then(|serialized| write_atomically(&native, &serialized));
        if let Err(e) = stored {
            tracing::warn!(plugin = name, error = %e, "compiled plugin not cached; it will be compiled again at the next start");
        }
        Ok(Built {
            component,
            note: format!(
                "built and compiled in {:.1}s",
                started.elapsed().as_secs_f64()
            ),
        })
    }

    fn lock(&self, name: &str) -> Result<std::fs::File, Error> {
        let path = self.cache_dir.join(format!("{name}.lock"));
        let lock = std::fs::File::create(&path).or_err_with(BUILD, || shown(&path))?;
        lock.lock().or_err_with(BUILD, || shown(&path))?;
        Ok(lock)
    }

    /// The lock, unless the cache cannot be written (then nothing will be written to it either).
    fn try_lock(&self, name: &str) -> Option<std::fs::File> {
        self.lock(name)
            .map_err(|e| tracing::debug!(plugin = name, error = %e, "plugin cache not writable"))
            .ok()
    }

    /// The embedded WIT, SDK and test helpers, written once per content.
    pub fn write_support(&self) -> Result<PathBuf, Error> {
        let mut ctx = Context::new(&SHA256);
        for (name, text) in EMBEDDED.iter().chain([&TESTING]) {
            ctx.update(name.as_bytes());
            ctx.update(text.as_bytes());
        }
        let dir = self
            .cache_dir
            .join(format!("support-{}", &hex(ctx.finish().as_ref())[..16]));
        for (name, text) in EMBEDDED.into_iter().chain([TESTING]) {
            let path = dir.join(name);
            if !path.is_file() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).or_err_with(BUILD, || shown(parent))?;
                }
                write_atomically(&path, text.as_bytes())?;
            }
        }
        Ok(dir)
    }

    fn componentize(
        &self,
        name: &str,
        plugin_dir: &Path,
        support: &Path,
        out: &Path,
    ) -> Result<(), Error> {
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let output = Command::new(&self.componentize_py.path)
            .env_remove("RUST_BACKTRACE")
            .arg("-d")
            .arg(support.join("wit"))
            .args(["-w", "policy", "componentize", "-p"])
            .arg(support.join("sdk"))
            .arg("-p")
            .arg(plugin_dir)
            .arg("edgewarden_guest")
            .arg("-o")
            .arg(&tmp)
            .output()
            .map_err(|e| {
                Error::new(
                    BUILD,
                    format!(
                        "plugin {name}: {} ({e})",
                        self.componentize_py
                            .missing("componentize-py", &self.config_dir)
                    ),
                )
            })?;
        if !output.status.success() {
            let _ = std::fs::remove_file(&tmp);
            // componentize-py names files by the index of their -p directory: /0/ is the SDK,
            // /1/ the plugin.
            let shown = python_error(&output.stderr)
                .replace("\"/1/", &format!("\"{}/", plugin_dir.display()));
            return Err(Error::new(
                BUILD,
                format!("plugin {name}: build failed:\n{shown}"),
            ));
        }
        std::fs::rename(&tmp, out).or_err_with(BUILD, || shown(out))
    }
}

/// The part of componentize-py's output that names the plugin's file and line: the Python
/// traceback and error line, without the Rust backtrace that follows.
fn python_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Traceback"))
        .unwrap_or(0);
    let end = lines
        .iter()
        .skip(start)
        .position(|l| {
            l.trim_start().starts_with("Stack backtrace") || l.trim_start().starts_with("0:")
        })
        .map_or(lines.len(), |n| start + n);
    let kept = lines[start..end]
        .iter()
        .filter(|l| !l.contains("/.venv/") && !l.contains("componentize-py\", line"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    kept.chars().take(MAX_ERROR_CHARS).collect()
}

/// SHA-256 over the plugin's Python sources (tests excluded) and the build tool version.
fn source_hash(plugin_dir: &Path) -> Result<String, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(plugin_dir)
        .or_err_with(BUILD, || shown(plugin_dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "py")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_"))
        })
        .collect();
    files.sort();
    let mut ctx = Context::new(&SHA256);
    ctx.update(COMPONENTIZE_PY_VERSION.as_bytes());
    for (name, text) in EMBEDDED {
        ctx.update(name.as_bytes());
        ctx.update(text.as_bytes());
    }
    for file in files {
        let bytes = std::fs::read(&file).or_err_with(BUILD, || shown(&file))?;
        ctx.update(
            file.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        ctx.update(&bytes);
    }
    Ok(hex(&ctx.finish().as_ref()[..12]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kind of every error here.
const BUILD: ErrorKind = ErrorKind::PluginBuild;

/// A path as errors name it.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).or_err_with(BUILD, || shown(&tmp))?;
    file.write_all(bytes).or_err_with(BUILD, || shown(&tmp))?;
    std::fs::rename(&tmp, path).or_err_with(BUILD, || shown(path))
}
