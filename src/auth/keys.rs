//! Verification keys: parsing a JWKS document or a PEM public key into the keys an issuer may use.
//!
//! Only asymmetric signing keys are kept: RSA of 2048 bits or more with an odd exponent above 1,
//! EC P-256 / P-384, and Ed25519. Keys marked for another use, of unknown type, or sharing a `kid`
//! with another key (ambiguous) are left out; a document with no usable key is an error, so it can
//! never replace a good set.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::error::{Error, ErrorKind, OrErr};
pub use crate::jwa::{ALGORITHMS, algorithm_from_name};

const MIN_RSA_BITS: usize = 2048;
const MAX_KEYS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Which algorithms a key of this type can verify; the token's `alg` alone never decides.
    fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

pub struct Key {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it pins one.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
    /// The public key's defining bytes (RSA modulus without leading zeros, EC point, Ed25519
    /// public key), so a known key is recognised whatever its `kid` or document.
    pub material: Vec<u8>,
}

impl Key {
    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.kind.verifies(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for this `kid` and algorithm. Failing an exact `kid` match (or without a `kid`),
    /// a key that has no `kid` of its own is used when it is the only one able to verify `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        self.position(kid, alg).and_then(|i| self.keys.get(i))
    }

    /// Where in the set [`KeySet::find`]'s key is.
    fn position(&self, kid: Option<&str>, alg: Algorithm) -> Option<usize> {
        if let Some(kid) = kid
            && let Some(i) = self
                .keys
                .iter()
                .position(|k| k.kid.as_deref() == Some(kid) && k.verifies(alg))
        {
            return Some(i);
        }
        let mut usable = self
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.verifies(alg) && (kid.is_none() || k.kid.is_none()));
        match (usable.next(), usable.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    /// Where in the set the keys a token may have been signed with are, in key-set order: the
    /// one [`KeySet::find`] gives for a `kid`; for a token without `kid`, every key able to verify
    /// `alg` (the issuer's document order), at most `max_without_kid` of them.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
        max_without_kid: usize,
    ) -> impl Iterator<Item = usize> + Send + 'a {
        let named = kid.and_then(|kid| self.position(Some(kid), alg));
        let without_kid = kid
            .is_none()
            .then(|| {
                self.keys
                    .iter()
                    .enumerate()
                    .filter(move |(_, k)| k.verifies(alg))
                    .map(|(i, _)| i)
            })
            .into_iter()
            .flatten()
            .take(max_without_kid);
        named.into_iter().chain(without_kid)
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Parse a JWKS document (`{"keys": [...]}`).
    pub fn from_jwks(bytes: &[u8]) -> Result<KeySet, Error> {
        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            return Err(keys_error(
                "a PEM key, not a JWKS document: give it inline as public_key_pem, or publish a \
                 JWKS ({\"keys\": [...]})",
            ));
        }
        let doc: Value = serde_json::from_slice(bytes).or_err(ErrorKind::Keys, "not JSON")?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(keys_error("no \"keys\" array"));
        };
        let mut keys: Vec<Key> = Vec::new();
        let mut skipped = Vec::new();
        for (i, jwk) in list.iter().take(MAX_KEYS).enumerate() {
            match parse_jwk(jwk) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("keys[{i}]: {why}")),
            }
        }
        // A kid shared by several keys is ambiguous: use none of them.
        let duplicated: Vec<String> = keys
            .iter()
            .filter_map(|k| k.kid.clone())
            .filter(|kid| {
                keys.iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .count()
                    > 1
            })
            .collect();
        if !duplicated.is_empty() {
            keys.retain(|k| k.kid.as_ref().is_none_or(|kid| !duplicated.contains(kid)));
            skipped.push(format!("duplicate kid {:?} dropped", duplicated));
        }
        for why in &skipped {
            tracing::warn!(reason = %why, "JWKS key not used");
        }
        if keys.is_empty() {
            return Err(keys_error(format!(
                "no usable key ({})",
                skipped.join("; ")
            )));
        }
        Ok(KeySet { keys })
    }

    /// Parse one PEM public key (RSA, EC P-256/P-384 or Ed25519); it matches tokens with any `kid`.
    pub fn from_pem(pem: &str) -> Result<KeySet, Error> {
        let bytes = pem.as_bytes();
        let key = if let Ok(decoding) = DecodingKey::from_rsa_pem(bytes) {
            let der = match decoding.kind() {
                jsonwebtoken::DecodingKeyKind::SecretOrDer(der) => der.clone(),
                jsonwebtoken::DecodingKeyKind::RsaModulusExponent { .. } => {
                    return Err(keys_error("unexpected RSA key form"));
                }
            };
            let (n, e) = (super::crypto::RING_PROVIDER
                .key_utils
                .rsa_pub_components_from_public_key)(&der)
            .or_err(ErrorKind::Keys, "RSA key")?;
            rsa_key(None, None, &n, &e)?
        } else if let Ok(decoding) = DecodingKey::from_ec_pem(bytes) {
            let (kind, material) = match decoding.kind() {
                jsonwebtoken::DecodingKeyKind::SecretOrDer(point) if point.len() == 65 => {
                    (KeyKind::P256, point.clone())
                }
                jsonwebtoken::DecodingKeyKind::SecretOrDer(point) if point.len() == 97 => {
                    (KeyKind::P384, point.clone())
                }
                _ => return Err(keys_error("EC key must be P-256 or P-384")),
            };
            Key {
                kid: None,
                kind,
                alg: None,
                decoding,
                material,
            }
        } else if let Ok(decoding) = DecodingKey::from_ed_pem(bytes) {
            let material = match decoding.kind() {
                jsonwebtoken::DecodingKeyKind::SecretOrDer(x) => x.clone(),
                jsonwebtoken::DecodingKeyKind::RsaModulusExponent { .. } => Vec::new(),
            };
            Key {
                kid: None,
                kind: KeyKind::Ed25519,
                alg: None,
                decoding,
                material,
            }
        } else {
            return Err(keys_error("not a PEM RSA, EC or Ed25519 public key"));
        };
        Ok(KeySet { keys: vec![key] })
    }
}

/// A problem with a key or key set, `what` saying which.
fn keys_error(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Keys, what)
}

fn b64_field(jwk: &Value, name: &str) -> Result<Vec<u8>, Error> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| keys_error(format!("missing {name}")))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| keys_error(format!("{name} is not base64url")))
}

fn parse_jwk(jwk: &Value) -> Result<Key, Error> {
    let str_field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if let Some(usage) = jwk.get("use")
        && usage.as_str() != Some("sig")
    {
        return Err(keys_error("use is not \"sig\""));
    }
    if let Some(ops) = jwk.get("key_ops")
        && !ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")))
    {
        return Err(keys_error("key_ops does not allow verify"));
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() => Some(kid.clone()),
        Some(_) => return Err(keys_error("kid is not a non-empty string")),
    };
    let alg = match str_field("alg") {
        None => None,
        Some(name) => Some(
            algorithm_from_name(name)
                .ok_or_else(|| keys_error(format!("alg {name:?} is not supported")))?,
        ),
    };
    let key = match str_field("kty") {
        Some("RSA") => rsa_key(kid, alg, &b64_field(jwk, "n")?, &b64_field(jwk, "e")?)?,
        Some("EC") => {
            let (kind, len) = match str_field("crv") {
                Some("P-256") => (KeyKind::P256, 32),
                Some("P-384") => (KeyKind::P384, 48),
                other => return Err(keys_error(format!("EC curve {other:?} is not supported"))),
            };
            let (x, y) = (b64_field(jwk, "x")?, b64_field(jwk, "y")?);
            if x.len() != len || y.len() != len {
                return Err(keys_error("EC coordinates have the wrong length"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key {
                kid,
                kind,
                alg,
                decoding: DecodingKey::from_ec_der(&point),
                material: point,
            }
        }
        Some("OKP") => {
            if str_field("crv") != Some("Ed25519") {
                return Err(keys_error("OKP curve must be Ed25519"));
            }
            let x = b64_field(jwk, "x")?;
            if x.len() != 32 {
                return Err(keys_error("Ed25519 key must be 32 bytes"));
            }
            Key {
                kid,
                kind: KeyKind::Ed25519,
                alg,
                decoding: DecodingKey::from_ed_der(&x),
                material: x,
            }
        }
        other => {
            return Err(keys_error(format!(
                "kty {other:?} is not a supported signing key type"
            )));
        }
    };
    if let Some(alg) = key.alg
        && !key.kind.verifies(alg)
    {
        return Err(keys_error("alg does not match the key type"));
    }
    Ok(key)
}

fn rsa_key(kid: Option<String>, alg: Option<Algorithm>, n: &[u8], e: &[u8]) -> Result<Key, Error> {
    let n = super::crypto::strip_leading_zeros(n);
    let e = super::crypto::strip_leading_zeros(e);
    let bits = n.first().map_or(0, |top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < MIN_RSA_BITS {
        return Err(keys_error(format!(
            "RSA key of {bits} bits is under {MIN_RSA_BITS}"
        )));
    }
    if has_roca_fingerprint(n) {
        return Err(keys_error(
            "RSA modulus has the ROCA fingerprint (CVE-2017-15361)",
        ));
    }
    let exponent_ok = e.len() <= 4 && e.last().is_some_and(|b| b & 1 == 1) && e != [1];
    if !exponent_ok {
        return Err(keys_error(
            "RSA exponent must be odd, above 1 and at most 32 bits",
        ));
    }
    Ok(Key {
        kid,
        kind: KeyKind::Rsa,
        alg,
        decoding: DecodingKey::from_rsa_raw_components(n, e),
        material: n.to_vec(),
    })
}

/// ROCA (CVE-2017-15361): moduli made by the Infineon RSALib satisfy `n mod p ∈ ⟨65537⟩ (mod p)`
/// for every small prime p below; a random modulus almost never does (Nemec et al., CCS 2017).
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0, |acc, &b| (acc * 256 + u32::from(b)) % p);
        let generator = 65537 % p;
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}
