//! edgewarden's development tooling, kept out of the gateway crate: the gateway never depends on
//! it, and the tests, benchmarks and `edgewarden-dev` do.
//!
//! `demo` runs the shipped example configuration in front of `echo` origins with tokens from
//! `mint`; `echo` is the loopback HTTP origin the demo, the tests and the benchmarks answer with;
//! `mint` signs test tokens and prints JWKS documents. The load-test harness is the `loadtest`
//! binary beside this library (`src/bin/loadtest/`).

#![deny(unsafe_code)]

pub mod demo;
pub mod echo;
pub mod mint;
