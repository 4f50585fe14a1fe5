//! `[tracing]`: OpenTelemetry traces exported over OTLP/HTTP, and a route's own `trace_sample_ratio`.

use std::collections::BTreeMap;

use super::reader::{Problems, Section};
use super::{TraceProtocol, TraceTrust, TracingConfig};

/// The OTLP/HTTP path of traces, added to an `endpoint` given without a path.
const TRACES_PATH: &str = "/v1/traces";

pub(super) fn read_tracing(mut s: Section<'_>, problems: &mut Problems) -> Option<TracingConfig> {
    let enabled = s.or(problems, "enabled", true);
    let endpoint: Option<String> = s.required(problems, "endpoint");
    let endpoint = endpoint.and_then(|url| traces_url(&s, &url, problems));
    let protocol = s.choice(
        problems,
        "protocol",
        [
            ("http/protobuf", TraceProtocol::Protobuf),
            ("http/json", TraceProtocol::Json),
        ],
    );
    let sample_ratio = read_ratio(&mut s, problems, "sample_ratio").unwrap_or(0.01);
    let trust_incoming = s.choice(
        problems,
        "trust_incoming",
        [
            ("trusted_proxies", TraceTrust::TrustedProxies),
            ("never", TraceTrust::Never),
            ("always", TraceTrust::Always),
        ],
    );
    let service_name: String = s.or(problems, "service_name", "edgewarden".to_string());
    if service_name.is_empty() || service_name.len() > 128 {
        problems.push(&s.key_path("service_name"), "must be 1 to 128 characters");
    }
    let slow_ms = s.optional_ranged(problems, "slow_ms", 1, 3_600_000);
    let rejected_per_s = s.ranged(problems, "rejected_per_s", 10, 0, 1_000_000);
    let queue_spans = s.ranged(problems, "queue_spans", 4096, 16, 1_000_000) as usize;
    let batch_spans = s.ranged(problems, "batch_spans", 512, 1, 100_000) as usize;
    let export_timeout_ms = s.ranged(problems, "export_timeout_ms", 5000, 10, 120_000);
    let headers = read_headers(&mut s, problems);
    s.finish(problems);
    Some(TracingConfig {
        enabled,
        endpoint: endpoint?,
        protocol,
        sample_ratio,
        trust_incoming,
        service_name,
        slow_ms,
        rejected_per_s,
        queue_spans,
        batch_spans,
        export_timeout_ms,
        headers,
    })
}

/// A ratio in `0.0..=1.0`, or absent.
pub(super) fn read_ratio(s: &mut Section<'_>, problems: &mut Problems, key: &str) -> Option<f64> {
    let ratio: f64 = s.optional(problems, key)?;
    if !(0.0..=1.0).contains(&ratio) {
        problems.push(&s.key_path(key), format!("{ratio} is not within 0.0..=1.0"));
        return None;
    }
    Some(ratio)
}

/// The collector's traces URL: `http(s)://host[:port]`, with `/v1/traces` added when no path is
/// given. No user information, query or fragment (a secret in a URL ends up in logs).
fn traces_url(s: &Section<'_>, url: &str, problems: &mut Problems) -> Option<String> {
    let path = s.key_path("endpoint");
    let parsed: Result<http::Uri, _> = url.parse();
    let Ok(uri) = parsed else {
        problems.push(&path, format!("{url:?} is not a URL"));
        return None;
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let Some(authority) = uri.authority().filter(|_| scheme_ok) else {
        problems.push(&path, format!("{url:?} is not an http:// or https:// URL"));
        return None;
    };
    if authority.as_str().contains('@') || uri.query().is_some() || url.contains('#') {
        problems.push(
            &path,
            "may not carry user information, a query or a fragment (use `headers` for credentials)",
        );
        return None;
    }
    match uri.path() {
        "" | "/" => Some(format!("{}://{authority}{TRACES_PATH}", uri.scheme_str()?)),
        _ => Some(url.to_string()),
    }
}

/// `headers = { "x-api-key" = "..." }`: sent with every export (field names in lower case).
fn read_headers(s: &mut Section<'_>, problems: &mut Problems) -> Vec<(String, String)> {
    let headers = s.or::<BTreeMap<String, String>>(problems, "headers", BTreeMap::new());
    let mut valid = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let key = format!("{}.{name:?}", s.key_path("headers"));
        let name_ok = http::HeaderName::from_bytes(name.as_bytes())
            .is_ok_and(|n| n.as_str() == name && !is_reserved(&name));
        if !name_ok {
            problems.push(
                &key,
                "is not a lower-case header field name the exporter may set",
            );
        } else if http::HeaderValue::from_str(&value).is_err() {
            problems.push(&key, "the value is not a valid header field value");
        } else {
            valid.push((name, value));
        }
    }
    valid
}

/// Fields the exporter's HTTP client owns.
fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "content-length" | "content-encoding" | "host" | "transfer-encoding"
    )
}
