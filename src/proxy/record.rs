//! What the gateway decided about one request and how long its parts took. While the response is
//! written this gives the decision trace header; when the request ends (Pingora's `logging`) it
//! becomes the request metrics and the access-log line.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;

use crate::auth::identity::query_name_is;
use crate::config::TokenSource;
use crate::generation::Generation;
use crate::geo::Country;
use crate::metrics;

/// The request header that asks for the decision trace, carrying `[server] trace_secret`.
pub const TRACE_KEY: &str = "x-edgewarden-trace-key";
/// The response header that names the deciding step.
pub const TRACE: &str = "x-edgewarden-trace";

/// The step that decided a request's answer.
#[derive(Debug, Clone, Default)]
pub enum Decided {
    /// Nothing yet: the client left first, or the request failed before routing.
    #[default]
    Pending,
    /// The gateway answered itself (`code` is the JSON `error` and metric label).
    Rejected {
        code: &'static str,
        auth: bool,
    },
    PolicyResponded {
        policy: Arc<str>,
        status: u16,
    },
    PolicyFailed {
        policy: Arc<str>,
        why: &'static str,
    },
    /// Sent to the origin at this index, chosen by a policy or by the route.
    Forwarded {
        origin: usize,
        chosen_by: Option<Arc<str>>,
    },
    UpstreamFailed {
        origin: usize,
        kind: &'static str,
    },
}

/// Per-request facts, kept in the request context.
pub struct Record {
    pub started: Instant,
    pub route: Option<usize>,
    pub decided: Decided,
    /// Whether the response carries the trace header.
    pub trace: bool,
    /// Measured only while the access log is on.
    pub auth_time: Option<Duration>,
    pub plugins_time: Option<Duration>,
    pub upstream_started: Option<Instant>,
    pub client_ip: Option<IpAddr>,
    pub country: Option<Country>,
}

impl Default for Record {
    fn default() -> Self {
        Record::new()
    }
}

impl Record {
    pub fn new() -> Record {
        Record {
            started: Instant::now(),
            route: None,
            decided: Decided::Pending,
            trace: false,
            auth_time: None,
            plugins_time: None,
            upstream_started: None,
            client_ip: None,
            country: None,
        }
    }

    /// `forwarded`, `rejected`, `plugin_responded` or `error`.
    pub fn outcome(&self, status: Option<u16>) -> &'static str {
        match &self.decided {
            Decided::Forwarded { .. } => "forwarded",
            Decided::PolicyResponded { .. } => "plugin_responded",
            Decided::Rejected { .. } if status.is_some_and(|s| s < 500) => "rejected",
            _ => "error",
        }
    }

    /// The trace header's value: the step that decided, never claims, keys or request data.
    pub fn trace_value(&self, generation: &Generation) -> String {
        let origin = |i: &usize| generation.origins.get(*i).map_or("", |o| o.name.as_str());
        match &self.decided {
            Decided::Pending => "gateway:pending".to_string(),
            Decided::Rejected { code, auth: true } => format!("auth:{code}"),
            Decided::Rejected { code, auth: false } => format!("gateway:{code}"),
            Decided::PolicyResponded { policy, status } => {
                format!("policy:{policy}:respond:{status}")
            }
            Decided::PolicyFailed { policy, why } => format!("policy:{policy}:error:{why}"),
            Decided::Forwarded {
                origin: i,
                chosen_by: Some(policy),
            } => format!("policy:{policy}:forward:{}", origin(i)),
            Decided::Forwarded {
                origin: i,
                chosen_by: None,
            } => format!("forward:{}", origin(i)),
            Decided::UpstreamFailed { origin: i, kind } => {
                format!("upstream:{}:{kind}", origin(i))
            }
        }
    }

    /// Count the request and write its access-log line.
    pub fn finish(
        &self,
        generation: &Generation,
        req: &RequestHeader,
        request_id: &str,
        status: Option<u16>,
    ) {
        let m = metrics::get();
        let route = self
            .route
            .and_then(|r| generation.config.routes.get(r))
            .map_or(metrics::NO_ROUTE, |r| r.name.as_str());
        let outcome = self.outcome(status);
        m.requests
            .with_label_values(&[route, metrics::status_class(status), outcome])
            .inc();
        if let Decided::Rejected { code, auth: false } = self.decided {
            m.gateway_rejections.with_label_values(&[code]).inc();
        }
        let total = self.started.elapsed();
        match self.route.and_then(|r| generation.route_duration.get(r)) {
            Some(histogram) => histogram.observe(total.as_secs_f64()),
            None => m
                .request_duration
                .with_label_values(&[route])
                .observe(total.as_secs_f64()),
        }
        let upstream = self.upstream_started.map(|t| t.elapsed());
        if let (Some(took), Decided::Forwarded { origin, .. }) = (upstream, &self.decided)
            && let Some(histogram) = generation.upstream_duration.get(*origin)
        {
            histogram.observe(took.as_secs_f64());
        }
        let log = &generation.config.access_log;
        if log.enabled && generation.access_log_sampled(outcome) {
            let line = Line {
                request_id,
                route,
                status,
                outcome,
                total,
                upstream,
            };
            self.write_access_log(generation, req, &line);
        }
    }

    fn write_access_log(&self, generation: &Generation, req: &RequestHeader, line: &Line<'_>) {
        let (reason, policy) = match &self.decided {
            Decided::Rejected { code, .. } => (Some(*code), None),
            Decided::PolicyResponded { policy, .. } => (None, Some(&**policy)),
            Decided::PolicyFailed { policy, why } => (Some(*why), Some(&**policy)),
            Decided::Forwarded { chosen_by, .. } => (None, chosen_by.as_deref()),
            Decided::UpstreamFailed { kind, .. } => (Some(*kind), None),
            Decided::Pending => (None, None),
        };
        let query = match (generation.config.access_log.query, req.uri.query()) {
            (true, Some(query)) => {
                let secret_params = self
                    .route
                    .and_then(|r| generation.auth.routes.get(r))
                    .map(|r| r.token_from.as_slice())
                    .unwrap_or_default();
                Some(redact_query(query, secret_params))
            }
            _ => None,
        };
        let micros = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
        tracing::info!(
            target: "edgewarden::access",
            request_id = line.request_id,
            route = line.route,
            method = req.method.as_str(),
            path = req.uri.path(),
            query,
            status = line.status,
            outcome = line.outcome,
            reason,
            policy,
            total_us = line.total.as_micros() as u64,
            auth_us = micros(self.auth_time),
            plugins_us = micros(self.plugins_time),
            upstream_us = micros(line.upstream),
            client_ip = self.client_ip.map(|ip| ip.to_string()),
            country = self.country.as_ref().map(Country::as_str),
        );
    }
}

/// The request-level facts of one access-log line.
struct Line<'a> {
    request_id: &'a str,
    route: &'a str,
    status: Option<u16>,
    outcome: &'static str,
    total: Duration,
    upstream: Option<Duration>,
}

/// Requests seen by the access-log sampler, across the generation.
#[derive(Default)]
pub struct Sampler(AtomicU64);

impl Generation {
    /// Whether this request gets an access-log line: with `errors_only`, every rejected or
    /// failed request; otherwise one request in `sample_one_in`.
    fn access_log_sampled(&self, outcome: &str) -> bool {
        let log = &self.config.access_log;
        let failed = outcome == "rejected" || outcome == "error";
        if log.errors_only {
            return failed;
        }
        log.sample_one_in <= 1
            || self
                .sampler
                .0
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(log.sample_one_in)
    }
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

/// Whether the request carries the trace secret (compared in constant time).
pub fn has_trace_key(req: &RequestHeader, secret: Option<&str>) -> bool {
    let (Some(secret), Some(sent)) = (secret, req.headers.get(TRACE_KEY)) else {
        return false;
    };
    #[allow(deprecated)]
    ring::constant_time::verify_slices_are_equal(sent.as_bytes(), secret.as_bytes()).is_ok()
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
    fn outcomes_follow_the_deciding_step_and_status() {
        let mut record = Record::new();
        assert_eq!(record.outcome(None), "error");
        record.decided = Decided::Rejected {
            code: "expired",
            auth: true,
        };
        assert_eq!(record.outcome(Some(401)), "rejected");
        record.decided = Decided::Rejected {
            code: "no_healthy_upstream",
            auth: false,
        };
        assert_eq!(record.outcome(Some(503)), "error");
        record.decided = Decided::PolicyResponded {
            policy: Arc::from("geo"),
            status: 451,
        };
        assert_eq!(record.outcome(Some(451)), "plugin_responded");
    }
}
