//! The admin listener's state-changing endpoints: `POST /drain` and `POST /drain/cancel` need the
//! admin token; refusals change nothing and are counted; `edgewarden drain` drives them.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

async fn gateway(server_extra: &str) -> (Gateway, edgewarden_tools::echo::EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let body = [origin("o", &[origin_.addr], ""), route("r", "/", "o", "")].concat();
    let server = format!("{ADMIN_TOKEN_FILE}\n{server_extra}");
    let gw = Gateway::start_with_setup(&body, &server, &write_admin_token).await;
    (gw, origin_)
}

async fn readiness(gw: &Gateway) -> u16 {
    get(gw.admin, "/readyz").await.expect("readyz").status
}

/// One proxied request on a connection: whether the gateway asked to close it.
async fn closes_connection(gw: &Gateway) -> bool {
    let mut conn = Conn::open(gw.addr).await;
    conn.send(format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr).as_bytes())
        .await;
    let resp = conn.read_response(false).await.expect("proxied");
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
    let (gw, _o) = gateway("drain_s = 1").await;

    // No, a wrong, or a non-bearer credential: 401, and nothing changes.
    let basic = format!("Basic {ADMIN_TOKEN}");
    let wrong_length = format!("Bearer {ADMIN_TOKEN}x");
    for (what, headers) in [
        ("none", vec![]),
        (
            "wrong",
            vec![(
                "Authorization",
                "Bearer not-the-admin-token-0123456789abcdef",
            )],
        ),
        ("longer", vec![("Authorization", wrong_length.as_str())]),
        ("basic", vec![("Authorization", basic.as_str())]),
    ] {
        let mut headers = headers;
        headers.push(("Content-Length", "0"));
        let resp = request(gw.admin, "POST", "/drain", &headers)
            .await
            .expect("answer");
        assert_eq!(resp.status, 401, "{what}");
        assert_eq!(resp.json(), serde_json::json!({"error": "unauthorized"}));
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{what}");
        assert_eq!(readiness(&gw).await, 200, "{what}: readiness changed");
    }
    assert!(!closes_connection(&gw).await);

    // GET is not how state changes, even with the token.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let resp = request(gw.admin, "GET", "/drain", &[("Authorization", &bearer)])
        .await
        .expect("answer");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("POST"));
    assert_eq!(readiness(&gw).await, 200);

    let m = gw.metrics().await;
    assert_eq!(refusals(&m, "drain", "unauthorized"), 4.0);
    assert_eq!(refusals(&m, "drain", "method_not_allowed"), 1.0);
    assert_eq!(refusals(&m, "drain", "not_configured"), 0.0);

    // The token: readiness fails at once, the answer comes after drain_s.
    let started = Instant::now();
    let drained = admin_post(gw.admin, "/drain", Some(ADMIN_TOKEN))
        .await
        .expect("drain");
    assert_eq!(drained.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(readiness(&gw).await, 503);
    assert!(closes_connection(&gw).await);

    // Cancelling needs the token too.
    let resp = admin_post(gw.admin, "/drain/cancel", Some("wrong"))
        .await
        .expect("answer");
    assert_eq!(resp.status, 401);
    assert_eq!(readiness(&gw).await, 503);
    let resp = admin_post(gw.admin, "/drain/cancel", Some(ADMIN_TOKEN))
        .await
        .expect("cancel");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["was_draining"], true);
    assert_eq!(readiness(&gw).await, 200);

    // Connections are kept alive again: two requests on one connection.
    let mut conn = Conn::open(gw.addr).await;
    for _ in 0..2 {
        conn.send(format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr).as_bytes())
            .await;
        let resp = conn.read_response(false).await.expect("kept alive");
        assert_eq!(resp.status, 200);
        assert_ne!(resp.header("connection"), Some("close"));
    }
    let m = gw.metrics().await;
    assert_eq!(refusals(&m, "drain_cancel", "unauthorized"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_a_drain_that_is_still_waiting() {
    let (gw, _o) = gateway("drain_s = 60").await;
    let admin = gw.admin;
    let started = Instant::now();
    let drain = tokio::spawn(async move { admin_post(admin, "/drain", Some(ADMIN_TOKEN)).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while readiness(&gw).await != 503 {
        assert!(Instant::now() < deadline, "never draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled = admin_post(gw.admin, "/drain/cancel", Some(ADMIN_TOKEN))
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, 200);
    let answer = drain.await.expect("task").expect("drain answer");
    assert_eq!(answer.status, 409);
    assert_eq!(answer.json()["error"], "drain_cancelled");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(readiness(&gw).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_file_drain_is_forbidden_and_changes_nothing() {
    let origin_ = echo_origin("o").await;
    let body = [origin("o", &[origin_.addr], ""), route("r", "/", "o", "")].concat();
    let gw = Gateway::start_with(&body, "drain_s = 0").await;
    for path in ["/drain", "/drain/cancel"] {
        for token in [None, Some(ADMIN_TOKEN)] {
            let resp = admin_post(gw.admin, path, token).await.expect("answer");
            assert_eq!(resp.status, 403, "{path}");
            assert_eq!(
                resp.json(),
                serde_json::json!({"error": "admin_token_file_not_configured"})
            );
            assert_eq!(readiness(&gw).await, 200);
        }
    }
    assert!(!closes_connection(&gw).await);
    // Read-only endpoints stay open.
    assert_eq!(
        get(gw.admin, "/healthz").await.expect("healthz").status,
        200
    );
    let m = gw.metrics().await;
    assert_eq!(refusals(&m, "drain", "not_configured"), 2.0);
    assert_eq!(refusals(&m, "drain_cancel", "not_configured"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_the_new_admin_token() {
    let (gw, _o) = gateway("drain_s = 0").await;
    let dir = gw.config_path.parent().expect("dir").to_path_buf();
    let next = "the-next-admin-token-abcdefghijklmnopqrstuvwxyz";
    std::fs::write(dir.join("admin-token"), next).expect("rotate");
    gw.reload_and_wait("ok").await;
    let old = admin_post(gw.admin, "/drain/cancel", Some(ADMIN_TOKEN))
        .await
        .expect("answer");
    assert_eq!(old.status, 401);
    let new = admin_post(gw.admin, "/drain", Some(next))
        .await
        .expect("answer");
    assert_eq!(new.status, 200);
    assert_eq!(readiness(&gw).await, 503);
}

/// `edgewarden drain ARGS` (blocking, off the runtime): exit code, stdout, stderr.
async fn drain_command(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .arg("drain")
            .args(args)
            .output()
            .expect("run drain");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_command_drains_and_cancels_a_running_gateway() {
    let (gw, _o) = gateway("drain_s = 1").await;
    let config = gw.config_path.display().to_string();

    let started = Instant::now();
    let (code, stdout, stderr) = drain_command(vec!["-c".into(), config.clone()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("drained"), "{stdout}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "returned before drain_s"
    );
    assert_eq!(readiness(&gw).await, 503);

    let (code, stdout, stderr) =
        drain_command(vec!["-c".into(), config.clone(), "--cancel".into()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ready again"), "{stdout}");
    assert_eq!(readiness(&gw).await, 200);

    // A configuration with another token: refused, with the reason, and nothing changes.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        other.path().join("admin-token"),
        "another-token-that-is-long-enough-0123456789",
    )
    .expect("token");
    let other_config = other.path().join("edgewarden.toml");
    std::fs::write(
        &other_config,
        format!(
            "[server]\nadmin_listen = \"{}\"\n{ADMIN_TOKEN_FILE}\n",
            gw.admin
        ),
    )
    .expect("config");
    let (code, _, stderr) =
        drain_command(vec!["-c".into(), other_config.display().to_string()]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("answered 401"), "{stderr}");
    assert!(stderr.contains("does not accept the token"), "{stderr}");
    assert_eq!(readiness(&gw).await, 200);

    // No token file in the configuration: nothing is sent.
    std::fs::write(
        &other_config,
        format!("[server]\nadmin_listen = \"{}\"\n", gw.admin),
    )
    .expect("config");
    let (code, _, stderr) =
        drain_command(vec!["-c".into(), other_config.display().to_string()]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("server.admin_token_file is not set"),
        "{stderr}"
    );

    // Nobody listening.
    let dead = DeadPort::new();
    std::fs::write(
        &other_config,
        format!(
            "[server]\nadmin_listen = \"{}\"\n{ADMIN_TOKEN_FILE}\n",
            dead.addr
        ),
    )
    .expect("config");
    let (code, _, stderr) =
        drain_command(vec!["-c".into(), other_config.display().to_string()]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("POST http://{}/drain", dead.addr)),
        "{stderr}"
    );
    assert_eq!(readiness(&gw).await, 200);
}
