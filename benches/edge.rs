//! What CORS and the request limits cost per request (criterion, in process), on a request and a
//! response shaped like a browser's and an origin's:
//!
//! - `edge/response_filter_without_cors` and `edge/response_filter_with_cors`: what the gateway
//!   does to a proxied response (its request id), and the same with an actual request's CORS
//!   grant (its `Origin` matched against the route's list, the last of three entries, a subdomain
//!   pattern) and fields (the origin's own removed, `Vary` merged, credentials and exposed
//!   headers on): the difference is what CORS adds;
//! - `edge/cors_grant`: the actual request's `Origin` matched (the last of three entries);
//! - `edge/cors_preflight`: a preflight's grant and the fields of its 204;
//! - `edge/limits_head`: `max_header_bytes` and `max_body_bytes` checked on the head of a request
//!   with 14 fields;
//! - `edge/route_without_either`: what a route with neither pays: the two checks that skip them.
//!
//! Run: `cargo bench --bench edge -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edgewarden::config::{AllowedOrigin, CorsConfig, RequestLimits};
use edgewarden::cors::Cors;
use edgewarden::proxy::limits::check_head;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};

/// The gateway's allocator (src/main.rs), so allocations cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cors() -> Cors {
    Cors::new(&CorsConfig {
        allow_origins: [
            "https://app.example.com",
            "https://admin.example.com",
            "https://*.tenants.example.com",
        ]
        .map(|o| AllowedOrigin::parse(o).expect("an origin"))
        .to_vec(),
        allow_methods: vec![Method::GET, Method::POST, Method::DELETE],
        allow_headers: vec!["authorization".into(), "content-type".into()],
        expose_headers: vec!["x-request-id".into()],
        allow_credentials: true,
        max_age_s: 600,
    })
    .expect("valid")
}

/// A browser's request: 14 fields.
fn browser_request(method: &str) -> RequestHeader {
    let mut req = RequestHeader::build(method, b"/api/items?page=2", None).expect("request");
    for (name, value) in [
        ("host", "api.example.com"),
        ("origin", "https://acme.tenants.example.com"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImtleS0xIn0.eyJzdWIiOiJhbGljZSJ9.c2ln",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("content-type", "application/json"),
        ("content-length", "512"),
        ("referer", "https://acme.tenants.example.com/dashboard"),
        ("sec-fetch-dest", "empty"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-site"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
        ),
        ("access-control-request-method", "DELETE"),
    ] {
        req.append_header(name, value).expect("field");
    }
    req
}

/// An origin's response: six fields, one of them its own CORS field and one a Vary; the request
/// id is the gateway's to add, as with most origins.
fn origin_response() -> ResponseHeader {
    let mut resp = ResponseHeader::build(200, Some(6)).expect("response");
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "2048"),
        ("cache-control", "private, max-age=0"),
        ("vary", "Accept-Encoding"),
        ("access-control-allow-origin", "*"),
        ("etag", "\"33a64df5\""),
    ] {
        resp.append_header(name, value).expect("field");
    }
    resp
}

fn edge(c: &mut Criterion) {
    let cors = cors();
    let mut group = c.benchmark_group("edge");
    let actual = browser_request("POST");
    let response = origin_response();
    // What `response_filter` does to every proxied response (the request id), without and with
    // the route's CORS fields: the difference is what CORS adds. The origin's response has the
    // exact capacity Pingora's parser gives it, so the first field added, the request id on every
    // proxied response, pays the maps' growth with or without CORS.
    let request_id = "8c02f45cc7cf46baaa749f79f6a0b889";
    group.bench_function("response_filter_without_cors", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |resp| {
                resp.insert_header("x-request-id", black_box(request_id))
                    .expect("id")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("response_filter_with_cors", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |resp| {
                let grant = cors.grant(black_box(&actual));
                cors.apply(resp, &grant).expect("fields");
                resp.insert_header("x-request-id", black_box(request_id))
                    .expect("id");
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // The common case: one listed origin, no credentials or exposed headers, an origin that sets
    // no CORS field of its own.
    let plain = Cors::new(&CorsConfig {
        allow_origins: vec![AllowedOrigin::Exact(
            "https://acme.tenants.example.com".into(),
        )],
        allow_methods: vec![Method::GET, Method::POST],
        allow_headers: vec!["authorization".into()],
        expose_headers: vec![],
        allow_credentials: false,
        max_age_s: 600,
    })
    .expect("valid");
    let mut own_less = origin_response();
    own_less.remove_header("access-control-allow-origin");
    group.bench_function("response_filter_without_cors_plain", |b| {
        b.iter_batched_ref(
            || own_less.clone(),
            |resp| {
                resp.insert_header("x-request-id", black_box(request_id))
                    .expect("id")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("response_filter_with_cors_plain", |b| {
        b.iter_batched_ref(
            || own_less.clone(),
            |resp| {
                let grant = plain.grant(black_box(&actual));
                plain.apply(resp, &grant).expect("fields");
                resp.insert_header("x-request-id", black_box(request_id))
                    .expect("id");
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("cors_grant", |b| b.iter(|| cors.grant(black_box(&actual))));
    let preflight = browser_request("OPTIONS");
    group.bench_function("cors_preflight", |b| {
        b.iter_batched_ref(
            || ResponseHeader::build_no_case(204, Some(8)).expect("response"),
            |resp| {
                let asked = edgewarden::cors::preflight_method(black_box(&preflight));
                let grant = cors.grant(&preflight);
                cors.apply_preflight(resp, &grant).expect("fields");
                asked
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let limits = RequestLimits {
        max_header_bytes: Some(16 * 1024),
        max_body_bytes: Some(1 << 20),
        body_timeout: Some(Duration::from_secs(30)),
    };
    group.bench_function("limits_head", |b| {
        b.iter(|| check_head(black_box(&limits), black_box(&actual)))
    });
    let none = RequestLimits::default();
    let no_cors: Option<Cors> = None;
    group.bench_function("route_without_either", |b| {
        b.iter(|| black_box(&none).any() || black_box(&no_cors).is_some())
    });
    group.finish();
}

criterion_group!(benches, edge);
criterion_main!(benches);
