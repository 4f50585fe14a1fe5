//! Bearer tokens through the running gateway: early rejection, identity toward the origin.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// A gateway with a PEM-keyed issuer and routes for each auth mode.
async fn gateway() -> (Gateway, EchoOrigin, Signer) {
    let signer = Signer::rsa(RSA_A, "key-a");
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("auth", "required").set(
            "token_from",
            ["header", "cookie:session", "query:access_token"],
        ))
        .with(
            route("admin", "/admin", "o")
                .set("auth", "required")
                .set("required_scopes", ["admin"]),
        )
        .with(route("maybe", "/maybe", "o").set("auth", "optional"))
        .with(route("public", "/public", "o"));
    (Gateway::builder(config).start().await, origin_, signer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_gets_401_with_a_bare_bearer_challenge_and_keeps_the_connection() {
    let (gw, origin, _) = gateway().await;
    let mut conn = Conn::open(gw.addr).await;
    for _ in 0..2 {
        let resp = conn
            .request(&req("GET", "/api/x"))
            .await
            .expect("401 on a kept-alive connection");
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Bearer realm=\"edgewarden\"")
        );
        assert_eq!(resp.json()["error"], "missing_token");
    }
    assert_eq!(origin.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_passes_with_identity_headers_and_without_authorization() {
    let (gw, origin, signer) = gateway().await;
    let token = signer.token(&good_claims("user-42"));
    let resp = req("GET", "/api/x").bearer(&token).send(gw.addr).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = resp.origin_saw();
    assert_eq!(seen["x-internal-user-id"], vec!["user-42".to_string()]);
    assert_eq!(seen["x-org-id"], vec!["org-7".to_string()]);
    assert!(
        !seen.contains_key("authorization"),
        "Authorization must not reach the origin"
    );
    assert_eq!(origin.hits(), 1);

    // Same token again (a cache hit) and a lower-case scheme.
    let resp = req("GET", "/api/y")
        .header("Authorization", &format!("bearer {token}"))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.origin_saw()["x-internal-user-id"],
        vec!["user-42".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_found_in_the_configured_cookie_and_query_parameter() {
    let (gw, _origin, signer) = gateway().await;
    let token = signer.token(&good_claims("cookie-user"));
    let resp = req("GET", "/api/x")
        .header("Cookie", &format!("theme=dark; session={token}"))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.origin_saw()["x-internal-user-id"],
        vec!["cookie-user".to_string()]
    );
    let resp = get(gw.addr, &format!("/api/x?access_token={token}")).await;
    assert_eq!(resp.status, 200);
    // The admin route reads the header only.
    let resp = req("GET", "/admin")
        .header("Cookie", &format!("session={token}"))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_gets_401_invalid_token() {
    let (gw, origin, signer) = gateway().await;
    let mut claims = good_claims("u");
    claims["exp"] = json!(now() - 3600);
    let resp = req("GET", "/api/x")
        .bearer(&signer.token(&claims))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 401);
    let challenge = resp.header("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with(
            "Bearer realm=\"edgewarden\", error=\"invalid_token\", error_description="
        ),
        "{challenge}"
    );
    assert_eq!(resp.json()["error"], "expired");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_the_routes_scope_gets_403_insufficient_scope() {
    let (gw, origin, signer) = gateway().await;
    let token = signer.token(&good_claims("u"));
    let resp = req("GET", "/admin").bearer(&token).send(gw.addr).await;
    assert_eq!(resp.status, 403);
    let challenge = resp.header("www-authenticate").expect("challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"admin\""), "{challenge}");
    assert_eq!(origin.hits(), 0);

    let mut claims = good_claims("root");
    claims["scp"] = json!(["admin"]);
    let resp = req("GET", "/admin")
        .bearer(&signer.token(&claims))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_route_passes_anonymous_requests_but_rejects_bad_tokens() {
    let (gw, origin, signer) = gateway().await;
    let resp = req("GET", "/maybe")
        .header("X-Internal-User-Id", "spoofed")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert!(!resp.origin_saw().contains_key("x-internal-user-id"));
    let resp = req("GET", "/maybe")
        .header("Authorization", "Bearer not.a.token")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 401);
    let token = signer.token(&good_claims("opt"));
    let resp = req("GET", "/maybe").bearer(&token).send(gw.addr).await;
    assert_eq!(
        resp.origin_saw()["x-internal-user-id"],
        vec!["opt".to_string()]
    );
    assert_eq!(origin.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_origin() {
    let (gw, _origin, signer) = gateway().await;
    let token = signer.token(&good_claims("real-user"));
    let spoofs = [
        ("X-Internal-User-Id", "admin"),
        ("x-internal-user-id", "admin2"),
        ("X-INTERNAL-USER-ID", "admin3"),
        ("X-Org-Id", "evil-org"),
        ("X-Internal-Anything", "x"),
        ("X-User-Location", "GB"),
    ];
    let seen = req("GET", "/api/x")
        .headers(&spoofs)
        .bearer(&token)
        .send(gw.addr)
        .await
        .origin_saw();
    assert_eq!(seen["x-internal-user-id"], vec!["real-user".to_string()]);
    assert_eq!(seen["x-org-id"], vec!["org-7".to_string()]);
    assert!(!seen.contains_key("x-internal-anything"));
    assert!(!seen.contains_key("x-user-location"));

    // On an auth = "off" route too.
    let seen = req("GET", "/public")
        .headers(&spoofs)
        .send(gw.addr)
        .await
        .origin_saw();
    for (name, _) in spoofs {
        assert!(
            !seen.contains_key(&name.to_ascii_lowercase()),
            "{name} reached the origin"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smuggled_request_in_a_rejected_body_never_reaches_the_origin() {
    let (gw, origin, _) = gateway().await;
    let smuggled = format!("GET /public/smuggled HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr);
    for padding in [String::new(), "p".repeat(200_000)] {
        let body = format!("{smuggled}{padding}");
        let mut conn = Conn::open(gw.addr).await;
        conn.send(
            format!(
                "POST /api/upload HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer bad.token.here\r\nContent-Length: {}\r\n\r\n",
                gw.addr,
                body.len()
            )
            .as_bytes(),
        )
        .await;
        conn.send(body.as_bytes()).await;
        let resp = conn.read_response(false).await.expect("401");
        assert_eq!(resp.status, 401);
        // Whatever happens to the connection next, the smuggled request is not served.
        let _ = conn.is_closed_within(Duration::from_millis(300)).await;
    }
    assert_eq!(origin.hits(), 0, "the smuggled request reached the origin");
}
