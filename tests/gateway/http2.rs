//! HTTP/2 at the edge: a body that stops, an early answer that does not wait for the body, a
//! rapid-reset flood (CVE-2023-44487), an oversized header list and the limit of streams in
//! flight, each on a real TLS listener with a raw HTTP/2 client where reqwest will not send what
//! the test needs.

use std::time::Duration;

use crate::support::*;

/// A request body that sends one chunk and then nothing, never ending.
struct StallingBody(Option<bytes::Bytes>);

impl hyper::body::Body for StallingBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        match self.0.take() {
            Some(chunk) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// Pingora 0.9 has no read timeout on an HTTP/2 stream's body, so `body_timeout_ms` is checked as
/// each piece arrives; a body that stops altogether is bounded by the origin's read timeout, and
/// the connection's other streams go on being served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_that_stops_is_cut_by_the_origins_read_timeout() {
    let recording = RecordingOrigin::start().await;
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        .with(origin("o", &[recording.addr]).set("read_timeout_ms", 1000))
        .with(route("upload", "/", "o").set("body_timeout_ms", 500));
    let (_gw, tls_addr) = tls_listener_gateway(config, &pki).await;
    let h2_client = https_client(&pki.ca_pem, "gateway.test", tls_addr, false);
    let url = format!("https://gateway.test:{}/upload", tls_addr.port());
    // One connection, made before the two streams share it.
    let warm = h2_client
        .post(&url)
        .body("warm")
        .send()
        .await
        .expect("warm");
    assert_eq!(warm.version(), reqwest::Version::HTTP_2);
    let started = std::time::Instant::now();
    let stalled = h2_client
        .post(&url)
        .body(reqwest::Body::wrap(StallingBody(Some("first".into()))))
        .send();
    let other = async {
        let resp = h2_client.post(&url).body("whole").send().await;
        (resp.map(|r| r.status()), started.elapsed())
    };
    let (stalled, (other, other_took)) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), stalled),
        other
    );
    let took = started.elapsed();
    let resp = stalled
        .expect("no answer within 10 s")
        .expect("HTTP/2 answer");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 504, "after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(other.expect("the other stream"), 200);
    assert!(other_took < Duration::from_millis(900), "{other_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_early_401_never_waits_for_the_request_body() {
    let (_gw, tls_addr, pki, echo) = tls_echo_gateway().await;
    let h2_client = https_client(&pki.ca_pem, "gateway.test", tls_addr, false);
    let base = format!("https://gateway.test:{}", tls_addr.port());
    let warm = h2_client
        .get(format!("{base}/x"))
        .send()
        .await
        .expect("warm");
    assert_eq!(warm.version(), reqwest::Version::HTTP_2);
    let started = std::time::Instant::now();
    let denied = tokio::time::timeout(
        Duration::from_secs(5),
        h2_client
            .post(format!("{base}/private/upload"))
            .body(reqwest::Body::wrap(StallingBody(Some("part".into()))))
            .send(),
    )
    .await
    .expect("the 401 waited for the body")
    .expect("HTTP/2 answer");
    assert_eq!(denied.status(), 401);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let body: serde_json::Value = denied.json().await.expect("json");
    assert_eq!(body["error"], "missing_token");
    assert_eq!(echo.hits(), 1, "the refused request reached the origin");
    // The connection goes on serving.
    let again = h2_client
        .get(format!("{base}/x"))
        .send()
        .await
        .expect("again");
    assert_eq!(again.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_flood_closes_its_connection_and_spares_the_origin() {
    let (gw, tls_addr, pki, echo) = tls_echo_gateway().await;

    // Streams opened and cancelled at once, as fast as the connection takes them
    // (CVE-2023-44487).
    const FLOOD: usize = 20_000;
    let (send, connection) = raw_h2(&pki, tls_addr).await;
    let mut send = send.ready().await.expect("ready");
    let mut opened = 0;
    while opened < FLOOD {
        let Ok((_response, mut stream)) = send.send_request(h2_get("/flood"), true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        opened += 1;
        match send.ready().await {
            Ok(ready) => send = ready,
            Err(_) => break,
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the flooding connection was never closed");
    assert!(opened < FLOOD, "all {FLOOD} resets were taken");
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        echo.hits() <= 100,
        "{} of {opened} cancelled streams reached the origin",
        echo.hits()
    );
    // Everyone else is still served, on a new connection.
    let (send, _connection) = raw_h2(&pki, tls_addr).await;
    assert_eq!(h2_status(send, "/after").await, 200);
    // The flood is the client's doing: the `h2` crate's warning when it closes the connection is
    // not logged (a flood that reconnects would write one line per connection).
    let logged: Vec<String> = gw
        .stderr()
        .lines()
        .filter(|l| l.contains(" h2::"))
        .map(str::to_string)
        .collect();
    assert!(logged.is_empty(), "{logged:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_header_list_over_the_limit_gets_431_before_the_origin() {
    let (_gw, tls_addr, pki, echo) = tls_echo_gateway().await;
    let (send, _connection) = raw_h2(&pki, tls_addr).await;
    let mut send = send.ready().await.expect("ready");
    let mut big = h2_get("/big");
    big.headers_mut()
        .insert("x-big", "a".repeat(100 * 1024).parse().expect("value"));
    let (response, _) = send.send_request(big, true).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered")
        .expect("response");
    assert_eq!(response.status(), 431);
    assert_eq!(echo.hits(), 0, "the oversized request reached the origin");
    // The connection goes on.
    assert_eq!(h2_status(send, "/after").await, 200);
    assert_eq!(echo.hits(), 1);
}

/// One connection holds at most 100 streams open at once (the gateway's SETTINGS): a client's
/// 101st request waits for a stream to finish, and the origin never sees more than 100 of its
/// requests at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_has_at_most_100_streams_in_flight() {
    let slow = MisbehavingOrigin::start(Misbehaviour::NeverAnswers).await;
    let echo = echo_origin("fast").await;
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        // 100 connects at once on a loaded machine: one SYN sent again must not be a 504.
        .with(origin("slow", &[slow.addr]).set("connect_timeout_ms", 5000))
        .with(origin("fast", &[echo.addr]))
        .with(route("slow", "/slow", "slow"))
        .with(route("fast", "/", "fast"));
    let (_gw, tls_addr) = tls_listener_gateway(config, &pki).await;
    let (send, _connection) = raw_h2(&pki, tls_addr).await;
    // One exchange first, so the client has the gateway's SETTINGS.
    assert_eq!(h2_status(send.clone(), "/first").await, 200);
    assert_eq!(send.current_max_send_streams(), 100);

    // 101 requests to an origin that never answers: the client opens 100 streams and queues the
    // last until one of them ends. Each is sent from a handle of its own, which is ready at once
    // whether or not the client is queueing (its readiness at capacity is the client's choice).
    let mut streams = Vec::new();
    for _ in 0..101 {
        let mut handle = tokio::time::timeout(Duration::from_secs(5), send.clone().ready())
            .await
            .expect("a new handle is ready")
            .expect("ready");
        let (response, stream) = handle.send_request(h2_get("/slow"), true).expect("send");
        streams.push((response, stream));
    }
    assert!(
        eventually(Duration::from_secs(10), async || slow.requests().len()
            == 100)
        .await,
        "the origin got {} requests",
        slow.requests().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        slow.requests().len(),
        100,
        "more than 100 streams in flight"
    );
    // One stream cancelled frees its place: the queued request goes through.
    streams[0].1.send_reset(h2::Reason::CANCEL);
    assert!(
        eventually(Duration::from_secs(10), async || slow.requests().len()
            == 101)
        .await,
        "the queued request never reached the origin ({})",
        slow.requests().len()
    );
}
