//! edgewarden: an edge gateway built on Pingora that puts authentication and per-route policy in
//! front of origins.
//!
//! Request path: listener → `proxy::Gateway::request_filter` (framing, path and route checks,
//! `auth`, `plugins`) → `origins` (round robin, health) → origin; `proxy::record` turns what was
//! decided into metrics, the access log, the decision-trace header and (`otel`) OpenTelemetry
//! spans. Everything a request uses is a
//! `generation::Generation` built from one validated `config::Config`; `reload` builds the next one
//! beside it and swaps it in. `admin` serves health, readiness and metrics, and drain behind
//! the admin token (with its client, `edgewarden drain`); `server` assembles the Pingora services.
//! `logging` sends diagnostics to stderr and the access log to stdout.
//!
//! The development tooling (the demo, the echo origin, token minting, the load-test harness) is
//! the `edgewarden-tools` crate in `tools/`: it depends on this one, which uses it only in its
//! tests and benchmarks.

#![deny(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod generation;
pub mod geo;
pub mod header_pattern;
pub mod ids;
pub mod jwa;
pub mod lane;
pub mod logging;
pub mod metrics;
pub mod origins;
pub mod otel;
pub mod owned;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod shield;
pub mod shutdown;
pub mod target;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod watch;
