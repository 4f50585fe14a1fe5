//! `edgewarden-dev demo`: the shipped example configuration in front of built-in echo origins,
//! with tokens minted from the public demo key and ready-to-paste curl lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgewarden::config::{Config, DemoKey};
use edgewarden::error::{Error, ErrorKind, OrErr};
use edgewarden::server;

use crate::mint::{self, TokenSpec};

/// Load the example configuration at `path` (with its policies and plugin sources beside it),
/// start one echo origin on every upstream address, print curl lines, run the gateway.
pub fn run(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if !path.exists() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: not found; run the demo from the repository root (scripts/demo)",
                path.display()
            ),
        )
        .into());
    }
    let config_path = path.to_path_buf();
    let mut config = Config::load(&config_path)?;
    // The demo's issuer is the public demo key, by design.
    config.demo_key = DemoKey::Allow;
    // The decision trace names policies and origins: the demo shows it only to those who present
    // this run's secret, unless the file sets its own.
    let trace_secret = config
        .server
        .trace_secret
        .get_or_insert_with(|| uuid::Uuid::new_v4().simple().to_string())
        .clone();
    let tokens = demo_tokens(&config, &config_path);

    // One echo origin per address, named after the first origin that lists it.
    let mut upstreams: Vec<(std::net::SocketAddr, String)> = Vec::new();
    for origin in &config.origins {
        for (i, addr) in origin.addresses.iter().enumerate() {
            if !upstreams.iter().any(|(a, _)| a == addr) {
                upstreams.push((*addr, format!("{}-{}", origin.name, i + 1)));
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    for (addr, name) in &upstreams {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .or_err_with(ErrorKind::Listen, || {
                format!("demo origin cannot listen on {addr}")
            })?;
        let _guard = runtime.enter();
        crate::echo::spawn(listener, name)?;
    }
    // The runtime must outlive the gateway: keep it on its own thread.
    std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));

    let listen = config.server.listen.clone();
    let admin = config.server.admin_listen;
    std::thread::spawn(move || {
        // The first start builds the plugins before the gateway listens: that can take minutes.
        if server::wait_until_listening(&listen, Duration::from_secs(1800)) {
            print_curl_lines(listen[0], admin, tokens.as_ref(), &trace_secret);
        }
    });
    server::run(config)?;
    Ok(())
}

/// Tokens for the curl lines: good, expired, and without the `read` scope.
struct DemoTokens {
    good: String,
    expired: String,
    no_scope: String,
}

fn demo_tokens(config: &Config, config_path: &Path) -> Option<DemoTokens> {
    let issuer = config.issuers.first()?;
    let key_path: PathBuf = config_path.parent()?.join("demo/demo-signing-key.pem");
    let pem = std::fs::read_to_string(key_path).ok()?;
    let spec = |scope: Option<&str>, expires_in: i64| TokenSpec {
        alg: "RS256".into(),
        kid: Some("demo-2026".into()),
        claims: Some(r#"{"org": {"id": "acme"}, "email": "alice@example.com"}"#.into()),
        sub: Some("alice".into()),
        iss: Some(issuer.issuer.clone()),
        aud: issuer.audiences.first().cloned().into_iter().collect(),
        scope: scope.map(str::to_string),
        expires_in,
    };
    Some(DemoTokens {
        good: mint::token(&pem, &spec(Some("read"), 86_400)).ok()?,
        expired: mint::token(&pem, &spec(Some("read"), -3600)).ok()?,
        no_scope: mint::token(&pem, &spec(None, 86_400)).ok()?,
    })
}

fn print_curl_lines(
    gateway: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
    tokens: Option<&DemoTokens>,
    trace_secret: &str,
) {
    let g = format!("http://{gateway}");
    println!();
    println!("edgewarden demo is running. Try:");
    println!();
    if let Some(t) = tokens {
        println!("  # no token: 401 with WWW-Authenticate: Bearer realm=\"edgewarden\"");
        println!("  curl -i {g}/api/hello");
        println!("  # expired token: 401 error=\"invalid_token\"");
        println!(
            "  curl -i -H 'Authorization: Bearer {}' {g}/api/hello",
            t.expired
        );
        println!(
            "  # valid token without the route's \"read\" scope: 403 error=\"insufficient_scope\""
        );
        println!(
            "  curl -i -H 'Authorization: Bearer {}' {g}/api/hello",
            t.no_scope
        );
        println!(
            "  # good token: 200; the echo origin shows x-internal-user-id: alice and x-org-id: acme,"
        );
        println!("  # and no Authorization header");
        println!(
            "  curl -s -H 'Authorization: Bearer {}' {g}/api/hello",
            t.good
        );
        println!(
            "  # the identity policy (Python, python-plugins/identity_headers) passes sub and email on:"
        );
        println!(
            "  # the origin shows x-internal-user-id: alice and x-internal-email: alice@example.com"
        );
        println!("  curl -s -H 'Authorization: Bearer {}' {g}/me", t.good);
        println!("  # spoofed identity headers are removed even on routes without auth");
        println!("  curl -s -H 'X-Internal-User-Id: admin' {g}/public/hello");
    }
    println!(
        "  # geo routing (Python, python-plugins/geo_router): the gateway decides the country and the"
    );
    println!(
        "  # policy picks the portal (the answer's \"origin\": uk-1, fr-1, global-N). The demo database"
    );
    println!("  # places 127.0.0.2 in GB, 127.0.0.3 in FR, 127.0.0.4 in US:");
    println!("  curl -s --interface 127.0.0.2 {g}/shop/   # GB -> uk-1, x-user-location: GB");
    println!("  curl -s --interface 127.0.0.3 {g}/shop/   # FR -> fr-1");
    println!("  curl -s --interface 127.0.0.4 {g}/shop/   # US -> global-N");
    println!(
        "  # 127.0.0.1 is a trusted proxy in the demo config, so it may state the country like a CDN:"
    );
    println!("  curl -s -H 'cf-ipcountry: FR' {g}/shop/");
    println!("  # a client cannot: from an untrusted address the header is ignored (US wins)");
    println!("  curl -s --interface 127.0.0.4 -H 'x-user-location: GB' {g}/shop/");
    println!("  # no route for this path: 404 with a JSON body");
    println!("  curl -i {g}/nowhere");
    println!(
        "  # a page on http://localhost:3000 may call /api from a browser: its CORS preflight is answered here"
    );
    println!(
        "  curl -i -X OPTIONS -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Method: GET' -H 'Access-Control-Request-Headers: authorization' {g}/api/hello"
    );
    println!("  # the /api route only takes GET and POST: 405 with Allow");
    println!("  curl -i -X DELETE {g}/api/hello");
    println!("  # the origin answers after 3 s but the route's origin allows 1 s: 504");
    println!("  curl -i -H 'x-echo-delay-ms: 3000' {g}/slow");
    println!(
        "  # the decision trace names the step that decided, for those who present the trace secret"
    );
    println!("  # (this run's; a reload takes the file's [server] trace_secret instead):");
    println!(
        "  curl -si --interface 127.0.0.3 -H 'x-edgewarden-trace-key: {trace_secret}' {g}/shop/ | grep -i x-edgewarden-trace   # policy:geo:forward:fr"
    );
    if let Some(admin) = admin {
        println!("  # liveness, readiness, Prometheus metrics");
        println!("  curl -s http://{admin}/healthz; curl -s http://{admin}/readyz");
        println!("  curl -s http://{admin}/metrics | grep ^edgewarden_requests_total");
    }
    println!();
    println!(
        "Edit the config or a policy, then reload without dropping a request: kill -HUP {}",
        std::process::id()
    );
    println!("The access log (one JSON line per request) follows below.");
    println!();
    println!(
        "Sign your own: edgewarden-dev token --key config/demo/demo-signing-key.pem --kid demo-2026 \\"
    );
    println!("  --iss https://id.demo.edgewarden --aud api --sub bob --scope read");
    println!();
    println!("Press Ctrl-C to stop.");
}
