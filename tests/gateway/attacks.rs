//! Token attacks against the running gateway, one test per class of attack: each forged or
//! malformed token gets 401 and the origin receives nothing; the gateway never fetches a URL a
//! token names. The genuine token, and claims just inside the leeway, reach the origin with the
//! token's identity.

use ring::hmac;
use serde_json::{Value, json};

use crate::support::*;

/// A gateway whose one route requires tokens of the test issuer (keys from a JWKS server), an
/// origin behind it, and a canary origin that only a gateway fetching a token's URL would call.
struct Fixture {
    gw: Gateway,
    origin: EchoOrigin,
    canary: EchoOrigin,
    _jwks: JwksServer,
    /// The issuer's key, published in the JWKS as `key-a`.
    signer: Signer,
    /// Another key, claiming the kid `key-a`.
    attacker: Signer,
    /// Claims that pass every check.
    good: Value,
}

async fn fixture() -> Fixture {
    let signer = Signer::rsa(RSA_A, "key-a");
    let attacker = Signer::rsa(RSA_B, "key-a");
    let jwks_server =
        JwksServer::start(Answer::Jwks(jwks(&[&signer])), std::time::Duration::ZERO).await;
    let canary = echo_origin("canary").await;
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(
            issuer()
                .set("jwks_url", jwks_server.url())
                .set("unknown_kid_cooldown_s", 3600),
        )
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/", "o").set("auth", "required"));
    Fixture {
        gw: Gateway::builder(config).start().await,
        origin: origin_,
        canary,
        _jwks: jwks_server,
        signer,
        attacker,
        good: good_claims("victim"),
    }
}

impl Fixture {
    /// The genuine token's three segments.
    fn valid_parts(&self) -> [String; 3] {
        let valid = self.signer.token(&self.good);
        let parts: Vec<String> = valid.split('.').map(str::to_string).collect();
        parts.try_into().expect("three segments")
    }

    /// The standard header with `extra` members added or replaced.
    fn header(&self, extra: Value) -> Value {
        let mut header = json!({"alg": "RS256", "kid": "key-a", "typ": "JWT"});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            header[k] = v;
        }
        header
    }

    /// The good claims changed by `change`, signed by the issuer's key.
    fn with_claims(&self, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.good.clone();
        change(&mut claims);
        self.signer.token(&claims)
    }

    /// Each token in turn: 401, and nothing reaches the origin or the canary.
    async fn refused(&self, cases: &[(&str, String)]) {
        for (name, token) in cases {
            let resp = req("GET", "/x").bearer(token).try_send(self.gw.addr).await;
            let summary = resp.as_ref().map(|r| (r.status, r.text()));
            assert_eq!(
                summary.as_ref().map(|(status, _)| *status),
                Ok(401),
                "{name}: {summary:?}"
            );
        }
        self.assert_origin_untouched();
    }

    fn assert_origin_untouched(&self) {
        assert_eq!(self.origin.hits(), 0, "an attack reached the origin");
        assert_eq!(
            self.canary.hits(),
            0,
            "the gateway fetched a URL named by a token"
        );
    }

    /// Each token in turn reaches the origin, which receives the token's subject.
    async fn accepted(&self, cases: &[(&str, String)]) {
        for (i, (name, token)) in cases.iter().enumerate() {
            let resp = req("GET", "/x").bearer(token).send(self.gw.addr).await;
            assert_eq!(resp.status, 200, "{name}: {}", resp.text());
            assert_eq!(
                resp.origin_saw()["x-internal-user-id"],
                ["victim"],
                "{name}"
            );
            assert_eq!(self.origin.hits(), i + 1, "{name}");
        }
        assert_eq!(self.canary.hits(), 0);
    }
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_genuine_token_reaches_the_origin_with_its_identity() {
    let f = fixture().await;
    f.accepted(&[("valid", f.signer.token(&f.good))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_in_any_spelling_is_refused_with_or_without_a_signature() {
    let f = fixture().await;
    let [_, claims, signature] = f.valid_parts();
    let mut cases = Vec::new();
    for none in ["none", "None", "NONE", "nOnE"] {
        let unsigned = b64(json!({"alg": none, "typ": "JWT"}).to_string());
        cases.push(("alg none", format!("{unsigned}.{claims}.")));
        let header = b64(json!({"alg": none}).to_string());
        cases.push((
            "alg none with signature",
            format!("{header}.{claims}.{signature}"),
        ));
    }
    f.refused(&cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let f = fixture().await;
    let public_der = {
        let body: String = RSA_A_PUBLIC
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).expect("der")
    };
    let header = f.header(json!({"alg": "HS256"}));
    f.refused(&[
        (
            "HS256 with RSA public key PEM",
            hs256(RSA_A_PUBLIC.as_bytes(), &header, &f.good),
        ),
        (
            "HS256 with RSA public key DER",
            hs256(&public_der, &header, &f.good),
        ),
        (
            "HS256 with RSA public JWK",
            hs256(f.signer.jwk.to_string().as_bytes(), &header, &f.good),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_kids_are_refused() {
    let f = fixture().await;
    let with_kid = |kid: String| {
        f.attacker
            .token_with_header(&f.header(json!({"kid": kid})), &f.good)
    };
    f.refused(&[
        (
            "kid path traversal",
            with_kid("../../../../etc/passwd".into()),
        ),
        ("kid SQL", with_kid("' OR '1'='1' --".into())),
        ("64 KiB kid", with_kid("k".repeat(65536))),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_a_token_names_or_carries_are_never_fetched_or_trusted() {
    let f = fixture().await;
    let canary_url = format!("http://{}/keys", f.canary.addr);
    let signed = |extra: Value| f.attacker.token_with_header(&f.header(extra), &f.good);
    f.refused(&[
        ("embedded jwk", signed(json!({"jwk": f.attacker.jwk}))),
        (
            "jku to canary",
            signed(json!({"jku": canary_url, "kid": "evil"})),
        ),
        (
            "x5u to canary",
            signed(json!({"x5u": canary_url, "kid": "evil2"})),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_by_another_key_under_a_known_kid_is_refused() {
    let f = fixture().await;
    f.refused(&[("attacker key, known kid", f.attacker.token(&f.good))])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_critical_header_is_refused() {
    let f = fixture().await;
    let header = f.header(json!({"crit": ["exp"], "exp": 1}));
    f.refused(&[("unknown crit", f.signer.token_with_header(&header, &f.good))])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_serialisation_that_is_not_exactly_three_canonical_segments_is_refused() {
    let f = fixture().await;
    let [h, c, s] = f.valid_parts();
    let valid = format!("{h}.{c}.{s}");
    // The last character of the signature changed in bits that base64url decoding ignores.
    let non_canonical = {
        let mut bumped = s.clone();
        let last = bumped.pop().expect("char");
        bumped.push(match last {
            'A' => 'B',
            'Q' => 'R',
            'g' => 'h',
            'w' => 'x',
            'z' => 'y',
            _ => 'z',
        });
        bumped
    };
    let standard_alphabet: String = s
        .chars()
        .map(|ch| match ch {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    f.refused(&[
        ("two segments", format!("{h}.{c}")),
        ("four segments", format!("{valid}.{s}")),
        ("padded base64", format!("{h}=.{c}.{s}")),
        (
            "standard base64 alphabet",
            format!("{h}.{c}.{standard_alphabet}"),
        ),
        (
            "non-canonical trailing bits",
            format!("{h}.{c}.{non_canonical}"),
        ),
        ("trailing garbage", format!("{valid}garbage")),
        ("trailing space and garbage", format!("{valid} x")),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_claims_one_second_outside_the_leeway_are_refused() {
    let f = fixture().await;
    let t = now();
    f.refused(&[
        (
            "exp at leeway - 1 s",
            f.with_claims(|c| c["exp"] = json!(t - 31)),
        ),
        (
            "nbf at leeway + 1 s",
            f.with_claims(|c| c["nbf"] = json!(t + 32)),
        ),
        (
            "iat at leeway + 1 s",
            f.with_claims(|c| c["iat"] = json!(t + 32)),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_claims_one_second_inside_the_leeway_are_accepted() {
    let f = fixture().await;
    let t = now();
    f.accepted(&[
        (
            "exp at leeway + 1 s",
            f.with_claims(|c| c["exp"] = json!(t - 29)),
        ),
        (
            "nbf at leeway - 1 s",
            f.with_claims(|c| c["nbf"] = json!(t + 28)),
        ),
        (
            "iat at leeway - 1 s",
            f.with_claims(|c| c["iat"] = json!(t + 28)),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_claims_of_the_wrong_type_are_refused() {
    let f = fixture().await;
    let t = now();
    f.refused(&[
        (
            "exp as string",
            f.with_claims(|c| c["exp"] = json!((t + 3600).to_string())),
        ),
        ("aud as number", f.with_claims(|c| c["aud"] = json!(7))),
        (
            "iss as array",
            f.with_claims(|c| c["iss"] = json!([ISSUER])),
        ),
        (
            "sub as object",
            f.with_claims(|c| c["sub"] = json!({"id": 1})),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_issuer_or_audience_or_a_missing_required_claim_is_refused() {
    let f = fixture().await;
    let without = |claim: &'static str| {
        f.with_claims(move |c| {
            c.as_object_mut().map(|o| o.remove(claim));
        })
    };
    f.refused(&[
        (
            "wrong issuer",
            f.with_claims(|c| c["iss"] = json!("https://evil.test")),
        ),
        (
            "wrong audience",
            f.with_claims(|c| c["aud"] = json!(["other"])),
        ),
        ("missing aud", without("aud")),
        ("missing exp", without("exp")),
        ("missing sub", without("sub")),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_members_are_refused_even_when_signed() {
    let f = fixture().await;
    let [h, c, _] = f.valid_parts();
    let claims = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"a","sub":"admin","exp":{}}}"#,
        now() + 3600
    );
    let header = r#"{"alg":"RS256","kid":"key-a","alg":"HS256"}"#;
    f.refused(&[
        (
            "duplicate claims",
            f.signer.sign_raw(&format!("{h}.{}", b64(claims))),
        ),
        (
            "duplicate header members",
            f.signer.sign_raw(&format!("{}.{c}", b64(header))),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tokens_are_refused_before_parsing() {
    let f = fixture().await;
    let [h, _, s] = f.valid_parts();
    f.refused(&[(
        "token over max_token_bytes",
        format!("{h}.{}.{s}", "A".repeat(9000)),
    )])
    .await;
    // A 1 MB token makes the header block larger than the HTTP layer accepts: 400 before any
    // parsing, or the connection closed.
    let huge = format!("{h}.{}.{s}", "A".repeat(1 << 20));
    let resp = req("GET", "/x").bearer(&huge).try_send(f.gw.addr).await;
    assert!(
        matches!(resp.as_ref().map(|r| r.status), Ok(400) | Err(_)),
        "1 MB token: {:?}",
        resp.map(|r| r.status)
    );
    f.assert_origin_untouched();
}
