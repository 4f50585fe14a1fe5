//! `edgewarden drain`: a client of the admin listener's drain endpoints. It reads `admin_listen`
//! and `admin_token_file` from the gateway's configuration file, sends `POST /drain` (or
//! `POST /drain/cancel`) with the token, and waits for the answer: the drain answers after
//! `drain_s`, so a Kubernetes `preStop` exec hook running it holds SIGTERM back until then.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{AdminAccess, ConfigError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than the largest `drain_s` (600).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(660);

/// What to ask the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /drain`, answered after `drain_s`.
    Drain,
    /// `POST /drain/cancel`.
    Cancel,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Drain => "/drain",
            Action::Cancel => "/drain/cancel",
        }
    }
}

/// Why the gateway was not drained (or the drain not cancelled).
#[derive(Debug)]
pub enum DrainError {
    Config(ConfigError),
    NoAdminListener(PathBuf),
    NoToken(PathBuf),
    /// No answer: the gateway is not running there, or did not answer in time.
    Unreachable {
        url: String,
        error: String,
    },
    /// An answer other than 200.
    Refused {
        url: String,
        status: u16,
        body: String,
        why: &'static str,
    },
}

impl std::fmt::Display for DrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainError::Config(e) => write!(f, "{e}"),
            DrainError::NoAdminListener(file) => write!(
                f,
                "{}: server.admin_listen is not set: the gateway has no admin listener to ask",
                file.display()
            ),
            DrainError::NoToken(file) => write!(
                f,
                "{}: server.admin_token_file is not set: the gateway refuses to drain without \
                 its admin token",
                file.display()
            ),
            DrainError::Unreachable { url, error } => write!(f, "POST {url}: {error}"),
            DrainError::Refused {
                url,
                status,
                body,
                why,
            } => write!(f, "POST {url}: answered {status} {body}: {why}"),
        }
    }
}

impl std::error::Error for DrainError {}

/// Ask the gateway configured by `config` to drain (or stop draining); returns what to print.
pub fn run(config: &Path, action: Action) -> Result<String, DrainError> {
    let access = AdminAccess::load(config).map_err(DrainError::Config)?;
    let addr = access
        .admin_listen
        .ok_or_else(|| DrainError::NoAdminListener(config.to_path_buf()))?;
    let token = access
        .admin_token
        .ok_or_else(|| DrainError::NoToken(config.to_path_buf()))?;
    let url = format!("http://{}{}", reachable(addr), action.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DrainError::Unreachable {
            url: url.clone(),
            error: format!("no runtime: {e}"),
        })?;
    let (status, body) = runtime.block_on(post(&url, token.expose()))?;
    if status == 200 {
        return Ok(match action {
            Action::Drain => format!(
                "{url}: drained; readiness fails and connections close until the process exits \
                 or `edgewarden drain --cancel`"
            ),
            Action::Cancel => format!("{url}: not draining; ready again ({body})"),
        });
    }
    let why = match status {
        401 => {
            "the gateway does not accept the token in this configuration's admin_token_file \
                (another token, or the gateway has not reloaded since it changed)"
        }
        403 => "the gateway runs without admin_token_file: set it and reload",
        405 => "the gateway does not take this method here (an older version?)",
        409 => "the drain was cancelled (POST /drain/cancel) before drain_s passed",
        404 => "the gateway has no such endpoint (an older version?)",
        _ => "unexpected answer",
    };
    Err(DrainError::Refused {
        url,
        status,
        body,
        why,
    })
}

async fn post(url: &str, token: &str) -> Result<(u16, String), DrainError> {
    let unreachable = |error: String| DrainError::Unreachable {
        url: url.to_string(),
        error,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(ANSWER_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unreachable(format!("HTTP client: {e}")))?;
    let response = client
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_LENGTH, "0")
        .send()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    Ok((status, body.trim().to_string()))
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Where to reach a listener: an unspecified address (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9901".parse().expect("addr");
        assert_eq!(reachable(any).to_string(), "127.0.0.1:9901");
        let any6: SocketAddr = "[::]:9901".parse().expect("addr");
        assert_eq!(reachable(any6).to_string(), "[::1]:9901");
        let one: SocketAddr = "127.0.0.7:1".parse().expect("addr");
        assert_eq!(reachable(one), one);
    }
}
