//! Assembles the Pingora server from a validated configuration and runs it until shutdown.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pingora::listeners::ConnectionFilter;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service as ListeningService;

use crate::admin::{Admin, Listening};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Errors, OrErr};
use crate::generation::Generation;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::shutdown::{Draining, InFlight, Signals};
use crate::tls::ListenerCerts;

/// Why the gateway could not start: every problem found (a listener address, a certificate, each
/// part of the first generation), one per line.
pub type StartError = Errors;

/// Run the gateway in this process until a shutdown signal; returns only on a start-up failure
/// or after shutdown.
pub fn run(config: Config) -> Result<(), StartError> {
    check_bindable(&config)?;
    let source = config.source.clone();
    let conf_threads = config.server.threads;
    let work_stealing = config.server.work_stealing;
    let grace_s = config.server.shutdown_grace_s;
    let shutdown_timeout_s = config.server.shutdown_timeout_s;
    let listen = config.server.listen.clone();
    let certs = Arc::new(ListenerCerts::load(&config.server.tls_listeners)?);
    let admin_listen = config.server.admin_listen;
    let (generation, jobs) = Generation::build(config)?;
    crate::reload::catch_hangup_early();
    let current = Arc::new(arc_swap::ArcSwap::from_pointee(generation));

    let conf = ServerConf {
        threads: conf_threads,
        work_stealing,
        // The shutdown watcher exits the process as soon as in-flight requests are done, or at the
        // end of this grace; Pingora's own wait is the backstop.
        grace_period_seconds: Some(grace_s),
        graceful_shutdown_timeout_seconds: Some(shutdown_timeout_s),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let in_flight = InFlight::default();
    let draining = Draining::default();
    let grace = Duration::from_secs(grace_s);

    let mut proxy = http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(current.clone(), in_flight.clone(), draining.clone()),
        "edgewarden proxy",
    );
    for addr in &listen {
        match certs.resolver(*addr) {
            Some(resolver) => {
                // The certificate comes from the resolver (re-read at each reload), not from paths.
                let mut tls = TlsSettings::intermediate("", "")
                    .or_err_with(ErrorKind::Tls, || format!("TLS listener {addr}"))?;
                tls.set_cert_resolver(resolver);
                tls.enable_h2();
                proxy.add_tls_with_settings(&addr.to_string(), None, tls);
            }
            None => proxy.add_tcp(&addr.to_string()),
        }
    }
    proxy.set_connection_filter(Arc::new(ConnectionRate {
        current: current.clone(),
    }));
    server.add_service(proxy);

    let listening = Listening::default();
    if let Some(addr) = admin_listen {
        crate::admin::control::expose_refusals();
        let mut admin = ListeningService::new(
            "edgewarden admin".to_string(),
            Admin {
                current: current.clone(),
                draining,
                listening: listening.clone(),
            },
        );
        admin.add_tcp(&addr.to_string());
        admin.threads = Some(1);
        server.add_service(admin);
    }
    server.add_service(background_service(
        "edgewarden reload",
        Reloader {
            current: current.clone(),
            path: source,
            certs,
            initial_jobs: Mutex::new(Some(jobs)),
        },
    ));

    let announce = listen.clone();
    let serving = current.clone();
    std::thread::spawn(move || {
        let list: Vec<String> = announce.iter().map(ToString::to_string).collect();
        if !wait_until_listening(&announce, Duration::from_secs(30)) {
            tracing::error!(listen = %list.join(","), "proxy listeners do not accept connections after 30 s; /readyz stays 503");
            return;
        }
        listening.set();
        tracing::info!(listen = %list.join(","), admin = ?admin_listen, "edgewarden listening");
        // "ready" is said when /readyz says it: keys fetched, plugin instances warm.
        let mut told = false;
        loop {
            let missing = serving.load().not_ready();
            if missing.is_empty() {
                tracing::info!("edgewarden ready");
                return;
            }
            if !told {
                tracing::warn!(missing = ?missing, "edgewarden not ready yet; /readyz answers 503 until it is");
                told = true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let tracing_now = current.clone();
    let before_exit: crate::shutdown::BeforeExit = Arc::new(move |limit| {
        if let Some(tracer) = tracing_now.load().tracer.clone()
            && !tracer.flush(limit)
        {
            tracing::warn!("queued spans not sent before exit");
        }
    });
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            in_flight,
            grace,
            before_exit,
        }),
    });
    Ok(())
}

/// The shield's first stage on the proxy listeners: each accepted connection is held to its
/// address's rate of new connections before anything is read from it (the TLS handshake
/// included); one refused is dropped at once.
struct ConnectionRate {
    current: Arc<arc_swap::ArcSwap<Generation>>,
}

impl std::fmt::Debug for ConnectionRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionRate")
    }
}

#[async_trait::async_trait]
impl ConnectionFilter for ConnectionRate {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        addr.is_none_or(|addr| self.current.load().shield.accept_connection(addr.ip()))
    }
}

/// Fail with a clear message before Pingora tries (and aborts) when an address is taken.
fn check_bindable(config: &Config) -> Result<(), Error> {
    let mut addrs: Vec<SocketAddr> = config.server.listen.clone();
    addrs.extend(config.server.admin_listen);
    for addr in addrs {
        TcpListener::bind(addr)
            .or_err_with(ErrorKind::Listen, || format!("cannot listen on {addr}"))?;
    }
    Ok(())
}

/// Poll until every address accepts a TCP connection, or `timeout` passes.
pub fn wait_until_listening(addrs: &[SocketAddr], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    addrs.iter().all(|addr| {
        loop {
            // A connection to itself (the kernel picked the listener's own port as the source
            // port, possible while nothing listens) is not an accepting listener.
            if let Ok(stream) = TcpStream::connect_timeout(addr, Duration::from_millis(200))
                && stream.local_addr().ok() != stream.peer_addr().ok()
            {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}
