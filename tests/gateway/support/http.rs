//! HTTP on the wire. [`req`] builds one HTTP/1.1 request whose bytes are exactly what the test
//! says (nothing is added or normalised), sends it on a fresh or a kept-alive [`Conn`] and parses
//! the answer; [`https_client`] is reqwest, for HTTPS and HTTP/2.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request: `METHOD target HTTP/1.1`, then `Host` (the address it is sent to unless
/// [`Req::host`] says otherwise), then the headers in the order given, then the body.
pub fn req(method: &str, target: &str) -> Req {
    Req {
        method: method.to_string(),
        target: target.to_string(),
        host: None,
        headers: Vec::new(),
        body: None,
        source: None,
    }
}

/// The status of `GET /x` with `token` as its bearer token, 0 when there is no answer.
pub async fn bearer_status(addr: SocketAddr, token: &str) -> u16 {
    req("GET", "/x")
        .bearer(token)
        .try_send(addr)
        .await
        .map_or(0, |r| r.status)
}

/// `GET path` on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    req("GET", path).send(addr).await
}

#[derive(Clone, Debug)]
pub struct Req {
    method: String,
    target: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    source: Option<Ipv4Addr>,
}

impl Req {
    /// The `Host` field's value.
    pub fn host(mut self, host: &str) -> Req {
        self.host = Some(host.to_string());
        self
    }

    /// One more header field, after those already given (a second `Host` is a second field).
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn headers(self, headers: &[(&str, &str)]) -> Req {
        headers
            .iter()
            .fold(self, |req, (name, value)| req.header(name, value))
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Req {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// A body with its `Content-Length` (an empty one for a POST without a body).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }

    /// Connect from this loopback address (the client IP the gateway sees).
    pub fn from(mut self, source: Ipv4Addr) -> Req {
        self.source = Some(source);
        self
    }

    /// The request's bytes, with `default_host` in `Host` unless [`Req::host`] was given.
    pub fn bytes(&self, default_host: &str) -> Vec<u8> {
        let host = self.host.as_deref().unwrap_or(default_host);
        let mut raw = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        );
        for (name, value) in &self.headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &self.body {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(self.body.as_deref().unwrap_or_default());
        raw
    }

    /// Send on a fresh connection to `addr` and read the answer; panics if there is none.
    pub async fn send(self, addr: SocketAddr) -> Response {
        let what = format!("{} {}", self.method, self.target);
        self.try_send(addr)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// As [`Req::send`]; `Err` when the connection fails or closes before a whole answer.
    pub async fn try_send(self, addr: SocketAddr) -> Result<Response, String> {
        let mut conn = match self.source {
            Some(source) => Conn::try_open_from(source, addr).await?,
            None => Conn::try_open(addr).await?,
        };
        conn.request(&self).await
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-case names; repeated fields keep every value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// For echo-origin answers: the request headers the origin received, name → values.
    pub fn origin_saw(&self) -> HashMap<String, Vec<String>> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let json = self.json();
        let headers = json["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("not an echo answer: {json}"));
        for pair in headers {
            let k = pair[0].as_str().expect("name").to_string();
            let v = pair[1].as_str().expect("value").to_string();
            map.entry(k).or_default().push(v);
        }
        map
    }
}

/// A client connection that sends requests (or raw bytes) and reads whole responses.
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).await.expect("connect")
    }

    pub async fn try_open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Ok(Conn::over(stream, addr))
    }

    /// Connect from a chosen loopback source address (the client IP the gateway sees).
    pub async fn try_open_from(source: Ipv4Addr, addr: SocketAddr) -> Result<Conn, String> {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        socket
            .bind((source, 0).into())
            .map_err(|e| format!("bind {source}: {e}"))?;
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Ok(Conn::over(stream, addr))
    }

    fn over(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            stream,
            peer,
            buf: Vec::new(),
        }
    }

    /// Send `req` (its `Host` is the address connected to unless it names one) and read the
    /// answer.
    pub async fn request(&mut self, req: &Req) -> Result<Response, String> {
        self.send(&req.bytes(&self.peer.to_string())).await;
        self.read_response(req.method == "HEAD").await
    }

    /// Send bytes as they are.
    pub async fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.expect("write request");
    }

    /// As [`Conn::send`]; `false` when the gateway has closed the connection (after answering
    /// early, for instance).
    pub async fn try_send(&mut self, raw: &[u8]) -> bool {
        self.stream.write_all(raw).await.is_ok()
    }

    /// Read one response; `Err` when the connection closed before a full response.
    pub async fn read_response(&mut self, head_request: bool) -> Result<Response, String> {
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        self.buf.drain(..head_end);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let body = if head_request || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(len) = find("content-length") {
            let len: usize = len.parse().map_err(|_| "bad content-length".to_string())?;
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            self.read_chunked().await?
        } else {
            // Close-delimited.
            while self.fill().await.is_ok() {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break pos;
                }
                self.fill().await?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
            .await
            .map_err(|_| "timed out reading".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// True when the peer closed the connection (read returns 0 or reset) within `wait`.
    pub async fn is_closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 1];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }
}

/// An HTTPS client that trusts only `ca_pem` and reaches `name` at `addr`; HTTP/1.1 only, or
/// HTTP/2 when the server offers it by ALPN.
pub fn https_client(
    ca_pem: &str,
    name: &str,
    addr: SocketAddr,
    http1_only: bool,
) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve(name, addr);
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().expect("client")
}
