//! The Python tools a plugin author's machine runs: componentize-py (building plugins) and a
//! Python with pytest (`edgewarden plugins test`). Where each is looked for, in order, and an error
//! that lists where it looked and says what to run.
//!
//! componentize-py: `EDGEWARDEN_COMPONENTIZE_PY`, then `[server] componentize_py`, then
//! `.venv/bin/componentize-py` beside the configuration file, then beside `plugins_dir`'s parent
//! (this repository's layout), then `PATH`. Python: `EDGEWARDEN_PYTHON`, then the `python` beside
//! the componentize-py found (its virtualenv), then `python3` on `PATH`.

use std::path::{Path, PathBuf};

use crate::config::Config;

pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The pytest the project's own environment pins (python-plugins/requirements.txt).
pub const PYTEST_VERSION: &str = "9.2.0";

/// A tool found (or the last place it could be), and every place that was tried.
#[derive(Debug, Clone)]
pub struct Located {
    pub path: PathBuf,
    pub tried: Vec<String>,
}

impl Located {
    /// What to say when the tool cannot be run: where it was looked for, and the commands that
    /// install it beside `config_dir`.
    pub fn missing(&self, tool: &str, config_dir: &Path) -> String {
        let venv = config_dir.join(".venv");
        format!(
            "cannot run {tool} (looked at: {}).\nInstall it beside your configuration:\n  \
             python3 -m venv {venv}\n  \
             {venv}/bin/pip install componentize-py=={COMPONENTIZE_PY_VERSION} pytest=={PYTEST_VERSION}\n\
             or point EDGEWARDEN_COMPONENTIZE_PY (or [server] componentize_py) at an installed componentize-py",
            self.tried.join("; "),
            venv = venv.display(),
        )
    }
}

/// The configuration file's directory.
pub fn config_dir(config: &Config) -> PathBuf {
    let dir = config
        .source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The componentize-py `plugins build` and the gateway use.
pub fn componentize_py(config: &Config) -> Located {
    let mut tried = Vec::new();
    if let Some(found) = from_env("EDGEWARDEN_COMPONENTIZE_PY", &mut tried) {
        return found;
    }
    if let Some(path) = &config.server.componentize_py {
        tried.push(format!("[server] componentize_py = {}", path.display()));
        return Located {
            path: path.clone(),
            tried,
        };
    }
    tried.push("[server] componentize_py (unset)".into());
    let beside_config = config_dir(config).join(".venv/bin/componentize-py");
    let beside_plugins = config
        .server
        .plugins_dir
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
        .map(|p| p.join(".venv/bin/componentize-py"));
    for candidate in std::iter::once(beside_config).chain(beside_plugins) {
        if candidate.is_file() {
            tried.push(candidate.display().to_string());
            return Located {
                path: candidate,
                tried,
            };
        }
        let shown = format!("{} (none)", candidate.display());
        if !tried.contains(&shown) {
            tried.push(shown);
        }
    }
    on_path("componentize-py", tried)
}

/// The Python that runs plugin tests.
pub fn python(config: &Config) -> Located {
    let mut tried = Vec::new();
    if let Some(found) = from_env("EDGEWARDEN_PYTHON", &mut tried) {
        return found;
    }
    let componentize = componentize_py(config).path;
    if let Some(beside) = componentize.parent().map(|bin| bin.join("python"))
        && componentize.components().count() > 1
    {
        if beside.is_file() {
            tried.push(beside.display().to_string());
            return Located {
                path: beside,
                tried,
            };
        }
        tried.push(format!("{} (none)", beside.display()));
    }
    on_path("python3", tried)
}

/// The path the environment variable `var` names, if set; noted in `tried` either way.
fn from_env(var: &str, tried: &mut Vec<String>) -> Option<Located> {
    let Some(path) = std::env::var_os(var).map(PathBuf::from) else {
        tried.push(format!("{var} (unset)"));
        return None;
    };
    tried.push(format!("{var}={}", path.display()));
    Some(Located {
        path,
        tried: std::mem::take(tried),
    })
}

/// `name` as found on `PATH` (or just `name`, which then fails to run with the list of places).
fn on_path(name: &str, mut tried: Vec<String>) -> Located {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => {
            tried.push(format!("PATH: {}", path.display()));
            Located { path, tried }
        }
        None => {
            tried.push(format!("{name} on PATH (none)"));
            Located {
                path: PathBuf::from(name),
                tried,
            }
        }
    }
}

/// Run the plugins' pytest files (all of `plugins_dir`, or the plugins named in `only`) in plain
/// CPython, with the SDK and the test helpers this binary carries: no checkout needed. Returns
/// pytest's exit status.
pub fn run_tests(
    config: &Config,
    only: &[String],
) -> Result<std::process::ExitStatus, crate::error::Error> {
    use crate::error::{Error, ErrorKind};
    const KIND: ErrorKind = ErrorKind::PluginBuild;
    let dir = &config.server.plugins_dir;
    let targets: Vec<PathBuf> = if only.is_empty() {
        vec![dir.clone()]
    } else {
        only.iter().map(|name| dir.join(name)).collect()
    };
    if let Some(missing) = targets.iter().find(|t| !t.is_dir()) {
        return Err(Error::new(
            KIND,
            format!("{}: no such plugin directory", missing.display()),
        ));
    }
    let support = super::build::Builder::new(config).write_support()?;
    let python = python(config);
    let mut paths = vec![support.join("sdk"), support.join("testing")];
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    let pythonpath =
        std::env::join_paths(paths).map_err(|e| Error::new(KIND, format!("PYTHONPATH: {e}")))?;
    let cannot_run = |e: std::io::Error| {
        Error::new(
            KIND,
            format!("{} ({e})", python.missing("python", &config_dir(config))),
        )
    };
    let has_pytest = std::process::Command::new(&python.path)
        .args(["-c", "import pytest"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(cannot_run)?;
    if !has_pytest.success() {
        return Err(Error::new(
            KIND,
            format!(
                "{} has no pytest; install it with:\n  {} -m pip install pytest=={PYTEST_VERSION}",
                python.path.display(),
                python.path.display()
            ),
        ));
    }
    std::process::Command::new(&python.path)
        .args([
            "-m",
            "pytest",
            "-p",
            "edgewarden_pytest",
            "-p",
            "no:cacheprovider",
        ])
        .arg("--import-mode=importlib")
        .arg("--rootdir")
        .arg(dir)
        .args(&targets)
        .env("PYTHONPATH", pythonpath)
        .status()
        .map_err(cannot_run)
}
