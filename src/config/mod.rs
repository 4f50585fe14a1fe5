//! Gateway configuration: the TOML file format, its strict validation and the typed result.
//!
//! The file is read once and checked completely: every problem is reported with the file and the
//! key path, and nothing starts unless the whole file is valid. Relative paths resolve against the
//! directory that holds the file. Key names are the public contract documented in
//! `config/edgewarden.toml`.

mod admin;
mod cors;
pub use cors::{AllowedOrigin, CorsConfig};
mod geo;
mod issuers;
mod limits;
pub mod names;
pub use names::Name;
mod observe;
mod otel;
mod policies;
mod reader;
mod routes;
pub mod tls;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::Method;

pub use admin::{AdminAccess, AdminToken, AdminTokenError, MIN_ADMIN_TOKEN};
pub use issuers::check_key_url;
pub use reader::Problems;

/// Whether the repository's public demo key (`config/demo/`, recognised by `auth::demo_key`) may
/// be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoKey {
    /// A key set holding it is refused like an invalid one (the default).
    #[default]
    Refuse,
    /// `edgewarden-dev demo`, or `run`/`check` with `--allow-demo-key`.
    Allow,
}

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration came from.
    pub source: PathBuf,
    pub server: ServerConfig,
    pub origins: Vec<OriginConfig>,
    pub routes: Vec<RouteConfig>,
    pub issuers: Vec<IssuerConfig>,
    /// Every policy some route names, read from `policies_dir`, once each.
    pub policies: Vec<PolicyConfig>,
    /// `[geo]`: present when the gateway decides the client's country.
    pub geo: Option<GeoConfig>,
    /// `[access_log]`.
    pub access_log: AccessLogConfig,
    /// `[[limits]]`: named rate limits, applied by the routes that list them.
    pub limits: Vec<LimitConfig>,
    /// `[shield]`: the stages before a token is verified.
    pub shield: ShieldConfig,
    /// `[redis]`: present when some limit uses `store = "redis"`.
    pub redis: Option<RedisConfig>,
    /// `[tracing]`: OpenTelemetry traces over OTLP/HTTP. Absent: no traces, and a client's
    /// `traceparent` passes through untouched.
    pub tracing: Option<TracingConfig>,
    /// Whether the repository's public demo key may be trusted. Never set by the file: `Refuse`
    /// unless the command line says otherwise (`edgewarden-dev demo`, `--allow-demo-key`); a
    /// reload keeps what the process started with.
    pub demo_key: DemoKey,
}

/// One `[[limits]]` entry, per key: rate windows, or requests in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConfig {
    pub name: Name,
    pub key: LimitKey,
    pub kind: LimitKind,
    pub mode: LimitMode,
    pub store: LimitStore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKind {
    /// Every window must allow the request (GCRA each): `rate`/`per_s`/`burst`, then `windows`.
    Rate(Vec<Window>),
    /// At most this many requests of one key in flight at once (`concurrency`).
    Concurrency(u64),
}

/// `rate` requests per `per_s` seconds, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub rate: u64,
    pub per_s: u64,
    pub burst: u64,
}

/// The most windows one limit may have.
pub const MAX_WINDOWS: usize = 4;

/// Where a limit's counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStore {
    /// In this replica's memory.
    Local,
    /// In `[redis]`, shared by every replica that uses it.
    Redis,
}

/// `[redis]`: the shared store of `store = "redis"` limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// With `rediss://`: what the server's certificate is verified against, and the client's.
    pub tls: Option<RedisTls>,
    /// Every call's deadline; past it, `on_store_error` decides.
    pub timeout_ms: u64,
    pub on_store_error: OnStoreError,
    /// Failed calls in a row that open the circuit breaker (calls skip Redis while it is open).
    pub breaker_failures: u64,
    /// How long the breaker stays open before one call tries Redis again.
    pub breaker_open_ms: u64,
}

/// TLS to Redis: the server's certificate is always verified, for the URL's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM CA certificates instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key (PEM), for servers that ask for one (Redis's
    /// default `tls-auth-clients yes`).
    pub client: Option<TlsFiles>,
}

/// What a `store = "redis"` limit does when Redis does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Decide with this replica's own counters.
    Local,
    Allow,
    Deny,
}

/// What a limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client address (IPv6 grouped by /64). Checked before the token.
    ClientIp,
    /// The route: one budget for everyone. Checked before the token.
    Route,
    /// A claim of the verified token (path segments for nesting). Checked after verification.
    Claim(Vec<String>),
    /// A request header's value (lower-case name). Checked after verification.
    Header(String),
    /// A value a policy computes and passes to `edgewarden.limit`: spent by the policies whose
    /// file lists the limit, never by a route.
    Policy,
}

impl LimitKey {
    /// Whether the key is known before the token is verified.
    pub fn before_auth(&self) -> bool {
        matches!(self, LimitKey::ClientIp | LimitKey::Route)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    Enforce,
    /// Count and log what would be refused; refuse nothing.
    Shadow,
}

/// `[shield]`: cheap refusals before signature work, on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShieldConfig {
    pub enabled: bool,
    /// Client networks no shield stage applies to.
    pub exempt: Vec<ipnet::IpNet>,
    /// Keys each local limit store (and the penalty box, and the budget) keeps at most.
    pub max_keys: usize,
    /// A client address with this many failed authentications within `penalty_window_s` is
    /// refused (429) for `penalty_s` without its token being read (0: off).
    pub penalty_failures: u64,
    pub penalty_window_s: u64,
    pub penalty_s: u64,
    /// Signature checks per second per client address on a verified-token cache miss (0: off).
    pub verify_per_s: u64,
    pub verify_burst: u64,
    /// Tokens whose signature failed, remembered (by a keyed hash) for `negative_cache_ttl_s` or
    /// until their issuer's keys change (0: off).
    pub negative_cache_entries: usize,
    pub negative_cache_ttl_s: u64,
    /// New connections per second per client address, checked as each is accepted, before its
    /// TLS handshake (0, the default: off; a client that does not keep its connections alive,
    /// such as a load generator, would meet it).
    pub connections_per_s: u64,
    pub connections_burst: u64,
}

impl Default for ShieldConfig {
    fn default() -> Self {
        ShieldConfig {
            enabled: true,
            exempt: Vec::new(),
            max_keys: 100_000,
            penalty_failures: 50,
            penalty_window_s: 60,
            penalty_s: 60,
            verify_per_s: 100,
            verify_burst: 200,
            negative_cache_entries: 10_000,
            negative_cache_ttl_s: 60,
            connections_per_s: 0,
            connections_burst: 400,
        }
    }
}

/// `[tracing]`: W3C Trace Context at the edge and OTLP/HTTP export (`otel`).
#[derive(Debug, Clone)]
pub struct TracingConfig {
    pub enabled: bool,
    /// The collector's traces URL (`/v1/traces` added to an endpoint given without a path).
    pub endpoint: String,
    pub protocol: TraceProtocol,
    /// New traces kept, of those the gateway starts (a route may set its own).
    pub sample_ratio: f64,
    /// Whose `traceparent` becomes the parent of the gateway's span.
    pub trust_incoming: TraceTrust,
    pub service_name: String,
    /// Requests at least this slow are kept whatever the sampler said.
    pub slow_ms: Option<u64>,
    /// Traces of requests the gateway refused (4xx), kept at most this many per second.
    pub rejected_per_s: u64,
    /// Finished spans waiting for export; past this, spans are dropped (and counted).
    pub queue_spans: usize,
    pub batch_spans: usize,
    pub export_timeout_ms: u64,
    /// Sent with every export (e.g. a collector's API key).
    pub headers: Vec<(String, String)>,
}

/// OTLP/HTTP's two encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceProtocol {
    Protobuf,
    Json,
}

/// `trust_incoming`: from whom a `traceparent` is continued rather than only linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceTrust {
    /// Peers in `server.trusted_proxies`.
    TrustedProxies,
    Never,
    Always,
}

/// One JSON line per request on standard output. Off unless the file has `[access_log]`.
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// Log one request in this many (rejections and errors included unless `errors_only`).
    pub sample_one_in: u64,
    /// Only requests the gateway rejected or that failed (sampling does not apply to them).
    pub errors_only: bool,
    /// Log the query string (values of a route's `query:NAME` token sources are redacted).
    pub query: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: false,
            sample_one_in: 1,
            errors_only: false,
            query: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GeoConfig {
    /// A MaxMind-format country (or city) database, looked up on the client IP.
    pub mmdb: Option<PathBuf>,
    /// A CDN's country header (lower case), honoured only from trusted proxies.
    pub country_header: Option<String>,
    /// The header the gateway sets to the decided country (lower case).
    pub header: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Every proxy listener, TLS or not.
    pub listen: Vec<SocketAddr>,
    /// The listeners of `listen` that terminate TLS (HTTP/2 offered by ALPN), with their files.
    pub tls_listeners: Vec<(SocketAddr, ListenerTls)>,
    pub admin_listen: Option<SocketAddr>,
    /// `admin_token_file`, read: the credential `POST /drain` and `POST /drain/cancel` require.
    /// Without it those endpoints answer 403.
    pub admin_token: Option<AdminToken>,
    pub threads: usize,
    /// Let idle worker threads take tasks from busy ones (one shared runtime) instead of one
    /// runtime per thread with connections spread at random.
    pub work_stealing: bool,
    /// Threads for plugin calls that run long (past half a millisecond) and for building plugin
    /// instances, at a lower priority (nice 10); each policy may have this many long calls at once.
    pub plugin_lane_threads: usize,
    /// Their nice value (0 to 19; 0: the workers' priority).
    pub plugin_lane_nice: i32,
    /// Threads that check token signatures (the signature lane), at a lower priority (nice 10),
    /// so that a flood of tokens to verify never holds the worker threads; 0: on the workers.
    pub signature_threads: usize,
    /// Their nice value (0 to 19).
    pub signature_nice: i32,
    pub shutdown_grace_s: u64,
    /// After the grace, how long Pingora waits for its services to stop before exiting.
    pub shutdown_timeout_s: u64,
    /// `POST /drain` on the admin listener: readiness fails at once, and the answer comes after
    /// this many seconds of serving as usual (a Kubernetes preStop hook waits for it).
    pub drain_s: u64,
    /// Reload when the configuration's files change, checked this often (0: only on SIGHUP).
    pub watch_interval_s: u64,
    pub policies_dir: PathBuf,
    pub plugins_dir: PathBuf,
    /// Built and precompiled plugins, by content hash.
    pub plugin_cache_dir: PathBuf,
    /// The componentize-py that builds plugins, when the file names one.
    pub componentize_py: Option<PathBuf>,
    /// Tokens longer than this are rejected before any parsing.
    pub max_token_bytes: usize,
    /// Verified-token cache bounds; `token_cache_entries = 0` turns the cache off.
    pub token_cache_entries: usize,
    pub token_cache_bytes: usize,
    /// Header names (lower case; a trailing `*` matches a prefix) that only the gateway may set.
    pub reserved_headers: Vec<String>,
    /// Peers whose `X-Forwarded-For`, `Forwarded`, `X-Real-IP` and country headers are believed
    /// (and passed on); from any other peer they are removed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Remove every request header whose name holds `_` (NGINX's default); otherwise only those
    /// that, with `_` read as `-`, name a header the gateway owns.
    pub drop_underscore_headers: bool,
    /// A request carrying this value in `x-edgewarden-trace-key` gets the decision trace header.
    pub trace_secret: Option<String>,
}

/// A certificate chain and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A TLS listener's certificates: the default, and those chosen by the name a client asks for
/// (SNI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub default: TlsFiles,
    pub sni: Vec<SniCertificate>,
}

impl ListenerTls {
    /// Every certificate's files: the default first, then the SNI ones in order.
    pub fn files(&self) -> impl Iterator<Item = &TlsFiles> {
        std::iter::once(&self.default).chain(self.sni.iter().map(|c| &c.files))
    }
}

/// A certificate served to clients asking for one of `names`: exact host names, or `*.domain`
/// for any single label under `domain` (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    pub names: Vec<String>,
    pub files: TlsFiles,
}

#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub name: Name,
    /// `host:port` as written; resolved to addresses in `addresses`.
    pub upstreams: Vec<String>,
    pub addresses: Vec<SocketAddr>,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
    pub tls: bool,
    /// The name the origin's certificate is verified against (and sent as SNI).
    pub sni: String,
    /// CA certificates the origin's certificate must chain to, instead of the system's.
    pub ca_file: Option<PathBuf>,
    pub health_check: Option<HealthCheckConfig>,
    /// How many more upstreams a request may be tried on when an attempt fails before anything
    /// was sent (a refused connect, or a reused connection found dead by a body-less idempotent
    /// request).
    pub retries: u32,
    /// `None`: passive health is off for this origin.
    pub passive_health: Option<PassiveHealthConfig>,
}

/// Passive health (outlier detection): an upstream whose real requests keep failing is taken out
/// of the rotation for a while, longer each time it is taken out again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveHealthConfig {
    /// Failures in a row (connect errors, timeouts, unreadable answers, 502/503/504) that take an
    /// upstream out.
    pub consecutive_failures: u32,
    /// How long the first time; doubled each time it is taken out again, up to `max_eject_s`.
    pub eject_s: u64,
    pub max_eject_s: u64,
    /// At most this share of the origin's upstreams is out at once (at least one, never all).
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// `None`: a TCP connect check. `Some(path)`: an HTTP GET that must answer 2xx.
    pub path: Option<String>,
    pub interval_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    Off,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: Name,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    pub path_prefix: String,
    /// `None` allows every method.
    pub methods: Option<Vec<Method>>,
    pub origin: Name,
    pub auth: AuthMode,
    /// Policies in order; shadow ones run but are never enforced.
    pub policies: Vec<RoutePolicy>,
    /// Every response on this route carries the decision trace header.
    pub debug_trace: bool,
    /// `trace_sample_ratio`: this route's ratio of new traces kept, instead of `[tracing]`'s.
    pub trace_sample_ratio: Option<f64>,
    /// Names of `[[issuers]]` whose tokens this route accepts.
    pub issuers: Vec<Name>,
    /// Scopes the token must carry (`scope` space-separated or `scp` array).
    pub required_scopes: Vec<String>,
    pub token_from: Vec<TokenSource>,
    /// Keep the client's `Authorization` header when forwarding (removed by default).
    pub forward_authorization: bool,
    /// Accept `;` parameters in path segments (matrix parameters); the route is matched on the
    /// path without them and the origin receives them. Refused (400) by default.
    pub allow_path_parameters: bool,
    /// Match `path_prefix` ignoring ASCII case, for origins that fold case (IIS/ASP.NET).
    pub case_insensitive: bool,
    /// `[[limits]]` this route applies, in order.
    pub limits: Vec<Name>,
    /// What one request spends of each of the route's limits.
    pub limit_cost: u64,
    /// `shield = false`: no penalty box or verification budget on this route.
    pub shield: bool,
    /// `cors = { ... }`: browsers on these web origins may call the route; preflights are answered
    /// at the edge.
    pub cors: Option<CorsConfig>,
    /// Bounds on the request itself; all off by default.
    pub request_limits: RequestLimits,
}

/// A route's bounds on the request: its header fields, its body's size and how long the body may
/// take to arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestLimits {
    /// `max_header_bytes`: names, values and line framing of the header fields (431 beyond).
    pub max_header_bytes: Option<usize>,
    /// `max_body_bytes`: 413 for a larger Content-Length before the body is read; a chunked body
    /// is counted as it streams and cut at the limit.
    pub max_body_bytes: Option<u64>,
    /// `body_timeout_ms`: the whole body must arrive within this of the request head (408).
    pub body_timeout: Option<std::time::Duration>,
}

impl RequestLimits {
    pub fn any(&self) -> bool {
        *self != RequestLimits::default()
    }
}

/// A route's use of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    pub name: Name,
    /// `mode = "shadow"`: its decision is counted and logged, never applied.
    pub shadow: bool,
}

/// Where a route looks for the bearer token, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (scheme case-insensitive).
    Header,
    Cookie(String),
    Query(String),
}

/// What happens when a plugin fails (trap, timeout, memory cap, invalid output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Answer 503.
    Deny,
    /// Skip this policy and go on.
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Initialised instances are reused across requests.
    Warm,
    /// A new instance for every request.
    Fresh,
}

/// One policy file.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub name: Name,
    pub file: PathBuf,
    /// Directory name under `plugins_dir`.
    pub plugin: String,
    /// Processor time a call may use (waiting is not counted).
    pub timeout_ms: u64,
    /// Wall-clock limit on a call, waiting included.
    pub deadline_ms: u64,
    pub memory_mb: u64,
    pub on_error: OnError,
    pub isolation: Isolation,
    pub max_calls_per_instance: u64,
    /// Request headers the plugin may set, append or remove (lower case; `prefix*` allowed).
    pub allow_headers: Vec<String>,
    /// Origins the plugin may send a request to.
    pub allow_origins: Vec<Name>,
    /// `key = "policy"` limits the plugin may spend (`edgewarden.limit`).
    pub limits: Vec<Name>,
    /// `[settings]` as JSON, passed to the plugin's `init`.
    pub settings_json: String,
    /// `[cache]`: the policy's decision is a function of these inputs, remembered per value.
    pub cache: Option<DecisionCacheConfig>,
}

/// A policy's `[cache]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCacheConfig {
    /// What the plugin sees of a request; everything else is absent.
    pub inputs: Vec<CacheInput>,
    pub ttl_s: u64,
    pub max_entries: u64,
}

/// One input a cached policy declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheInput {
    Method,
    Path,
    Country,
    Route,
    ClientIp,
    /// Every verified claim.
    Claims,
    /// One claim, by its path (`tenant.id`: nested objects).
    Claim(Vec<String>),
    /// One request header (lower case), every value of it.
    Header(http::HeaderName),
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    JwksUrl(String),
    JwksFile(PathBuf),
    /// Inline PEM text of one public key.
    PublicKeyPem(String),
    /// OpenID Connect discovery: the provider metadata's URL; its `jwks_uri` gives the keys.
    Discovery(String),
}

impl KeySource {
    /// The URL fetched in the background, for sources that are fetched.
    pub fn url(&self) -> Option<&str> {
        match self {
            KeySource::JwksUrl(url) | KeySource::Discovery(url) => Some(url),
            KeySource::JwksFile(_) | KeySource::PublicKeyPem(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: Name,
    /// Exact value of the `iss` claim.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub keys: KeySource,
    pub refresh_interval_s: u64,
    pub max_stale_s: u64,
    pub unknown_kid_cooldown_s: u64,
    /// A token without `kid` is checked against at most this many of its issuer's keys.
    pub max_keys_without_kid: usize,
    pub leeway_s: u64,
    pub required_claims: Vec<String>,
    /// Claim path (dots for nesting) → header name (lower case), in file order.
    pub claims_to_headers: Vec<(String, String)>,
}

/// How a file is read: as the gateway reads it (the default), or for `check --offline`, which
/// looks up no host name and reads absolute paths under `root` (a deployment's files laid out
/// off the machine it runs on).
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub offline: bool,
    pub root: Option<PathBuf>,
}

/// Every problem found in one config file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{} found",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "{}: {problem}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and validate the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &ReadOptions::default())
    }

    /// Read and validate the file at `path` as `options` say (`check --offline`).
    pub fn load_with(path: &Path, options: &ReadOptions) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![format!("cannot read file: {e}")],
        })?;
        Config::from_str_with(&text, path, options)
    }

    /// Validate `text` as if it had been read from `path` (relative paths resolve against its
    /// directory).
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::from_str_with(text, path, &ReadOptions::default())
    }

    fn from_str_with(
        text: &str,
        path: &Path,
        options: &ReadOptions,
    ) -> Result<Config, ConfigError> {
        let base = reader::Base {
            dir: path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            root: options.root.clone(),
            resolve_names: !options.offline,
        };
        let fail = |problems: Vec<String>| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let message = e.to_string().replace('\n', " ").trim().to_string();
            fail(vec![format!("not valid TOML: {message}")])
        })?;
        let mut problems = Problems::default();
        let config = validate::read(&table, &base, path, &mut problems);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(fail(problems.into_vec())),
        }
    }

    pub fn origin_index(&self, name: &str) -> Option<usize> {
        self.origins.iter().position(|o| o.name == name)
    }
}
