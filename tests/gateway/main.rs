//! End-to-end tests: the real `edgewarden` binary in front of real origins on loopback.

mod admin;
mod attacks;
mod auth;
mod common;
mod config_errors;
mod framing;
mod geo;
mod hygiene;
mod jwks;
mod load;
mod metrics;
mod observe;
mod orchestration;
mod plugins;
mod promise;
mod reload;
mod replicas;
mod routing;
mod shutdown;
mod tls;
mod token_places;
mod tokens;
mod upstreams;
