//! Prometheus metrics: the process's one registry, every metric the gateway exports, and their
//! text exposition for the admin listener.
//!
//! Labels carry only names from the configuration (route, policy, origin, issuer) and closed sets
//! (status class, outcome, reason, kind, result); never a path, a subject, a kid or a token.
//! Counters are per process: they keep counting across configuration reloads.

use std::sync::{LazyLock, OnceLock};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Route label of a request that matched no route.
pub const NO_ROUTE: &str = "(none)";

/// Request-level latencies: from a cached-token rejection (tens of µs) to a slow origin (seconds).
const REQUEST_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// A signature check (RS256 ~30–60 µs) or a warm plugin call (~20 µs) up to a fresh instance.
const FAST_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1,
];

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub auth_rejections: IntCounterVec,
    /// Answers the gateway wrote itself for other reasons than authentication, by code.
    pub gateway_rejections: IntCounterVec,
    pub jwt_verify_duration: Histogram,
    pub token_cache_hits: IntCounter,
    pub token_cache_misses: IntCounter,
    /// Signature checks actually run (after the caches and the shield).
    pub signature_checks: IntCounter,
    /// Of `signature_checks`, those made for tokens without `kid` (one per key tried).
    pub signature_checks_without_kid: IntCounter,
    /// Of `signature_checks`, those handed to the signature lane.
    pub signature_lane_checks: IntCounter,
    /// `[[limits]]` decisions by limit and outcome (allowed, refused, shadow_refused).
    pub limit_decisions: IntCounterVec,
    /// Requests the shield refused before or instead of verifying, by stage.
    pub shield_refusals: IntCounterVec,
    /// Client addresses put in the penalty box.
    pub penalty_boxed: IntCounter,
    /// Redis store calls, answered or not.
    pub redis_duration: Histogram,
    /// Redis store calls that did not decide, by reason (timeout, error, breaker_open).
    pub redis_errors: IntCounterVec,
    /// 1 while the Redis store's circuit breaker is open.
    pub redis_breaker_open: IntGauge,
    pub jwks_refresh: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub jwks_age: GaugeVec,
    pub plugin_duration: HistogramVec,
    pub plugin_outcomes: IntCounterVec,
    /// Requests' traces by the sampler's decision (sampled, failed, slow, not_sampled, capped).
    pub traces: IntCounterVec,
    /// Spans by what became of them (exported, queue_full, export_failed).
    pub trace_spans: IntCounterVec,
    pub plugin_instances: IntGaugeVec,
    pub plugin_shadow_decisions: IntCounterVec,
    /// Cached policies' lookups by result (hit, miss).
    pub plugin_cache: IntCounterVec,
    pub plugin_cache_evictions: IntCounterVec,
    /// Plugin calls that ran long enough to move to the plugin lane.
    pub plugin_slow_calls: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub upstream_ejections: IntCounterVec,
    pub upstream_truncated: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Unix time of the first reload refused since the configuration last loaded; 0 when the
    /// serving configuration is the file's.
    pub config_reload_refused_since: IntGauge,
    pub admin_refusals: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub tls_certificate_expiry: IntGaugeVec,
}

/// The gateway's metrics. Registration cannot fail for these fixed, distinct names; if it did,
/// the metric would still count but not be exported.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    registered(registry, HistogramVec::new(opts, labels))
}

/// A metric from the fixed definitions here (building one cannot fail for them), registered.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    built: prometheus::Result<M>,
) -> M {
    let metric = built.unwrap_or_else(|e| unreachable!("metric definition: {e}"));
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    metric
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let jwt_verify_duration = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "edgewarden_jwt_verify_duration_seconds",
                    "Time to check a token not found in the verified-token cache (parse, claims, signature)",
                )
                .buckets(FAST_BUCKETS.to_vec()),
            ),
        );
        let token_cache_hits = registered(
            &r,
            IntCounter::new(
                "edgewarden_token_cache_hits_total",
                "Tokens found in the verified-token cache",
            ),
        );
        let token_cache_misses = registered(
            &r,
            IntCounter::new(
                "edgewarden_token_cache_misses_total",
                "Tokens not in the verified-token cache (checked in full)",
            ),
        );
        let signature_checks = registered(
            &r,
            IntCounter::new(
                "edgewarden_signature_checks_total",
                "Token signatures checked (not answered by a cache or refused by the shield first)",
            ),
        );
        let signature_checks_without_kid = registered(
            &r,
            IntCounter::new(
                "edgewarden_signature_checks_without_kid_total",
                "Signature checks for tokens without kid, one per key tried (at most max_keys_without_kid per token)",
            ),
        );
        let signature_lane_checks = registered(
            &r,
            IntCounter::new(
                "edgewarden_signature_lane_checks_total",
                "Signature checks handed to the signature lane (past a worker thread's own allowance)",
            ),
        );
        let penalty_boxed = registered(
            &r,
            IntCounter::new(
                "edgewarden_shield_penalty_boxed_total",
                "Client addresses put in the penalty box for repeated failed authentications",
            ),
        );
        let redis_duration = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "edgewarden_redis_duration_seconds",
                    "Time of a Redis store call, up to its deadline",
                )
                .buckets(FAST_BUCKETS.to_vec()),
            ),
        );
        let config_reload_refused_since = registered(
            &r,
            IntGauge::new(
                "edgewarden_config_reload_refused_since_seconds",
                "Unix time of the first reload refused since the configuration last loaded (0: the serving configuration is the file's)",
            ),
        );
        let redis_breaker_open = registered(
            &r,
            IntGauge::new(
                "edgewarden_redis_breaker_open",
                "1 while the Redis store's circuit breaker is open (calls skip Redis)",
            ),
        );
        let jwks_age = registered(
            &r,
            GaugeVec::new(
                Opts::new(
                    "edgewarden_jwks_age_seconds",
                    "Seconds since the issuer's current keys were loaded",
                ),
                &["issuer"],
            ),
        );

        let metrics = Metrics {
            requests: counter(
                &r,
                "edgewarden_requests_total",
                "Requests by route, status class and outcome (forwarded, rejected, plugin_responded, error)",
                &["route", "status_class", "outcome"],
            ),
            request_duration: histogram(
                &r,
                "edgewarden_request_duration_seconds",
                "Time from the request's arrival to the end of its response",
                &["route"],
                REQUEST_BUCKETS,
            ),
            auth_rejections: counter(
                &r,
                "edgewarden_auth_rejections_total",
                "Requests refused by authentication, by reason",
                &["route", "reason"],
            ),
            gateway_rejections: counter(
                &r,
                "edgewarden_gateway_rejections_total",
                "Requests the gateway answered itself for another reason than authentication \
                 (invalid_target, ambiguous_path, no_route, ...), by reason",
                &["reason"],
            ),
            jwt_verify_duration,
            token_cache_hits,
            token_cache_misses,
            signature_checks,
            signature_checks_without_kid,
            signature_lane_checks,
            limit_decisions: counter(
                &r,
                "edgewarden_limit_decisions_total",
                "Rate-limit decisions by limit and outcome (allowed, refused, shadow_refused)",
                &["limit", "outcome"],
            ),
            shield_refusals: counter(
                &r,
                "edgewarden_shield_refusals_total",
                "Requests the shield refused before verifying a token, by stage \
                 (penalty_box, verify_budget, negative_cache)",
                &["stage"],
            ),
            penalty_boxed,
            redis_duration,
            redis_errors: counter(
                &r,
                "edgewarden_redis_errors_total",
                "Redis store calls that did not decide (on_store_error did), by reason \
                 (timeout, error, breaker_open)",
                &["reason"],
            ),
            redis_breaker_open,
            jwks_refresh: counter(
                &r,
                "edgewarden_jwks_refresh_total",
                "JWKS fetches (scheduled and for unknown kids), by result",
                &["issuer", "result"],
            ),
            jwks_keys: gauge(
                &r,
                "edgewarden_jwks_keys",
                "Usable keys of each issuer",
                &["issuer"],
            ),
            jwks_age,
            plugin_duration: histogram(
                &r,
                "edgewarden_plugin_duration_seconds",
                "Time a policy plugin took to decide, waiting for an instance included",
                &["policy"],
                FAST_BUCKETS,
            ),
            plugin_outcomes: counter(
                &r,
                "edgewarden_plugin_outcomes_total",
                "Policy plugin calls by outcome (forwarded, responded, trap, timeout, memory_limit, invalid_output)",
                &["policy", "outcome"],
            ),
            traces: counter(
                &r,
                "edgewarden_traces_total",
                "Requests' traces by the sampler's decision (sampled, failed, slow, not_sampled, capped)",
                &["decision"],
            ),
            trace_spans: counter(
                &r,
                "edgewarden_trace_spans_total",
                "Spans by what became of them (exported, queue_full, export_failed)",
                &["result"],
            ),
            plugin_instances: gauge(
                &r,
                "edgewarden_plugin_instances",
                "Initialised plugin instances, pooled or in use",
                &["policy"],
            ),
            plugin_shadow_decisions: counter(
                &r,
                "edgewarden_plugin_shadow_decisions_total",
                "What shadow policies would have decided (never enforced)",
                &["policy", "decision"],
            ),
            plugin_cache: counter(
                &r,
                "edgewarden_plugin_cache_total",
                "Decisions of policies with [cache] looked up, by result (hit: applied without calling the plugin; miss)",
                &["policy", "result"],
            ),
            plugin_cache_evictions: counter(
                &r,
                "edgewarden_plugin_cache_evictions_total",
                "Remembered decisions of policies with [cache] evicted to stay within max_entries",
                &["policy"],
            ),
            plugin_slow_calls: counter(
                &r,
                "edgewarden_plugin_slow_calls_total",
                "Plugin calls that ran past half a millisecond of processor time and finished on the plugin lane's threads",
                &["policy"],
            ),
            upstream_duration: histogram(
                &r,
                "edgewarden_upstream_duration_seconds",
                "Time from choosing an upstream to the end of its response",
                &["origin"],
                REQUEST_BUCKETS,
            ),
            upstream_errors: counter(
                &r,
                "edgewarden_upstream_errors_total",
                "Failures reaching or reading from an origin, by kind",
                &["origin", "kind"],
            ),
            upstream_retries: counter(
                &r,
                "edgewarden_upstream_retries_total",
                "Requests tried again on an upstream after an attempt failed before anything was sent",
                &["origin"],
            ),
            upstream_ejections: counter(
                &r,
                "edgewarden_upstream_ejections_total",
                "Upstreams taken out of rotation by passive health after failures in a row",
                &["origin"],
            ),
            upstream_truncated: counter(
                &r,
                "edgewarden_upstream_truncated_responses_total",
                "Responses whose body the origin stopped sending after the header reached the client",
                &["origin"],
            ),
            config_reload_refused_since,
            config_reloads: counter(
                &r,
                "edgewarden_config_reloads_total",
                "Configuration reloads by result",
                &["result"],
            ),
            admin_refusals: counter(
                &r,
                "edgewarden_admin_refusals_total",
                "Refused calls to the admin listener's state-changing endpoints, by endpoint (drain, drain_cancel) and reason (method_not_allowed, unauthorized, not_configured)",
                &["endpoint", "reason"],
            ),
            build_info: gauge(
                &r,
                "edgewarden_build_info",
                "Always 1; the version is a label",
                &["version"],
            ),
            tls_certificate_expiry: gauge(
                &r,
                "edgewarden_tls_certificate_expiry_timestamp_seconds",
                "When each TLS listener certificate stops being valid (Unix time), by listener and file",
                &["listener", "certificate"],
            ),
            registry: r,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["ok", "error"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        metrics
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics not encoded");
        }
        out
    }
}

/// `2xx`, `4xx`…; `none` when no response was written (the client left first).
pub fn status_class(status: Option<u16>) -> &'static str {
    CLASSES[class_index(status)]
}

const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: Option<u16>) -> usize {
    match status {
        Some(s @ 100..=599) => usize::from(s / 100),
        _ => 0,
    }
}

/// Request outcomes (`edgewarden_requests_total`'s `outcome` label) a route's counters hold.
pub const OUTCOMES: usize = 4;
/// Reasons of `edgewarden_auth_rejections_total` a route's counters hold.
pub const AUTH_REASONS: usize = 18;

/// One route's request counters, each resolved on first use: a request increments its counter
/// without hashing its labels again (`with_label_values` on every request cost about 1 % of a
/// missing-token 401). Series appear when first counted, as before.
pub struct RouteCounters {
    route: String,
    /// `edgewarden_requests_total{route, class, outcome}`, by class then outcome.
    requests: [OnceLock<IntCounter>; CLASSES.len() * OUTCOMES],
    /// `edgewarden_auth_rejections_total{route, reason}`, by the reason's index.
    auth: [OnceLock<IntCounter>; AUTH_REASONS],
}

impl RouteCounters {
    pub fn new(route: &str) -> RouteCounters {
        RouteCounters {
            route: route.to_string(),
            requests: std::array::from_fn(|_| OnceLock::new()),
            auth: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Count a request that ended with `status` and `outcome` (`outcome_index` below
    /// [`OUTCOMES`]).
    pub fn request(&self, status: Option<u16>, outcome_index: usize, outcome: &str) {
        let class = class_index(status);
        let labels = [self.route.as_str(), CLASSES[class], outcome];
        match self.requests.get(class * OUTCOMES + outcome_index) {
            Some(slot) => slot
                .get_or_init(|| get().requests.with_label_values(&labels))
                .inc(),
            None => get().requests.with_label_values(&labels).inc(),
        }
    }

    /// Count an authentication refused for `reason` (`index` below [`AUTH_REASONS`]).
    pub fn auth_rejection(&self, index: usize, reason: &str) {
        let labels = [self.route.as_str(), reason];
        match self.auth.get(index) {
            Some(slot) => slot
                .get_or_init(|| get().auth_rejections.with_label_values(&labels))
                .inc(),
            None => get().auth_rejections.with_label_values(&labels).inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric_family_with_its_help() {
        let text = String::from_utf8(get().render()).expect("utf-8");
        for name in ["edgewarden_build_info", "edgewarden_config_reloads_total"] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} in\n{text}"
            );
        }
        assert!(text.contains(&format!(
            "edgewarden_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn a_routes_counters_count_into_the_labelled_series() {
        let counters = RouteCounters::new("route-counters-test");
        for _ in 0..3 {
            counters.request(Some(401), 1, "rejected");
        }
        counters.request(None, 3, "error");
        counters.auth_rejection(0, "missing_token");
        counters.auth_rejection(99, "beyond_the_slots");
        let m = get();
        let requests = |class: &str, outcome: &str| {
            m.requests
                .with_label_values(&["route-counters-test", class, outcome])
                .get()
        };
        assert_eq!(requests("4xx", "rejected"), 3);
        assert_eq!(requests("none", "error"), 1);
        let auth = |reason: &str| {
            m.auth_rejections
                .with_label_values(&["route-counters-test", reason])
                .get()
        };
        assert_eq!(auth("missing_token"), 1);
        assert_eq!(auth("beyond_the_slots"), 1);
    }

    #[test]
    fn status_classes_are_a_closed_set() {
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(451)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
        assert_eq!(status_class(Some(700)), "none");
    }
}
