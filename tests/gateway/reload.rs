//! Hot reload (SIGHUP) under continuous load: good configurations go live, bad ones change
//! nothing, and no request fails either way.

use crate::common::*;
use crate::load::Load;
use crate::plugins::{link_plugin, write_policy};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_load_drop_no_request_and_each_good_one_goes_live() {
    let origin_ = echo_origin("o").await;
    let base = [
        origin("o", &[origin_.addr], ""),
        route("base", "/base", "o", ""),
    ]
    .concat();
    let gw = Gateway::start_with_plugins(&base, &|dir| {
        link_plugin(dir, "require_claim", "python-plugins/require_claim");
        link_plugin(dir, "broken", "tests/plugins/broken");
        write_policy(
            dir,
            "admins",
            "plugin = \"require_claim\"\n[settings]\nclaim = \"role\"\nallowed = [\"admin\"]\n",
        );
        write_policy(dir, "broken", "plugin = \"broken\"\n");
    })
    .await;

    let load = Load::start(gw.addr, "/base", &[], 4, true);
    let mut live = Vec::new();
    for i in 0..20 {
        match i % 5 {
            // A syntax error, a validation error, a plugin that does not build, a change of
            // listener: each is refused and the serving routes stay as they were.
            1 => gw.rewrite_config(&format!("{base}\n[[routes]\nname = \"x\"")),
            2 => gw.rewrite_config(&format!("{base}{}", route("bad", "/bad", "nowhere", ""))),
            3 if i < 10 => gw.rewrite_config(&format!(
                "{base}{}",
                route("bad", "/bad", "o", "policies = [\"broken\"]")
            )),
            3 => gw.rewrite_config(&format!(
                "{base}{}",
                route("bad", "/bad", "o", "policies = [\"missing-policy\"]")
            )),
            _ => {
                // Good: a new route each time, and the policy of /p switched on and off.
                let policies = if live.len() % 2 == 0 {
                    "policies = [\"admins\"]"
                } else {
                    ""
                };
                let body = format!(
                    "{base}{}{}",
                    route(&format!("v{i}"), &format!("/v{i}"), "o", ""),
                    route("p", "/p", "o", policies)
                );
                gw.rewrite_config(&body);
                gw.reload_and_wait("ok").await;
                let fresh = get(gw.addr, &format!("/v{i}/x")).await.expect("response");
                assert_eq!(fresh.status, 200, "route of reload {i} is live");
                let p = get(gw.addr, "/p").await.expect("response");
                let expected = if policies.is_empty() { 200 } else { 403 };
                assert_eq!(p.status, expected, "policy of reload {i} is live");
                if let Some(previous) = live.last() {
                    let gone = get(gw.addr, &format!("/v{previous}/x"))
                        .await
                        .expect("response");
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
        let still = get(gw.addr, &last).await.expect("response");
        assert_eq!(
            still.status, 200,
            "after refused reload {i}, {last} still served"
        );
        assert_eq!(get(gw.addr, "/bad").await.expect("response").status, 404);
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
        log.contains("routes[1].origin"),
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
    let body = [origin("o", &[origin_.addr], ""), route("r", "/", "o", "")].concat();
    let gw = Gateway::start(&body).await;
    let text = std::fs::read_to_string(&gw.config_path).expect("config");
    std::fs::write(&gw.config_path, text.replace("threads = 2", "threads = 3")).expect("write");
    gw.reload_and_wait("error").await;
    assert!(
        gw.stderr().contains("server.threads changed"),
        "{}",
        gw.stderr()
    );
    assert_eq!(get(gw.addr, "/x").await.expect("response").status, 200);
}
