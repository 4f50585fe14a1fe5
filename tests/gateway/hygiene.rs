//! What crosses the proxy: hop-by-hop fields, X-Forwarded-*, the request id.

use crate::support::*;

async fn single_origin_gateway() -> (Gateway, EchoOrigin) {
    let a = echo_origin("a").await;
    let config = Config::new()
        .with(origin("a", &[a.addr]))
        .with(route("all", "/", "a"));
    (Gateway::builder(config).start().await, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_connection_named_request_headers_are_not_forwarded() {
    let (gw, _a) = single_origin_gateway().await;
    let resp = req("GET", "/x")
        .headers(&[
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "must-not-pass"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-End-To-End", "kept"),
        ])
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    let seen = resp.origin_saw();
    for name in [
        "connection",
        "x-secret-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            !seen.contains_key(name),
            "{name} reached the origin: {seen:?}"
        );
    }
    assert_eq!(seen.get("x-end-to-end"), Some(&vec!["kept".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_connection_named_response_headers_are_not_returned() {
    let (gw, _a) = single_origin_gateway().await;
    let resp = req("GET", "/x")
        .headers(&[
            ("x-echo-set", "Connection=X-Origin-Hop"),
            ("x-echo-set", "X-Origin-Hop=secret"),
            ("x-echo-set", "Keep-Alive=timeout=99"),
            ("x-echo-set", "Proxy-Connection=keep-alive"),
            ("x-echo-set", "X-Origin-End=kept"),
        ])
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("x-origin-hop").is_none(), "{:?}", resp.headers);
    assert!(
        resp.header("proxy-connection").is_none(),
        "{:?}",
        resp.headers
    );
    assert_ne!(resp.header("keep-alive"), Some("timeout=99"));
    assert_ne!(resp.header("connection"), Some("X-Origin-Hop"));
    assert_eq!(resp.header("x-origin-end"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_client_are_replaced_by_the_gateways() {
    let (gw, _a) = single_origin_gateway().await;
    let resp = req("GET", "/x")
        .headers(&[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "spoofed.example"),
        ])
        .send(gw.addr)
        .await;
    let seen = resp.origin_saw();
    assert_eq!(seen["x-forwarded-for"], vec!["127.0.0.1".to_string()]);
    assert_eq!(seen["x-forwarded-proto"], vec!["http".to_string()]);
    assert_eq!(seen["x-forwarded-host"], vec![gw.addr.to_string()]);

    let resp = get(gw.addr, "/x").await;
    assert_eq!(
        resp.origin_saw()["x-forwarded-for"],
        vec!["127.0.0.1".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_when_sane_replaced_when_not_and_echoed() {
    let (gw, _a) = single_origin_gateway().await;

    let resp = req("GET", "/x")
        .header("X-Request-Id", "client-abc.123")
        .send(gw.addr)
        .await;
    assert_eq!(resp.header("x-request-id"), Some("client-abc.123"));
    assert_eq!(
        resp.origin_saw()["x-request-id"],
        vec!["client-abc.123".to_string()]
    );

    let resp = req("GET", "/x")
        .header("X-Request-Id", "bad id <script>")
        .send(gw.addr)
        .await;
    let id = resp
        .header("x-request-id")
        .expect("generated id")
        .to_string();
    assert_ne!(id, "bad id <script>");
    assert_eq!(id.len(), 32);
    assert_eq!(resp.origin_saw()["x-request-id"], vec![id]);

    let first = get(gw.addr, "/x").await;
    let second = get(gw.addr, "/x").await;
    let (a, b) = (
        first.header("x-request-id").expect("id"),
        second.header("x-request-id").expect("id"),
    );
    assert_ne!(a, b);
    assert_eq!(first.origin_saw()["x-request-id"], vec![a.to_string()]);
}
