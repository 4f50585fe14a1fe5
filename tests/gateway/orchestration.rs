//! What an orchestrator relies on: draining before termination, and reloading when a mounted
//! configuration directory changes the way Kubernetes changes it (a `..data` symlink swap).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_fails_readiness_keeps_serving_and_closes_each_connection_after_its_answer() {
    let origin_ = echo_origin("o").await;
    let body = [origin("o", &[origin_.addr], ""), route("r", "/", "o", "")].concat();
    let server = format!("drain_s = 1\n{ADMIN_TOKEN_FILE}");
    let gw = Gateway::start_with_setup(&body, &server, &write_admin_token).await;
    assert_eq!(get(gw.admin, "/readyz").await.expect("readyz").status, 200);

    let admin = gw.admin;
    let started = Instant::now();
    let drain = tokio::spawn(async move { admin_post(admin, "/drain", Some(ADMIN_TOKEN)).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = get(gw.admin, "/readyz").await.expect("readyz");
        if ready.status == 503 {
            assert_eq!(ready.json()["status"], "draining");
            break;
        }
        assert!(Instant::now() < deadline, "readiness never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Still served, but the connection closes after the answer.
    let mut conn = Conn::open(gw.addr).await;
    conn.send(format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr).as_bytes())
        .await;
    let resp = conn
        .read_response(false)
        .await
        .expect("served while draining");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(conn.is_closed_within(Duration::from_secs(2)).await);

    let answered = drain.await.expect("task").expect("drain answer");
    assert_eq!(answered.status, 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "drain answered before drain_s: {:?}",
        started.elapsed()
    );
    // Serving goes on until the orchestrator sends SIGTERM.
    assert_eq!(get(gw.addr, "/x").await.expect("after").status, 200);
    assert_eq!(origin_.hits(), 2);
}

/// Move `dir/edgewarden.toml` into a Kubernetes-style volume: `..v1/edgewarden.toml`, `..data`
/// pointing at `..v1`, and `edgewarden.toml` a link through `..data`.
pub(crate) fn as_mounted_volume(dir: &Path) {
    std::fs::create_dir(dir.join("..v1")).expect("v1");
    std::fs::rename(
        dir.join("edgewarden.toml"),
        dir.join("..v1/edgewarden.toml"),
    )
    .expect("move");
    std::os::unix::fs::symlink("..v1", dir.join("..data")).expect("..data");
    std::os::unix::fs::symlink("..data/edgewarden.toml", dir.join("edgewarden.toml"))
        .expect("link");
}

/// Publish `text` as the volume's next version, swapping `..data` atomically.
pub(crate) fn publish(dir: &Path, version: &str, text: &str) {
    std::fs::create_dir(dir.join(version)).expect("version dir");
    std::fs::write(dir.join(version).join("edgewarden.toml"), text).expect("write");
    std::os::unix::fs::symlink(version, dir.join("..data_tmp")).expect("tmp link");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_reloaded_without_a_signal() {
    let origin_ = echo_origin("o").await;
    let body = [
        origin("o", &[origin_.addr], ""),
        route("r", "/old", "o", ""),
    ]
    .concat();
    let gw = Gateway::start_with(&body, "watch_interval_s = 1").await;
    let dir = gw.config_path.parent().expect("dir").to_path_buf();
    let head = std::fs::read_to_string(&gw.config_path).expect("config");
    let head = head.split("[[origins]]").next().expect("head").to_string();
    as_mounted_volume(&dir);
    assert_eq!(get(gw.addr, "/old/x").await.expect("old").status, 200);

    let next = format!(
        "{head}{}{}",
        origin("o", &[origin_.addr], ""),
        route("r", "/new", "o", "")
    );
    publish(&dir, "..v2", &next);
    let m = gw
        .metrics_when(|m| m.count("edgewarden_config_reloads_total", &[("result", "ok")]) >= 1.0)
        .await;
    assert_eq!(
        m.count("edgewarden_config_reloads_total", &[("result", "ok")]),
        1.0,
        "{}",
        gw.stderr()
    );
    assert_eq!(get(gw.addr, "/new/x").await.expect("new").status, 200);
    assert_eq!(get(gw.addr, "/old/x").await.expect("old").status, 404);

    // A broken version is refused and the last good one keeps serving.
    publish(&dir, "..v3", "[server]\nlisten = ");
    let m = gw
        .metrics_when(|m| m.count("edgewarden_config_reloads_total", &[("result", "error")]) >= 1.0)
        .await;
    assert_eq!(
        m.count("edgewarden_config_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(get(gw.addr, "/new/x").await.expect("new").status, 200);
}

/// The admin listener is its own service and may answer before the proxy's sockets accept; an
/// orchestrator that sends traffic at the first 200 from `/readyz` must find the proxy answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_reported_only_once_the_proxy_port_answers() {
    let origin_ = echo_origin("o").await;
    let body = [origin("o", &[origin_.addr], ""), route("r", "/", "o", "")].concat();
    let mut gw = Gateway::spawn(&body).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Ok(resp) = get(gw.admin, "/readyz").await
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
    let routed = get(gw.addr, "/x").await;
    assert!(ready, "never ready");
    assert_eq!(routed.map(|r| r.status), Ok(200));
}
