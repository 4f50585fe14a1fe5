//! The JSON Web Algorithms (RFC 7518) the gateway verifies, by their JOSE names: the one table
//! the configuration checks, key loading and token verification read. This module imports nothing
//! of the crate, so the configuration can name algorithms without depending on `auth`.

use jsonwebtoken::Algorithm;

/// Asymmetric algorithms the gateway verifies, by their JOSE names. `none` and HS* are absent on
/// purpose: they are never accepted, whatever a token says.
pub const ALGORITHMS: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Exact, case-sensitive lookup of a supported algorithm name.
pub fn algorithm_from_name(name: &str) -> Option<Algorithm> {
    ALGORITHMS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}
