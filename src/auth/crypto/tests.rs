//! Unit tests for the ring provider: round trips, tampering, refusals, key utilities.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{AlgorithmFamily, Header, Validation, crypto};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

const RSA2048_PRIVATE: &[u8] = include_bytes!("../../../tests/data/keys/rsa2048-private.pem");
const RSA2048_PUBLIC: &[u8] = include_bytes!("../../../tests/data/keys/rsa2048-public.pem");
const RSA1024_PRIVATE: &[u8] = include_bytes!("../../../tests/data/keys/rsa1024-private.pem");
const RSA1024_PUBLIC: &[u8] = include_bytes!("../../../tests/data/keys/rsa1024-public.pem");
const RSA2048_OPENSSL_JWT: &str =
    include_str!("../../../tests/data/keys/rsa2048-rs256-openssl.jwt");
const RSA1024_OPENSSL_JWT: &str =
    include_str!("../../../tests/data/keys/rsa1024-rs256-openssl.jwt");

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A signing key for `alg` and every public-key form that should verify its signatures.
/// EC and Ed25519 keys are generated fresh; RSA uses the vendored test-only 2048-bit key.
fn keys_for(alg: Algorithm) -> (EncodingKey, Vec<DecodingKey>) {
    let rng = SystemRandom::new();
    match alg.family() {
        AlgorithmFamily::Rsa => {
            let private = EncodingKey::from_rsa_pem(RSA2048_PRIVATE).expect("private PEM");
            let pair = rsa_key_pair(private.as_bytes()).expect("ring parses the key");
            let parts = PublicKeyComponents::<Vec<u8>>::from(pair.public());
            let from_pem = DecodingKey::from_rsa_pem(RSA2048_PUBLIC).expect("public PEM");
            let from_parts = DecodingKey::from_rsa_raw_components(&parts.n, &parts.e);
            (private, vec![from_pem, from_parts])
        }
        AlgorithmFamily::Ec => {
            let signing_alg = match alg {
                Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                _ => &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            };
            let pkcs8 = ring_sig::EcdsaKeyPair::generate_pkcs8(signing_alg, &rng).expect("keygen");
            let pair = ring_sig::EcdsaKeyPair::from_pkcs8(signing_alg, pkcs8.as_ref(), &rng)
                .expect("generated key parses");
            let public = DecodingKey::from_ec_der(pair.public_key().as_ref());
            (EncodingKey::from_ec_der(pkcs8.as_ref()), vec![public])
        }
        AlgorithmFamily::Ed => {
            let pkcs8 = ring_sig::Ed25519KeyPair::generate_pkcs8(&rng).expect("keygen");
            let pair = ring_sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parses");
            let public = DecodingKey::from_ed_der(pair.public_key().as_ref());
            (EncodingKey::from_ed_der(pkcs8.as_ref()), vec![public])
        }
        AlgorithmFamily::Hmac => unreachable!("no symmetric keys in these tests"),
    }
}

fn error_kind<T>(result: Result<T>) -> ErrorKind {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(err) => err.into_kind(),
    }
}

#[test]
fn every_asymmetric_algorithm_signs_and_verifies_with_every_key_form() {
    install();
    let message = b"eyJhbGciOiJ0ZXN0In0.eyJzdWIiOiJyb3VuZC10cmlwIn0";
    for alg in ASYMMETRIC {
        let (private, publics) = keys_for(alg);
        let sig = crypto::sign(message, &private, alg).expect("sign");
        for public in &publics {
            assert_eq!(
                crypto::verify(&sig, message, public, alg),
                Ok(true),
                "{alg:?}"
            );
        }
    }
}

#[test]
fn a_changed_signature_or_message_fails_verification() {
    install();
    let message = b"header.payload".to_vec();
    for alg in ASYMMETRIC {
        let (private, publics) = keys_for(alg);
        let sig = URL_SAFE_NO_PAD
            .decode(crypto::sign(&message, &private, alg).expect("sign"))
            .expect("base64url");
        for public in &publics {
            for byte in [0, sig.len() / 2, sig.len() - 1] {
                let mut bad = sig.clone();
                bad[byte] ^= 0x01;
                let bad = URL_SAFE_NO_PAD.encode(bad);
                assert_eq!(
                    crypto::verify(&bad, &message, public, alg),
                    Ok(false),
                    "{alg:?}"
                );
            }
            let good = URL_SAFE_NO_PAD.encode(&sig);
            let mut other = message.clone();
            other[0] ^= 0x01;
            assert_eq!(
                crypto::verify(&good, &other, public, alg),
                Ok(false),
                "{alg:?}"
            );
        }
    }
}

#[test]
fn symmetric_algorithms_are_refused_for_signing_and_verifying() {
    install();
    let secret = b"a shared secret that must never be accepted";
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let signing = crypto::sign(b"m", &EncodingKey::from_secret(secret), alg);
        assert!(
            matches!(error_kind(signing), ErrorKind::InvalidAlgorithm),
            "{alg:?}"
        );
        let verifying = crypto::verify("AAAA", b"m", &DecodingKey::from_secret(secret), alg);
        assert!(
            matches!(error_kind(verifying), ErrorKind::InvalidAlgorithm),
            "{alg:?}"
        );
        // Even an RSA public key offered as an HMAC secret is refused by the factory itself.
        let rsa = DecodingKey::from_rsa_pem(RSA2048_PUBLIC).expect("public PEM");
        let confused = (RING_PROVIDER.verifier_factory)(&alg, &rsa);
        assert!(
            matches!(error_kind(confused), ErrorKind::InvalidAlgorithm),
            "{alg:?}"
        );
    }
}

#[test]
fn hs256_token_made_with_the_rsa_public_key_as_secret_is_rejected() {
    install();
    // The classic key-confusion forgery: HMAC over the token with the public key's PEM as secret.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"attacker","exp":4102444800}"#);
    let input = format!("{header}.{claims}");
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, RSA2048_PUBLIC);
    let mac = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&mac_key, input.as_bytes()));
    let token = format!("{input}.{mac}");

    let rsa = DecodingKey::from_rsa_pem(RSA2048_PUBLIC).expect("public PEM");
    let as_rs256 = jsonwebtoken::decode::<Claims>(&token, &rsa, &strict(Algorithm::RS256));
    assert!(matches!(error_kind(as_rs256), ErrorKind::InvalidAlgorithm));
    let secret = DecodingKey::from_secret(RSA2048_PUBLIC);
    let as_hs256 = jsonwebtoken::decode::<Claims>(&token, &secret, &strict(Algorithm::HS256));
    assert!(matches!(error_kind(as_hs256), ErrorKind::InvalidAlgorithm));
}

#[test]
fn keys_of_the_wrong_family_or_curve_are_refused_without_panicking() {
    install();
    let (rsa_private, rsa_publics) = keys_for(Algorithm::RS256);
    let (ec_private, ec_publics) = keys_for(Algorithm::ES256);
    let (ed_private, ed_publics) = keys_for(Algorithm::EdDSA);
    let verify = |alg, key: &DecodingKey| (RING_PROVIDER.verifier_factory)(&alg, key).map(drop);
    let sign = |alg, key: &EncodingKey| (RING_PROVIDER.signer_factory)(&alg, key).map(drop);

    assert!(matches!(
        error_kind(verify(Algorithm::ES256, &rsa_publics[0])),
        ErrorKind::InvalidKeyFormat
    ));
    assert!(matches!(
        error_kind(verify(Algorithm::RS256, &ec_publics[0])),
        ErrorKind::InvalidKeyFormat
    ));
    assert!(matches!(
        error_kind(verify(Algorithm::ES256, &ed_publics[0])),
        ErrorKind::InvalidKeyFormat
    ));
    assert!(matches!(
        error_kind(verify(Algorithm::ES384, &ec_publics[0])),
        ErrorKind::InvalidEcdsaKey
    ));
    assert!(matches!(
        error_kind(sign(Algorithm::EdDSA, &rsa_private)),
        ErrorKind::InvalidKeyFormat
    ));
    assert!(matches!(
        error_kind(sign(Algorithm::PS256, &ec_private)),
        ErrorKind::InvalidKeyFormat
    ));
    assert!(matches!(
        error_kind(sign(Algorithm::ES384, &ec_private)),
        ErrorKind::InvalidEcdsaKey
    ));
    assert!(matches!(
        error_kind(sign(Algorithm::ES256, &ed_private)),
        ErrorKind::InvalidKeyFormat
    ));

    let short_ed = DecodingKey::from_ed_der(&[7; 31]);
    assert!(matches!(
        error_kind(verify(Algorithm::EdDSA, &short_ed)),
        ErrorKind::InvalidEddsaKey
    ));
    let garbage_rsa = DecodingKey::from_rsa_der(b"not DER at all");
    let sig = URL_SAFE_NO_PAD.encode([0u8; 256]);
    assert_eq!(
        crypto::verify(&sig, b"m", &garbage_rsa, Algorithm::RS256),
        Ok(false)
    );
    let garbage_private = EncodingKey::from_rsa_der(b"not DER at all");
    assert!(matches!(
        error_kind(sign(Algorithm::RS256, &garbage_private)),
        ErrorKind::InvalidRsaKey(_)
    ));
}

#[test]
fn rsa_keys_under_2048_bits_are_refused() {
    install();
    let token = RSA1024_OPENSSL_JWT.trim();
    let (input, sig) = token.rsplit_once('.').expect("three parts");
    let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
    // The signature is genuine: ring's legacy 1024-bit verifier accepts it.
    let pair_der = EncodingKey::from_rsa_pem(RSA1024_PRIVATE).expect("private PEM");
    let public_der = DecodingKey::from_rsa_pem(RSA1024_PUBLIC).expect("public PEM");
    let DecodingKeyKind::SecretOrDer(der) = public_der.kind() else {
        panic!("DER key")
    };
    ring_sig::UnparsedPublicKey::new(
        &ring_sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        der,
    )
    .verify(input.as_bytes(), &sig)
    .expect("genuine 1024-bit signature");
    // ...but the gateway's verifier refuses it, in every key form, and will not sign with the key.
    let (n, e) = rsa_components_from_public_key(der).expect("components");
    for key in [
        public_der.clone(),
        DecodingKey::from_rsa_raw_components(&n, &e),
    ] {
        let decoded = jsonwebtoken::decode::<Claims>(token, &key, &strict(Algorithm::RS256));
        assert!(matches!(error_kind(decoded), ErrorKind::InvalidSignature));
    }
    let signer = (RING_PROVIDER.signer_factory)(&Algorithm::RS256, &pair_der).map(drop);
    assert!(matches!(error_kind(signer), ErrorKind::InvalidRsaKey(_)));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// A validation with every field set explicitly: one algorithm, `exp` required and checked.
fn strict(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.required_spec_claims = ["exp".to_string()].into();
    validation.leeway = 0;
    validation.reject_tokens_expiring_in_less_than = 0;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.aud = None;
    validation.iss = None;
    validation.sub = None;
    validation
}

#[test]
fn encode_then_decode_works_through_the_installed_provider() {
    install();
    let claims = Claims {
        sub: "user-7".into(),
        exp: jsonwebtoken::get_current_timestamp() + 600,
    };
    for alg in ASYMMETRIC {
        let (private, publics) = keys_for(alg);
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &private).expect("encode");
        for public in &publics {
            let decoded = jsonwebtoken::decode::<Claims>(&token, public, &strict(alg));
            assert_eq!(decoded.expect("decode").claims, claims, "{alg:?}");
        }
    }
    // A token from an independent signer (OpenSSL) verifies too.
    let public = DecodingKey::from_rsa_pem(RSA2048_PUBLIC).expect("public PEM");
    let decoded = jsonwebtoken::decode::<Claims>(
        RSA2048_OPENSSL_JWT.trim(),
        &public,
        &strict(Algorithm::RS256),
    );
    assert_eq!(decoded.expect("decode").claims.sub, "openssl-signed");
}

#[test]
fn jwk_export_reads_public_components_from_every_key_form() {
    install();
    let (private, publics) = keys_for(Algorithm::RS256);
    let from_private = Jwk::from_encoding_key(&private, Algorithm::RS256).expect("private JWK");
    let from_der = Jwk::from_decoding_key(&publics[0], None).expect("public JWK");
    let (AlgorithmParameters::RSA(a), AlgorithmParameters::RSA(b)) =
        (&from_private.algorithm, &from_der.algorithm)
    else {
        panic!("RSA JWKs")
    };
    assert_eq!((&a.n, &a.e), (&b.n, &b.e));
    assert_eq!(a.e, "AQAB");
    assert_eq!(URL_SAFE_NO_PAD.decode(&a.n).expect("n").len(), 256);

    for (alg, coordinate) in [(Algorithm::ES256, 32), (Algorithm::ES384, 48)] {
        let (private, publics) = keys_for(alg);
        let jwk = Jwk::from_encoding_key(&private, alg).expect("EC JWK");
        let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm else {
            panic!("EC JWK")
        };
        let DecodingKeyKind::SecretOrDer(point) = publics[0].kind() else {
            panic!("point")
        };
        let x = URL_SAFE_NO_PAD.decode(&ec.x).expect("x");
        let y = URL_SAFE_NO_PAD.decode(&ec.y).expect("y");
        assert_eq!([&[4u8][..], &x, &y].concat(), *point);
        assert_eq!(x.len(), coordinate);
    }

    // jsonwebtoken exports Ed25519 JWKs only from PKCS#8 v1 (seed only, what OpenSSL writes).
    let seed: [u8; 32] = ring::rand::generate(&SystemRandom::new())
        .expect("seed")
        .expose();
    let v1_prefix = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let private = EncodingKey::from_ed_der(&[&v1_prefix[..], &seed].concat());
    let jwk = Jwk::from_encoding_key(&private, Algorithm::EdDSA).expect("Ed JWK");
    let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm else {
        panic!("OKP JWK")
    };
    let pair = ring_sig::Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&okp.x).expect("x"),
        pair.public_key().as_ref()
    );
    let public = DecodingKey::from_jwk(&jwk).expect("JWK to key");
    let sig = crypto::sign(b"m", &private, Algorithm::EdDSA).expect("v1 key signs");
    assert_eq!(
        crypto::verify(&sig, b"m", &public, Algorithm::EdDSA),
        Ok(true)
    );
    assert!(jwk.thumbprint(ThumbprintHash::SHA256).is_ok());
}

#[test]
fn digests_match_the_fips_180_abc_answers() {
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let digest = |hash| hex(compute_digest(b"abc", hash).expect("digest"));
    assert_eq!(
        digest(ThumbprintHash::SHA256),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        digest(ThumbprintHash::SHA384),
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
    );
    assert_eq!(
        digest(ThumbprintHash::SHA512),
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    );
}

#[test]
fn modulus_with_leading_zero_bytes_still_verifies() {
    install();
    let (private, _) = keys_for(Algorithm::RS256);
    let pair = rsa_key_pair(private.as_bytes()).expect("key");
    let parts = PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let padded_n = [&[0u8, 0][..], &parts.n].concat();
    let padded_e = [&[0u8][..], &parts.e].concat();
    let key = DecodingKey::from_rsa_raw_components(&padded_n, &padded_e);
    let sig = crypto::sign(b"m", &private, Algorithm::RS256).expect("sign");
    assert_eq!(crypto::verify(&sig, b"m", &key, Algorithm::RS256), Ok(true));
}

#[test]
fn install_is_idempotent_across_threads() {
    let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(install)).collect();
    for thread in threads {
        thread.join().expect("install never panics");
    }
    install();
    let (private, publics) = keys_for(Algorithm::EdDSA);
    let sig = crypto::sign(b"m", &private, Algorithm::EdDSA).expect("sign");
    assert_eq!(
        crypto::verify(&sig, b"m", &publics[0], Algorithm::EdDSA),
        Ok(true)
    );
}
