//! CORS at the edge: preflights answered before authentication without reaching the origin, the
//! route's `Access-Control-*` fields on every answer (the origin's own replaced, the gateway's
//! rejections included), and nothing granted to an origin the route does not list.

use crate::support::*;

const APP: &str = "https://app.example.com";

/// A gateway whose `/api` route (tokens required, GET and DELETE) has `cors`, before an echo
/// origin; `/open` has no CORS.
async fn gateway_with(cors: serde_json::Value) -> (Gateway, EchoOrigin, Signer) {
    let signer = Signer::rsa(RSA_A, "key-a");
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(
            route("api", "/api", "o")
                .set("auth", "required")
                .set("methods", ["GET", "DELETE"])
                .set("cors", cors),
        )
        .with(route("open", "/open", "o"));
    (Gateway::builder(config).start().await, origin_, signer)
}

async fn gateway() -> (Gateway, EchoOrigin, Signer) {
    gateway_with(serde_json::json!({
        "allow_origins": [APP, "https://*.tenants.example.com"],
        "allow_headers": ["authorization", "content-type", "x-trace"],
        "expose_headers": ["x-request-id", "x-total"],
        "allow_credentials": true,
        "max_age_s": 120,
    }))
    .await
}

fn preflight(path: &str, origin: &str, method: &str) -> Req {
    req("OPTIONS", path).headers(&[
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
        ("Access-Control-Request-Headers", "authorization,x-trace"),
    ])
}

fn cors_fields(resp: &Response) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = resp
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("access-control-"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    fields.sort();
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_is_answered_at_the_edge_before_authentication() {
    let (gw, origin, _) = gateway().await;
    // The route allows GET and DELETE, not OPTIONS: the preflight is answered for the route that
    // would serve the request it asks about.
    for asked in ["DELETE", "GET"] {
        let resp = preflight("/api/items/1", APP, asked).send(gw.addr).await;
        assert_eq!(resp.status, 204, "{asked}: {}", resp.text());
        assert_eq!(
            cors_fields(&resp),
            [
                ("access-control-allow-credentials", "true"),
                (
                    "access-control-allow-headers",
                    "authorization, content-type, x-trace"
                ),
                ("access-control-allow-methods", "GET, DELETE"),
                ("access-control-allow-origin", APP),
                ("access-control-max-age", "120"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert_eq!(resp.header("vary"), Some("Origin"));
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("content-length"), None, "a 204 has no framing");
    }
    let resp = preflight("/api/x", "https://a1.tenants.example.com", "GET")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 204);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://a1.tenants.example.com")
    );
    assert_eq!(origin.hits(), 0, "no preflight reaches the origin");
    let m = gw
        .metrics_when(|m| {
            m.count(
                "edgewarden_gateway_rejections_total",
                &[("reason", "cors_preflight")],
            ) >= 3.0
        })
        .await;
    assert_eq!(
        m.count("edgewarden_auth_rejections_total", &[]),
        0.0,
        "a preflight is not an authentication failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_an_origin_not_listed_gets_403_without_cors_fields() {
    let (gw, origin, _) = gateway().await;
    for other in [
        "https://evil.example.com",
        "https://app.example.com.evil.test",
        "http://app.example.com",
        "https://tenants.example.com",
        "null",
    ] {
        let resp = preflight("/api/x", other, "GET").send(gw.addr).await;
        assert_eq!(resp.status, 403, "{other}");
        assert_eq!(resp.json()["error"], "cors_origin_not_allowed", "{other}");
        assert!(
            cors_fields(&resp).is_empty(),
            "{other}: {:?}",
            cors_fields(&resp)
        );
        assert_eq!(resp.header("vary"), Some("Origin"));
    }
    assert_eq!(origin.hits(), 0);
    // The connection and the next request are unaffected.
    let resp = preflight("/api/x", APP, "GET").send(gw.addr).await;
    assert_eq!(resp.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_that_are_not_preflights_for_a_cors_route_are_handled_as_usual() {
    let (gw, origin, _) = gateway().await;
    // On a route without cors, a preflight is an OPTIONS like any other: the origin answers it.
    let resp = preflight("/open/x", APP, "GET").send(gw.addr).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.origin_saw()["access-control-request-method"], ["GET"]);
    assert!(cors_fields(&resp).is_empty());
    assert_eq!(origin.hits(), 1);
    // Without Access-Control-Request-Method it is no preflight: the route's methods apply.
    let resp = req("OPTIONS", "/api/x")
        .header("Origin", APP)
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("DELETE, GET, HEAD"));
    // A method the route does not serve: no preflight answer for it.
    let resp = preflight("/api/x", APP, "PUT").send(gw.addr).await;
    assert_eq!(resp.status, 405);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_routes_cors_fields_in_place_of_the_origins_own() {
    let (gw, origin, signer) = gateway().await;
    let token = signer.token(&good_claims("alice"));
    let resp = req("GET", "/api/x")
        .bearer(&token)
        .headers(&[
            ("Origin", APP),
            ("x-echo-set", "Access-Control-Allow-Origin=*"),
            ("x-echo-set", "Access-Control-Allow-Methods=PUT"),
            ("x-echo-set", "Vary=Accept-Encoding"),
        ])
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.origin_saw()["origin"], [APP], "Origin is forwarded");
    assert_eq!(
        cors_fields(&resp),
        [
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-origin", APP),
            ("access-control-expose-headers", "x-request-id, x-total"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    let vary: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(n, _)| n == "vary")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    // Another origin: the request is served as usual, with no CORS fields (the browser keeps the
    // answer from the page), the origin's permissive ones included.
    let resp = req("GET", "/api/x")
        .bearer(&token)
        .headers(&[
            ("Origin", "https://evil.example.com"),
            ("x-echo-set", "Access-Control-Allow-Origin=*"),
        ])
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert!(cors_fields(&resp).is_empty(), "{:?}", cors_fields(&resp));
    assert_eq!(resp.header("vary"), Some("Origin"));
    assert_eq!(origin.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_rejections_carry_cors_fields_so_the_page_can_read_them() {
    let (gw, origin, signer) = gateway().await;
    let resp = req("GET", "/api/x")
        .header("Origin", APP)
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"], "missing_token");
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(resp.header("vary"), Some("Origin"));
    let expired = signer.token(&serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() - 3600,
    }));
    let resp = req("GET", "/api/x")
        .bearer(&expired)
        .header("Origin", APP)
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));
    let resp = req("GET", "/api/x")
        .header("Origin", "https://evil.example.com")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 401);
    assert!(cors_fields(&resp).is_empty());
    assert_eq!(origin.hits(), 0);
}

/// A page that calls the gateway's `/api/x` three ways and posts what it could read to
/// `/result/NAME` of its own origin.
fn calling_page(gateway: std::net::SocketAddr, token: &str, name: &str) -> String {
    format!(
        r#"<!doctype html>
<title>{name}</title>
<script>
const api = "http://{gateway}/api/x";
async function call(init) {{
  try {{
    const r = await fetch(api, init);
    return {{status: r.status, body: await r.json(), requestId: r.headers.get("x-request-id")}};
  }} catch (e) {{
    return {{error: e.name}};
  }}
}}
(async () => {{
  const bearer = {{Authorization: "Bearer {token}"}};
  const results = {{
    withToken: await call({{headers: bearer}}),
    withoutToken: await call({{}}),
    deleteWithToken: await call({{method: "DELETE", headers: bearer}}),
  }};
  await fetch("/result/{name}", {{method: "POST", body: JSON.stringify(results)}});
}})();
</script>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_page_on_a_listed_origin_reads_answers_and_one_on_another_origin_is_blocked() {
    let pages = PageServer::start().await;
    let listed = format!("http://127.0.0.1:{}", pages.addr.port());
    let (gw, origin_, signer) = gateway_with(
        serde_json::json!({"allow_origins": [listed], "expose_headers": ["x-request-id"]}),
    )
    .await;
    let token = signer.token(&good_claims("alice"));
    pages.page("/listed", &calling_page(gw.addr, &token, "listed"));
    pages.page("/other", &calling_page(gw.addr, &token, "other"));

    // The same server under another name is another origin.
    let _listed = Browser::open(&format!("{listed}/listed"));
    let _other = Browser::open(&format!("http://localhost:{}/other", pages.addr.port()));
    let seen = pages.result("listed").await;
    let with_token = &seen["withToken"];
    assert_eq!(with_token["status"], 200, "{seen}");
    let forwarded = &with_token["body"]["headers"];
    assert!(
        forwarded.as_array().is_some_and(|h| h
            .iter()
            .any(|p| p[0] == "x-internal-user-id" && p[1] == "alice")),
        "{seen}"
    );
    assert!(
        with_token["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{seen}"
    );
    assert_eq!(seen["withoutToken"]["status"], 401, "{seen}");
    assert_eq!(
        seen["withoutToken"]["body"]["error"], "missing_token",
        "{seen}"
    );
    assert_eq!(seen["deleteWithToken"]["status"], 200, "{seen}");

    let blocked = pages.result("other").await;
    for call in ["withToken", "withoutToken", "deleteWithToken"] {
        assert_eq!(blocked[call]["error"], "TypeError", "{call}: {blocked}");
    }
    // Only the listed page's two calls with a token reached the origin: the other page's
    // preflights were answered 403 at the edge, and its call without a token 401.
    assert_eq!(origin_.hits(), 2);
}
