use std::net::IpAddr;

use serde_json::json;

use super::*;
use crate::config::{LimitConfig, LimitKey, LimitKind, LimitMode, Name, ShieldConfig, Window};

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

fn limit(n: &str, key: LimitKey, rate: u64, burst: u64, mode: LimitMode) -> LimitConfig {
    LimitConfig {
        name: name(n),
        key,
        kind: LimitKind::Rate(vec![Window {
            rate,
            per_s: 60,
            burst,
        }]),
        mode,
        store: crate::config::LimitStore::Local,
    }
}

/// Route "r", applying `limits` (not checked against a `[[limits]]` list here).
fn route(limits: &[&str]) -> RouteConfig {
    let text = r#"
        [server]
        listen = ["127.0.0.1:0"]
        [[origins]]
        name = "o"
        upstreams = ["127.0.0.1:1"]
        [[routes]]
        name = "r"
        path_prefix = "/"
        origin = "o"
        auth = "off"
    "#;
    let config = crate::config::Config::from_str(text, std::path::Path::new("unit.toml"))
        .expect("valid config");
    let mut route = config.routes[0].clone();
    route.limits = limits.iter().map(|l| name(l)).collect();
    route
}

fn build(config: &ShieldConfig, limits: &[LimitConfig]) -> Shield {
    Shield::build(config, limits, None).expect("shield")
}

/// `before_auth` run to completion (local stores never wait).
fn before(shield: &Shield, route: &RouteShield, client: Option<IpAddr>) -> Result<(), Refusal> {
    block_on(shield.before_auth(route, client, &mut Vec::new()))
}

fn after(
    shield: &Shield,
    route: &RouteShield,
    claims: Option<&Map<String, Value>>,
    req: &RequestHeader,
) -> Result<(), Refusal> {
    block_on(shield.after_auth(route, claims, req, &mut Vec::new()))
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("address"))
}

fn request(headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/", None).expect("request");
    for (n, v) in headers {
        req.append_header(n.to_string(), *v).expect("header");
    }
    req
}

#[test]
fn ipv6_clients_are_counted_by_their_64_and_ipv4_by_address() {
    assert_eq!(
        address("2001:db8:1:2:aaaa::1".parse().expect("v6")),
        address("2001:db8:1:2:bbbb::2".parse().expect("v6"))
    );
    assert_ne!(
        address("2001:db8:1:2::1".parse().expect("v6")),
        address("2001:db8:1:3::1".parse().expect("v6"))
    );
    assert_eq!(
        address("::ffff:192.0.2.1".parse().expect("mapped")),
        address("192.0.2.1".parse().expect("v4"))
    );
    assert_ne!(
        address("192.0.2.1".parse().expect("v4")),
        address("192.0.2.2".parse().expect("v4"))
    );
}

#[test]
fn the_penalty_box_shuts_after_n_failures_for_that_address_only() {
    let config = ShieldConfig {
        penalty_failures: 3,
        ..ShieldConfig::default()
    };
    let shield = build(&config, &[]);
    let r = shield.resolve(&route(&[])).expect("route");
    for _ in 0..2 {
        shield.auth_failed(&r, ip("192.0.2.1"));
    }
    assert!(before(&shield, &r, ip("192.0.2.1")).is_ok(), "2 of 3");
    shield.auth_failed(&r, ip("192.0.2.1"));
    let refusal = before(&shield, &r, ip("192.0.2.1")).expect_err("boxed after the third failure");
    assert_eq!(refusal.stage, Stage::PenaltyBox);
    assert_eq!(refusal.retry_after_s, 60);
    assert_eq!(refusal.policy, "\"penalty_box\";q=3;w=60");
    assert!(
        before(&shield, &r, ip("192.0.2.2")).is_ok(),
        "another address"
    );
}

#[test]
fn exempt_networks_and_routes_are_never_boxed() {
    let config = ShieldConfig {
        penalty_failures: 1,
        exempt: vec!["10.0.0.0/8".parse().expect("net")],
        ..ShieldConfig::default()
    };
    let shield = build(&config, &[]);
    let r = shield.resolve(&route(&[])).expect("route");
    shield.auth_failed(&r, ip("10.1.2.3"));
    assert!(before(&shield, &r, ip("10.1.2.3")).is_ok());
    let mut open = route(&[]);
    open.shield = false;
    let open = shield.resolve(&open).expect("route");
    shield.auth_failed(&open, ip("192.0.2.9"));
    assert!(before(&shield, &r, ip("192.0.2.9")).is_ok());
}

#[test]
fn the_verification_budget_refuses_past_its_burst() {
    let config = ShieldConfig {
        verify_per_s: 1,
        verify_burst: 2,
        ..ShieldConfig::default()
    };
    let shield = build(&config, &[]);
    let r = shield.resolve(&route(&[])).expect("route");
    let budget = shield.budget(&r, ip("192.0.2.1"));
    assert!(budget.spend() && budget.spend());
    assert!(!budget.spend());
    let refusal = budget.refusal().expect("kept");
    assert_eq!(refusal.stage, Stage::VerifyBudget);
    assert!(shield.budget(&r, ip("192.0.2.2")).spend(), "per address");
    assert!(Budget::unlimited().spend());
}

#[test]
fn new_connections_are_held_to_their_address_rate_unless_exempt_or_off() {
    let config = ShieldConfig {
        connections_per_s: 1,
        connections_burst: 2,
        exempt: vec!["10.0.0.0/8".parse().expect("net")],
        ..ShieldConfig::default()
    };
    let shield = build(&config, &[]);
    let peer: IpAddr = "192.0.2.1".parse().expect("address");
    assert!(shield.accept_connection(peer) && shield.accept_connection(peer));
    assert!(!shield.accept_connection(peer), "past the burst");
    assert!(
        shield.accept_connection("192.0.2.2".parse().expect("address")),
        "per address"
    );
    let exempt: IpAddr = "10.1.2.3".parse().expect("address");
    assert!((0..10).all(|_| shield.accept_connection(exempt)));
    let off = build(
        &ShieldConfig {
            connections_per_s: 0,
            ..ShieldConfig::default()
        },
        &[],
    );
    assert!((0..1000).all(|_| off.accept_connection(peer)));
}

#[test]
fn client_limits_refuse_past_the_burst_and_name_the_limit() {
    let limits = [limit(
        "per-ip",
        LimitKey::ClientIp,
        10,
        2,
        LimitMode::Enforce,
    )];
    let shield = build(&ShieldConfig::default(), &limits);
    let r = shield.resolve(&route(&["per-ip"])).expect("route");
    assert!(before(&shield, &r, ip("192.0.2.1")).is_ok());
    assert!(before(&shield, &r, ip("192.0.2.1")).is_ok());
    let refusal = before(&shield, &r, ip("192.0.2.1")).expect_err("third");
    assert_eq!(&*refusal.limit, "per-ip");
    assert_eq!(refusal.retry_after_s, 6, "one request per 6 s");
    assert_eq!(refusal.ratelimit_field(), "\"per-ip\";r=0;t=6");
    assert_eq!(refusal.policy, "\"per-ip\";q=10;w=60");
    assert!(before(&shield, &r, ip("192.0.2.2")).is_ok());
}

#[test]
fn shadow_limits_refuse_nothing() {
    let limits = [limit("watch", LimitKey::Route, 1, 1, LimitMode::Shadow)];
    let shield = build(&ShieldConfig::default(), &limits);
    let r = shield.resolve(&route(&["watch"])).expect("route");
    for _ in 0..5 {
        assert!(before(&shield, &r, ip("192.0.2.1")).is_ok());
    }
}

#[test]
fn claim_limits_key_on_the_verified_value_and_nested_paths() {
    let limits = [
        limit(
            "per-user",
            LimitKey::Claim(vec!["sub".into()]),
            10,
            1,
            LimitMode::Enforce,
        ),
        limit(
            "per-tenant",
            LimitKey::Claim(vec!["org".into(), "id".into()]),
            10,
            2,
            LimitMode::Enforce,
        ),
    ];
    let shield = build(&ShieldConfig::default(), &limits);
    let r = shield
        .resolve(&route(&["per-user", "per-tenant"]))
        .expect("route");
    let req = request(&[]);
    let alice = json!({"sub": "alice", "org": {"id": 7}});
    let bob = json!({"sub": "bob", "org": {"id": 7}});
    let (alice, bob) = (
        alice.as_object().expect("map"),
        bob.as_object().expect("map"),
    );
    assert!(after(&shield, &r, Some(alice), &req).is_ok());
    let refusal = after(&shield, &r, Some(alice), &req).expect_err("alice's one");
    assert_eq!(&*refusal.limit, "per-user");
    assert!(
        after(&shield, &r, Some(bob), &req).is_ok(),
        "bob has his own"
    );
    let carol = json!({"sub": "carol", "org": {"id": 7}});
    let refusal = after(&shield, &r, carol.as_object(), &req).expect_err("tenant 7 spent its two");
    assert_eq!(&*refusal.limit, "per-tenant");
}

#[test]
fn requests_without_the_key_share_one_bucket() {
    let limits = [limit(
        "per-key",
        LimitKey::Header("x-api-key".into()),
        10,
        1,
        LimitMode::Enforce,
    )];
    let shield = build(&ShieldConfig::default(), &limits);
    let r = shield.resolve(&route(&["per-key"])).expect("route");
    assert!(after(&shield, &r, None, &request(&[])).is_ok());
    assert!(after(&shield, &r, None, &request(&[])).is_err());
    assert!(after(&shield, &r, None, &request(&[("x-api-key", "k1")])).is_ok());
    assert!(after(&shield, &r, None, &request(&[("x-api-key", "k1")])).is_err());
    assert!(after(&shield, &r, None, &request(&[("x-api-key", "k2")])).is_ok());
}

#[test]
fn a_reload_keeps_the_counters_of_unchanged_limits_only() {
    let old = [
        limit("same", LimitKey::Route, 10, 1, LimitMode::Enforce),
        limit("changed", LimitKey::Route, 10, 1, LimitMode::Enforce),
    ];
    let serving = build(&ShieldConfig::default(), &old);
    let r = serving
        .resolve(&route(&["same", "changed"]))
        .expect("route");
    assert!(before(&serving, &r, None).is_ok());
    let new = [
        limit("same", LimitKey::Route, 10, 1, LimitMode::Shadow),
        limit("changed", LimitKey::Route, 20, 1, LimitMode::Enforce),
    ];
    let mut next = build(&ShieldConfig::default(), &new);
    next.adopt(&serving);
    let same = next.resolve(&route(&["same"])).expect("route");
    let changed = next.resolve(&route(&["changed"])).expect("route");
    assert!(before(&next, &changed, None).is_ok(), "fresh counters");
    next.limits[0].config.mode = LimitMode::Enforce;
    assert!(
        before(&next, &same, None).is_err(),
        "kept: its one request is spent"
    );
}

#[test]
fn an_unknown_limit_is_a_build_error() {
    let shield = build(&ShieldConfig::default(), &[]);
    assert!(shield.resolve(&route(&["nope"])).is_err());
}

#[test]
fn address_keys_tell_addresses_apart_and_group_ipv6_by_64() {
    let key = |s: &str| address_key(s.parse::<IpAddr>().expect("address"));
    assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    assert_eq!(key("10.0.0.1"), key("::ffff:10.0.0.1"));
    assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    // IPv4 keys never meet a routable IPv6 /64.
    assert_ne!(key("0.0.0.0"), key("::"));
    assert_ne!(key("255.255.255.255"), key("ffff:ffff:ffff:ffff::"));
}

#[test]
fn a_refusal_names_the_window_that_refused() {
    let mut config = limit(
        "burst-and-day",
        LimitKey::ClientIp,
        0,
        0,
        LimitMode::Enforce,
    );
    config.kind = LimitKind::Rate(vec![
        Window {
            rate: 100,
            per_s: 1,
            burst: 100,
        },
        Window {
            rate: 2,
            per_s: 86_400,
            burst: 2,
        },
    ]);
    let shield = build(&ShieldConfig::default(), &[config]);
    let r = shield.resolve(&route(&["burst-and-day"])).expect("route");
    assert!(before(&shield, &r, ip("192.0.2.1")).is_ok());
    assert!(before(&shield, &r, ip("192.0.2.1")).is_ok());
    let refusal = before(&shield, &r, ip("192.0.2.1")).expect_err("the day's quota is spent");
    assert_eq!(refusal.policy, "\"burst-and-day\";q=2;w=86400");
    assert_eq!((refusal.rate, refusal.per_s), (2, 86_400));
}
