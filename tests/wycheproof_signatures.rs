//! Wycheproof signature vectors against the gateway's ring provider.
//!
//! Every vector of each file goes through `jsonwebtoken::crypto::verify`, once per public-key form
//! the group offers (DER or raw bytes, PEM, JWK components). All forms must agree, and the outcome
//! must match the file: `valid` accepted, `invalid` rejected (false or an error), `acceptable`
//! either way (counted). The number of vectors run must equal the number in the file.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edgewarden::auth::crypto;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Vectors where ring and the file legitimately disagree: (file, tcId, reason). Each must still
/// disagree, so a fixed file or a changed verifier shows up here.
const KNOWN_EXCEPTIONS: &[(&str, u32, &str)] = &[];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorFile {
    number_of_tests: usize,
    test_groups: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    public_key: PublicKey,
    /// PKCS#1 `RSAPublicKey`, hex (RSA files only).
    public_key_asn: Option<String>,
    public_key_pem: String,
    #[serde(alias = "keyJwk")]
    public_key_jwk: Option<JwkFields>,
    sha: Option<String>,
    mgf_sha: Option<String>,
    s_len: Option<usize>,
    tests: Vec<Vector>,
}

#[derive(Deserialize)]
struct PublicKey {
    curve: Option<String>,
    /// Uncompressed EC point, hex.
    uncompressed: Option<String>,
    /// Raw Ed25519 public key, hex.
    pk: Option<String>,
}

#[derive(Deserialize)]
struct JwkFields {
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vector {
    tc_id: u32,
    comment: String,
    msg: String,
    sig: String,
    result: Verdict,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Valid,
    Invalid,
    Acceptable,
}

/// What the groups of one file must declare, so a file is never checked with the wrong algorithm.
struct Expect {
    file: &'static str,
    alg: Algorithm,
    sha: Option<&'static str>,
    curve: Option<&'static str>,
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Every public-key form the group offers, each built the way the gateway would build it.
fn key_forms(alg: Algorithm, group: &Group) -> Vec<(&'static str, DecodingKey)> {
    let pem = group.public_key_pem.as_bytes();
    let jwk = group.public_key_jwk.as_ref();
    let mut forms = Vec::new();
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let point = group
                .public_key
                .uncompressed
                .as_deref()
                .expect("uncompressed point");
            forms.push(("point", DecodingKey::from_ec_der(&hex(point))));
            forms.push(("pem", DecodingKey::from_ec_pem(pem).expect("EC PEM")));
            if let Some(JwkFields {
                x: Some(x),
                y: Some(y),
                ..
            }) = jwk
            {
                forms.push((
                    "jwk",
                    DecodingKey::from_ec_components(x, y).expect("EC JWK"),
                ));
            }
        }
        Algorithm::EdDSA => {
            let raw = group.public_key.pk.as_deref().expect("raw Ed25519 key");
            forms.push(("raw", DecodingKey::from_ed_der(&hex(raw))));
            forms.push(("pem", DecodingKey::from_ed_pem(pem).expect("Ed25519 PEM")));
            if let Some(JwkFields { x: Some(x), .. }) = jwk {
                forms.push((
                    "jwk",
                    DecodingKey::from_ed_components(x).expect("Ed25519 JWK"),
                ));
            }
        }
        _ => {
            let asn = group.public_key_asn.as_deref().expect("PKCS#1 key");
            forms.push(("der", DecodingKey::from_rsa_der(&hex(asn))));
            forms.push(("pem", DecodingKey::from_rsa_pem(pem).expect("RSA PEM")));
            if let Some(JwkFields {
                n: Some(n),
                e: Some(e),
                ..
            }) = jwk
            {
                forms.push((
                    "jwk",
                    DecodingKey::from_rsa_components(n, e).expect("RSA JWK"),
                ));
            }
        }
    }
    forms
}

#[derive(Default, Debug)]
struct Counts {
    vectors: usize,
    valid: usize,
    invalid: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    known_exceptions: usize,
    checks_per_form: BTreeMap<&'static str, usize>,
}

fn run(expect: &Expect) {
    crypto::install();
    let path = format!(
        "{}/tests/data/wycheproof/{}",
        env!("CARGO_MANIFEST_DIR"),
        expect.file
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: VectorFile = serde_json::from_str(&text).expect("Wycheproof JSON");
    let mut counts = Counts::default();
    let mut exceptions_seen = Vec::new();
    let mut failures = Vec::new();

    for group in &file.test_groups {
        assert_eq!(
            group.sha.as_deref(),
            expect.sha,
            "{}: group hash",
            expect.file
        );
        assert_eq!(
            group.public_key.curve.as_deref(),
            expect.curve,
            "{}: curve",
            expect.file
        );
        if expect.alg == Algorithm::PS256 {
            assert_eq!(group.mgf_sha.as_deref(), Some("SHA-256"), "MGF1 hash");
            assert_eq!(group.s_len, Some(32), "PSS salt length");
        }
        let forms = key_forms(expect.alg, group);
        for vector in &group.tests {
            counts.vectors += 1;
            let msg = hex(&vector.msg);
            let sig = URL_SAFE_NO_PAD.encode(hex(&vector.sig));
            let outcomes: Vec<(&str, bool)> = forms
                .iter()
                .map(|(form, key)| {
                    *counts.checks_per_form.entry(form).or_default() += 1;
                    let accepted = jsonwebtoken::crypto::verify(&sig, &msg, key, expect.alg);
                    (*form, accepted == Ok(true))
                })
                .collect();
            let accepted = outcomes[0].1;
            if outcomes.iter().any(|(_, other)| *other != accepted) {
                failures.push(format!(
                    "tc {}: key forms disagree {outcomes:?}",
                    vector.tc_id
                ));
                continue;
            }
            let agrees = match vector.result {
                Verdict::Valid => accepted,
                Verdict::Invalid => !accepted,
                Verdict::Acceptable => true,
            };
            let known = KNOWN_EXCEPTIONS
                .iter()
                .any(|(file, tc, _)| *file == expect.file && *tc == vector.tc_id);
            match (agrees, known) {
                (true, false) => match (vector.result, accepted) {
                    (Verdict::Valid, _) => counts.valid += 1,
                    (Verdict::Invalid, _) => counts.invalid += 1,
                    (Verdict::Acceptable, true) => counts.acceptable_accepted += 1,
                    (Verdict::Acceptable, false) => counts.acceptable_rejected += 1,
                },
                (false, true) => {
                    counts.known_exceptions += 1;
                    exceptions_seen.push(vector.tc_id);
                }
                (true, true) => failures.push(format!(
                    "tc {}: listed as a known exception but now agrees with the file",
                    vector.tc_id
                )),
                (false, false) => failures.push(format!(
                    "tc {} ({:?}, {:?}): accepted={accepted}",
                    vector.tc_id, vector.result, vector.comment
                )),
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{}: {} disagreements:\n{}",
        expect.file,
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        counts.vectors, file.number_of_tests,
        "{}: vectors run vs numberOfTests",
        expect.file
    );
    let classified = counts.valid
        + counts.invalid
        + counts.acceptable_accepted
        + counts.acceptable_rejected
        + counts.known_exceptions;
    assert_eq!(
        classified, counts.vectors,
        "{}: every vector classified",
        expect.file
    );
    assert!(
        counts.valid > 0 && counts.invalid > 0,
        "{}: both verdicts exercised",
        expect.file
    );
    println!(
        "{} ({:?}): {counts:?}; known exceptions {exceptions_seen:?}",
        expect.file, expect.alg
    );
}

#[test]
fn rs256_matches_every_wycheproof_vector() {
    run(&Expect {
        file: "rsa_signature_2048_sha256_test.json",
        alg: Algorithm::RS256,
        sha: Some("SHA-256"),
        curve: None,
    });
}

#[test]
fn rs384_matches_every_wycheproof_vector() {
    run(&Expect {
        file: "rsa_signature_2048_sha384_test.json",
        alg: Algorithm::RS384,
        sha: Some("SHA-384"),
        curve: None,
    });
}

#[test]
fn rs512_matches_every_wycheproof_vector() {
    run(&Expect {
        file: "rsa_signature_2048_sha512_test.json",
        alg: Algorithm::RS512,
        sha: Some("SHA-512"),
        curve: None,
    });
}

#[test]
fn ps256_matches_every_wycheproof_vector() {
    run(&Expect {
        file: "rsa_pss_2048_sha256_mgf1_32_test.json",
        alg: Algorithm::PS256,
        sha: Some("SHA-256"),
        curve: None,
    });
}

#[test]
fn es256_matches_every_wycheproof_vector() {
    run(&Expect {
        file: "ecdsa_secp256r1_sha256_p1363_test.json",
        alg: Algorithm::ES256,
        sha: Some("SHA-256"),
        curve: Some("secp256r1"),
    });
}

#[test]
fn es384_matches_every_wycheproof_vector() {
    run(&Expect {
        file: "ecdsa_secp384r1_sha384_p1363_test.json",
        alg: Algorithm::ES384,
        sha: Some("SHA-384"),
        curve: Some("secp384r1"),
    });
}

#[test]
fn eddsa_matches_every_wycheproof_vector() {
    run(&Expect {
        file: "ed25519_test.json",
        alg: Algorithm::EdDSA,
        sha: None,
        curve: Some("edwards25519"),
    });
}
