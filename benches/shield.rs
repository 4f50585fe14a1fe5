//! What the shield costs per request (criterion, in process), local stores only:
//!
//! - `shield/gcra_check`: the algorithm alone (one `Quota::check`);
//! - `shield/stages_only`: `before_auth` on a route with no limits, for an address not in the
//!   penalty box: what the shield adds to every request, missing-token 401s included;
//! - `shield/penalty_box_refusal`: `before_auth` for an address in the box (the refusal's cost);
//! - `shield/client_limit_one_key`: a `client_ip` limit, one address again and again (allowed);
//! - `shield/client_limit_many_keys`: the same limit over a million addresses, beyond the store's
//!   100 000 keys, so most checks insert and evict;
//! - `shield/claim_limit`: a `claim:sub` limit after verification (allowed);
//! - `shield/policy_limit`: what a plugin's `edgewarden.limit` costs on the host's side (finding
//!   the `key = "policy"` limit and one check), without the crossing into the component.
//!
//! `before_auth`, `after_auth` and `policy_limit` complete in one poll with local stores; each iteration polls once.
//!
//! Run: `cargo bench --bench shield -- --warm-up-time 1 --measurement-time 3`

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use edgewarden::config::Config;
use edgewarden::shield::Shield;
use edgewarden::shield::gcra::Quota;
use pingora::http::RequestHeader;
use serde_json::json;

/// The gateway's allocator (src/main.rs), so allocations cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
[shield]
penalty_failures = 3
[[origins]]
name = "o"
upstreams = ["127.0.0.1:9000"]
[[limits]]
name = "per-ip"
key = "client_ip"
rate = 1000000000
[[limits]]
name = "per-user"
key = "claim:sub"
rate = 1000000000
[[limits]]
name = "tenant"
key = "policy"
rate = 1000000000
[[routes]]
name = "plain"
path_prefix = "/plain"
origin = "o"
auth = "off"
[[routes]]
name = "limited"
path_prefix = "/limited"
origin = "o"
auth = "off"
limits = ["per-ip", "per-user"]
"#;

/// Drive a future that completes without waiting (local stores never wait).
fn poll_once<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the shield awaited; local stores complete in one poll"),
    }
}

fn shield(c: &mut Criterion) {
    let config = Config::from_str(CONFIG, std::path::Path::new("bench.toml")).expect("config");
    let shield =
        Shield::build(&config.shield, &config.limits, config.redis.as_ref()).expect("shield");
    let plain = shield.resolve(&config.routes[0]).expect("route");
    let limited = shield.resolve(&config.routes[1]).expect("route");
    let client = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let boxed = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)));
    for _ in 0..3 {
        shield.auth_failed(&plain, boxed);
    }
    let mut permits = Vec::new();
    assert!(poll_once(shield.before_auth(&plain, boxed, &mut permits)).is_err());
    assert!(poll_once(shield.before_auth(&plain, client, &mut permits)).is_ok());
    let req = RequestHeader::build("GET", b"/limited", None).expect("request");
    let claims = json!({"sub": "user-42"});
    let claims = claims.as_object().expect("claims");

    let mut group = c.benchmark_group("shield");
    let quota = Quota::new(100, 60, 20);
    group.bench_function("gcra_check", |b| {
        b.iter(|| quota.check(black_box(5_000_000_000), black_box(5_100_000_000), 1))
    });
    group.bench_function("stages_only", |b| {
        b.iter(|| poll_once(shield.before_auth(&plain, black_box(client), &mut permits)).is_ok())
    });
    group.bench_function("penalty_box_refusal", |b| {
        b.iter(|| poll_once(shield.before_auth(&plain, black_box(boxed), &mut permits)).is_err())
    });
    group.bench_function("client_limit_one_key", |b| {
        b.iter(|| poll_once(shield.before_auth(&limited, black_box(client), &mut permits)).is_ok())
    });
    let mut n: u32 = 0;
    group.bench_function("client_limit_many_keys", |b| {
        b.iter(|| {
            n = (n + 1) % 1_000_000;
            let ip = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
            poll_once(shield.before_auth(&limited, ip, &mut permits)).is_ok()
        })
    });
    group.bench_function("claim_limit", |b| {
        b.iter(|| {
            poll_once(shield.after_auth(&limited, Some(black_box(claims)), &req, &mut permits))
                .is_ok()
        })
    });
    group.bench_function("policy_limit", |b| {
        b.iter(|| {
            matches!(
                poll_once(shield.policy_limit("tenant", black_box(b"acme"), 1)),
                Some(Ok(_))
            )
        })
    });
    group.finish();
}

criterion_group!(benches, shield);
criterion_main!(benches);
