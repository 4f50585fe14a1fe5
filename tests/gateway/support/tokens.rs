//! Real keys and real signed tokens, and a real JWKS server on loopback whose answer tests change.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use edgewarden::auth::crypto;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://id.test";
pub const AUDIENCE: &str = "api";
pub const RSA_A: &str = include_str!("../../data/keys/rsa2048-private.pem");
pub const RSA_B: &str = include_str!("../../data/keys/rsa2048-b-private.pem");
pub const RSA_A_PUBLIC: &str = include_str!("../../data/keys/rsa2048-public.pem");

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A signing key with its kid and public JWK.
pub struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    pub jwk: Value,
}

impl Signer {
    pub fn rsa(pem: &str, kid: &str) -> Signer {
        crypto::install();
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA PEM");
        let pair = sig::RsaKeyPair::from_pkcs8(key.as_bytes())
            .or_else(|_| sig::RsaKeyPair::from_der(key.as_bytes()))
            .expect("RSA key pair");
        let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&public.n), "e": b64(&public.e)});
        Signer {
            kid: kid.to_string(),
            alg: Algorithm::RS256,
            key,
            jwk,
        }
    }

    pub fn es256(kid: &str) -> Signer {
        crypto::install();
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate");
        let pair = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("pair");
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        Signer {
            kid: kid.to_string(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// A token with the standard header (`alg`, `kid`, `typ`).
    pub fn token(&self, claims: &Value) -> String {
        let alg = format!("{:?}", self.alg);
        self.token_with_header(&json!({"alg": alg, "kid": self.kid, "typ": "JWT"}), claims)
    }

    /// A token with any header, signed by this key whatever the header claims.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&format!(
            "{}.{}",
            b64(header.to_string()),
            b64(claims.to_string())
        ))
    }

    /// `input.signature` for an already encoded `header.payload` (which may be any bytes).
    pub fn sign_raw(&self, input: &str) -> String {
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg).expect("sign");
        format!("{input}.{signature}")
    }
}

/// Claims that pass every check of the test issuer, expiring in an hour.
pub fn good_claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now() + 3600, "iat": now(), "scope": "read write",
           "org": {"id": "org-7"}})
}

pub fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// What the JWKS server answers.
#[derive(Clone)]
pub enum Answer {
    Jwks(String),
    Status(u16),
    Body(String),
}

/// Serve HTTP/1.1 on `listener` until the test ends: each request is answered, after `delay`, with
/// what `answer` gives for its path (`None`: 404).
fn serve(
    listener: tokio::net::TcpListener,
    delay: Duration,
    answer: impl Fn(&str) -> Option<Answer> + Send + Sync + 'static,
) {
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        let (status, body) = match answer(req.uri().path()) {
                            Some(Answer::Jwks(body) | Answer::Body(body)) => (200, body),
                            Some(Answer::Status(code)) => (code, String::new()),
                            None => (404, String::new()),
                        };
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A real HTTP server on loopback serving a JWKS document that tests can change.
pub struct JwksServer {
    pub addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(answer: Answer, delay: Duration) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new(answer));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (a, f) = (answer.clone(), fetches.clone());
        serve(listener, delay, move |_path| {
            f.fetch_add(1, Ordering::SeqCst);
            a.lock().ok().map(|g| g.clone())
        });
        JwksServer {
            addr,
            answer,
            fetches,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn set(&self, answer: Answer) {
        if let Ok(mut guard) = self.answer.lock() {
            *guard = answer;
        }
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A real OpenID provider on loopback: its metadata at `/.well-known/openid-configuration` and
/// its JWKS at `/jwks.json`, each an answer tests change, each fetch counted.
pub struct OidcProvider {
    pub addr: SocketAddr,
    metadata: Arc<Mutex<Answer>>,
    keys: Arc<Mutex<Answer>>,
    metadata_fetches: Arc<AtomicUsize>,
    jwks_fetches: Arc<AtomicUsize>,
}

impl OidcProvider {
    /// A provider whose metadata names itself as issuer and its own `/jwks.json`.
    pub async fn start(keys: Answer) -> OidcProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let provider = OidcProvider {
            addr,
            metadata: Arc::new(Mutex::new(Answer::Status(500))),
            keys: Arc::new(Mutex::new(keys)),
            metadata_fetches: Arc::default(),
            jwks_fetches: Arc::default(),
        };
        provider.set_metadata(Answer::Body(provider.metadata_naming(&provider.issuer())));
        let (metadata, keys) = (provider.metadata.clone(), provider.keys.clone());
        let (mf, jf) = (
            provider.metadata_fetches.clone(),
            provider.jwks_fetches.clone(),
        );
        serve(listener, Duration::ZERO, move |path| match path {
            "/.well-known/openid-configuration" => {
                mf.fetch_add(1, Ordering::SeqCst);
                metadata.lock().ok().map(|g| g.clone())
            }
            "/jwks.json" => {
                jf.fetch_add(1, Ordering::SeqCst);
                keys.lock().ok().map(|g| g.clone())
            }
            _ => None,
        });
        provider
    }

    /// Its own issuer identifier: its base URL.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Metadata naming `issuer`, with this provider's JWKS.
    pub fn metadata_naming(&self, issuer: &str) -> String {
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{}/jwks.json", self.issuer()),
            "authorization_endpoint": format!("{}/authorize", self.issuer()),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string()
    }

    pub fn set_metadata(&self, answer: Answer) {
        if let Ok(mut guard) = self.metadata.lock() {
            *guard = answer;
        }
    }

    pub fn set_keys(&self, answer: Answer) {
        if let Ok(mut guard) = self.keys.lock() {
            *guard = answer;
        }
    }

    pub fn metadata_fetches(&self) -> usize {
        self.metadata_fetches.load(Ordering::SeqCst)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}
