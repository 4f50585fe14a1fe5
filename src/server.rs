//! Assembles the Pingora server from a validated configuration and runs it until shutdown.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service as ListeningService;

use crate::admin::Admin;
use crate::auth::Auth;
use crate::config::Config;
use crate::geo::Geo;
use crate::origins;
use crate::plugins::Plugins;
use crate::proxy::{Gateway, Generation};
use crate::shutdown::{InFlight, Signals};

/// Why the gateway could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Run the gateway in this process until a shutdown signal; returns only on a start-up failure
/// or after shutdown.
pub fn run(config: Config) -> Result<(), StartError> {
    check_bindable(&config)?;
    let (origins, health_checks) =
        origins::build(&config.origins).map_err(|e| StartError(format!("origins: {e}")))?;
    let (auth, refreshers) = Auth::build(&config).map_err(StartError)?;
    let plugins = Plugins::build(
        &config,
        config.server.plugin_cache_dir.clone(),
        config.server.threads,
    )
    .map_err(StartError)?;

    let conf = ServerConf {
        threads: config.server.threads,
        // The shutdown watcher exits the process as soon as in-flight requests are done, or at the
        // end of this grace; Pingora's own wait is the backstop.
        grace_period_seconds: Some(config.server.shutdown_grace_s),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let in_flight = InFlight::default();
    let listen = config.server.listen.clone();
    let admin_listen = config.server.admin_listen;
    let grace = Duration::from_secs(config.server.shutdown_grace_s);
    let geo = Geo::build(&config).map_err(StartError)?;
    let generation = Arc::new(Generation::new(config, auth, plugins, geo, origins));

    let mut proxy = http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(generation.clone(), in_flight.clone()),
        "edgewarden proxy",
    );
    for addr in &listen {
        proxy.add_tcp(&addr.to_string());
    }
    server.add_service(proxy);

    if let Some(addr) = admin_listen {
        let mut admin = ListeningService::new("edgewarden admin".to_string(), Admin { generation });
        admin.add_tcp(&addr.to_string());
        admin.threads = Some(1);
        server.add_service(admin);
    }
    for service in health_checks.into_iter().chain(refreshers) {
        server.add_boxed_service(service);
    }

    let announce = listen.clone();
    std::thread::spawn(move || {
        if wait_until_listening(&announce, Duration::from_secs(30)) {
            let list: Vec<String> = announce.iter().map(ToString::to_string).collect();
            tracing::info!(listen = %list.join(","), admin = ?admin_listen, "edgewarden ready");
        }
    });
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals { in_flight, grace }),
    });
    Ok(())
}

/// Fail with a clear message before Pingora tries (and aborts) when an address is taken.
fn check_bindable(config: &Config) -> Result<(), StartError> {
    let mut addrs: Vec<SocketAddr> = config.server.listen.clone();
    addrs.extend(config.server.admin_listen);
    for addr in addrs {
        TcpListener::bind(addr).map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    }
    Ok(())
}

/// Poll until every address accepts a TCP connection, or `timeout` passes.
pub fn wait_until_listening(addrs: &[SocketAddr], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    addrs.iter().all(|addr| {
        loop {
            if TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}
