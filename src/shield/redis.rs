//! The Redis store of `store = "redis"` limits: one GCRA state per key shared by every replica.
//!
//! redis-rs (the `redis` crate, the most used Redis client for Rust, maintained under the
//! redis-rs organisation) with its `ConnectionManager`: one multiplexed connection that pipelines
//! every concurrent call and reconnects by itself. Each check is one atomic server-side script
//! (`EVALSHA`, loaded on first use) that reads Redis's own clock (`TIME`), so replicas with
//! drifting clocks still agree. Around it:
//! - a deadline on every call (`timeout_ms`), past which `on_store_error` decides;
//! - a circuit breaker (`breaker`): after repeated failures, calls skip Redis for a while;
//! - keys Redis said are over their limit are refused locally until their retry time, without a
//!   round trip (a flood from one client costs Redis one call per retry period).
//!
//! `rediss://` URLs speak TLS (redis-rs over rustls, the process's ring provider): the server's
//! certificate is always verified for the URL's host, against the system's roots or `ca_file`,
//! with an optional client certificate.
//!
//! Keys are `ew:{limit}:{rate}:{per_s}:{burst}:{digest}`, the digest a SHA-256 of the key's value
//! (the same on every replica, and never the client's data in clear); a changed definition starts
//! from fresh counters, like a local limit.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::breaker::{Breaker, Gate};
use super::gcra::{Quota, Verdict};
use crate::config::RedisConfig;
use crate::error::{Error, ErrorKind};

/// GCRA in microseconds on Redis's clock, over one or more windows: KEYS[i] is window i's key,
/// ARGV[1] the cost, then each window's interval and tolerance. Either every window allows the
/// request and each stores its new TAT (with an expiry), returning {1, remaining, reset, i} for
/// the window with the fewest left, or nothing is stored and it returns {0, retry_after, reset,
/// i} for the window that makes the request wait longest.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local news = {}
local allow = {1, -1, 0, 0}
local deny = nil
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new = tat + interval * cost
  local ahead = new - now
  if ahead <= tolerance then
    news[i] = {new, ahead}
    local left = math.floor((tolerance - ahead) / interval)
    if allow[2] < 0 or left < allow[2] then allow = {1, left, ahead, i - 1} end
  elseif deny == nil or ahead - tolerance > deny[2] then
    deny = {0, ahead - tolerance, tat - now, i - 1}
  end
end
if deny ~= nil then return deny end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', news[i][1]), 'PX', math.ceil(news[i][2] / 1000) + 1000)
end
return allow
";

/// Why a call did not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    Timeout,
    Failed,
    /// The breaker is open: Redis was not asked.
    BreakerOpen,
}

impl StoreError {
    pub fn label(self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::Failed => "error",
            StoreError::BreakerOpen => "breaker_open",
        }
    }
}

pub struct RedisStore {
    pub config: RedisConfig,
    client: redis::Client,
    /// Made on first use, inside the runtime that serves requests.
    connection: OnceLock<ConnectionManager>,
    script: redis::Script,
    breaker: Breaker,
    /// Keys Redis refused, until their retry time (shield clock).
    over: Cache<u64, u64>,
    hasher: RandomState,
}

impl RedisStore {
    pub fn new(config: &RedisConfig, max_keys: usize) -> Result<RedisStore, Error> {
        let client = match &config.tls {
            None => redis::Client::open(config.url.as_str()),
            Some(tls) => {
                // rustls's provider for the process: the one Pingora's listeners use.
                pingora::tls::install_default_crypto_provider();
                let read = |path: &std::path::Path| {
                    std::fs::read(path).map_err(|e| {
                        Error::because(ErrorKind::Config, format!("redis: {}", path.display()), e)
                    })
                };
                let client_tls = match &tls.client {
                    Some(files) => Some(redis::ClientTlsConfig {
                        client_cert: read(&files.cert)?,
                        client_key: read(&files.key)?,
                    }),
                    None => None,
                };
                let root_cert = tls.ca_file.as_deref().map(read).transpose()?;
                redis::Client::build_with_tls(
                    config.url.as_str(),
                    redis::TlsCertificates {
                        client_tls,
                        root_cert,
                    },
                )
            }
        }
        .map_err(|e| Error::because(ErrorKind::Config, "redis.url", e))?;
        Ok(RedisStore {
            config: config.clone(),
            client,
            connection: OnceLock::new(),
            script: redis::Script::new(GCRA),
            breaker: Breaker::new(
                config.breaker_failures,
                config.breaker_open_ms.saturating_mul(1_000_000),
            ),
            over: Cache::new(max_keys.max(1)),
            hasher: RandomState::new(),
        })
    }

    /// Decide a request of `cost` in every window of `quotas` for `key` (a full Redis key, one
    /// per window is derived from it), or say why Redis could not. Returns the verdict and the
    /// index of the window that decided it.
    pub async fn check(
        &self,
        key: &str,
        quotas: &[Quota],
        cost: u64,
    ) -> Result<(Verdict, usize), StoreError> {
        let now = super::now_ns();
        let local = self.hasher.hash_one(key);
        if let Some(until) = self.over.peek(&local) {
            if until > now {
                let verdict = Verdict::Deny {
                    retry_after_ns: until - now,
                    reset_ns: until - now,
                };
                return Ok((verdict, 0));
            }
            self.over.remove(&local);
        }
        if self.breaker.gate(now) == Gate::Open {
            return Err(StoreError::BreakerOpen);
        }
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout(), self.call(key, quotas, cost)).await;
        let m = crate::metrics::get();
        m.redis_duration.observe(started.elapsed().as_secs_f64());
        let verdict = match answer {
            Ok(Ok(verdict)) => {
                self.breaker.succeeded();
                m.redis_breaker_open.set(0);
                verdict
            }
            Ok(Err(e)) => return Err(self.failed(StoreError::Failed, Some(&e))),
            Err(_) => return Err(self.failed(StoreError::Timeout, None)),
        };
        if let (Verdict::Deny { retry_after_ns, .. }, _) = verdict {
            self.over.insert(local, now.saturating_add(retry_after_ns));
        }
        Ok(verdict)
    }

    fn failed(&self, why: StoreError, error: Option<&redis::RedisError>) -> StoreError {
        if self.breaker.failed(super::now_ns()) {
            crate::metrics::get().redis_breaker_open.set(1);
            tracing::warn!(reason = why.label(), error = ?error.map(ToString::to_string), "redis circuit breaker open");
        }
        why
    }

    async fn call(
        &self,
        key: &str,
        quotas: &[Quota],
        cost: u64,
    ) -> redis::RedisResult<(Verdict, usize)> {
        let mut connection = self.connection()?;
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(cost);
        for (i, quota) in quotas.iter().enumerate() {
            let (interval_us, tolerance_us) = quota.micros();
            invocation
                .key(format!("{key}:{i}"))
                .arg(interval_us)
                .arg(tolerance_us);
        }
        let (allowed, value, reset, window): (u8, u64, u64, usize) =
            invocation.invoke_async(&mut connection).await?;
        let verdict = if allowed == 1 {
            Verdict::Allow {
                tat: 0,
                remaining: value,
                reset_ns: reset.saturating_mul(1000),
            }
        } else {
            Verdict::Deny {
                retry_after_ns: value.saturating_mul(1000),
                reset_ns: reset.saturating_mul(1000),
            }
        };
        Ok((verdict, window))
    }

    fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout().max(Duration::from_millis(100))))
            // The call's own deadline (`check`) decides; this only bounds how long the
            // connection keeps an abandoned call's slot.
            .set_response_timeout(Some(self.timeout() * 10))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let made = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        // Two first calls may race: one manager is kept, the other dropped unused.
        Ok(self.connection.get_or_init(|| made).clone())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }
}
