//! What an orchestrator relies on: draining before termination, and reloading when a mounted
//! configuration directory changes the way Kubernetes changes it (a `..data` symlink swap).

use std::time::{Duration, Instant};

use crate::support::volume::{as_mounted_volume, publish};
use crate::support::*;

fn one_route(origin_: &EchoOrigin, path_prefix: &str) -> Config {
    Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("r", path_prefix, "o"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_fails_readiness_keeps_serving_and_closes_each_connection_after_its_answer() {
    let origin_ = echo_origin("o").await;
    let config = one_route(&origin_, "/").server("drain_s", 1);
    let gw = Gateway::builder(config).admin_token().start().await;
    assert_eq!(gw.readiness().await, 200);

    let started = Instant::now();
    let drain = tokio::spawn(
        req("POST", "/drain")
            .body("")
            .bearer(ADMIN_TOKEN)
            .send(gw.admin),
    );
    let draining = eventually(Duration::from_secs(5), async || {
        let ready = get(gw.admin, "/readyz").await;
        ready.status == 503 && ready.json()["status"] == "draining"
    })
    .await;
    assert!(draining, "readiness never failed");
    // Still served, but the connection closes after the answer.
    let mut conn = Conn::open(gw.addr).await;
    let resp = conn
        .request(&req("GET", "/x"))
        .await
        .expect("served while draining");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(conn.is_closed_within(Duration::from_secs(2)).await);

    let answered = drain.await.expect("drain answer");
    assert_eq!(answered.status, 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "drain answered before drain_s: {:?}",
        started.elapsed()
    );
    // Serving goes on until the orchestrator sends SIGTERM.
    assert_eq!(get(gw.addr, "/x").await.status, 200);
    assert_eq!(origin_.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_reloaded_without_a_signal() {
    let origin_ = echo_origin("o").await;
    let config = one_route(&origin_, "/old").server("watch_interval_s", 1);
    let gw = Gateway::builder(config).start().await;
    as_mounted_volume(gw.dir());
    assert_eq!(get(gw.addr, "/old/x").await.status, 200);

    let mut next = gw.config().clone();
    next.route_mut("r").update("path_prefix", "/new");
    publish(gw.dir(), "..v2", &next.to_text());
    let m = gw
        .metrics_when(|m| m.count("edgewarden_config_reloads_total", &[("result", "ok")]) >= 1.0)
        .await;
    assert_eq!(
        m.count("edgewarden_config_reloads_total", &[("result", "ok")]),
        1.0,
        "{}",
        gw.stderr()
    );
    assert_eq!(get(gw.addr, "/new/x").await.status, 200);
    assert_eq!(get(gw.addr, "/old/x").await.status, 404);

    // A broken version is refused and the last good one keeps serving.
    publish(gw.dir(), "..v3", "[server]\nlisten = ");
    let m = gw
        .metrics_when(|m| m.count("edgewarden_config_reloads_total", &[("result", "error")]) >= 1.0)
        .await;
    assert_eq!(
        m.count("edgewarden_config_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(get(gw.addr, "/new/x").await.status, 200);
}

/// The admin listener is its own service and may answer before the proxy's sockets accept; an
/// orchestrator that sends traffic at the first 200 from `/readyz` must find the proxy answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_reported_only_once_the_proxy_port_answers() {
    let origin_ = echo_origin("o").await;
    let mut gw = Gateway::builder(one_route(&origin_, "/"))
        .wait(Wait::Spawned)
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Ok(resp) = req("GET", "/readyz").try_send(gw.admin).await
            && resp.status == 200
        {
            break true;
        }
        if Instant::now() >= deadline || gw.child.try_wait().ok().flatten().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // No wait here: the first 200 is the signal.
    let routed = req("GET", "/x").try_send(gw.addr).await;
    assert!(ready, "never ready");
    assert_eq!(routed.map(|r| r.status), Ok(200));
}
