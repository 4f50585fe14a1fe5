//! The admin listener's state-changing endpoints: `POST /drain` and `POST /drain/cancel` need the
//! admin token; refusals change nothing and are counted; `edgewarden drain` drives them.

use std::time::{Duration, Instant};

use crate::support::*;

/// One route to an echo origin, with the admin token and `drain_s`.
async fn gateway(drain_s: u64) -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .server("drain_s", drain_s)
        .with(origin("o", &[origin_.addr]))
        .with(route("r", "/", "o"));
    let gw = Gateway::builder(config).admin_token().start().await;
    (gw, origin_)
}

/// `POST path` on the admin listener, with the token when given.
async fn admin_post(gw: &Gateway, path: &str, token: Option<&str>) -> Response {
    let post = req("POST", path).body("");
    match token {
        Some(token) => post.bearer(token),
        None => post,
    }
    .send(gw.admin)
    .await
}

/// One proxied request on a connection: whether the gateway asked to close it.
async fn closes_connection(gw: &Gateway) -> bool {
    let resp = req("GET", "/x").send(gw.addr).await;
    assert_eq!(resp.status, 200);
    resp.header("connection") == Some("close")
}

fn refusals(m: &Metrics, endpoint: &str, reason: &str) -> f64 {
    m.count(
        "edgewarden_admin_refusals_total",
        &[("endpoint", endpoint), ("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_needs_the_admin_token_and_cancel_restores_readiness() {
    let (gw, _o) = gateway(1).await;

    // No, a wrong, or a non-bearer credential: 401, and nothing changes.
    let basic = format!("Basic {ADMIN_TOKEN}");
    let wrong_length = format!("Bearer {ADMIN_TOKEN}x");
    for (what, credential) in [
        ("none", None),
        ("wrong", Some("Bearer not-the-admin-token-0123456789abcdef")),
        ("longer", Some(wrong_length.as_str())),
        ("basic", Some(basic.as_str())),
    ] {
        let mut drain = req("POST", "/drain").body("");
        if let Some(credential) = credential {
            drain = drain.header("Authorization", credential);
        }
        let resp = drain.send(gw.admin).await;
        assert_eq!(resp.status, 401, "{what}");
        assert_eq!(resp.json(), serde_json::json!({"error": "unauthorized"}));
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{what}");
        assert_eq!(gw.readiness().await, 200, "{what}: readiness changed");
    }
    assert!(!closes_connection(&gw).await);

    // GET is not how state changes, even with the token.
    let resp = req("GET", "/drain")
        .bearer(ADMIN_TOKEN)
        .send(gw.admin)
        .await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("POST"));
    assert_eq!(gw.readiness().await, 200);

    let m = gw.metrics().await;
    assert_eq!(refusals(&m, "drain", "unauthorized"), 4.0);
    assert_eq!(refusals(&m, "drain", "method_not_allowed"), 1.0);
    assert_eq!(refusals(&m, "drain", "not_configured"), 0.0);

    // The token: readiness fails at once, the answer comes after drain_s.
    let started = Instant::now();
    let drained = admin_post(&gw, "/drain", Some(ADMIN_TOKEN)).await;
    assert_eq!(drained.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(gw.readiness().await, 503);
    assert!(closes_connection(&gw).await);

    // Cancelling needs the token too.
    let resp = admin_post(&gw, "/drain/cancel", Some("wrong")).await;
    assert_eq!(resp.status, 401);
    assert_eq!(gw.readiness().await, 503);
    let resp = admin_post(&gw, "/drain/cancel", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["was_draining"], true);
    assert_eq!(gw.readiness().await, 200);

    // Connections are kept alive again: two requests on one connection.
    let mut conn = Conn::open(gw.addr).await;
    for _ in 0..2 {
        let resp = conn.request(&req("GET", "/x")).await.expect("kept alive");
        assert_eq!(resp.status, 200);
        assert_ne!(resp.header("connection"), Some("close"));
    }
    let m = gw.metrics().await;
    assert_eq!(refusals(&m, "drain_cancel", "unauthorized"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_a_drain_that_is_still_waiting() {
    let (gw, _o) = gateway(60).await;
    let started = Instant::now();
    let drain = tokio::spawn(
        req("POST", "/drain")
            .body("")
            .bearer(ADMIN_TOKEN)
            .send(gw.admin),
    );
    let draining = eventually(Duration::from_secs(10), async || {
        gw.readiness().await == 503
    })
    .await;
    assert!(draining, "never draining");
    let cancelled = admin_post(&gw, "/drain/cancel", Some(ADMIN_TOKEN)).await;
    assert_eq!(cancelled.status, 200);
    let answer = drain.await.expect("drain answer");
    assert_eq!(answer.status, 409);
    assert_eq!(answer.json()["error"], "drain_cancelled");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(gw.readiness().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_file_drain_is_forbidden_and_changes_nothing() {
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .server("drain_s", 0)
        .with(origin("o", &[origin_.addr]))
        .with(route("r", "/", "o"));
    let gw = Gateway::builder(config).start().await;
    for path in ["/drain", "/drain/cancel"] {
        for token in [None, Some(ADMIN_TOKEN)] {
            let resp = admin_post(&gw, path, token).await;
            assert_eq!(resp.status, 403, "{path}");
            assert_eq!(
                resp.json(),
                serde_json::json!({"error": "admin_token_file_not_configured"})
            );
            assert_eq!(gw.readiness().await, 200);
        }
    }
    assert!(!closes_connection(&gw).await);
    // Read-only endpoints stay open.
    assert_eq!(get(gw.admin, "/healthz").await.status, 200);
    let m = gw.metrics().await;
    assert_eq!(refusals(&m, "drain", "not_configured"), 2.0);
    assert_eq!(refusals(&m, "drain_cancel", "not_configured"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_the_new_admin_token() {
    let (gw, _o) = gateway(0).await;
    let next = "the-next-admin-token-abcdefghijklmnopqrstuvwxyz";
    std::fs::write(gw.dir().join("admin-token"), next).expect("rotate");
    gw.reload_and_wait("ok").await;
    let old = admin_post(&gw, "/drain/cancel", Some(ADMIN_TOKEN)).await;
    assert_eq!(old.status, 401);
    let new = admin_post(&gw, "/drain", Some(next)).await;
    assert_eq!(new.status, 200);
    assert_eq!(gw.readiness().await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_command_drains_and_cancels_a_running_gateway() {
    let (gw, _o) = gateway(1).await;

    let started = Instant::now();
    let out = edgewarden_async(&["drain"], &gw.config_path).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("drained"), "{}", out.stdout);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "returned before drain_s"
    );
    assert_eq!(gw.readiness().await, 503);

    let out = edgewarden_async(&["drain", "--cancel"], &gw.config_path).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("ready again"), "{}", out.stdout);
    assert_eq!(gw.readiness().await, 200);

    // A configuration with another token: refused, with the reason, and nothing changes.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        other.path().join("admin-token"),
        "another-token-that-is-long-enough-0123456789",
    )
    .expect("token");
    let with_token = Config::new()
        .server("admin_listen", gw.admin.to_string())
        .server("admin_token_file", "admin-token");
    let other_config = with_token.write_in(other.path());
    let out = edgewarden_async(&["drain"], &other_config).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("answered 401"), "{}", out.stderr);
    assert!(
        out.stderr.contains("does not accept the token"),
        "{}",
        out.stderr
    );
    assert_eq!(gw.readiness().await, 200);

    // No token file in the configuration: nothing is sent.
    let mut without_token = with_token.clone();
    without_token.server_mut().remove("admin_token_file");
    without_token.write_in(other.path());
    let out = edgewarden_async(&["drain"], &other_config).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("server.admin_token_file is not set"),
        "{}",
        out.stderr
    );

    // Nobody listening.
    let dead = DeadPort::new();
    let mut nobody = with_token.clone();
    nobody
        .server_mut()
        .update("admin_listen", dead.addr.to_string());
    nobody.write_in(other.path());
    let out = edgewarden_async(&["drain"], &other_config).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("POST http://{}/drain", dead.addr)),
        "{}",
        out.stderr
    );
    assert_eq!(gw.readiness().await, 200);
}
