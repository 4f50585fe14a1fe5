//! The repository's demo key (`config/demo/`): its private half is public, so anyone can sign
//! tokens it accepts. This module recognises it by its key material (whatever the `kid` or the
//! document it comes in) and says whether a configuration may trust it: only
//! `edgewarden-dev demo` and the explicit `--allow-demo-key` option of `run` and `check` allow
//! it, never the configuration file or the environment.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::keys::{KeyKind, KeySet};

/// The demo issuer's public JWKS, as shipped.
const DEMO_JWKS: &str = include_str!("../../config/demo/jwks.json");

/// The RSA moduli (without leading zeros) of the demo JWKS.
static DEMO_MODULI: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let doc: serde_json::Value = serde_json::from_str(DEMO_JWKS).unwrap_or_default();
    doc.get("keys")
        .and_then(|k| k.as_array())
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.get("n")?.as_str())
                .filter_map(|n| URL_SAFE_NO_PAD.decode(n).ok())
                .map(|n| super::crypto::strip_leading_zeros(&n).to_vec())
                .collect()
        })
        .unwrap_or_default()
});

/// Whether a key of `kind` with this material is the demo key.
pub fn is_demo_key(kind: KeyKind, material: &[u8]) -> bool {
    kind == KeyKind::Rsa && DEMO_MODULI.iter().any(|n| n.as_slice() == material)
}

/// Whether any key of `keys` is the demo key.
pub fn holds_demo_key(keys: &KeySet) -> bool {
    keys.keys.iter().any(|k| is_demo_key(k.kind, &k.material))
}

/// Why a key set holding the demo key is refused, for the issuer named `name` (its `iss`).
pub fn refusal(name: &str, iss: &str) -> String {
    format!(
        "issuer {name:?} ({iss}): the keys hold the repository's public demo key \
         (config/demo/jwks.json, kid demo-2026), whose private half is published: anyone could \
         sign tokens it accepts. \
         Configure your identity provider's keys (jwks_url, discovery, jwks_file or public_key_pem). To run \
         the shipped example use `edgewarden-dev demo`; for tests only, `run` and `check` take \
         --allow-demo-key"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeySet;

    #[test]
    fn the_shipped_demo_jwks_is_recognised_under_any_kid() {
        assert_eq!(DEMO_MODULI.len(), 1);
        assert!(holds_demo_key(
            &KeySet::from_jwks(DEMO_JWKS.as_bytes()).expect("demo JWKS")
        ));
        let renamed = DEMO_JWKS.replace("demo-2026", "production-1");
        assert!(holds_demo_key(
            &KeySet::from_jwks(renamed.as_bytes()).expect("renamed JWKS")
        ));
    }

    #[test]
    fn the_demo_key_as_a_pem_public_key_is_recognised() {
        // `openssl pkey -in config/demo/demo-signing-key.pem -pubout`
        let pem = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAn9npMADQCCQMHDMQxrlm
oPZW11q5XjuKI+KaoHnPN4l9SzRCfWF3H6e/yV3wZjeqGXlT/5G1lVUHQfePff3B
OfWXfgBI0E0DmiZmsU2PIbmPxp+VIwqBcmXK5i5of/kpVOk2753OVyHqvfVhx2mp
v5w0I0eFFTlk0xJzUzSh/8db0ijopKYrIxL+qQuYBsnxUh3CPo0esv1WIPjQOzYr
8z/TIuvlhGwgHU+wzdlUn3kyHmuB9FwsQ2M0sUIU+zVC7/cN/FmMMx7jWT859ts8
3rAPLQSGknyiBDNKX9onZaGD1PvA5gFxP+iq2s5Xgv7cP7xlOJUvXorT6LV3PEmc
5wIDAQAB
-----END PUBLIC KEY-----
";
        assert!(holds_demo_key(&KeySet::from_pem(pem).expect("demo PEM")));
    }

    #[test]
    fn another_rsa_key_is_not_the_demo_key() {
        let pem = include_str!("../../tests/data/keys/rsa2048-public.pem");
        assert!(!holds_demo_key(&KeySet::from_pem(pem).expect("test key")));
    }
}
