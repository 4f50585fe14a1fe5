//! What the gateway decided about one request and how long its parts took. While the response is
//! written this gives the decision trace header; when the request ends (Pingora's `logging`) it
//! becomes the request metrics and the access-log line (`access_log`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;

use super::access_log::{self, Line, Sampler};
use super::respond::UpstreamErrorKind;
use crate::generation::Generation;
use crate::geo::Country;
use crate::ids::{OriginId, RouteId};
use crate::metrics;
use crate::plugins::Failure;
use crate::shield::Stage;

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
    /// The shield refused (429): a `[[limits]]` entry or a stage, by name.
    Limited {
        limit: Arc<str>,
        stage: Stage,
    },
    PolicyFailed {
        policy: Arc<str>,
        why: Failure,
    },
    /// Sent to this origin, chosen by a policy or by the route.
    Forwarded {
        origin: OriginId,
        chosen_by: Option<Arc<str>>,
    },
    UpstreamFailed {
        origin: OriginId,
        kind: UpstreamErrorKind,
    },
}

/// Per-request facts, kept in the request context.
pub struct Record {
    pub started: Instant,
    pub route: Option<RouteId>,
    pub decided: Decided,
    /// Whether the response carries the trace header.
    pub trace: bool,
    /// Measured only while the access log is on.
    pub auth_time: Option<Duration>,
    pub plugins_time: Option<Duration>,
    pub upstream_started: Option<Instant>,
    pub client_ip: Option<IpAddr>,
    pub country: Option<Country>,
    /// The policy that decided applied a remembered decision (`[cache]`), not a call.
    pub policy_cached: bool,
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
            policy_cached: false,
        }
    }

    /// The request's outcome, given the status it was answered with.
    pub fn outcome(&self, status: Option<u16>) -> Outcome {
        match &self.decided {
            Decided::Forwarded { .. } => Outcome::Forwarded,
            Decided::PolicyResponded { .. } => Outcome::PluginResponded,
            Decided::Rejected { .. } | Decided::Limited { .. }
                if status.is_some_and(|s| s < 500) =>
            {
                Outcome::Rejected
            }
            _ => Outcome::Error,
        }
    }

    /// Why the gateway answered itself or the upstream failed, and the policy that answered,
    /// failed or chose the origin.
    fn reason_and_policy(&self) -> (Option<&'static str>, Option<&str>) {
        match &self.decided {
            Decided::Rejected { code, .. } => (Some(*code), None),
            Decided::Limited { .. } => (Some("rate_limited"), None),
            Decided::PolicyResponded { policy, .. } => (None, Some(&**policy)),
            Decided::PolicyFailed { policy, why } => (Some(why.label()), Some(&**policy)),
            Decided::Forwarded { chosen_by, .. } => (None, chosen_by.as_deref()),
            Decided::UpstreamFailed { kind, .. } => (Some(kind.label()), None),
            Decided::Pending => (None, None),
        }
    }

    /// The trace header's value: the step that decided, never claims, keys or request data.
    pub fn trace_value(&self, generation: &Generation) -> String {
        let origin = |id: &OriginId| generation.origin(*id).name.as_str();
        let cached = if self.policy_cached { ":cached" } else { "" };
        match &self.decided {
            Decided::Pending => "gateway:pending".to_string(),
            Decided::Rejected { code, auth: true } => format!("auth:{code}"),
            Decided::Rejected { code, auth: false } => format!("gateway:{code}"),
            Decided::Limited {
                limit,
                stage: Stage::Limit,
            } => format!("limit:{limit}"),
            Decided::Limited { stage, .. } => format!("shield:{}", stage.label()),
            Decided::PolicyResponded { policy, status } => {
                format!("policy:{policy}:respond:{status}{cached}")
            }
            Decided::PolicyFailed { policy, why } => {
                format!("policy:{policy}:error:{}", why.label())
            }
            Decided::Forwarded {
                origin: i,
                chosen_by: Some(policy),
            } => format!("policy:{policy}:forward:{}{cached}", origin(i)),
            Decided::Forwarded {
                origin: i,
                chosen_by: None,
            } => format!("forward:{}", origin(i)),
            Decided::UpstreamFailed { origin: i, kind } => {
                format!("upstream:{}:{}", origin(i), kind.label())
            }
        }
    }

    /// Count the request and write its access-log line (if `sampler` picks it).
    pub fn finish(
        &self,
        generation: &Generation,
        sampler: &Sampler,
        req: &RequestHeader,
        request_id: &str,
        status: Option<u16>,
        trace_id: Option<opentelemetry::trace::TraceId>,
    ) {
        let m = metrics::get();
        let route = self.route.map(|id| generation.route(id));
        let route_name = route.map_or(metrics::NO_ROUTE, |r| r.config.name.as_str());
        let outcome = self.outcome(status);
        match route {
            Some(route) => route
                .counters
                .request(status, outcome as usize, outcome.label()),
            None => m
                .requests
                .with_label_values(&[route_name, metrics::status_class(status), outcome.label()])
                .inc(),
        }
        match &self.decided {
            Decided::Rejected { code, auth: false } => {
                m.gateway_rejections.with_label_values(&[code]).inc();
            }
            Decided::Limited { .. } => {
                // Resolved once: a flood is refused here at full speed.
                static RATE_LIMITED: std::sync::LazyLock<prometheus::IntCounter> =
                    std::sync::LazyLock::new(|| {
                        metrics::get()
                            .gateway_rejections
                            .with_label_values(&["rate_limited"])
                    });
                RATE_LIMITED.inc();
            }
            _ => {}
        }
        let total = self.started.elapsed();
        match route {
            Some(route) => route.duration.observe(total.as_secs_f64()),
            None => m
                .request_duration
                .with_label_values(&[route_name])
                .observe(total.as_secs_f64()),
        }
        let upstream = self.upstream_started.map(|t| t.elapsed());
        if let (Some(took), Decided::Forwarded { origin, .. }) = (upstream, &self.decided) {
            generation
                .origin(*origin)
                .duration
                .observe(took.as_secs_f64());
        }
        let log = &generation.config.access_log;
        if log.enabled && sampler.sampled(log, outcome.failed()) {
            let (reason, policy) = self.reason_and_policy();
            let line = Line {
                request_id,
                trace_id,
                route: route_name,
                status,
                outcome: outcome.label(),
                reason,
                policy,
                limit: match &self.decided {
                    Decided::Limited { limit, .. } => Some(limit),
                    _ => None,
                },
                total,
                auth: self.auth_time,
                plugins: self.plugins_time,
                upstream,
                client_ip: self.client_ip,
                country: self.country,
                token_from: route.map_or(&[], |r| r.auth.token_from.as_slice()),
            };
            access_log::write(log, req, &line);
        }
    }
}

/// How a request ended, as the `outcome` label of `edgewarden_requests_total` and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forwarded,
    /// The gateway refused it (a 4xx it wrote).
    Rejected,
    PluginResponded,
    /// The gateway or the upstream failed (a 5xx, or no answer).
    Error,
}

// `Outcome as usize` picks a route's counter (`metrics::RouteCounters`).
const _: () = assert!(Outcome::Error as usize + 1 == metrics::OUTCOMES);

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::PluginResponded => "plugin_responded",
            Outcome::Error => "error",
        }
    }

    /// Rejected or failed: always logged with `errors_only`.
    pub fn failed(self) -> bool {
        matches!(self, Outcome::Rejected | Outcome::Error)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Whether the request carries the trace secret (compared in constant time).
pub fn has_trace_key(req: &RequestHeader, secret: Option<&str>) -> bool {
    let (Some(secret), Some(sent)) = (secret, req.headers.get(crate::owned::TRACE_KEY)) else {
        return false;
    };
    #[allow(deprecated)]
    ring::constant_time::verify_slices_are_equal(sent.as_bytes(), secret.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_deciding_step_and_status() {
        let mut record = Record::new();
        assert_eq!(record.outcome(None), Outcome::Error);
        record.decided = Decided::Rejected {
            code: "expired",
            auth: true,
        };
        assert_eq!(record.outcome(Some(401)), Outcome::Rejected);
        record.decided = Decided::Rejected {
            code: "no_healthy_upstream",
            auth: false,
        };
        assert_eq!(record.outcome(Some(503)), Outcome::Error);
        record.decided = Decided::PolicyResponded {
            policy: Arc::from("geo"),
            status: 451,
        };
        assert_eq!(record.outcome(Some(451)), Outcome::PluginResponded);
    }
}
