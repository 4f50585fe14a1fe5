//! Token verification benchmarks (criterion). Results, with the command, machine and peers, go in
//! `BENCHMARKS.md`.
//!
//! - `rs256_verify`: one RS256 signature check (same signing input, signature and 2048-bit key) by
//!   jsonwebtoken through the installed ring provider, by ring alone and by aws-lc-rs alone.
//! - `auth_decision`: `Verifier::verify` end to end, for a valid token (cache hit, cache off) and
//!   for each rejection class. Every case is checked for its exact outcome before it is timed.
//! - `verifier_costs`: where the uncached valid path spends its time beyond the signature
//!   (the verifier's own parse, then jsonwebtoken's `decode`), and what a cached token costs
//!   inside the `exp` leeway window.
//! - `executor`: what driving the (never pending) `verify` future costs with each executor, on the
//!   cheapest path (cache hit).
//!
//! Run: `cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashSet;
use std::future::Future;
use std::hint::black_box;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use edgewarden::auth::cache::TokenCache;
use edgewarden::auth::error::AuthError;
use edgewarden::auth::jwks::IssuerKeys;
use edgewarden::auth::jws;
use edgewarden::auth::keys::KeySet;
use edgewarden::auth::verify::{Identity, Issuer, Verifier};
use edgewarden::config::{DemoKey, IssuerConfig, KeySource, Name};
use edgewarden::shield::Budget;
use edgewarden_tools::mint::{self, TokenSpec};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};

const PRIVATE_PEM: &str = include_str!("../tests/data/keys/rsa2048-private.pem");
const PUBLIC_PEM: &str = include_str!("../tests/data/keys/rsa2048-public.pem");
/// Another 2048-bit key: its signatures are well formed but do not verify under `PUBLIC_PEM`.
const OTHER_PRIVATE_PEM: &str = include_str!("../tests/data/keys/rsa2048-b-private.pem");

/// Issuer 0: one inline PEM key (matches any `kid`).
const ISS_PEM: &str = "https://id.bench.edgewarden";
/// Issuer 1: a JWKS file whose only key has `kid` "k1" (so other kids are unknown).
const ISS_JWKS: &str = "https://jwks.bench.edgewarden";
const AUDIENCE: &str = "api";
/// The route under test accepts both issuers.
const ALLOWED: &[usize] = &[0, 1];
/// The configuration default.
const MAX_TOKEN_BYTES: usize = 8192;

/// Poll a future once with a no-op waker. `Verifier::verify` never awaits when no issuer has a
/// JWKS URL, so one poll completes it; a pending poll would mean the benchmark measures something
/// else, hence the panic.
fn poll_once<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("verify awaited; the benchmark assumes it completes in one poll"),
    }
}

fn issuer_config(name: &str, issuer: &str, keys: KeySource) -> IssuerConfig {
    IssuerConfig {
        name: Name::new(name).expect("issuer name"),
        issuer: issuer.to_string(),
        audiences: vec![AUDIENCE.to_string()],
        algorithms: vec![Algorithm::RS256],
        keys,
        refresh_interval_s: 300,
        max_stale_s: 86_400,
        unknown_kid_cooldown_s: 30,
        max_keys_without_kid: 4,
        leeway_s: 30,
        required_claims: vec!["sub".to_string()],
        claims_to_headers: vec![("sub".to_string(), "x-internal-user-id".to_string())],
    }
}

/// The two issuers' configurations and loaded keys; the JWKS file lives as long as `_jwks_file`.
struct Issuers {
    configs: Vec<IssuerConfig>,
    keys: Vec<Arc<IssuerKeys>>,
    _jwks_file: tempfile::NamedTempFile,
}

impl Issuers {
    fn load() -> Issuers {
        let jwks = mint::jwks(PRIVATE_PEM, "RS256", "k1").expect("JWKS from the test key");
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(jwks.as_bytes()).expect("write JWKS");
        let configs = vec![
            issuer_config(
                "bench-pem",
                ISS_PEM,
                KeySource::PublicKeyPem(PUBLIC_PEM.to_string()),
            ),
            issuer_config(
                "bench-jwks",
                ISS_JWKS,
                KeySource::JwksFile(PathBuf::from(file.path())),
            ),
        ];
        let keys = configs
            .iter()
            .map(|c| IssuerKeys::new(c, DemoKey::Refuse).expect("keys load"))
            .collect();
        Issuers {
            configs,
            keys,
            _jwks_file: file,
        }
    }

    /// A verifier over both issuers, with the default cache bounds or none.
    fn verifier(&self, cache: bool) -> Verifier {
        let issuers = self
            .configs
            .iter()
            .zip(&self.keys)
            .map(|(config, keys)| Issuer::new(config.clone(), keys.clone()))
            .collect();
        let cache = if cache {
            TokenCache::new(10_000, 16 << 20)
        } else {
            None
        };
        Verifier::new(issuers, cache, None, MAX_TOKEN_BYTES)
    }
}

fn spec() -> TokenSpec {
    TokenSpec {
        alg: "RS256".to_string(),
        kid: None,
        claims: None,
        sub: Some("bench-user".to_string()),
        iss: Some(ISS_PEM.to_string()),
        aud: vec![AUDIENCE.to_string()],
        scope: Some("read write".to_string()),
        expires_in: 3600,
    }
}

fn sign(pem: &str, spec: &TokenSpec) -> String {
    mint::token(pem, spec).expect("token signs")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature` split at the dots.
fn segments(token: &str) -> (&str, &str, &str) {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => panic!("not a compact JWS: {token}"),
    }
}

fn outcome(verifier: &Verifier, token: &str) -> Result<Identity, AuthError> {
    poll_once(verifier.verify(token, ALLOWED, &Budget::unlimited()))
}

fn expect_ok(verifier: &Verifier, case: &str, token: &str) {
    if let Err(e) = outcome(verifier, token) {
        panic!("{case}: expected a valid token, got {e:?}");
    }
}

fn expect_err(verifier: &Verifier, case: &str, token: &str, expected: &AuthError) {
    match outcome(verifier, token) {
        Ok(_) => panic!("{case}: expected {expected:?}, the token was accepted"),
        Err(e) => assert_eq!(&e, expected, "{case}: wrong rejection"),
    }
}

fn rs256_verify(c: &mut Criterion) {
    edgewarden::auth::crypto::install();
    let token = sign(PRIVATE_PEM, &spec());
    let (signing_input, signature_b64) = token.rsplit_once('.').expect("compact JWS");
    let message = signing_input.as_bytes();
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .expect("signature decodes");

    // The key exactly as the verifier holds it: PEM → modulus and exponent (KeySet::from_pem).
    let keys = KeySet::from_pem(PUBLIC_PEM).expect("PEM key");
    let components_key = &keys.keys[0].decoding;
    let (n, e) = match components_key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => (n.clone(), e.clone()),
        DecodingKeyKind::SecretOrDer(_) => panic!("KeySet::from_pem should keep n and e"),
    };
    // The same key as PKCS#1 RSAPublicKey DER (jsonwebtoken's own PEM decoding).
    let der_key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).expect("PEM key");
    let der = match der_key.kind() {
        DecodingKeyKind::SecretOrDer(der) => der.clone(),
        DecodingKeyKind::RsaModulusExponent { .. } => panic!("from_rsa_pem should keep DER"),
    };

    let provider = |key: &DecodingKey| {
        jsonwebtoken::crypto::verify(signature_b64, message, key, Algorithm::RS256)
    };
    let ring_der = || {
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &der)
            .verify(message, &signature)
    };
    let ring_components = || {
        ring::signature::RsaPublicKeyComponents { n: &n, e: &e }.verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            message,
            &signature,
        )
    };
    let aws_der = || {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &der,
        )
        .verify(message, &signature)
    };
    let aws_components = || {
        aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e }.verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            message,
            &signature,
        )
    };
    let aws_parsed = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        &der,
    )
    .expect("aws-lc parses the key");

    // Every contender accepts this signature, and rejects it over other bytes.
    assert!(matches!(provider(components_key), Ok(true)));
    assert!(matches!(provider(&der_key), Ok(true)));
    assert!(ring_der().is_ok() && ring_components().is_ok());
    assert!(aws_der().is_ok() && aws_components().is_ok());
    assert!(aws_parsed.verify_sig(message, &signature).is_ok());
    let mut tampered = signature.clone();
    tampered[10] ^= 1;
    assert!(
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &der)
            .verify(message, &tampered)
            .is_err()
    );
    assert!(aws_parsed.verify_sig(message, &tampered).is_err());
    assert!(matches!(
        jsonwebtoken::crypto::verify(&b64(&tampered), message, components_key, Algorithm::RS256),
        Ok(false)
    ));

    let mut group = c.benchmark_group("rs256_verify");
    // What Verifier::verify pays for the signature: base64 signature decode, verifier construction
    // through the provider factory, ring RsaPublicKeyComponents::verify.
    group.bench_function("provider", |b| {
        b.iter(|| provider(black_box(components_key)))
    });
    // The provider's work besides ring's check, timed alone (below the noise of the ~20 µs
    // checks on a shared machine): the verifier factory and the signature's base64url decode.
    let factory = edgewarden::auth::crypto::RING_PROVIDER.verifier_factory;
    group.bench_function("provider_setup", |b| {
        b.iter(|| {
            let verifier = factory(&Algorithm::RS256, black_box(components_key));
            let signature = URL_SAFE_NO_PAD.decode(black_box(signature_b64));
            black_box((verifier.is_ok(), signature.is_ok()))
        })
    });
    group.bench_function("provider_der", |b| b.iter(|| provider(black_box(&der_key))));
    group.bench_function("ring_der", |b| b.iter(|| black_box(ring_der())));
    group.bench_function("ring_components", |b| {
        b.iter(|| black_box(ring_components()))
    });
    group.bench_function("aws_lc_der", |b| b.iter(|| black_box(aws_der())));
    group.bench_function("aws_lc_components", |b| {
        b.iter(|| black_box(aws_components()))
    });
    group.bench_function("aws_lc_parsed", |b| {
        b.iter(|| black_box(aws_parsed.verify_sig(black_box(message), black_box(&signature))))
    });
    group.finish();
}

fn auth_decision(c: &mut Criterion) {
    edgewarden::auth::crypto::install();
    let issuers = Issuers::load();
    let cached = issuers.verifier(true);
    let uncached = issuers.verifier(false);

    let valid = sign(PRIVATE_PEM, &spec());
    let (header, payload, signature) = segments(&valid);
    // A JWKS-issuer token, to show that issuer works before its unknown-kid case is timed.
    let jwks_valid = sign(
        PRIVATE_PEM,
        &TokenSpec {
            kid: Some("k1".to_string()),
            iss: Some(ISS_JWKS.to_string()),
            ..spec()
        },
    );
    expect_ok(&uncached, "jwks issuer, known kid", &jwks_valid);
    expect_ok(&uncached, "valid_no_cache", &valid);
    expect_ok(&cached, "cache_hit (first, verified and cached)", &valid);
    expect_ok(&cached, "cache_hit", &valid);

    let hs256_header = b64(r#"{"typ":"JWT","alg":"HS256"}"#);
    let hs256_input = format!("{hs256_header}.{payload}");
    // The classic confusion attack: HMAC keyed with the issuer's public key PEM.
    let hs256_mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, PUBLIC_PEM.as_bytes()),
        hs256_input.as_bytes(),
    );
    let mut bad_payload = payload.to_string();
    bad_payload.replace_range(10..11, "*");

    let rejections: Vec<(&str, String, AuthError)> = vec![
        (
            "malformed",
            "abc.def".to_string(),
            AuthError::Malformed("token must have three segments"),
        ),
        (
            "bad_base64",
            format!("{header}.{bad_payload}.{signature}"),
            AuthError::Malformed("invalid base64url"),
        ),
        (
            "token_too_large",
            format!(
                "{header}.{}.{signature}",
                "A".repeat(MAX_TOKEN_BYTES - header.len())
            ),
            AuthError::TokenTooLarge,
        ),
        (
            // A signature segment is present: `header.payload.` (empty) is refused as malformed
            // before the algorithm is read.
            "alg_none",
            format!(
                "{}.{payload}.{signature}",
                b64(r#"{"typ":"JWT","alg":"none"}"#)
            ),
            AuthError::AlgNotAllowed,
        ),
        (
            "alg_hs256",
            format!("{hs256_input}.{}", b64(hs256_mac)),
            AuthError::AlgNotAllowed,
        ),
        (
            "unknown_kid",
            sign(
                PRIVATE_PEM,
                &TokenSpec {
                    kid: Some("not-in-the-jwks".to_string()),
                    iss: Some(ISS_JWKS.to_string()),
                    ..spec()
                },
            ),
            AuthError::UnknownKid,
        ),
        (
            "bad_signature",
            sign(OTHER_PRIVATE_PEM, &spec()),
            AuthError::BadSignature,
        ),
        (
            "expired",
            sign(
                PRIVATE_PEM,
                &TokenSpec {
                    expires_in: -3600,
                    ..spec()
                },
            ),
            AuthError::Expired,
        ),
        (
            "wrong_issuer",
            sign(
                PRIVATE_PEM,
                &TokenSpec {
                    iss: Some("https://id.elsewhere.example".to_string()),
                    ..spec()
                },
            ),
            AuthError::WrongIssuer,
        ),
        (
            "wrong_audience",
            sign(
                PRIVATE_PEM,
                &TokenSpec {
                    aud: vec!["another-api".to_string()],
                    ..spec()
                },
            ),
            AuthError::WrongAudience,
        ),
    ];
    for (case, token, expected) in &rejections {
        // Twice: a rejection must not be cached as anything else.
        expect_err(&cached, case, token, expected);
        expect_err(&cached, case, token, expected);
        expect_err(&uncached, case, token, expected);
    }
    assert!(valid.len() < 1024, "valid token is {} bytes", valid.len());

    let mut group = c.benchmark_group("auth_decision");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            poll_once(cached.verify(black_box(&valid), ALLOWED, &Budget::unlimited())).is_ok()
        })
    });
    group.bench_function("valid_no_cache", |b| {
        b.iter(|| {
            poll_once(uncached.verify(black_box(&valid), ALLOWED, &Budget::unlimited())).is_ok()
        })
    });
    for (case, token, _) in &rejections {
        group.bench_function(*case, |b| {
            b.iter(|| {
                poll_once(cached.verify(black_box(token), ALLOWED, &Budget::unlimited())).is_err()
            })
        });
    }
    group.finish();
}

/// The same settings as `validation()` in `src/auth/verify.rs` for issuer 0.
fn verifier_validation() -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.algorithms = vec![Algorithm::RS256];
    v.leeway = 30;
    v.reject_tokens_expiring_in_less_than = 0;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_audience(&[AUDIENCE]);
    v.set_issuer(&[ISS_PEM]);
    v.sub = None;
    v.required_spec_claims =
        HashSet::from(["exp".to_string(), "iss".to_string(), "aud".to_string()]);
    v
}

/// Parts of the uncached valid path, and the cache inside the leeway window.
fn verifier_costs(c: &mut Criterion) {
    edgewarden::auth::crypto::install();
    let issuers = Issuers::load();
    let cached = issuers.verifier(true);
    let valid = sign(PRIVATE_PEM, &spec());
    let keys = KeySet::from_pem(PUBLIC_PEM).expect("PEM key");
    let key = &keys.keys[0].decoding;
    // Expired 10 s ago: inside the 30 s leeway, so still valid.
    let in_leeway = sign(
        PRIVATE_PEM,
        &TokenSpec {
            expires_in: -10,
            ..spec()
        },
    );
    assert!(jws::parse(&valid).is_ok());
    assert!(jsonwebtoken::decode::<serde_json::Value>(&valid, key, &verifier_validation()).is_ok());
    expect_ok(&cached, "in leeway (first)", &in_leeway);
    expect_ok(&cached, "in leeway (second)", &in_leeway);

    let mut group = c.benchmark_group("verifier_costs");
    // Strict parse: signature, header and claims base64url, duplicate-free JSON.
    group.bench_function("jws_parse", |b| {
        b.iter(|| jws::parse(black_box(&valid)).is_ok())
    });
    // What Verifier::verify calls after its own checks: Validation built per call, header decoded
    // twice, claims deserialized twice, the signature decoded and checked.
    group.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(
                black_box(&valid),
                key,
                &verifier_validation(),
            )
            .is_ok()
        })
    });
    // A valid token whose `exp` has passed but is within the leeway: the cache drops the entry
    // (it compares `now > exp` without leeway), so every request verifies again and re-inserts.
    group.bench_function("cache_within_leeway", |b| {
        b.iter(|| {
            poll_once(cached.verify(black_box(&in_leeway), ALLOWED, &Budget::unlimited())).is_ok()
        })
    });
    group.finish();
}

/// Executor overhead on the cheapest path: the same cache hit driven by a no-op-waker poll (what
/// `auth_decision` uses), `futures::executor::block_on`, and a current-thread tokio runtime built
/// once outside the loop.
fn executor(c: &mut Criterion) {
    edgewarden::auth::crypto::install();
    let issuers = Issuers::load();
    let cached = issuers.verifier(true);
    let valid = sign(PRIVATE_PEM, &spec());
    expect_ok(&cached, "executor warm-up", &valid);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");

    let mut group = c.benchmark_group("executor");
    group.bench_function("noop_poll", |b| {
        b.iter(|| {
            poll_once(cached.verify(black_box(&valid), ALLOWED, &Budget::unlimited())).is_ok()
        })
    });
    group.bench_function("futures_block_on", |b| {
        b.iter(|| {
            futures::executor::block_on(cached.verify(
                black_box(&valid),
                ALLOWED,
                &Budget::unlimited(),
            ))
            .is_ok()
        })
    });
    group.bench_function("tokio_current_thread", |b| {
        b.iter(|| {
            runtime
                .block_on(cached.verify(black_box(&valid), ALLOWED, &Budget::unlimited()))
                .is_ok()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    rs256_verify,
    auth_decision,
    verifier_costs,
    executor
);
criterion_main!(benches);
