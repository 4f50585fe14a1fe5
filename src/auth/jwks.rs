//! An issuer's current keys: loaded once from a file or PEM, or fetched from a JWKS URL (given, or
//! found by OpenID Connect discovery: `discovery`) and kept fresh in the background.
//!
//! Readers never wait: the key set is swapped atomically, and with it its generation (the number
//! cached verifications are checked against), so a reader always gets keys together with their own
//! generation ([`IssuerKeys::snapshot`]) and can never pair old keys with a newer generation.
//!
//! The request path fetches only in one case, a token whose `kid` is not in the set, and then at
//! most once per `unknown_kid_cooldown_s` across all requests (single flight: concurrent requests
//! for the same new kid share one fetch); kids that were still unknown after a fetch are remembered
//! until the next successful refresh. A failed or empty fetch never replaces good keys; they are
//! served until `max_stale_s` past their refresh time, after which the issuer fails closed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Mutex;

use super::demo_key;
use super::keys::KeySet;
use crate::config::DemoKey;
use crate::config::{IssuerConfig, KeySource};
use crate::error::{Error, ErrorKind, OrErr};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Largest provider metadata document accepted (real ones are a few KiB).
const MAX_METADATA_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds for a `Cache-Control: max-age` hint.
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Wait before retrying a failed fetch (capped by the refresh interval).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
const MAX_NEGATIVE_KIDS: usize = 4096;

/// A loaded key set, its generation and until when it may be used: swapped in as one value.
struct Loaded {
    keys: Arc<KeySet>,
    generation: u64,
    /// `None`: never expires (file and PEM keys).
    usable_until: Option<Instant>,
    loaded_at: Instant,
}

pub struct IssuerKeys {
    name: String,
    /// The issuer's `iss`, for messages.
    iss: String,
    /// Whether a key set holding the repository's public demo key may be used.
    demo_key: DemoKey,
    /// Where the keys are fetched from, for fetched keys.
    remote: Option<Remote>,
    refresh_interval: Duration,
    max_stale: Duration,
    cooldown: Duration,
    current: ArcSwap<Option<Loaded>>,
    client: Option<reqwest::Client>,
    on_demand: Mutex<OnDemand>,
    fetches: AtomicU64,
}

/// Usable keys and the generation they were loaded as, read together.
#[derive(Clone)]
pub struct Snapshot {
    pub keys: Arc<KeySet>,
    /// Changes whenever the key set is replaced; never 0.
    pub generation: u64,
}

/// Generations are numbered process-wide, so a number is never reused, not even by another
/// issuer's keys adopted on reload. 0 stands for "no usable keys".
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn new_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// A fetched key source.
enum Remote {
    Jwks(String),
    /// The provider metadata's URL: each fetch reads it, then the `jwks_uri` it names.
    Discovery(String),
}

#[derive(Default)]
struct OnDemand {
    last_fetch: Option<Instant>,
    unknown: HashSet<String>,
}

impl IssuerKeys {
    /// File and PEM keys load now (an error here is a configuration error); URL keys start empty.
    /// A set holding the repository's public demo key is refused unless `demo_key` allows it.
    pub fn new(config: &IssuerConfig, demo_key: DemoKey) -> Result<Arc<IssuerKeys>, Error> {
        let refuse_demo = |keys: KeySet| match demo_key {
            DemoKey::Refuse if demo_key::holds_demo_key(&keys) => Err(Error::new(
                ErrorKind::Keys,
                demo_key::refusal(&config.name, &config.issuer),
            )),
            _ => Ok(keys),
        };
        let (remote, loaded) = match &config.keys {
            KeySource::JwksUrl(url) => (Some(Remote::Jwks(url.clone())), None),
            KeySource::Discovery(url) => (Some(Remote::Discovery(url.clone())), None),
            KeySource::JwksFile(path) => {
                let bytes = std::fs::read(path)
                    .or_err_with(ErrorKind::Keys, || path.display().to_string())?;
                let keys = KeySet::from_jwks(&bytes)
                    .and_then(refuse_demo)
                    .map_err(|e| e.within(path.display().to_string()))?;
                (None, Some(keys))
            }
            KeySource::PublicKeyPem(pem) => {
                (None, Some(KeySet::from_pem(pem).and_then(refuse_demo)?))
            }
        };
        let client = match &remote {
            None => None,
            Some(_) => Some(
                reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .or_err(ErrorKind::Jwks, "HTTP client")?,
            ),
        };
        let current = loaded.map(|keys| Loaded {
            keys: Arc::new(keys),
            generation: new_generation(),
            usable_until: None,
            loaded_at: Instant::now(),
        });
        Ok(Arc::new(IssuerKeys {
            name: config.name.to_string(),
            iss: config.issuer.clone(),
            demo_key,
            remote,
            refresh_interval: Duration::from_secs(config.refresh_interval_s),
            max_stale: Duration::from_secs(config.max_stale_s),
            cooldown: Duration::from_secs(config.unknown_kid_cooldown_s),
            current: ArcSwap::from_pointee(current),
            client,
            on_demand: Mutex::new(OnDemand::default()),
            fetches: AtomicU64::new(0),
        }))
    }

    /// The usable keys with their generation, from one read of the current set; `None` when none
    /// were ever loaded or they went stale.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let guard = self.current.load();
        let loaded = guard.as_ref().as_ref()?;
        match loaded.usable_until {
            Some(until) if Instant::now() > until => None,
            _ => Some(Snapshot {
                keys: loaded.keys.clone(),
                generation: loaded.generation,
            }),
        }
    }

    /// The usable keys, or `None` when none were ever loaded or they went stale.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.snapshot().map(|s| s.keys)
    }

    /// The generation while the keys are usable, `0` once they are gone or stale (so no cached
    /// verification outlives the keys it was made with).
    pub fn usable_generation(&self) -> u64 {
        self.snapshot().map_or(0, |s| s.generation)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serve `other`'s current keys (a reload whose first fetch failed keeps the serving keys),
    /// with their generation: numbers are process-wide, so it is new to this issuer.
    pub fn adopt(&self, other: &IssuerKeys) {
        if self.current().is_none() {
            self.current.store(other.current.load_full());
        }
    }

    /// The number of usable keys and how long ago they were loaded (metrics).
    pub fn status(&self) -> (usize, Option<Duration>) {
        let guard = self.current.load();
        let age = guard.as_ref().as_ref().map(|l| l.loaded_at.elapsed());
        (self.current().map_or(0, |keys| keys.len()), age)
    }

    /// Number of JWKS fetches made so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.current().is_some_and(|keys| keys.has_kid(kid))
    }

    /// Fetch the JWKS once; on success swap it in and return when to refresh next.
    pub async fn refresh(&self) -> Result<Duration, Error> {
        let next = self.fetch_and_swap().await?;
        self.on_demand.lock().await.unknown.clear();
        Ok(next)
    }

    async fn fetch_and_swap(&self) -> Result<Duration, Error> {
        let (Some(remote), Some(client)) = (&self.remote, &self.client) else {
            return Ok(self.refresh_interval);
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match remote {
            Remote::Jwks(url) => self.fetch(url, client).await,
            Remote::Discovery(metadata) => match discover(metadata, &self.iss, client).await {
                Ok(jwks_uri) => self.fetch(&jwks_uri, client).await,
                Err(e) => Err(e),
            },
        };
        let label = if result.is_ok() { "ok" } else { "error" };
        crate::metrics::get()
            .jwks_refresh
            .with_label_values(&[self.name.as_str(), label])
            .inc();
        result
    }

    async fn fetch(&self, url: &str, client: &reqwest::Client) -> Result<Duration, Error> {
        let (body, max_age) = get(client, url, MAX_JWKS_BYTES, "JWKS").await?;
        let keys = KeySet::from_jwks(&body)?;
        if self.demo_key == DemoKey::Refuse && demo_key::holds_demo_key(&keys) {
            return Err(Error::new(
                ErrorKind::Keys,
                demo_key::refusal(&self.name, &self.iss),
            ));
        }
        let next = match max_age {
            Some(age) => age.clamp(
                MIN_REFRESH.min(self.refresh_interval),
                self.refresh_interval,
            ),
            None => self.refresh_interval,
        };
        let count = keys.len();
        self.install(keys, Some(Instant::now() + next + self.max_stale));
        tracing::info!(issuer = %self.name, keys = count, "JWKS loaded");
        Ok(next)
    }

    /// Replace the key set and its generation in one swap.
    fn install(&self, keys: KeySet, usable_until: Option<Instant>) {
        self.current.store(Arc::new(Some(Loaded {
            keys: Arc::new(keys),
            generation: new_generation(),
            usable_until,
            loaded_at: Instant::now(),
        })));
    }

    /// Swap in `keys` as a refresh does (test seam: a refresh at a chosen moment).
    #[cfg(test)]
    pub(crate) fn replace_for_test(&self, keys: KeySet) {
        self.install(keys, None);
    }

    /// Called for a token whose `kid` is not in the current set. Returns whether it is known now.
    pub async fn refetch_for_kid(&self, kid: &str) -> bool {
        if self.remote.is_none() {
            return false;
        }
        let mut state = self.on_demand.lock().await;
        if self.has_kid(kid) {
            return true;
        }
        let recent = state
            .last_fetch
            .is_some_and(|t| t.elapsed() < self.cooldown);
        if recent || state.unknown.contains(kid) {
            return false;
        }
        state.last_fetch = Some(Instant::now());
        // The lock stays held during the fetch: concurrent requests for this kid wait for it
        // instead of fetching again.
        match self.fetch_and_swap().await {
            Ok(_) => state.unknown.clear(),
            Err(e) => {
                tracing::warn!(issuer = %self.name, error = %e, "JWKS fetch for an unknown kid failed")
            }
        }
        let known = self.has_kid(kid);
        if !known {
            if state.unknown.len() >= MAX_NEGATIVE_KIDS {
                state.unknown.clear();
            }
            state.unknown.insert(kid.to_string());
        }
        known
    }
}

/// Keeps one URL issuer's keys fresh until shutdown.
pub struct Refresher(pub Arc<IssuerKeys>);

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let keys = &self.0;
        loop {
            let wait = match keys.refresh().await {
                Ok(next) => next,
                Err(e) if keys.snapshot().is_some() => {
                    tracing::warn!(issuer = %keys.name, error = %e, "JWKS refresh failed; keeping the last good keys");
                    RETRY_AFTER_FAILURE.min(keys.refresh_interval)
                }
                Err(e) => {
                    tracing::warn!(issuer = %keys.name, error = %e, "JWKS fetch failed and no usable keys remain (none loaded yet, or stale past max_stale_s); the issuer's routes answer 503");
                    RETRY_AFTER_FAILURE.min(keys.refresh_interval)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// GET `url` (200 only, at most `max` bytes): the body and the `Cache-Control` max-age.
async fn get(
    client: &reqwest::Client,
    url: &str,
    max: usize,
    what: &str,
) -> Result<(Vec<u8>, Option<Duration>), Error> {
    let mut response = client
        .get(url)
        .send()
        .await
        .or_err_with(ErrorKind::Jwks, || format!("fetch {what}"))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(Error::new(
            ErrorKind::Jwks,
            format!("fetch {what}: HTTP {}", response.status()),
        ));
    }
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_max_age);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .or_err_with(ErrorKind::Jwks, || format!("read {what}"))?
    {
        if body.len() + chunk.len() > max {
            return Err(Error::new(
                ErrorKind::Jwks,
                format!("{what} larger than {max} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// The fields of OpenID Provider metadata the gateway reads.
#[derive(serde::Deserialize)]
struct ProviderMetadata {
    issuer: String,
    jwks_uri: String,
}

/// Read the provider metadata at `url` and return its `jwks_uri`, once its `issuer` is exactly
/// `iss` (OpenID Connect Discovery 1.0 §4.3: otherwise the metadata is not the issuer's) and the
/// URI follows the rules of `jwks_url` (https; plain http only to loopback, and only from
/// metadata fetched over plain http).
async fn discover(url: &str, iss: &str, client: &reqwest::Client) -> Result<String, Error> {
    let (body, _) = get(client, url, MAX_METADATA_BYTES, "provider metadata").await?;
    let metadata: ProviderMetadata = serde_json::from_slice(&body).map_err(|e| {
        Error::new(
            ErrorKind::Jwks,
            format!("provider metadata at {url} is not OpenID Provider metadata with issuer and jwks_uri: {e}"),
        )
    })?;
    if metadata.issuer != iss {
        return Err(Error::new(
            ErrorKind::Jwks,
            format!(
                "provider metadata at {url} names issuer {:?}, not {iss:?} (OpenID Connect Discovery §4.3): its keys are not used",
                metadata.issuer
            ),
        ));
    }
    let jwks_uri = metadata.jwks_uri;
    let downgrade = url.starts_with("https:") && !jwks_uri.starts_with("https:");
    if downgrade {
        return Err(Error::new(
            ErrorKind::Jwks,
            format!("provider metadata at {url} names a jwks_uri that is not https: {jwks_uri:?}"),
        ));
    }
    crate::config::check_key_url(&jwks_uri)
        .map_err(|e| e.within(format!("jwks_uri of the provider metadata at {url}")))?;
    Ok(jwks_uri)
}

fn parse_max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        value
            .trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_max_age("Max-Age=\"60\""),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_max_age("no-cache"), None);
        assert_eq!(parse_max_age("max-age=soon"), None);
    }
}
