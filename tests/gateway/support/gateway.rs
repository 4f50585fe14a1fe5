//! A real gateway process for one test: [`Gateway::builder`] takes the configuration and whatever
//! else the start needs (files, plugins, policies, more listeners, flags, environment, fixed
//! addresses), starts the binary on fresh loopback ports and waits for its readiness signals. The
//! process is killed when the [`Gateway`] is dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cli::BIN;
use super::config::{Config, Entry, value};
use super::http::{get, req};
use super::metrics::Metrics;
use super::origins::free_port;
use super::plugins::{COMPONENTIZE_PY, PLUGIN_CACHE, link_plugin, write_policy};

/// The admin token of gateways started with [`Builder::admin_token`].
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789-abcdefghijkl";

/// What [`Builder::start`] waits for before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Both listeners accept and `/readyz` answers 200.
    Ready,
    /// Both listeners accept (`/readyz` may still say 503).
    Listening,
    /// Nothing: the process was started (for tests of start-up itself).
    Spawned,
}

type Setup = Box<dyn Fn(&Path)>;

/// How to start a gateway; see [`Gateway::builder`].
pub struct Builder {
    config: Config,
    listeners: Vec<toml::Value>,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    setup: Vec<Setup>,
    plugins: bool,
    at: Option<(SocketAddr, SocketAddr)>,
    wait: Wait,
}

impl Builder {
    /// Another proxy listener after the plain one the builder adds, such as
    /// `{ addr = "...", tls = { cert = "cert.pem", key = "key.pem" } }`; relative paths are in
    /// the gateway's directory.
    pub fn listener(mut self, listener: impl Serialize) -> Builder {
        self.listeners.push(value(listener));
        self
    }

    /// A command-line flag after `run -c FILE`.
    pub fn flag(mut self, flag: &str) -> Builder {
        self.flags.push(flag.to_string());
        self
    }

    /// An environment variable of the process (the last value given for a name wins).
    pub fn env(mut self, name: &str, value: &str) -> Builder {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// A file written into the gateway's directory (the configuration's directory, against which
    /// its relative paths resolve) before the start.
    pub fn file(self, path: &str, contents: impl AsRef<[u8]>) -> Builder {
        let (path, contents) = (path.to_string(), contents.as_ref().to_vec());
        self.setup(move |dir| {
            let path = dir.join(&path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("directory");
            }
            std::fs::write(path, &contents).expect("write file");
        })
    }

    /// Anything else to do in the gateway's directory before the start.
    pub fn setup(mut self, setup: impl Fn(&Path) + 'static) -> Builder {
        self.setup.push(Box::new(setup));
        self
    }

    /// `admin_token_file` with [`ADMIN_TOKEN`] in it.
    pub fn admin_token(mut self) -> Builder {
        self.config
            .server_mut()
            .set("admin_token_file", "admin-token");
        self.file("admin-token", format!("{ADMIN_TOKEN}\n"))
    }

    /// The plugin `name`, from `source` (a plugin directory relative to the repository root).
    /// With a plugin or a policy, `[server]`'s `policies_dir`, `plugins_dir` and
    /// `plugin_cache_dir` are set unless the configuration sets them; the cache is shared, so each
    /// plugin is built once per test run.
    pub fn plugin(mut self, name: &str, source: &str) -> Builder {
        self.plugins = true;
        let (name, source) = (name.to_string(), source.to_string());
        self.setup(move |dir| link_plugin(dir, &name, &source))
    }

    /// The policy file `policies/NAME.toml` (see [`Builder::plugin`]).
    pub fn policy(mut self, name: &str, policy: Entry) -> Builder {
        self.plugins = true;
        let name = name.to_string();
        self.setup(move |dir| write_policy(dir, &name, &policy))
    }

    /// Listen on these addresses (a replica restarted in place) instead of fresh ones.
    pub fn at(mut self, addr: SocketAddr, admin: SocketAddr) -> Builder {
        self.at = Some((addr, admin));
        self
    }

    /// What [`Builder::start`] waits for; [`Wait::Ready`] unless told.
    pub fn wait(mut self, wait: Wait) -> Builder {
        self.wait = wait;
        self
    }

    /// The configuration as it will be written for these addresses.
    fn config_for(&self, addr: SocketAddr, admin: SocketAddr) -> Config {
        let mut config = self.config.clone();
        let mut server = config.server_mut();
        for owned in ["listen", "admin_listen"] {
            assert!(
                !server.has(owned),
                "server.{owned} is the builder's: use Builder::listener or Builder::at"
            );
        }
        let mut listen = vec![value(addr.to_string())];
        listen.extend(self.listeners.iter().cloned());
        server
            .set("listen", listen)
            .set("admin_listen", admin.to_string());
        if !server.has("threads") {
            server.set("threads", 2);
        }
        // The tests run side by side on few CPUs: a lane below them all could wait past the
        // plugins' deadlines (the default's effect is measured by `loadtest shield`).
        if !server.has("plugin_lane_nice") {
            server.set("plugin_lane_nice", 0);
        }
        if !server.has("signature_nice") {
            server.set("signature_nice", 0);
        }
        if self.plugins {
            for (key, default) in [
                ("policies_dir", "policies"),
                ("plugins_dir", "plugins"),
                ("plugin_cache_dir", PLUGIN_CACHE),
            ] {
                if !server.has(key) {
                    server.set(key, default);
                }
            }
        }
        config
    }

    /// Start the gateway and wait as told.
    pub async fn start(self) -> Gateway {
        // Ports are picked by the kernel, released, then handed to the gateway; if another process
        // takes one in between, the gateway exits at once and we try again with new ports.
        for _ in 0..5 {
            let (addr, admin) = self.at.unwrap_or_else(|| (free_port(), free_port()));
            let dir = tempfile::tempdir().expect("tempdir");
            for setup in &self.setup {
                setup(dir.path());
            }
            let config = self.config_for(addr, admin);
            let config_path = config.write_in(dir.path());
            let stderr_path = dir.path().join("stderr.log");
            let stdout_path = dir.path().join("stdout.log");
            let child = Command::new(BIN)
                .args(["run", "-c"])
                .arg(&config_path)
                .args(&self.flags)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
                .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
                .spawn()
                .expect("spawn gateway");
            let mut gw = Gateway {
                child,
                addr,
                admin,
                dir,
                stderr_path,
                stdout_path,
                config_path,
                config,
            };
            if self.wait == Wait::Spawned {
                return gw;
            }
            // Generous: the first gateway to use a plugin builds and compiles it.
            if gw
                .wait_ready(Duration::from_secs(600), self.wait == Wait::Ready)
                .await
            {
                return gw;
            }
        }
        panic!("gateway did not start");
    }
}

/// A gateway process; killed when dropped.
pub struct Gateway {
    pub child: Child,
    /// The plain proxy listener.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    /// The configuration file.
    pub config_path: PathBuf,
    config: Config,
}

impl Gateway {
    /// A gateway with this configuration: `[server]`'s `listen`, `admin_listen` (and `threads`,
    /// unless set) are the builder's.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            listeners: Vec::new(),
            flags: Vec::new(),
            env: Vec::new(),
            setup: Vec::new(),
            plugins: false,
            at: None,
            wait: Wait::Ready,
        }
        // Readiness is read from the info-level log.
        .env("EDGEWARDEN_LOG", "info")
        .env("EDGEWARDEN_COMPONENTIZE_PY", COMPONENTIZE_PY)
    }

    /// Ready when both listeners accept and, with `until_ready`, `/readyz` says so.
    async fn wait_ready(&mut self, timeout: Duration, until_ready: bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("gateway exited early ({status}):\n{}", self.stderr());
                return false;
            }
            // The gateway logs "edgewarden listening" once its own listeners accept. The probe is
            // a real HTTP exchange on the proxy port (a path the gateway rejects itself, so no
            // origin sees it): a bare connect could be the kernel connecting the socket to itself.
            if self.stderr().contains("edgewarden listening")
                && req("GET", "/probe/../ready")
                    .try_send(self.addr)
                    .await
                    .is_ok_and(|r| r.status == 400)
                && let Ok(resp) = req("GET", "/readyz").try_send(self.admin).await
                && (resp.status == 200 || !until_ready)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The gateway's directory: its configuration and the files written before the start.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration as written at the start (or by [`Gateway::write_config`] since).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replace the configuration file; [`Gateway::reload_and_wait`] applies it.
    pub fn write_config(&mut self, config: Config) {
        std::fs::write(&self.config_path, config.to_text()).expect("rewrite");
        self.config = config;
    }

    /// Replace the configuration file with text that need not be valid TOML.
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("rewrite");
    }

    /// What the gateway wrote to standard error (its diagnostics).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// What the gateway wrote to standard output (the access log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Ask the gateway to reload its configuration (SIGHUP), once its reloader listens, and wait
    /// until the reload has been counted with `result` ("ok" or "error").
    pub async fn reload_and_wait(&self, result: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.stderr().contains("SIGHUP reloads the configuration") {
            assert!(Instant::now() < deadline, "reloader not started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reloads = async || {
            self.metrics()
                .await
                .count("edgewarden_config_reloads_total", &[("result", result)])
        };
        let before = reloads().await;
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
        while reloads().await <= before {
            assert!(
                Instant::now() < deadline,
                "no {result} reload counted:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A scrape of the admin listener's `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        let resp = get(self.admin, "/metrics").await;
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        Metrics(String::from_utf8(resp.body).expect("utf-8"))
    }

    /// The first scrape for which `ready` holds (or the last one after 10 s): the gateway counts
    /// a request just after writing its response, so a client can see the answer first.
    pub async fn metrics_when(&self, ready: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.metrics().await;
            if ready(&m) || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `/readyz`'s status.
    pub async fn readiness(&self) -> u16 {
        get(self.admin, "/readyz").await.status
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Wait up to `limit` for the process to exit; how long it took.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway stderr ---\n{}", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
