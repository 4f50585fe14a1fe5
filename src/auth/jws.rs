//! Strict parsing of a compact JWS (`header.payload.signature`) before any key or signature work.
//!
//! Everything here is cheap and rejects early: segment count, canonical unpadded base64url, JSON
//! objects without duplicate member names (two parsers must never read different claims), and the
//! few header members the gateway acts on.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::AuthError;

/// Longest `kid` accepted.
const MAX_KID_BYTES: usize = 256;

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Parsed<'t> {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    pub signing_input: &'t str,
    /// The signature segment, still base64url.
    pub signature: &'t str,
}

pub fn parse(token: &str) -> Result<Parsed<'_>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("token must have three segments"));
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(AuthError::Malformed("empty token segment"));
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    // The signature must decode too, even though the verifier decodes it again.
    decode_b64(signature)?;

    let header = object(&decode_b64(header)?, "header")?;
    if header.contains_key("crit") {
        return Err(AuthError::Malformed("crit header is not supported"));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(AuthError::Malformed("alg must be a string")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => {
            Some(kid.clone())
        }
        Some(_) => return Err(AuthError::Malformed("kid must be a short non-empty string")),
    };
    let claims = object(&decode_b64(payload)?, "claims")?;
    Ok(Parsed {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

/// Canonical base64url without padding: padding, other alphabets and non-zero trailing bits fail.
fn decode_b64(segment: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed("invalid base64url"))
}

fn object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, AuthError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut de).map_err(|e| {
        if e.to_string().contains(DUPLICATE) {
            AuthError::Malformed(if what == "header" {
                "duplicate member in header"
            } else {
                "duplicate member in claims"
            })
        } else {
            AuthError::Malformed(if what == "header" {
                "header is not JSON"
            } else {
                "claims are not JSON"
            })
        }
    })?;
    de.end()
        .map_err(|_| AuthError::Malformed("trailing data after JSON"))?;
    match value.0 {
        Value::Object(map) => Ok(map),
        _ => Err(AuthError::Malformed(if what == "header" {
            "header is not a JSON object"
        } else {
            "claims are not a JSON object"
        })),
    }
}

const DUPLICATE: &str = "duplicate member name";

/// A JSON value whose objects may not repeat a member name at any depth.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut seen = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if seen.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(seen.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"u","n":{"a":[1,2]}}"#,
        );
        let p = parse(&t).expect("parses");
        assert_eq!(p.alg, "RS256");
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.claims["sub"], "u");
        assert!(t.starts_with(p.signing_input));
        assert_eq!(p.signature, b64("sig"));
    }

    #[test]
    fn rejects_structural_problems() {
        let good_h = b64(r#"{"alg":"RS256"}"#);
        let good_c = b64(r#"{"sub":"u"}"#);
        let cases = [
            format!("{good_h}.{good_c}"),
            format!("{good_h}.{good_c}.{}.x", b64("s")),
            format!("{good_h}.{good_c}."),
            format!("{good_h}=.{good_c}.{}", b64("s")),
            format!("{good_h}.{good_c}.{}", "a+b/"),
            format!(
                "{}.{good_c}.{}",
                b64(r#"{"alg":"RS256","alg":"none"}"#),
                b64("s")
            ),
            format!("{good_h}.{}.{}", b64(r#"{"sub":"a","sub":"b"}"#), b64("s")),
            format!("{good_h}.{}.{}", b64(r#"{"o":{"x":1,"x":2}}"#), b64("s")),
            format!(
                "{}.{good_c}.{}",
                b64(r#"{"alg":"RS256","crit":["exp"]}"#),
                b64("s")
            ),
            format!("{}.{good_c}.{}", b64(r#"{"alg":1}"#), b64("s")),
            format!(
                "{}.{good_c}.{}",
                b64(r#"{"alg":"RS256","kid":7}"#),
                b64("s")
            ),
            format!(
                "{}.{good_c}.{}",
                b64(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300))),
                b64("s")
            ),
            format!("{good_h}.{}.{}", b64(r#"["not","object"]"#), b64("s")),
            format!("{good_h}.{}.{}", b64(r#"{"sub":"u"} trailing"#), b64("s")),
        ];
        for case in cases {
            assert!(
                matches!(parse(&case), Err(AuthError::Malformed(_))),
                "{case}"
            );
        }
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "QQ" is the canonical encoding of "A"; "QR" decodes to the same byte with junk bits.
        let claims = b64(r#"{"sub":"u"}"#);
        let t = format!("{}.{claims}.QR", b64(r#"{"alg":"RS256"}"#));
        assert!(parse(&t).is_err());
        let t = format!("{}.{claims}.QQ", b64(r#"{"alg":"RS256"}"#));
        assert!(parse(&t).is_ok());
    }
}
