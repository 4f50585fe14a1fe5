//! A shield refusal and the fields its 429 carries: `Retry-After` (RFC 9110 §10.2.3) and the
//! `RateLimit-Policy` and `RateLimit` structured fields of draft-ietf-httpapi-ratelimit-headers
//! (a list of one item: the limit's name as a string, with `q`/`w` and `r`/`t` parameters).

use std::sync::Arc;

use http::HeaderValue;

/// Which stage refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The client address had too many failed authentications.
    PenaltyBox,
    /// The client address used up its signature checks.
    VerifyBudget,
    /// A configured `[[limits]]` entry.
    Limit,
    /// The client address opened connections faster than its rate (the connection is dropped as
    /// it is accepted; no 429 is written).
    Connections,
}

impl Stage {
    /// The `stage` label of `edgewarden_shield_refusals_total`, and the name a built-in stage
    /// goes by in the answer's fields.
    pub fn label(self) -> &'static str {
        match self {
            Stage::PenaltyBox => "penalty_box",
            Stage::VerifyBudget => "verify_budget",
            Stage::Limit => "limit",
            Stage::Connections => "connections",
        }
    }
}

/// A request the shield refused: answered 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub stage: Stage,
    /// The limit's configured name, or the stage's label.
    pub limit: Arc<str>,
    /// The quota: `rate` requests per `per_s` seconds (a concurrency limit: `rate` in flight,
    /// `per_s` 0).
    pub rate: u64,
    pub per_s: u64,
    /// Whole seconds until the same request would be allowed.
    pub retry_after_s: u64,
    /// The `RateLimit-Policy` field of the quota that refused ([`policy_field`]).
    pub policy: HeaderValue,
}

impl Refusal {
    /// `RateLimit`: nothing remains, and `t` says when a request fits again.
    pub fn ratelimit_field(&self) -> String {
        let mut numbers = itoa::Buffer::new();
        let mut field = String::with_capacity(self.limit.len() + 28);
        field.push('"');
        field.push_str(&self.limit);
        field.push_str("\";r=0;t=");
        field.push_str(numbers.format(self.retry_after_s));
        field
    }
}

/// `RateLimit-Policy` of one quota of a limit: `"name";q=RATE;w=WINDOW` (a concurrency limit:
/// `q` only). Written once, when the shield is built; a refusal carries a shared copy. Names
/// follow the configuration's name rule (or are fixed labels), so they never need escaping.
pub fn policy_field(limit: &str, rate: u64, per_s: u64) -> HeaderValue {
    let mut numbers = itoa::Buffer::new();
    // Anything but visible ASCII, a quote or a backslash (which the name rule already keeps out)
    // is left out of the name.
    let mut field = String::with_capacity(limit.len() + 26);
    field.push('"');
    field.extend(
        limit
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\'),
    );
    field.push('"');
    field.push_str(";q=");
    field.push_str(numbers.format(rate));
    if per_s != 0 {
        field.push_str(";w=");
        field.push_str(numbers.format(per_s));
    }
    // Only visible ASCII, which is always a valid field value.
    HeaderValue::try_from(field).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_name_the_limit_and_its_numbers() {
        let mut refusal = Refusal {
            stage: Stage::Limit,
            limit: Arc::from("per-user"),
            rate: 100,
            per_s: 60,
            retry_after_s: 7,
            policy: policy_field("per-user", 100, 60),
        };
        assert_eq!(refusal.policy, r#""per-user";q=100;w=60"#);
        assert_eq!(refusal.ratelimit_field(), r#""per-user";r=0;t=7"#);
        refusal.retry_after_s = 18_446_744_073_709_551_615;
        assert_eq!(policy_field("per-user", 100, 0), r#""per-user";q=100"#);
        assert_eq!(
            refusal.ratelimit_field(),
            r#""per-user";r=0;t=18446744073709551615"#
        );
    }

    #[test]
    fn a_name_outside_the_rule_still_gives_a_valid_field() {
        assert_eq!(policy_field("a\"b\\c\nd é", 1, 2), r#""abcd";q=1;w=2"#);
    }
}
