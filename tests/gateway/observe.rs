//! What operators see: the decision trace header, shadow policies and the access log.

use std::time::{Duration, Instant};

use crate::support::*;

const SECRET: &str = "trace-secret-0123456789";
const TRACE: &str = "x-edgewarden-trace";
const TRACE_KEY: &str = "x-edgewarden-trace-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_header_names_the_deciding_step_only_when_asked() {
    let signer = Signer::rsa(RSA_A, "key-a");
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .server("trace_secret", SECRET)
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("auth", "required"))
        .with(route("open", "/open", "o").set("debug_trace", true))
        .with(route("staff", "/staff", "o").set("policies", ["admins"]));
    let gw = Gateway::builder(config)
        .plugin("require_claim", "python-plugins/require_claim")
        .policy("admins", admins_only())
        .start()
        .await;
    let trace_of = async |path: &str, headers: &[(&str, &str)]| {
        let resp = req("GET", path).headers(headers).send(gw.addr).await;
        (resp.status, resp.header(TRACE).map(str::to_string), resp)
    };

    let (status, trace, _) = trace_of("/api/x", &[]).await;
    assert_eq!((status, trace), (401, None), "not asked for");
    let (status, trace, _) = trace_of("/api/x", &[(TRACE_KEY, "wrong-secret-0123456789")]).await;
    assert_eq!((status, trace), (401, None), "wrong secret");
    let (_, trace, _) = trace_of("/api/x", &[(TRACE_KEY, SECRET)]).await;
    assert_eq!(trace.as_deref(), Some("auth:missing_token"));

    let token = signer.token(&good_claims("user-7"));
    let bearer = format!("Bearer {token}");
    let (status, trace, resp) =
        trace_of("/api/x", &[(TRACE_KEY, SECRET), ("Authorization", &bearer)]).await;
    assert_eq!((status, trace.as_deref()), (200, Some("forward:o")));
    assert!(
        !resp.origin_saw().contains_key(TRACE_KEY),
        "the secret never reaches the origin"
    );

    let (_, trace, _) = trace_of("/open/x", &[]).await;
    assert_eq!(trace.as_deref(), Some("forward:o"), "debug_trace route");
    let (_, trace, _) = trace_of("/nowhere", &[(TRACE_KEY, SECRET)]).await;
    assert_eq!(trace.as_deref(), Some("gateway:no_route"));
    let (status, trace, _) = trace_of("/staff/x", &[(TRACE_KEY, SECRET)]).await;
    assert_eq!(
        (status, trace.as_deref()),
        (403, Some("policy:admins:respond:403"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_policy_is_counted_but_never_changes_the_response() {
    let origin_ = echo_origin("o").await;
    let config =
        Config::new()
            .with(origin("o", &[origin_.addr]))
            .with(route("shadowed", "/", "o").set(
                "policies",
                serde_json::json!([
                    {"policy": "admins", "mode": "shadow"},
                    {"policy": "misbehave-shadow", "mode": "shadow"},
                ]),
            ));
    let gw = Gateway::builder(config)
        .plugin("require_claim", "python-plugins/require_claim")
        .policy("admins", admins_only())
        .plugin("misbehave", "tests/plugins/misbehave")
        .policy(
            "misbehave-shadow",
            policy("misbehave")
                .set("timeout_ms", 50)
                .set("deadline_ms", 400)
                .set("allow_headers", ["x-misbehave-ok"]),
        )
        .start()
        .await;

    // Both would act (a 403, a header); neither does.
    let resp = req("GET", "/x")
        .header("x-misbehave", "none")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert!(!resp.origin_saw().contains_key("x-misbehave-ok"));
    // A shadow policy stuck until its 400 ms deadline does not hold the request.
    let started = Instant::now();
    let resp = req("GET", "/x")
        .header("x-misbehave", "sleep")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    let shadow = |m: &Metrics, policy: &str, decision: &str| {
        m.count(
            "edgewarden_plugin_shadow_decisions_total",
            &[("policy", policy), ("decision", decision)],
        )
    };
    let m = gw
        .metrics_when(|m| m.total("edgewarden_plugin_shadow_decisions_total") >= 4.0)
        .await;
    assert_eq!(shadow(&m, "admins", "respond"), 2.0, "{}", m.0);
    assert_eq!(shadow(&m, "misbehave-shadow", "forward"), 1.0);
    assert_eq!(shadow(&m, "misbehave-shadow", "error"), 1.0);
    assert_eq!(origin_.hits(), 2);
}

/// Access-log lines (JSON) whose `request_id` starts with `prefix`, once `count` are written.
async fn access_lines(gw: &Gateway, prefix: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = gw
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v: &serde_json::Value| {
                v["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(prefix))
            })
            .collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_a_json_line_per_request_and_never_a_token_or_cookie() {
    let signer = Signer::rsa(RSA_A, "key-a");
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(
            route("api", "/api", "o")
                .set("auth", "required")
                .set("token_from", ["header", "query:access_token"]),
        )
        .with(section("access_log").set("query", true));
    let gw = Gateway::builder(config).start().await;
    let token = signer.token(&good_claims("user-7"));
    let bearer = format!("Bearer {token}");
    let cookie = "session=cookie-value-secret";
    let sent = [
        ("log-1", "/api/a?x=1".to_string(), None),
        ("log-2", "/api/b".to_string(), Some(bearer.as_str())),
        ("log-3", format!("/api/c?access_token={token}&y=2"), None),
        (
            "log-4",
            "/api/d?access_token=not.a.token&z=3".to_string(),
            None,
        ),
    ];
    for (id, path, auth) in &sent {
        let mut headers = vec![("x-request-id", *id), ("cookie", cookie)];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        req("GET", path).headers(&headers).send(gw.addr).await;
    }
    let mut lines = access_lines(&gw, "log-", 4).await;
    // Each line is written just after its answer; order them by request.
    lines.sort_by_key(|l| l["request_id"].as_str().unwrap_or_default().to_string());
    assert_eq!(lines.len(), 4, "{}", gw.stdout());
    let rejected = &lines[0];
    assert_eq!(rejected["request_id"], "log-1");
    assert_eq!(rejected["route"], "api");
    assert_eq!(rejected["method"], "GET");
    assert_eq!(rejected["path"], "/api/a");
    assert_eq!(rejected["query"], "x=1");
    assert_eq!(rejected["status"], 401);
    assert_eq!(rejected["outcome"], "rejected");
    assert_eq!(rejected["reason"], "missing_token");
    assert_eq!(rejected["client_ip"], "127.0.0.1");
    assert!(rejected["total_us"].is_u64() && rejected["auth_us"].is_u64());
    assert!(rejected["upstream_us"].is_null());

    let forwarded = &lines[1];
    assert_eq!(forwarded["status"], 200);
    assert_eq!(forwarded["outcome"], "forwarded");
    assert!(forwarded["upstream_us"].is_u64());
    assert!(forwarded["reason"].is_null());
    // An accepted query token is taken off the request before forwarding: the line shows the
    // query as forwarded. A refused one is still in the query, redacted.
    assert_eq!(lines[2]["query"], "y=2");
    assert_eq!(lines[2]["status"], 200);
    assert_eq!(lines[3]["query"], "access_token=REDACTED&z=3");
    assert_eq!(lines[3]["status"], 401);

    let out = gw.stdout();
    assert!(!out.contains(&token), "a token in the access log");
    assert!(
        !out.contains("not.a.token"),
        "a refused token in the access log"
    );
    assert!(
        !out.contains("cookie-value-secret"),
        "a cookie in the access log"
    );
    assert!(
        !gw.stderr().contains("log-1"),
        "access lines stay out of the diagnostics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_access_log_section_nothing_is_written_to_stdout() {
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("r", "/", "o"));
    let gw = Gateway::builder(config).start().await;
    req("GET", "/x")
        .header("x-request-id", "quiet-1")
        .send(gw.addr)
        .await;
    // The request is counted just after its answer; once it is, its log line would be written.
    gw.metrics_when(|m| {
        m.count(
            "edgewarden_request_duration_seconds_count",
            &[("route", "r")],
        ) >= 1.0
    })
    .await;
    assert!(!gw.stdout().contains("quiet-1"), "{}", gw.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_only_logs_rejections_and_skips_forwarded_requests() {
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("r", "/r", "o"))
        .with(section("access_log").set("errors_only", true));
    let gw = Gateway::builder(config).start().await;
    for (id, path) in [("only-1", "/r/x"), ("only-2", "/missing")] {
        req("GET", path)
            .header("x-request-id", id)
            .send(gw.addr)
            .await;
    }
    let lines = access_lines(&gw, "only-", 1).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["request_id"], "only-2");
    assert_eq!(lines[0]["reason"], "no_route");
}
