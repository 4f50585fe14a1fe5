//! Where a token's signature is checked: on the request's own worker thread while that thread
//! has checked few lately, on the signature lane ([`crate::lane`]) past that.
//!
//! An RS256 check takes tens of microseconds, several times a refusal; a worker thread that
//! runs many in a row makes every other connection it serves wait behind them (a flood of
//! forged tokens from 64 addresses put valid users' p99 at 10 ms, BENCHMARKS.md). On the lane,
//! below the workers' priority, the checks take only the CPU the workers leave. But handing a
//! check over costs thread wake-ups and, on a shared CPU, preemptions: measured on one CPU, up to
//! 20 µs per check. So a worker keeps the checks it can afford: up to [`INLINE_PER_S`] per second
//! with bursts of [`INLINE_BURST`] (at ~30 µs a check, under a third of the thread, and never
//! more than four checks back to back). A gateway that answers from its verified-token cache
//! rarely reaches that; a flood, or new tokens arriving faster, go to the lane.

use std::cell::Cell;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::error::AuthError;
use super::keys::KeySet;
use crate::lane::Lane;
use crate::shield::gcra::{Quota, Verdict};

/// Signature checks per second one worker thread runs itself before the lane takes the rest.
pub const INLINE_PER_S: u64 = 10_000;
/// How many of them it may run at once (back to back).
pub const INLINE_BURST: u64 = 4;

/// The signature lane, and how many checks a worker keeps.
pub struct SignatureLane {
    lane: Arc<Lane>,
    inline: Quota,
}

impl SignatureLane {
    pub fn new(lane: Arc<Lane>) -> SignatureLane {
        SignatureLane::keeping(lane, Quota::new(INLINE_PER_S, 1, INLINE_BURST))
    }

    /// With `inline` checks per worker thread instead of the default.
    pub fn keeping(lane: Arc<Lane>, inline: Quota) -> SignatureLane {
        SignatureLane { lane, inline }
    }

    /// Check `token`'s signature against the key at `key` in `keys`, here or on the lane. A check
    /// the lane could not finish fails closed (503, as for keys that are unavailable).
    pub async fn check(
        &self,
        validations: &Arc<[(Algorithm, Validation)]>,
        token: &str,
        keys: &Arc<KeySet>,
        key: usize,
        alg: Algorithm,
    ) -> Result<(), AuthError> {
        if self.here() {
            return signature(validations, token, keys, key, alg);
        }
        crate::metrics::get().signature_lane_checks.inc();
        let (validations, token, keys) = (validations.clone(), token.to_owned(), keys.clone());
        self.lane
            .run(async move { signature(&validations, &token, &keys, key, alg) })
            .await
            .unwrap_or(Err(AuthError::KeysUnavailable))
    }

    /// Whether this thread may run one more check itself (and spend it).
    fn here(&self) -> bool {
        thread_local! {
            static TAT: Cell<u64> = const { Cell::new(0) };
        }
        static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
        // From 1, so that a thread's first check finds its allowance full.
        let now = EPOCH.elapsed().as_nanos() as u64 + 1;
        TAT.with(|tat| match self.inline.check(tat.get(), now, 1) {
            Verdict::Allow { tat: next, .. } => {
                tat.set(next);
                true
            }
            Verdict::Deny { .. } => false,
        })
    }
}

/// The signature, and JWT semantics once more, through jsonwebtoken with the issuer's
/// `Validation` for `alg`, against the key at `key` in `keys`.
pub fn signature(
    validations: &[(Algorithm, Validation)],
    token: &str,
    keys: &KeySet,
    key: usize,
    alg: Algorithm,
) -> Result<(), AuthError> {
    let validation = validations
        .iter()
        .find(|(a, _)| *a == alg)
        .map(|(_, v)| v)
        .ok_or(AuthError::AlgNotAllowed)?;
    let key = keys.keys.get(key).ok_or(AuthError::UnknownKid)?;
    jsonwebtoken::decode::<Value>(token, &key.decoding, validation)
        .map(drop)
        .map_err(|e| map_error(e.kind()))
}

/// jsonwebtoken's reason, as the gateway's.
pub fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::AlgNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed("token does not decode"),
        _ => AuthError::BadSignature,
    }
}
