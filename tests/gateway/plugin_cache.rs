//! Policies with `[cache]`: a decision remembered per value of the declared inputs, applied
//! without calling the plugin; the plugin sees only those inputs.

use crate::support::plugins::write_policy;
use crate::support::*;

const TRACE: &str = "x-edgewarden-trace";

/// `counter` as a policy remembering its decisions per `x-tenant` header, choosing origin `o`.
fn counter_policy(tag: &str) -> Entry {
    policy("counter")
        .set("allow_headers", ["x-calls", "x-saw"])
        .set("allow_origins", ["o"])
        .set("settings", serde_json::json!({"origin": "o", "tag": tag}))
        .set(
            "cache",
            serde_json::json!({"inputs": ["header:x-tenant"], "ttl_s": 60, "max_entries": 100}),
        )
}

async fn cached_gateway() -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let config = Config::new().with(origin("o", &[origin_.addr])).with(
        route("c", "/c", "o")
            .set("policies", ["counter"])
            .set("debug_trace", true),
    );
    let gw = Gateway::builder(config)
        .plugin("counter", "tests/plugins/counter")
        .policy("counter", counter_policy("a-"))
        .start()
        .await;
    (gw, origin_)
}

async fn as_tenant(gw: &Gateway, tenant: &str, agent: &str) -> Response {
    let resp = req("GET", "/c/x?secret=1")
        .header("x-tenant", tenant)
        .header("user-agent", agent)
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200, "{tenant}");
    resp
}

fn saw(resp: &Response, header: &str) -> String {
    resp.origin_saw()[header].join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_policy_is_called_once_per_input_value_and_sees_only_its_inputs() {
    let (gw, _origin) = cached_gateway().await;
    let first = as_tenant(&gw, "acme", "curl/8").await;
    assert_eq!(
        saw(&first, "x-saw"),
        "tenant=acme ua=None country=None query=None sub=None method=None",
        "only the declared header reaches the plugin"
    );
    assert_eq!(first.header(TRACE), Some("policy:counter:forward:o"));
    let calls = saw(&first, "x-calls");

    // Another user agent, the same tenant: the remembered decision, the plugin not called.
    let again = as_tenant(&gw, "acme", "firefox/140").await;
    assert_eq!(saw(&again, "x-calls"), calls);
    assert_eq!(saw(&again, "x-saw"), saw(&first, "x-saw"));
    assert_eq!(again.header(TRACE), Some("policy:counter:forward:o:cached"));

    let other = as_tenant(&gw, "globex", "curl/8").await;
    assert!(saw(&other, "x-saw").starts_with("tenant=globex "));
    assert_eq!(other.header(TRACE), Some("policy:counter:forward:o"));

    let m = gw
        .metrics_when(|m| {
            m.count(
                "edgewarden_plugin_cache_total",
                &[("policy", "counter"), ("result", "miss")],
            ) >= 2.0
        })
        .await;
    let lookups = |result| {
        m.count(
            "edgewarden_plugin_cache_total",
            &[("policy", "counter"), ("result", result)],
        )
    };
    assert_eq!((lookups("hit"), lookups("miss")), (1.0, 2.0));
    assert_eq!(
        m.count(
            "edgewarden_plugin_outcomes_total",
            &[("policy", "counter"), ("outcome", "forwarded")]
        ),
        3.0,
        "a remembered decision is counted as the policy's outcome"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_new_settings_forgets_the_remembered_decisions() {
    let (gw, _origin) = cached_gateway().await;
    let before = as_tenant(&gw, "acme", "curl/8").await;
    assert!(saw(&before, "x-calls").starts_with("a-"));
    assert_eq!(
        as_tenant(&gw, "acme", "curl/8").await.header(TRACE),
        Some("policy:counter:forward:o:cached")
    );

    write_policy(gw.dir(), "counter", &counter_policy("b-"));
    gw.reload_and_wait("ok").await;
    let after = as_tenant(&gw, "acme", "curl/8").await;
    assert!(
        saw(&after, "x-calls").starts_with("b-"),
        "the new settings decide: {}",
        saw(&after, "x-calls")
    );
    assert_eq!(after.header(TRACE), Some("policy:counter:forward:o"));
}
