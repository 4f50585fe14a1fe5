//! SIGTERM drains in-flight requests and exits within the grace; SIGINT exits promptly.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};

use crate::support::*;

/// One route to `origin_`, with this shutdown grace.
async fn gateway(origin_: &EchoOrigin, grace_s: u64) -> Gateway {
    let config = Config::new()
        .server("shutdown_grace_s", grace_s)
        .with(origin("o", &[origin_.addr]))
        .with(route("all", "/", "o"));
    Gateway::builder(config).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_in_flight_request_finish_then_exits_within_grace() {
    let slow = echo_origin("slow").await;
    let mut gw = gateway(&slow, 5).await;

    let addr = gw.addr;
    let in_flight = tokio::spawn(
        req("GET", "/slow")
            .header("x-echo-delay-ms", "1500")
            .try_send(addr),
    );
    // Signal once the origin has the request, so it is really in flight.
    assert!(eventually(Duration::from_secs(10), async || slow.hits() == 1).await);
    kill(gw.pid(), Signal::SIGTERM).expect("SIGTERM");

    let resp = in_flight
        .await
        .expect("join")
        .expect("in-flight request completes");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/slow");

    let exited = gw.exited_within(Duration::from_secs(6)).await;
    let took = exited.expect("process exits within the grace");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    // New connections are refused once the process is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_at_once_not_after_the_grace() {
    let a = echo_origin("a").await;
    let mut gw = gateway(&a, 30).await;
    kill(gw.pid(), Signal::SIGTERM).expect("SIGTERM");
    let took = gw
        .exited_within(Duration::from_secs(10))
        .await
        .expect("exits");
    assert!(took < Duration::from_secs(3), "idle exit took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_promptly_even_with_a_request_in_flight() {
    let slow = echo_origin("slow").await;
    let mut gw = gateway(&slow, 30).await;
    let addr = gw.addr;
    let _in_flight = tokio::spawn(
        req("GET", "/slow")
            .header("x-echo-delay-ms", "20000")
            .try_send(addr),
    );
    assert!(eventually(Duration::from_secs(10), async || slow.hits() == 1).await);
    kill(gw.pid(), Signal::SIGINT).expect("SIGINT");
    let took = gw
        .exited_within(Duration::from_secs(10))
        .await
        .expect("exits");
    assert!(took < Duration::from_secs(2), "SIGINT exit took {took:?}");
}
