//! The verification pipeline for one bearer token, cheapest check first:
//! size → structure (segments, base64url, duplicate-free JSON, `crit`) → cache → algorithm allowed
//! → claim types, issuer, time window, audience, required claims → key by `kid` (bounded refetch)
//! → signature and JWT semantics through jsonwebtoken with every `Validation` field set.
//! Before the signature, a token that already failed one (the negative cache) is refused, and the
//! shield's verification budget for the client address is spent. A signature past the worker
//! thread's own allowance is checked on the signature lane (`offload`), so that a flood of tokens
//! to verify never holds the proxy's worker threads; everything before it stays on the request's.

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::cache::{TokenCache, Verified};
use super::error::AuthError;
use super::jwks::{IssuerKeys, Snapshot};
use super::jws;
use super::keys::KeySet;
use super::negative::NegativeCache;
use super::offload::{SignatureLane, signature};
use crate::config::IssuerConfig;
use crate::shield::Budget;

/// One configured issuer at run time.
pub struct Issuer {
    pub config: IssuerConfig,
    pub keys: Arc<IssuerKeys>,
    /// One `Validation` per configured algorithm, built once (shared with the signature lane).
    validations: Arc<[(Algorithm, Validation)]>,
}

impl Issuer {
    pub fn new(config: IssuerConfig, keys: Arc<IssuerKeys>) -> Issuer {
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| (alg, validation(&config, alg)))
            .collect();
        Issuer {
            config,
            keys,
            validations,
        }
    }
}

/// A verified token.
#[derive(Clone)]
pub struct Identity {
    pub issuer: usize,
    pub claims: Arc<Map<String, Value>>,
}

pub struct Verifier {
    pub issuers: Vec<Issuer>,
    cache: Option<TokenCache>,
    negative: Option<NegativeCache>,
    max_token_bytes: usize,
    /// Where signatures are checked when the request's thread has checked many lately; `None`:
    /// always on the request's own thread.
    lane: Option<SignatureLane>,
}

impl Verifier {
    pub fn new(
        issuers: Vec<Issuer>,
        cache: Option<TokenCache>,
        negative: Option<NegativeCache>,
        max_token_bytes: usize,
    ) -> Verifier {
        Verifier {
            issuers,
            cache,
            negative,
            max_token_bytes,
            lane: None,
        }
    }

    /// Check signatures past a worker's own allowance on `lane`'s threads.
    pub fn with_lane(mut self, lane: SignatureLane) -> Verifier {
        self.lane = Some(lane);
        self
    }

    /// Verify `token` for a route that accepts the issuers at `allowed` (indexes into `issuers`),
    /// cheapest check first; a signature check spends one of `budget`'s.
    pub async fn verify(
        &self,
        token: &str,
        allowed: &[usize],
        budget: &Budget<'_>,
    ) -> Result<Identity, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TokenTooLarge);
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(identity) = self.cached(token, now, allowed)? {
            return Ok(identity);
        }
        if self.refused_before(token, now) {
            return Err(AuthError::BadSignature);
        }
        let _timer = crate::metrics::get().jwt_verify_duration.start_timer();
        let parsed = jws::parse(token)?;
        let (index, alg) = self.issuer_for(&parsed, allowed)?;
        let issuer = &self.issuers[index];
        let exp = check_claims(&parsed.claims, &issuer.config, now)?;
        // Keys and their generation come from one snapshot: the cache entry is tied to the very
        // keys that verified it, so a refresh landing meanwhile (removing this key) leaves the
        // entry under the old generation, and it is never used.
        let snapshot = key_snapshot(issuer, parsed.kid.as_deref(), alg).await?;
        #[cfg(test)]
        seam::key_looked_up();
        if let Err(e) = self
            .check_signature(token, &parsed, issuer, &snapshot, alg, budget)
            .await
        {
            if let (AuthError::BadSignature | AuthError::NoKeyVerifies, Some(negative)) =
                (&e, &self.negative)
            {
                negative.insert(token, index, snapshot.generation, now);
            }
            return Err(e);
        }
        let claims = Arc::new(parsed.claims);
        if let Some(cache) = &self.cache {
            let verified = Verified {
                issuer: index,
                claims: claims.clone(),
                // The verifier accepts the token until exp + leeway; so may the cache.
                exp: exp.saturating_add(issuer.config.leeway_s),
                generation: snapshot.generation,
                size: token.len() as u64 * 2,
            };
            cache.insert(token, verified);
        }
        Ok(Identity {
            issuer: index,
            claims,
        })
    }

    /// The signature, against the key its `kid` names or, for a token without `kid`, each of
    /// the issuer's keys for `alg` in turn (at most `max_keys_without_kid`; each check spends one
    /// of `budget`'s). One key that fails is a bad signature; several that all fail are
    /// [`AuthError::NoKeyVerifies`].
    async fn check_signature(
        &self,
        token: &str,
        parsed: &jws::Parsed<'_>,
        issuer: &Issuer,
        snapshot: &Snapshot,
        alg: Algorithm,
        budget: &Budget<'_>,
    ) -> Result<(), AuthError> {
        let kid = parsed.kid.as_deref();
        let metrics = crate::metrics::get();
        let mut tried = 0;
        for key in snapshot
            .keys
            .candidates(kid, alg, issuer.config.max_keys_without_kid)
        {
            if !budget.spend() {
                return Err(AuthError::OverBudget);
            }
            metrics.signature_checks.inc();
            if kid.is_none() {
                metrics.signature_checks_without_kid.inc();
            }
            tried += 1;
            match self
                .signature(token, issuer, &snapshot.keys, key, alg)
                .await
            {
                Err(AuthError::BadSignature) => continue,
                outcome => return outcome,
            }
        }
        Err(match (tried, kid) {
            (1, _) => AuthError::BadSignature,
            (_, None) => AuthError::NoKeyVerifies,
            _ => AuthError::UnknownKid,
        })
    }

    /// One signature check against the key at `key` in `keys`: here, or on the lane when this
    /// thread has checked many lately.
    async fn signature(
        &self,
        token: &str,
        issuer: &Issuer,
        keys: &Arc<KeySet>,
        key: usize,
        alg: Algorithm,
    ) -> Result<(), AuthError> {
        match &self.lane {
            Some(lane) => lane.check(&issuer.validations, token, keys, key, alg).await,
            None => signature(&issuer.validations, token, keys, key, alg),
        }
    }

    /// The cached identity of `token`, if its entry is still good for its issuer's current keys.
    fn cached(
        &self,
        token: &str,
        now: u64,
        allowed: &[usize],
    ) -> Result<Option<Identity>, AuthError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let metrics = crate::metrics::get();
        let generation = |i: usize| {
            self.issuers
                .get(i)
                .map_or(0, |x| x.keys.usable_generation())
        };
        let Some(hit) = cache.get(token, now, generation) else {
            metrics.token_cache_misses.inc();
            return Ok(None);
        };
        if !allowed.contains(&hit.issuer) {
            return Err(AuthError::WrongIssuer);
        }
        metrics.token_cache_hits.inc();
        Ok(Some(Identity {
            issuer: hit.issuer,
            claims: hit.claims.clone(),
        }))
    }

    /// Whether `token` already failed its signature check under its issuer's current keys.
    fn refused_before(&self, token: &str, now: u64) -> bool {
        let Some(negative) = &self.negative else {
            return false;
        };
        let refused = negative.refused(token, now, |i| {
            self.issuers
                .get(i)
                .map_or(0, |x| x.keys.usable_generation())
        });
        if refused {
            static REFUSED: std::sync::LazyLock<prometheus::IntCounter> =
                std::sync::LazyLock::new(|| {
                    crate::metrics::get()
                        .shield_refusals
                        .with_label_values(&["negative_cache"])
                });
            REFUSED.inc();
        }
        refused
    }

    /// The allowed issuer whose `iss` the token names, and the token's algorithm, which that
    /// issuer must accept.
    fn issuer_for(
        &self,
        parsed: &jws::Parsed<'_>,
        allowed: &[usize],
    ) -> Result<(usize, Algorithm), AuthError> {
        let accepts = |i: usize, alg: &Algorithm| {
            self.issuers
                .get(i)
                .is_some_and(|x| x.config.algorithms.contains(alg))
        };
        let alg = parse_alg(&parsed.alg)
            .filter(|alg| allowed.iter().any(|&i| accepts(i, alg)))
            .ok_or(AuthError::AlgNotAllowed)?;
        let iss = match parsed.claims.get("iss") {
            Some(Value::String(iss)) => iss,
            Some(_) => return Err(AuthError::InvalidClaim("iss must be a string")),
            None => return Err(AuthError::WrongIssuer),
        };
        let index = *allowed
            .iter()
            .find(|&&i| self.issuers.get(i).is_some_and(|x| &x.config.issuer == iss))
            .ok_or(AuthError::WrongIssuer)?;
        if !accepts(index, &alg) {
            return Err(AuthError::AlgNotAllowed);
        }
        Ok((index, alg))
    }
}

/// Claim types and values before any key is looked up: the time window, the audience, the
/// issuer's required claims, `sub` as a string. Returns `exp`.
fn check_claims(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    now: u64,
) -> Result<u64, AuthError> {
    let exp = check_time_window(claims, now, issuer.leeway_s)?;
    check_audience(claims, &issuer.audiences)?;
    for name in &issuer.required_claims {
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(AuthError::MissingClaim);
        }
    }
    if let Some(sub) = claims.get("sub")
        && !sub.is_string()
    {
        return Err(AuthError::InvalidClaim("sub must be a string"));
    }
    Ok(exp)
}

/// The issuer's keys, holding a key for `kid` and `alg`. An unknown `kid` triggers one bounded
/// refetch (`refetch_for_kid`); a known `kid` of another key type means the algorithm is wrong.
async fn key_snapshot(
    issuer: &Issuer,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Snapshot, AuthError> {
    let snapshot = issuer.keys.snapshot().ok_or(AuthError::KeysUnavailable)?;
    if snapshot.keys.candidates(kid, alg, 1).next().is_some() {
        return Ok(snapshot);
    }
    let Some(kid) = kid else {
        return Err(AuthError::NoKeyVerifies);
    };
    if snapshot.keys.has_kid(kid) {
        return Err(AuthError::AlgNotAllowed);
    }
    if issuer.keys.refetch_for_kid(kid).await {
        return issuer.keys.snapshot().ok_or(AuthError::KeysUnavailable);
    }
    Err(AuthError::UnknownKid)
}

/// Signature-level check of a compact JWS against a key set, with no claim semantics: strict
/// parsing, an algorithm from `allowed` that fits the key's type, the key by `kid`, the signature.
/// Returns the claims. The gateway's own path is [`Verifier::verify`]; this serves key-set tooling
/// and test vectors.
pub fn verify_jws(
    token: &str,
    keys: &super::keys::KeySet,
    allowed: &[Algorithm],
) -> Result<Map<String, Value>, AuthError> {
    let parsed = jws::parse(token)?;
    let alg = parse_alg(&parsed.alg)
        .filter(|a| allowed.contains(a))
        .ok_or(AuthError::AlgNotAllowed)?;
    let key = keys
        .find(parsed.kid.as_deref(), alg)
        .ok_or(AuthError::UnknownKid)?;
    match jsonwebtoken::crypto::verify(
        parsed.signature,
        parsed.signing_input.as_bytes(),
        &key.decoding,
        alg,
    ) {
        Ok(true) => Ok(parsed.claims),
        _ => Err(AuthError::BadSignature),
    }
}

/// Every field set on purpose, as a full literal (a field added upstream breaks the build): the
/// algorithm comes from configuration and key type, never from the token alone.
fn validation(config: &IssuerConfig, alg: Algorithm) -> Validation {
    Validation {
        required_spec_claims: HashSet::from(["exp".into(), "iss".into(), "aud".into()]),
        leeway: config.leeway_s,
        reject_tokens_expiring_in_less_than: 0,
        validate_exp: true,
        validate_nbf: true,
        validate_aud: true,
        aud: Some(config.audiences.iter().cloned().collect()),
        iss: Some(HashSet::from([config.issuer.clone()])),
        sub: None,
        algorithms: vec![alg],
    }
}

fn parse_alg(name: &str) -> Option<Algorithm> {
    super::keys::algorithm_from_name(name)
}

fn numeric(
    claims: &Map<String, Value>,
    name: &'static str,
    what: &'static str,
) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(AuthError::InvalidClaim(what)),
        Some(_) => Err(AuthError::InvalidClaim(what)),
    }
}

/// `exp` (required), `nbf`, `iat` as numbers, checked against `now` with `leeway`. Returns `exp`.
fn check_time_window(claims: &Map<String, Value>, now: u64, leeway: u64) -> Result<u64, AuthError> {
    let now = now as f64;
    let leeway = leeway as f64;
    let exp = numeric(claims, "exp", "exp must be a number")?.ok_or(AuthError::MissingClaim)?;
    if exp + leeway < now {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = numeric(claims, "nbf", "nbf must be a number")?
        && nbf - leeway > now
    {
        return Err(AuthError::NotYetValid);
    }
    if let Some(iat) = numeric(claims, "iat", "iat must be a number")?
        && iat - leeway > now
    {
        return Err(AuthError::IssuedInFuture);
    }
    Ok(if exp <= 0.0 { 0 } else { exp as u64 })
}

/// `aud` is a string or an array of strings containing one of `accepted`.
fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), AuthError> {
    let matches = |s: &str| accepted.iter().any(|a| a == s);
    match claims.get("aud") {
        None => Err(AuthError::MissingClaim),
        Some(Value::String(aud)) if matches(aud) => Ok(()),
        Some(Value::String(_)) => Err(AuthError::WrongAudience),
        Some(Value::Array(list)) => {
            if list.iter().any(|v| !v.is_string()) {
                return Err(AuthError::InvalidClaim("aud must be strings"));
            }
            if list.iter().filter_map(Value::as_str).any(matches) {
                Ok(())
            } else {
                Err(AuthError::WrongAudience)
            }
        }
        Some(_) => Err(AuthError::InvalidClaim(
            "aud must be a string or an array of strings",
        )),
    }
}

/// Test seam: run code at a chosen point of one verification on this thread (a JWKS refresh
/// landing between the key lookup and the cache insert).
#[cfg(test)]
pub(crate) mod seam {
    use std::cell::RefCell;

    type Hook = Box<dyn FnOnce()>;

    thread_local! {
        static AFTER_KEY_LOOKUP: RefCell<Option<Hook>> = RefCell::new(None);
    }

    /// Run `hook` once, right after the next verification on this thread found its key.
    pub fn after_key_lookup(hook: impl FnOnce() + 'static) {
        AFTER_KEY_LOOKUP.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    }

    pub(super) fn key_looked_up() {
        if let Some(hook) = AFTER_KEY_LOOKUP.with(|h| h.borrow_mut().take()) {
            hook();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cache::TokenCache;
    use crate::auth::keys::KeySet;
    use crate::config::KeySource;
    use edgewarden_tools::mint::{self, TokenSpec};
    use serde_json::json;
    use std::time::Duration;

    const KEY_A: &str = include_str!("../../tests/data/keys/rsa2048-private.pem");
    const KEY_A_PUBLIC: &str = include_str!("../../tests/data/keys/rsa2048-public.pem");
    const KEY_B: &str = include_str!("../../tests/data/keys/rsa2048-b-private.pem");
    const ISS: &str = "https://id.unit.test";

    fn issuer_config(keys: KeySource) -> IssuerConfig {
        IssuerConfig {
            name: crate::config::Name::new("unit").expect("name"),
            issuer: ISS.to_string(),
            audiences: vec!["api".to_string()],
            algorithms: vec![Algorithm::RS256],
            keys,
            refresh_interval_s: 300,
            max_stale_s: 86_400,
            unknown_kid_cooldown_s: 30,
            max_keys_without_kid: 4,
            leeway_s: 30,
            required_claims: vec!["sub".to_string()],
            claims_to_headers: Vec::new(),
        }
    }

    fn token_signed_by(pem: &str, kid: &str) -> String {
        token_with_kid(pem, Some(kid))
    }

    fn token_with_kid(pem: &str, kid: Option<&str>) -> String {
        let spec = TokenSpec {
            alg: "RS256".to_string(),
            kid: kid.map(str::to_string),
            claims: None,
            sub: Some("u-1".to_string()),
            iss: Some(ISS.to_string()),
            aud: vec!["api".to_string()],
            scope: None,
            expires_in: 3600,
        };
        mint::token(pem, &spec).expect("token signs")
    }

    /// A refresh that removes key A lands after a verification looked key A up and before it
    /// cached its result. The token was good under the keys it was checked with, but that
    /// verification must not outlive them: the next request re-verifies under the new keys.
    #[tokio::test]
    async fn a_refresh_during_verification_never_caches_a_removed_key_under_the_new_keys() {
        super::super::crypto::install();
        let config = issuer_config(KeySource::PublicKeyPem(KEY_A_PUBLIC.to_string()));
        let keys = IssuerKeys::new(&config, crate::config::DemoKey::Refuse).expect("keys load");
        let verifier = Verifier::new(
            vec![Issuer::new(config, keys.clone())],
            TokenCache::new(16, 1 << 20),
            None,
            8192,
        );
        let token = token_signed_by(KEY_A, "a");
        let only_b = mint::jwks(KEY_B, "RS256", "b").expect("JWKS");
        let only_b = KeySet::from_jwks(only_b.as_bytes()).expect("key set");

        let refresher = keys.clone();
        seam::after_key_lookup(move || refresher.replace_for_test(only_b));
        let first = verifier.verify(&token, &[0], &Budget::unlimited()).await;
        assert!(first.is_ok(), "key A was current when it was looked up");

        let second = verifier.verify(&token, &[0], &Budget::unlimited()).await;
        assert_eq!(
            second.err(),
            Some(AuthError::UnknownKid),
            "key A is gone: the token must not be served from the cache"
        );
    }

    /// Without a refresh, the second verification is a cache hit and still succeeds.
    #[tokio::test]
    async fn without_a_refresh_the_verification_is_reused() {
        super::super::crypto::install();
        let config = issuer_config(KeySource::PublicKeyPem(KEY_A_PUBLIC.to_string()));
        let keys = IssuerKeys::new(&config, crate::config::DemoKey::Refuse).expect("keys load");
        let cache = TokenCache::new(16, 1 << 20);
        let verifier = Verifier::new(vec![Issuer::new(config, keys)], cache, None, 8192);
        let token = token_signed_by(KEY_A, "a");
        let first = verifier
            .verify(&token, &[0], &Budget::unlimited())
            .await
            .expect("verifies");
        let second = verifier
            .verify(&token, &[0], &Budget::unlimited())
            .await
            .expect("cached");
        assert!(
            Arc::ptr_eq(&first.claims, &second.claims),
            "the second answer is the cached verification"
        );
    }

    /// With a signature lane, a thread checks signatures itself within its allowance (here
    /// one) and hands the rest to the lane: while the lane's one thread is busy, a token within
    /// the allowance is verified, a token verified before is answered from the cache, and a
    /// token past the allowance waits for the lane.
    #[tokio::test]
    async fn signatures_past_a_threads_allowance_are_checked_on_the_lane() {
        super::super::crypto::install();
        let config = issuer_config(KeySource::PublicKeyPem(KEY_A_PUBLIC.to_string()));
        let keys = IssuerKeys::new(&config, crate::config::DemoKey::Refuse).expect("keys load");
        let lane = crate::lane::Lane::start("signature-lane", 1, 0).expect("lane");
        let one_an_hour = crate::shield::gcra::Quota::new(1, 3600, 1);
        let cache = TokenCache::new(16, 1 << 20);
        let verifier = Verifier::new(vec![Issuer::new(config, keys)], cache, None, 8192)
            .with_lane(SignatureLane::keeping(lane.clone(), one_an_hour));
        let first = token_signed_by(KEY_A, "a");
        let second = token_with_kid(KEY_A, None);
        let budget = Budget::unlimited();
        let lane_checks = || crate::metrics::get().signature_lane_checks.get();

        let release = lane.hold().await;
        let within = tokio::time::timeout(
            Duration::from_secs(10),
            verifier.verify(&first, &[0], &budget),
        );
        assert!(within.await.expect("checked on this thread").is_ok());
        let cached = tokio::time::timeout(
            Duration::from_secs(10),
            verifier.verify(&first, &[0], &budget),
        );
        assert!(cached.await.expect("answered from the cache").is_ok());
        let handed_over = lane_checks();
        let past = tokio::time::timeout(
            Duration::from_millis(50),
            verifier.verify(&second, &[0], &budget),
        );
        assert!(past.await.is_err(), "its signature waits for the lane");
        assert!(lane_checks() > handed_over);

        drop(release);
        let verified = verifier.verify(&second, &[0], &budget).await;
        assert_eq!(verified.err(), None);
    }

    /// A verifier for one issuer whose JWKS holds key A (kid "a") then key B (kid "b").
    fn verifier_with_keys_a_and_b(max_keys_without_kid: usize) -> Verifier {
        super::super::crypto::install();
        let jwk = |pem, kid| -> Value {
            let doc: Value =
                serde_json::from_str(&mint::jwks(pem, "RS256", kid).expect("JWKS")).expect("JSON");
            doc["keys"][0].clone()
        };
        let document = json!({"keys": [jwk(KEY_A, "a"), jwk(KEY_B, "b")]}).to_string();
        let mut config = issuer_config(KeySource::PublicKeyPem(KEY_A_PUBLIC.to_string()));
        config.max_keys_without_kid = max_keys_without_kid;
        let keys = IssuerKeys::new(&config, crate::config::DemoKey::Refuse).expect("keys load");
        keys.replace_for_test(KeySet::from_jwks(document.as_bytes()).expect("key set"));
        Verifier::new(vec![Issuer::new(config, keys)], None, None, 8192)
    }

    /// After a rotation the key set holds two keys; a token without `kid` signed by either is
    /// accepted, each key tried spending one signature check.
    #[tokio::test]
    async fn a_token_without_kid_is_tried_against_each_key_of_its_algorithm() {
        let verifier = verifier_with_keys_a_and_b(4);
        let checks = || crate::metrics::get().signature_checks_without_kid.get();
        for pem in [KEY_A, KEY_B] {
            let budget = Budget::unlimited();
            let before = checks();
            let identity = verifier
                .verify(&token_with_kid(pem, None), &[0], &budget)
                .await
                .expect("a key of the set verifies it");
            assert_eq!(identity.claims["sub"], "u-1");
            assert!(checks() > before, "the checks are counted");
        }
    }

    /// A token without `kid` that no key verifies is named as such, never "unknown signing key";
    /// and the number of keys tried is bounded by `max_keys_without_kid`.
    #[tokio::test]
    async fn a_token_without_kid_that_no_key_verifies_says_so_within_its_bound() {
        let verifier = verifier_with_keys_a_and_b(4);
        let token = token_with_kid(KEY_A, None);
        let at = token.len() - 10;
        let flipped = if &token[at..at + 1] == "A" { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        let outcome = verifier.verify(&forged, &[0], &Budget::unlimited()).await;
        assert_eq!(outcome.err(), Some(AuthError::NoKeyVerifies));

        let bounded = verifier_with_keys_a_and_b(1);
        let outcome = bounded
            .verify(&token_with_kid(KEY_B, None), &[0], &Budget::unlimited())
            .await;
        assert_eq!(
            outcome.err(),
            Some(AuthError::BadSignature),
            "with a bound of one, only key A is tried"
        );
        let with_kid = bounded
            .verify(&token_signed_by(KEY_B, "b"), &[0], &Budget::unlimited())
            .await;
        assert!(with_kid.is_ok(), "a kid still picks its key");
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn time_window_honours_leeway_to_the_second() {
        let now = 1_000_000;
        let ok = |c: Value| check_time_window(&claims(c), now, 30);
        assert!(ok(json!({"exp": now - 29})).is_ok());
        assert!(ok(json!({"exp": now - 30})).is_ok());
        assert_eq!(ok(json!({"exp": now - 31})), Err(AuthError::Expired));
        assert!(ok(json!({"exp": now + 60, "nbf": now + 30})).is_ok());
        assert_eq!(
            ok(json!({"exp": now + 60, "nbf": now + 31})),
            Err(AuthError::NotYetValid)
        );
        assert!(ok(json!({"exp": now + 60, "iat": now + 30})).is_ok());
        assert_eq!(
            ok(json!({"exp": now + 60, "iat": now + 31})),
            Err(AuthError::IssuedInFuture)
        );
        assert_eq!(ok(json!({"nbf": now})), Err(AuthError::MissingClaim));
        assert!(matches!(
            ok(json!({"exp": "tomorrow"})),
            Err(AuthError::InvalidClaim(_))
        ));
        assert!(matches!(
            ok(json!({"exp": now + 60, "iat": true})),
            Err(AuthError::InvalidClaim(_))
        ));
    }

    #[test]
    fn audience_is_a_string_or_array_of_strings() {
        let accepted = vec!["api".to_string()];
        let check = |c: Value| check_audience(&claims(c), &accepted);
        assert!(check(json!({"aud": "api"})).is_ok());
        assert!(check(json!({"aud": ["web", "api"]})).is_ok());
        assert_eq!(check(json!({"aud": "web"})), Err(AuthError::WrongAudience));
        assert_eq!(check(json!({"aud": []})), Err(AuthError::WrongAudience));
        assert_eq!(check(json!({})), Err(AuthError::MissingClaim));
        assert!(matches!(
            check(json!({"aud": ["api", 1]})),
            Err(AuthError::InvalidClaim(_))
        ));
        assert!(matches!(
            check(json!({"aud": {"x": "api"}})),
            Err(AuthError::InvalidClaim(_))
        ));
    }
}
