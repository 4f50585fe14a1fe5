//! The abuse shield through the running gateway: the penalty box, the verification budget and
//! negative cache (proved by the signature-check counter), limits by verified claim, shadow mode,
//! and the 429 answer's fields, read as structured fields. Clients connect from distinct loopback
//! addresses (127.0.0.x) so each test can tell one address from another.

use std::net::Ipv4Addr;

use serde_json::Value;
use sfv::{BareItem, ListEntry, Parser};

use crate::support::*;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const USER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const CHECKS: &str = "edgewarden_signature_checks_total";

/// A gateway whose route `/api` requires tokens of the PEM issuer, with `shield` as its `[shield]`
/// section and `limits` defined and applied to the route.
async fn gateway(shield: Entry, limits: &[Entry]) -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let names: Vec<&str> = limits.iter().filter_map(|l| l.str("name")).collect();
    let mut config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(
            route("api", "/api", "o")
                .set("auth", "required")
                .set("limits", names)
                .set("debug_trace", true),
        )
        .with(shield);
    for limit in limits {
        config.push(limit.clone());
    }
    (Gateway::builder(config).start().await, origin_)
}

/// A token signed by another key under the issuer's kid: it fails its signature check.
fn forged(sub: &str, n: usize) -> String {
    let mut claims = good_claims(sub);
    claims["jti"] = Value::from(format!("forged-{n}"));
    Signer::rsa(RSA_B, "key-a").token(&claims)
}

fn valid(sub: &str) -> String {
    Signer::rsa(RSA_A, "key-a").token(&good_claims(sub))
}

async fn call(gw: &Gateway, from: Ipv4Addr, token: &str) -> Response {
    req("GET", "/api/x")
        .bearer(token)
        .from(from)
        .send(gw.addr)
        .await
}

/// A structured-field list of one item: its string and its integer parameters.
fn one_item(field: &str) -> (String, Vec<(String, i64)>) {
    let list: sfv::List = Parser::new(field).parse().expect("a structured-field list");
    assert_eq!(list.len(), 1, "{field}");
    let ListEntry::Item(item) = &list[0] else {
        panic!("an item, not an inner list: {field}");
    };
    let BareItem::String(name) = &item.bare_item else {
        panic!("a string item: {field}");
    };
    let params = item
        .params
        .iter()
        .map(|(k, v)| {
            let v = v.as_integer().expect("integer parameter");
            (k.as_str().to_string(), i64::from(v))
        })
        .collect();
    (name.as_str().to_string(), params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_penalty_box_shuts_after_n_failures_from_one_address_and_not_for_another() {
    let shield = section("shield")
        .set("penalty_failures", 3)
        .set("penalty_s", 300);
    let (gw, origin) = gateway(shield, &[]).await;
    for n in 0..3 {
        assert_eq!(call(&gw, ATTACKER, &forged("x", n)).await.status, 401);
    }
    let checks = gw.metrics().await.total(CHECKS);
    assert_eq!(checks, 3.0);
    // Boxed: even a valid token from that address is refused, without a signature check.
    let resp = call(&gw, ATTACKER, &valid("victim")).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.json()["error"], "rate_limited");
    assert_eq!(
        resp.header("x-edgewarden-trace"),
        Some("shield:penalty_box")
    );
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((299..=300).contains(&retry), "{retry}");
    assert_eq!(gw.metrics().await.total(CHECKS), checks);
    // Another address is not affected.
    let resp = call(&gw, USER, &valid("user-1")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(origin.hits(), 1);
    let m = gw.metrics().await;
    assert_eq!(
        m.count(
            "edgewarden_shield_refusals_total",
            &[("stage", "penalty_box")]
        ),
        1.0
    );
    assert_eq!(m.count("edgewarden_shield_penalty_boxed_total", &[]), 1.0);
}

/// One request on a new connection from `from`: `None` when the gateway dropped the connection
/// without answering.
async fn on_new_connection(gw: &Gateway, from: Ipv4Addr, token: &str) -> Option<(Conn, u16)> {
    let mut conn = Conn::try_open_from(from, gw.addr).await.expect("connect");
    let request = req("GET", "/api/x").bearer(token);
    if !conn.try_send(&request.bytes(&gw.addr.to_string())).await {
        return None;
    }
    let status = conn.read_response(false).await.ok()?.status;
    Some((conn, status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_opening_connections_too_fast_is_dropped_at_accept_and_others_are_not() {
    let shield = section("shield")
        .set("connections_per_s", 1)
        .set("connections_burst", 3);
    let (gw, origin) = gateway(shield, &[]).await;
    let token = valid("user-1");
    let started = std::time::Instant::now();
    let mut kept = Vec::new();
    let mut dropped = 0;
    for _ in 0..8 {
        match on_new_connection(&gw, ATTACKER, &token).await {
            Some((conn, status)) => {
                assert_eq!(status, 200);
                kept.push(conn);
            }
            None => dropped += 1,
        }
    }
    // The burst, plus one a second for however long this took on a busy machine.
    let refilled = started.elapsed().as_secs() as usize;
    assert!(
        (3..=3 + refilled).contains(&kept.len()),
        "{} accepted in {refilled} s",
        kept.len()
    );
    assert_eq!(dropped, 8 - kept.len());
    assert!(dropped >= 1, "none dropped");
    // Connections accepted before stay usable, and another address is not affected.
    let resp = kept[0]
        .request(&req("GET", "/api/x").bearer(&token))
        .await
        .expect("the first connection still answers");
    assert_eq!(resp.status, 200);
    let (_, status) = on_new_connection(&gw, USER, &token)
        .await
        .expect("another address connects");
    assert_eq!(status, 200);
    // The origin saw what was accepted and nothing of what was dropped.
    assert_eq!(origin.hits(), kept.len() + 2);
    let m = gw.metrics().await;
    assert_eq!(
        m.count(
            "edgewarden_shield_refusals_total",
            &[("stage", "connections")]
        ),
        dropped as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_flood_from_one_address_stops_reaching_the_verifier() {
    // The penalty box off, to see the budget and the negative cache alone.
    let shield = section("shield")
        .set("penalty_failures", 0)
        .set("verify_per_s", 1)
        .set("verify_burst", 5);
    let (gw, origin) = gateway(shield, &[]).await;
    let mut statuses = Vec::new();
    for n in 0..20 {
        statuses.push(call(&gw, ATTACKER, &forged("victim", n)).await.status);
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert!(statuses[6..].iter().all(|&s| s == 429), "{statuses:?}");
    let m = gw.metrics().await;
    let checks = m.total(CHECKS);
    assert!(
        (5.0..=6.0).contains(&checks),
        "one per second past the burst: {checks}"
    );
    assert!(
        m.count(
            "edgewarden_shield_refusals_total",
            &[("stage", "verify_budget")]
        ) >= 14.0
    );

    // One forged token sent again and again costs one check: the negative cache answers.
    let same = forged("victim", 99);
    for _ in 0..10 {
        assert_eq!(call(&gw, OTHER, &same).await.status, 401);
    }
    let m = gw.metrics().await;
    assert_eq!(m.total(CHECKS), checks + 1.0);
    assert_eq!(
        m.count(
            "edgewarden_shield_refusals_total",
            &[("stage", "negative_cache")]
        ),
        9.0
    );

    // A genuine user from another address is unaffected.
    assert_eq!(call(&gw, USER, &valid("user-1")).await.status, 200);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_limits_key_on_the_verified_sub_and_forged_tokens_never_spend_it() {
    let (gw, origin) = gateway(section("shield"), &[limit("per-user", "claim:sub", 2, 2)]).await;
    // Forged tokens naming alice are refused before any limit sees them.
    for n in 0..5 {
        assert_eq!(call(&gw, ATTACKER, &forged("alice", n)).await.status, 401);
    }
    let alice = valid("alice");
    for _ in 0..2 {
        assert_eq!(call(&gw, USER, &alice).await.status, 200);
    }
    let resp = call(&gw, USER, &alice).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("x-edgewarden-trace"), Some("limit:per-user"));
    // Bob, from the same address, has his own quota.
    assert_eq!(call(&gw, USER, &valid("bob")).await.status, 200);
    assert_eq!(origin.hits(), 3);
    let m = gw.metrics().await;
    let decisions = |outcome| {
        m.count(
            "edgewarden_limit_decisions_total",
            &[("limit", "per-user"), ("outcome", outcome)],
        )
    };
    assert_eq!((decisions("allowed"), decisions("refused")), (3.0, 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_limit_refuses_nothing_and_counts_everything() {
    let watch = limit("watch", "route", 1, 1).set("mode", "shadow");
    let (gw, origin) = gateway(section("shield"), &[watch]).await;
    let token = valid("user-1");
    for _ in 0..5 {
        assert_eq!(call(&gw, USER, &token).await.status, 200);
    }
    assert_eq!(origin.hits(), 5);
    let m = gw.metrics().await;
    let decisions = |outcome| {
        m.count(
            "edgewarden_limit_decisions_total",
            &[("limit", "watch"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (decisions("allowed"), decisions("shadow_refused")),
        (1.0, 4.0)
    );
    assert_eq!(decisions("refused"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_carries_retry_after_and_ratelimit_fields_and_keeps_the_connection() {
    let (gw, origin) = gateway(section("shield"), &[limit("per-ip", "client_ip", 6, 1)]).await;
    let token = valid("user-1");
    let mut conn = Conn::open(gw.addr).await;
    let first = conn
        .request(&req("GET", "/api/x").bearer(&token))
        .await
        .expect("answer");
    assert_eq!(first.status, 200);
    let resp = conn
        .request(&req("GET", "/api/x").bearer(&token))
        .await
        .expect("answer");
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json()["error"], "rate_limited");
    // One request per 10 s: the next fits in 10 s at most.
    let retry: i64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&retry), "{retry}");
    let (name, params) = one_item(resp.header("ratelimit-policy").expect("RateLimit-Policy"));
    assert_eq!(name, "per-ip");
    assert_eq!(params, vec![("q".to_string(), 6), ("w".to_string(), 60)]);
    let (name, params) = one_item(resp.header("ratelimit").expect("RateLimit"));
    assert_eq!(name, "per-ip");
    assert_eq!(params, vec![("r".to_string(), 0), ("t".to_string(), retry)]);
    // The connection stays open for the next request.
    let again = conn
        .request(&req("GET", "/api/x").bearer(&token))
        .await
        .expect("kept alive");
    assert_eq!(again.status, 429);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_refuses_past_its_requests_in_flight_and_frees_places_at_the_end() {
    let in_flight = limit("in-flight", "client_ip", 1, 1)
        .without("rate")
        .without("per_s")
        .without("burst")
        .set("concurrency", 2);
    let (gw, origin) = gateway(section("shield"), &[in_flight]).await;
    let token = valid("user-1");
    let slow = |token: String, addr| async move {
        req("GET", "/api/slow")
            .bearer(&token)
            .header("x-echo-delay-ms", "1500")
            .from(USER)
            .send(addr)
            .await
            .status
    };
    let first = tokio::spawn(slow(token.clone(), gw.addr));
    let second = tokio::spawn(slow(token.clone(), gw.addr));
    let both_in = eventually(std::time::Duration::from_secs(5), async || {
        origin.hits() == 2
    })
    .await;
    assert!(both_in, "the two slow requests reached the origin");
    let resp = call(&gw, USER, &token).await;
    assert_eq!(resp.status, 429);
    let (name, params) = one_item(resp.header("ratelimit-policy").expect("RateLimit-Policy"));
    assert_eq!(
        (name.as_str(), params),
        ("in-flight", vec![("q".to_string(), 2)])
    );
    assert_eq!(
        call(&gw, OTHER, &token).await.status,
        200,
        "another address"
    );
    assert_eq!(first.await.expect("first"), 200);
    assert_eq!(second.await.expect("second"), 200);
    // Both places came back with their requests' end.
    assert_eq!(call(&gw, USER, &token).await.status, 200);
    assert_eq!(call(&gw, USER, &token).await.status, 200);
}
