//! HTTP/2 at the edge: a body that stops, an early answer that does not wait for the body, a
//! rapid-reset flood (CVE-2023-44487) and an oversized header list, each on a real TLS listener
//! with a raw HTTP/2 client where reqwest will not send what the test needs.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;

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

/// A raw HTTP/2 connection to the TLS listener at `addr` (trusting `pki`'s CA), and the task
/// driving it, which ends with how the connection ended.
async fn raw_h2(
    pki: &Pki,
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    pingora::tls::install_default_crypto_provider();
    let mut roots = pingora::tls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("ca"))
        .expect("root");
    let mut config = pingora::tls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = pingora::tls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("gateway.test").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS");
    let (send, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
    (send, tokio::spawn(connection))
}

fn h2_get(path: &str) -> ::http::Request<()> {
    ::http::Request::get(format!("https://gateway.test{path}"))
        .body(())
        .expect("request")
}

/// `GET path` on a new stream of `send`'s connection: its status, answered within 5 s.
async fn h2_status(send: h2::client::SendRequest<bytes::Bytes>, path: &str) -> u16 {
    let mut send = send.ready().await.expect("the connection takes a stream");
    let (response, _) = send.send_request(h2_get(path), true).expect("request");
    tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered")
        .expect("response")
        .status()
        .as_u16()
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
    let (_gw, tls_addr, pki, echo) = tls_echo_gateway().await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_drops_its_streams_in_flight_is_not_logged_as_a_gateway_error() {
    let slow = MisbehavingOrigin::start(Misbehaviour::NeverAnswers).await;
    let pki = pki(&["gateway.test"]);
    let config = Config::new()
        .with(origin("o", &[slow.addr]))
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

/// `GET` with this `:authority` and `:path` on a new stream of `send`'s connection: the status
/// and the body, answered within 5 s.
async fn h2_exchange(
    send: &h2::client::SendRequest<bytes::Bytes>,
    authority: &str,
    path: &str,
) -> (u16, Vec<u8>) {
    let mut send = send
        .clone()
        .ready()
        .await
        .expect("the connection takes a stream");
    let request = ::http::Request::get(format!("https://{authority}{path}"))
        .body(())
        .expect("request");
    let (response, _) = send.send_request(request, true).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered")
        .expect("response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, bytes)
}

/// The hardening rules for a request target apply to HTTP/2's `:path` and `:authority` as to an
/// HTTP/1.1 request line and `Host`: equivalent forms are made canonical once, routed in that
/// form and forwarded in that form; an encoded protected path reaches its route; ambiguous forms
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_path_and_authority_are_routed_and_forwarded_in_canonical_form() {
    let (_gw, tls_addr, pki, echo) = tls_echo_gateway().await;
    let (send, _connection) = raw_h2(&pki, tls_addr).await;
    let authority = format!("gateway.test:{}", tls_addr.port());

    // Encoded forms of `/private/...` (which needs a token, beside an open `/`): each is routed
    // to the protected route and refused there.
    for path in ["/%70rivate/a", "/priv%61te/a", "/%70%72%69vate"] {
        let (status, _) = h2_exchange(&send, &authority, path).await;
        assert_eq!(status, 401, "{path}");
    }
    // Ambiguous forms, read differently by different origin servers, are refused.
    for (host, path) in [
        (authority.as_str(), "/x/../private/a"),
        (authority.as_str(), "/./private/a"),
        (authority.as_str(), "/x/%2e%2e/private/a"),
        (authority.as_str(), "/private%2fa"),
        (authority.as_str(), "//private/a"),
        ("gateway..test", "/a"),
    ] {
        let (status, _) = h2_exchange(&send, host, path).await;
        assert_eq!(status, 400, "{host} {path}");
    }
    assert_eq!(echo.hits(), 0, "a refused request reached the origin");

    // The origin reads the canonical form of what was routed: unreserved characters decoded,
    // other escapes in upper-case hex, the host in lower case without its trailing dot.
    let (status, body) = h2_exchange(&send, "GATEWAY.Test.", "/a/b%7e/caf%c3%a9").await;
    assert_eq!(status, 200);
    let saw: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
    assert_eq!(saw["path"], "/a/b~/caf%C3%A9", "{saw}");
    let hosts: Vec<&str> = saw["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("host"))
        })
        .filter_map(|pair| pair[1].as_str())
        .collect();
    assert_eq!(hosts, ["gateway.test"], "{saw}");
    assert_eq!(echo.hits(), 1);

    // A Host field beside `:authority` must name the same host.
    let mut two_hosts = h2_get("/a");
    two_hosts
        .headers_mut()
        .insert("host", ::http::HeaderValue::from_static("other.test"));
    let mut stream = send.clone().ready().await.expect("ready");
    let (response, _) = stream.send_request(two_hosts, true).expect("send");
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered")
        .expect("response");
    assert_eq!(response.status(), 400);
    assert_eq!(
        echo.hits(),
        1,
        "a request naming two hosts reached the origin"
    );
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
        .with(origin("slow", &[slow.addr]))
        .with(origin("fast", &[echo.addr]))
        .with(route("slow", "/slow", "slow"))
        .with(route("fast", "/", "fast"));
    let (_gw, tls_addr) = tls_listener_gateway(config, &pki).await;
    let (send, _connection) = raw_h2(&pki, tls_addr).await;
    // One exchange first, so the client has the gateway's SETTINGS.
    assert_eq!(h2_status(send.clone(), "/first").await, 200);
    assert_eq!(send.current_max_send_streams(), 100);

    // 101 requests to an origin that never answers: the client opens 100 streams and queues the
    // last until one of them ends.
    let mut send = send.ready().await.expect("ready");
    let mut streams = Vec::new();
    for _ in 0..101 {
        let (response, stream) = send.send_request(h2_get("/slow"), true).expect("send");
        streams.push((response, stream));
        send = send.ready().await.expect("ready");
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
