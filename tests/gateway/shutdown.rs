//! SIGTERM drains in-flight requests and exits within the grace; SIGINT exits promptly.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

use crate::common::*;

async fn wait_exit(gw: &mut Gateway, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(_)) = gw.child.try_wait() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_in_flight_request_finish_then_exits_within_grace() {
    let slow = echo_origin("slow").await;
    let body = [
        origin("slow", &[slow.addr], ""),
        route("all", "/", "slow", ""),
    ]
    .concat();
    let mut gw = Gateway::start_with(&body, "shutdown_grace_s = 5").await;

    let addr = gw.addr;
    let in_flight =
        tokio::spawn(
            async move { request(addr, "GET", "/slow", &[("x-echo-delay-ms", "1500")]).await },
        );
    // Signal once the origin has the request, so it is really in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.hits() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(slow.hits(), 1);
    kill(gw.pid(), Signal::SIGTERM).expect("SIGTERM");

    let resp = in_flight
        .await
        .expect("join")
        .expect("in-flight request completes");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/slow");

    let exited = wait_exit(&mut gw, Duration::from_secs(6)).await;
    let took = exited.expect("process exits within the grace");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    // New connections are refused once the process is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_at_once_not_after_the_grace() {
    let a = echo_origin("a").await;
    let body = [origin("a", &[a.addr], ""), route("all", "/", "a", "")].concat();
    let mut gw = Gateway::start_with(&body, "shutdown_grace_s = 30").await;
    kill(gw.pid(), Signal::SIGTERM).expect("SIGTERM");
    let took = wait_exit(&mut gw, Duration::from_secs(10))
        .await
        .expect("exits");
    assert!(took < Duration::from_secs(3), "idle exit took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_promptly_even_with_a_request_in_flight() {
    let slow = echo_origin("slow").await;
    let body = [
        origin("slow", &[slow.addr], ""),
        route("all", "/", "slow", ""),
    ]
    .concat();
    let mut gw = Gateway::start_with(&body, "shutdown_grace_s = 30").await;
    let addr = gw.addr;
    let _in_flight = tokio::spawn(async move {
        request(addr, "GET", "/slow", &[("x-echo-delay-ms", "20000")]).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.hits() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill(gw.pid(), Signal::SIGINT).expect("SIGINT");
    let took = wait_exit(&mut gw, Duration::from_secs(10))
        .await
        .expect("exits");
    assert!(took < Duration::from_secs(2), "SIGINT exit took {took:?}");
}
