//! The admin listener's state-changing endpoints and their credential.
//!
//! * `POST /drain`: readiness fails at once and every answer closes its connection; the answer
//!   comes after `[server] drain_s` seconds of serving as usual (200), or as soon as the drain is
//!   cancelled meanwhile (409), so a Kubernetes `preStop` hook (`edgewarden drain`) holds SIGTERM
//!   back until load balancers have moved traffic away.
//! * `POST /drain/cancel`: readiness is back to normal and connections are kept alive again.
//!
//! A drain ends only when cancelled or when the process exits (a reload does not end it).
//!
//! Both need `Authorization: Bearer <token>`, the token of `[server] admin_token_file` (compared in
//! constant time). Being able to reach the admin port is not a credential: every container of a
//! pod shares its loopback. Refusals change nothing and are counted in
//! `edgewarden_admin_refusals_total`: another method (405, `Allow: POST`), no or a wrong
//! credential (401, `WWW-Authenticate: Bearer`), no `admin_token_file` configured (403).

use std::time::{Duration, Instant};

use http::Response;
use pingora::protocols::http::ServerSession;

use super::{json, json_with};
use crate::config::AdminToken;
use crate::shutdown::Draining;

/// A state-changing admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Drain,
    DrainCancel,
}

impl Endpoint {
    pub const ALL: [Endpoint; 2] = [Endpoint::Drain, Endpoint::DrainCancel];

    pub fn at(path: &str) -> Option<Endpoint> {
        match path {
            "/drain" => Some(Endpoint::Drain),
            "/drain/cancel" => Some(Endpoint::DrainCancel),
            _ => None,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Drain => "drain",
            Endpoint::DrainCancel => "drain_cancel",
        }
    }
}

/// Expose every endpoint and refusal of `edgewarden_admin_refusals_total` from zero, so a rate or
/// an alert on it has a series before the first refusal.
pub fn expose_refusals() {
    let refusals = &crate::metrics::get().admin_refusals;
    for endpoint in Endpoint::ALL {
        for refusal in Refusal::ALL {
            refusals.with_label_values(&[endpoint.label(), refusal.label()]);
        }
    }
}

/// Why a call to a state-changing endpoint was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MethodNotAllowed,
    Unauthorized,
    NotConfigured,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [
        Refusal::MethodNotAllowed,
        Refusal::Unauthorized,
        Refusal::NotConfigured,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::Unauthorized => "unauthorized",
            Refusal::NotConfigured => "not_configured",
        }
    }

    fn response(self) -> Response<Vec<u8>> {
        match self {
            Refusal::MethodNotAllowed => json_with(
                405,
                serde_json::json!({"error": "method_not_allowed"}),
                &[("allow", "POST")],
            ),
            Refusal::Unauthorized => json_with(
                401,
                serde_json::json!({"error": "unauthorized"}),
                &[("www-authenticate", "Bearer")],
            ),
            Refusal::NotConfigured => json(
                403,
                serde_json::json!({"error": "admin_token_file_not_configured"}),
            ),
        }
    }
}

/// Check the call, then act on it.
pub async fn answer(
    endpoint: Endpoint,
    session: &ServerSession,
    token: Option<&AdminToken>,
    draining: &Draining,
    drain_s: u64,
) -> Response<Vec<u8>> {
    if let Err(refusal) = check(session, token) {
        crate::metrics::get()
            .admin_refusals
            .with_label_values(&[endpoint.label(), refusal.label()])
            .inc();
        let client = session
            .client_addr()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::warn!(
            endpoint = endpoint.label(),
            reason = refusal.label(),
            %client,
            "admin call refused"
        );
        return refusal.response();
    }
    match endpoint {
        Endpoint::Drain => drain(draining, drain_s).await,
        Endpoint::DrainCancel => cancel(draining),
    }
}

fn check(session: &ServerSession, token: Option<&AdminToken>) -> Result<(), Refusal> {
    let req = session.req_header();
    if req.method != http::Method::POST {
        return Err(Refusal::MethodNotAllowed);
    }
    let token = token.ok_or(Refusal::NotConfigured)?;
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Refusal::Unauthorized);
    };
    match bearer(value.as_bytes()) {
        Some(presented) if token.matches(presented) => Ok(()),
        _ => Err(Refusal::Unauthorized),
    }
}

/// The credential of an `Authorization: Bearer <credential>` value (scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let credential = rest.trim_ascii();
    (!credential.is_empty()).then_some(credential)
}

async fn drain(draining: &Draining, drain_s: u64) -> Response<Vec<u8>> {
    // Registered before the drain starts, so a cancel from now on is seen.
    let cancelled = draining.cancelled();
    if !draining.is_on() {
        tracing::info!(
            drain_s,
            "draining: readiness fails, connections close after their answer"
        );
    }
    draining.start();
    let started = Instant::now();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(drain_s)) => json(
            200,
            serde_json::json!({"status": "draining", "waited_s": drain_s}),
        ),
        () = cancelled => json(
            409,
            serde_json::json!({
                "error": "drain_cancelled",
                "waited_s": started.elapsed().as_secs(),
            }),
        ),
    }
}

fn cancel(draining: &Draining) -> Response<Vec<u8>> {
    let was_draining = draining.cancel();
    if was_draining {
        tracing::info!("drain cancelled: ready again, connections kept alive");
    }
    json(
        200,
        serde_json::json!({"status": "serving", "was_draining": was_draining}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_are_taken_from_the_bearer_scheme_only() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b""), None);
    }
}
