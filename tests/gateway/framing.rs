//! Requests whose framing two parsers could read differently are rejected, never forwarded.

use std::time::Duration;

use crate::support::*;

async fn gateway() -> (Gateway, EchoOrigin) {
    let a = echo_origin("a").await;
    let config = Config::new()
        .with(origin("a", &[a.addr]))
        .with(route("all", "/", "a"));
    (Gateway::builder(config).start().await, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_rejected_and_not_forwarded() {
    let (gw, origin) = gateway().await;
    let mut conn = Conn::open(gw.addr).await;
    // A classic CL.TE smuggling attempt: the chunked body hides a second request.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunk = format!("0\r\n\r\n{smuggled}");
    conn.send(
        format!(
            "POST /x HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}",
            gw.addr,
            chunk.len()
        )
        .as_bytes(),
    )
    .await;
    let resp = conn.read_response(false).await.expect("response");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"], "ambiguous_framing");
    assert!(
        conn.is_closed_within(Duration::from_secs(5)).await,
        "connection must close after ambiguous framing"
    );
    assert_eq!(origin.hits(), 0, "nothing may reach the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_with_lowercase_content_length_is_rejected() {
    let (gw, origin) = gateway().await;
    let mut conn = Conn::open(gw.addr).await;
    conn.send(
        format!("POST /x HTTP/1.1\r\nHost: {}\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n", gw.addr)
            .as_bytes(),
    )
    .await;
    assert_eq!(
        conn.read_response(false).await.expect("response").status,
        400
    );
    assert_eq!(origin.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_duplicate_content_length_is_rejected_and_not_forwarded() {
    let (gw, origin) = gateway().await;
    let mut conn = Conn::open(gw.addr).await;
    conn.send(
        format!(
            "POST /x HTTP/1.1\r\nHost: {}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            gw.addr
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        conn.read_response(false).await.expect("response").status,
        400
    );
    assert_eq!(origin.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_host_headers_are_rejected() {
    let (gw, origin) = gateway().await;
    let resp = req("GET", "/x")
        .header("Host", "evil.example")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(origin.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_alone_is_forwarded_intact() {
    let (gw, origin) = gateway().await;
    let mut conn = Conn::open(gw.addr).await;
    conn.send(format!("POST /x HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", gw.addr).as_bytes())
        .await;
    let resp = conn.read_response(false).await.expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["body"], "hello");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_requests_body_is_never_read_as_a_second_request() {
    let (gw, origin) = gateway().await;
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr);

    // Small body: drained as a body, then the connection serves the client's real next request.
    let mut conn = Conn::open(gw.addr).await;
    conn.send(
        format!(
            "POST /../x HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{smuggled}",
            gw.addr,
            smuggled.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        conn.read_response(false).await.expect("response").status,
        400
    );
    let resp = conn
        .request(&req("GET", "/real"))
        .await
        .expect("next request on the same connection");
    assert_eq!(resp.json()["path"], "/real");

    // Large body: not drained; the connection closes after the answer.
    let mut conn = Conn::open(gw.addr).await;
    let padding = "x".repeat(100_000);
    let body = format!("{smuggled}{padding}");
    conn.send(
        format!(
            "POST /../x HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            gw.addr,
            body.len()
        )
        .as_bytes(),
    )
    .await;
    conn.send(smuggled.as_bytes()).await;
    assert_eq!(
        conn.read_response(false).await.expect("response").status,
        400
    );
    assert!(
        conn.is_closed_within(Duration::from_secs(5)).await,
        "connection must close instead of draining 100 kB"
    );

    assert_eq!(origin.hits(), 1, "only the real request reaches the origin");
}
