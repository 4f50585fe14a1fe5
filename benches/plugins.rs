//! Policy plugin benchmarks (criterion): what running a route's chain of Python policies costs
//! inside the gateway process, from the request header in to the applied decision out, with the
//! shipped plugins (`python-plugins/`) built by componentize-py and precompiled, as the gateway does.
//!
//! - `plugin_chain/none`: a route without policies (the floor: the chain lookup).
//! - `plugin_chain/bare_warm`: the crossing alone (`tests/plugins/bare`: the glue's entry point
//!   replaced by one that answers "unchanged" without reading the request): the host's side of a
//!   call and componentize-py's lifting and lowering, with no SDK code.
//! - `plugin_chain/empty_warm`: a plugin that forwards unchanged (`tests/plugins/forward_only`):
//!   the floor of a warm call, i.e. crossing into Python and back.
//! - `plugin_chain/identity_warm`, `geo_warm`: one policy, warm instance pool.
//! - `plugin_chain/geo_warm_browser_headers`: `geo_warm` on a request with a browser's 16
//!   headers instead of 5.
//! - `plugin_chain/identity_geo_warm`: two policies in a row.
//! - `plugin_chain/geo_cached`, `identity_cached`: the shipped policies with their `[cache]`: after
//!   the first call, a remembered decision applied without entering WebAssembly.
//! - `plugin_chain/geo_fresh`: `isolation = "fresh"`, back to back: each call starts from the
//!   state saved after `init` and is followed by putting back the pages it wrote, so this is the
//!   whole CPU cost per request (call + restore).
//! - `fresh_request_path/geo`: the same policy on a two-worker runtime, one call every 8 ms (the
//!   gaps untimed): what a request waits for when the gateway is not saturated.
//!
//! Every case is checked for its exact decision before it is timed. Each call gets its own copy of
//! the request (the copy is timed too, so `none` includes it), as the gateway gives each call a
//! new request. Calls are driven by a current-thread tokio runtime's `block_on` (about 0.19 µs per
//! call, see `benches/jwt.rs`).
//! Needs `.venv` (scripts/setup); the first run builds the plugins into `.cache/plugins`.
//!
//! Run: `cargo bench --bench plugins -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use edgewarden::config::Config;
use edgewarden::generation::Generation;
use edgewarden::plugins::{Context, Outcome};
use pingora::http::RequestHeader;

const ROUTES: [(&str, &str); 10] = [
    ("none", ""),
    ("bare_warm", "\"bare\""),
    ("empty_warm", "\"empty\""),
    ("identity_warm", "\"identity\""),
    ("geo_warm", "\"geo\""),
    ("geo_warm_browser_headers", "\"geo\""),
    ("identity_geo_warm", "\"identity\", \"geo\""),
    ("geo_fresh", "\"geo-fresh\""),
    ("geo_cached", "\"geo-cached\""),
    ("identity_cached", "\"identity-cached\""),
];

/// What a browser sends besides the five headers of `request()`.
const BROWSER_HEADERS: [(&str, &str); 11] = [
    ("accept-language", "en-GB,en;q=0.9,fr;q=0.8"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("referer", "https://shop.example.com/shop/"),
    (
        "cookie",
        "session=4f2a9c1e7b3d; theme=dark; consent=analytics",
    ),
    (
        "sec-ch-ua",
        "\"Chromium\";v=\"142\", \"Not_A Brand\";v=\"24\"",
    ),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "same-origin"),
    ("upgrade-insecure-requests", "1"),
];

fn setup(dir: &Path) -> Generation {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policies dir");
    // The shipped plugins plus the empty one, under one plugins directory with the project's
    // virtualenv beside it (where the plugin builder looks for componentize-py).
    let plugins_dir = dir.join("plugins");
    std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
    std::os::unix::fs::symlink(root.join(".venv"), dir.join(".venv")).expect("link .venv");
    for (name, source) in [
        ("geo_router", "python-plugins/geo_router"),
        ("identity_headers", "python-plugins/identity_headers"),
        ("forward_only", "tests/plugins/forward_only"),
        ("bare", "tests/plugins/bare"),
    ] {
        std::os::unix::fs::symlink(root.join(source), plugins_dir.join(name)).expect("link");
    }
    for (policy, plugin) in [("empty", "forward_only"), ("bare", "bare")] {
        std::fs::write(
            policies.join(format!("{policy}.toml")),
            format!(
                "plugin = \"{plugin}\"\ntimeout_ms = 10\nmemory_mb = 64\non_error = \"deny\"\n"
            ),
        )
        .expect("write");
    }
    // The shipped policies as they are (`-cached`), and without their `[cache]` table: the other
    // cases measure calls into the plugin.
    for name in ["identity", "geo"] {
        let text = std::fs::read_to_string(root.join(format!("policies/{name}.toml")))
            .expect("shipped policy");
        let uncached = without_cache(&text);
        assert_ne!(uncached, text, "policies/{name}.toml has a [cache] table");
        std::fs::write(policies.join(format!("{name}.toml")), uncached).expect("write");
        std::fs::write(policies.join(format!("{name}-cached.toml")), text).expect("write");
    }
    let geo = without_cache(
        &std::fs::read_to_string(root.join("policies/geo.toml")).expect("geo policy"),
    );
    let fresh = geo.replace("isolation = \"warm\"", "isolation = \"fresh\"");
    assert_ne!(fresh, geo, "policies/geo.toml states its isolation");
    std::fs::write(policies.join("geo-fresh.toml"), fresh).expect("write");

    let mut text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\npolicies_dir = \"{}\"\nplugins_dir = \"{}\"\n\
         plugin_cache_dir = \"{}\"\n",
        policies.display(),
        plugins_dir.display(),
        root.join(".cache/plugins").display(),
    );
    for origin in ["global", "uk", "fr"] {
        text.push_str(&format!(
            "[[origins]]\nname = \"{origin}\"\nupstreams = [\"127.0.0.1:9\"]\n"
        ));
    }
    for (name, policies) in ROUTES {
        text.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\norigin = \"global\"\n\
             auth = \"off\"\npolicies = [{policies}]\n"
        ));
    }
    let mut config = Config::from_str(&text, &dir.join("bench.toml")).expect("bench config");
    // One warm instance per policy, as the measurements assume.
    config.server.threads = 1;
    Generation::build(config).expect("bench generation").0
}

/// A policy file without its `[cache]` table (the header and every line up to the next header).
fn without_cache(text: &str) -> String {
    let mut inside = false;
    let mut kept = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line.trim() == "[cache]";
        }
        if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

fn request(browser: bool) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/shop/basket?item=42", None).expect("request");
    for (name, value) in [
        ("host", "shop.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "*/*"),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
        ("x-user-location", "GB"),
    ] {
        req.insert_header(name, value).expect("header");
    }
    if browser {
        for (name, value) in BROWSER_HEADERS {
            req.insert_header(name, value).expect("header");
        }
    }
    req
}

fn plugin_chain(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let generation = setup(dir.path());
    let plugins = &generation.plugins;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let claims = r#"{"sub":"alice","email":"alice@example.com","iss":"https://id.example.com","aud":"api","exp":4102444800}"#;
    let parsed: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(claims).expect("claims");
    let mut group = c.benchmark_group("plugin_chain");
    for (index, (name, _)) in ROUTES.iter().enumerate() {
        let ctx = Context::new(
            "203.0.113.7".to_string(),
            &generation.routes()[index].config.name,
            Some(&parsed),
            Some("GB".to_string()),
            &generation.shield,
        );
        let base = request(*name == "geo_warm_browser_headers");
        let mut req = base.clone();
        // The decision each case must produce.
        let chain = &generation.routes()[index].policies;
        let outcome = rt.block_on(plugins.run(chain, &mut req, &ctx));
        let origin = match outcome {
            Outcome::Forward { origin, .. } => origin.map(|id| generation.origin(id).name.as_str()),
            _ => panic!("{name}: expected forward"),
        };
        let portal = req.headers.get("x-portal").map(|v| v.as_bytes().to_vec());
        let user = req
            .headers
            .get("x-internal-user-id")
            .map(|v| v.as_bytes().to_vec());
        let (want_origin, want_portal, want_user) = match *name {
            "none" | "bare_warm" | "empty_warm" => (None, None, None),
            "identity_warm" | "identity_cached" => (None, None, Some(&b"alice"[..])),
            "geo_warm" | "geo_warm_browser_headers" | "geo_fresh" | "geo_cached" => {
                (Some("uk"), Some(&b"uk"[..]), None)
            }
            _ => (Some("uk"), Some(&b"uk"[..]), Some(&b"alice"[..])),
        };
        assert_eq!(origin, want_origin, "{name}");
        assert_eq!(portal.as_deref(), want_portal, "{name}");
        assert_eq!(user.as_deref(), want_user, "{name}");

        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut req = base.clone();
                black_box(rt.block_on(plugins.run(chain, &mut req, &ctx)));
                req
            })
        });
    }
    group.finish();

    // Fresh isolation as a request sees it on an idle gateway: one call now and then, on a
    // two-worker runtime.
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let index = ROUTES
        .iter()
        .position(|(name, _)| *name == "geo_fresh")
        .expect("fresh route");
    let route = &generation.routes()[index];
    let ctx = Context::new(
        "203.0.113.7".to_string(),
        &route.config.name,
        Some(&parsed),
        Some("GB".to_string()),
        &generation.shield,
    );
    let base = request(false);
    let mut group = c.benchmark_group("fresh_request_path");
    group.bench_function("geo", |b| {
        b.iter_custom(|iters| {
            let mut timed = std::time::Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(std::time::Duration::from_millis(8));
                let mut req = base.clone();
                let started = std::time::Instant::now();
                let outcome = workers.block_on(plugins.run(&route.policies, &mut req, &ctx));
                timed += started.elapsed();
                assert!(matches!(
                    outcome,
                    Outcome::Forward {
                        origin: Some(_),
                        ..
                    }
                ));
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, plugin_chain);
criterion_main!(benches);
