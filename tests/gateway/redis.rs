//! `store = "redis"` limits against a real `redis-server`: one global limit across three gateway
//! replicas, and what happens when Redis is paused (`CLIENT PAUSE`), stopped (`SIGSTOP`) or killed:
//! every request is answered within the call's deadline plus a margin, `on_store_error` decides,
//! nothing hangs, and the gateway goes back to Redis once it answers again.

use std::time::{Duration, Instant};

use crate::support::*;

/// Every Redis call's deadline here.
const TIMEOUT_MS: u64 = 100;
/// What a request may take beyond that deadline on a busy test machine.
const MARGIN: Duration = Duration::from_millis(400);

/// A gateway whose `/api` route (no token) applies the limit `global`: `rate` requests per
/// minute, all at once, counted in `redis` for the whole route.
async fn replica(redis: &RedisServer, origin_: &EchoOrigin, rate: u64, on_error: &str) -> Gateway {
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("limits", ["global"]))
        .with(limit("global", "route", rate, rate).set("store", "redis"))
        .with(
            section("redis")
                .set("url", redis.url())
                .set("timeout_ms", TIMEOUT_MS)
                .set("on_store_error", on_error)
                .set("breaker_failures", 3)
                .set("breaker_open_ms", 200),
        );
    Gateway::builder(config).start().await
}

/// The status of `GET /api/x`, checked to come within the deadline and its margin.
async fn timed_status(gw: &Gateway) -> u16 {
    let started = Instant::now();
    let resp = req("GET", "/api/x").send(gw.addr).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(TIMEOUT_MS) + MARGIN,
        "answered after {took:?}"
    );
    resp.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_holds_across_three_replicas_sharing_one_redis() {
    let redis = RedisServer::start();
    let origin_ = echo_origin("o").await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        // "deny": a store failure would show as a refusal and break the count below.
        replicas.push(replica(&redis, &origin_, 30, "deny").await);
    }
    let mut allowed = 0;
    for i in 0..90 {
        match req("GET", "/api/x").send(replicas[i % 3].addr).await.status {
            200 => allowed += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    // 30 at once for the whole route, whichever replica is asked. One request's share of the
    // minute (2 s) may pass while the 90 requests run: one more at most.
    assert!((30..=31).contains(&allowed), "{allowed} allowed");
    assert_eq!(origin_.hits(), allowed);
    for gw in &replicas {
        let m = gw.metrics().await;
        assert_eq!(m.total("edgewarden_redis_errors_total"), 0.0);
        let refused = m.count(
            "edgewarden_limit_decisions_total",
            &[("limit", "global"), ("outcome", "refused")],
        );
        assert!(refused > 0.0, "every replica refused some");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_is_answered_by_on_store_error_within_the_deadline_and_left_when_it_resumes()
 {
    let redis = RedisServer::start();
    let origin_ = echo_origin("o").await;
    let gw = replica(&redis, &origin_, 2, "allow").await;
    assert_eq!(timed_status(&gw).await, 200, "counted in Redis: 1 of 2");
    redis.stop();
    for _ in 0..6 {
        assert_eq!(
            timed_status(&gw).await,
            200,
            "allowed while Redis is stopped"
        );
    }
    let m = gw.metrics().await;
    assert!(m.count("edgewarden_redis_errors_total", &[("reason", "timeout")]) >= 3.0);
    assert!(
        m.count(
            "edgewarden_redis_errors_total",
            &[("reason", "breaker_open")]
        ) >= 1.0
    );
    assert_eq!(m.count("edgewarden_redis_breaker_open", &[]), 1.0);
    redis.resume();
    // Back on Redis: its count (1 of 2) goes on, so a refusal comes within two requests.
    let back = eventually(Duration::from_secs(10), async || {
        timed_status(&gw).await == 429
    })
    .await;
    assert!(back, "the gateway never went back to Redis");
    let m = gw.metrics().await;
    assert_eq!(m.count("edgewarden_redis_breaker_open", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_with_on_store_error_deny_refuses_within_the_deadline_then_recovers() {
    let redis = RedisServer::start();
    let origin_ = echo_origin("o").await;
    let gw = replica(&redis, &origin_, 100, "deny").await;
    assert_eq!(timed_status(&gw).await, 200);
    redis.pause(1500);
    for _ in 0..5 {
        assert_eq!(
            timed_status(&gw).await,
            429,
            "refused while Redis is paused"
        );
    }
    let back = eventually(Duration::from_secs(10), async || {
        timed_status(&gw).await == 200
    })
    .await;
    assert!(back, "the gateway never went back to Redis after the pause");
    assert_eq!(origin_.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_falls_back_to_local_counters_and_is_used_again_once_restarted() {
    let mut redis = RedisServer::start();
    let origin_ = echo_origin("o").await;
    let gw = replica(&redis, &origin_, 2, "local").await;
    assert_eq!(timed_status(&gw).await, 200);
    redis.kill();
    // The replica's own counters: two at once, then refused.
    let statuses = [
        timed_status(&gw).await,
        timed_status(&gw).await,
        timed_status(&gw).await,
    ];
    assert_eq!(statuses, [200, 200, 429]);
    assert!(gw.metrics().await.total("edgewarden_redis_errors_total") >= 3.0);
    // A new, empty Redis on the same address: the local count (spent) no longer decides.
    redis.restart();
    let back = eventually(Duration::from_secs(10), async || {
        timed_status(&gw).await == 200
    })
    .await;
    assert!(
        back,
        "the gateway never went back to Redis after its restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_with_two_windows_in_redis_refuses_when_either_is_spent() {
    let redis = RedisServer::start();
    let origin_ = echo_origin("o").await;
    // Two per second, and three per minute.
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("limits", ["two-windows"]))
        .with(
            limit("two-windows", "route", 2, 2)
                .set("per_s", 1)
                .set("store", "redis")
                .set("windows", [serde_json::json!({"rate": 3, "per_s": 60})]),
        )
        .with(
            section("redis")
                .set("url", redis.url())
                .set("timeout_ms", 1000),
        );
    let gw = Gateway::builder(config).start().await;
    let policy = |resp: &Response| resp.header("ratelimit-policy").map(str::to_string);
    for _ in 0..2 {
        assert_eq!(req("GET", "/api/x").send(gw.addr).await.status, 200);
    }
    let resp = req("GET", "/api/x").send(gw.addr).await;
    assert_eq!(resp.status, 429);
    assert_eq!(policy(&resp).as_deref(), Some("\"two-windows\";q=2;w=1"));
    // The time that passes is what is tested: the per-second window refills, the minute's does not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(req("GET", "/api/x").send(gw.addr).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = req("GET", "/api/x").send(gw.addr).await;
    assert_eq!(resp.status, 429);
    assert_eq!(policy(&resp).as_deref(), Some("\"two-windows\";q=3;w=60"));
    assert_eq!(origin_.hits(), 3);
    assert_eq!(
        gw.metrics().await.total("edgewarden_redis_errors_total"),
        0.0
    );
}

/// A gateway applying `global` in the Redis at `url`, over TLS with `ca` and the client
/// certificate in `client` (`cert.pem`, `key.pem`).
async fn tls_replica(
    url: &str,
    origin_: &EchoOrigin,
    ca: &str,
    client: &std::path::Path,
) -> Gateway {
    let (cert, key) = (client.join("cert.pem"), client.join("key.pem"));
    let config = Config::new()
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("limits", ["global"]))
        .with(limit("global", "route", 4, 4).set("store", "redis"))
        .with(
            section("redis")
                .set("url", url)
                .set("ca_file", "redis-ca.pem")
                .set("client_cert", cert.display().to_string())
                .set("client_key", key.display().to_string())
                .set("timeout_ms", TIMEOUT_MS)
                .set("on_store_error", "deny"),
        );
    Gateway::builder(config)
        .file("redis-ca.pem", ca)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_is_shared_over_tls_to_redis_and_an_unverified_server_is_never_used() {
    let redis = RedisServer::start_tls();
    let origin_ = echo_origin("o").await;
    let tls = redis.tls();
    let one = tls_replica(&redis.tls_url(), &origin_, &tls.pki.ca_pem, tls.dir()).await;
    let two = tls_replica(&redis.tls_url(), &origin_, &tls.pki.ca_pem, tls.dir()).await;
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for i in 0..8 {
            let gw = if i % 2 == 0 { &one } else { &two };
            statuses.push(timed_status(gw).await);
        }
        statuses
    };
    // "deny": a failed TLS call would show as a refusal; 4 at once for both replicas.
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    for gw in [&one, &two] {
        assert_eq!(
            gw.metrics().await.total("edgewarden_redis_errors_total"),
            0.0
        );
    }
    // The counts are in that Redis (read over its plain port).
    let keys = redis.command(&["DBSIZE"]);
    assert_ne!(keys, ":0", "nothing was stored");

    // A server whose certificate does not chain to the configured CA is not talked to.
    let other = pki(&["127.0.0.1"]);
    let doubting = tls_replica(&redis.tls_url(), &origin_, &other.ca_pem, tls.dir()).await;
    assert_eq!(timed_status(&doubting).await, 429, "on_store_error = deny");
    let m = doubting
        .metrics_when(|m| m.total("edgewarden_redis_errors_total") >= 1.0)
        .await;
    assert!(m.total("edgewarden_redis_errors_total") >= 1.0, "{}", m.0);
    assert_eq!(origin_.hits(), 4);
}
