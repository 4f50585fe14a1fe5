//! Three gateway replicas behind HAProxy on loopback, under continuous load: a rolling restart,
//! a JWKS rotation, a kubelet-style configuration update, and a replica killed outright.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::volume::{as_mounted_volume, publish};
use crate::support::*;

const HAPROXY: &str = "/usr/sbin/haproxy";
const CLIENTS: usize = 6;

/// HAProxy in front of the replicas (servers `g0`, `g1`, ...): readiness checks every 100 ms on
/// the admin port, retries of idempotent requests on another replica when a connection fails, and
/// its statistics page, which says what it thinks of each replica.
struct Balancer {
    child: Child,
    addr: SocketAddr,
    stats: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Balancer {
    async fn start(replicas: &[(SocketAddr, SocketAddr)]) -> Balancer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, stats) = (free_port(), free_port());
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, (proxy, admin))| {
                format!(
                    "  server g{i} {proxy} check addr {} port {}\n",
                    admin.ip(),
                    admin.port()
                )
            })
            .collect();
        let config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
             \x20 retries 3\n  option redispatch 1\n  retry-on all-retryable-errors\n\
             frontend fe\n  bind {addr}\n  default_backend replicas\n\
             frontend stats\n  bind {stats}\n  stats enable\n  stats uri /stats\n\
             backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n\
             \x20 http-check expect status 200\n  default-server inter 100ms fall 1 rise 1\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("haproxy config");
        let child = Command::new(HAPROXY)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/setup installs it)");
        let balancer = Balancer {
            child,
            addr,
            stats,
            _dir: dir,
        };
        let serving = eventually(Duration::from_secs(10), async || {
            req("GET", "/public/x")
                .try_send(addr)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(serving, "haproxy did not start");
        balancer
    }

    /// What the balancer's last check of replica `i` said: "UP", "DOWN", ...
    async fn status(&self, i: usize) -> String {
        let csv = get(self.stats, "/stats;csv").await.text();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("no {name} in {header:?}"))
        };
        let (proxy, server, status) = (column("pxname"), column("svname"), column("status"));
        let name = format!("g{i}");
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|row| row.get(proxy) == Some(&"replicas") && row.get(server) == Some(&&*name))
            .and_then(|row| row.get(status).map(|s| s.to_string()))
            .unwrap_or_else(|| panic!("no server {name} in\n{csv}"))
    }

    /// Wait until the balancer says replica `i` is `status`.
    async fn wait_for(&self, i: usize, status: &str) {
        let seen = eventually(Duration::from_secs(10), async || {
            self.status(i).await == status
        })
        .await;
        assert!(seen, "the balancer never saw replica {i} {status}");
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_haproxy_restart_rotate_keys_reload_and_lose_only_in_flight_requests()
{
    let a = Signer::rsa(RSA_A, "key-a");
    let b = Signer::rsa(RSA_B, "key-b");
    let jwks_server = JwksServer::start(Answer::Jwks(jwks(&[&a])), Duration::ZERO).await;
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .server("drain_s", 1)
        .server("shutdown_grace_s", 5)
        .server("watch_interval_s", 1)
        .with(
            issuer()
                .set("jwks_url", jwks_server.url())
                .set("refresh_interval_s", 1)
                .set("unknown_kid_cooldown_s", 1),
        )
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/api", "o").set("auth", "required"))
        .with(route("public", "/public", "o"));
    // Every replica, restarted ones included, has the same admin token.
    let replica = || Gateway::builder(config.clone()).admin_token();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica().start().await);
    }
    let addrs: Vec<(SocketAddr, SocketAddr)> = replicas.iter().map(|g| (g.addr, g.admin)).collect();
    let balancer = Balancer::start(&addrs).await;
    let bearer = format!("Bearer {}", a.token(&good_claims("user-1")));
    let load = Load::start(
        balancer.addr,
        "/api/x",
        &[("Authorization", &bearer)],
        CLIENTS,
        false,
    );
    load.progresses().await;

    // 1. Rolling restart: drain, SIGTERM, start again on the same addresses, one at a time.
    for i in 0..replicas.len() {
        let (addr, admin) = addrs[i];
        let drained = req("POST", "/drain")
            .body("")
            .bearer(ADMIN_TOKEN)
            .send(admin)
            .await;
        assert_eq!(drained.status, 200);
        let old = &mut replicas[i];
        nix::sys::signal::kill(old.pid(), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = old.child.wait().expect("exit");
        assert!(status.success(), "replica {i} exited with {status}");
        replicas[i] = replica().at(addr, admin).start().await;
        // The balancer sees it ready again before the next one goes.
        balancer.wait_for(i, "UP").await;
        load.progresses().await;
    }
    let failures = load.failures();
    assert!(
        failures.is_empty(),
        "rolling restart: {} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // 2. A JWKS rotation reaches every replica.
    jwks_server.set(Answer::Jwks(jwks(&[&a, &b])));
    let token_b = b.token(&good_claims("user-2"));
    for (i, replica) in replicas.iter().enumerate() {
        let rotated = eventually(Duration::from_secs(10), async || {
            req("GET", "/api/x")
                .bearer(&token_b)
                .try_send(replica.addr)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(rotated, "replica {i} never accepted the rotated key");
    }

    // 3. A configuration update written the way the kubelet writes a ConfigMap reaches every
    //    replica.
    for replica in &replicas {
        as_mounted_volume(replica.dir());
        let next = replica.config().clone().with(route("added", "/added", "o"));
        publish(replica.dir(), "..v2", &next.to_text());
    }
    for (i, replica) in replicas.iter().enumerate() {
        let reloaded = eventually(Duration::from_secs(10), async || {
            req("GET", "/added/x")
                .try_send(replica.addr)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(reloaded, "replica {i} never loaded the new configuration");
    }
    let failures = load.failures();
    assert!(failures.is_empty(), "rotation and reload: {failures:?}");

    // 4. SIGKILL one replica: only requests in flight on it may fail, at most one per client.
    let before = load.failures().len();
    nix::sys::signal::kill(replicas[1].pid(), nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    balancer.wait_for(1, "DOWN").await;
    load.progresses().await;
    let lost = load.failures().len() - before;
    eprintln!(
        "SIGKILL of one replica under load: {lost} request(s) lost (at most {CLIENTS} in flight)"
    );
    assert!(lost <= CLIENTS, "lost {lost}: {:?}", load.failures());
    let settled = load.failures().len();
    load.progresses().await;
    assert_eq!(
        load.failures().len(),
        settled,
        "requests still fail after the balancer saw the replica gone"
    );
    let (served, _) = load.finish().await;
    assert!(served > 100, "only {served} requests under load");
    drop(balancer);
}
