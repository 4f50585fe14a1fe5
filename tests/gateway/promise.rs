//! The gateway's promise under hostile requests, tried as an attacker would against a config with
//! an `auth = "off"` catch-all beside protected routes on the same origin: no unauthenticated
//! request reaches a protected path, and no client can forge or remove what the gateway tells the
//! origin. Every case asserts on what the origin received (nothing, or the canonical request with
//! the gateway's headers), not only on the status.

use std::net::Ipv4Addr;

use crate::support::*;

/// Not in `trusted_proxies`.
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// In `trusted_proxies`.
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

struct Setup {
    gw: Gateway,
    origin: EchoOrigin,
    token: String,
}

/// `/` open, `/api` and host `admin.test` protected, `/matrix` with path parameters, `/iis`
/// case-insensitive, all on one origin.
async fn setup() -> Setup {
    let origin_ = echo_origin("o").await;
    let signer = Signer::rsa(RSA_A, "key-a");
    // Routes without `auth` take the default, which is to require a token.
    let config = Config::new()
        .server("trusted_proxies", ["127.0.0.1/32"])
        .server("reserved_headers", ["x-internal-*"])
        .with(issuer().set("jwks_file", "jwks.json"))
        .with(
            section("geo")
                .set("country_header", "cf-ipcountry")
                .set("header", "x-user-location"),
        )
        .with(origin("o", &[origin_.addr]))
        .with(route("open", "/", "o"))
        .with(route("api", "/api", "o").without("auth"))
        .with(
            route("admin", "/", "o")
                .without("auth")
                .set("host", "admin.test"),
        )
        .with(route("matrix", "/matrix", "o").set("allow_path_parameters", true))
        .with(
            route("iis", "/iis", "o")
                .without("auth")
                .set("case_insensitive", true),
        );
    let gw = Gateway::builder(config)
        .file("jwks.json", jwks(&[&signer]))
        .start()
        .await;
    Setup {
        gw,
        origin: origin_,
        token: signer.token(&good_claims("alice")),
    }
}

impl Setup {
    /// One request from `source` with this request target and Host.
    async fn send(
        &self,
        source: Ipv4Addr,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        req(method, target)
            .from(source)
            .host(host)
            .headers(headers)
            .send(self.gw.addr)
            .await
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Send, and assert the gateway refused with `status` and the origin saw nothing.
    async fn refused(
        &self,
        case: &str,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
        status: u16,
    ) {
        let before = self.origin.hits();
        let resp = self.send(STRANGER, "GET", target, host, headers).await;
        assert_eq!(
            resp.status,
            status,
            "{case}: {target} (Host {host}): {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(
            self.origin.hits(),
            before,
            "{case}: {target} reached the origin"
        );
        if status != 204 {
            let body = serde_json::from_slice::<serde_json::Value>(&resp.body);
            assert!(
                body.is_ok_and(|b| b["error"].is_string()),
                "{case}: {target}: no JSON body: {:?}",
                String::from_utf8_lossy(&resp.body)
            );
        }
    }

    /// Send from `source`, assert the origin answered, and return what it received.
    async fn forwarded(
        &self,
        case: &str,
        source: Ipv4Addr,
        target: &str,
        headers: &[(&str, &str)],
    ) -> (
        String,
        Option<String>,
        std::collections::HashMap<String, Vec<String>>,
    ) {
        let host = self.gw.addr.to_string();
        let before = self.origin.hits();
        let resp = self.send(source, "GET", target, &host, headers).await;
        assert_eq!(
            resp.status,
            200,
            "{case}: {target}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(self.origin.hits(), before + 1, "{case}");
        let json = resp.json();
        let path = json["path"].as_str().expect("path").to_string();
        let query = json["query"].as_str().map(str::to_string);
        (path, query, resp.origin_saw())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_that_are_not_origin_form_never_reach_the_origin() {
    let s = setup().await;
    let host = s.gw.addr.to_string();
    for target in [
        "api/secret".to_string(),
        "*".into(),
        "?x=1".into(),
        format!("ftp://{host}/api/secret"),
        "foo:bar://x/api/secret".into(),
        "//api/secret".into(),
    ] {
        s.refused("class 1", &target, &host, &[], 400).await;
    }
    // An authority that is not the Host field, or that carries user information, is refused by
    // Pingora while it parses the request: a bare 400 and the connection closed.
    for target in [
        "ftp://x/api/secret".to_string(),
        "http://other.test/api/secret".into(),
        format!("http://user@{host}/api/secret"),
    ] {
        let before = s.origin.hits();
        let resp = s.send(STRANGER, "GET", &target, &host, &[]).await;
        assert_eq!(resp.status, 400, "{target}");
        assert_eq!(s.origin.hits(), before, "{target} reached the origin");
    }
    // Absolute-form naming this very host: routed and authenticated like its path.
    s.refused(
        "class 1",
        &format!("http://{host}/api/secret"),
        &host,
        &[],
        401,
    )
    .await;
    let (path, query, _) = s
        .forwarded(
            "class 1",
            STRANGER,
            &format!("http://{host}/open/x?q=1"),
            &[],
        )
        .await;
    assert_eq!((path.as_str(), query.as_deref()), ("/open/x", Some("q=1")));
    let counted =
        s.gw.metrics_when(|m| {
            m.count(
                "edgewarden_gateway_rejections_total",
                &[("reason", "invalid_target")],
            ) >= 5.0
        })
        .await;
    assert_eq!(
        counted.count(
            "edgewarden_gateway_rejections_total",
            &[("reason", "invalid_target")]
        ),
        5.0
    );
    // OPTIONS * is answered by the gateway.
    let before = s.origin.hits();
    let resp = s.send(STRANGER, "OPTIONS", "*", &host, &[]).await;
    assert_eq!(resp.status, 204);
    assert!(resp.header("allow").is_some_and(|a| a.contains("GET")));
    assert_eq!(s.origin.hits(), before, "OPTIONS * was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_unreserved_characters_are_routed_and_forwarded_decoded() {
    let s = setup().await;
    let host = s.gw.addr.to_string();
    for target in [
        "/%61pi/secret",
        "/ap%69/secret",
        "/%61%70%69",
        "/api%2Fsecret/x",
    ] {
        let status = if target.contains("%2F") { 400 } else { 401 };
        s.refused("class 2", target, &host, &[], status).await;
    }
    for target in [
        "/%2561pi/secret",
        "/open/%252e%252e/api",
        "/open/%2e%2e/api/secret",
    ] {
        s.refused("class 2", target, &host, &[], 400).await;
    }
    let auth = s.bearer();
    let (path, _, saw) = s
        .forwarded(
            "class 2",
            STRANGER,
            "/%61pi/s%65cret%7e",
            &[("Authorization", &auth)],
        )
        .await;
    assert_eq!(
        path, "/api/secret~",
        "the origin gets the path that was authorised"
    );
    assert_eq!(saw["x-internal-user-id"], ["alice"]);
    let (path, _, _) = s
        .forwarded("class 2", STRANGER, "/open/caf%c3%a9%2c", &[])
        .await;
    assert_eq!(
        path, "/open/caf%C3%A9%2C",
        "other escapes in upper-case hex"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_are_refused_unless_the_route_allows_them() {
    let s = setup().await;
    let host = s.gw.addr.to_string();
    for target in [
        "/api;x=1/secret",
        "/open/..;/api/secret",
        "/open;/../api/secret",
        "/;x/api/secret",
        "/open/.;x/api",
        "/open%3B/api",
    ] {
        s.refused("class 3", target, &host, &[], 400).await;
    }
    let before = s.origin.hits();
    let resp = s
        .send(STRANGER, "GET", "/open;jsessionid=1/x", &host, &[])
        .await;
    assert_eq!(
        (resp.status, resp.json()["error"].as_str()),
        (400, Some("path_parameters"))
    );
    assert_eq!(s.origin.hits(), before);
    let (path, _, _) = s
        .forwarded("class 3", STRANGER, "/matrix;v=1/cars;color=red", &[])
        .await;
    assert_eq!(path, "/matrix;v=1/cars;color=red");
    s.refused("class 3", "/matrix;v=1/../api", &host, &[], 400)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_differ_only_in_form_reach_the_same_route() {
    let s = setup().await;
    let port = s.gw.addr.port();
    for host in [
        "admin.test".to_string(),
        "ADMIN.test".to_string(),
        "admin.test.".to_string(),
        format!("Admin.Test:{port}"),
        "admin.TEST.:80".to_string(),
    ] {
        s.refused("class 4", "/anything", &host, &[], 401).await;
    }
    for host in ["admin..test", "admin.test:x", "admin test", "[::1"] {
        s.refused("class 4", "/anything", host, &[], 400).await;
    }
    // With a token, the origin reads the canonical host that was routed.
    let auth = s.bearer();
    let before = s.origin.hits();
    let resp = s
        .send(
            STRANGER,
            "GET",
            "/x",
            "ADMIN.Test.",
            &[("Authorization", &auth)],
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(s.origin.hits(), before + 1);
    assert_eq!(resp.origin_saw()["host"], ["admin.test"]);
    // Case-insensitive routes fold case, for origins that do.
    for target in ["/IIS/x", "/iis/x", "/Iis"] {
        s.refused("case_insensitive", target, &s.gw.addr.to_string(), &[], 401)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_remove_a_header_the_gateway_writes() {
    let s = setup().await;
    let auth = s.bearer();
    for nominated in [
        "x-internal-user-id",
        "X-Internal-User-Id, keep-alive",
        "x-user-location",
        "x-forwarded-for, x-forwarded-proto, x-forwarded-host",
        "x-request-id",
    ] {
        let (_, _, saw) = s
            .forwarded(
                "class 5",
                PROXY,
                "/api/x",
                &[
                    ("Authorization", &auth),
                    ("Connection", nominated),
                    ("cf-ipcountry", "GB"),
                    ("x-internal-user-id", "mallory"),
                ],
            )
            .await;
        assert_eq!(saw["x-internal-user-id"], ["alice"], "{nominated}");
        assert_eq!(saw["x-user-location"], ["GB"], "{nominated}");
        assert_eq!(saw["x-forwarded-for"], ["127.0.0.1"], "{nominated}");
        assert_eq!(saw["x-forwarded-proto"], ["http"], "{nominated}");
        assert!(saw.contains_key("x-forwarded-host"), "{nominated}");
        assert_eq!(saw["x-request-id"].len(), 1, "{nominated}");
        assert!(!saw.contains_key("connection"), "{nominated}");
    }
    let host = s.gw.addr.to_string();
    for framing in ["host", "content-length", "Transfer-Encoding"] {
        s.refused("class 5", "/open/x", &host, &[("Connection", framing)], 400)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_country_header_is_the_gateways_from_every_peer() {
    let s = setup().await;
    type Case<'a> = (Ipv4Addr, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case; 5] = [
        (PROXY, &[("x-user-location", "FR")], None),
        (
            PROXY,
            &[("cf-ipcountry", "GB"), ("x-user-location", "FR")],
            Some("GB"),
        ),
        (
            PROXY,
            &[("X-User-Location", "FR"), ("cf-ipcountry", "gb")],
            Some("GB"),
        ),
        (
            STRANGER,
            &[("x-user-location", "FR"), ("cf-ipcountry", "GB")],
            None,
        ),
        (STRANGER, &[("x_user_location", "FR")], None),
    ];
    for (source, headers, want) in cases {
        let (_, _, saw) = s.forwarded("class 6", source, "/open/x", headers).await;
        assert_eq!(
            saw.get("x-user-location").map(|v| v.as_slice()),
            want.map(|w| vec![w.to_string()]).as_deref(),
            "{source} {headers:?}"
        );
        assert!(!saw.contains_key("x_user_location"), "{headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_aliases_and_overrides_of_owned_headers_are_removed() {
    let s = setup().await;
    let (_, _, saw) = s
        .forwarded(
            "class 7",
            STRANGER,
            "/open/x",
            &[
                ("X_Internal_User_Id", "admin"),
                ("x-internal_user-id", "admin"),
                ("X_Forwarded_For", "10.0.0.1"),
                ("x_request_id", "forged"),
                ("X-Original-URL", "/api/secret"),
                ("X-Rewrite-URL", "/api/secret"),
                ("X-HTTP-Method-Override", "DELETE"),
                ("x_custom_flag", "kept"),
            ],
        )
        .await;
    for gone in [
        "x_internal_user_id",
        "x-internal_user-id",
        "x-internal-user-id",
        "x_forwarded_for",
        "x_request_id",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
    ] {
        assert!(
            !saw.contains_key(gone),
            "{gone} reached the origin: {saw:?}"
        );
    }
    assert_eq!(
        saw["x_custom_flag"],
        ["kept"],
        "other underscore names pass by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_replaced_for_strangers_and_extended_for_trusted_proxies() {
    let s = setup().await;
    let spoofed: &[(&str, &str)] = &[
        ("X-Forwarded-For", "1.2.3.4"),
        ("Forwarded", "for=1.2.3.4;proto=https"),
        ("X-Real-IP", "1.2.3.4"),
        ("X-Forwarded-Host", "evil.test"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Prefix", "/admin"),
    ];
    let (_, _, saw) = s.forwarded("class 8", STRANGER, "/open/x", spoofed).await;
    assert_eq!(saw["x-forwarded-for"], ["127.0.0.5"]);
    assert_eq!(saw["x-forwarded-proto"], ["http"]);
    assert_eq!(saw["x-forwarded-host"], [s.gw.addr.to_string()]);
    for gone in [
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
    ] {
        assert!(!saw.contains_key(gone), "{gone} from a stranger: {saw:?}");
    }
    let (_, _, saw) = s.forwarded("class 8", PROXY, "/open/x", spoofed).await;
    assert_eq!(saw["x-forwarded-for"], ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(saw["forwarded"], ["for=1.2.3.4;proto=https, for=127.0.0.1"]);
    assert_eq!(saw["x-real-ip"], ["1.2.3.4"]);
    assert_eq!(saw["x-forwarded-proto"], ["http"], "the gateway's own view");
}
