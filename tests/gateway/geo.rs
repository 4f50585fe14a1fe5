//! The gateway decides the client's country ([geo]) and the shipped geo_router plugin routes on
//! it: a MaxMind database built at test time, real origins, real plugin builds.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Client source addresses and what the test database says about them.
const GB_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 61, 0, 1);
const FR_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 62, 0, 1);
const US_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 63, 0, 1);
/// A proxy in front of the gateway (in trusted_proxies, not in the database).
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 70, 0, 1);

fn make_geo_db(path: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/make-geo-db"))
        .arg(path)
        .args(["127.61.0.0/16=GB", "127.62.0.0/16=FR", "127.63.0.0/16=US"])
        .output()
        .expect("run scripts/make-geo-db (scripts/setup prepares .venv)");
    assert!(
        out.status.success(),
        "make-geo-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Portals {
    uk: EchoOrigin,
    fr: EchoOrigin,
    global: EchoOrigin,
}

impl Portals {
    fn hits(&self) -> [usize; 3] {
        [self.uk.hits(), self.fr.hits(), self.global.hits()]
    }
}

/// Three origins; `/shop` runs geo_router (GB → uk, FR → fr, else global, portal in x-portal).
async fn geo_gateway() -> (Gateway, Portals) {
    let portals = Portals {
        uk: echo_origin("uk").await,
        fr: echo_origin("fr").await,
        global: echo_origin("global").await,
    };
    let config = Config::new()
        .server("trusted_proxies", ["127.70.0.0/16"])
        .with(origin("uk", &[portals.uk.addr]))
        .with(origin("fr", &[portals.fr.addr]))
        .with(origin("global", &[portals.global.addr]))
        .with(route("shop", "/shop", "global").set("policies", ["geo"]))
        .with(
            section("geo")
                .set("mmdb", "geo.mmdb")
                .set("country_header", "cf-ipcountry"),
        );
    let geo_router = policy("geo_router")
        .set("allow_headers", ["x-portal"])
        .set("allow_origins", ["uk", "fr", "global"])
        .set(
            "settings",
            serde_json::json!({"GB": "uk", "FR": "fr", "default": "global", "header": "x-portal"}),
        );
    let gw = Gateway::builder(config)
        .setup(|dir| make_geo_db(&dir.join("geo.mmdb")))
        .plugin("geo_router", "python-plugins/geo_router")
        .policy("geo", geo_router)
        .start()
        .await;
    (gw, portals)
}

/// What the origin saw of the country and the portal.
fn seen(resp: &Response) -> (Option<String>, Option<String>) {
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    let saw = resp.origin_saw();
    let one = |name: &str| {
        saw.get(name).map(|values| {
            assert_eq!(values.len(), 1, "{name}: {values:?}");
            values[0].clone()
        })
    };
    (one("x-user-location"), one("x-portal"))
}

fn pair(country: Option<&str>, portal: &str) -> (Option<String>, Option<String>) {
    (country.map(str::to_string), Some(portal.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_from_gb_fr_and_us_reach_three_different_origins() {
    let (gw, portals) = geo_gateway().await;
    let gb = req("GET", "/shop/").from(GB_CLIENT).send(gw.addr).await;
    assert_eq!(seen(&gb), pair(Some("GB"), "uk"));
    assert_eq!(portals.hits(), [1, 0, 0]);
    let fr = req("GET", "/shop/").from(FR_CLIENT).send(gw.addr).await;
    assert_eq!(seen(&fr), pair(Some("FR"), "fr"));
    assert_eq!(portals.hits(), [1, 1, 0]);
    let us = req("GET", "/shop/").from(US_CLIENT).send(gw.addr).await;
    assert_eq!(seen(&us), pair(Some("US"), "global"));
    assert_eq!(portals.hits(), [1, 1, 1]);
    // Not in the database: no country header at all, default portal.
    let unknown = req("GET", "/shop/")
        .from(Ipv4Addr::LOCALHOST)
        .send(gw.addr)
        .await;
    assert_eq!(seen(&unknown), pair(None, "global"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_location_from_an_untrusted_client_is_ignored() {
    let (gw, portals) = geo_gateway().await;
    let spoofed = [
        ("X-User-Location", "FR"),
        ("x-user-location", "GB"),
        ("cf-ipcountry", "FR"),
        ("x-forwarded-for", "127.62.0.9"),
    ];
    let resp = req("GET", "/shop/")
        .from(US_CLIENT)
        .headers(&spoofed)
        .send(gw.addr)
        .await;
    assert_eq!(seen(&resp), pair(Some("US"), "global"));
    let resp = req("GET", "/shop/")
        .from(Ipv4Addr::LOCALHOST)
        .header("x-user-location", "GB")
        .send(gw.addr)
        .await;
    assert_eq!(seen(&resp), pair(None, "global"), "removed, not passed on");
    assert_eq!(portals.hits(), [0, 0, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_may_state_the_country_or_forward_the_client_address() {
    let (gw, portals) = geo_gateway().await;
    let cdn = req("GET", "/shop/")
        .from(PROXY)
        .header("cf-ipcountry", "GB")
        .send(gw.addr)
        .await;
    assert_eq!(seen(&cdn), pair(Some("GB"), "uk"));
    // A trusted hop speaks only through the CDN header: a copy of the gateway's own header is
    // replaced, whether alone or beside the CDN's.
    let own = req("GET", "/shop/")
        .from(PROXY)
        .header("x-user-location", "fr")
        .send(gw.addr)
        .await;
    assert_eq!(seen(&own), pair(None, "global"));
    let both = [("cf-ipcountry", "GB"), ("x-user-location", "FR")];
    let resp = req("GET", "/shop/")
        .from(PROXY)
        .headers(&both)
        .send(gw.addr)
        .await;
    assert_eq!(seen(&resp), pair(Some("GB"), "uk"));
    // The client address comes from X-Forwarded-For (rightmost untrusted hop) and is looked up.
    let forwarded = [("x-forwarded-for", "127.61.0.7, 127.62.0.9")];
    let resp = req("GET", "/shop/")
        .from(PROXY)
        .headers(&forwarded)
        .send(gw.addr)
        .await;
    assert_eq!(seen(&resp), pair(Some("FR"), "fr"));
    // A value that is not a country is not believed; the proxy itself is not in the database.
    let garbage = req("GET", "/shop/")
        .from(PROXY)
        .header("cf-ipcountry", "FRANCE")
        .send(gw.addr)
        .await;
    assert_eq!(seen(&garbage), pair(None, "global"));
    assert_eq!(portals.hits(), [2, 1, 2]);
}
