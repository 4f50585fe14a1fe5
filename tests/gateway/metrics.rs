//! Prometheus metrics on the admin listener, read after the traffic that produces them.

use serde_json::json;

use crate::support::*;

const REQUESTS: &str = "edgewarden_requests_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_route_status_class_and_outcome_without_user_data() {
    let signer = Signer::rsa(RSA_A, "key-a");
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("app", &[origin_.addr]))
        .with(route("api", "/api", "app").set("auth", "required"));
    let gw = Gateway::builder(config).start().await;
    // The start-up probes of `Gateway::builder` are route-less 400s of their own.
    let before = gw.metrics().await;
    let unrouted = |m: &Metrics| {
        m.count(
            REQUESTS,
            &[
                ("route", "(none)"),
                ("status_class", "4xx"),
                ("outcome", "rejected"),
            ],
        )
    };
    assert_eq!(
        before.value(
            "edgewarden_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        before.value("edgewarden_jwks_keys", &[("issuer", "main")]),
        Some(1.0)
    );
    assert!(
        before
            .value("edgewarden_jwks_age_seconds", &[("issuer", "main")])
            .is_some()
    );

    let valid = signer.token(&good_claims("user-secret-42"));
    let mut expired_claims = good_claims("user-secret-42");
    expired_claims["exp"] = json!(now() - 3600);
    let expired = signer.token(&expired_claims);
    let path = "/api/private-path-x";
    assert_eq!(get(gw.addr, path).await.status, 401);
    for token in [&valid, &valid, &expired] {
        let resp = req("GET", path).bearer(token).send(gw.addr).await;
        assert_eq!(resp.status, if token == &valid { 200 } else { 401 });
    }
    assert_eq!(get(gw.addr, "/elsewhere").await.status, 404);

    let m = gw
        .metrics_when(|m| {
            m.count(
                "edgewarden_request_duration_seconds_count",
                &[("route", "api")],
            ) >= 4.0
                && unrouted(m) > unrouted(&before)
        })
        .await;
    let api = |class: &str, outcome: &str| {
        m.count(
            REQUESTS,
            &[
                ("route", "api"),
                ("status_class", class),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(api("2xx", "forwarded"), 2.0);
    assert_eq!(api("4xx", "rejected"), 2.0);
    assert!(unrouted(&m) > unrouted(&before));
    let rejections = |reason: &str| {
        m.count(
            "edgewarden_auth_rejections_total",
            &[("route", "api"), ("reason", reason)],
        )
    };
    assert_eq!(rejections("missing_token"), 1.0);
    assert_eq!(rejections("expired"), 1.0);
    assert_eq!(
        m.count(
            "edgewarden_request_duration_seconds_count",
            &[("route", "api")]
        ),
        4.0
    );
    // The first valid token and the expired one were checked in full; the second valid one came
    // from the cache.
    assert_eq!(m.count("edgewarden_token_cache_misses_total", &[]), 2.0);
    assert_eq!(m.count("edgewarden_token_cache_hits_total", &[]), 1.0);
    assert_eq!(
        m.count("edgewarden_jwt_verify_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        m.count(
            "edgewarden_upstream_duration_seconds_count",
            &[("origin", "app")]
        ),
        2.0
    );
    for private in [
        "user-secret-42",
        "private-path-x",
        "key-a",
        "elsewhere",
        &valid,
    ] {
        assert!(!m.0.contains(private), "{private} in the metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_counted_by_origin_and_kind() {
    let dead = DeadPort::new();
    let config = Config::new()
        .with(origin("gone", &[dead.addr]))
        .with(route("down", "/", "gone"));
    let gw = Gateway::builder(config).start().await;
    let resp = get(gw.addr, "/x").await;
    assert_eq!(resp.status, 502);
    // The failed connect is counted before the answer, the request itself just after it.
    let m = gw
        .metrics_when(|m| {
            m.total("edgewarden_upstream_errors_total") >= 1.0
                && m.count(
                    "edgewarden_request_duration_seconds_count",
                    &[("route", "down")],
                ) >= 1.0
        })
        .await;
    assert_eq!(
        m.count(
            "edgewarden_upstream_errors_total",
            &[("origin", "gone"), ("kind", "connect_refused")]
        ),
        1.0
    );
    assert_eq!(
        m.count(
            REQUESTS,
            &[
                ("route", "down"),
                ("status_class", "5xx"),
                ("outcome", "error")
            ]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_counters_are_exported_before_any_reload() {
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("r", "/", "o"));
    let gw = Gateway::builder(config).start().await;
    let m = gw.metrics().await;
    for result in ["ok", "error"] {
        assert_eq!(
            m.value("edgewarden_config_reloads_total", &[("result", result)]),
            Some(0.0)
        );
    }
    // Scrapes do not count as requests.
    let _ = gw.metrics().await;
    assert_eq!(
        gw.metrics().await.count(
            REQUESTS,
            &[
                ("route", "r"),
                ("status_class", "2xx"),
                ("outcome", "forwarded")
            ]
        ),
        0.0
    );
}
