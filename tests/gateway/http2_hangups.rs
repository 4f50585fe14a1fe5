//! HTTP/2 clients that go away mid-request (a dropped connection, a reset stream): in the access
//! log, never in the gateway's error log.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_drops_its_streams_in_flight_is_not_logged_as_a_gateway_error() {
    let slow = MisbehavingOrigin::start(Misbehaviour::NeverAnswers).await;
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        .with(origin("o", &[slow.addr]).set("connect_timeout_ms", 5000))
        .with(route("api", "/", "o"))
        .with(section("access_log"));
    let (gw, tls_addr) = tls_listener_gateway(config, &pki).await;

    // Streams waiting on the origin when their client's connection goes away.
    let (send, connection) = raw_h2(&pki, tls_addr).await;
    let mut send = send.ready().await.expect("ready");
    let mut pending = Vec::new();
    for _ in 0..8 {
        let (response, _stream) = send.send_request(h2_get("/slow"), true).expect("send");
        pending.push(response);
        send = send.ready().await.expect("ready");
    }
    assert!(
        eventually(Duration::from_secs(10), async || slow.requests().len() == 8).await,
        "the origin got {} of the 8 requests",
        slow.requests().len()
    );
    connection.abort();
    drop((send, pending));

    // The gateway has seen the client go: the eight requests are in its access log.
    assert!(
        eventually(Duration::from_secs(10), async || {
            gw.stdout().matches("\"path\":\"/slow\"").count() == 8
        })
        .await,
        "the dropped requests are not all in the access log:\n{}",
        gw.stdout()
    );
    let errors: Vec<String> = gw
        .stderr()
        .lines()
        .filter(|l| l.contains("Fail to proxy"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// A stream reset while the gateway reads the rest of its body before answering 401: writing the
/// answer fails because the client is gone, which is the client's doing, not a gateway error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_before_its_early_answer_is_not_logged_as_a_gateway_error() {
    let echo = echo_origin("o").await;
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        .with(origin("o", &[echo.addr]))
        .with(route("private", "/private", "o").set("auth", "required"))
        .with(pem_issuer())
        .with(section("access_log"));
    let (gw, tls_addr) = tls_listener_gateway(config, &pki).await;
    let (send, _connection) = raw_h2(&pki, tls_addr).await;
    let mut send = send.ready().await.expect("ready");
    let mut streams = Vec::new();
    for _ in 0..8 {
        // A body announced and not sent: before its 401 the gateway waits (up to 500 ms) for it.
        let request = ::http::Request::post("https://gateway.test/private/upload")
            .header("content-length", "10")
            .body(())
            .expect("request");
        let (response, stream) = send.send_request(request, false).expect("send");
        streams.push((response, stream));
        send = send.ready().await.expect("ready");
    }
    // No signal tells that the gateway is waiting for the bodies; 100 ms is well inside its wait.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (_, stream) in &mut streams {
        stream.send_reset(h2::Reason::CANCEL);
    }
    assert!(
        eventually(Duration::from_secs(10), async || {
            gw.stdout().matches("\"path\":\"/private/upload\"").count() == 8
        })
        .await,
        "the reset requests are not all in the access log:\n{}",
        gw.stdout()
    );
    let errors: Vec<String> = gw
        .stderr()
        .lines()
        .filter(|l| l.contains("Fail to"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(echo.hits(), 0);
}
