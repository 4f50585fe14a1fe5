//! OpenTelemetry traces, as a real OTLP receiver decodes them: the span tree of forwarded,
//! refused and failed requests, the `traceparent` the origin receives, the trust boundary for a
//! client's trace context, and export that never holds a request up.

use std::time::Duration;

use crate::support::*;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const ERROR: i32 = 2;
const CLIENT_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn tracing(receiver: &OtlpReceiver, ratio: f64) -> Entry {
    section("tracing")
        .set("endpoint", receiver.endpoint())
        .set("sample_ratio", ratio)
        .set("service_name", "edge-test")
}

/// One route, `/` to `origin_`, traced as `tracing` says.
fn one_route(origin_: &EchoOrigin, tracing: Entry) -> Config {
    Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/", "o"))
        .with(tracing)
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span {name:?} in {spans:#?}");
    found[0]
}

/// `00-trace-span-flags` split in three.
fn traceparent_parts(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_one_trace_and_the_origin_sees_the_upstream_span_as_parent() {
    let receiver = OtlpReceiver::start().await;
    let origin_ = echo_origin("o").await;
    let signer = Signer::rsa(RSA_A, "key-a");
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(
            route("api", "/api", "o")
                .set("auth", "required")
                .set("policies", ["admins"]),
        )
        .with(tracing(&receiver, 1.0))
        .with(section("access_log"));
    let gw = Gateway::builder(config)
        .plugin("require_claim", "python-plugins/require_claim")
        .policy("admins", admins_only())
        .start()
        .await;
    let mut claims = good_claims("user-7");
    claims["role"] = "admin".into();
    let resp = req("GET", "/api/orders?page=2")
        .bearer(&signer.token(&claims))
        .header("user-agent", "trace-test/1")
        .header("x-request-id", "req-forwarded-1")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    let saw = resp.origin_saw();
    let parent = saw["traceparent"].clone();
    assert_eq!(parent.len(), 1, "one traceparent: {parent:?}");
    let (trace_id, parent_id, flags) = traceparent_parts(&parent[0]);
    assert_eq!(flags, "01", "sampled at ratio 1.0");

    let spans = receiver.trace_of("req-forwarded-1", 6).await;
    let server = one(&spans, "GET /api");
    assert_eq!((server.kind, server.status), (SERVER, 0));
    assert_eq!(server.trace_id, trace_id);
    assert_eq!(server.parent_span_id, "", "a new trace: no parent");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/api/orders"),
        ("url.scheme", "http"),
        ("http.route", "/api"),
        ("http.response.status_code", "200"),
        ("client.address", "127.0.0.1"),
        ("user_agent.original", "trace-test/1"),
        ("edgewarden.route", "api"),
        ("edgewarden.decision", "forward:o"),
    ] {
        assert_eq!(server.attr(key), Some(value), "{key} in {server:#?}");
    }
    assert_eq!(
        server.resource.get("service.name").map(String::as_str),
        Some("edge-test")
    );
    assert!(server.resource.contains_key("service.instance.id"));

    let auth = one(&spans, "authenticate");
    assert_eq!(auth.parent_span_id, server.span_id);
    assert_eq!(auth.attr("edgewarden.outcome"), Some("passed"));
    assert_eq!(auth.attr("edgewarden.issuer"), Some("main"));
    let policies = one(&spans, "policies");
    assert_eq!(policies.parent_span_id, server.span_id);
    assert_eq!(policies.attr("edgewarden.outcome"), Some("passed"));
    let call = one(&spans, "policy admins");
    assert_eq!(call.parent_span_id, policies.span_id);
    assert_eq!(call.attr("edgewarden.outcome"), Some("forwarded"));
    assert_eq!(call.attr("edgewarden.policy.isolation"), Some("warm"));
    let upstream = one(&spans, "GET");
    assert_eq!(upstream.kind, CLIENT);
    assert_eq!(upstream.parent_span_id, server.span_id);
    assert_eq!(
        upstream.span_id, parent_id,
        "the origin's parent is the upstream span"
    );
    assert_eq!(
        upstream.attr("server.port"),
        Some(origin_.addr.port().to_string().as_str())
    );
    assert_eq!(upstream.attr("http.response.status_code"), Some("200"));
    assert!(upstream.events.iter().any(|e| e == "connected"));
    assert!(
        spans.iter().all(|s| !format!("{s:?}").contains("eyJ")),
        "no token in any span"
    );

    // The access log carries both ids, and they differ.
    let line = gw
        .stdout()
        .lines()
        .find(|l| l.contains("req-forwarded-1"))
        .map(str::to_string)
        .expect("an access-log line");
    assert!(
        line.contains(&format!("\"trace_id\":\"{trace_id}\"")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_traced_without_an_upstream_span() {
    let receiver = OtlpReceiver::start().await;
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("auth", "required"))
        .with(route("open", "/open", "o").set("limits", ["one"]))
        .with(limit("one", "route", 1, 1))
        .with(tracing(&receiver, 1.0));
    let gw = Gateway::builder(config).start().await;

    let resp = req("GET", "/api/x")
        .header("x-request-id", "req-401")
        .header("traceparent", CLIENT_TRACEPARENT)
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 401);
    let spans = receiver.trace_of("req-401", 3).await;
    let server = one(&spans, "GET /api");
    assert_eq!(server.attr("http.response.status_code"), Some("401"));
    assert_eq!(server.status, 0, "a 4xx is not an error of the gateway");
    assert_eq!(server.attr("error.type"), None);
    let auth = one(&spans, "authenticate");
    assert_eq!(auth.attr("edgewarden.outcome"), Some("missing_token"));
    assert!(spans.iter().all(|s| s.kind != CLIENT), "no upstream span");

    let first = req("GET", "/open/a").send(gw.addr).await;
    assert_eq!(first.status, 200);
    let refused = req("GET", "/open/b")
        .header("x-request-id", "req-429")
        .send(gw.addr)
        .await;
    assert_eq!(refused.status, 429);
    // A limit keyed by route is applied before the token is read: by the shield step.
    let spans = receiver.trace_of("req-429", 2).await;
    let shield = one(&spans, "shield");
    assert_eq!(shield.attr("edgewarden.outcome"), Some("rate_limited"));
    assert_eq!(shield.attr("edgewarden.limit"), Some("one"));
    assert!(
        spans.iter().all(|s| s.name != "limits"),
        "the request stopped at the shield"
    );
    assert_eq!(
        one(&spans, "GET /open").attr("edgewarden.decision"),
        Some("limit:one")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_kept_unsampled_and_mark_the_server_span_as_error() {
    let receiver = OtlpReceiver::start().await;
    let dead = DeadPort::new();
    let silent = MisbehavingOrigin::start(Misbehaviour::NeverAnswers).await;
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(origin("dead", &[dead.addr]))
        .with(origin("silent", &[silent.addr]).set("read_timeout_ms", 300))
        .with(origin("o", &[origin_.addr]))
        .with(route("dead", "/dead", "dead"))
        .with(route("silent", "/silent", "silent"))
        .with(route("fails", "/fails", "o").set("policies", ["misbehave"]))
        .with(route("fine", "/fine", "o"))
        .with(tracing(&receiver, 0.0));
    let gw = Gateway::builder(config)
        .plugin("misbehave", "tests/plugins/misbehave")
        .policy("misbehave", policy("misbehave"))
        .start()
        .await;

    for (path, id, status, error) in [
        ("/dead/x", "req-502", 502, "connect_refused"),
        ("/silent/x", "req-504", 504, "read_timeout"),
    ] {
        let resp = req("GET", path)
            .header("x-request-id", id)
            .send(gw.addr)
            .await;
        assert_eq!(resp.status, status, "{path}");
        let spans = receiver.trace_of(id, 2).await;
        let server = spans
            .iter()
            .find(|s| s.kind == SERVER)
            .expect("server span");
        assert_eq!(server.status, ERROR, "{server:#?}");
        assert_eq!(
            server.attr("http.response.status_code"),
            Some(status.to_string().as_str())
        );
        let upstream = spans
            .iter()
            .find(|s| s.kind == CLIENT)
            .expect("upstream span");
        assert_eq!(upstream.status, ERROR);
        assert_eq!(upstream.attr("error.type"), Some(error), "{upstream:#?}");
        assert_eq!(server.attr("error.type"), Some(error));
    }

    let resp = req("GET", "/fails/x")
        .header("x-request-id", "req-policy")
        .header("x-misbehave", "log-then-raise")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 503);
    let spans = receiver.trace_of("req-policy", 3).await;
    let policies = one(&spans, "policies");
    assert_eq!(policies.attr("edgewarden.policy"), Some("misbehave"));
    assert_eq!(policies.attr("edgewarden.outcome"), Some("exception"));
    let call = one(&spans, "policy misbehave");
    assert_eq!(call.parent_span_id, policies.span_id);
    assert_eq!(call.attr("edgewarden.outcome"), Some("exception"));
    assert_eq!(call.attr("edgewarden.policy.isolation"), Some("warm"));
    assert!(call.attr("edgewarden.policy.cpu_us").is_some(), "{call:#?}");
    assert_eq!(call.events, vec!["log".to_string(), "log".to_string()]);
    assert_eq!(one(&spans, "GET /fails").status, ERROR);

    // At ratio 0, a request that went well is not kept.
    let fine = req("GET", "/fine/x")
        .header("x-request-id", "req-fine")
        .send(gw.addr)
        .await;
    assert_eq!(fine.status, 200);
    let (_, _, flags) = traceparent_parts(&fine.origin_saw()["traceparent"][0]);
    assert_eq!(flags, "00", "the origin hears the gateway's decision");
    let metrics = gw
        .metrics_when(|m| {
            m.value("edgewarden_traces_total", &[("decision", "not_sampled")])
                .is_some()
        })
        .await;
    assert_eq!(
        metrics.value("edgewarden_traces_total", &[("decision", "failed")]),
        Some(3.0)
    );
    assert!(
        receiver
            .spans()
            .iter()
            .all(|s| s.attr("edgewarden.request_id") != Some("req-fine"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_context_is_a_link_unless_its_peer_is_trusted() {
    let receiver = OtlpReceiver::start().await;
    let origin_ = echo_origin("o").await;
    let dead = DeadPort::new();
    let config = |trusted: &[&str]| {
        Config::new()
            .server("trusted_proxies", trusted)
            .with(origin("o", &[origin_.addr]))
            .with(origin("dead", &[dead.addr]))
            .with(route("api", "/api", "o"))
            .with(route("dead", "/dead", "dead"))
            .with(tracing(&receiver, 0.0))
    };
    let send = async |gw: &Gateway, path: &str, id: &str| {
        req("GET", path)
            .header("x-request-id", id)
            .header("traceparent", CLIENT_TRACEPARENT)
            .header("tracestate", "congo=t61rcWkgMzE")
            .send(gw.addr)
            .await
    };

    // Untrusted: a new trace the client cannot switch sampling on for, the client's context as a
    // link, its tracestate forwarded nowhere.
    let gw = Gateway::builder(config(&[])).start().await;
    let saw = send(&gw, "/api/x", "req-untrusted").await.origin_saw();
    let (trace_id, _, flags) = traceparent_parts(&saw["traceparent"][0]);
    assert_ne!(trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(flags, "00", "the client's sampled flag is not followed");
    assert!(!saw.contains_key("tracestate"), "{saw:?}");
    // A failed request is kept although unsampled, which shows its link.
    let resp = send(&gw, "/dead/x", "req-linked").await;
    assert_eq!(resp.status, 502);
    let spans = receiver.trace_of("req-linked", 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SERVER)
        .expect("server span");
    assert_ne!(server.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(server.parent_span_id, "");
    assert_eq!(
        server.links,
        vec![(
            "0af7651916cd43dd8448eb211c80319c".into(),
            "b7ad6b7169203331".into()
        )]
    );
    assert_eq!(server.trace_state, "");

    // Trusted: the client's span is the parent, its flag decides, its tracestate is forwarded.
    let gw = Gateway::builder(config(&["127.0.0.0/8"])).start().await;
    let saw = send(&gw, "/api/x", "req-trusted").await.origin_saw();
    let (trace_id, parent_id, flags) = traceparent_parts(&saw["traceparent"][0]);
    assert_eq!(trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(flags, "01", "the trusted parent sampled it");
    assert_eq!(saw["tracestate"], vec!["congo=t61rcWkgMzE".to_string()]);
    let spans = receiver.trace_of("req-trusted", 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SERVER)
        .expect("server span");
    assert_eq!(server.parent_span_id, "b7ad6b7169203331");
    assert!(server.links.is_empty());
    assert_eq!(server.trace_state, "congo=t61rcWkgMzE");
    let upstream = spans
        .iter()
        .find(|s| s.kind == CLIENT)
        .expect("upstream span");
    assert_eq!(upstream.span_id, parent_id);

    // Even from a trusted peer, two traceparent fields (differently cased) are ambiguous: the
    // origin gets exactly one, the gateway's, in a new trace, and no tracestate.
    let saw = req("GET", "/api/x")
        .header("traceparent", CLIENT_TRACEPARENT)
        .header("TraceParent", &CLIENT_TRACEPARENT.replace("b7ad", "c7ad"))
        .header("tracestate", "congo=t61rcWkgMzE")
        .send(gw.addr)
        .await
        .origin_saw();
    assert_eq!(saw["traceparent"].len(), 1, "{saw:?}");
    let (trace_id, ..) = traceparent_parts(&saw["traceparent"][0]);
    assert_ne!(trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert!(!saw.contains_key("tracestate"), "{saw:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_collector_never_holds_requests_up_and_export_resumes() {
    let receiver = OtlpReceiver::start().await;
    receiver.answer(503);
    // Each export waits before its 503, so spans pile up behind it.
    receiver.delay(Duration::from_millis(300));
    let origin_ = echo_origin("o").await;
    let config = one_route(
        &origin_,
        tracing(&receiver, 1.0)
            .set("export_timeout_ms", 400)
            .set("queue_spans", 16)
            .set("batch_spans", 4),
    );
    let gw = Gateway::builder(config).start().await;
    for i in 0..40 {
        let id = format!("burst-{i}");
        let resp = req("GET", "/x")
            .header("x-request-id", &id)
            .send(gw.addr)
            .await;
        assert_eq!(resp.status, 200);
    }
    let spans_counted = |result: &'static str| {
        move |m: &Metrics| {
            m.value("edgewarden_trace_spans_total", &[("result", result)])
                .is_some_and(|v| v > 0.0)
        }
    };
    let metrics = gw
        .metrics_when(|m| spans_counted("export_failed")(m) && spans_counted("queue_full")(m))
        .await;
    assert!(
        spans_counted("export_failed")(&metrics),
        "failed exports are counted"
    );
    assert!(
        spans_counted("queue_full")(&metrics),
        "a full queue drops, counted"
    );
    assert!(receiver.exports() > 0, "the collector was tried");
    assert!(receiver.spans().is_empty());

    receiver.answer(200);
    receiver.delay(Duration::ZERO);
    let resp = req("GET", "/x")
        .header("x-request-id", "after")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    receiver.trace_of("after", 2).await;

    // A collector that is not there at all.
    let dead = DeadPort::new();
    let config = one_route(
        &origin_,
        section("tracing")
            .set("endpoint", format!("http://{}", dead.addr))
            .set("sample_ratio", 1.0),
    );
    let gw = Gateway::builder(config).start().await;
    for _ in 0..5 {
        assert_eq!(req("GET", "/x").send(gw.addr).await.status, 200);
    }
    let metrics = gw.metrics_when(spans_counted("export_failed")).await;
    assert!(spans_counted("export_failed")(&metrics));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_new_sample_ratio() {
    let receiver = OtlpReceiver::start().await;
    let origin_ = echo_origin("o").await;
    let config = one_route(&origin_, tracing(&receiver, 0.0));
    let mut gw = Gateway::builder(config).start().await;
    let flags = async |gw: &Gateway| {
        let saw = req("GET", "/x").send(gw.addr).await.origin_saw();
        traceparent_parts(&saw["traceparent"][0]).2
    };
    assert_eq!(flags(&gw).await, "00");

    let mut config = gw.config().clone();
    config.section_mut("tracing").set("sample_ratio", 1.0);
    gw.write_config(config);
    gw.reload_and_wait("ok").await;
    assert_eq!(flags(&gw).await, "01");
    let resp = req("GET", "/x")
        .header("x-request-id", "after-reload")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    receiver.trace_of("after-reload", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_carries_the_same_trace() {
    let receiver = OtlpReceiver::start().await;
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o"))
        .with(tracing(&receiver, 1.0).set("protocol", "http/json"));
    let gw = Gateway::builder(config).start().await;
    let resp = req("GET", "/api/x")
        .header("x-request-id", "req-json")
        .send(gw.addr)
        .await;
    let (trace_id, parent_id, _) = traceparent_parts(&resp.origin_saw()["traceparent"][0]);
    let spans = receiver.trace_of("req-json", 3).await;
    let server = one(&spans, "GET /api");
    assert_eq!(server.trace_id, trace_id);
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    let upstream = spans
        .iter()
        .find(|s| s.kind == CLIENT)
        .expect("upstream span");
    assert_eq!(upstream.span_id, parent_id);
    assert_eq!(upstream.parent_span_id, server.span_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_is_a_second_client_span_with_its_resend_count() {
    let receiver = OtlpReceiver::start().await;
    let dead = DeadPort::new();
    let live = echo_origin("live").await;
    let config = Config::new()
        .with(origin("pair", &[dead.addr, live.addr]))
        .with(route("api", "/", "pair"))
        .with(tracing(&receiver, 1.0));
    let gw = Gateway::builder(config).start().await;
    // Upstreams take turns: within two requests one starts at the dead upstream and moves on.
    let mut retried = None;
    for i in 0..4 {
        let id = format!("turn-{i}");
        let resp = req("GET", "/x")
            .header("x-request-id", &id)
            .send(gw.addr)
            .await;
        assert_eq!(resp.status, 200);
        let spans = receiver.trace_of(&id, 2).await;
        if spans.iter().filter(|s| s.kind == CLIENT).count() == 2 {
            retried = Some((resp, spans));
            break;
        }
    }
    let (resp, spans) = retried.expect("a request was tried at the dead upstream first");
    let server = spans.iter().find(|s| s.kind == SERVER).expect("server");
    assert_eq!(server.status, 0, "the request succeeded in the end");
    let mut attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    attempts.sort_by_key(|s| s.attr("http.request.resend_count").map(str::to_string));
    let (first, second) = (attempts[0], attempts[1]);
    assert_eq!(first.attr("http.request.resend_count"), None);
    assert_eq!(first.attr("error.type"), Some("connect_refused"));
    assert_eq!(first.status, ERROR);
    assert_eq!(
        first.attr("server.port"),
        Some(dead.addr.port().to_string().as_str())
    );
    assert_eq!(second.attr("http.request.resend_count"), Some("1"));
    assert_eq!(second.attr("http.response.status_code"), Some("200"));
    assert_eq!(
        second.attr("server.port"),
        Some(live.addr.port().to_string().as_str())
    );
    assert!(attempts.iter().all(|a| a.parent_span_id == server.span_id));
    // The origin names the attempt that reached it.
    let (_, parent_id, _) = traceparent_parts(&resp.origin_saw()["traceparent"][0]);
    assert_eq!(parent_id, second.span_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_traces_of_refused_requests_are_capped_per_second_and_others_are_not() {
    let receiver = OtlpReceiver::start().await;
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("auth", "required"))
        .with(route("open", "/open", "o"))
        .with(tracing(&receiver, 1.0).set("rejected_per_s", 2));
    let gw = Gateway::builder(config).start().await;
    let decided = |m: &Metrics, decision| {
        m.value("edgewarden_traces_total", &[("decision", decision)])
            .unwrap_or(0.0)
    };
    // What start-up itself decided: the harness's readiness probe, a refused request too.
    let before = gw
        .metrics_when(|m| decided(m, "sampled") + decided(m, "capped") >= 1.0)
        .await;
    let (sampled_before, capped_before) = (decided(&before, "sampled"), decided(&before, "capped"));
    let flood = 12;
    let started = std::time::Instant::now();
    for i in 0..flood {
        let resp = req("GET", "/api/x")
            .header("x-request-id", &format!("refused-{i}"))
            .send(gw.addr)
            .await;
        assert_eq!(resp.status, 401);
    }
    // Each second (window) the flood touched keeps at most two.
    let windows = started.elapsed().as_secs() as f64 + 2.0;
    for i in 0..5 {
        let resp = req("GET", "/open/x")
            .header("x-request-id", &format!("open-{i}"))
            .send(gw.addr)
            .await;
        assert_eq!(resp.status, 200);
    }
    let total = sampled_before + capped_before + f64::from(flood + 5);
    let metrics = gw
        .metrics_when(|m| decided(m, "sampled") + decided(m, "capped") >= total)
        .await;
    let sampled = decided(&metrics, "sampled") - sampled_before;
    let capped = decided(&metrics, "capped") - capped_before;
    assert_eq!(sampled + capped, f64::from(flood + 5), "{}", metrics.0);
    let refused_kept = sampled - 5.0;
    assert!(
        (1.0..=2.0 * windows).contains(&refused_kept),
        "{refused_kept} refused traces kept over {windows} windows"
    );
    // What the collector received agrees: every forwarded request, and only the kept refusals.
    for i in 0..5 {
        receiver.trace_of(&format!("open-{i}"), 2).await;
    }
    let spans = receiver.spans();
    let refused_received = spans
        .iter()
        .filter(|s| {
            s.attr("edgewarden.request_id")
                .is_some_and(|id| id.starts_with("refused-"))
        })
        .count();
    assert_eq!(refused_received as f64, refused_kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_at_sigterm_reach_the_collector_before_exit() {
    use nix::sys::signal::{Signal, kill};
    let receiver = OtlpReceiver::start().await;
    let origin_ = echo_origin("o").await;
    let config = one_route(&origin_, tracing(&receiver, 1.0));
    let mut gw = Gateway::builder(config).start().await;
    let resp = req("GET", "/x")
        .header("x-request-id", "last-words")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    // A batch waits up to 500 ms to fill; the process exits sooner than that once idle.
    kill(gw.pid(), Signal::SIGTERM).expect("SIGTERM");
    gw.exited_within(Duration::from_secs(10))
        .await
        .expect("exits");
    let sent: Vec<Span> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.attr("edgewarden.request_id") == Some("last-words"))
        .collect();
    assert_eq!(sent.len(), 1, "the server span was sent before exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_past_the_export_deadline_holds_the_next_export_back() {
    let receiver = OtlpReceiver::start().await;
    // 429 comes with `Retry-After: 3`, longer than an export may take.
    receiver.answer(429);
    let origin_ = echo_origin("o").await;
    let config = one_route(
        &origin_,
        tracing(&receiver, 1.0).set("export_timeout_ms", 300),
    );
    let gw = Gateway::builder(config).start().await;
    let resp = req("GET", "/x")
        .header("x-request-id", "throttled")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    let metrics = gw
        .metrics_when(|m| {
            m.value(
                "edgewarden_trace_spans_total",
                &[("result", "export_failed")],
            )
            .is_some_and(|v| v > 0.0)
        })
        .await;
    assert!(
        metrics
            .value(
                "edgewarden_trace_spans_total",
                &[("result", "export_failed")]
            )
            .is_some_and(|v| v > 0.0),
        "the throttled batch failed at once"
    );
    let throttled_at = std::time::Instant::now();
    let exports = receiver.exports();
    receiver.answer(200);
    let resp = req("GET", "/x")
        .header("x-request-id", "after-throttle")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    receiver.trace_of("after-throttle", 2).await;
    // Without the hold, the next batch goes half a second after its first span.
    let waited = throttled_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "the next export came {waited:?} after the 429"
    );
    assert_eq!(
        receiver.exports(),
        exports + 1,
        "nothing was sent while held back"
    );
}
