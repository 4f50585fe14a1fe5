//! What is measured: each scenario is a request shape (path and headers) with the answer it must
//! get, and whether it may reach the origin.

use edgewarden_tools::mint::{self, TokenSpec};

pub const ISSUER: &str = "https://id.loadtest.edgewarden";
pub const AUDIENCE: &str = "api";
pub const PRIVATE_PEM: &str = include_str!("../../../../tests/data/keys/rsa2048-private.pem");
pub const PUBLIC_PEM: &str = include_str!("../../../../tests/data/keys/rsa2048-public.pem");
/// Signs well-formed tokens that do not verify under `PUBLIC_PEM`.
const OTHER_PRIVATE_PEM: &str = include_str!("../../../../tests/data/keys/rsa2048-b-private.pem");

/// Which gateway configuration a scenario needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The standard configuration (token cache on).
    Standard,
    /// edgewarden with the token cache off.
    NoCache,
    /// edgewarden running only the seed's geo router (`benches/python-edge`), auth off.
    SeedGeo,
    /// The standard configuration with `[tracing]` on (ratio 0.01; `/all` at 1.0), exporting to
    /// the harness's OTLP collector.
    Traced,
}

/// The peers a scenario is measured against, in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// HAProxy with its native JWT checks.
    Haproxy,
    /// The seed's geo router as a wasi:http component, `wasmtime serve` reusing instances.
    ServeReuse,
    /// The same with `wasmtime serve`'s default: a fresh instance per request.
    ServeFresh,
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
    /// Who does the same job (the policy plugins have no HAProxy equivalent).
    pub peers: &'static [Peer],
    /// Accepted requests go on to the origin (the seed geo router answers them itself).
    pub reaches_origin: bool,
    /// The scenario that does the same without this one's policies: the report shows the CPU per
    /// request the policies add over it, measured in the same run.
    pub baseline: Option<&'static str>,
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
            peers: &[Peer::Haproxy],
            reaches_origin: false,
            baseline: None,
        },
        Scenario {
            name: "malformed",
            what: "Bearer value that is not a JWS → 401",
            path: "/api/item",
            headers: bearer("not-a.valid.token"),
            status: 401,
            setup: Setup::Standard,
            peers: &[Peer::Haproxy],
            reaches_origin: false,
            baseline: None,
        },
        Scenario {
            name: "bad_signature",
            what: "well-formed RS256 token signed by another key → 401",
            path: "/api/item",
            headers: bearer(&tokens.bad_signature),
            status: 401,
            setup: Setup::Standard,
            peers: &[Peer::Haproxy],
            reaches_origin: false,
            baseline: None,
        },
        Scenario {
            name: "expired",
            what: "validly signed, exp an hour ago → 401",
            path: "/api/item",
            headers: bearer(&tokens.expired),
            status: 401,
            setup: Setup::Standard,
            peers: &[Peer::Haproxy],
            reaches_origin: false,
            baseline: None,
        },
        Scenario {
            name: "valid_cached",
            what: "valid RS256 token, proxied (edgewarden: token cache hit)",
            path: "/api/item",
            headers: bearer(&tokens.valid),
            status: 200,
            setup: Setup::Standard,
            peers: &[Peer::Haproxy],
            reaches_origin: true,
            baseline: None,
        },
        Scenario {
            name: "valid_no_cache",
            what: "valid RS256 token, proxied, edgewarden's token cache off",
            path: "/api/item",
            headers: bearer(&tokens.valid),
            status: 200,
            setup: Setup::NoCache,
            peers: &[Peer::Haproxy],
            reaches_origin: true,
            baseline: None,
        },
        with_policies(
            "identity_warm",
            "valid token + identity_headers (one warm plugin)",
            "/identity/item",
            bearer(&tokens.valid),
        ),
        with_policies(
            "geo_warm",
            "valid token + geo_router (one warm plugin)",
            "/geo/item",
            with_country(&tokens.valid),
        ),
        with_policies(
            "plugins_warm",
            "valid token + identity_headers + geo_router (warm instances)",
            "/plugins/item",
            with_country(&tokens.valid),
        ),
        with_policies(
            "geo_cached",
            "geo_warm with the policy's [cache]: a remembered decision, no call",
            "/geo-cached/item",
            with_country(&tokens.valid),
        ),
        with_policies(
            "identity_cached",
            "identity_warm with the policy's [cache]: a remembered decision, no call",
            "/identity-cached/item",
            bearer(&tokens.valid),
        ),
        with_policies(
            "plugins_fresh",
            "the same with isolation = \"fresh\"",
            "/fresh/item",
            with_country(&tokens.valid),
        ),
        traced(
            "valid_traced_1pct",
            "valid_cached with [tracing] on, sample_ratio = 0.01",
            "/api/item",
            &tokens.valid,
        ),
        traced(
            "valid_traced_all",
            "valid_cached with every request traced and exported (trace_sample_ratio = 1.0)",
            "/all/item",
            &tokens.valid,
        ),
        Scenario {
            name: "auth_off",
            what: "no token checks, proxy only",
            path: "/open/item",
            headers: Vec::new(),
            status: 200,
            setup: Setup::Standard,
            peers: &[Peer::Haproxy],
            reaches_origin: true,
            baseline: None,
        },
        Scenario {
            name: "seed_geo_warm",
            what: "the seed's geo router answering directly; edgewarden: warm plugin, auth off",
            path: "/seed/",
            headers: location(),
            status: 200,
            setup: Setup::SeedGeo,
            peers: &[Peer::ServeReuse, Peer::ServeFresh],
            reaches_origin: false,
            baseline: None,
        },
        Scenario {
            name: "seed_geo_fresh",
            what: "the same; edgewarden: isolation = \"fresh\"",
            path: "/seed-fresh/",
            headers: location(),
            status: 200,
            setup: Setup::SeedGeo,
            peers: &[Peer::ServeFresh],
            reaches_origin: false,
            baseline: None,
        },
    ]
}

/// A valid token through a route with policies: proxied, and compared with `valid_cached` (the
/// same without policies). The policies have no HAProxy equivalent.
fn with_policies(
    name: &'static str,
    what: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
) -> Scenario {
    Scenario {
        name,
        what,
        path,
        headers,
        status: 200,
        setup: Setup::Standard,
        peers: &[],
        reaches_origin: true,
        baseline: Some("valid_cached"),
    }
}

/// A valid token through a traced gateway: compared with `valid_cached` (the same, tracing off).
fn traced(name: &'static str, what: &'static str, path: &'static str, token: &str) -> Scenario {
    Scenario {
        name,
        what,
        path,
        headers: bearer(token),
        status: 200,
        setup: Setup::Traced,
        peers: &[],
        reaches_origin: true,
        baseline: Some("valid_cached"),
    }
}

/// The seed geo router's input. `wasmtime serve` hands the component `x-user-location` as sent;
/// edgewarden takes the country from `cf-ipcountry`, which the load generator's address (a trusted
/// proxy in the load test's configuration) may state as a CDN would, and writes its own
/// `x-user-location` (a client's copy is never believed).
fn location() -> Vec<(String, String)> {
    vec![
        ("x-user-location".into(), "GB".into()),
        ("cf-ipcountry".into(), "GB".into()),
    ]
}
