//! Why a token was refused: one closed set of reasons, each with its HTTP status, its RFC 6750
//! `WWW-Authenticate` challenge and its metric label. This is the one place that maps them.

/// A token (or its absence) that does not let the request through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    MissingToken,
    /// A token in more than one place (RFC 6750 §2: a client uses one method only): 400
    /// `invalid_request`, never a guess at which one the origin would read.
    AmbiguousToken,
    TokenTooLarge,
    /// The text is a short, fixed description; never token content.
    Malformed(&'static str),
    AlgNotAllowed,
    UnknownKid,
    /// A token without `kid` that none of its issuer's keys for its algorithm verifies.
    NoKeyVerifies,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    InvalidClaim(&'static str),
    InsufficientScope,
    /// The issuer has no usable keys (never loaded, or stale past `max_stale_s`).
    KeysUnavailable,
    /// The client address used up its signature checks (the shield's verification budget):
    /// answered 429 by the shield, not as a token problem.
    OverBudget,
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            AuthError::AmbiguousToken => 400,
            AuthError::InsufficientScope => 403,
            AuthError::KeysUnavailable => 503,
            AuthError::OverBudget => 429,
            _ => 401,
        }
    }

    /// Metric label and JSON `error` detail.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::AmbiguousToken => "ambiguous_token",
            AuthError::TokenTooLarge => "token_too_large",
            AuthError::Malformed(_) => "malformed",
            AuthError::AlgNotAllowed => "alg_not_allowed",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::NoKeyVerifies => "no_key_verifies",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture => "issued_in_future",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim => "missing_claim",
            AuthError::InvalidClaim(_) => "invalid_claim",
            AuthError::InsufficientScope => "insufficient_scope",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::OverBudget => "verify_budget",
        }
    }

    /// The reason's position, for counters resolved once per route (below
    /// [`crate::metrics::AUTH_REASONS`]).
    pub fn index(&self) -> usize {
        match self {
            AuthError::MissingToken => 0,
            AuthError::AmbiguousToken => 1,
            AuthError::TokenTooLarge => 2,
            AuthError::Malformed(_) => 3,
            AuthError::AlgNotAllowed => 4,
            AuthError::UnknownKid => 5,
            AuthError::BadSignature => 6,
            AuthError::Expired => 7,
            AuthError::NotYetValid => 8,
            AuthError::IssuedInFuture => 9,
            AuthError::WrongIssuer => 10,
            AuthError::WrongAudience => 11,
            AuthError::MissingClaim => 12,
            AuthError::InvalidClaim(_) => 13,
            AuthError::InsufficientScope => 14,
            AuthError::KeysUnavailable => 15,
            AuthError::OverBudget => 16,
            AuthError::NoKeyVerifies => 17,
        }
    }

    /// Short text for `error_description`; fixed strings only, never echoing token content.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "bearer token required",
            AuthError::AmbiguousToken => "bearer token sent in more than one place",
            AuthError::TokenTooLarge => "token too large",
            AuthError::Malformed(what) => what,
            AuthError::AlgNotAllowed => "algorithm not allowed",
            AuthError::UnknownKid => "unknown signing key",
            AuthError::NoKeyVerifies => "no key of the token's issuer verifies this token",
            AuthError::BadSignature => "signature does not verify",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::IssuedInFuture => "token issued in the future",
            AuthError::WrongIssuer => "issuer not accepted",
            AuthError::WrongAudience => "audience not accepted",
            AuthError::MissingClaim => "required claim missing",
            AuthError::InvalidClaim(what) => what,
            AuthError::InsufficientScope => "token lacks a required scope",
            AuthError::KeysUnavailable => "signing keys unavailable",
            AuthError::OverBudget => "too many token checks from this address",
        }
    }

    /// Whether the request presented a token that was refused: what the shield's penalty box
    /// counts (not a missing token, a missing scope, or the gateway's own trouble).
    pub fn is_failed_token(&self) -> bool {
        !matches!(
            self,
            AuthError::MissingToken
                | AuthError::InsufficientScope
                | AuthError::KeysUnavailable
                | AuthError::OverBudget
        )
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3): no error attribute when no token was sent,
    /// `invalid_request` for a request that is malformed as a whole (§3.1).
    pub fn challenge(&self, scopes: &str) -> Option<String> {
        const REALM: &str = "Bearer realm=\"edgewarden\"";
        match self {
            AuthError::MissingToken => Some(REALM.to_string()),
            AuthError::KeysUnavailable | AuthError::OverBudget => None,
            AuthError::AmbiguousToken => Some(format!(
                "{REALM}, error=\"invalid_request\", error_description=\"{}\"",
                self.description()
            )),
            AuthError::InsufficientScope => Some(format!(
                "{REALM}, error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                self.description(),
                scopes
            )),
            _ => Some(format!(
                "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AuthError;

    #[test]
    fn every_reason_has_its_own_counter_slot() {
        let all = [
            AuthError::MissingToken,
            AuthError::AmbiguousToken,
            AuthError::TokenTooLarge,
            AuthError::Malformed(""),
            AuthError::AlgNotAllowed,
            AuthError::UnknownKid,
            AuthError::NoKeyVerifies,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::IssuedInFuture,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::MissingClaim,
            AuthError::InvalidClaim(""),
            AuthError::InsufficientScope,
            AuthError::KeysUnavailable,
            AuthError::OverBudget,
        ];
        assert_eq!(all.len(), crate::metrics::AUTH_REASONS);
        let mut seen = [false; crate::metrics::AUTH_REASONS];
        for e in &all {
            assert!(!seen[e.index()], "{} shares a slot", e.reason());
            seen[e.index()] = true;
        }
    }
}
