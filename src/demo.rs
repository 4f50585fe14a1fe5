//! `edgewarden demo`: the shipped example configuration in front of built-in echo origins.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::server::{self, StartError};

/// The shipped example configuration, embedded so the demo runs from any directory.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/edgewarden.toml");

/// Load `config/edgewarden.toml` if present, else the embedded copy; start one echo origin on every
/// upstream address it names; print ready-to-paste curl lines; run the gateway.
pub fn run(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let config = if path.exists() {
        Config::load(path)?
    } else {
        Config::from_str(EXAMPLE_CONFIG, path)?
    };
    let mut upstreams: Vec<std::net::SocketAddr> = config
        .origins
        .iter()
        .flat_map(|o| o.addresses.iter().copied())
        .collect();
    upstreams.sort();
    upstreams.dedup();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    for (i, addr) in upstreams.iter().enumerate() {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| StartError(format!("demo origin cannot listen on {addr}: {e}")))?;
        let _guard = runtime.enter();
        crate::echo::spawn(listener, &format!("echo-{}", i + 1))?;
    }
    // The runtime must outlive the gateway: keep it on its own thread.
    std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));

    let listen = config.server.listen.clone();
    let admin = config.server.admin_listen;
    std::thread::spawn(move || {
        if server::wait_until_listening(&listen, Duration::from_secs(30)) {
            print_curl_lines(listen[0], admin);
        }
    });
    server::run(config)?;
    Ok(())
}

fn print_curl_lines(gateway: std::net::SocketAddr, admin: Option<std::net::SocketAddr>) {
    let g = format!("http://{gateway}");
    println!();
    println!("edgewarden demo is running. Try:");
    println!();
    println!("  # routed to the echo origins (round robin: watch \"origin\" alternate)");
    println!("  curl -s {g}/api/hello?name=demo");
    println!("  # no route for this path: 404 with a JSON body");
    println!("  curl -i {g}/nowhere");
    println!("  # the /api route only takes GET and POST: 405 with Allow");
    println!("  curl -i -X DELETE {g}/api/hello");
    println!("  # the origin answers after 3 s but the route's origin allows 1 s: 504");
    println!("  curl -i -H 'x-echo-delay-ms: 3000' {g}/slow");
    if let Some(admin) = admin {
        println!("  # liveness and readiness");
        println!("  curl -s http://{admin}/healthz; curl -s http://{admin}/readyz");
    }
    println!();
    println!("Press Ctrl-C to stop.");
}
