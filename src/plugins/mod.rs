//! Python policy plugins, compiled to WebAssembly components and run in-process: building
//! (`build`), hosting (`host`), checking what they decide (`decision`), and running a route's
//! chain of policies in order (here). The first policy that answers ends the chain.

mod bindings;
pub mod build;
mod cache;
mod clock;
pub mod decision;
mod exception;
pub mod host;
mod lane;
mod limits;
pub mod python;
mod scaffold;
mod shadow;
mod snapshot;
mod ticker;
mod wire;

pub use scaffold::scaffold;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use pingora::http::RequestHeader;

use crate::config::{CacheInput, Config, Isolation, Name, OnError, PolicyConfig, RouteConfig};
use crate::error::{Error, ErrorKind, Errors, OrErr};
use crate::header_pattern::HeaderPatterns;
use crate::ids::OriginId;
use crate::shield::Shield;
pub use decision::PolicyAnswer;
use decision::{Allowed, Checked};
pub use host::Failure;
use host::{PolicyHost, Runtime};

/// What a route's policies decided.
pub enum Outcome {
    /// Go on to the origin; `origin` is another one chosen by policy `chosen_by` (`cached`: by
    /// a remembered decision of it).
    Forward {
        origin: Option<OriginId>,
        chosen_by: Option<Arc<str>>,
        cached: bool,
    },
    /// Answer with this response, as `policy` decided (`cached`: a remembered decision).
    Respond {
        policy: Arc<str>,
        answer: PolicyAnswer,
        cached: bool,
    },
    /// `policy`, with `on_error = "deny"`, failed: answer 503.
    Failed { policy: Arc<str>, why: Failure },
}

/// Facts about the request that plugins see besides its header.
pub struct Context<'a> {
    pub client_ip: String,
    pub route: &'a str,
    /// The verified token's claims.
    pub claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub country: Option<String>,
    /// The serving generation's shield, for `edgewarden.limit`.
    pub shield: &'a Arc<Shield>,
    /// `claims` as JSON, written when a policy first needs all of them: a route whose policies
    /// are cached on a few named claims (or none) never writes it.
    claims_json: std::sync::OnceLock<Option<String>>,
}

impl<'a> Context<'a> {
    pub fn new(
        client_ip: String,
        route: &'a str,
        claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
        country: Option<String>,
        shield: &'a Arc<Shield>,
    ) -> Context<'a> {
        Context {
            client_ip,
            route,
            claims,
            country,
            shield,
            claims_json: std::sync::OnceLock::new(),
        }
    }

    fn claims_json(&self) -> Option<&str> {
        self.claims_json
            .get_or_init(|| self.claims.and_then(|c| serde_json::to_string(c).ok()))
            .as_deref()
    }
}

/// One policy, built and warmed.
pub struct Policy {
    config: Arc<PolicyConfig>,
    host: Arc<PolicyHost>,
    metrics: PolicyMetrics,
    /// `allow_origins`, resolved to the generation's origins.
    origins: Vec<(Name, OriginId)>,
    /// `allow_headers`.
    allow_headers: HeaderPatterns,
    /// `[cache]`: remembered decisions.
    cache: Option<cache::DecisionCache>,
}

/// A policy's hot-path metrics, resolved once.
struct PolicyMetrics {
    duration: prometheus::Histogram,
    forwarded: prometheus::IntCounter,
    responded: prometheus::IntCounter,
}

impl PolicyMetrics {
    fn new(policy: &str) -> PolicyMetrics {
        let m = crate::metrics::get();
        PolicyMetrics {
            duration: m.plugin_duration.with_label_values(&[policy]),
            forwarded: m.plugin_outcomes.with_label_values(&[policy, "forwarded"]),
            responded: m.plugin_outcomes.with_label_values(&[policy, "responded"]),
        }
    }

    fn failed(policy: &str, outcome: &str) {
        crate::metrics::get()
            .plugin_outcomes
            .with_label_values(&[policy, outcome])
            .inc();
    }
}

/// One entry of a route's chain of policies.
#[derive(Clone)]
pub struct ChainStep {
    policy: Arc<Policy>,
    shadow: bool,
}

/// Every policy of one configuration, built and warmed.
pub struct Plugins {
    policies: Vec<Arc<Policy>>,
    shadows: shadow::Shadows,
    /// The engines the policies run on: one for warm policies, one for fresh ones.
    _runtimes: Vec<Runtime>,
}

impl Plugins {
    /// Build, compile and warm every policy some route uses (blocking; start-up only).
    /// `warm` is the number of initialised instances to keep per policy; at most twice as many
    /// are in use at once.
    /// `origin` resolves a name of `allow_origins` to the generation's origin. Every policy that
    /// cannot be built is reported.
    pub fn build(
        config: &Config,
        origin: impl Fn(&str) -> Option<OriginId>,
        warm: usize,
    ) -> Result<Plugins, Errors> {
        let routes_use_policies = config.routes.iter().any(|r| !r.policies.is_empty());
        if !routes_use_policies {
            return Ok(Plugins {
                policies: Vec::new(),
                shadows: shadow::Shadows::default(),
                _runtimes: Vec::new(),
            });
        }
        let lane = lane::Lane::start(
            "plugin-lane",
            config.server.plugin_lane_threads,
            config.server.plugin_lane_nice,
        )?;
        let runtime = Runtime::new(Isolation::Warm, lane.clone())?;
        let fresh_runtime = fresh_runtime_if(
            config
                .policies
                .iter()
                .any(|p| p.isolation == Isolation::Fresh),
            &lane,
        )?;
        let builder = build::Builder::new(config);
        let warmer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .or_err(ErrorKind::Runtime, "plugin warm-up runtime")?;
        let mut policies = Vec::with_capacity(config.policies.len());
        let mut errors = Errors::new();
        for policy in &config.policies {
            let origins = match resolve_origins(policy, &origin) {
                Ok(origins) => origins,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let dir = config.server.plugins_dir.join(&policy.plugin);
            let runtime = match (&fresh_runtime, policy.isolation) {
                (Some(fresh), Isolation::Fresh) => fresh,
                _ => &runtime,
            };
            let built = match builder.build(&runtime.engine, &policy.plugin, &dir) {
                Ok(built) => built,
                Err(e) => {
                    errors.push(e.within(policy.file.display().to_string()));
                    continue;
                }
            };
            tracing::info!(policy = %policy.name, plugin = %policy.plugin, how = %built.note, "plugin ready");
            let host = match runtime.prepare(policy, &built.component, warm * 2) {
                Ok(host) => host,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let Err(e) = warmer.block_on(host.warm_up(warm)) {
                errors.push(e.within(policy.file.display().to_string()));
                continue;
            }
            policies.push(Arc::new(Policy {
                config: Arc::new(policy.clone()),
                metrics: PolicyMetrics::new(&policy.name),
                host,
                origins,
                allow_headers: HeaderPatterns::new(policy.allow_headers.iter().map(String::as_str)),
                cache: policy
                    .cache
                    .as_ref()
                    .map(|c| cache::DecisionCache::new(&policy.name, c)),
            }));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Plugins {
            policies,
            shadows: shadow::Shadows::default(),
            _runtimes: std::iter::once(runtime).chain(fresh_runtime).collect(),
        })
    }

    /// The route's chain of policies, in order. A policy the route names that was not built is
    /// an error, never skipped.
    pub fn chain(&self, route: &RouteConfig) -> Result<Vec<ChainStep>, Error> {
        route
            .policies
            .iter()
            .map(|rp| {
                let policy = self
                    .policies
                    .iter()
                    .find(|p| p.config.name == rp.name)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Config,
                            format!("routes.{}: unknown policy {:?}", route.name, rp.name),
                        )
                    })?;
                Ok(ChainStep {
                    policy: policy.clone(),
                    shadow: rp.shadow,
                })
            })
            .collect()
    }

    /// The headers the enforcing policies of `route` may set (their `allow_headers`): the
    /// gateway's on that route, so client copies are removed before the chain runs.
    pub fn headers_set_by(&self, route: &RouteConfig) -> HeaderPatterns {
        HeaderPatterns::new(
            route
                .policies
                .iter()
                .filter(|rp| !rp.shadow)
                .filter_map(|rp| self.policies.iter().find(|p| p.config.name == rp.name))
                .flat_map(|p| p.config.allow_headers.iter().map(String::as_str)),
        )
    }

    /// Policies whose plugin has no initialised instance (readiness).
    pub fn not_ready(&self) -> Vec<String> {
        self.policies
            .iter()
            .filter(|p| {
                p.config.isolation == crate::config::Isolation::Warm && p.host.instances() == 0
            })
            .map(|p| format!("policy {}: no initialised instance", p.config.name))
            .collect()
    }

    /// Set the instance gauge of every policy (at scrape time).
    pub fn report_instances(&self) {
        let gauge = &crate::metrics::get().plugin_instances;
        // Policies a reload removed disappear.
        gauge.reset();
        for p in &self.policies {
            gauge
                .with_label_values(&[p.config.name.as_str()])
                .set(p.host.instances() as i64);
        }
    }

    /// Run the route's policies in order on `req`, applying each forward decision before the next.
    /// Shadow policies see the request as it stands at their place in the chain; they run in the
    /// background and change nothing.
    pub async fn run(
        &self,
        chain: &[ChainStep],
        req: &mut RequestHeader,
        ctx: &Context<'_>,
    ) -> Outcome {
        self.run_observed(chain, req, ctx, None).await
    }

    /// [`Plugins::run`], adding to `calls` (when given) what each enforcing policy's call did,
    /// for the request's trace.
    pub async fn run_observed(
        &self,
        chain: &[ChainStep],
        req: &mut RequestHeader,
        ctx: &Context<'_>,
        mut calls: Option<&mut Vec<ObservedCall>>,
    ) -> Outcome {
        let mut chosen = None;
        for step in chain {
            let policy = &step.policy;
            let input = policy.input(req, ctx);
            if step.shadow {
                self.shadows.run(policy.clone(), input);
                continue;
            }
            let mut observed = calls.is_some().then(|| ObservedCall::new(policy));
            let facts = observed.as_mut().map(|o| &mut o.facts);
            let mut cached = false;
            let decided = policy
                .decide(input, req, ctx.shield, facts, &mut cached)
                .await;
            if let (Some(calls), Some(mut call)) = (calls.as_deref_mut(), observed) {
                call.end = Instant::now();
                call.cached = cached;
                call.outcome = match &decided {
                    Ok(ControlFlow::Continue(_)) => "forwarded",
                    Ok(ControlFlow::Break(_)) => "responded",
                    Err(why) => why.label(),
                };
                calls.push(call);
            }
            match decided {
                Ok(ControlFlow::Continue(None)) => {}
                Ok(ControlFlow::Continue(Some(origin))) => {
                    chosen = Some((origin, policy.name(), cached));
                }
                Ok(ControlFlow::Break(answer)) => {
                    return Outcome::Respond {
                        policy: policy.name(),
                        answer,
                        cached,
                    };
                }
                Err(why) if policy.config.on_error == OnError::Deny => {
                    return Outcome::Failed {
                        policy: policy.name(),
                        why,
                    };
                }
                Err(_) => {}
            }
        }
        match chosen {
            Some((origin, policy, cached)) => Outcome::Forward {
                origin: Some(origin),
                chosen_by: Some(policy),
                cached,
            },
            None => Outcome::Forward {
                origin: None,
                chosen_by: None,
                cached: false,
            },
        }
    }
}

/// A plugin's answer: remembered (`[cache]`) or just returned.
enum Held {
    Remembered(Arc<[u8]>),
    Fresh(Vec<u8>),
}

impl std::ops::Deref for Held {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Held::Remembered(answer) => answer,
            Held::Fresh(answer) => answer,
        }
    }
}

/// One enforcing policy's call, as the request's trace shows it.
#[derive(Debug)]
pub struct ObservedCall {
    pub policy: Arc<str>,
    pub isolation: &'static str,
    pub start: Instant,
    pub end: Instant,
    /// `forwarded`, `responded`, or the failure's label.
    pub outcome: &'static str,
    /// The decision was a remembered one (`[cache]`): the plugin was not called.
    pub cached: bool,
    pub facts: host::CallFacts,
}

impl ObservedCall {
    fn new(policy: &Policy) -> ObservedCall {
        let now = Instant::now();
        ObservedCall {
            policy: policy.name(),
            isolation: match policy.config.isolation {
                Isolation::Warm => "warm",
                Isolation::Fresh => "fresh",
            },
            start: now,
            end: now,
            outcome: "forwarded",
            cached: false,
            facts: host::CallFacts::default(),
        }
    }
}

impl Policy {
    fn name(&self) -> Arc<str> {
        self.host.name.clone()
    }

    /// What the plugin receives of the request: all of it, or for a policy with `[cache]` only
    /// its declared inputs (also the key its decision is remembered under).
    fn input(&self, req: &RequestHeader, ctx: &Context<'_>) -> String {
        let all_claims = self
            .config
            .cache
            .as_ref()
            .is_none_or(|c| c.inputs.contains(&CacheInput::Claims));
        let facts = wire::Facts {
            client_ip: &ctx.client_ip,
            route: ctx.route,
            country: ctx.country.as_deref(),
            claims_json: if all_claims { ctx.claims_json() } else { None },
            claims: ctx.claims,
        };
        match &self.config.cache {
            Some(cache) => wire::view(req, &facts, &cache.inputs),
            None => wire::request(req, &facts),
        }
    }

    /// Call the policy (or, with `[cache]`, apply the decision remembered for `input`, setting
    /// `cached`), check its decision and apply a forward decision's changes to `req`: `Continue`
    /// with the origin it chose, if any, or `Break` with its answer. Counted by outcome. Only a
    /// decision that passed its checks is remembered.
    async fn decide(
        &self,
        input: String,
        req: &mut RequestHeader,
        shield: &Arc<Shield>,
        facts: Option<&mut host::CallFacts>,
        cached: &mut bool,
    ) -> Result<ControlFlow<PolicyAnswer, Option<OriginId>>, Failure> {
        let timer = self.metrics.duration.start_timer();
        let remembered = self.cache.as_ref().and_then(|c| c.get(&input));
        *cached = remembered.is_some();
        // The key a fresh decision is remembered under (the call takes the input).
        let mut key = None;
        let called = match remembered {
            Some(answer) => Ok(Held::Remembered(answer)),
            None => {
                key = self.cache.as_ref().map(|_| input.clone());
                self.host
                    .call_observed(input, Some(shield), facts)
                    .await
                    .map(Held::Fresh)
            }
        };
        timer.observe_duration();
        let allowed = Allowed {
            headers: &self.allow_headers,
            origins: &self.origins,
        };
        let decided = called.and_then(|answer| {
            let checked = decision::check(&answer, &allowed).map_err(|why| {
                tracing::warn!(policy = %self.host.name, %why, "plugin output refused");
                Failure::InvalidOutput
            })?;
            if let Some(cache) = &self.cache
                && let Some(key) = key
            {
                cache.insert(key, &answer);
            }
            match checked {
                Checked::Respond(answer) => Ok(ControlFlow::Break(answer)),
                Checked::Forward(changes) => changes.apply(req).map(ControlFlow::Continue).map_err(|why| {
                    tracing::warn!(policy = %self.host.name, %why, "plugin decision not applied");
                    Failure::InvalidOutput
                }),
            }
        });
        match &decided {
            Ok(ControlFlow::Break(_)) => self.metrics.responded.inc(),
            Ok(ControlFlow::Continue(_)) => self.metrics.forwarded.inc(),
            Err(failure) => PolicyMetrics::failed(&self.host.name, failure.label()),
        }
        decided
    }
}

/// Build every plugin directory under `plugins_dir` (those with a `plugin.py`). One line per plugin,
/// and one more for each plugin a fresh policy runs (compiled for the fresh engine too). Every
/// plugin that does not build is reported.
pub fn build_all(config: &Config) -> Result<Vec<String>, Errors> {
    // Nothing runs here: the lane's one thread is never given work.
    let lane = lane::Lane::start("plugin-lane", 1, 0)?;
    let runtime = Runtime::new(Isolation::Warm, lane.clone())?;
    let builder = build::Builder::new(config);
    let dir = &config.server.plugins_dir;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .or_err_with(ErrorKind::PluginBuild, || dir.display().to_string())?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("plugin.py").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Plugins that a fresh policy runs are also compiled for the fresh engine (its memories are
    // edgewarden's, so its native code differs).
    let fresh: std::collections::BTreeSet<&str> = config
        .policies
        .iter()
        .filter(|p| p.isolation == Isolation::Fresh)
        .map(|p| p.plugin.as_str())
        .collect();
    let fresh_runtime = fresh_runtime_if(!fresh.is_empty(), &lane)?;
    let mut lines = Vec::new();
    let mut errors = Errors::new();
    for name in names {
        match builder.build(&runtime.engine, &name, &dir.join(&name)) {
            Ok(built) => lines.push(format!("{name}: {}", built.note)),
            Err(e) => errors.push(e),
        }
        if let Some(fresh_runtime) = &fresh_runtime
            && fresh.contains(name.as_str())
        {
            match builder.build(&fresh_runtime.engine, &name, &dir.join(&name)) {
                Ok(built) => lines.push(format!("{name} (fresh isolation): {}", built.note)),
                Err(e) => errors.push(e),
            }
        }
    }
    errors.or_ok(lines)
}

/// A policy's `allow_origins` as the generation's origins.
fn resolve_origins(
    policy: &PolicyConfig,
    origin: impl Fn(&str) -> Option<OriginId>,
) -> Result<Vec<(Name, OriginId)>, Error> {
    policy
        .allow_origins
        .iter()
        .map(|name| match origin(name) {
            Some(id) => Ok((name.clone(), id)),
            None => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: allow_origins: unknown origin {name:?}",
                    policy.file.display()
                ),
            )),
        })
        .collect()
}

/// The engine for fresh policies, when there are any (it costs a ticker thread).
fn fresh_runtime_if(needed: bool, lane: &Arc<lane::Lane>) -> Result<Option<Runtime>, Error> {
    needed
        .then(|| Runtime::new(Isolation::Fresh, lane.clone()))
        .transpose()
}
