//! The cryptography behind JWT checks: a `jsonwebtoken` [`CryptoProvider`] backed by ring.
//!
//! This module owns which signature algorithms the gateway accepts and which key forms each takes:
//! RS256/384/512 and PS256/384/512 (RSA keys of 2048 to 8192 bits), ES256, ES384 and EdDSA
//! (Ed25519). Symmetric algorithms (HS256/384/512) are refused for signing and verifying alike, so
//! a token can never be checked against a shared secret or an RSA public key used as one.
//!
//! jsonwebtoken is built without a crypto backend and panics at first use unless a provider is
//! installed: call [`install`] before the first token is encoded or decoded.

mod rsa_der;

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result, new_error};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::digest;
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{self as ring_sig, KeyPair as _};

/// The ring-backed provider; [`install`] makes it the process default.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_public_key_from_private_key,
        compute_digest,
    },
};

/// Install [`RING_PROVIDER`] as jsonwebtoken's process-wide provider. Idempotent and thread-safe.
///
/// If another provider was installed first (or jsonwebtoken was used before this call, which
/// locks in its panicking placeholder) that provider stays; the conflict is logged as an error.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if let Err(existing) = RING_PROVIDER.install_default()
            && !std::ptr::eq(existing, &RING_PROVIDER)
        {
            tracing::error!(
                "another jsonwebtoken CryptoProvider is already installed; \
                 the ring provider is not in use"
            );
        }
    });
}

/// How one JWS algorithm is checked with ring.
enum Scheme {
    Rsa(&'static ring_sig::RsaParameters),
    Ecdsa(&'static ring_sig::EcdsaVerificationAlgorithm, usize),
    Ed25519,
}

/// The verification scheme for `alg`; symmetric algorithms are refused.
fn scheme(alg: Algorithm) -> Result<Scheme> {
    use ring_sig::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA256,
        RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256,
        RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512,
    };
    Ok(match alg {
        Algorithm::RS256 => Scheme::Rsa(&RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Scheme::Rsa(&RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Scheme::Rsa(&RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Scheme::Rsa(&RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Scheme::Rsa(&RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Scheme::Rsa(&RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Scheme::Ecdsa(&ECDSA_P256_SHA256_FIXED, 32),
        Algorithm::ES384 => Scheme::Ecdsa(&ECDSA_P384_SHA384_FIXED, 48),
        Algorithm::EdDSA => Scheme::Ed25519,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            return Err(new_error(ErrorKind::InvalidAlgorithm));
        }
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    })
}

/// A public key ready for ring.
enum PublicKey {
    /// Bytes ring parses itself: PKCS#1 `RSAPublicKey` DER, uncompressed EC point, raw Ed25519 key.
    Encoded(&'static dyn ring_sig::VerificationAlgorithm, Vec<u8>),
    /// RSA modulus and exponent, big-endian without leading zeros.
    RsaComponents(&'static ring_sig::RsaParameters, Vec<u8>, Vec<u8>),
}

struct RingVerifier {
    algorithm: Algorithm,
    key: PublicKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let checked = match &self.key {
            PublicKey::Encoded(alg, bytes) => {
                ring_sig::UnparsedPublicKey::new(*alg, bytes).verify(msg, sig)
            }
            PublicKey::RsaComponents(params, n, e) => {
                ring_sig::RsaPublicKeyComponents { n, e }.verify(params, msg, sig)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let scheme = scheme(*alg)?;
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    let key = match (scheme, key.kind()) {
        (Scheme::Rsa(params), DecodingKeyKind::SecretOrDer(der)) => {
            PublicKey::Encoded(params, der.clone())
        }
        (Scheme::Rsa(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
            // RFC 7518 asks for minimal encodings; ring refuses leading zeros, some issuers send them.
            let (n, e) = (strip_leading_zeros(n), strip_leading_zeros(e));
            PublicKey::RsaComponents(params, n.to_vec(), e.to_vec())
        }
        (Scheme::Ecdsa(alg, coordinate_len), DecodingKeyKind::SecretOrDer(point)) => {
            // Uncompressed point: 0x04, x, y. Checked here so a wrong curve is a key error.
            if point.len() != 1 + 2 * coordinate_len || point.first() != Some(&0x04) {
                return Err(new_error(ErrorKind::InvalidEcdsaKey));
            }
            PublicKey::Encoded(alg, point.clone())
        }
        (Scheme::Ed25519, DecodingKeyKind::SecretOrDer(raw)) => {
            if raw.len() != ring_sig::ED25519_PUBLIC_KEY_LEN {
                return Err(new_error(ErrorKind::InvalidEddsaKey));
            }
            PublicKey::Encoded(&ring_sig::ED25519, raw.clone())
        }
        _ => return Err(new_error(ErrorKind::InvalidKeyFormat)),
    };
    Ok(Box::new(RingVerifier {
        algorithm: *alg,
        key,
    }))
}

/// A big-endian integer without its leading zero bytes.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first_nonzero = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first_nonzero..]
}

/// A private key ready for ring.
enum SigningKey {
    Rsa(ring_sig::RsaKeyPair, &'static dyn ring_sig::RsaEncoding),
    Ecdsa(ring_sig::EcdsaKeyPair),
    Ed25519(ring_sig::Ed25519KeyPair),
}

struct RingSigner {
    algorithm: Algorithm,
    key: SigningKey,
    rng: SystemRandom,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let failed = |_| signature::Error::from_source("ring could not sign");
        match &self.key {
            SigningKey::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &self.rng, msg, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
            SigningKey::Ecdsa(pair) => {
                Ok(pair.sign(&self.rng, msg).map_err(failed)?.as_ref().to_vec())
            }
            SigningKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    use ring_sig::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA256,
        RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RSA_PSS_SHA384, RSA_PSS_SHA512,
    };
    // Same refusals as verification: no symmetric algorithms, no unknown ones.
    scheme(*alg)?;
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    let rng = SystemRandom::new();
    let der = key.as_bytes();
    let rsa = |encoding: &'static dyn ring_sig::RsaEncoding| -> Result<SigningKey> {
        Ok(SigningKey::Rsa(rsa_key_pair(der)?, encoding))
    };
    let ecdsa = |signing_alg: &'static ring_sig::EcdsaSigningAlgorithm| {
        ring_sig::EcdsaKeyPair::from_pkcs8(signing_alg, der, &rng)
            .map(SigningKey::Ecdsa)
            .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))
    };
    let key = match alg {
        Algorithm::RS256 => rsa(&RSA_PKCS1_SHA256)?,
        Algorithm::RS384 => rsa(&RSA_PKCS1_SHA384)?,
        Algorithm::RS512 => rsa(&RSA_PKCS1_SHA512)?,
        Algorithm::PS256 => rsa(&RSA_PSS_SHA256)?,
        Algorithm::PS384 => rsa(&RSA_PSS_SHA384)?,
        Algorithm::PS512 => rsa(&RSA_PSS_SHA512)?,
        Algorithm::ES256 => ecdsa(&ECDSA_P256_SHA256_FIXED_SIGNING)?,
        Algorithm::ES384 => ecdsa(&ECDSA_P384_SHA384_FIXED_SIGNING)?,
        Algorithm::EdDSA => SigningKey::Ed25519(ed25519_key_pair(der)?),
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(Box::new(RingSigner {
        algorithm: *alg,
        key,
        rng,
    }))
}

/// An RSA private key from PKCS#8 or PKCS#1 DER (`EncodingKey::from_rsa_pem` stores PKCS#1).
/// ring refuses keys under 2048 bits and public exponents under 65537.
fn rsa_key_pair(der: &[u8]) -> Result<ring_sig::RsaKeyPair> {
    ring_sig::RsaKeyPair::from_pkcs8(der)
        .or_else(|_| ring_sig::RsaKeyPair::from_der(der))
        .map_err(|rejected| new_error(ErrorKind::InvalidRsaKey(rejected.to_string())))
}

/// An Ed25519 private key from PKCS#8 v1 (what OpenSSL writes) or v2.
fn ed25519_key_pair(der: &[u8]) -> Result<ring_sig::Ed25519KeyPair> {
    ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))
}

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = rsa_key_pair(der)?;
    let components = PublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

fn rsa_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    rsa_der::rsa_public_key_components(der).ok_or_else(|| {
        new_error(ErrorKind::InvalidRsaKey(
            "not a DER PKCS#1 RSAPublicKey".to_string(),
        ))
    })
}

fn ec_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing_alg, curve) = match alg {
        Algorithm::ES256 => (
            &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
        ),
        Algorithm::ES384 => (
            &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
        ),
        _ => return Err(new_error(ErrorKind::InvalidAlgorithm)),
    };
    let pair = ring_sig::EcdsaKeyPair::from_pkcs8(signing_alg, der, &SystemRandom::new())
        .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))?;
    // ring encodes the public key as an uncompressed point: 0x04, x, y (equal lengths).
    match pair.public_key().as_ref().split_first() {
        Some((0x04, xy)) if xy.len().is_multiple_of(2) => {
            let (x, y) = xy.split_at(xy.len() / 2);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(new_error(ErrorKind::InvalidEcdsaKey)),
    }
}

fn ed_public_key_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(ed25519_key_pair(der)?.public_key().as_ref().to_vec()),
        _ => Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests;
