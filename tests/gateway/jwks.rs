//! JWKS served by a real HTTP server: rotation, outage, garbage, cold start, unknown-kid floods.

use std::time::Duration;

use crate::support::*;

/// One route requiring tokens of the test issuer, whose keys `server` serves; `settings` are more
/// of the issuer's keys.
fn config_for(server: &JwksServer, origin_: &EchoOrigin, settings: &[(&str, u64)]) -> Config {
    let issuer = settings
        .iter()
        .fold(issuer().set("jwks_url", server.url()), |issuer, (k, v)| {
            issuer.set(k, v)
        });
    Config::new()
        .with(issuer)
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/", "o").set("auth", "required"))
}

async fn gateway_for(server: &JwksServer, settings: &[(&str, u64)]) -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let config = config_for(server, &origin_, settings);
    (Gateway::builder(config).start().await, origin_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_and_retired_keys_stop_working() {
    let a = Signer::rsa(RSA_A, "key-a");
    let b = Signer::rsa(RSA_B, "key-b");
    let server = JwksServer::start(Answer::Jwks(jwks(&[&a])), Duration::ZERO).await;
    let (gw, _o) = gateway_for(&server, &[("refresh_interval_s", 1)]).await;
    let token_a = a.token(&good_claims("a"));
    let token_b = b.token(&good_claims("b"));
    assert_eq!(bearer_status(gw.addr, &token_a).await, 200);

    server.set(Answer::Jwks(jwks(&[&b])));
    assert!(
        eventually(Duration::from_secs(10), async || bearer_status(
            gw.addr, &token_b
        )
        .await
            == 200)
        .await
    );
    // The cached verification of token A is dropped with its key.
    assert!(
        eventually(Duration::from_secs(10), async || bearer_status(
            gw.addr, &token_a
        )
        .await
            == 401)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_or_garbage_keeps_the_last_good_keys() {
    let a = Signer::rsa(RSA_A, "key-a");
    let server = JwksServer::start(Answer::Jwks(jwks(&[&a])), Duration::ZERO).await;
    let (gw, _o) = gateway_for(&server, &[("refresh_interval_s", 1), ("max_stale_s", 3600)]).await;
    let token = a.token(&good_claims("a"));
    assert_eq!(bearer_status(gw.addr, &token).await, 200);

    for bad in [
        Answer::Status(503),
        Answer::Body("<html>oops</html>".into()),
        Answer::Jwks("{\"keys\": []}".into()),
    ] {
        server.set(bad);
        let before = server.fetches();
        assert!(
            eventually(Duration::from_secs(10), async || server.fetches()
                >= before + 2)
            .await,
            "no refresh attempts"
        );
        // A fresh token (not a cache hit) still verifies against the kept keys.
        let fresh = a.token(&good_claims(&format!("fresh-{}", server.fetches())));
        assert_eq!(bearer_status(gw.addr, &fresh).await, 200);
        assert_eq!(gw.readiness().await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_jwks_at_cold_start_fails_closed_until_it_recovers() {
    let a = Signer::rsa(RSA_A, "key-a");
    let server = JwksServer::start(Answer::Status(500), Duration::ZERO).await;
    let origin_ = echo_origin("o").await;
    let config = config_for(&server, &origin_, &[("refresh_interval_s", 1)]);
    let gw = Gateway::builder(config).wait(Wait::Listening).start().await;
    let ready = get(gw.admin, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.json()["missing"][0]
            .as_str()
            .unwrap_or_default()
            .contains("issuer main")
    );
    let token = a.token(&good_claims("a"));
    assert_eq!(
        bearer_status(gw.addr, &token).await,
        503,
        "no keys: fail closed"
    );
    assert_eq!(origin_.hits(), 0);
    // The log says what /readyz says: listening, not ready, and no "last good keys" to keep.
    assert!(
        eventually(Duration::from_secs(10), async || gw
            .stderr()
            .contains("no usable keys remain"))
        .await,
        "{}",
        gw.stderr()
    );
    let log = gw.stderr();
    assert!(log.contains("edgewarden not ready yet"), "{log}");
    assert!(!log.contains("edgewarden ready"), "{log}");
    assert!(!log.contains("keeping the last good keys"), "{log}");

    server.set(Answer::Jwks(jwks(&[&a])));
    assert!(
        eventually(Duration::from_secs(10), async || gw.readiness().await
            == 200)
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), async || gw
            .stderr()
            .contains("edgewarden ready"))
        .await,
        "ready is logged once /readyz says so"
    );
    assert_eq!(bearer_status(gw.addr, &token).await, 200);
    let m = gw.metrics().await;
    let refreshes = |result: &str| {
        m.count(
            "edgewarden_jwks_refresh_total",
            &[("issuer", "main"), ("result", result)],
        )
    };
    assert!(refreshes("error") >= 1.0, "{}", m.0);
    assert!(refreshes("ok") >= 1.0, "{}", m.0);
    assert_eq!(
        m.value("edgewarden_jwks_keys", &[("issuer", "main")]),
        Some(1.0)
    );
    assert_eq!(
        m.count(
            "edgewarden_auth_rejections_total",
            &[("route", "api"), ("reason", "keys_unavailable")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_new_kid_cause_one_fetch() {
    let a = Signer::rsa(RSA_A, "key-a");
    let b = Signer::rsa(RSA_B, "key-b");
    // A slow JWKS endpoint makes the requests really overlap.
    let server = JwksServer::start(Answer::Jwks(jwks(&[&a])), Duration::from_millis(300)).await;
    let origin_ = echo_origin("o").await;
    // The 200 requests reach the origin at once, each on a new connection; on a loaded 2-core
    // machine one loopback connect was seen to take over the default second (a dropped SYN is
    // sent again after 1 s). This test is about key fetches, so its connects get longer.
    let mut config = config_for(
        &server,
        &origin_,
        &[("refresh_interval_s", 3600), ("unknown_kid_cooldown_s", 60)],
    );
    config
        .entry_mut("origins", "o")
        .set("connect_timeout_ms", 5000);
    let gw = Gateway::builder(config).start().await;
    server.set(Answer::Jwks(jwks(&[&a, &b])));
    let before = server.fetches();
    let token = b.token(&good_claims("b"));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let token = token.clone();
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            req("GET", "/x")
                .bearer(&token)
                .try_send(addr)
                .await
                .map_or(0, |r| r.status)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("join"), 200);
    }
    assert_eq!(
        server.fetches() - before,
        1,
        "one fetch for 200 concurrent requests"
    );
    assert_eq!(origin_.hits(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_kids_causes_bounded_fetches() {
    let a = Signer::rsa(RSA_A, "key-a");
    let server = JwksServer::start(Answer::Jwks(jwks(&[&a])), Duration::ZERO).await;
    let origin_ = echo_origin("o").await;
    let settings = [("refresh_interval_s", 3600), ("unknown_kid_cooldown_s", 60)];
    // The flood comes from one address: without the shield's penalty box (which would refuse it
    // after a few failures, see the shield tests), every token reaches the key lookup.
    let config =
        config_for(&server, &origin_, &settings).with(section("shield").set("penalty_failures", 0));
    let gw = Gateway::builder(config).start().await;
    let attacker = Signer::rsa(RSA_B, "unused");
    let before = server.fetches();
    let mut conn = Conn::open(gw.addr).await;
    for i in 0..1000 {
        let header = serde_json::json!({"alg": "RS256", "kid": format!("random-{i}")});
        let token = attacker.token_with_header(&header, &good_claims("x"));
        let resp = conn
            .request(&req("GET", "/x").bearer(&token))
            .await
            .expect("response");
        assert_eq!(resp.status, 401);
        assert_eq!(resp.json()["error"], "unknown_kid");
    }
    let fetched = server.fetches() - before;
    assert!(
        fetched <= 1,
        "{fetched} fetches for 1000 unknown kids within one cooldown"
    );
    assert_eq!(origin_.hits(), 0);
    // Good tokens still pass.
    assert_eq!(
        bearer_status(gw.addr, &a.token(&good_claims("a"))).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_type_decides_the_algorithm_not_the_token() {
    let rsa = Signer::rsa(RSA_A, "rsa-key");
    let ec = Signer::es256("ec-key");
    let server = JwksServer::start(Answer::Jwks(jwks(&[&rsa, &ec])), Duration::ZERO).await;
    let (gw, origin_) = gateway_for(&server, &[]).await;
    assert_eq!(
        bearer_status(gw.addr, &ec.token(&good_claims("ec"))).await,
        200
    );
    assert_eq!(
        bearer_status(gw.addr, &rsa.token(&good_claims("rsa"))).await,
        200
    );
    // An RSA signature presented under the EC key's kid, and an ES256 header on the RSA key's kid.
    let header = serde_json::json!({"alg": "RS256", "kid": "ec-key"});
    assert_eq!(
        bearer_status(gw.addr, &rsa.token_with_header(&header, &good_claims("x"))).await,
        401
    );
    let header = serde_json::json!({"alg": "ES256", "kid": "rsa-key"});
    assert_eq!(
        bearer_status(gw.addr, &ec.token_with_header(&header, &good_claims("y"))).await,
        401
    );
    assert_eq!(origin_.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_older_than_max_stale_fail_closed() {
    let a = Signer::rsa(RSA_A, "key-a");
    let server = JwksServer::start(Answer::Jwks(jwks(&[&a])), Duration::ZERO).await;
    let (gw, origin_) =
        gateway_for(&server, &[("refresh_interval_s", 1), ("max_stale_s", 0)]).await;
    let seen = a.token(&good_claims("a"));
    assert_eq!(bearer_status(gw.addr, &seen).await, 200);
    server.set(Answer::Status(500));
    assert!(
        eventually(Duration::from_secs(10), async || gw.readiness().await
            == 503)
        .await,
        "readiness never dropped"
    );
    // A token never seen before cannot be verified any more.
    assert_eq!(
        bearer_status(gw.addr, &a.token(&good_claims("late"))).await,
        503
    );
    // Nor does a cached verification outlive the keys it was made with.
    assert_eq!(bearer_status(gw.addr, &seen).await, 503);
    assert_eq!(origin_.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_set_holding_the_demo_key_is_refused_like_an_invalid_one() {
    let demo_pem = include_str!("../../config/demo/demo-signing-key.pem");
    let a = Signer::rsa(RSA_A, "key-a");
    // The demo key under a kid of its own, beside a good key.
    let demo = Signer::rsa(demo_pem, "rotated-in");
    let server = JwksServer::start(Answer::Jwks(jwks(&[&a])), Duration::ZERO).await;
    let (gw, origin_) =
        gateway_for(&server, &[("refresh_interval_s", 1), ("max_stale_s", 3600)]).await;
    assert_eq!(
        bearer_status(gw.addr, &a.token(&good_claims("a"))).await,
        200
    );

    server.set(Answer::Jwks(jwks(&[&a, &demo])));
    let refused = |m: &Metrics| {
        m.count(
            "edgewarden_jwks_refresh_total",
            &[("issuer", "main"), ("result", "error")],
        )
    };
    let m = gw.metrics_when(|m| refused(m) >= 2.0).await;
    assert!(refused(&m) >= 2.0, "{}", gw.stderr());
    assert!(
        gw.stderr()
            .contains("the keys hold the repository's public demo key"),
        "{}",
        gw.stderr()
    );
    // The last good keys keep serving; the demo key never verifies anything.
    let hits = origin_.hits();
    assert_eq!(
        bearer_status(gw.addr, &demo.token(&good_claims("mallory"))).await,
        401
    );
    assert_eq!(origin_.hits(), hits);
    assert_eq!(
        bearer_status(gw.addr, &a.token(&good_claims("fresh"))).await,
        200
    );
    assert_eq!(gw.readiness().await, 200);
}
