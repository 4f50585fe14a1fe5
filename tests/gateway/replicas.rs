//! Three gateway replicas behind HAProxy on loopback, under continuous load: a rolling restart,
//! a JWKS rotation, a kubelet-style configuration update, and a replica killed outright.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::load::{Load, eventually};
use crate::orchestration::{as_mounted_volume, publish};
use crate::tokens::*;

const HAPROXY: &str = "/usr/sbin/haproxy";
const CLIENTS: usize = 6;

/// HAProxy in front of the replicas: readiness checks every 100 ms on the admin port, and
/// retries of idempotent requests on another replica when a connection fails.
struct Balancer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Balancer {
    async fn start(replicas: &[(SocketAddr, SocketAddr)]) -> Balancer {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = free_port();
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
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !get(addr, "/public/x").await.is_ok_and(|r| r.status == 200) {
            assert!(Instant::now() < deadline, "haproxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        balancer
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
    let body = [
        issuer_toml(
            &format!("jwks_url = \"{}\"", jwks_server.url()),
            "refresh_interval_s = 1\nunknown_kid_cooldown_s = 1",
        ),
        origin("o", &[origin_.addr], ""),
        "[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\norigin = \"o\"\nauth = \"required\"\n"
            .to_string(),
        route("public", "/public", "o", ""),
    ]
    .concat();
    // One token file for every replica, restarted ones included.
    let token_dir = tempfile::tempdir().expect("tempdir");
    write_admin_token(token_dir.path());
    let server = format!(
        "drain_s = 1\nshutdown_grace_s = 5\nwatch_interval_s = 1\nadmin_token_file = \"{}\"",
        token_dir.path().join("admin-token").display()
    );
    let server = server.as_str();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Gateway::start_with(&body, server).await);
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
        let drained = admin_post(admin, "/drain", Some(ADMIN_TOKEN))
            .await
            .expect("drain");
        assert_eq!(drained.status, 200);
        let old = &mut replicas[i];
        nix::sys::signal::kill(old.pid(), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = old.child.wait().expect("exit");
        assert!(status.success(), "replica {i} exited with {status}");
        replicas[i] = Gateway::start_at(addr, admin, &body, server).await;
        // The balancer sees it ready again before the next one goes.
        tokio::time::sleep(Duration::from_millis(300)).await;
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
    let token_b = format!("Bearer {}", b.token(&good_claims("user-2")));
    for (i, replica) in replicas.iter().enumerate() {
        assert!(
            eventually(Duration::from_secs(10), async || request(
                replica.addr,
                "GET",
                "/api/x",
                &[("Authorization", &token_b)]
            )
            .await
            .is_ok_and(|r| r.status == 200))
            .await,
            "replica {i} never accepted the rotated key"
        );
    }

    // 3. A configuration update written the way the kubelet writes a ConfigMap reaches every
    //    replica.
    for replica in &replicas {
        let dir = replica.config_path.parent().expect("dir").to_path_buf();
        let text = std::fs::read_to_string(&replica.config_path).expect("config");
        as_mounted_volume(&dir);
        publish(
            &dir,
            "..v2",
            &format!("{text}{}", route("added", "/added", "o", "")),
        );
    }
    for (i, replica) in replicas.iter().enumerate() {
        assert!(
            eventually(Duration::from_secs(10), async || get(
                replica.addr,
                "/added/x"
            )
            .await
            .is_ok_and(|r| r.status == 200))
            .await,
            "replica {i} never loaded the new configuration"
        );
    }
    let failures = load.failures();
    assert!(failures.is_empty(), "rotation and reload: {failures:?}");

    // 4. SIGKILL one replica: only requests in flight on it may fail, at most one per client.
    let before = load.failures().len();
    nix::sys::signal::kill(replicas[1].pid(), nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    tokio::time::sleep(Duration::from_millis(500)).await;
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
