//! Token attacks against the running gateway: each gets 401 and the origin sees nothing.

use ring::hmac;
use serde_json::{Value, json};

use crate::support::*;

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_matrix_is_rejected_with_401_and_never_reaches_the_origin() {
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
    let gw = Gateway::builder(config).start().await;

    let good = good_claims("victim");
    let header = |extra: Value| {
        let mut h = json!({"alg": "RS256", "kid": "key-a", "typ": "JWT"});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            h[k] = v;
        }
        h
    };
    let valid = signer.token(&good);
    let (vh, vc, vs) = {
        let mut parts = valid.split('.');
        (
            parts.next().expect("h").to_string(),
            parts.next().expect("c").to_string(),
            parts.next().expect("s").to_string(),
        )
    };
    let public_der = {
        let pem = RSA_A_PUBLIC;
        let b64body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64body).expect("der")
    };
    let canary_url = format!("http://{}/keys", canary.addr);
    let with_claims = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        signer.token(&c)
    };
    let t = now();

    let mut cases: Vec<(&str, String)> = vec![];
    for none in ["none", "None", "NONE", "nOnE"] {
        cases.push((
            "alg none",
            format!(
                "{}.{vc}.",
                b64(json!({"alg": none, "typ": "JWT"}).to_string())
            ),
        ));
        cases.push((
            "alg none with signature",
            format!("{}.{vc}.{vs}", b64(json!({"alg": none}).to_string())),
        ));
    }
    cases.push((
        "HS256 with RSA public key PEM",
        hs256(
            RSA_A_PUBLIC.as_bytes(),
            &header(json!({"alg": "HS256"})),
            &good,
        ),
    ));
    cases.push((
        "HS256 with RSA public key DER",
        hs256(&public_der, &header(json!({"alg": "HS256"})), &good),
    ));
    cases.push((
        "HS256 with RSA public JWK",
        hs256(
            signer.jwk.to_string().as_bytes(),
            &header(json!({"alg": "HS256"})),
            &good,
        ),
    ));
    cases.push((
        "kid path traversal",
        attacker.token_with_header(&header(json!({"kid": "../../../../etc/passwd"})), &good),
    ));
    cases.push((
        "kid SQL",
        attacker.token_with_header(&header(json!({"kid": "' OR '1'='1' --"})), &good),
    ));
    cases.push((
        "64 KiB kid",
        attacker.token_with_header(&header(json!({"kid": "k".repeat(65536)})), &good),
    ));
    cases.push((
        "embedded jwk",
        attacker.token_with_header(&header(json!({"jwk": attacker.jwk})), &good),
    ));
    cases.push((
        "jku to canary",
        attacker.token_with_header(&header(json!({"jku": canary_url, "kid": "evil"})), &good),
    ));
    cases.push((
        "x5u to canary",
        attacker.token_with_header(&header(json!({"x5u": canary_url, "kid": "evil2"})), &good),
    ));
    cases.push((
        "unknown crit",
        signer.token_with_header(&header(json!({"crit": ["exp"], "exp": 1})), &good),
    ));
    cases.push(("attacker key, known kid", attacker.token(&good)));
    cases.push(("two segments", format!("{vh}.{vc}")));
    cases.push(("four segments", format!("{valid}.{vs}")));
    cases.push(("padded base64", format!("{vh}=.{vc}.{vs}")));
    cases.push((
        "standard base64 alphabet",
        format!("{vh}.{vc}.{}", vs.replace('-', "+").replace('_', "/")),
    ));
    cases.push(("non-canonical trailing bits", {
        let mut s = vs.clone();
        let last = s.pop().expect("char");
        let bumped = match last {
            'A' => 'B',
            'Q' => 'R',
            'g' => 'h',
            'w' => 'x',
            other => {
                if other == 'z' {
                    'y'
                } else {
                    'z'
                }
            }
        };
        s.push(bumped);
        format!("{vh}.{vc}.{s}")
    }));
    cases.push(("trailing garbage", format!("{valid}garbage")));
    cases.push(("trailing space and garbage", format!("{valid} x")));
    cases.push((
        "exp at leeway - 1 s",
        with_claims(&|c| c["exp"] = json!(t - 31)),
    ));
    cases.push((
        "nbf at leeway + 1 s",
        with_claims(&|c| c["nbf"] = json!(t + 32)),
    ));
    cases.push((
        "iat at leeway + 1 s",
        with_claims(&|c| c["iat"] = json!(t + 32)),
    ));
    cases.push((
        "exp as string",
        with_claims(&|c| c["exp"] = json!((t + 3600).to_string())),
    ));
    cases.push(("aud as number", with_claims(&|c| c["aud"] = json!(7))));
    cases.push(("iss as array", with_claims(&|c| c["iss"] = json!([ISSUER]))));
    cases.push((
        "sub as object",
        with_claims(&|c| c["sub"] = json!({"id": 1})),
    ));
    cases.push((
        "wrong issuer",
        with_claims(&|c| c["iss"] = json!("https://evil.test")),
    ));
    cases.push((
        "wrong audience",
        with_claims(&|c| c["aud"] = json!(["other"])),
    ));
    cases.push((
        "missing aud",
        with_claims(&|c| {
            c.as_object_mut().map(|o| o.remove("aud"));
        }),
    ));
    cases.push((
        "missing exp",
        with_claims(&|c| {
            c.as_object_mut().map(|o| o.remove("exp"));
        }),
    ));
    cases.push((
        "missing sub",
        with_claims(&|c| {
            c.as_object_mut().map(|o| o.remove("sub"));
        }),
    ));
    cases.push(("duplicate claims", {
        let claims = format!(
            r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"a","sub":"admin","exp":{}}}"#,
            t + 3600
        );
        signer.sign_raw(&format!("{vh}.{}", b64(claims)))
    }));
    cases.push(("duplicate header members", {
        let header = r#"{"alg":"RS256","kid":"key-a","alg":"HS256"}"#;
        signer.sign_raw(&format!("{}.{vc}", b64(header)))
    }));
    cases.push((
        "token over max_token_bytes",
        format!("{vh}.{}.{vs}", "A".repeat(9000)),
    ));

    for (name, token) in &cases {
        let auth = format!("Bearer {token}");
        let resp = req("GET", "/x")
            .header("Authorization", &auth)
            .try_send(gw.addr)
            .await;
        let summary = resp
            .as_ref()
            .map(|r| (r.status, String::from_utf8_lossy(&r.body).to_string()));
        assert_eq!(
            summary.as_ref().map(|(s, _)| *s),
            Ok(401),
            "{name}: {summary:?}"
        );
    }
    // A 1 MB token makes the header block larger than the HTTP layer accepts: 400 before any parsing.
    let huge = format!("Bearer {vh}.{}.{vs}", "A".repeat(1 << 20));
    let resp = req("GET", "/x")
        .header("Authorization", &huge)
        .try_send(gw.addr)
        .await;
    assert!(
        matches!(resp.as_ref().map(|r| r.status), Ok(400) | Err(_)),
        "1 MB token: {:?}",
        resp.map(|r| r.status)
    );
    assert_eq!(origin_.hits(), 0, "an attack reached the origin");
    assert_eq!(
        canary.hits(),
        0,
        "the gateway fetched a URL named by a token"
    );

    // Leeway edges on the accepting side, and the genuine token, still pass.
    let t = now();
    for (name, token) in [
        ("valid", valid.clone()),
        (
            "exp at leeway + 1 s",
            with_claims(&|c| c["exp"] = json!(t - 29)),
        ),
        (
            "nbf at leeway - 1 s",
            with_claims(&|c| c["nbf"] = json!(t + 28)),
        ),
        (
            "iat at leeway - 1 s",
            with_claims(&|c| c["iat"] = json!(t + 28)),
        ),
    ] {
        let auth = format!("Bearer {token}");
        let resp = req("GET", "/x")
            .header("Authorization", &auth)
            .send(gw.addr)
            .await;
        assert_eq!(resp.status, 200, "{name}");
    }
}
