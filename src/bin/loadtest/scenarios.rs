//! What is measured: each scenario is a request shape (path and headers) with the answer it must
//! get, and whether it may reach the origin.

use edgewarden::mint::{self, TokenSpec};

pub const ISSUER: &str = "https://id.loadtest.edgewarden";
pub const AUDIENCE: &str = "api";
pub const PRIVATE_PEM: &str = include_str!("../../../tests/data/keys/rsa2048-private.pem");
pub const PUBLIC_PEM: &str = include_str!("../../../tests/data/keys/rsa2048-public.pem");
/// Signs well-formed tokens that do not verify under `PUBLIC_PEM`.
const OTHER_PRIVATE_PEM: &str = include_str!("../../../tests/data/keys/rsa2048-b-private.pem");

/// Which gateway configuration a scenario needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The standard configuration (token cache on).
    Standard,
    /// edgewarden with the token cache off.
    NoCache,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub path: &'static str,
    pub headers: Vec<(String, String)>,
    /// The status every answer must have.
    pub status: u16,
    pub setup: Setup,
    /// HAProxy does the same job (plugins have no HAProxy equivalent).
    pub peer: bool,
}

impl Scenario {
    pub fn reaches_origin(&self) -> bool {
        self.status == 200
    }
}

/// Tokens used by the scenarios.
pub struct Tokens {
    pub valid: String,
    pub expired: String,
    pub bad_signature: String,
}

fn spec(expires_in: i64) -> TokenSpec {
    TokenSpec {
        alg: "RS256".into(),
        kid: Some("load-1".into()),
        claims: Some(r#"{"email": "load@example.com"}"#.into()),
        sub: Some("load-user".into()),
        iss: Some(ISSUER.into()),
        aud: vec![AUDIENCE.into()],
        scope: None,
        expires_in,
    }
}

impl Tokens {
    pub fn mint() -> Result<Tokens, String> {
        Ok(Tokens {
            valid: mint::token(PRIVATE_PEM, &spec(6 * 3600))?,
            expired: mint::token(PRIVATE_PEM, &spec(-3600))?,
            bad_signature: mint::token(OTHER_PRIVATE_PEM, &spec(6 * 3600))?,
        })
    }
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {token}"))]
}

/// Every scenario, in report order. The attack mix is built from these by the runner.
pub fn all(tokens: &Tokens) -> Vec<Scenario> {
    let with_country = |token: &str| {
        let mut h = bearer(token);
        h.push(("cf-ipcountry".into(), "GB".into()));
        h
    };
    vec![
        Scenario {
            name: "no_token",
            what: "no Authorization header → 401",
            path: "/api/item",
            headers: Vec::new(),
            status: 401,
            setup: Setup::Standard,
            peer: true,
        },
        Scenario {
            name: "malformed",
            what: "Bearer value that is not a JWS → 401",
            path: "/api/item",
            headers: bearer("not-a.valid.token"),
            status: 401,
            setup: Setup::Standard,
            peer: true,
        },
        Scenario {
            name: "bad_signature",
            what: "well-formed RS256 token signed by another key → 401",
            path: "/api/item",
            headers: bearer(&tokens.bad_signature),
            status: 401,
            setup: Setup::Standard,
            peer: true,
        },
        Scenario {
            name: "expired",
            what: "validly signed, exp an hour ago → 401",
            path: "/api/item",
            headers: bearer(&tokens.expired),
            status: 401,
            setup: Setup::Standard,
            peer: true,
        },
        Scenario {
            name: "valid_cached",
            what: "valid RS256 token, proxied (edgewarden: token cache hit)",
            path: "/api/item",
            headers: bearer(&tokens.valid),
            status: 200,
            setup: Setup::Standard,
            peer: true,
        },
        Scenario {
            name: "valid_no_cache",
            what: "valid RS256 token, proxied, edgewarden's token cache off",
            path: "/api/item",
            headers: bearer(&tokens.valid),
            status: 200,
            setup: Setup::NoCache,
            peer: true,
        },
        Scenario {
            name: "plugins_warm",
            what: "valid token + identity_headers + geo_router (warm instances)",
            path: "/plugins/item",
            headers: with_country(&tokens.valid),
            status: 200,
            setup: Setup::Standard,
            peer: false,
        },
        Scenario {
            name: "plugins_fresh",
            what: "the same with isolation = \"fresh\"",
            path: "/fresh/item",
            headers: with_country(&tokens.valid),
            status: 200,
            setup: Setup::Standard,
            peer: false,
        },
        Scenario {
            name: "auth_off",
            what: "no token checks, proxy only",
            path: "/open/item",
            headers: Vec::new(),
            status: 200,
            setup: Setup::Standard,
            peer: true,
        },
    ]
}
