//! OpenID Connect discovery against a real provider on loopback: the keys come from the
//! metadata's `jwks_uri` and follow rotations; metadata naming another issuer is never trusted;
//! an outage or garbage keeps the last good keys until `max_stale_s`, then the issuer fails closed.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// A route requiring tokens of an issuer that is `provider` itself, found by `discovery = true`.
async fn gateway_for(provider: &OidcProvider, settings: &[(&str, u64)]) -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let issuer = settings.iter().fold(
        issuer()
            .set("issuer", provider.issuer())
            .set("discovery", true),
        |issuer, (k, v)| issuer.set(k, v),
    );
    let config = Config::new()
        .with(issuer)
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/", "o").set("auth", "required"));
    (
        Gateway::builder(config).wait(Wait::Listening).start().await,
        origin_,
    )
}

fn claims(provider: &OidcProvider, sub: &str) -> serde_json::Value {
    json!({"iss": provider.issuer(), "aud": AUDIENCE, "sub": sub, "exp": now() + 3600})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_come_from_the_discovered_jwks_uri_and_follow_a_rotation() {
    let a = Signer::rsa(RSA_A, "key-a");
    let b = Signer::rsa(RSA_B, "key-b");
    let forger = Signer::rsa(RSA_B, "key-a");
    let provider = OidcProvider::start(Answer::Jwks(jwks(&[&a]))).await;
    let (gw, origin_) = gateway_for(&provider, &[]).await;
    assert!(
        eventually(Duration::from_secs(10), async || gw.readiness().await
            == 200)
        .await,
        "{}",
        gw.stderr()
    );
    assert!(provider.metadata_fetches() >= 1 && provider.jwks_fetches() >= 1);
    assert_eq!(
        bearer_status(gw.addr, &a.token(&claims(&provider, "alice"))).await,
        200
    );
    // A token signed by the wrong key, or for another issuer, is refused as usual.
    assert_eq!(
        bearer_status(gw.addr, &forger.token(&claims(&provider, "mallory"))).await,
        401
    );
    let elsewhere = a.token(&good_claims("mallory"));
    assert_eq!(bearer_status(gw.addr, &elsewhere).await, 401);

    // The provider rotates to key b: a token with the new kid is verified after one fetch
    // through the metadata.
    provider.set_keys(Answer::Jwks(jwks(&[&b])));
    let fetches = provider.metadata_fetches();
    let rotated = b.token(&claims(&provider, "bob"));
    assert!(
        eventually(Duration::from_secs(10), async || bearer_status(
            gw.addr, &rotated
        )
        .await
            == 200)
        .await
    );
    assert!(provider.metadata_fetches() > fetches);
    assert_eq!(origin_.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_naming_another_issuer_is_never_trusted() {
    let a = Signer::rsa(RSA_A, "key-a");
    let provider = OidcProvider::start(Answer::Jwks(jwks(&[&a]))).await;
    // The metadata an attacker would serve: its own issuer, keys the gateway must not take.
    provider.set_metadata(Answer::Body(
        provider.metadata_naming("https://evil.example.com"),
    ));
    let (gw, origin_) = gateway_for(&provider, &[("refresh_interval_s", 1)]).await;
    assert!(
        eventually(Duration::from_secs(10), async || gw
            .stderr()
            .contains("OpenID Connect Discovery"))
        .await,
        "{}",
        gw.stderr()
    );
    let log = gw.stderr();
    assert!(
        log.contains("names issuer \"https://evil.example.com\""),
        "{log}"
    );
    assert_eq!(gw.readiness().await, 503);
    assert_eq!(
        provider.jwks_fetches(),
        0,
        "the JWKS of untrusted metadata is not fetched"
    );
    assert_eq!(
        bearer_status(gw.addr, &a.token(&claims(&provider, "alice"))).await,
        503
    );
    assert_eq!(origin_.hits(), 0);

    // Once the provider serves its own metadata, its keys are used.
    provider.set_metadata(Answer::Body(provider.metadata_naming(&provider.issuer())));
    assert!(
        eventually(Duration::from_secs(10), async || gw.readiness().await
            == 200)
        .await
    );
    assert_eq!(
        bearer_status(gw.addr, &a.token(&claims(&provider, "alice"))).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_or_garbage_keeps_the_last_good_keys_until_max_stale() {
    let a = Signer::rsa(RSA_A, "key-a");
    let provider = OidcProvider::start(Answer::Jwks(jwks(&[&a]))).await;
    let (gw, origin_) = gateway_for(
        &provider,
        &[("refresh_interval_s", 1), ("max_stale_s", 3600)],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), async || gw.readiness().await
            == 200)
        .await
    );
    let plain_http_elsewhere = json!({
        "issuer": provider.issuer(),
        "jwks_uri": "http://203.0.113.7/jwks.json",
    })
    .to_string();
    for bad in [
        Answer::Status(503),
        Answer::Body("<html>oops</html>".into()),
        Answer::Body(json!({"issuer": provider.issuer()}).to_string()),
        Answer::Body(plain_http_elsewhere),
        Answer::Body("x".repeat(70 * 1024)),
    ] {
        provider.set_metadata(bad);
        let before = provider.metadata_fetches();
        assert!(
            eventually(Duration::from_secs(10), async || provider
                .metadata_fetches()
                >= before + 2)
            .await,
            "no refresh attempts"
        );
        let fresh = a.token(&claims(&provider, &format!("fresh-{before}")));
        assert_eq!(bearer_status(gw.addr, &fresh).await, 200);
        assert_eq!(gw.readiness().await, 200);
    }
    let m = gw.metrics().await;
    assert!(
        m.count(
            "edgewarden_jwks_refresh_total",
            &[("issuer", "main"), ("result", "error")]
        ) >= 5.0,
        "{}",
        m.0
    );
    assert!(origin_.hits() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_down_past_max_stale_fails_closed() {
    let a = Signer::rsa(RSA_A, "key-a");
    let provider = OidcProvider::start(Answer::Jwks(jwks(&[&a]))).await;
    let (gw, origin_) =
        gateway_for(&provider, &[("refresh_interval_s", 1), ("max_stale_s", 0)]).await;
    assert!(
        eventually(Duration::from_secs(10), async || gw.readiness().await
            == 200)
        .await
    );
    let seen = a.token(&claims(&provider, "alice"));
    assert_eq!(bearer_status(gw.addr, &seen).await, 200);
    provider.set_metadata(Answer::Status(500));
    assert!(
        eventually(Duration::from_secs(10), async || gw.readiness().await
            == 503)
        .await,
        "readiness never dropped"
    );
    assert_eq!(bearer_status(gw.addr, &seen).await, 503);
    assert_eq!(origin_.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_url_reads_metadata_kept_apart_from_the_issuer_identifier() {
    let a = Signer::rsa(RSA_A, "key-a");
    let provider = OidcProvider::start(Answer::Jwks(jwks(&[&a]))).await;
    // The issuer identifier is https://id.test; its metadata is served from elsewhere.
    provider.set_metadata(Answer::Body(provider.metadata_naming(ISSUER)));
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(issuer().set(
            "discovery_url",
            format!("{}/.well-known/openid-configuration", provider.issuer()),
        ))
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/", "o").set("auth", "required"));
    let gw = Gateway::builder(config).start().await;
    assert_eq!(
        bearer_status(gw.addr, &a.token(&good_claims("alice"))).await,
        200
    );
    assert_eq!(origin_.hits(), 1);
}
