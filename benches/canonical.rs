//! What the canonical-request step costs per request (criterion, in process): the host and
//! target made canonical (`target::canonicalise`), then the headers the gateway owns
//! (`Connection` nominations, underscore aliases and overrides), on a request with the headers a
//! browser or API client sends.
//!
//! - `canonical/origin_form`: an already canonical target (the common case: nothing rewritten);
//! - `canonical/encoded`: `%61`-style escapes and lower-case hex, rewritten;
//! - `canonical/absolute_form`: `http://host/...`, checked against Host and rewritten;
//! - `canonical/refused`: a dot-segment, refused.
//!
//! Each iteration starts from a fresh copy of the request, made outside the timing;
//! `canonical/harness_only` is that copy handed in and returned, for the harness's own share.
//!
//! Run: `cargo bench --bench canonical -- --warm-up-time 1 --measurement-time 3`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use edgewarden::config::Config;
use edgewarden::owned::{OwnedHeaders, apply_connection_nominations};
use edgewarden::target;
use pingora::http::RequestHeader;

/// The gateway's allocator (src/main.rs), so allocations cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
reserved_headers = ["x-internal-*", "x-user-location"]
[[origins]]
name = "o"
upstreams = ["127.0.0.1:9000"]
[[routes]]
name = "r"
path_prefix = "/"
origin = "o"
auth = "off"
"#;

fn request(target: &[u8]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", target, Some(12)).expect("request");
    for (name, value) in [
        ("host", "api.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
        ("connection", "keep-alive"),
        ("cookie", "theme=dark; consent=1"),
    ] {
        req.append_header(name, value).expect("header");
    }
    req
}

fn canonical(c: &mut Criterion) {
    let config = Config::from_str(CONFIG, std::path::Path::new("bench.toml")).expect("config");
    let owned = OwnedHeaders::build(&config);
    let mut group = c.benchmark_group("canonical");
    // The harness alone: a fresh copy handed in and returned, nothing done.
    let template = request(b"/api/v1/users/42?page=2&sort=name");
    group.bench_function("harness_only", |b| {
        b.iter_batched(|| template.clone(), |req| req, BatchSize::SmallInput)
    });
    for (name, target, refused) in [
        (
            "origin_form",
            &b"/api/v1/users/42?page=2&sort=name"[..],
            false,
        ),
        ("encoded", b"/%61pi/v1/users/caf%c3%a9?page=2", false),
        (
            "absolute_form",
            b"http://api.example.com/api/v1/users/42?page=2",
            false,
        ),
        ("refused", b"/public/../api/v1/users", true),
    ] {
        let template = request(target);
        group.bench_function(name, |b| {
            b.iter_batched(
                || template.clone(),
                |mut req| {
                    let routed = target::canonicalise(&mut req);
                    assert_eq!(routed.is_err(), refused);
                    if routed.is_ok() {
                        let nominated = apply_connection_nominations(&mut req);
                        assert!(nominated.is_ok());
                        owned.strip_aliases(&mut req);
                    }
                    (routed, req)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, canonical);
criterion_main!(benches);
