//! Route selection through the running gateway, and the gateway's own 404/405 answers.

use crate::support::*;

async fn three_origins() -> (Gateway, [EchoOrigin; 3]) {
    let a = echo_origin("a").await;
    let b = echo_origin("b").await;
    let c = echo_origin("c").await;
    let config = Config::new()
        .with(origin("a", &[a.addr]))
        .with(origin("b", &[b.addr]))
        .with(origin("c", &[c.addr]))
        .with(route("root", "/", "a"))
        .with(route("api", "/api", "b"))
        .with(route("api-v2-read", "/api/v2", "c").set("methods", ["GET"]))
        .with(route("api-v2-write", "/api/v2", "a").set("methods", ["POST", "PUT"]))
        .with(route("admin-host", "/", "c").set("host", "admin.example.com"))
        .with(
            route("admin-host-api", "/api", "a")
                .set("host", "admin.example.com")
                .set("methods", ["GET"]),
        );
    (Gateway::builder(config).start().await, [a, b, c])
}

/// The status, and which origin answered (empty when none did, or for HEAD).
async fn served_by(gw: &Gateway, method: &str, path: &str, host: Option<&str>) -> (u16, String) {
    let request = req(method, path).body("");
    let request = match host {
        Some(host) => request.host(host),
        None => request,
    };
    let resp = request.send(gw.addr).await;
    let origin = if resp.status == 200 && method != "HEAD" {
        resp.json()["origin"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    (resp.status, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_matrix_host_prefix_method_longest_prefix() {
    let (gw, _origins) = three_origins().await;
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("GET", "/", None, 200, "a"),
        ("GET", "/anything/else", None, 200, "a"),
        ("GET", "/api", None, 200, "b"),
        ("DELETE", "/api/users/1", None, 200, "b"),
        ("GET", "/apix", None, 200, "a"),
        ("GET", "/api/v2/items", None, 200, "c"),
        ("HEAD", "/api/v2/items", None, 200, ""),
        ("POST", "/api/v2/items", None, 200, "a"),
        ("PUT", "/api/v2", None, 200, "a"),
        ("DELETE", "/api/v2/items", None, 405, ""),
        ("GET", "/api/v2x", None, 200, "b"),
        ("GET", "/", Some("admin.example.com"), 200, "c"),
        ("GET", "/api/x", Some("ADMIN.Example.com:8443"), 200, "a"),
        ("POST", "/api/x", Some("admin.example.com"), 405, ""),
        ("GET", "/api/x", Some("other.example.com"), 200, "b"),
    ];
    for (method, path, host, status, origin) in cases {
        let got = served_by(&gw, method, path, *host).await;
        assert_eq!(
            got,
            (*status, origin.to_string()),
            "{method} {path} host={host:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_path_gets_404_json_and_method_mismatch_gets_405_with_allow() {
    let a = echo_origin("a").await;
    let config = Config::new()
        .with(origin("a", &[a.addr]))
        .with(route("api", "/api", "a").set("methods", ["GET", "POST"]));
    let gw = Gateway::builder(config).start().await;

    let resp = get(gw.addr, "/nowhere").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let json = resp.json();
    assert_eq!(json["error"], "no_route");
    let id = resp.header("x-request-id").expect("request id header");
    assert_eq!(json["request_id"], id);

    let resp = req("DELETE", "/api/thing").send(gw.addr).await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(resp.json()["error"], "method_not_allowed");
    assert_eq!(a.hits(), 0, "rejected requests must not reach the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_written_404_keeps_the_connection_alive() {
    let a = echo_origin("a").await;
    let config = Config::new()
        .with(origin("a", &[a.addr]))
        .with(route("api", "/api", "a"));
    let gw = Gateway::builder(config).start().await;

    let mut conn = Conn::open(gw.addr).await;
    for _ in 0..3 {
        let resp = conn
            .request(&req("GET", "/nowhere"))
            .await
            .expect("404 on the same connection");
        assert_eq!(resp.status, 404);
        assert_ne!(resp.header("connection"), Some("close"));
    }
    // A small body on a rejected request is drained and the connection still serves the next one.
    let post = req("POST", "/nowhere").body("hello");
    assert_eq!(conn.request(&post).await.expect("404").status, 404);
    let resp = conn
        .request(&req("GET", "/api/ok"))
        .await
        .expect("routed on the same connection");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/api/ok");
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_rejected_and_never_forwarded() {
    let a = echo_origin("a").await;
    let config = Config::new()
        .with(origin("a", &[a.addr]))
        .with(route("root", "/", "a"));
    let gw = Gateway::builder(config).start().await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/a%2Fb",
        "//admin",
        "/a/./b",
    ] {
        let resp = get(gw.addr, path).await;
        assert_eq!(resp.status, 400, "{path}");
        assert_eq!(resp.json()["error"], "ambiguous_path", "{path}");
    }
    assert_eq!(a.hits(), 0);
    assert_eq!(get(gw.addr, "/fine/path").await.status, 200);
}
