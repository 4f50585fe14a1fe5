//! The wasmtime host: an engine with an epoch ticker per isolation mode, one store-data type, a
//! linker with a locked-down WASI, and per policy an `InstancePre` plus a pool of initialised
//! instances.
//!
//! A call takes an instance out of the pool, runs it under the policy's time budget (processor
//! time, see `clock`), its wall-clock deadline and its memory cap, and puts it back. An instance
//! that trapped, timed out or hit its cap is dropped and a replacement is built in the
//! background, off the request path. With `isolation = "fresh"` the instance's memory is saved
//! after `init` and put back after every call (`snapshot`), so each request starts from the
//! same state; a call that grew the memory or made a WASI call retires the instance instead.
//! When the pool is empty (a burst), the request instantiates one itself.
//!
//! A call runs on the request's thread while it is short and moves to the policy's share of the
//! slow lane once it is not (`lane`). Replacement instances are built on the lane; an instance a
//! request waits for is built on its own thread, or on the lane while the policy has a long call
//! there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::edgewarden::policy::host::{Host, LimitVerdict, LogLevel};
use super::bindings::{Policy, PolicyPre};
use super::clock::{RunClock, Timed};
use super::exception::ExceptionLog;
use super::lane::{Lane, Share};
pub use super::limits::Failure;
use super::limits::{Limiter, Stopped, classify};
use super::snapshot::{self, Saved};
use super::ticker::Ticker;
use super::wire;
use crate::config::{Isolation, Name, PolicyConfig};
use crate::error::{Error, ErrorKind, OrErr};
use crate::shield::Shield;

/// Processor time and wall-clock time an instance may take to instantiate and run `init`.
const START_BUDGET: Duration = Duration::from_secs(5);
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Log lines a plugin may emit per call, and their length.
const MAX_LOG_LINES: usize = 16;
const MAX_LOG_CHARS: usize = 512;
/// The longest key a plugin may pass to `limit`, and the largest cost.
const MAX_LIMIT_KEY_BYTES: usize = 512;
const MAX_LIMIT_COST: u32 = 1_000_000;

/// What a traced call reports besides its decision.
#[derive(Debug, Default)]
pub struct CallFacts {
    /// Running time charged to the call (processor time once it has seen an epoch tick).
    pub ran: Option<Duration>,
    /// Its `log` lines: level and message.
    pub logs: Vec<(&'static str, String)>,
}

/// Store data: one per instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    clock: Arc<RunClock>,
    budget: Duration,
    policy: Arc<str>,
    logged: usize,
    /// WASI calls so far: a call that made one may have changed host-side state (resources), so
    /// its instance is not put back to its saved memory for reuse.
    wasi_calls: u64,
    /// The `key = "policy"` limits the policy file lists.
    limits_allowed: Arc<[Name]>,
    /// During a request's call, the shield of the generation serving the request (`None` in
    /// `init` and between calls, so a pooled instance keeps no generation alive).
    shield: Option<Arc<Shield>>,
    /// During a traced call, the `log` lines it wrote (as many as are logged).
    captured: Option<Vec<(&'static str, String)>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi_calls += 1;
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        if self.logged >= MAX_LOG_LINES {
            return;
        }
        self.logged += 1;
        let message: String = message.chars().take(MAX_LOG_CHARS).collect();
        let policy = &*self.policy;
        let label = match level {
            LogLevel::Trace | LogLevel::Debug => {
                tracing::debug!(policy, "{message}");
                "debug"
            }
            LogLevel::Info => {
                tracing::info!(policy, "{message}");
                "info"
            }
            LogLevel::Warn => {
                tracing::warn!(policy, "{message}");
                "warn"
            }
            LogLevel::Error => {
                tracing::error!(policy, "{message}");
                "error"
            }
        };
        if let Some(lines) = &mut self.captured {
            lines.push((label, message));
        }
    }

    async fn limit(
        &mut self,
        name: String,
        key: String,
        cost: u32,
    ) -> Result<LimitVerdict, String> {
        if !self.limits_allowed.iter().any(|allowed| **allowed == *name) {
            return Err(format!(
                "limit {name:?} is not in the policy file's `limits`"
            ));
        }
        if key.is_empty() || key.len() > MAX_LIMIT_KEY_BYTES {
            return Err(format!(
                "a limit key has 1 to {MAX_LIMIT_KEY_BYTES} bytes, not {}",
                key.len()
            ));
        }
        if !(1..=MAX_LIMIT_COST).contains(&cost) {
            return Err(format!("a cost is 1 to {MAX_LIMIT_COST}, not {cost}"));
        }
        let Some(shield) = self.shield.clone() else {
            return Err(
                "limits are spent only while handling a request (not in setup, not in shadow)"
                    .to_string(),
            );
        };
        match shield
            .policy_limit(&name, key.as_bytes(), u64::from(cost))
            .await
        {
            None => Err(format!(
                "no [[limits]] entry {name:?} with key = \"policy\""
            )),
            Some(Ok((rate, per_s))) => Ok(LimitVerdict {
                allowed: true,
                rate,
                per_s,
                retry_after_s: 0,
            }),
            Some(Err(refusal)) => Ok(LimitVerdict {
                allowed: false,
                rate: refusal.rate,
                per_s: refusal.per_s,
                retry_after_s: refusal.retry_after_s,
            }),
        }
    }
}

/// The engine, its epoch ticker and the linker shared by every plugin, and the slow lane their
/// long calls move to.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<HostState>,
    ticker: Arc<Ticker>,
    lane: Arc<Lane>,
}

impl Runtime {
    /// The engine for `isolation`: fresh policies' instances get memories that can be put back
    /// to a saved state (`snapshot`); warm ones keep wasmtime's copy-on-write memories, shared
    /// with the compiled plugin's image.
    pub fn new(isolation: Isolation, lane: Arc<Lane>) -> Result<Runtime, Error> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        if isolation == Isolation::Fresh {
            // Data segments are copied in once per instance: the saved copy is what requests map.
            config.memory_init_cow(false);
            config.with_host_memory(Arc::new(snapshot::Creator));
        }
        let engine = Engine::new(&config).or_err(ErrorKind::Plugin, "wasm engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .or_err(ErrorKind::Plugin, "wasm linker")?;
        Policy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .or_err(ErrorKind::Plugin, "wasm linker")?;
        let ticker = Ticker::start(&engine)?;
        Ok(Runtime {
            engine,
            linker,
            ticker,
            lane,
        })
    }

    /// Prepare a compiled plugin for fast instantiation.
    /// `max_instances` bounds the instances of this policy in use at once (and so its memory):
    /// further calls wait for one to come back.
    pub fn prepare(
        &self,
        config: &PolicyConfig,
        component: &Component,
        max_instances: usize,
    ) -> Result<Arc<PolicyHost>, Error> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .and_then(PolicyPre::new)
            .or_err_with(ErrorKind::Plugin, || {
                format!(
                    "policy {}: plugin {} does not fit the interface",
                    config.name, config.plugin
                )
            })?;
        Ok(Arc::new(PolicyHost {
            engine: self.engine.clone(),
            ticker: self.ticker.clone(),
            lane_share: Share::new(self.lane.threads()),
            lane: self.lane.clone(),
            slow_calls: crate::metrics::get()
                .plugin_slow_calls
                .with_label_values(&[config.name.as_str()]),
            pre,
            name: Arc::from(config.name.as_str()),
            limits_allowed: config.limits.iter().cloned().collect(),
            settings_json: config.settings_json.clone(),
            budget: Duration::from_millis(config.timeout_ms),
            deadline: Duration::from_millis(config.deadline_ms),
            memory_bytes: (config.memory_mb as usize) << 20,
            isolation: config.isolation,
            max_calls: config.max_calls_per_instance,
            pool: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            in_use: tokio::sync::Semaphore::new(max_instances.max(1)),
            exceptions: ExceptionLog::default(),
        }))
    }
}

/// An instance taken from the pool for one call; retired unless handed back.
struct Lease {
    host: Arc<PolicyHost>,
    warm: Option<Warm>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(warm) = self.warm.take() {
            self.host.retire(warm);
        }
    }
}

/// One initialised instance.
struct Warm {
    store: Store<HostState>,
    policy: Policy,
    calls: u64,
    /// Fresh isolation: the memories as they were after `init`, put back after every call.
    saved: Vec<Saved>,
}

/// A policy's plugin, ready to run.
pub struct PolicyHost {
    engine: Engine,
    ticker: Arc<Ticker>,
    lane: Arc<Lane>,
    /// The policy's calls running long on the lane at once (its bulkhead).
    lane_share: Share,
    slow_calls: prometheus::IntCounter,
    pre: PolicyPre<HostState>,
    pub name: Arc<str>,
    limits_allowed: Arc<[Name]>,
    settings_json: String,
    /// Processor time per call.
    budget: Duration,
    /// Wall-clock time per call, waiting included.
    deadline: Duration,
    memory_bytes: usize,
    isolation: Isolation,
    max_calls: u64,
    pool: Mutex<Vec<Warm>>,
    /// Instances in the pool or in use.
    live: AtomicUsize,
    /// One permit per instance that may be in use at once.
    in_use: tokio::sync::Semaphore,
    exceptions: ExceptionLog,
}

impl PolicyHost {
    /// Build and initialise one instance (~1 ms for a CPython plugin), within [`START_DEADLINE`].
    async fn instantiate(&self) -> Result<Warm, Error> {
        tokio::time::timeout(START_DEADLINE, self.instantiate_unbounded())
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Plugin,
                    format!(
                        "policy {}: instantiate and init passed their {START_DEADLINE:?} deadline",
                        self.name
                    ),
                ))
            })
    }

    async fn instantiate_unbounded(&self) -> Result<Warm, Error> {
        let _busy = self.ticker.busy();
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = Limiter::new(self.memory_bytes);
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                table: ResourceTable::new(),
                limits,
                clock: Arc::default(),
                // Start-up (CPython's own initialisation) gets a generous budget.
                budget: START_BUDGET,
                policy: self.name.clone(),
                logged: 0,
                wasi_calls: 0,
                limits_allowed: self.limits_allowed.clone(),
                shield: None,
                captured: None,
            },
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.clock.charge() >= state.budget {
                Err(Stopped::Budget(state.budget).into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let clock = store.data().clock.clone();
        let (policy, regions) = snapshot::Collect::new(Timed::new(
            self.pre.instantiate_async(&mut store),
            clock.clone(),
        ))
        .await;
        let name = &self.name;
        let policy =
            policy.or_err_with(ErrorKind::Plugin, || format!("policy {name}: instantiate"))?;
        Timed::new(policy.call_init(&mut store, &self.settings_json), clock)
            .await
            .or_err_with(ErrorKind::Plugin, || format!("policy {name}: init trapped"))?
            .or_err_with(ErrorKind::Plugin, || {
                format!("policy {name}: init refused its settings")
            })?;
        store.data_mut().budget = self.budget;
        let saved = if self.isolation == Isolation::Fresh {
            regions
                .into_iter()
                .map(Saved::take)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.within(format!("policy {name}")))?
        } else {
            Vec::new()
        };
        self.live.fetch_add(1, Ordering::Relaxed);
        Ok(Warm {
            store,
            policy,
            calls: 0,
            saved,
        })
    }

    /// Fill the pool to `count` initialised instances (start-up and reload, never a request).
    /// Warm policies reuse them; fresh policies use each for one request and build its
    /// replacement in the background.
    pub async fn warm_up(&self, count: usize) -> Result<(), Error> {
        for _ in 0..count {
            let warm = self.instantiate().await?;
            self.put_back(warm);
        }
        Ok(())
    }

    fn put_back(&self, warm: Warm) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(warm);
        }
    }

    fn take(&self) -> Option<Warm> {
        self.pool.lock().ok()?.pop()
    }

    /// Run the plugin on `request` (the encoded request, see `wire`), all of it (waiting for an
    /// instance, building one when the pool is empty, the call) within the policy's wall-clock
    /// deadline. `Ok` is the plugin's answer as `wire::answer` reads it, never an exception: an
    /// exception is logged here and is a [`Failure::Exception`]. The epoch callback stops a
    /// plugin that runs past its budget; the deadline stops one that waits (sleeping through WASI,
    /// a starved thread). Dropping the call midway retires the instance (`Lease`).
    /// `shield`: the serving generation's, for the plugin's `limit` calls.
    pub async fn call(
        self: &Arc<Self>,
        request: String,
        shield: Option<&Arc<Shield>>,
    ) -> Result<Vec<u8>, Failure> {
        self.call_observed(request, shield, None).await
    }

    /// [`PolicyHost::call`], also reporting into `facts` (when given) the running time charged
    /// and the `log` lines written, for the request's trace.
    pub async fn call_observed(
        self: &Arc<Self>,
        request: String,
        shield: Option<&Arc<Shield>>,
        facts: Option<&mut CallFacts>,
    ) -> Result<Vec<u8>, Failure> {
        let call = self.call_unbounded(request, shield, facts);
        match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(policy = %self.name, failure = "timeout", deadline = ?self.deadline, "plugin call passed its deadline");
                Err(Failure::Timeout)
            }
        }
    }

    async fn call_unbounded(
        self: &Arc<Self>,
        request: String,
        shield: Option<&Arc<Shield>>,
        facts: Option<&mut CallFacts>,
    ) -> Result<Vec<u8>, Failure> {
        // Calls yield at epoch ticks, so one thread can have many in flight; without this bound a
        // burst would build an instance per concurrent request.
        let _permit = self.in_use.acquire().await.map_err(|_| Failure::Trap)?;
        let warm = match self.take() {
            Some(warm) => warm,
            None => {
                // The request's own work, on its thread; on the lane while the policy has a long
                // call there (a looping policy's burst does not build instances on the workers).
                let built = if self.lane_share.contended() {
                    let host = self.clone();
                    self.lane
                        .run(async move { host.instantiate().await })
                        .await
                        .ok_or_else(|| Error::new(ErrorKind::Plugin, "the plugin lane stopped"))
                        .and_then(|built| built)
                } else {
                    self.instantiate().await
                };
                built.map_err(|e| {
                    tracing::warn!(policy = %self.name, error = %e, "plugin instance could not be created");
                    Failure::Trap
                })?
            }
        };
        // If this future is dropped mid-call (the client went away, the deadline passed), the
        // lease retires the instance: a half-run instance is never reused.
        let mut lease = Lease {
            host: self.clone(),
            warm: Some(warm),
        };
        let Some(warm) = lease.warm.as_mut() else {
            return Err(Failure::Trap);
        };
        let state = warm.store.data_mut();
        state.logged = 0;
        state.shield = shield.cloned();
        state.captured = facts.is_some().then(Vec::new);
        let wasi_calls = state.wasi_calls;
        let clock = state.clock.clone();
        warm.store.set_epoch_deadline(1);
        let _busy = self.ticker.busy();
        // Only read the clock for the diagnostic when it can be logged.
        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        let call = Timed::new(
            async move {
                let result = match lease.warm.as_mut() {
                    Some(Warm { store, policy, .. }) => {
                        policy.call_handle_request(store, &request).await
                    }
                    None => Err(wasmtime::Error::msg("no instance")),
                };
                (lease, result)
            },
            clock.clone(),
        );
        let (mut lease, result) = self
            .lane
            .call(&self.lane_share, clock.clone(), &self.slow_calls, call)
            .await
            .ok_or(Failure::Trap)?;
        let Some(warm) = lease.warm.as_mut() else {
            return Err(Failure::Trap);
        };
        if let Some(facts) = facts {
            facts.ran = Some(clock.charge());
            facts.logs = warm.store.data_mut().captured.take().unwrap_or_default();
        }
        if let Some(took) = started.map(|s| s.elapsed())
            && took >= self.budget
        {
            tracing::debug!(policy = %self.name, took = ?took, ran = ?clock.charge(), "plugin call waited");
        }
        warm.store.data_mut().shield = None;
        match result {
            Ok(answer) if answer.first() == Some(&b'E') => {
                // The instance is retired with the lease: module state the exception left
                // half-changed is not reused.
                self.exceptions.report(&self.name, wire::answer(&answer));
                Err(Failure::Exception)
            }
            Ok(answer) => {
                warm.calls += 1;
                let reusable = warm.calls < self.max_calls
                    && match self.isolation {
                        Isolation::Warm => true,
                        Isolation::Fresh => restore(warm, wasi_calls, &self.name),
                    };
                if reusable && let Some(warm) = lease.warm.take() {
                    self.put_back(warm);
                }
                Ok(answer)
            }
            Err(e) => {
                let failure = classify(&e);
                tracing::warn!(policy = %self.name, failure = failure.label(), error = %first_line(&e), "plugin call failed");
                Err(failure)
            }
        }
    }

    /// Drop an instance and build its replacement in the background.
    /// Tearing an instance down (unmapping its memory) is done there too.
    fn retire(self: &Arc<Self>, warm: Warm) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        let host = self.clone();
        self.lane.spawn(async move {
            drop(warm);
            match host.instantiate().await {
                Ok(fresh) => host.put_back(fresh),
                Err(e) => {
                    tracing::warn!(policy = %host.name, error = %e, "replacement instance failed")
                }
            }
        });
    }

    /// Instances currently pooled or in use.
    pub fn instances(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

/// Put a fresh policy's instance back to its state after `init`, for the next request. `false`
/// (retire it instead) when that cannot be exact: the call made WASI calls (host-side state may
/// have changed), a memory grew, or nothing was saved.
fn restore(warm: &mut Warm, wasi_calls_before: u64, policy: &str) -> bool {
    if warm.saved.is_empty() || warm.store.data().wasi_calls != wasi_calls_before {
        return false;
    }
    for saved in &mut warm.saved {
        match saved.restore() {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(policy, error = %e, "plugin instance could not be reset");
                return false;
            }
        }
    }
    true
}

fn first_line(e: &wasmtime::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}
