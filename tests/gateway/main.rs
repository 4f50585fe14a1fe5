//! End-to-end tests: the real `edgewarden` binary in front of real origins on loopback.
//!
//! `support/` holds what the tests share; every other module is a group of tests.

mod support;

mod admin;
mod attacks;
mod auth;
mod config_errors;
mod cors;
mod discovery;
mod framing;
mod geo;
mod http2;
mod http2_canonical;
mod http2_hangups;
mod hygiene;
mod jwks;
mod metrics;
mod misbehaving_origins;
mod observe;
mod orchestration;
mod plugin_cache;
mod plugins;
mod promise;
mod quickstart;
mod redis;
mod reload;
mod replicas;
mod request_limits;
mod routing;
mod shield;
mod shutdown;
mod tls;
mod token_places;
mod traces;
mod upstreams;
