//! edgewarden: an edge gateway built on Pingora that puts authentication and per-route policy in
//! front of origins.
//!
//! Request path: listener → `proxy::Gateway::request_filter` (framing, path and route checks,
//! `auth`, `plugins`) → `origins` (round robin, health) → origin; `proxy::record` turns what was
//! decided into metrics, the access log and the trace header. Everything a request uses is a
//! `generation::Generation` built from one validated `config::Config`; `reload` builds the next one
//! beside it and swaps it in. `admin` serves health, readiness and metrics, and drain behind
//! the admin token (with its client, `edgewarden drain`); `server` assembles the Pingora services.

#![deny(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod demo;
pub mod echo;
pub mod error;
pub mod generation;
pub mod geo;
pub mod ids;
pub mod jwa;
pub mod metrics;
pub mod mint;
pub mod origins;
pub mod owned;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod shutdown;
pub mod target;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod watch;
