//! End-to-end tests: the real `edgewarden` binary in front of real origins on loopback.

mod common;
mod config_errors;
mod framing;
mod hygiene;
mod routing;
mod shutdown;
mod upstreams;
