//! What tracing costs the thread that serves a request, in process (the load test's
//! `valid_traced_*` scenarios measure the whole gateway): a forwarded request with a policy
//! recorded, decided and, when kept, written as OTLP protobuf and queued for export to a real
//! HTTP collector on loopback.
//!
//! The peer in the same run is what the same six spans cost as `opentelemetry_sdk` `SpanData`
//! converted and encoded by `opentelemetry-proto`, the path `opentelemetry-otlp`'s exporter takes.
//!
//! ```sh
//! cargo bench --bench tracing -- --warm-up-time 1 --measurement-time 3
//! ```

use std::borrow::Cow;
use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use edgewarden::config::{TraceProtocol, TraceTrust, TracingConfig};
use edgewarden::otel::{End, Ended, RequestTrace, Tracer, Value};
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use pingora::http::RequestHeader;
use prost::Message;

/// A collector that reads every export whole and answers 200.
fn collector() -> SocketAddr {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        runtime.block_on(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |request: hyper::Request<hyper::body::Incoming>| async move {
                            let _ = request.into_body().collect().await;
                            Ok::<_, Infallible>(hyper::Response::new(
                                Full::new(bytes::Bytes::new()),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

fn tracer(collector: SocketAddr, ratio: f64) -> Arc<Tracer> {
    let config = TracingConfig {
        enabled: true,
        endpoint: format!("http://{collector}/v1/traces"),
        protocol: TraceProtocol::Protobuf,
        sample_ratio: ratio,
        trust_incoming: TraceTrust::TrustedProxies,
        service_name: "bench".into(),
        slow_ms: None,
        rejected_per_s: 10,
        queue_spans: 1 << 20,
        batch_spans: 512,
        export_timeout_ms: 5000,
        headers: Vec::new(),
    };
    Tracer::build(Some(&config))
        .expect("tracer")
        .expect("tracing on")
}

fn request() -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/orders?page=2", None).expect("request");
    req.insert_header("host", "api.example.com").expect("host");
    req.insert_header("user-agent", "bench/1").expect("ua");
    req
}

/// What the request path records for a forwarded request with one policy, and its end.
fn serve(tracer: &Tracer, req: &RequestHeader) {
    let started = Instant::now();
    let mut trace: RequestTrace = tracer.begin(req, false, started);
    trace.set_client(Some("203.0.113.9".parse().expect("ip")));
    trace.step("shield", started, "passed", None);
    trace.set_issuer(0);
    trace.step("authenticate", Instant::now(), "passed", None);
    let policy_start = Instant::now();
    trace.within_step(
        "policy identity".to_string(),
        (policy_start, Instant::now()),
        "forward",
        vec![
            ("edgewarden.policy", Value::from("identity".to_string())),
            ("edgewarden.policy.isolation", Value::from("warm")),
            ("edgewarden.policy.cpu_us", Value::Int(12)),
        ],
        Vec::new(),
    );
    trace.step(
        "policies",
        policy_start,
        "forward",
        Some(("edgewarden.policy", "identity".into())),
    );
    trace.attempt(
        tracer.new_span_id(),
        Some("127.0.0.1:8081".parse().expect("addr")),
    );
    trace.connected(true);
    trace.upstream_status(200);
    let ended = Ended {
        route_ratio: None,
        failed: false,
        rejected: false,
    };
    tracer.finish(trace, ended, || End {
        method: "GET",
        path: "/api/orders",
        scheme: "http",
        host: Some("api.example.com"),
        user_agent: Some("bench/1"),
        request_id: "0193e4c2-7b1f-7cc3-9a41-5d2f0c6e8a10",
        route: Some(("api", "/api")),
        status: Some(200),
        issuer: Some("corp"),
        reason: None,
        decision: "policy:identity".to_string(),
    });
}

/// The same six spans as `SpanData`, converted and encoded as `opentelemetry-otlp` does.
fn span_data_peer(scope: &InstrumentationScope) -> Vec<u8> {
    let now = SystemTime::now();
    let trace_id = TraceId::from_bytes([7; 16]);
    let context = |id: u64| {
        SpanContext::new(
            trace_id,
            SpanId::from_bytes(id.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    };
    let span = |id, parent: u64, kind, name: Cow<'static, str>, attributes| SpanData {
        span_context: context(id),
        parent_span_id: SpanId::from_bytes(parent.to_be_bytes()),
        parent_span_is_remote: false,
        span_kind: kind,
        name,
        start_time: now,
        end_time: now,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    };
    let step = |id, parent, name, mut attributes: Vec<KeyValue>| {
        attributes.push(KeyValue::new("edgewarden.outcome", "passed"));
        span(
            id,
            parent,
            SpanKind::Internal,
            Cow::Borrowed(name),
            attributes,
        )
    };
    let spans = vec![
        span(
            1,
            0,
            SpanKind::Server,
            Cow::Owned(format!("{} {}", "GET", "/api")),
            vec![
                KeyValue::new("http.request.method", "GET".to_string()),
                KeyValue::new("url.path", "/api/orders".to_string()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new(
                    "edgewarden.request_id",
                    "0193e4c2-7b1f-7cc3-9a41-5d2f0c6e8a10".to_string(),
                ),
                KeyValue::new("edgewarden.decision", "policy:identity".to_string()),
                KeyValue::new("http.route", "/api".to_string()),
                KeyValue::new("edgewarden.route", "api".to_string()),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("client.address", "203.0.113.9".to_string()),
                KeyValue::new("server.address", "api.example.com".to_string()),
                KeyValue::new("user_agent.original", "bench/1".to_string()),
            ],
        ),
        step(2, 1, "shield", Vec::new()),
        step(
            3,
            1,
            "authenticate",
            vec![KeyValue::new("edgewarden.issuer", "corp".to_string())],
        ),
        step(
            4,
            1,
            "policies",
            vec![KeyValue::new("edgewarden.policy", "identity".to_string())],
        ),
        step(
            5,
            4,
            "policy identity",
            vec![
                KeyValue::new("edgewarden.policy", "identity".to_string()),
                KeyValue::new("edgewarden.policy.isolation", "warm"),
                KeyValue::new("edgewarden.policy.cpu_us", 12i64),
            ],
        ),
        span(
            6,
            1,
            SpanKind::Client,
            Cow::Owned("GET".to_string()),
            vec![
                KeyValue::new("http.request.method", "GET".to_string()),
                KeyValue::new("server.address", "127.0.0.1".to_string()),
                KeyValue::new("server.port", 8081i64),
                KeyValue::new("http.response.status_code", 200i64),
            ],
        ),
    ];
    let scope_spans = ScopeSpans {
        scope: None,
        spans: spans.into_iter().map(Span::from).collect(),
        schema_url: String::new(),
    };
    scope_spans.encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let collector = collector();
    let req = request();
    let mut group = c.benchmark_group("tracing");
    let off = tracer(collector, 0.0);
    group.bench_function("recorded, not kept", |b| {
        b.iter(|| serve(&off, black_box(&req)))
    });
    let all = tracer(collector, 1.0);
    group.bench_function("recorded, kept: written as protobuf and queued", |b| {
        b.iter(|| serve(&all, black_box(&req)))
    });
    let scope = InstrumentationScope::builder("edgewarden").build();
    group.bench_function(
        "peer: the same spans as SpanData, converted and encoded",
        |b| b.iter(|| black_box(span_data_peer(&scope))),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
