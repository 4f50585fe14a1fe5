//! HTTP/2's `:path` and `:authority` under the hardening rules of a request target, over a real
//! TLS listener and a raw HTTP/2 client.

use std::time::Duration;

use crate::support::*;

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
