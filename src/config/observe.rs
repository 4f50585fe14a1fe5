//! What operators turn on to see into the gateway: `[access_log]`, the decision-trace secret, and
//! how a route lists its policies (enforced or shadow).

use serde::Deserialize;

use super::names::Name;
use super::reader::{Problems, Section};
use super::{AccessLogConfig, RoutePolicy};

/// Shortest accepted `trace_secret`: it is compared on every request that sends one.
const MIN_TRACE_SECRET: usize = 16;

pub(super) fn read_access_log(mut s: Section<'_>, problems: &mut Problems) -> AccessLogConfig {
    let enabled = s.or(problems, "enabled", true);
    let sample_one_in = s.ranged(problems, "sample_one_in", 1, 1, 1_000_000);
    let errors_only = s.or(problems, "errors_only", false);
    let query = s.or(problems, "query", false);
    s.finish(problems);
    AccessLogConfig {
        enabled,
        sample_one_in,
        errors_only,
        query,
    }
}

pub(super) fn read_trace_secret(s: &mut Section<'_>, problems: &mut Problems) -> Option<String> {
    let secret: String = s.optional(problems, "trace_secret")?;
    let printable = secret.bytes().all(|b| b.is_ascii_graphic());
    if secret.len() < MIN_TRACE_SECRET || !printable {
        problems.push(
            &s.key_path("trace_secret"),
            format!("must be at least {MIN_TRACE_SECRET} visible ASCII characters (no spaces)"),
        );
        return None;
    }
    Some(secret)
}

/// `policies = ["a", { policy = "b", mode = "shadow" }]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Name(String),
    Table {
        policy: String,
        #[serde(default)]
        mode: Option<String>,
    },
}

pub(super) fn read_route_policies(
    s: &mut Section<'_>,
    problems: &mut Problems,
) -> Vec<RoutePolicy> {
    let entries = s.or::<Vec<Entry>>(problems, "policies", Vec::new());
    let mut policies = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let (name, shadow) = match entry {
            Entry::Name(name) => (name, false),
            Entry::Table { policy, mode } => match mode.as_deref() {
                None | Some("enforce") => (policy, false),
                Some("shadow") => (policy, true),
                Some(other) => {
                    problems.push(
                        &format!("{}[{i}].mode", s.key_path("policies")),
                        format!("{other:?} is not \"enforce\" or \"shadow\""),
                    );
                    continue;
                }
            },
        };
        match Name::new(&name) {
            Ok(name) => policies.push(RoutePolicy { name, shadow }),
            Err(e) => problems.push(&format!("{}[{i}]", s.key_path("policies")), e),
        }
    }
    policies
}
