//! What the end-to-end tests share, one job per file. Tests `use crate::support::*`.
//!
//! - `gateway`: a real gateway process, started by `Gateway::builder(config)`.
//! - `config`: configuration and policy files built and edited by key (`Config`, `route`, ...).
//! - `h2_client`: a raw HTTP/2 client over TLS (`raw_h2`) and one-stream exchanges.
//! - `http`: `req()`, one HTTP/1.1 request with exact bytes on the wire; `https_client()`.
//! - `origins`: echo origins on loopback, origins that misbehave, a dead port, free addresses.
//! - `pki`: throwaway CAs and certificates, and a gateway with a TLS listener.
//! - `tokens`: real keys, signed tokens and a JWKS server.
//! - `metrics`: reading the admin listener's Prometheus exposition.
//! - `otlp`: a real OTLP/HTTP trace receiver that decodes what the gateway exports.
//! - `plugins`: plugin sources and policy files in a gateway's directory.
//! - `cli`: the binary's one-shot commands (`check`, `drain`, `plugins`).
//! - `load`: continuous client load, and `eventually`.
//! - `redis`: a real `redis-server`, paused, stopped, killed and restarted at will.
//! - `browser`: a real headless Chromium and a server for the pages it opens.
//! - `volume`: a configuration mounted the way Kubernetes mounts a ConfigMap.

pub mod browser;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod h2_client;
pub mod http;
pub mod load;
pub mod metrics;
pub mod origins;
pub mod otlp;
pub mod pki;
pub mod plugins;
pub mod redis;
pub mod tokens;
pub mod volume;

pub use browser::{Browser, PageServer};
pub use cli::{edgewarden, edgewarden_async};
pub use config::{
    Config, Entry, issuer, limit, origin, pem_issuer, policy, route, section, shipped_policy,
};
pub use gateway::{ADMIN_TOKEN, Gateway, Wait};
pub use h2_client::{h2_exchange, h2_get, h2_status, raw_h2};
pub use http::{Conn, Req, Response, bearer_status, get, https_client, req};
pub use load::{Load, eventually};
pub use metrics::Metrics;
pub use origins::{
    DeadPort, EchoOrigin, MisbehavingOrigin, Misbehaviour, RecordingOrigin, echo_origin, free_port,
    tls_echo_origin,
};
pub use otlp::{OtlpReceiver, Span};
pub use pki::{
    Pki, civil_date, der, pki, pki_until, tls_echo_gateway, tls_listener_gateway, unix_now,
    write_pki,
};
pub use plugins::admins_only;
pub use redis::RedisServer;
pub use tokens::*;
