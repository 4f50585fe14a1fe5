//! Hot reload (SIGHUP) under continuous load: good configurations go live, bad ones change
//! nothing, and no request fails either way.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_load_drop_no_request_and_each_good_one_goes_live() {
    let origin_ = echo_origin("o").await;
    let base = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("base", "/base", "o"));
    let mut gw = Gateway::builder(base)
        .plugin("require_claim", "python-plugins/require_claim")
        .plugin("broken", "tests/plugins/broken")
        .policy("admins", admins_only())
        .policy("broken", policy("broken"))
        .start()
        .await;
    // As written at the start: `[server]` filled in, the base routes only.
    let base = gw.config().clone();
    let with_route = |route: Entry| base.clone().with(route);

    let load = Load::start(gw.addr, "/base", &[], 4, true);
    let mut live = Vec::new();
    for i in 0..20 {
        match i % 5 {
            // A syntax error, a validation error, a plugin that does not build, a policy file
            // that is not there: each is refused and the serving routes stay as they were.
            1 => gw.write_config_text(&format!("{}\n[[routes]\nname = \"x\"", base.to_text())),
            2 => gw.write_config(with_route(route("bad", "/bad", "nowhere"))),
            3 if i < 10 => gw.write_config(with_route(
                route("bad", "/bad", "o").set("policies", ["broken"]),
            )),
            3 => gw.write_config(with_route(
                route("bad", "/bad", "o").set("policies", ["missing-policy"]),
            )),
            _ => {
                // Good: a new route each time, and the policy of /p switched on and off.
                let guarded = live.len() % 2 == 0;
                let p = route("p", "/p", "o");
                let p = if guarded {
                    p.set("policies", ["admins"])
                } else {
                    p
                };
                let next = with_route(route(&format!("v{i}"), &format!("/v{i}"), "o")).with(p);
                gw.write_config(next);
                gw.reload_and_wait("ok").await;
                let fresh = get(gw.addr, &format!("/v{i}/x")).await;
                assert_eq!(fresh.status, 200, "route of reload {i} is live");
                let p = get(gw.addr, "/p").await;
                let expected = if guarded { 403 } else { 200 };
                assert_eq!(p.status, expected, "policy of reload {i} is live");
                if let Some(previous) = live.last() {
                    let gone = get(gw.addr, &format!("/v{previous}/x")).await;
                    assert_eq!(gone.status, 404, "route of reload {previous} was replaced");
                }
                live.push(i);
                continue;
            }
        }
        gw.reload_and_wait("error").await;
        let last = live
            .last()
            .map_or("/base".to_string(), |i| format!("/v{i}/x"));
        let still = get(gw.addr, &last).await;
        assert_eq!(
            still.status, 200,
            "after refused reload {i}, {last} still served"
        );
        assert_eq!(get(gw.addr, "/bad").await.status, 404);
    }
    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests under load");
    let m = gw.metrics().await;
    assert_eq!(
        m.count("edgewarden_config_reloads_total", &[("result", "ok")]),
        8.0
    );
    assert_eq!(
        m.count("edgewarden_config_reloads_total", &[("result", "error")]),
        12.0
    );
    let log = gw.stderr();
    assert!(
        log.contains("routes[1] (bad).origin"),
        "validation error logged:\n{log}"
    );
    assert!(
        log.contains("plugin.py"),
        "build error names the plugin file:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_listeners_is_refused_with_the_reason() {
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("r", "/", "o"));
    let mut gw = Gateway::builder(config).start().await;
    let mut next = gw.config().clone();
    next.server_mut().update("threads", 3);
    gw.write_config(next);
    gw.reload_and_wait("error").await;
    assert!(
        gw.stderr().contains("server.threads changed"),
        "{}",
        gw.stderr()
    );
    assert_eq!(get(gw.addr, "/x").await.status, 200);
    // Still ready (the previous configuration serves), and saying since when it is not the file's.
    let ready = get(gw.admin, "/readyz").await;
    assert_eq!(ready.status, 200);
    let since = ready.json()["reload_refused_since"]
        .as_i64()
        .expect("reload_refused_since");
    let m = gw.metrics().await;
    assert_eq!(
        m.value("edgewarden_config_reload_refused_since_seconds", &[]),
        Some(since as f64)
    );
    // Every later reload is refused too while the file keeps the change; putting it back heals.
    let mut also = gw.config().clone();
    also.server_mut().set("drain_s", 2);
    gw.write_config(also);
    gw.reload_and_wait("error").await;
    let still = get(gw.admin, "/readyz").await.json()["reload_refused_since"].as_i64();
    assert_eq!(still, Some(since), "the first refusal's time is kept");
    let mut healed = gw.config().clone();
    healed.server_mut().update("threads", 2);
    gw.write_config(healed);
    gw.reload_and_wait("ok").await;
    let ready = get(gw.admin, "/readyz").await;
    assert!(
        ready.json().get("reload_refused_since").is_none(),
        "{:?}",
        ready.json()
    );
}
