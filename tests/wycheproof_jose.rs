//! Wycheproof JOSE vectors (`json_web_signature_test.json`, `json_web_key_test.json`) through the
//! gateway's own key loading (`KeySet::from_jwks`) and token check (`verify::verify_jws`).
//!
//! Each vector runs on two paths, each under the group's algorithm and under every supported one:
//! - gateway: `verify_jws` as shipped. It checks JWTs, so the payload must be a JSON object;
//! - signature: the same parser, key choice and ring check with that one rule lifted (any payload
//!   bytes, canonical base64url). No vector in these files carries a JSON-object payload (`foo`,
//!   empty, raw bytes, RFC 7520 prose), so on the gateway path every vector stops at the payload
//!   before any key or signature work: the signature path is where the vectors test something.
//!
//! `valid` must pass the signature path and be refused by the gateway path only for its payload;
//! `invalid` must be refused by both paths in every run; `acceptable` may go either way (counted).
//! Groups whose keys the gateway refuses by design (symmetric, P-521, RSA under 2048 bits) are out
//! of scope: everything in them must be refused. `KNOWN_DEFECTS` are vectors the file gets wrong,
//! `OPEN_BUGS` vectors the project gets wrong; each entry must still apply, so a stale one fails.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edgewarden::auth::error::AuthError;
use edgewarden::auth::keys::{self, KeySet};
use edgewarden::auth::{crypto, jws, verify};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Value, json};

const JWS_FILE: &str = "json_web_signature_test.json";
const JWK_FILE: &str = "json_web_key_test.json";

/// How to see that a vector of the file is still wrong.
enum Defect {
    /// Marked invalid, yet the very token of this valid vector.
    SameTokenAsValid(u32),
    /// Marked valid, yet a `?` sits inside the base64url text.
    QuestionMarkInBase64,
    /// A genuine token of algorithm .0 filed in a group whose key pins algorithm .1.
    FiledUnderAlg(&'static str, &'static str),
}

const FIGURE_20: &str = "a PS384 token (RFC 7520 Figure 20) in a PS256 group";
const SAME_AS_357: &str = "marked invalid but identical to valid tc 357";
const QUESTION_MARK: &str = "contains `?` inside base64url yet marked valid";
/// Vectors of the JWS file that are wrong (reasons from tests/data/wycheproof/README.md).
const KNOWN_DEFECTS: &[(u32, &str, Defect)] = &[
    (346, FIGURE_20, Defect::FiledUnderAlg("PS384", "PS256")),
    (350, FIGURE_20, Defect::FiledUnderAlg("PS384", "PS256")),
    (367, SAME_AS_357, Defect::SameTokenAsValid(357)),
    (370, SAME_AS_357, Defect::SameTokenAsValid(357)),
    (372, QUESTION_MARK, Defect::QuestionMarkInBase64),
    (373, QUESTION_MARK, Defect::QuestionMarkInBase64),
];

/// Invalid vectors the project accepts today: (file, tcId, finding). Each must still be accepted.
const OPEN_BUGS: &[(&str, u32, &str)] = &[];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorFile {
    number_of_tests: usize,
    test_groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    comment: String,
    public: Option<Value>,
    private: Option<Value>,
    tests: Vec<Vector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vector {
    tc_id: u32,
    comment: String,
    jws: String,
    result: Verdict,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Valid,
    Invalid,
    Acceptable,
}

fn load(file: &str) -> VectorFile {
    let path = format!(
        "{}/tests/data/wycheproof/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The group's JWKs as an issuer would publish them: the `public` form (one JWK or a set), else
/// the `private` form without its private members. Symmetric keys have no public half: they are
/// handed over with their secret, which the gateway must refuse anyway.
fn group_jwks(group: &Group) -> Vec<Value> {
    let (form, private) = match (&group.public, &group.private) {
        (Some(public), _) => (public, false),
        (None, Some(private)) => (private, true),
        (None, None) => panic!("group {:?} has no key", group.comment),
    };
    let mut jwks = match form.get("keys").and_then(Value::as_array) {
        Some(list) => list.clone(),
        None => vec![form.clone()],
    };
    if private {
        for jwk in jwks.iter_mut().filter(|k| k["kty"] != "oct") {
            for name in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
                jwk.as_object_mut().map(|members| members.remove(name));
            }
        }
    }
    jwks
}

fn rsa_bits(jwk: &Value) -> usize {
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap_or_default());
    let n = n.unwrap_or_default();
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    n.first()
        .map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize)
}

/// Why a group's keys are unusable by design, if they are.
fn out_of_scope(jwks: &[Value]) -> Option<&'static str> {
    let asymmetric: Vec<&Value> = jwks.iter().filter(|k| k["kty"] != "oct").collect();
    if asymmetric.is_empty() {
        Some("symmetric key (kty oct, HS*)")
    } else if asymmetric.iter().all(|k| k["crv"] == "P-521") {
        Some("unsupported algorithm (ES512, P-521)")
    } else if asymmetric.iter().all(|k| (1..2048).contains(&rsa_bits(k))) {
        Some("RSA key under 2048 bits")
    } else {
        None
    }
}

/// The group's algorithms: each key's `alg` the gateway knows; a key without `alg` may serve any
/// algorithm its type fits (`KeySet::find` checks the type), so it brings them all.
fn group_algorithms(jwks: &[Value]) -> Vec<Algorithm> {
    let pinned = jwks.iter().filter_map(|k| k["alg"].as_str());
    let mut algs: Vec<Algorithm> = pinned.filter_map(keys::algorithm_from_name).collect();
    if jwks.iter().any(|k| k.get("alg").is_none()) {
        algs.extend(all_algorithms());
    }
    algs
}

fn all_algorithms() -> Vec<Algorithm> {
    keys::ALGORITHMS.iter().map(|(_, alg)| *alg).collect()
}

fn build_keys(jwks: &[Value]) -> Result<KeySet, String> {
    KeySet::from_jwks(json!({ "keys": jwks }).to_string().as_bytes()).map_err(|e| e.to_string())
}

/// `verify_jws` with one rule lifted: the payload may be any bytes, not only a JSON object. The
/// project's parser checks the rest (it is shown a stand-in `{}` payload), the real payload must
/// be canonical base64url (empty allowed), and key choice and signature are the project's.
fn verify_signature(token: &str, keys: &KeySet, allowed: &[Algorithm]) -> Result<(), AuthError> {
    let [header, payload, signature] = token.split('.').collect::<Vec<_>>()[..] else {
        return Err(AuthError::Malformed("token must have three segments"));
    };
    URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Malformed("invalid base64url"))?;
    let stand_in = format!("{header}.e30.{signature}");
    let parsed = jws::parse(&stand_in)?;
    let alg = keys::algorithm_from_name(&parsed.alg)
        .filter(|alg| allowed.contains(alg))
        .ok_or(AuthError::AlgNotAllowed)?;
    let key = keys
        .find(parsed.kid.as_deref(), alg)
        .ok_or(AuthError::UnknownKid)?;
    let signing_input = &token[..header.len() + 1 + payload.len()];
    match jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &key.decoding, alg) {
        Ok(true) => Ok(()),
        _ => Err(AuthError::BadSignature),
    }
}

/// Whether the payload is a JWT claims set, the only payload the gateway path can accept.
fn payload_is_object(token: &str) -> bool {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.is_object())
}

/// One run of a vector: the gateway path and the signature path, each `Err(reason)` if refused.
struct Run {
    gateway: Result<(), String>,
    signature: Result<(), String>,
}

fn run_once(token: &str, keys: &Result<KeySet, String>, allowed: &[Algorithm]) -> Run {
    let Ok(keys) = keys else {
        let refused = Err("key_set_refused".to_string());
        return Run {
            gateway: refused.clone(),
            signature: refused,
        };
    };
    let reason = |e: AuthError| format!("{}: {}", e.reason(), e.description());
    Run {
        gateway: verify::verify_jws(token, keys, allowed)
            .map(|_| ())
            .map_err(reason),
        signature: verify_signature(token, keys, allowed).map_err(reason),
    }
}

/// The summary row of one vector run under the group's algorithm and under all (`runs`), or why
/// the outcome is wrong.
fn classify(
    file: &str,
    v: &Vector,
    scope: Option<&str>,
    runs: &[Run; 2],
) -> Result<String, String> {
    let gateway = runs.iter().filter(|r| r.gateway.is_ok()).count();
    let signature = runs.iter().filter(|r| r.signature.is_ok()).count();
    if runs
        .iter()
        .any(|r| r.gateway.is_ok() && r.signature.is_err())
    {
        return Err("verify_jws accepts what the signature path refuses".into());
    }
    if v.result == Verdict::Invalid && signature > 0 {
        return match OPEN_BUGS
            .iter()
            .find(|(f, tc, _)| *f == file && *tc == v.tc_id)
        {
            Some((_, tc, finding)) => Ok(format!("OPEN PROJECT BUG tc {tc}: {finding}")),
            None => Err("ACCEPTED an invalid vector".into()),
        };
    }
    let defect = KNOWN_DEFECTS
        .iter()
        .find(|(tc, ..)| file == JWS_FILE && *tc == v.tc_id);
    if let Some((tc, why, _)) = defect {
        return Ok(format!("known defect tc {tc}: {why}"));
    }
    if let Some(why) = scope {
        return match signature {
            0 => Ok(format!("out of scope: {why}, {:?} (refused)", v.result)),
            _ => Err(format!("out of scope ({why}) yet accepted")),
        };
    }
    let refusal = runs[0]
        .signature
        .as_ref()
        .err()
        .cloned()
        .unwrap_or_default();
    let claims_set = payload_is_object(&v.jws);
    let payload_refused = |r: &Run| {
        r.gateway
            .as_ref()
            .is_err_and(|e| e.starts_with("malformed"))
    };
    match v.result {
        Verdict::Invalid => Ok(format!("invalid, refused: {refusal}")),
        Verdict::Acceptable if signature > 0 => Ok("acceptable, accepted".into()),
        Verdict::Acceptable => Ok("acceptable, refused".into()),
        Verdict::Valid if signature < 2 => Err(format!(
            "valid, yet the signature path refuses: {:?} / {:?}",
            runs[0].signature, runs[1].signature
        )),
        Verdict::Valid if claims_set && gateway == 2 => Ok("valid, verify_jws verifies".into()),
        Verdict::Valid if !claims_set && runs.iter().all(payload_refused) => Ok(
            "valid, signature path verifies; verify_jws refuses (payload not a claims set)".into(),
        ),
        Verdict::Valid => Err(format!("valid, verify_jws: {:?}", runs[0].gateway)),
    }
}

/// Runs every vector of `file`; returns the count per summary row and one line per vector.
fn check_file(file: &str) -> (BTreeMap<String, usize>, Vec<String>) {
    crypto::install();
    let vectors = load(file);
    let (mut rows, mut refusals) = (BTreeMap::<String, usize>::new(), BTreeMap::new());
    let (mut lines, mut failures, mut seen) = (Vec::new(), Vec::new(), 0);
    for group in &vectors.test_groups {
        let jwks = group_jwks(group);
        let keys = build_keys(&jwks);
        let allowed = [group_algorithms(&jwks), all_algorithms()];
        for v in &group.tests {
            seen += 1;
            let runs = allowed
                .each_ref()
                .map(|allowed| run_once(&v.jws, &keys, allowed));
            if let Err(why) = &runs[0].gateway {
                *refusals
                    .entry(format!("any verdict: verify_jws refuses ({why})"))
                    .or_default() += 1;
            }
            lines.push(format!(
                "tc {:>3} {:<8} {:<24} keys {:<8} verify_jws {:<8} signature path {}",
                v.tc_id,
                format!("{:?}", v.result),
                group.comment,
                keys.as_ref().map_or("refused", |_| "loaded"),
                runs[0].gateway.as_ref().map_or("refuses", |_| "accepts"),
                runs[0]
                    .signature
                    .as_ref()
                    .map_or_else(String::clone, |_| "accepts".into()),
            ));
            match classify(file, v, out_of_scope(&jwks), &runs) {
                Ok(row) => *rows.entry(row).or_default() += 1,
                Err(why) => failures.push(format!(
                    "tc {} ({:?}, {:?}): {why}",
                    v.tc_id, v.result, v.comment
                )),
            }
        }
    }
    for (_, tc, _) in OPEN_BUGS.iter().filter(|(f, ..)| *f == file) {
        if !rows
            .keys()
            .any(|row| row.starts_with(&format!("OPEN PROJECT BUG tc {tc}:")))
        {
            failures.push(format!(
                "tc {tc}: in OPEN_BUGS but no longer accepted; drop it"
            ));
        }
    }
    let failed = failures.join("\n");
    assert!(
        failures.is_empty(),
        "{file}: {} disagreements:\n{failed}",
        failures.len()
    );
    assert_eq!(
        seen, vectors.number_of_tests,
        "{file}: vectors run vs numberOfTests"
    );
    assert_eq!(
        rows.values().sum::<usize>(),
        seen,
        "{file}: each vector in one row"
    );
    println!("\n{file}: {seen} vectors (= numberOfTests)\n| outcome | count |\n|---|---|");
    for (row, n) in rows.iter().chain(&refusals) {
        println!("| {row} | {n} |");
    }
    (rows, lines)
}

fn count(rows: &BTreeMap<String, usize>, prefix: &str) -> usize {
    rows.iter()
        .filter(|(row, _)| row.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn jws_vectors_are_accepted_or_rejected_as_wycheproof_says() {
    let (rows, _) = check_file(JWS_FILE);
    assert!(count(&rows, "valid, ") > 0 && count(&rows, "invalid, refused") > 0);
    assert_eq!(
        count(&rows, "known defect"),
        KNOWN_DEFECTS.len(),
        "each known defect met"
    );
}

#[test]
fn jwk_sets_are_ingested_or_refused_as_wycheproof_says() {
    let (rows, lines) = check_file(JWK_FILE);
    println!("{}", lines.join("\n"));
    assert!(count(&rows, "valid, ") > 0 && count(&rows, "invalid, refused") > 0);
}

#[test]
fn known_defects_in_the_jws_file_are_still_there() {
    crypto::install();
    let file = load(JWS_FILE);
    let find = |tc: u32| {
        file.test_groups
            .iter()
            .flat_map(|g| g.tests.iter().map(move |v| (g, v)))
            .find(|(_, v)| v.tc_id == tc)
            .unwrap_or_else(|| panic!("tc {tc} is gone from {JWS_FILE}"))
    };
    for (tc, reason, defect) in KNOWN_DEFECTS {
        let (group, v) = find(*tc);
        let jwks = group_jwks(group);
        let run = run_once(&v.jws, &build_keys(&jwks), &all_algorithms());
        assert!(
            run.gateway.is_err() && run.signature.is_err(),
            "tc {tc}: must be refused"
        );
        let still = match defect {
            Defect::SameTokenAsValid(other) => {
                let (_, twin) = find(*other);
                v.result == Verdict::Invalid && twin.result == Verdict::Valid && v.jws == twin.jws
            }
            Defect::QuestionMarkInBase64 => v.result == Verdict::Valid && v.jws.contains('?'),
            Defect::FiledUnderAlg(token, key) => {
                let header = v.jws.split('.').next().unwrap_or_default();
                let header = URL_SAFE_NO_PAD.decode(header).expect("header is base64url");
                let header: Value = serde_json::from_slice(&header).expect("header is JSON");
                // A genuine token: without the pinned `alg`, the key verifies it as `token`.
                let mut unpinned = jwks.clone();
                for jwk in &mut unpinned {
                    jwk.as_object_mut().map(|members| members.remove("alg"));
                }
                let genuine = build_keys(&unpinned).is_ok_and(|set| {
                    let alg = keys::algorithm_from_name(token).expect("a supported algorithm");
                    verify_signature(&v.jws, &set, &[alg]).is_ok()
                });
                let pinned = jwks.iter().all(|k| k["alg"] == *key);
                v.result == Verdict::Valid && header["alg"] == *token && pinned && genuine
            }
        };
        assert!(
            still,
            "tc {tc} ({reason}): no longer defective; drop it from KNOWN_DEFECTS"
        );
        println!("known defect tc {tc}: {reason} (still present, refused by the gateway)");
    }
}

/// The `base64` group is HS256 (out of scope), but what it checks is the gateway's own parser:
/// with no key at all, a vector must stop at the parser (`malformed`) exactly when it is invalid.
/// The only disagreements allowed are the known defects of that group, and they must disagree.
#[test]
fn base64url_vectors_are_parsed_as_wycheproof_says() {
    crypto::install();
    let file = load(JWS_FILE);
    let group = file.test_groups.iter().find(|g| g.comment == "base64");
    let group = group.expect("the file has a base64 group");
    let mut disagree = Vec::new();
    for v in &group.tests {
        let refusal = verify_signature(&v.jws, &KeySet::default(), &all_algorithms());
        assert!(refusal.is_err(), "tc {}: no key, yet accepted", v.tc_id);
        let malformed = matches!(refusal, Err(AuthError::Malformed(_)));
        if malformed != (v.result == Verdict::Invalid) {
            disagree.push(v.tc_id);
        }
    }
    let mut expected: Vec<u32> = KNOWN_DEFECTS.iter().map(|(tc, _, _)| *tc).collect();
    expected.retain(|tc| group.tests.iter().any(|v| v.tc_id == *tc));
    assert_eq!(
        disagree, expected,
        "parser vs file, beyond the known defects"
    );
    println!(
        "base64 group: parser agrees on {} of {}; known defects {disagree:?} still disagree",
        group.tests.len() - disagree.len(),
        group.tests.len()
    );
}
