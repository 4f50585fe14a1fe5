//! Origins that misbehave: three real upstreams (one refusing, one too slow to answer, one
//! healthy) behind one origin, retries that never repeat what may have reached an application,
//! passive health, a body that stalls mid-way, and answers that are not HTTP.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const POOL: [(&str, &str); 1] = [("origin", "pool")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_and_slow_upstreams_are_retried_or_taken_out_and_the_healthy_one_serves() {
    let refusing = DeadPort::new();
    let slow = MisbehavingOrigin::start(Misbehaviour::NeverAnswers).await;
    let healthy = echo_origin("healthy").await;
    let config = Config::new()
        .with(
            origin("pool", &[refusing.addr, slow.addr, healthy.addr])
                .set("read_timeout_ms", 300)
                .set(
                    "passive_health",
                    serde_json::json!({
                        "consecutive_failures": 2, "eject_s": 120, "max_ejected_percent": 70
                    }),
                ),
        )
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;

    let mut statuses = Vec::new();
    for i in 0..15 {
        let started = Instant::now();
        let resp = get(gw.addr, &format!("/r{i}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            started.elapsed()
        );
        if resp.status != 200 {
            assert_eq!(resp.status, 504, "request {i}");
            assert_eq!(resp.json()["error"], "upstream_timeout");
        }
        statuses.push(resp.status);
    }
    // A refused connect is tried on the next upstream, so it never reaches the client; a request
    // the slow upstream read may have reached its application and is not repeated (504). Two
    // failures in a row take each bad upstream out, after which every request is served.
    assert_eq!(
        slow.requests().len(),
        2,
        "the slow upstream kept getting requests: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 504).count(),
        2,
        "{statuses:?}"
    );
    assert!(
        statuses[statuses.len() - 6..].iter().all(|&s| s == 200),
        "{statuses:?}"
    );
    assert_eq!(healthy.hits(), 13);

    let m = gw
        .metrics_when(|m| m.count("edgewarden_upstream_ejections_total", &POOL) >= 2.0)
        .await;
    assert_eq!(m.count("edgewarden_upstream_ejections_total", &POOL), 2.0);
    let refused = m.count(
        "edgewarden_upstream_errors_total",
        &[("origin", "pool"), ("kind", "connect_refused")],
    );
    assert_eq!(refused, 2.0, "refused connects before it was taken out");
    assert_eq!(
        m.count("edgewarden_upstream_retries_total", &POOL),
        refused,
        "each refused connect is retried once"
    );
    assert_eq!(
        m.count(
            "edgewarden_upstream_errors_total",
            &[("origin", "pool"), ("kind", "read_timeout")]
        ),
        2.0
    );
}

/// How many times `flaky` read a request whose first line is `line`.
fn times_seen(flaky: &MisbehavingOrigin, line: &str) -> usize {
    flaky
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(r).lines().next() == Some(line))
        .count()
}

/// Each request of the same kind runs in turn, each client on its own connection: whether it
/// takes the upstream connection the previous one left in Pingora's pool, or a new one (when the
/// pool has not got it back yet), is up to timing; the properties below hold either way, and
/// enough requests run for a pooled connection to be met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_pooled_connection_is_retried_only_for_a_body_less_idempotent_request() {
    let flaky = MisbehavingOrigin::start(Misbehaviour::DropsSecondRequest).await;
    let config = Config::new()
        .with(origin("pool", &[flaky.addr]))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;
    const EACH: usize = 8;

    // A GET or DELETE without a body that meets a dead pooled connection goes again, on a new
    // connection: every one is answered, and some were read twice.
    let mut sent_again = 0;
    for method in ["GET", "DELETE"] {
        for i in 0..EACH {
            let path = format!("/{method}-{i}");
            assert_eq!(
                req(method, &path).send(gw.addr).await.status,
                200,
                "{method} {path}"
            );
            let seen = times_seen(&flaky, &format!("{method} {path} HTTP/1.1"));
            assert!((1..=2).contains(&seen), "{method} {path} read {seen} times");
            sent_again += seen - 1;
        }
    }
    assert!(sent_again > 0, "no request met a pooled connection");

    // Neither a request with a body (even an idempotent PUT) nor a POST is ever sent twice: one
    // that meets a dead pooled connection is answered 502.
    for (method, body) in [("PUT", "put-body"), ("POST", "")] {
        let mut refused = 0;
        for i in 0..EACH {
            let path = format!("/{method}-{i}");
            let resp = req(method, &path).body(body).send(gw.addr).await;
            match resp.status {
                200 => {}
                502 => {
                    assert_eq!(resp.json()["error"], "upstream_unavailable");
                    refused += 1;
                }
                other => panic!("{method} {path}: {other}"),
            }
            let seen = times_seen(&flaky, &format!("{method} {path} HTTP/1.1"));
            assert_eq!(seen, 1, "{method} {path} read {seen} times");
        }
        assert!(refused > 0, "no {method} met a pooled connection");
    }
    let m = gw
        .metrics_when(|m| m.count("edgewarden_upstream_retries_total", &POOL) >= sent_again as f64)
        .await;
    assert_eq!(
        m.count("edgewarden_upstream_retries_total", &POOL),
        sent_again as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_mid_way_ends_the_clients_response_and_is_counted() {
    let stalling = MisbehavingOrigin::start(Misbehaviour::StallsMidBody).await;
    let healthy = echo_origin("healthy").await;
    let config = Config::new()
        .with(origin("pool", &[stalling.addr]).set("read_timeout_ms", 300))
        .with(origin("fine", &[healthy.addr]))
        .with(route("stalls", "/stalls", "pool"))
        .with(route("fine", "/", "fine"));
    let gw = Gateway::builder(config).start().await;

    let mut stream = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /stalls HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("send");
    let started = Instant::now();
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the client's response never ended");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "ended after {took:?}");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n0123456789"), "{text}");
    let m = gw
        .metrics_when(|m| m.count("edgewarden_upstream_truncated_responses_total", &POOL) >= 1.0)
        .await;
    assert_eq!(
        m.count("edgewarden_upstream_truncated_responses_total", &POOL),
        1.0
    );
    assert_eq!(get(gw.addr, "/next").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_closes_early_or_answers_with_no_valid_head_gets_a_502() {
    let many_fields: String = (0..300).map(|i| format!("x-field-{i}: v\r\n")).collect();
    let huge_field = format!("x-huge: {}\r\n", "a".repeat(2 << 20));
    let cases = [
        ("closes early", Misbehaviour::ClosesEarly),
        (
            "garbage",
            Misbehaviour::Sends(b"this is not http\r\n\r\n".to_vec()),
        ),
        (
            "bad status line",
            Misbehaviour::Sends(b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n".to_vec()),
        ),
        (
            "300 header fields",
            Misbehaviour::Sends(
                format!("HTTP/1.1 200 OK\r\n{many_fields}content-length: 0\r\n\r\n").into_bytes(),
            ),
        ),
        (
            "a 2 MiB header",
            Misbehaviour::Sends(
                format!("HTTP/1.1 200 OK\r\n{huge_field}content-length: 0\r\n\r\n").into_bytes(),
            ),
        ),
    ];
    for (what, how) in cases {
        let bad = MisbehavingOrigin::start(how).await;
        let healthy = echo_origin("healthy").await;
        let config = Config::new()
            .with(origin("pool", &[bad.addr]))
            .with(origin("fine", &[healthy.addr]))
            .with(route("bad", "/bad", "pool"))
            .with(route("fine", "/", "fine"));
        let gw = Gateway::builder(config).start().await;
        let resp = get(gw.addr, "/bad").await;
        assert_eq!(resp.status, 502, "{what}");
        assert_eq!(resp.json()["error"], "upstream_unavailable", "{what}");
        assert!(resp.header("x-request-id").is_some(), "{what}");
        assert_eq!(bad.requests().len(), 1, "{what}: sent once, not retried");
        assert_eq!(get(gw.addr, "/next").await.status, 200, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_503_is_taken_out_for_its_time_then_tried_again() {
    let failing = MisbehavingOrigin::start(Misbehaviour::Sends(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ))
    .await;
    let healthy = echo_origin("healthy").await;
    let config = Config::new()
        .with(origin("pool", &[failing.addr, healthy.addr]).set(
            "passive_health",
            serde_json::json!({"consecutive_failures": 1, "eject_s": 1}),
        ))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;

    // Round robin gives each upstream one of the first two; the origin's own 503 is passed on.
    let mut first = [
        get(gw.addr, "/a").await.status,
        get(gw.addr, "/b").await.status,
    ];
    let out_at = Instant::now();
    first.sort();
    assert_eq!(first, [200, 503]);
    assert_eq!(failing.requests().len(), 1);
    for i in 0..6 {
        assert_eq!(get(gw.addr, &format!("/out{i}")).await.status, 200);
    }
    if out_at.elapsed() < Duration::from_millis(900) {
        assert_eq!(failing.requests().len(), 1, "used while taken out");
    }
    let addr = gw.addr;
    let back = eventually(Duration::from_secs(5), async || {
        get(addr, "/back").await;
        failing.requests().len() == 2
    })
    .await;
    assert!(back, "never tried again after its time out");
    assert!(
        out_at.elapsed() >= Duration::from_millis(900),
        "back after {:?}",
        out_at.elapsed()
    );
    let m = gw
        .metrics_when(|m| m.count("edgewarden_upstream_ejections_total", &POOL) >= 2.0)
        .await;
    assert_eq!(
        m.count("edgewarden_upstream_ejections_total", &POOL),
        2.0,
        "out again after failing again"
    );
}
