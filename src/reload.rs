//! Hot reload. On SIGHUP the gateway re-reads its configuration file, policy files, keys, plugin
//! sources and TLS listener certificates, builds the next generation off the request path
//! (plugins compiled where their source changed, instances warmed, JWKS fetched), starts its
//! background jobs and swaps it in atomically. Requests in flight finish on the generation they started with; the old
//! generation's jobs stop after the swap.
//!
//! A file that fails validation, a key that does not load, or a plugin that does not build leaves
//! the serving generation in place: every problem is logged and the attempt is counted
//! (`edgewarden_config_reloads_total{result="error"}`). Listener addresses (and TLS file paths),
//! worker threads and the shutdown grace are fixed at start; a reload that changes them is refused
//! with that reason, and so is every later reload until a restart: the file keeps the change.
//! `edgewarden_config_reload_refused_since_seconds` and `/readyz` say since when the serving
//! configuration is not the file's.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::error::{Error, ErrorKind, Errors, OrErr};
use crate::generation::{Current, Generation, Jobs};
use crate::tls::ListenerCerts;

/// SIGHUP's default action ends the process. Installing the handler before the servers start
/// means a SIGHUP that arrives before the reloader listens is dropped instead.
pub fn catch_hangup_early() {
    let installed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(async { signal(SignalKind::hangup()).map(drop) }));
    if let Ok(Err(e)) | Err(e) = installed {
        tracing::warn!(error = %e, "SIGHUP handler not installed early");
    }
}

/// Runs the serving generation's background jobs and replaces the generation on SIGHUP.
pub struct Reloader {
    pub current: Current,
    /// The configuration file, read again at each reload.
    pub path: PathBuf,
    /// The TLS listeners' certificates, read again at each reload.
    pub certs: Arc<ListenerCerts>,
    /// The first generation's jobs, started with this service.
    pub initial_jobs: Mutex<Option<Jobs>>,
}

/// One generation's running jobs; they stop when this is dropped.
struct Running(watch::Sender<bool>);

impl Running {
    fn start(jobs: Jobs) -> Running {
        let (stop, watch) = watch::channel(false);
        for job in jobs {
            let watch = watch.clone();
            tokio::spawn(async move { job.start(watch).await });
        }
        Running(stop)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let initial = self
            .initial_jobs
            .lock()
            .ok()
            .and_then(|mut jobs| jobs.take())
            .unwrap_or_default();
        let mut running = Running::start(initial);
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                tracing::error!(error = %e, "cannot handle SIGHUP; configuration reload is off");
                None
            }
        };
        if hangup.is_some() {
            tracing::info!(file = %self.path.display(), "SIGHUP reloads the configuration");
        }
        let mut watching = Watching::start(&self.current.load().config, None).await;
        loop {
            let changed = async {
                match watching.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    tracing::info!(file = %self.path.display(), "SIGHUP: reloading the configuration");
                }
                () = changed => {
                    tracing::info!(file = %self.path.display(), "configuration files changed: reloading");
                }
                _ = shutdown.changed() => {
                    drop(running);
                    return;
                }
            }
            // The files as they are before the reload reads them are the starting point of the
            // next check, whether or not this reload succeeds: a change made while it reads them
            // (or just after) is found then, not taken for the state it read.
            if let Some(w) = watching.as_mut() {
                w.look_again().await;
            }
            if let Some(next) = self.reload().await {
                running = next;
            }
            watching = Watching::start(&self.current.load().config, watching.take()).await;
        }
    }
}

impl Reloader {
    /// Build and swap in the next generation; its started jobs, or `None` when it was refused.
    async fn reload(&self) -> Option<Running> {
        let counter = &crate::metrics::get().config_reloads;
        match self.build_next().await {
            Ok((next, jobs, certs)) => {
                let running = Running::start(jobs);
                self.current.store(Arc::new(next));
                self.certs.install(certs);
                counter.with_label_values(&["ok"]).inc();
                crate::metrics::get().config_reload_refused_since.set(0);
                tracing::info!("configuration reloaded");
                // The caller drops the previous generation's jobs; requests still using it
                // finish with what they hold.
                Some(running)
            }
            Err(problems) => {
                counter.with_label_values(&["error"]).inc();
                let since = &crate::metrics::get().config_reload_refused_since;
                if since.get() == 0 {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(1, |d| d.as_secs() as i64);
                    since.set(now);
                }
                for problem in &problems {
                    let problem = problem.to_string();
                    tracing::error!(problem, "reload refused");
                }
                tracing::error!("configuration not reloaded; still serving the previous one");
                None
            }
        }
    }

    /// Read, validate and build the next generation on a blocking thread (with the listeners'
    /// certificates read again), then fetch its keys.
    async fn build_next(&self) -> Result<(Generation, Jobs, Vec<crate::tls::Certs>), Errors> {
        let path = self.path.clone();
        let serving = self.current.load_full();
        let fixed = serving.clone();
        let certs = self.certs.clone();
        let (mut next, jobs, keys) = tokio::task::spawn_blocking(move || {
            let mut config = Config::load(&path).map_err(file_problems)?;
            // Decided on the command line at start, not by the file.
            config.demo_key = fixed.config.demo_key;
            fixed_at_start(&fixed.config, &config)?;
            let keys = certs.read_again();
            let built = Generation::build(config);
            match (built, keys) {
                (Ok((next, jobs)), Ok(keys)) => Ok((next, jobs, keys)),
                (built, keys) => {
                    let mut problems = built.err().unwrap_or_default();
                    problems.extend(keys.err());
                    Err(problems)
                }
            }
        })
        .await
        .or_err(ErrorKind::Runtime, "reload stopped")??;
        next.prime_keys(&serving).await;
        // Nothing has cloned the new generation's shield yet: it is built but not serving.
        if let Some(shield) = std::sync::Arc::get_mut(&mut next.shield) {
            shield.adopt(&serving.shield);
        }
        Ok((next, jobs, keys))
    }
}

/// Each problem of a configuration file that did not load, as `file: problem`.
fn file_problems(e: ConfigError) -> Errors {
    let file = e.file.display();
    e.problems
        .iter()
        .map(|problem| Error::new(ErrorKind::Config, format!("{file}: {problem}")))
        .collect()
}

/// Settings that only a restart can change.
fn fixed_at_start(serving: &Config, next: &Config) -> Result<(), Error> {
    let (a, b) = (&serving.server, &next.server);
    let mut changed = Vec::new();
    if a.listen != b.listen || a.tls_listeners != b.tls_listeners {
        changed.push("server.listen");
    }
    if a.admin_listen != b.admin_listen {
        changed.push("server.admin_listen");
    }
    if a.threads != b.threads {
        changed.push("server.threads");
    }
    if a.work_stealing != b.work_stealing {
        changed.push("server.work_stealing");
    }
    if a.shutdown_grace_s != b.shutdown_grace_s {
        changed.push("server.shutdown_grace_s");
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: {} changed; these take effect only when the gateway is restarted",
                next.source.display(),
                changed.join(", ")
            ),
        ))
    }
}

/// Polls the fingerprint of the serving configuration's files (`[server] watch_interval_s`).
struct Watching {
    files: Vec<std::path::PathBuf>,
    dirs: Vec<std::path::PathBuf>,
    last: crate::watch::Fingerprint,
    interval: tokio::time::Interval,
}

impl Watching {
    /// Watch the files of `config`, from `earlier`'s last look when they are the same files,
    /// else from how they are now.
    async fn start(config: &Config, earlier: Option<Watching>) -> Option<Watching> {
        let every = config.server.watch_interval_s;
        if every == 0 {
            return None;
        }
        let (files, dirs) = crate::watch::watched(config);
        let last = match earlier {
            Some(earlier) if earlier.files == files && earlier.dirs == dirs => earlier.last,
            _ => Self::take(&files, &dirs).await,
        };
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(every));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        Some(Watching {
            files,
            dirs,
            last,
            interval,
        })
    }

    async fn take(
        files: &[std::path::PathBuf],
        dirs: &[std::path::PathBuf],
    ) -> crate::watch::Fingerprint {
        let (files, dirs) = (files.to_vec(), dirs.to_vec());
        tokio::task::spawn_blocking(move || crate::watch::fingerprint(&files, &dirs))
            .await
            .unwrap_or_default()
    }

    /// Take the files' fingerprint now.
    async fn look_again(&mut self) {
        self.last = Self::take(&self.files, &self.dirs).await;
    }

    /// Returns at the first check that finds the files different.
    async fn changed(&mut self) {
        loop {
            self.interval.tick().await;
            let now = Self::take(&self.files, &self.dirs).await;
            if now != self.last {
                self.last = now;
                return;
            }
        }
    }
}
