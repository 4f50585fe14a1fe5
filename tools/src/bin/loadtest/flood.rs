//! The load generator for traffic from many client addresses (`loadtest flood-client`, run by the
//! shield scenarios as a child process pinned to the load CPU): each connection binds its own
//! loopback source address (127.0.0.x), which wrk and oha cannot do, and a forged stream sends a
//! new token on every request, as an attacker minting tokens would, so no cache can answer it.
//!
//! HTTP/1.1 keep-alive, one request in flight per connection; closed loop, or paced at a fixed
//! rate. Latency runs from the moment the request is written: tokio's timer wakes up to a
//! millisecond late, which measured from the scheduled time would be the generator's latency, not
//! the gateway's. A paced connection sends every `connections / rate` seconds (8 ms for the valid
//! users), far above the latencies measured, so an answer that came late delays its connection's
//! next request only when it took longer than that, and then shows as a rate below the one offered.
//! Prints per stream: requests, statuses, errors, p50/p99 latency and requests/s.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(clap::Args, Clone, Debug)]
pub struct ClientOptions {
    /// The gateway's address.
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long, default_value = "/api/item")]
    pub path: String,
    /// Client addresses 127.0.0.FIRST .. 127.0.0.(FIRST+SOURCES-1), connections spread evenly.
    #[arg(long, default_value_t = 1)]
    pub sources: u8,
    #[arg(long, default_value_t = 2)]
    pub first_source: u8,
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Offered requests/s over all connections; leave out for a closed loop.
    #[arg(long)]
    pub rate: Option<u32>,
    #[arg(long, default_value_t = 5000)]
    pub duration_ms: u64,
    /// Send this bearer token on every request.
    #[arg(long)]
    pub token: Option<String>,
    /// Or forge a new token on every request from this one: same header and signature, a fresh
    /// `jti` in the claims, so its signature never verifies and no two requests send the same one.
    #[arg(long, conflicts_with = "token")]
    pub forge_from: Option<String>,
    /// Beside the stream, valid users from 127.0.0.1 sending this token at --valid-rate.
    #[arg(long)]
    pub valid_token: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub valid_rate: u32,
    #[arg(long, default_value_t = 8)]
    pub valid_connections: usize,
    /// The valid users' path, when not --path.
    #[arg(long)]
    pub valid_path: Option<String>,
}

/// What one stream measured.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    pub requests: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Connections that failed or closed mid-request.
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rps: f64,
}

impl Counted {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    pub fn from_json(v: &Value) -> Counted {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        Counted {
            requests: v["requests"].as_u64().unwrap_or(0),
            statuses: v["statuses"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, n)| Some((k.parse().ok()?, n.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            errors: v["errors"].as_u64().unwrap_or(0),
            p50_ms: f("p50_ms"),
            p99_ms: f("p99_ms"),
            rps: f("rps"),
        }
    }
}

/// How a request's token is made.
#[derive(Clone)]
enum Tokens {
    None,
    Fixed(String),
    /// Header and signature of a real token, and its claims as a JSON object.
    Forged {
        header: String,
        claims: serde_json::Map<String, Value>,
        signature: String,
        /// This run's mark in every token's `jti`.
        run: u128,
    },
}

impl Tokens {
    fn from(options: &ClientOptions) -> Result<Tokens, String> {
        if let Some(token) = &options.token {
            return Ok(Tokens::Fixed(token.clone()));
        }
        let Some(token) = &options.forge_from else {
            return Ok(Tokens::None);
        };
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("--forge-from needs a JWS in compact form".into());
        };
        let claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|v| v.as_object().cloned())
            .ok_or("--forge-from: the claims are not a JSON object")?;
        // Tokens differ from one run to the next, so that a gateway serving several runs checks
        // each one's signature instead of finding it in its negative cache.
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Tokens::Forged {
            header: header.to_string(),
            claims,
            signature: signature.to_string(),
            run,
        })
    }

    /// The Authorization line for request `n` of connection `conn`.
    fn line(&self, conn: usize, n: u64) -> String {
        match self {
            Tokens::None => String::new(),
            Tokens::Fixed(token) => format!("Authorization: Bearer {token}\r\n"),
            Tokens::Forged {
                header,
                claims,
                signature,
                run,
            } => {
                let mut claims = claims.clone();
                let jti = format!("forged-{run}-{conn}-{n}");
                claims.insert("jti".into(), Value::from(jti));
                let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
                format!("Authorization: Bearer {header}.{payload}.{signature}\r\n")
            }
        }
    }
}

/// Per connection: statuses, latencies in microseconds, errors.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    latencies_us: Vec<u32>,
    errors: u64,
}

/// One stream of a `flood-client` run.
struct Spec {
    path: String,
    tokens: Tokens,
    first_source: u8,
    sources: u8,
    connections: usize,
    interval: Option<Duration>,
}

impl Spec {
    fn new(
        path: &str,
        tokens: Tokens,
        first: u8,
        sources: u8,
        connections: usize,
        rate: Option<u32>,
    ) -> Spec {
        let connections = connections.max(1);
        Spec {
            path: path.to_string(),
            tokens,
            first_source: first,
            sources: sources.max(1),
            connections,
            interval: rate
                .map(|rate| Duration::from_secs_f64(connections as f64 / f64::from(rate.max(1)))),
        }
    }
}

/// Run the stream (and the valid users' stream beside it, when asked for) and print what each
/// measured, as `{"streams": [...]}` (the `flood-client` subcommand). Both streams share one
/// thread: two generator processes on one CPU would take turns by the scheduler's time slices,
/// and each would see the other's slices as the gateway's latency.
pub fn client(options: &ClientOptions) -> Result<(), String> {
    let mut specs = vec![Spec::new(
        &options.path,
        Tokens::from(options)?,
        options.first_source,
        options.sources,
        options.connections,
        options.rate,
    )];
    if let Some(token) = &options.valid_token {
        specs.push(Spec::new(
            options.valid_path.as_deref().unwrap_or(&options.path),
            Tokens::Fixed(token.clone()),
            1,
            1,
            options.valid_connections,
            Some(options.valid_rate),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let duration = Duration::from_millis(options.duration_ms);
    let started = Instant::now();
    let tallies: Vec<Vec<Tally>> = runtime.block_on(async {
        let handles: Vec<Vec<_>> = specs
            .iter()
            .map(|spec| {
                (0..spec.connections)
                    .map(|conn| {
                        let offset = (conn % usize::from(spec.sources)) as u8;
                        let source =
                            Ipv4Addr::new(127, 0, 0, spec.first_source.saturating_add(offset));
                        // Spread the paced connections' first requests over one interval.
                        let start = spec
                            .interval
                            .map(|i| i.mul_f64(conn as f64 / spec.connections as f64));
                        tokio::spawn(connection(
                            options.addr,
                            source,
                            spec.path.clone(),
                            spec.tokens.clone(),
                            conn,
                            spec.interval,
                            start,
                            started,
                            duration,
                        ))
                    })
                    .collect()
            })
            .collect();
        let mut all = Vec::new();
        for stream in handles {
            let mut tallies = Vec::new();
            for handle in stream {
                tallies.push(handle.await.unwrap_or_default());
            }
            all.push(tallies);
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let streams: Vec<Value> = tallies.into_iter().map(|t| summary(t, elapsed)).collect();
    println!("{}", json!({ "streams": streams }));
    Ok(())
}

/// One stream's connections, summed.
fn summary(tallies: Vec<Tally>, elapsed: f64) -> Value {
    let mut total = Tally::default();
    for tally in tallies {
        for (status, n) in tally.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
        total.latencies_us.extend(tally.latencies_us);
        total.errors += tally.errors;
    }
    total.latencies_us.sort_unstable();
    let at = |q: f64| {
        let lat = &total.latencies_us;
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[i]) / 1000.0
    };
    let requests = total.latencies_us.len() as u64;
    let statuses: serde_json::Map<String, Value> = total
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), Value::from(*n)))
        .collect();
    json!({
        "requests": requests,
        "statuses": statuses,
        "errors": total.errors,
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "rps": requests as f64 / elapsed,
    })
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    addr: SocketAddr,
    source: Ipv4Addr,
    path: String,
    tokens: Tokens,
    conn: usize,
    interval: Option<Duration>,
    offset: Option<Duration>,
    started: Instant,
    duration: Duration,
) -> Tally {
    let mut tally = Tally::default();
    let deadline = started + duration;
    let mut next = started + offset.unwrap_or_default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        if let Some(interval) = interval {
            tokio::time::sleep_until(next.into()).await;
            next += interval;
        }
        if Instant::now() >= deadline {
            break;
        }
        if stream.is_none() {
            match connect(source, addr).await {
                Ok(s) => stream = Some(s),
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: loadtest\r\n{}\r\n",
            tokens.line(conn, n)
        );
        n += 1;
        let sent = Instant::now();
        match exchange(s, request.as_bytes(), &mut buf).await {
            Ok((status, keep)) => {
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                tally.latencies_us.push(us);
                *tally.statuses.entry(status).or_default() += 1;
                if !keep {
                    stream = None;
                }
            }
            Err(_) => {
                tally.errors += 1;
                stream = None;
            }
        }
    }
    tally
}

async fn connect(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Send one request and read its whole answer: the status, and whether the connection stays open.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut [u8],
) -> std::io::Result<(u16, bool)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    stream.write_all(request).await?;
    let mut filled = 0;
    let (head_end, status, length, keep) = loop {
        let read = stream.read(&mut buf[filled..]).await?;
        if read == 0 {
            return Err(bad("closed"));
        }
        filled += read;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head"))?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("status"))?;
            let mut length = 0usize;
            let mut keep = true;
            for line in head.split("\r\n").skip(1) {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().map_err(|_| bad("length"))?;
                } else if name.eq_ignore_ascii_case("connection")
                    && value.eq_ignore_ascii_case("close")
                {
                    keep = false;
                }
            }
            break (end + 4, status, length, keep);
        }
        if filled == buf.len() {
            return Err(bad("head too large"));
        }
    };
    let mut body = filled - head_end;
    while body < length {
        let read = stream.read(buf).await?;
        if read == 0 {
            return Err(bad("closed in the body"));
        }
        body += read;
    }
    Ok((status, keep))
}
