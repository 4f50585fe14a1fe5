//! A route's bounds on the request: header bytes (431), body size (413, declared or counted while
//! a chunked body streams) and the body's deadline (408). For each, what the origin received is
//! asserted: nothing beyond the limit reaches it.

use std::time::{Duration, Instant};

use crate::support::*;

const LIMIT: usize = 1000;

async fn gateway(upstream: std::net::SocketAddr) -> Gateway {
    let config = Config::new()
        .with(origin("o", &[upstream]))
        .with(
            route("upload", "/upload", "o")
                .set("max_body_bytes", LIMIT as u64)
                .set("max_header_bytes", 2048)
                .set("body_timeout_ms", 600),
        )
        .with(route("free", "/", "o"));
    Gateway::builder(config).start().await
}

/// The body bytes of a recorded connection (after the request head).
fn body_of(connection: &[u8]) -> &[u8] {
    let end = connection
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(connection.len(), |p| p + 4);
    &connection[end..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_read() {
    let echo = echo_origin("o").await;
    let gw = gateway(echo.addr).await;
    let resp = req("POST", "/upload")
        .body(vec![b'x'; LIMIT + 1])
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["error"], "body_too_large");
    assert_eq!(echo.hits(), 0, "the origin is not even connected to");
    // At the limit the body goes through whole; on another route there is no limit.
    let resp = req("POST", "/upload")
        .body(vec![b'x'; LIMIT])
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["body"].as_str().map(str::len), Some(LIMIT));
    let resp = req("POST", "/other")
        .body(vec![b'x'; 4 * LIMIT])
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    let m = gw
        .metrics_when(|m| {
            m.count(
                "edgewarden_gateway_rejections_total",
                &[("reason", "body_too_large")],
            ) >= 1.0
        })
        .await;
    assert_eq!(
        m.count(
            "edgewarden_gateway_rejections_total",
            &[("reason", "body_too_large")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_cut_at_the_limit_and_answered_413() {
    let origin_ = RecordingOrigin::start().await;
    let gw = gateway(origin_.addr).await;
    let mut conn = Conn::open(gw.addr).await;
    conn.send(b"POST /upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    // Three chunks of 600 bytes, each its own letter, sent apart so they stream one by one.
    for letter in [b'a', b'b', b'c'] {
        let mut chunk = b"258\r\n".to_vec();
        chunk.extend(std::iter::repeat_n(letter, 600));
        chunk.extend_from_slice(b"\r\n");
        // The gateway may answer and close once the limit is crossed.
        if !conn.try_send(&chunk).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.try_send(b"0\r\n\r\n").await;
    let resp = conn.read_response(false).await.expect("an answer");
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["error"], "body_too_large");
    assert!(
        eventually(Duration::from_secs(5), async || !origin_
            .connections()
            .is_empty())
        .await,
        "the origin's connection was not closed"
    );
    for connection in origin_.connections() {
        let body = body_of(&connection);
        let letters = body.iter().filter(|b| b.is_ascii_lowercase()).count();
        assert!(letters <= LIMIT, "{letters} body bytes reached the origin");
        assert!(
            !body.contains(&b'b') && !body.contains(&b'c'),
            "bytes past the limit reached the origin: {:?}",
            String::from_utf8_lossy(body)
        );
        assert!(
            !body.ends_with(b"0\r\n\r\n"),
            "the origin saw a complete body"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_or_dribbles_past_its_deadline_gets_408() {
    let origin_ = RecordingOrigin::start().await;
    let gw = gateway(origin_.addr).await;
    // Stalls: ten bytes of a hundred, then nothing.
    let mut conn = Conn::open(gw.addr).await;
    let started = Instant::now();
    conn.send(b"POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    let resp = conn.read_response(false).await.expect("an answer");
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert_eq!(resp.json()["error"], "body_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Dribbles: a byte every 100 ms keeps every read short but misses the deadline.
    let mut conn = Conn::open(gw.addr).await;
    let started = Instant::now();
    conn.send(b"POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n")
        .await;
    let dribble = async {
        for _ in 0..100 {
            if !conn.try_send(b"x").await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), dribble).await;
    let resp = conn.read_response(false).await.expect("an answer");
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(5), async || origin_.connections().len()
            >= 2)
        .await,
        "the origin's connections were not closed"
    );
    for connection in origin_.connections() {
        assert!(
            body_of(&connection).len() < 100,
            "a whole body reached the origin"
        );
    }
    let m = gw
        .metrics_when(|m| {
            m.count(
                "edgewarden_gateway_rejections_total",
                &[("reason", "body_timeout")],
            ) >= 2.0
        })
        .await;
    assert_eq!(
        m.count("edgewarden_upstream_errors_total", &[]),
        0.0,
        "a slow client is not an upstream error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_fields_over_the_route_limit_get_431_and_the_connection_serves_on() {
    let echo = echo_origin("o").await;
    let gw = gateway(echo.addr).await;
    let mut conn = Conn::open(gw.addr).await;
    let big = "v".repeat(2100);
    let resp = conn
        .request(&req("GET", "/upload").header("x-big", &big))
        .await
        .expect("an answer");
    assert_eq!(resp.status, 431);
    assert_eq!(resp.json()["error"], "headers_too_large");
    // Many small fields count together.
    let many: Vec<(String, String)> = (0..40)
        .map(|i| (format!("x-f{i}"), "v".repeat(60)))
        .collect();
    let fields: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let resp = conn
        .request(&req("GET", "/upload").headers(&fields))
        .await
        .expect("an answer");
    assert_eq!(resp.status, 431);
    assert_eq!(echo.hits(), 0);
    let resp = conn
        .request(&req("GET", "/upload"))
        .await
        .expect("an answer");
    assert_eq!(resp.status, 200, "the connection serves the next request");
    let resp = conn
        .request(&req("GET", "/other").header("x-big", &big))
        .await
        .expect("an answer");
    assert_eq!(resp.status, 200, "other routes have no such limit");
}
