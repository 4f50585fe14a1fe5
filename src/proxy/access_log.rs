//! The access log: one JSON line per sampled request on the `edgewarden::access` target, with the
//! values of a route's token query parameters redacted. What goes in a line is decided by
//! `record`; this module samples, redacts and writes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pingora::http::RequestHeader;

use crate::auth::identity::query_name_is;
use crate::config::{AccessLogConfig, TokenSource};
use crate::geo::Country;

/// Requests seen by the access-log sampler, across the gateway's life.
#[derive(Default)]
pub struct Sampler(AtomicU64);

impl Sampler {
    /// Whether this request gets a line: with `errors_only`, every rejected or failed request
    /// (`failed`); otherwise one request in `sample_one_in`.
    pub fn sampled(&self, log: &AccessLogConfig, failed: bool) -> bool {
        if log.errors_only {
            return failed;
        }
        log.sample_one_in <= 1
            || self
                .0
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(log.sample_one_in)
    }
}

/// One access-log line.
pub struct Line<'a> {
    pub request_id: &'a str,
    /// The request's OpenTelemetry trace id (with `[tracing]`), never the same as the request id.
    pub trace_id: Option<opentelemetry::trace::TraceId>,
    pub route: &'a str,
    pub status: Option<u16>,
    pub outcome: &'static str,
    /// Why the gateway answered itself or the upstream failed.
    pub reason: Option<&'static str>,
    /// The policy that answered, failed or chose the origin.
    pub policy: Option<&'a str>,
    /// The limit (or shield stage) that refused the request.
    pub limit: Option<&'a str>,
    pub total: Duration,
    pub auth: Option<Duration>,
    pub plugins: Option<Duration>,
    pub upstream: Option<Duration>,
    pub client_ip: Option<IpAddr>,
    pub country: Option<Country>,
    /// The route's token sources: the values of its query parameters are redacted.
    pub token_from: &'a [TokenSource],
}

/// Write `line` for `req`.
pub fn write(log: &AccessLogConfig, req: &RequestHeader, line: &Line<'_>) {
    let query = match (log.query, req.uri.query()) {
        (true, Some(query)) => Some(redact_query(query, line.token_from)),
        _ => None,
    };
    let micros = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
    tracing::info!(
        target: crate::logging::ACCESS_LOG,
        request_id = line.request_id,
        trace_id = line.trace_id.map(|id| id.to_string()),
        route = line.route,
        method = req.method.as_str(),
        path = req.uri.path(),
        query,
        status = line.status,
        outcome = line.outcome,
        reason = line.reason,
        policy = line.policy,
        limit = line.limit,
        total_us = line.total.as_micros() as u64,
        auth_us = micros(line.auth),
        plugins_us = micros(line.plugins),
        upstream_us = micros(line.upstream),
        client_ip = line.client_ip.map(|ip| ip.to_string()),
        country = line.country.as_ref().map(Country::as_str),
    );
}

/// The query with the values of token parameters replaced.
fn redact_query(query: &str, sources: &[TokenSource]) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let secret = sources
                .iter()
                .any(|s| matches!(s, TokenSource::Query(q) if query_name_is(name, q)));
            if secret {
                format!("{name}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_query_parameters_are_redacted_and_others_kept() {
        let sources = [
            TokenSource::Header,
            TokenSource::Query("access_token".into()),
        ];
        assert_eq!(
            redact_query("a=1&access_token=eyJ.x.y&b", &sources),
            "a=1&access_token=REDACTED&b"
        );
        assert_eq!(
            redact_query("access%5Ftoken=eyJ.x.y&acc%65ss_token=e", &sources),
            "access%5Ftoken=REDACTED&acc%65ss_token=REDACTED",
            "names are compared as the origin decodes them"
        );
    }

    #[test]
    fn errors_only_logs_every_failure_and_nothing_else() {
        let sampler = Sampler::default();
        let log = AccessLogConfig {
            enabled: true,
            sample_one_in: 100,
            errors_only: true,
            query: false,
        };
        assert!((0..5).all(|_| sampler.sampled(&log, true)));
        assert!((0..5).all(|_| !sampler.sampled(&log, false)));
    }

    #[test]
    fn one_request_in_n_is_sampled() {
        let sampler = Sampler::default();
        let log = AccessLogConfig {
            enabled: true,
            sample_one_in: 4,
            errors_only: false,
            query: false,
        };
        let logged = (0..12).filter(|_| sampler.sampled(&log, false)).count();
        assert_eq!(logged, 3);
    }
}
