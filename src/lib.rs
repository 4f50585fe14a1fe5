//! edgewarden: an edge gateway built on Pingora that puts authentication and per-route policy in
//! front of origins.
//!
//! Request path: listener → `proxy::Gateway::request_filter` (framing, path and route checks) →
//! `origins` (round robin, health) → origin. Everything is built from one validated `config::Config`.

#![deny(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod demo;
pub mod echo;
pub mod generation;
pub mod geo;
pub mod metrics;
pub mod mint;
pub mod origins;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod watch;
