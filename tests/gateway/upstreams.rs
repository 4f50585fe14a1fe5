//! Origin selection and failure: round robin, health checks, connection reuse, 502 and 504.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_over_two_real_upstreams() {
    let one = echo_origin("one").await;
    let two = echo_origin("two").await;
    let config = Config::new()
        .with(origin("pool", &[one.addr, two.addr]))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;
    let mut names = Vec::new();
    for _ in 0..10 {
        let resp = get(gw.addr, "/x").await;
        assert_eq!(resp.status, 200);
        names.push(resp.json()["origin"].as_str().expect("origin").to_string());
    }
    assert_eq!((one.hits(), two.hits()), (5, 5), "{names:?}");
    assert!(
        names.windows(2).all(|w| w[0] != w[1]),
        "not alternating: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_across_requests() {
    let one = echo_origin("one").await;
    let config = Config::new()
        .with(origin("pool", &[one.addr]))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;
    let mut conn = Conn::open(gw.addr).await;
    for _ in 0..20 {
        assert_eq!(
            conn.request(&req("GET", "/x"))
                .await
                .expect("response")
                .status,
            200
        );
    }
    assert_eq!(one.hits(), 20);
    assert!(
        one.connections() <= 2,
        "{} upstream connections for 20 requests",
        one.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_down_gives_502_json_without_hanging() {
    let dead = DeadPort::new();
    let config = Config::new()
        .with(origin("dead", &[dead.addr]).set("connect_timeout_ms", 2000))
        .with(route("all", "/", "dead"));
    let gw = Gateway::builder(config).start().await;
    let started = Instant::now();
    let resp = get(gw.addr, "/x").await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.json()["error"], "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Pingora does not reuse a connection after an upstream failure: the answer says so.
    assert_eq!(resp.header("connection"), Some("close"));
    // The gateway keeps serving: the next request gets the same clear answer.
    assert_eq!(get(gw.addr, "/y").await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_upstream_gives_503_and_keeps_the_connection() {
    let sick = echo_origin("sick").await;
    sick.set_healthy(false);
    let config = Config::new()
        .with(origin("pool", &[sick.addr]).set(
            "health_check",
            serde_json::json!({"path": "/health", "interval_s": 1}),
        ))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;
    let addr = gw.addr;
    let marked_down = eventually(Duration::from_secs(10), async || {
        req("GET", "/probe")
            .try_send(addr)
            .await
            .is_ok_and(|r| r.status == 503)
    })
    .await;
    assert!(marked_down, "the failing upstream was never taken out");
    let hits_when_down = sick.hits();
    let mut conn = Conn::open(gw.addr).await;
    for _ in 0..3 {
        let resp = conn
            .request(&req("GET", "/x"))
            .await
            .expect("503 on a kept-alive connection");
        assert_eq!(resp.status, 503);
        assert_eq!(resp.json()["error"], "no_healthy_upstream");
    }
    assert_eq!(
        sick.hits(),
        hits_when_down,
        "no request may reach an upstream marked down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_on_one_upstream_is_retried_on_the_next() {
    let alive = echo_origin("alive").await;
    let dead = DeadPort::new();
    let config = Config::new()
        .with(origin("pool", &[dead.addr, alive.addr]))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;
    for _ in 0..6 {
        assert_eq!(req("POST", "/x").body("").send(gw.addr).await.status, 200);
    }
    assert_eq!(alive.hits(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_origin_gives_504_within_read_timeout() {
    let slow = echo_origin("slow").await;
    let config = Config::new()
        .with(origin("slow", &[slow.addr]).set("read_timeout_ms", 300))
        .with(route("all", "/", "slow"));
    let gw = Gateway::builder(config).start().await;
    let started = Instant::now();
    let resp = req("GET", "/x")
        .header("x-echo-delay-ms", "5000")
        .send(gw.addr)
        .await;
    let took = started.elapsed();
    assert_eq!(resp.status, 504);
    assert_eq!(resp.json()["error"], "upstream_timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2000),
        "took {took:?}"
    );
    // A fast request on the same route still works.
    assert_eq!(get(gw.addr, "/y").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_takes_a_failing_upstream_out_and_back_in() {
    let steady = echo_origin("steady").await;
    let flaky = echo_origin("flaky").await;
    let config = Config::new()
        .with(origin("pool", &[steady.addr, flaky.addr]).set(
            "health_check",
            serde_json::json!({"path": "/health", "interval_s": 1}),
        ))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;

    flaky.set_healthy(false);
    let taken_out = eventually(Duration::from_secs(10), async || {
        let before = flaky.hits();
        for _ in 0..6 {
            assert_eq!(get(gw.addr, "/x").await.status, 200);
        }
        flaky.hits() == before
    })
    .await;
    assert!(taken_out, "unhealthy upstream kept receiving traffic");

    flaky.set_healthy(true);
    let back = eventually(Duration::from_secs(10), async || {
        let before = flaky.hits();
        for _ in 0..4 {
            get(gw.addr, "/x").await;
        }
        flaky.hits() > before
    })
    .await;
    assert!(back, "recovered upstream got no traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_while_the_origin_answers_is_not_logged_as_an_error() {
    let slow = echo_origin("slow").await;
    let config = Config::new()
        .with(origin("pool", &[slow.addr]))
        .with(route("all", "/", "pool"));
    let gw = Gateway::builder(config).start().await;
    let mut conn = Conn::open(gw.addr).await;
    let slow_request = req("GET", "/x").header("x-echo-delay-ms", "400");
    conn.send(&slow_request.bytes(&gw.addr.to_string())).await;
    let addr = gw.addr;
    let origin_has_it = eventually(Duration::from_secs(5), async || slow.hits() == 1).await;
    assert!(origin_has_it, "the request never reached the origin");
    drop(conn);
    // Nothing signals the end of an abandoned request: wait out the origin's delay, after which
    // the gateway has had its answer (or has given up on it), then check the next one is served.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(addr, "/y").await.status, 200);
    let log = gw.stderr();
    assert!(
        !log.contains("ERROR"),
        "a client going away was logged as an error:\n{log}"
    );
}
