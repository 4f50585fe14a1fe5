//! Python policy plugins through the running gateway, built for real with componentize-py.

use std::time::{Duration, Instant};

use crate::support::plugins::{PLUGIN_CACHE, link_plugin, write_policy};
use crate::support::*;

/// The test issuer with a PEM key and no claims_to_headers: the plugins set identity headers.
fn pem_issuer_leaving_headers_to_plugins() -> Entry {
    pem_issuer().without("claims_to_headers")
}

/// Routes: /deny (misbehave, on_error deny, 50 ms of processor time, 400 ms in all), /allow
/// (misbehave, on_error allow), /fresh (misbehave, fresh isolation), /plain (no policy).
async fn misbehaving_gateway() -> (Gateway, EchoOrigin) {
    misbehaving_gateway_with(Config::new()).await
}

/// As [`misbehaving_gateway`], on top of `config` (for its `[server]` settings).
async fn misbehaving_gateway_with(config: Config) -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let config = config
        .with(origin("o", &[origin_.addr]))
        .with(route("deny", "/deny", "o").set("policies", ["misbehave-deny"]))
        .with(route("allow", "/allow", "o").set("policies", ["misbehave-allow"]))
        .with(route("fresh", "/fresh", "o").set("policies", ["misbehave-fresh"]))
        .with(route("plain", "/plain", "o"));
    let misbehave = policy("misbehave")
        .set("timeout_ms", 50)
        .set("deadline_ms", 400)
        .set("memory_mb", 32)
        .set("allow_headers", ["x-misbehave-ok"]);
    let gw = Gateway::builder(config)
        .plugin("misbehave", "tests/plugins/misbehave")
        .policy("misbehave-deny", misbehave.clone().set("on_error", "deny"))
        .policy(
            "misbehave-allow",
            misbehave.clone().set("on_error", "allow"),
        )
        .policy(
            "misbehave-fresh",
            misbehave.set("on_error", "deny").set("isolation", "fresh"),
        )
        .start()
        .await;
    (gw, origin_)
}

async fn with_mode(gw: &Gateway, path: &str, mode: &str) -> Response {
    req("GET", path)
        .header("x-misbehave", mode)
        .send(gw.addr)
        .await
}

/// A header in the route's policies' `allow_headers` is the gateway's on that route: a client's
/// copies (any case, every duplicate) are gone before the chain runs, so a policy that sets it
/// only sometimes never lets a client's value through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_copies_of_headers_a_policy_may_set_never_reach_the_origin() {
    let (gw, _origin) = misbehaving_gateway().await;
    let spoofed = |path: &'static str, mode: &'static str| {
        req("GET", path)
            .header("x-misbehave", mode)
            .header("X-Misbehave-Ok", "platinum")
            .header("x-misbehave-ok", "gold")
            .send(gw.addr)
    };
    let untouched = spoofed("/allow", "pass").await;
    assert_eq!(untouched.status, 200);
    assert!(
        !untouched.origin_saw().contains_key("x-misbehave-ok"),
        "the policy set nothing, and the client's copies are gone: {:?}",
        untouched.origin_saw()
    );
    let set = spoofed("/allow", "none").await;
    assert_eq!(set.origin_saw()["x-misbehave-ok"], vec!["1".to_string()]);
    // A route without that policy leaves the header to the client.
    let plain = spoofed("/plain", "pass").await;
    assert_eq!(plain.origin_saw()["x-misbehave-ok"].len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaving_plugin_gets_503_with_deny_and_the_next_request_succeeds() {
    let (gw, origin_) = misbehaving_gateway().await;
    let ok = with_mode(&gw, "/deny", "none").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.origin_saw()["x-misbehave-ok"], vec!["1".to_string()]);
    for mode in [
        "loop",
        "sleep",
        "alloc",
        "raise",
        "recurse",
        "crlf-header",
        "nul-header",
        "forbidden-header",
        "unknown-origin",
        "bad-status",
    ] {
        let started = Instant::now();
        let resp = with_mode(&gw, "/deny", mode).await;
        let took = started.elapsed();
        assert_eq!(resp.status, 503, "{mode}");
        assert_eq!(resp.json()["error"], "policy_failed", "{mode}");
        assert!(took < Duration::from_millis(1500), "{mode} took {took:?}");
        // The instance that failed is replaced; the next request on the same policy works.
        let next = with_mode(&gw, "/deny", "none").await;
        assert_eq!(next.status, 200, "after {mode}");
        assert!(next.header("x-injected").is_none());
    }
    assert_eq!(
        origin_.hits(),
        11,
        "only the well-behaved requests reach the origin"
    );
    let m = gw
        .metrics_when(|m| {
            m.count(
                "edgewarden_request_duration_seconds_count",
                &[("route", "deny")],
            ) >= 21.0
        })
        .await;
    let outcome = |outcome: &str| {
        m.count(
            "edgewarden_plugin_outcomes_total",
            &[("policy", "misbehave-deny"), ("outcome", outcome)],
        )
    };
    assert_eq!(outcome("forwarded"), 11.0);
    assert_eq!(outcome("timeout"), 2.0, "loop and sleep");
    assert_eq!(outcome("memory_limit"), 1.0, "alloc");
    assert_eq!(
        outcome("exception"),
        2.0,
        "raise, and recurse (RecursionError)"
    );
    assert_eq!(
        outcome("invalid_output"),
        5.0,
        "crlf-header, nul-header (its NUL would add fields), forbidden-header, unknown-origin, bad-status"
    );
    assert_eq!(
        m.count(
            "edgewarden_plugin_duration_seconds_count",
            &[("policy", "misbehave-deny")]
        ),
        21.0
    );
    assert!(
        m.count(
            "edgewarden_plugin_instances",
            &[("policy", "misbehave-deny")]
        ) >= 1.0
    );
    assert_eq!(
        m.count(
            "edgewarden_requests_total",
            &[
                ("route", "deny"),
                ("status_class", "5xx"),
                ("outcome", "error")
            ]
        ),
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_is_cut_at_its_processor_time_budget() {
    let (gw, _origin) = misbehaving_gateway().await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(with_mode(&gw, "/deny", "loop").await.status, 503);
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    // 50 ms of processor time (timeout_ms) plus a margin for a loaded 2-core machine; the 400 ms
    // wall-clock deadline is not what ends it.
    assert!(
        median < Duration::from_millis(500),
        "median {median:?}, all {times:?}"
    );
    assert!(
        median >= Duration::from_millis(50),
        "answered before the budget was used: {median:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_sleeps_is_cut_at_its_wall_clock_deadline() {
    let (gw, _origin) = misbehaving_gateway().await;
    let started = Instant::now();
    let resp = with_mode(&gw, "/deny", "sleep").await;
    let took = started.elapsed();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "policy_failed");
    // Sleeping uses no processor time, so only the 400 ms deadline can end it.
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(with_mode(&gw, "/deny", "none").await.status, 200);
}

/// An exception at request time is logged with its type, message and the plugin's line, on one
/// line without colour codes; repeats within a second are counted, not logged again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_exception_is_logged_with_its_type_message_and_line() {
    let (gw, _origin) = misbehaving_gateway().await;
    for _ in 0..3 {
        assert_eq!(with_mode(&gw, "/deny", "raise").await.status, 503);
    }
    let line_of_raise = std::fs::read_to_string("tests/plugins/misbehave/plugin.py")
        .expect("plugin source")
        .lines()
        .position(|l| l.contains("raise RuntimeError"))
        .expect("the raise")
        + 1;
    let log = gw.stderr();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin raised an exception"))
        .collect();
    assert!(!logged.is_empty(), "{log}");
    let line = logged[0];
    assert!(line.contains("misbehave-deny"), "{line}");
    assert!(line.contains("exception=RuntimeError"), "{line}");
    assert!(line.contains("this plugin raises"), "{line}");
    assert!(
        line.contains(&format!("location=plugin.py:{line_of_raise}")),
        "{line}"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes in a log file");
    let m = gw.metrics().await;
    assert_eq!(
        m.count(
            "edgewarden_plugin_outcomes_total",
            &[("policy", "misbehave-deny"), ("outcome", "exception")]
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_error_allow_a_failing_policy_is_skipped() {
    let (gw, origin_) = misbehaving_gateway().await;
    for mode in ["raise", "loop", "forbidden-header"] {
        let resp = with_mode(&gw, "/allow", mode).await;
        assert_eq!(resp.status, 200, "{mode}");
        let seen = resp.origin_saw();
        assert!(
            !seen.contains_key("x-internal-user-id"),
            "{mode}: a refused decision was applied"
        );
    }
    assert_eq!(origin_.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_does_not_stall_other_routes() {
    looping_plugin_beside_a_plain_route(Config::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_does_not_stall_other_routes_with_work_stealing() {
    looping_plugin_beside_a_plain_route(Config::new().server("work_stealing", true)).await;
}

async fn looping_plugin_beside_a_plain_route(config: Config) {
    let (gw, _origin) = misbehaving_gateway_with(config).await;
    let addr = gw.addr;
    let loops: Vec<_> = (0..4)
        .map(|_| tokio::spawn(req("GET", "/deny").header("x-misbehave", "loop").send(addr)))
        .collect();
    let mut plain = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(get(gw.addr, "/plain").await.status, 200);
        plain.push(started.elapsed());
    }
    for l in loops {
        assert_eq!(l.await.expect("join").status, 503);
    }
    plain.sort();
    let median = plain[plain.len() / 2];
    assert!(
        median < Duration::from_millis(50),
        "plain route median {median:?} while plugins loop"
    );
}

/// A call still running after half a millisecond moves off the proxy's threads to the plugin
/// lane, where a loop is stopped like anywhere else; it is counted per policy, and the policy's
/// next call runs as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_call_finishes_on_the_plugin_lane_and_is_counted() {
    let (gw, origin_) = misbehaving_gateway().await;
    let slow = |m: &Metrics| {
        m.count(
            "edgewarden_plugin_slow_calls_total",
            &[("policy", "misbehave-deny")],
        )
    };
    assert_eq!(with_mode(&gw, "/deny", "none").await.status, 200);
    let before = slow(&gw.metrics().await);
    let started = Instant::now();
    assert_eq!(with_mode(&gw, "/deny", "loop").await.status, 503);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(slow(&gw.metrics().await), before + 1.0);
    let next = with_mode(&gw, "/deny", "none").await;
    assert_eq!(next.status, 200);
    assert_eq!(next.origin_saw()["x-misbehave-ok"], ["1"]);
    assert_eq!(origin_.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_isolation_works_and_recovers() {
    let (gw, _origin) = misbehaving_gateway().await;
    assert_eq!(with_mode(&gw, "/fresh", "none").await.status, 200);
    assert_eq!(with_mode(&gw, "/fresh", "raise").await.status, 503);
    assert_eq!(with_mode(&gw, "/fresh", "none").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_isolation_starts_every_request_from_the_initialised_state() {
    let (gw, _origin) = misbehaving_gateway().await;
    let kept = |resp: Response| {
        assert_eq!(resp.status, 200);
        resp.origin_saw()["x-misbehave-ok"][0].clone()
    };
    // The plugin counts requests in module state: a warm instance carries it from one request
    // to the next.
    let mut warm = Vec::new();
    for _ in 0..3 {
        warm.push(kept(with_mode(&gw, "/deny", "count").await));
    }
    assert_eq!(warm, ["1", "2", "3"]);
    // Fresh: every request sees the state right after init, whatever the one before did (wrote
    // its heap, grew its memory, raised).
    for mode in [
        "count", "count", "grow", "count", "raise", "count", "grow", "grow",
    ] {
        let resp = with_mode(&gw, "/fresh", mode).await;
        if mode == "raise" {
            assert_eq!(resp.status, 503);
        } else {
            assert_eq!(kept(resp), "1", "{mode}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_plugin_passes_the_token_subject_to_the_origin() {
    let signer = Signer::rsa(RSA_A, "key-a");
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(pem_issuer_leaving_headers_to_plugins())
        .with(origin("o", &[origin_.addr]))
        .with(
            route("api", "/", "o")
                .set("auth", "required")
                .set("policies", ["identity"]),
        );
    let gw = Gateway::builder(config)
        .plugin("identity_headers", "python-plugins/identity_headers")
        .policy(
            "identity",
            policy("identity_headers").set("allow_headers", ["x-internal-user-id"]),
        )
        .start()
        .await;
    let resp = req("GET", "/x")
        .bearer(&signer.token(&good_claims("user-7")))
        .header("X-Internal-User-Id", "spoofed")
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.origin_saw()["x-internal-user-id"], ["user-7"]);
}

/// A configuration whose one route, to an origin nobody needs, runs `policies` from the
/// directory's `policies/` with plugins from its `plugins/`; nothing listens on its address, since
/// only one-shot commands read it.
fn plugin_config(policies: &[&str]) -> Config {
    Config::new()
        .server("listen", ["127.0.0.1:1"])
        .server("policies_dir", "policies")
        .server("plugins_dir", "plugins")
        .server("plugin_cache_dir", PLUGIN_CACHE)
        .with(origin("o", &["127.0.0.1:9".parse().expect("addr")]))
        .with(route("r", "/", "o").set("policies", policies))
}

/// `edgewarden check` (which builds and starts the plugins routes use) on `config` whose one route
/// runs one policy, `p`; expects it to fail and returns its stderr.
fn check_one_policy(plugin: &str, source: &str, policy: Entry, config: Config) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    link_plugin(dir.path(), plugin, source);
    write_policy(dir.path(), "p", &policy);
    let out = edgewarden(&["check"], &config.write_in(dir.path()));
    assert_eq!(out.code, 1, "{}", out.stderr);
    out.stderr
}

#[test]
fn check_reports_a_bad_key_and_a_plugin_that_fails_to_build_together() {
    let broken_key = issuer()
        .without("leeway_s")
        .without("required_claims")
        .without("claims_to_headers")
        .set("name", "broken-key")
        .set("issuer", "https://i.example")
        .set("audiences", ["a"])
        .set("algorithms", ["RS256"])
        .set(
            "public_key_pem",
            "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----",
        );
    let stderr = check_one_policy(
        "broken",
        "tests/plugins/broken",
        policy("broken"),
        plugin_config(&["p"]).with(broken_key),
    );
    assert!(stderr.contains("issuers[0] (broken-key)"), "{stderr}");
    assert!(stderr.contains("plugin broken: build failed"), "{stderr}");
}

#[test]
fn a_plugin_that_fails_to_build_is_reported_with_its_file_and_line() {
    let stderr = check_one_policy(
        "broken",
        "tests/plugins/broken",
        policy("broken"),
        plugin_config(&["p"]),
    );
    assert!(stderr.contains("plugin broken: build failed"), "{stderr}");
    assert!(stderr.contains("SyntaxError"), "{stderr}");
    assert!(
        stderr.contains("plugin.py") && stderr.contains("line 4"),
        "{stderr}"
    );
}

#[test]
fn a_plugin_whose_setup_never_returns_fails_the_start_at_its_deadline() {
    let stderr = check_one_policy(
        "misbehave",
        "tests/plugins/misbehave",
        policy("misbehave").set("settings", serde_json::json!({"sleep_in_setup": true})),
        plugin_config(&["p"]),
    );
    assert!(
        stderr.contains("policy p: instantiate and init passed their 10s deadline"),
        "{stderr}"
    );
}

#[test]
fn plugins_build_also_compiles_for_fresh_isolation_the_plugins_fresh_policies_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    link_plugin(dir.path(), "forward_only", "tests/plugins/forward_only");
    link_plugin(dir.path(), "misbehave", "tests/plugins/misbehave");
    write_policy(
        dir.path(),
        "pass",
        &policy("forward_only").set("isolation", "fresh"),
    );
    let out = edgewarden(
        &["plugins", "build"],
        &plugin_config(&["pass"]).write_in(dir.path()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let built: Vec<&str> = out
        .stdout
        .lines()
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        built,
        [
            "forward_only",
            "forward_only (fresh isolation)",
            "misbehave"
        ],
        "{}",
        out.stdout
    );
}

/// Outside the repository: `plugins new` writes the plugin, its test and its policy file beside
/// the config; `plugins test` runs the test with the SDK the binary carries (no conftest, no
/// checkout) and fails when the test fails.
#[test]
fn plugins_new_scaffolds_a_plugin_and_policy_whose_tests_run_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::new()
        .server("listen", ["127.0.0.1:1"])
        .with(origin("o", &["127.0.0.1:9".parse().expect("addr")]))
        .with(route("r", "/", "o"))
        .write_in(dir.path());
    let out = edgewarden(&["plugins", "new", "my_policy"], &config);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("edgewarden plugins test"),
        "{}",
        out.stdout
    );
    // Beside the config file by default.
    let plugin_dir = dir.path().join("plugins/my_policy");
    assert!(plugin_dir.join("plugin.py").is_file() && plugin_dir.join("test_plugin.py").is_file());
    let policy =
        std::fs::read_to_string(dir.path().join("policies/my_policy.toml")).expect("policy file");
    assert!(policy.contains("plugin = \"my_policy\""), "{policy}");
    assert!(policy.contains("# allow_headers"), "{policy}");

    let passed = edgewarden(&["plugins", "test", "my_policy"], &config);
    assert_eq!(passed.code, 0, "{}{}", passed.stdout, passed.stderr);
    assert!(passed.stdout.contains("2 passed"), "{}", passed.stdout);
    // A plugin that no longer does what its test says fails the command.
    let source = plugin_dir.join("plugin.py");
    let text = std::fs::read_to_string(&source).expect("plugin");
    std::fs::write(&source, text.replace("403", "200")).expect("edit plugin");
    let failed = edgewarden(&["plugins", "test"], &config);
    assert_ne!(failed.code, 0, "{}", failed.stdout);
    assert!(failed.stdout.contains("1 failed"), "{}", failed.stdout);

    // A second scaffold with the same name is refused.
    let again = edgewarden(&["plugins", "new", "my_policy"], &config);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_policies_run_through_the_gateway() {
    let signer = Signer::rsa(RSA_A, "key-a");
    let global = echo_origin("global").await;
    let uk = echo_origin("uk").await;
    let fr = echo_origin("fr").await;
    let config = Config::new()
        .with(pem_issuer_leaving_headers_to_plugins())
        .with(origin("global", &[global.addr]))
        .with(origin("uk", &[uk.addr]))
        .with(origin("fr", &[fr.addr]))
        .with(
            route("admin", "/admin", "global")
                .set("auth", "required")
                .set("policies", ["identity", "admins-only"]),
        )
        .with(route("geo", "/geo", "global").set("policies", ["geo"]));
    let mut gateway = Gateway::builder(config);
    for plugin in ["geo_router", "identity_headers", "require_claim"] {
        gateway = gateway.plugin(plugin, &format!("python-plugins/{plugin}"));
    }
    for name in ["geo", "identity", "admins-only"] {
        gateway = gateway.policy(name, shipped_policy(name));
    }
    let gw = gateway.start().await;

    let mut admin = good_claims("boss");
    admin["role"] = serde_json::json!("admin");
    admin["email"] = serde_json::json!("boss@example.com");
    let resp = req("GET", "/admin/x")
        .bearer(&signer.token(&admin))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
    let seen = resp.origin_saw();
    assert_eq!(seen["x-internal-user-id"], ["boss"]);
    assert_eq!(seen["x-internal-email"], ["boss@example.com"]);

    let mut viewer = good_claims("peon");
    viewer["role"] = serde_json::json!("viewer");
    let resp = req("GET", "/admin/x")
        .bearer(&signer.token(&viewer))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"], "forbidden");
    assert!(resp.header("x-request-id").is_some());

    // No [geo] in this gateway: no country, so the default portal.
    let resp = get(gw.addr, "/geo/page").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.origin_saw()["x-portal"], ["global"]);
    assert_eq!(uk.hits() + fr.hits(), 0);
    assert_eq!(global.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precompiled_plugin_that_does_not_fit_this_engine_is_compiled_again_from_its_component() {
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("r", "/", "o").set("policies", ["admins"]));
    let gateway = |config: Config| {
        Gateway::builder(config)
            .plugin("require_claim", "python-plugins/require_claim")
            .policy("admins", admins_only())
    };
    // Once through the shared cache, so the component and its native code exist there.
    let first = gateway(config.clone()).start().await;
    assert_eq!(get(first.addr, "/x").await.status, 403);
    drop(first);

    // A cache as an image ships it: the component, and native code this engine cannot load.
    let cache = tempfile::tempdir().expect("cache");
    let mut shipped = 0;
    for entry in std::fs::read_dir(PLUGIN_CACHE)
        .expect("shared cache")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("require_claim-") {
            continue;
        }
        if name.ends_with(".wasm") {
            std::fs::copy(entry.path(), cache.path().join(&name)).expect("copy");
            shipped += 1;
        } else if name.ends_with(".cwasm") {
            std::fs::write(cache.path().join(&name), b"native code for another machine")
                .expect("write");
        }
    }
    assert!(shipped >= 1, "no component in the shared cache");
    let config = config.server("plugin_cache_dir", cache.path().display().to_string());
    let gw = gateway(config).start().await;
    assert_eq!(get(gw.addr, "/x").await.status, 403);
    assert!(
        gw.stderr()
            .contains("precompiled plugin not usable; compiling again"),
        "{}",
        gw.stderr()
    );
}

/// The shipped `tenant_quota` policy on `/api`, spending two `key = "policy"` limits (2 reads and
/// 4 write units per minute per tenant); `/unlisted` runs the same plugin from a policy file that
/// lists no limits.
async fn tenant_quota_gateway() -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let mut config = Config::new()
        .with(pem_issuer_leaving_headers_to_plugins())
        .with(origin("o", &[origin_.addr]))
        .with(
            route("api", "/api", "o")
                .set("auth", "required")
                .set("policies", ["tenant-quota"]),
        )
        .with(
            route("unlisted", "/unlisted", "o")
                .set("auth", "required")
                .set("policies", ["tenant-quota-unlisted"]),
        );
    config.push(limit("tenant-reads", "policy", 2, 2));
    config.push(limit("tenant-writes", "policy", 4, 4));
    let gw = Gateway::builder(config)
        .plugin("tenant_quota", "python-plugins/tenant_quota")
        .policy("tenant-quota", shipped_policy("tenant-quota"))
        .policy(
            "tenant-quota-unlisted",
            shipped_policy("tenant-quota").without("limits"),
        )
        .start()
        .await;
    (gw, origin_)
}

fn tenant_token(sub: &str, org: &str) -> String {
    let mut claims = good_claims(sub);
    claims["org"] = serde_json::json!(org);
    Signer::rsa(RSA_A, "key-a").token(&claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_limits_by_the_tenant_it_reads_and_answers_the_gateways_429() {
    let (gw, origin_) = tenant_quota_gateway().await;
    // Two users of one tenant share its quota.
    for sub in ["ann", "bob"] {
        let resp = req("GET", "/api/x")
            .bearer(&tenant_token(sub, "acme"))
            .send(gw.addr)
            .await;
        assert_eq!(resp.status, 200, "{sub}");
    }
    let refused = req("GET", "/api/x")
        .bearer(&tenant_token("cat", "acme"))
        .send(gw.addr)
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"], "rate_limited");
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"tenant-reads\";q=2;w=60")
    );
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(refused.header("x-request-id").is_some());
    // Another tenant, and the same tenant's writes, have quotas of their own.
    let other = req("GET", "/api/x")
        .bearer(&tenant_token("dan", "globex"))
        .send(gw.addr)
        .await;
    assert_eq!(other.status, 200);
    let write = req("POST", "/api/x")
        .bearer(&tenant_token("ann", "acme"))
        .send(gw.addr)
        .await;
    assert_eq!(write.status, 200);
    assert_eq!(origin_.hits(), 4);
    let m = gw.metrics().await;
    let decisions = "edgewarden_limit_decisions_total";
    let count = |limit: &str, outcome: &str| {
        m.value(decisions, &[("limit", limit), ("outcome", outcome)])
            .unwrap_or(0.0)
    };
    assert_eq!(count("tenant-reads", "allowed"), 3.0);
    assert_eq!(count("tenant-reads", "refused"), 1.0);
    assert_eq!(count("tenant-writes", "allowed"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_cannot_spend_a_limit_its_file_does_not_list() {
    let (gw, origin_) = tenant_quota_gateway().await;
    let resp = req("GET", "/unlisted/x")
        .bearer(&tenant_token("ann", "acme"))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "policy_failed");
    assert_eq!(origin_.hits(), 0);
    // Nothing was spent, and the next request on a route that may spend it works.
    let m = gw.metrics().await;
    assert_eq!(
        m.value(
            "edgewarden_limit_decisions_total",
            &[("limit", "tenant-reads"), ("outcome", "allowed")]
        )
        .unwrap_or(0.0),
        0.0
    );
    let resp = req("GET", "/api/x")
        .bearer(&tenant_token("ann", "acme"))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200);
}
