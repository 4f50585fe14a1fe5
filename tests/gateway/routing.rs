//! Route selection through the running gateway, and the gateway's own 404/405 answers.

use crate::common::*;

async fn three_origins() -> (Gateway, [edgewarden_tools::echo::EchoOrigin; 3]) {
    let a = echo_origin("a").await;
    let b = echo_origin("b").await;
    let c = echo_origin("c").await;
    let body = [
        origin("a", &[a.addr], ""),
        origin("b", &[b.addr], ""),
        origin("c", &[c.addr], ""),
        route("root", "/", "a", ""),
        route("api", "/api", "b", ""),
        route("api-v2-read", "/api/v2", "c", "methods = [\"GET\"]"),
        route(
            "api-v2-write",
            "/api/v2",
            "a",
            "methods = [\"POST\", \"PUT\"]",
        ),
        route("admin-host", "/", "c", "host = \"admin.example.com\""),
        route(
            "admin-host-api",
            "/api",
            "a",
            "host = \"admin.example.com\"\nmethods = [\"GET\"]",
        ),
    ]
    .concat();
    (Gateway::start(&body).await, [a, b, c])
}

async fn served_by(gw: &Gateway, method: &str, path: &str, host: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = host.map(|h| vec![("Host", h)]).unwrap_or_default();
    let mut conn = Conn::open(gw.addr).await;
    let host_line = if host.is_none() {
        format!("Host: {}\r\n", gw.addr)
    } else {
        String::new()
    };
    let mut raw = format!("{method} {path} HTTP/1.1\r\n{host_line}");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("Content-Length: 0\r\n\r\n");
    conn.send(raw.as_bytes()).await;
    let resp = conn
        .read_response(method == "HEAD")
        .await
        .expect("response");
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
    let body = [
        origin("a", &[a.addr], ""),
        route("api", "/api", "a", "methods = [\"GET\", \"POST\"]"),
    ]
    .concat();
    let gw = Gateway::start(&body).await;

    let resp = get(gw.addr, "/nowhere").await.expect("response");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let json = resp.json();
    assert_eq!(json["error"], "no_route");
    let id = resp.header("x-request-id").expect("request id header");
    assert_eq!(json["request_id"], id);

    let resp = request(gw.addr, "DELETE", "/api/thing", &[])
        .await
        .expect("response");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(resp.json()["error"], "method_not_allowed");
    assert_eq!(a.hits(), 0, "rejected requests must not reach the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_written_404_keeps_the_connection_alive() {
    let a = echo_origin("a").await;
    let body = [origin("a", &[a.addr], ""), route("api", "/api", "a", "")].concat();
    let gw = Gateway::start(&body).await;

    let mut conn = Conn::open(gw.addr).await;
    for _ in 0..3 {
        conn.send(format!("GET /nowhere HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr).as_bytes())
            .await;
        let resp = conn
            .read_response(false)
            .await
            .expect("404 on the same connection");
        assert_eq!(resp.status, 404);
        assert_ne!(resp.header("connection"), Some("close"));
    }
    // A small body on a rejected request is drained and the connection still serves the next one.
    conn.send(
        format!(
            "POST /nowhere HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\n\r\nhello",
            gw.addr
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(conn.read_response(false).await.expect("404").status, 404);
    conn.send(format!("GET /api/ok HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr).as_bytes())
        .await;
    let resp = conn
        .read_response(false)
        .await
        .expect("routed on the same connection");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/api/ok");
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_rejected_and_never_forwarded() {
    let a = echo_origin("a").await;
    let body = [origin("a", &[a.addr], ""), route("root", "/", "a", "")].concat();
    let gw = Gateway::start(&body).await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/a%2Fb",
        "//admin",
        "/a/./b",
    ] {
        let resp = get(gw.addr, path).await.expect("response");
        assert_eq!(resp.status, 400, "{path}");
        assert_eq!(resp.json()["error"], "ambiguous_path", "{path}");
    }
    assert_eq!(a.hits(), 0);
    assert_eq!(
        get(gw.addr, "/fine/path").await.expect("response").status,
        200
    );
}
