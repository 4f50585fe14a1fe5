//! `edgewarden-dev token` and `edgewarden-dev jwks`: sign test tokens and publish the matching
//! public key, for tests, the demo and users' own load tests. Never needed to run the gateway.

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use edgewarden::auth::crypto;
use edgewarden::jwa::algorithm_from_name;

/// What goes into a token.
pub struct TokenSpec {
    pub alg: String,
    pub kid: Option<String>,
    /// A JSON object merged over the other claims.
    pub claims: Option<String>,
    pub sub: Option<String>,
    pub iss: Option<String>,
    pub aud: Vec<String>,
    pub scope: Option<String>,
    /// Seconds from now until `exp`; negative for an already expired token.
    pub expires_in: i64,
}

fn encoding_key(pem: &str, alg: Algorithm) -> Result<EncodingKey, String> {
    use Algorithm::*;
    if pem.contains("-----BEGIN PUBLIC KEY-----") || pem.contains("-----BEGIN RSA PUBLIC KEY-----")
    {
        return Err(
            "this is a public key: signing a token or writing a JWKS needs the \
                    private key (a PEM file starting -----BEGIN PRIVATE KEY-----)"
                .into(),
        );
    }
    let bytes = pem.as_bytes();
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(bytes),
        ES256 | ES384 => EncodingKey::from_ec_pem(bytes),
        EdDSA => EncodingKey::from_ed_pem(bytes),
        _ => return Err(format!("{alg:?} is not supported")),
    }
    .map_err(|e| format!("private key does not fit {alg:?}: {e}"))
}

fn parse_alg(name: &str) -> Result<Algorithm, String> {
    algorithm_from_name(name).ok_or_else(|| format!("{name:?} is not a supported algorithm"))
}

/// The claims every issuer requires that `spec` leaves out (`iss`, `aud`, and `sub`, required by
/// default), so a caller can say the token will be refused.
pub fn missing_claims(spec: &TokenSpec) -> Vec<&'static str> {
    let extra: Map<String, Value> = spec
        .claims
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let mut missing = Vec::new();
    if spec.iss.is_none() && !extra.contains_key("iss") {
        missing.push("iss");
    }
    if spec.aud.is_empty() && !extra.contains_key("aud") {
        missing.push("aud");
    }
    if spec.sub.is_none() && !extra.contains_key("sub") {
        missing.push("sub");
    }
    missing
}

/// Sign a token with the PEM private key `pem`.
pub fn token(pem: &str, spec: &TokenSpec) -> Result<String, String> {
    crypto::install();
    let alg = parse_alg(&spec.alg)?;
    let key = encoding_key(pem, alg)?;
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let mut claims = Map::new();
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + spec.expires_in));
    if let Some(sub) = &spec.sub {
        claims.insert("sub".into(), json!(sub));
    }
    if let Some(iss) = &spec.iss {
        claims.insert("iss".into(), json!(iss));
    }
    match spec.aud.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), json!(one));
        }
        many => {
            claims.insert("aud".into(), json!(many));
        }
    }
    if let Some(scope) = &spec.scope {
        claims.insert("scope".into(), json!(scope));
    }
    if let Some(text) = &spec.claims {
        let extra: Value =
            serde_json::from_str(text).map_err(|e| format!("--claims is not JSON: {e}"))?;
        let Value::Object(extra) = extra else {
            return Err("--claims must be a JSON object".into());
        };
        claims.extend(extra);
    }
    let mut header = Header::new(alg);
    header.kid = spec.kid.clone();
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("signing failed: {e}"))
}

/// A JWKS document holding the public half of the PEM private key `pem`.
pub fn jwks(pem: &str, alg: &str, kid: &str) -> Result<String, String> {
    crypto::install();
    let alg = parse_alg(alg)?;
    let key = encoding_key(pem, alg)?;
    let mut jwk = Jwk::from_encoding_key(&key, alg)
        .map_err(|e| format!("cannot derive the public key: {e}"))?;
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_string_pretty(&JwkSet { keys: vec![jwk] }).map_err(|e| e.to_string())
}
