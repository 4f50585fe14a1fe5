//! The abuse shield: cheap refusals before signature work, and the configured rate limits. Stages,
//! cheapest first (docs/shielding.md):
//!
//! 1. [`Shield::before_auth`], before the token is read: the penalty box (a client address with
//!    too many failed authentications), then the route's limits keyed by address or route;
//! 2. [`Budget`], asked by the verifier on a verified-token cache miss just before a signature
//!    check: signature checks per client address (the negative cache of bad signatures sits in
//!    the verifier itself, `auth::negative`);
//! 3. [`Shield::after_auth`], after verification: limits keyed by verified claims or by header
//!    values. An unverified token's claims never key anything.
//!
//! Before all of them, as each connection is accepted (before its TLS handshake),
//! [`Shield::accept_connection`] holds every client address to a rate of new connections (when
//! `connections_per_s` is set): a client that reconnects as fast as it can does not get a
//! handshake from the gateway for each connection. A connection past the rate is dropped, not
//! answered.
//!
//! Every refusal of a request is a [`Refusal`] (429). Counters live in [`store::LocalStore`]s, or for
//! `store = "redis"` limits in [`redis::RedisStore`] (with the local store as the fallback of
//! `on_store_error = "local"`); a reload hands them on to the next generation for every limit whose
//! definition did not change ([`Shield::adopt`]).
//! Addresses are grouped by /64 for IPv6, since one host often holds a whole /64.

mod breaker;
mod concurrency;
pub mod gcra;
pub mod redis;
mod refusal;
pub mod store;

use std::net::IpAddr;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Instant;

use http::HeaderValue;
use ipnet::IpNet;
use pingora::http::RequestHeader;
use prometheus::IntCounter;
use serde_json::{Map, Value};

use crate::config::{
    LimitConfig, LimitKey, LimitKind, LimitMode, LimitStore, Name, OnStoreError, RedisConfig,
    RouteConfig, ShieldConfig,
};
use crate::error::{Error, ErrorKind};
use concurrency::InFlight;
pub use concurrency::Permit;
use gcra::{Quota, Verdict, ceil_secs};
use redis::RedisStore;
pub use refusal::{Refusal, Stage};
use store::LocalStore;

const NS: u64 = 1_000_000_000;

/// What a concurrency limit's granted place counts as.
const ALLOWED: Verdict = Verdict::Allow {
    tat: 0,
    remaining: 0,
    reset_ns: 0,
};

/// Nanoseconds on the shield's monotonic clock (since the first call).
pub fn now_ns() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_nanos() as u64
}

/// The shield of one generation.
pub struct Shield {
    enabled: bool,
    exempt: Vec<IpNet>,
    max_keys: usize,
    penalty: Option<Builtin>,
    budget: Option<Builtin>,
    connections: Option<Builtin>,
    limits: Vec<Limit>,
    /// The shared store of `store = "redis"` limits.
    redis: Option<Arc<RedisStore>>,
}

/// The penalty box, the verification budget or the connection rate.
struct Builtin {
    quota: Quota,
    store: Arc<LocalStore>,
    /// Penalty box: how long the box stays shut.
    box_ns: u64,
    /// The stage, its label as its refusals name it, and their counter: resolved once, since a
    /// flood is refused here at full speed.
    stage: Stage,
    name: Arc<str>,
    policy: HeaderValue,
    refused: IntCounter,
}

impl Builtin {
    fn new(stage: Stage, quota: Quota, max_keys: usize, box_ns: u64) -> Builtin {
        Builtin {
            quota,
            store: Arc::new(LocalStore::new(max_keys)),
            box_ns,
            stage,
            name: Arc::from(stage.label()),
            policy: refusal::policy_field(stage.label(), quota.rate, quota.per_s),
            refused: crate::metrics::get()
                .shield_refusals
                .with_label_values(&[stage.label()]),
        }
    }

    /// The refusal of a request that fits again after `retry_after_ns`.
    fn refusal(&self, retry_after_ns: u64) -> Refusal {
        self.refused.inc();
        Refusal {
            stage: self.stage,
            limit: self.name.clone(),
            rate: self.quota.rate,
            per_s: self.quota.per_s,
            retry_after_s: ceil_secs(retry_after_ns).max(1),
            policy: self.policy.clone(),
        }
    }
}

/// One `[[limits]]` entry at run time, with its counters resolved once.
struct Limit {
    config: LimitConfig,
    /// A rate limit's windows (empty for a concurrency limit).
    quotas: Vec<Quota>,
    /// A concurrency limit's bound and the requests in flight per key.
    concurrency: Option<(u64, Arc<InFlight>)>,
    /// The counters; for a Redis limit, the ones `on_store_error = "local"` falls back to.
    store: Arc<LocalStore>,
    /// `store = "redis"`: the shared store, and the prefix of this limit's keys there.
    redis: Option<(Arc<RedisStore>, String)>,
    name: Arc<str>,
    /// The `RateLimit-Policy` field of each window (of the bound, for a concurrency limit).
    policies: Vec<HeaderValue>,
    allowed: IntCounter,
    refused: IntCounter,
    shadow_refused: IntCounter,
}

/// A route's use of the shield, resolved when the generation is built.
pub struct RouteShield {
    /// Positions in the shield's limits, checked before the token is read.
    before: Vec<usize>,
    /// Checked after verification.
    after: Vec<usize>,
    cost: u64,
    /// The penalty box and the verification budget apply.
    stages: bool,
    route: Name,
}

impl Shield {
    /// The shield of a configuration; the Redis store's URL must parse.
    pub fn build(
        shield: &ShieldConfig,
        limits: &[LimitConfig],
        redis: Option<&RedisConfig>,
    ) -> Result<Shield, Error> {
        let on = shield.enabled;
        let redis = match redis {
            Some(config) => Some(Arc::new(RedisStore::new(config, shield.max_keys)?)),
            None => None,
        };
        let m = crate::metrics::get();
        let penalty = (on && shield.penalty_failures > 0).then(|| {
            let quota = Quota::new(
                shield.penalty_failures,
                shield.penalty_window_s,
                shield.penalty_failures,
            );
            let box_ns = shield.penalty_s.saturating_mul(NS);
            Builtin::new(Stage::PenaltyBox, quota, shield.max_keys, box_ns)
        });
        let budget = (on && shield.verify_per_s > 0).then(|| {
            let quota = Quota::new(shield.verify_per_s, 1, shield.verify_burst);
            Builtin::new(Stage::VerifyBudget, quota, shield.max_keys, 0)
        });
        let connections = (on && shield.connections_per_s > 0).then(|| {
            let quota = Quota::new(shield.connections_per_s, 1, shield.connections_burst);
            Builtin::new(Stage::Connections, quota, shield.max_keys, 0)
        });
        let limits = limits
            .iter()
            .map(|config| {
                let counter = |outcome: &str| {
                    m.limit_decisions
                        .with_label_values(&[config.name.as_str(), outcome])
                };
                let (quotas, concurrency) = match &config.kind {
                    LimitKind::Rate(windows) => (
                        windows
                            .iter()
                            .map(|w| Quota::new(w.rate, w.per_s, w.burst))
                            .collect(),
                        None,
                    ),
                    LimitKind::Concurrency(max) => {
                        (Vec::new(), Some((*max, Arc::new(InFlight::default()))))
                    }
                };
                // The definition is part of the key: a changed one starts from fresh counters.
                let windows: Vec<String> = quotas
                    .iter()
                    .map(|q: &Quota| format!("{}/{}/{}", q.rate, q.per_s, q.burst))
                    .collect();
                let prefix = format!("ew:{}:{}:", config.name, windows.join(","));
                let policies = match &concurrency {
                    Some((max, _)) => vec![refusal::policy_field(&config.name, *max, 0)],
                    None => quotas
                        .iter()
                        .map(|q| refusal::policy_field(&config.name, q.rate, q.per_s))
                        .collect(),
                };
                Limit {
                    quotas,
                    concurrency,
                    store: Arc::new(LocalStore::new(shield.max_keys)),
                    redis: match (config.store, &redis) {
                        (LimitStore::Redis, Some(store)) => Some((store.clone(), prefix)),
                        _ => None,
                    },
                    name: Arc::from(config.name.as_str()),
                    policies,
                    allowed: counter("allowed"),
                    refused: counter("refused"),
                    shadow_refused: counter("shadow_refused"),
                    config: config.clone(),
                }
            })
            .collect();
        Ok(Shield {
            enabled: on,
            exempt: shield.exempt.clone(),
            max_keys: shield.max_keys,
            penalty,
            budget,
            connections,
            limits,
            redis,
        })
    }

    /// The route's limits, split by when their key is known; a name that is not a limit is an
    /// error (the configuration reader reports it first).
    pub fn resolve(&self, route: &RouteConfig) -> Result<RouteShield, Error> {
        let mut resolved = RouteShield {
            before: Vec::new(),
            after: Vec::new(),
            cost: route.limit_cost,
            stages: route.shield,
            route: route.name.clone(),
        };
        for name in &route.limits {
            let index = self
                .limits
                .iter()
                .position(|l| &l.config.name == name)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("routes.{}: unknown limit {name:?}", route.name),
                    )
                })?;
            if self.limits[index].config.key.before_auth() {
                resolved.before.push(index);
            } else {
                resolved.after.push(index);
            }
        }
        Ok(resolved)
    }

    /// Take over the serving generation's counters wherever the definition is the same (a mode
    /// change keeps them too), so a reload does not hand everyone a fresh burst.
    pub fn adopt(&mut self, serving: &Shield) {
        let same_size = self.max_keys == serving.max_keys;
        // The same Redis settings: keep the connection, its breaker and what it knows.
        if let (Some(new), Some(old)) = (&self.redis, &serving.redis)
            && new.config == old.config
        {
            let old = old.clone();
            for limit in &mut self.limits {
                if let Some((store, _)) = &mut limit.redis {
                    *store = old.clone();
                }
            }
            self.redis = Some(old);
        }
        for limit in &mut self.limits {
            let old = serving.limits.iter().find(|old| {
                let (a, b) = (&old.config, &limit.config);
                a.name == b.name && a.key == b.key && a.kind == b.kind
            });
            if let Some(old) = old.filter(|_| same_size) {
                limit.store = old.store.clone();
                limit.concurrency.clone_from(&old.concurrency);
            }
        }
        for (new, old) in [
            (&mut self.penalty, &serving.penalty),
            (&mut self.budget, &serving.budget),
            (&mut self.connections, &serving.connections),
        ] {
            if let (Some(new), Some(old)) = (new, old)
                && same_size
                && new.quota == old.quota
            {
                new.store = old.store.clone();
            }
        }
    }

    /// A new connection from `peer`, as the listener accepts it: within the address's rate of
    /// new connections (or exempt)? A refusal is counted; the listener drops the connection
    /// before reading from it, so it costs no TLS handshake.
    pub fn accept_connection(&self, peer: IpAddr) -> bool {
        let Some(stage) = &self.connections else {
            return true;
        };
        if self.is_exempt(Some(peer)) {
            return true;
        }
        let key = address_key(peer);
        match stage.store.check(key, &stage.quota, now_ns(), 1) {
            Verdict::Allow { .. } => true,
            Verdict::Deny { .. } => {
                stage.refused.inc();
                false
            }
        }
    }

    /// Before the token is read: the penalty box, then the limits keyed by address or route.
    pub async fn before_auth(
        &self,
        route: &RouteShield,
        client: Option<IpAddr>,
        permits: &mut Vec<Permit>,
    ) -> Result<(), Refusal> {
        let now = now_ns();
        let exempt = self.is_exempt(client);
        if let (Some(penalty), Some(ip), true) = (&self.penalty, client, route.stages && !exempt)
            && let Some(left) = penalty.store.boxed(address_key(ip), now)
        {
            return Err(penalty.refusal(left));
        }
        for &i in &route.before {
            let limit = &self.limits[i];
            let address = client.map(address);
            let value: &[&[u8]] = match (&limit.config.key, &address) {
                (LimitKey::ClientIp, _) if exempt => continue,
                (LimitKey::ClientIp, Some(address)) => &[address],
                (LimitKey::Route, _) => &[route.route.as_bytes()],
                _ => &[],
            };
            limit.decide(value, route.cost, permits).await?;
        }
        Ok(())
    }

    /// After verification: the limits keyed by the verified token's claims (`None`: no verified
    /// token) or by header values. A request without the key's value shares one bucket with
    /// every other such request, so leaving it out never escapes the limit.
    pub async fn after_auth(
        &self,
        route: &RouteShield,
        claims: Option<&Map<String, Value>>,
        req: &RequestHeader,
        permits: &mut Vec<Permit>,
    ) -> Result<(), Refusal> {
        if route.after.is_empty() {
            return Ok(());
        }
        for &i in &route.after {
            let limit = &self.limits[i];
            let text;
            let value: Vec<&[u8]> = match &limit.config.key {
                LimitKey::Claim(path) => match claims.and_then(|c| claim_at(c, path)) {
                    Some(Value::String(s)) => vec![s.as_bytes()],
                    Some(other) => {
                        text = other.to_string();
                        vec![text.as_bytes()]
                    }
                    None => Vec::new(),
                },
                LimitKey::Header(name) => req
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect(),
                // Known before authentication: checked there; or spent by policies.
                LimitKey::ClientIp | LimitKey::Route | LimitKey::Policy => continue,
            };
            limit.decide(&value, route.cost, permits).await?;
        }
        Ok(())
    }

    /// Spend `cost` of the `key = "policy"` limit `name` for a key a policy computed
    /// (`edgewarden.limit`); allowed, the quota of its first window. `None`: no such limit (the
    /// configuration reader rejects a policy that lists one, so a plugin asking for it is told so).
    pub async fn policy_limit(
        &self,
        name: &str,
        key: &[u8],
        cost: u64,
    ) -> Option<Result<(u64, u64), Refusal>> {
        let limit = self
            .limits
            .iter()
            .find(|l| l.config.key == LimitKey::Policy && *l.config.name == *name)?;
        let quota = limit.quotas.first().map_or((0, 0), |q| (q.rate, q.per_s));
        Some(
            limit
                .decide(&[key], cost, &mut Vec::new())
                .await
                .map(|()| quota),
        )
    }

    /// A failed authentication from `client` on a route the stages apply to.
    pub fn auth_failed(&self, route: &RouteShield, client: Option<IpAddr>) {
        let (Some(penalty), Some(ip)) = (&self.penalty, client) else {
            return;
        };
        if !route.stages || self.is_exempt(client) {
            return;
        }
        let key = address_key(ip);
        if penalty
            .store
            .fail(key, &penalty.quota, now_ns(), penalty.box_ns)
        {
            crate::metrics::get().penalty_boxed.inc();
            tracing::info!(client = %ip, "client address put in the penalty box");
        }
    }

    /// The verification budget of `client` on `route`, for the verifier to ask.
    pub fn budget(&self, route: &RouteShield, client: Option<IpAddr>) -> Budget<'_> {
        let stage = self
            .budget
            .as_ref()
            .filter(|_| route.stages && !self.is_exempt(client));
        Budget {
            stage: stage.and_then(|b| client.map(|ip| (b, address_key(ip)))),
            refusal: OnceLock::new(),
        }
    }

    fn is_exempt(&self, client: Option<IpAddr>) -> bool {
        !self.enabled
            || client.is_some_and(|ip| {
                let ip = ip.to_canonical();
                self.exempt.iter().any(|net| net.contains(&ip))
            })
    }
}

impl Limit {
    /// Spend `cost` for the key made of `value`'s parts (none: the request has no value); a
    /// concurrency limit's place goes to `permits`, held until the request ends.
    async fn decide(
        &self,
        value: &[&[u8]],
        cost: u64,
        permits: &mut Vec<Permit>,
    ) -> Result<(), Refusal> {
        if let Some((max, in_flight)) = &self.concurrency {
            let verdict = match in_flight.acquire(self.store.key(value), *max) {
                Some(permit) => {
                    permits.push(permit);
                    ALLOWED
                }
                None => Verdict::Deny {
                    retry_after_ns: NS,
                    reset_ns: NS,
                },
            };
            return self.count((verdict, 0));
        }
        let verdict = match &self.redis {
            Some((redis, prefix)) => {
                let key = redis_key(prefix, value);
                match redis.check(&key, &self.quotas, cost).await {
                    Ok(verdict) => verdict,
                    Err(e) => {
                        crate::metrics::get()
                            .redis_errors
                            .with_label_values(&[e.label()])
                            .inc();
                        match redis.config.on_store_error {
                            OnStoreError::Local => self.local(value, cost),
                            OnStoreError::Allow => return Ok(()),
                            OnStoreError::Deny => (
                                Verdict::Deny {
                                    retry_after_ns: NS,
                                    reset_ns: NS,
                                },
                                0,
                            ),
                        }
                    }
                }
            }
            None => self.local(value, cost),
        };
        self.count(verdict)
    }

    fn local(&self, value: &[&[u8]], cost: u64) -> (Verdict, usize) {
        self.store
            .check_all(self.store.key(value), &self.quotas, now_ns(), cost)
    }

    /// Count the verdict (and the window that gave it) and turn a refusal into the answer's.
    fn count(&self, (verdict, window): (Verdict, usize)) -> Result<(), Refusal> {
        match verdict {
            Verdict::Allow { .. } => {
                self.allowed.inc();
                Ok(())
            }
            Verdict::Deny { retry_after_ns, .. } if self.config.mode == LimitMode::Shadow => {
                self.shadow_refused.inc();
                tracing::info!(limit = %self.name, retry_after_ns, "shadow limit would refuse");
                Ok(())
            }
            Verdict::Deny { retry_after_ns, .. } => {
                self.refused.inc();
                let (rate, per_s) = match (&self.concurrency, self.quotas.get(window)) {
                    (Some((max, _)), _) => (*max, 0),
                    (None, Some(quota)) => (quota.rate, quota.per_s),
                    (None, None) => (0, 0),
                };
                // A concurrency limit refuses as window 0, its one field.
                let policy = self.policies.get(window);
                Err(Refusal {
                    stage: Stage::Limit,
                    limit: self.name.clone(),
                    rate,
                    per_s,
                    retry_after_s: ceil_secs(retry_after_ns).max(1),
                    policy: policy
                        .cloned()
                        .unwrap_or_else(|| refusal::policy_field(&self.name, rate, per_s)),
                })
            }
        }
    }
}

/// Signature checks a client address may still spend; asked by the verifier on a cache miss.
pub struct Budget<'a> {
    stage: Option<(&'a Builtin, u64)>,
    /// Set when a check was refused.
    refusal: OnceLock<Refusal>,
}

impl Budget<'_> {
    /// A budget that never refuses (no shield on the request).
    pub fn unlimited() -> Budget<'static> {
        Budget {
            stage: None,
            refusal: OnceLock::new(),
        }
    }

    /// Spend one signature check; `false`: refused (the refusal is kept for the answer).
    pub fn spend(&self) -> bool {
        let Some((stage, key)) = self.stage else {
            return true;
        };
        match stage.store.check(key, &stage.quota, now_ns(), 1) {
            Verdict::Allow { .. } => true,
            Verdict::Deny { retry_after_ns, .. } => {
                let _ = self.refusal.set(stage.refusal(retry_after_ns));
                false
            }
        }
    }

    /// The refusal of the last `spend` that returned `false`.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal.get().cloned()
    }
}

/// The Redis key of a value: the limit's prefix, then a digest of the value's parts (the same on
/// every replica, never the value itself).
fn redis_key(prefix: &str, parts: &[&[u8]]) -> String {
    use std::fmt::Write as _;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut key = String::with_capacity(prefix.len() + 32);
    key.push_str(prefix);
    for byte in &ctx.finish().as_ref()[..16] {
        // Writing to a String cannot fail.
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// The cell key of a client address in the built-in stages' stores (connections, penalty box,
/// verification budget), which hold nothing else: the address itself, not a hash, so two
/// addresses never share a cell. IPv4 is the low half of its IPv4-mapped IPv6 form, IPv6 the
/// /64 it is counted by (its high half); the two meet only for a /64 under `0:0:ffff::/48`,
/// reserved space no client is routed from. The stores' own map hashes keys with a random seed.
fn address_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => 0xffff_0000_0000 | u64::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64,
    }
}

/// The address a client is counted by: IPv4 as is, IPv6 by its /64.
fn address(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            octets
        }
    }
}

/// The claim at `path` (object keys, outermost first).
fn claim_at<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |value, key| value.as_object()?.get(key))
        .filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests;
