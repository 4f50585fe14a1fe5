//! Python policy plugins through the running gateway, built for real with componentize-py.

use std::path::Path;
use std::time::{Duration, Instant};

use edgewarden_tools::echo::EchoOrigin;

use crate::common::*;
use crate::tokens::*;

pub(crate) fn link_plugin(dir: &Path, name: &str, source: &str) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    std::os::unix::fs::symlink(target, plugins.join(name)).expect("link plugin");
}

/// The test issuer with a PEM key and no claims_to_headers: the plugins set identity headers.
fn pem_issuer_leaving_headers_to_plugins() -> String {
    let pem = RSA_A_PUBLIC.trim().replace('\n', "\\n");
    issuer_toml(&format!("public_key_pem = \"{pem}\""), "").replace(
        "claims_to_headers = { sub = \"x-internal-user-id\", \"org.id\" = \"x-org-id\" }",
        "",
    )
}

pub(crate) fn write_policy(dir: &Path, name: &str, text: &str) {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policies dir");
    std::fs::write(policies.join(format!("{name}.toml")), text).expect("policy file");
}

/// Routes: /deny (misbehave, on_error deny, 50 ms of processor time, 400 ms in all), /allow (misbehave, on_error allow),
/// /fresh (misbehave, fresh isolation), /plain (no policy).
async fn misbehaving_gateway() -> (Gateway, EchoOrigin) {
    misbehaving_gateway_with("").await
}

/// `server_extra` goes into `[server]`.
async fn misbehaving_gateway_with(server_extra: &str) -> (Gateway, EchoOrigin) {
    let origin_ = echo_origin("o").await;
    let body = [
        origin("o", &[origin_.addr], ""),
        route("deny", "/deny", "o", "policies = [\"misbehave-deny\"]"),
        route("allow", "/allow", "o", "policies = [\"misbehave-allow\"]"),
        route("fresh", "/fresh", "o", "policies = [\"misbehave-fresh\"]"),
        route("plain", "/plain", "o", ""),
    ]
    .concat();
    let gw = Gateway::start_with_plugins_and(&body, server_extra, &|dir| {
        link_plugin(dir, "misbehave", "tests/plugins/misbehave");
        let common = "plugin = \"misbehave\"\ntimeout_ms = 50\ndeadline_ms = 400\nmemory_mb = 32\nallow_headers = [\"x-misbehave-ok\"]\n";
        write_policy(dir, "misbehave-deny", &format!("{common}on_error = \"deny\"\n"));
        write_policy(dir, "misbehave-allow", &format!("{common}on_error = \"allow\"\n"));
        write_policy(dir, "misbehave-fresh", &format!("{common}on_error = \"deny\"\nisolation = \"fresh\"\n"));
    })
    .await;
    (gw, origin_)
}

async fn with_mode(gw: &Gateway, path: &str, mode: &str) -> Response {
    request(gw.addr, "GET", path, &[("x-misbehave", mode)])
        .await
        .expect("response")
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
        10,
        "only the well-behaved requests reach the origin"
    );
    let m = gw
        .metrics_when(|m| {
            m.count(
                "edgewarden_request_duration_seconds_count",
                &[("route", "deny")],
            ) >= 19.0
        })
        .await;
    let outcome = |outcome: &str| {
        m.count(
            "edgewarden_plugin_outcomes_total",
            &[("policy", "misbehave-deny"), ("outcome", outcome)],
        )
    };
    assert_eq!(outcome("forwarded"), 10.0);
    assert_eq!(outcome("timeout"), 2.0, "loop and sleep");
    assert_eq!(outcome("memory_limit"), 1.0, "alloc");
    assert_eq!(outcome("trap"), 2.0, "raise and recurse");
    assert_eq!(outcome("invalid_output"), 4.0);
    assert_eq!(
        m.count(
            "edgewarden_plugin_duration_seconds_count",
            &[("policy", "misbehave-deny")]
        ),
        19.0
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
        9.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_is_cut_at_its_deadline() {
    let (gw, _origin) = misbehaving_gateway().await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(with_mode(&gw, "/deny", "loop").await.status, 503);
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    // 50 ms deadline plus a margin for a loaded 2-core machine.
    assert!(
        median < Duration::from_millis(500),
        "median {median:?}, all {times:?}"
    );
    assert!(
        median >= Duration::from_millis(50),
        "answered before the deadline: {median:?}"
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
    looping_plugin_beside_a_plain_route("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_does_not_stall_other_routes_with_work_stealing() {
    looping_plugin_beside_a_plain_route("work_stealing = true\n").await;
}

async fn looping_plugin_beside_a_plain_route(server_extra: &str) {
    let (gw, _origin) = misbehaving_gateway_with(server_extra).await;
    let addr = gw.addr;
    let loops: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(
                async move { request(addr, "GET", "/deny", &[("x-misbehave", "loop")]).await },
            )
        })
        .collect();
    let mut plain = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(get(gw.addr, "/plain").await.expect("response").status, 200);
        plain.push(started.elapsed());
    }
    for l in loops {
        assert_eq!(l.await.expect("join").expect("response").status, 503);
    }
    plain.sort();
    let median = plain[plain.len() / 2];
    assert!(
        median < Duration::from_millis(50),
        "plain route median {median:?} while plugins loop"
    );
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
    let issuer = pem_issuer_leaving_headers_to_plugins();
    let body = [
        issuer,
        origin("o", &[origin_.addr], ""),
        "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\norigin = \"o\"\nauth = \"required\"\npolicies = [\"identity\"]\n"
            .to_string(),
    ]
    .concat();
    let gw = Gateway::start_with_plugins(&body, &|dir| {
        link_plugin(dir, "identity_headers", "python-plugins/identity_headers");
        write_policy(
            dir,
            "identity",
            "plugin = \"identity_headers\"\nallow_headers = [\"x-internal-user-id\"]\n",
        );
    })
    .await;
    let auth = format!("Bearer {}", signer.token(&good_claims("user-7")));
    let resp = request(
        gw.addr,
        "GET",
        "/x",
        &[("Authorization", &auth), ("X-Internal-User-Id", "spoofed")],
    )
    .await
    .expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.origin_saw()["x-internal-user-id"],
        vec!["user-7".to_string()]
    );
}

/// `edgewarden check` (which builds and starts the plugins routes use) on a config whose one route
/// runs one policy; expects it to fail and returns its stderr.
fn check_one_policy(plugin: &str, source: &str, policy: &str) -> String {
    check_one_policy_with(plugin, source, policy, "")
}

/// As `check_one_policy`, with `extra` appended to the config file.
fn check_one_policy_with(plugin: &str, source: &str, policy: &str, extra: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    link_plugin(dir.path(), plugin, source);
    write_policy(dir.path(), "p", policy);
    let cache = concat!(env!("CARGO_TARGET_TMPDIR"), "/plugin-cache");
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\npolicies_dir = \"policies\"\nplugins_dir = \"plugins\"\nplugin_cache_dir = \"{cache}\"\n\
         [[origins]]\nname = \"o\"\nupstreams = [\"127.0.0.1:9\"]\n\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\norigin = \"o\"\nauth = \"off\"\npolicies = [\"p\"]\n{extra}"
    );
    let path = dir.path().join("edgewarden.toml");
    std::fs::write(&path, config).expect("config");
    let out = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .env(
            "EDGEWARDEN_COMPONENTIZE_PY",
            concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/componentize-py"),
        )
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn check_reports_a_bad_key_and_a_plugin_that_fails_to_build_together() {
    let pem = "-----BEGIN PUBLIC KEY-----\\nbm90IGEga2V5\\n-----END PUBLIC KEY-----";
    let issuer = format!(
        "[[issuers]]\nname = \"broken-key\"\nissuer = \"https://i.example\"\naudiences = [\"a\"]\n\
         algorithms = [\"RS256\"]\npublic_key_pem = \"{pem}\"\n"
    );
    let stderr = check_one_policy_with(
        "broken",
        "tests/plugins/broken",
        "plugin = \"broken\"\n",
        &issuer,
    );
    assert!(stderr.contains("issuers[0] (broken-key)"), "{stderr}");
    assert!(stderr.contains("plugin broken: build failed"), "{stderr}");
}

#[test]
fn a_plugin_that_fails_to_build_is_reported_with_its_file_and_line() {
    let stderr = check_one_policy("broken", "tests/plugins/broken", "plugin = \"broken\"\n");
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
        "plugin = \"misbehave\"\n[settings]\nsleep_in_setup = true\n",
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
        "plugin = \"forward_only\"\nisolation = \"fresh\"\n",
    );
    let cache = concat!(env!("CARGO_TARGET_TMPDIR"), "/plugin-cache");
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\nplugins_dir = \"plugins\"\npolicies_dir = \"policies\"\n\
         plugin_cache_dir = \"{cache}\"\n\
         [[origins]]\nname = \"o\"\nupstreams = [\"127.0.0.1:9\"]\n\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\norigin = \"o\"\nauth = \"off\"\npolicies = [\"pass\"]\n"
    );
    let path = dir.path().join("edgewarden.toml");
    std::fs::write(&path, config).expect("config");
    let out = std::process::Command::new(BIN)
        .args(["plugins", "build", "-c"])
        .arg(&path)
        .env(
            "EDGEWARDEN_COMPONENTIZE_PY",
            concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/componentize-py"),
        )
        .output()
        .expect("plugins build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let built: Vec<&str> = stdout
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
        "{stdout}"
    );
}

#[test]
fn plugins_new_scaffolds_a_plugin_whose_tests_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    let config = "[server]\nlisten = [\"127.0.0.1:1\"]\nplugins_dir = \"plugins\"\n\
                  [[origins]]\nname = \"o\"\nupstreams = [\"127.0.0.1:9\"]\n\
                  [[routes]]\nname = \"r\"\npath_prefix = \"/\"\norigin = \"o\"\nauth = \"off\"\n";
    let path = dir.path().join("edgewarden.toml");
    std::fs::write(&path, config).expect("config");
    let out = std::process::Command::new(BIN)
        .args(["plugins", "new", "my_policy", "-c"])
        .arg(&path)
        .output()
        .expect("plugins new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugin_dir = dir.path().join("plugins/my_policy");
    assert!(plugin_dir.join("plugin.py").is_file() && plugin_dir.join("test_plugin.py").is_file());
    // The scaffold's own tests pass with the project's SDK.
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("python-plugins");
    for file in ["conftest.py", "pytest.ini"] {
        std::fs::copy(sdk.join(file), dir.path().join("plugins").join(file)).expect("copy");
    }
    std::os::unix::fs::symlink(sdk.join("sdk"), dir.path().join("plugins/sdk")).expect("link sdk");
    let pytest =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"))
            .args(["-m", "pytest", "-q"])
            .current_dir(dir.path().join("plugins"))
            .output()
            .expect("pytest");
    assert!(
        pytest.status.success(),
        "{}",
        String::from_utf8_lossy(&pytest.stdout)
    );
    // A second scaffold with the same name is refused.
    let again = std::process::Command::new(BIN)
        .args(["plugins", "new", "my_policy", "-c"])
        .arg(&path)
        .output()
        .expect("plugins new");
    assert!(!again.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_policies_run_through_the_gateway() {
    let signer = Signer::rsa(RSA_A, "key-a");
    let global = echo_origin("global").await;
    let uk = echo_origin("uk").await;
    let fr = echo_origin("fr").await;
    let issuer = pem_issuer_leaving_headers_to_plugins();
    let body = [
        issuer,
        origin("global", &[global.addr], ""),
        origin("uk", &[uk.addr], ""),
        origin("fr", &[fr.addr], ""),
        "[[routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\norigin = \"global\"\nauth = \"required\"\n\
         policies = [\"identity\", \"admins-only\"]\n"
            .to_string(),
        route("geo", "/geo", "global", "policies = [\"geo\"]"),
    ]
    .concat();
    let gw = Gateway::start_with_plugins(&body, &|dir| {
        for plugin in ["geo_router", "identity_headers", "require_claim"] {
            link_plugin(dir, plugin, &format!("python-plugins/{plugin}"));
        }
        for policy in ["geo", "identity", "admins-only"] {
            let text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("policies/{policy}.toml")),
            )
            .expect("shipped policy");
            write_policy(dir, policy, &text);
        }
    })
    .await;

    let mut admin = good_claims("boss");
    admin["role"] = serde_json::json!("admin");
    admin["email"] = serde_json::json!("boss@example.com");
    let auth = format!("Bearer {}", signer.token(&admin));
    let resp = request(gw.addr, "GET", "/admin/x", &[("Authorization", &auth)])
        .await
        .expect("response");
    assert_eq!(resp.status, 200);
    let seen = resp.origin_saw();
    assert_eq!(seen["x-internal-user-id"], vec!["boss".to_string()]);
    assert_eq!(
        seen["x-internal-email"],
        vec!["boss@example.com".to_string()]
    );

    let mut viewer = good_claims("peon");
    viewer["role"] = serde_json::json!("viewer");
    let auth = format!("Bearer {}", signer.token(&viewer));
    let resp = request(gw.addr, "GET", "/admin/x", &[("Authorization", &auth)])
        .await
        .expect("response");
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"], "forbidden");
    assert!(resp.header("x-request-id").is_some());

    // No [geo] in this gateway: no country, so the default portal.
    let resp = get(gw.addr, "/geo/page").await.expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.origin_saw()["x-portal"], vec!["global".to_string()]);
    assert_eq!(uk.hits() + fr.hits(), 0);
    assert_eq!(global.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precompiled_plugin_that_does_not_fit_this_engine_is_compiled_again_from_its_component() {
    let origin_ = echo_origin("o").await;
    let body = [
        origin("o", &[origin_.addr], ""),
        route("r", "/", "o", "policies = [\"admins\"]"),
    ]
    .concat();
    let setup = |dir: &Path| {
        link_plugin(dir, "require_claim", "python-plugins/require_claim");
        write_policy(
            dir,
            "admins",
            "plugin = \"require_claim\"\n[settings]\nclaim = \"role\"\nallowed = [\"admin\"]\n",
        );
    };
    // Once through the shared cache, so the component and its native code exist there.
    let first = Gateway::start_with_plugins(&body, &setup).await;
    assert_eq!(get(first.addr, "/x").await.expect("response").status, 403);
    drop(first);

    // A cache as an image ships it: the component, and native code this engine cannot load.
    let shared = Path::new(concat!(env!("CARGO_TARGET_TMPDIR"), "/plugin-cache"));
    let cache = tempfile::tempdir().expect("cache");
    let mut shipped = 0;
    for entry in std::fs::read_dir(shared).expect("shared cache").flatten() {
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
    let extra = format!(
        "policies_dir = \"policies\"\nplugins_dir = \"plugins\"\nplugin_cache_dir = \"{}\"\n",
        cache.path().display()
    );
    let gw = Gateway::start_with_setup(&body, &extra, &setup).await;
    assert_eq!(get(gw.addr, "/x").await.expect("response").status, 403);
    assert!(
        gw.stderr()
            .contains("precompiled plugin not usable; compiling again"),
        "{}",
        gw.stderr()
    );
}
