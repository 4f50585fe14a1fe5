//! `edgewarden check` and `run` as commands: their exit codes, and that they print every problem
//! of a bad file at once. What the problems say for each kind of mistake is checked in-process
//! against golden files (`tests/config.rs`, `tests/config/invalid/`); the cases here take their
//! input and expected report from there.

use std::path::Path;

use crate::support::*;

/// The golden files of `tests/config.rs`.
const INVALID: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/config/invalid");

/// The report the binary printed, with paths relative to [`INVALID`] as in the golden files.
fn relative(text: &str) -> String {
    text.replace(&format!("{INVALID}/"), "")
}

/// The golden report for `tests/config/invalid/NAME.toml`, and that file's path.
fn golden(name: &str) -> (String, std::path::PathBuf) {
    let input = Path::new(INVALID).join(format!("{name}.toml"));
    let report = std::fs::read_to_string(input.with_extension("errors")).expect("golden report");
    (report, input)
}

/// A valid file: one open route to one origin.
fn valid() -> Config {
    Config::new()
        .server("listen", ["127.0.0.1:18080"])
        .with(origin("global", &["127.0.0.1:9000".parse().expect("addr")]))
        .with(route("api", "/api", "global"))
}

#[test]
fn check_prints_every_problem_of_a_bad_file_and_exits_1() {
    let (report, input) = golden("four_mistakes");
    assert!(report.starts_with("four_mistakes.toml: 4 problems found\n"));
    let out = edgewarden(&["check"], &input);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(relative(&out.stderr), report);
    assert_eq!(out.stdout, "");
}

#[test]
fn run_refuses_a_bad_file_with_the_same_report_as_check() {
    let (report, input) = golden("empty_listen");
    let out = edgewarden(&["run"], &input);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(relative(&out.stderr), report);
}

#[test]
fn a_valid_file_passes_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = edgewarden(&["check"], &valid().write_in(dir.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("OK (1 routes, 1 origins)"),
        "{}",
        out.stdout
    );
}

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edgewarden.toml");
const DEMO_JWKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/jwks.json");

#[test]
fn the_shipped_config_passes_check_only_with_the_demo_key_allowed() {
    let shipped = Path::new(SHIPPED);
    let out = edgewarden(&["check", "--allow-demo-key"], shipped);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = edgewarden(&["check"], shipped);
    assert_eq!(out.code, 1);
    for expected in [
        "issuers[0] (demo): ",
        "issuer \"demo\" (https://id.demo.edgewarden): the keys hold the repository's public demo key",
        "`edgewarden-dev demo`",
        "--allow-demo-key",
    ] {
        assert!(
            out.stderr.contains(expected),
            "{expected:?} not in\n{}",
            out.stderr
        );
    }
}

/// A configuration in `dir` trusting the demo key under another name and kid, requiring tokens
/// on its route, listening on `listen`.
fn demo_key_in_disguise(dir: &Path, listen: std::net::SocketAddr) -> std::path::PathBuf {
    let mut jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DEMO_JWKS).expect("demo JWKS"))
            .expect("JSON");
    let keys = jwks["keys"].as_array_mut().expect("keys");
    assert!(!keys.is_empty(), "no key in {DEMO_JWKS}");
    for key in keys {
        key["kid"] = serde_json::json!("prod-2026");
    }
    std::fs::write(dir.join("keys.json"), jwks.to_string()).expect("keys");
    let mut config = valid()
        .with(
            issuer()
                .set("name", "corp")
                .set("issuer", "https://id.corp.example")
                .set("algorithms", ["RS256"])
                .set("jwks_file", "keys.json"),
        )
        .server("listen", [listen.to_string()]);
    config.route_mut("api").update("auth", "required");
    config.write_in(dir)
}

#[test]
fn the_demo_key_is_recognised_by_its_material_and_refused_by_check_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = demo_key_in_disguise(dir.path(), free_port());
    let refusal =
        "issuer \"corp\" (https://id.corp.example): the keys hold the repository's public demo key";
    for command in ["check", "run"] {
        let out = edgewarden(&[command], &path);
        assert_eq!(out.code, 1, "{command}: {}", out.stderr);
        assert!(out.stderr.contains(refusal), "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains("keys.json"),
            "{command}: {}",
            out.stderr
        );
    }
    let out = edgewarden(&["check", "--allow-demo-key"], &path);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_allow_demo_key_serves_tokens_the_demo_key_signed() {
    let demo = Signer::rsa(
        include_str!("../../config/demo/demo-signing-key.pem"),
        "demo-2026",
    );
    let origin_ = echo_origin("o").await;
    let config = Config::new()
        .with(issuer().set("jwks_file", DEMO_JWKS))
        .with(origin("o", &[origin_.addr]))
        .with(route("api", "/", "o").set("auth", "required"));
    let gw = Gateway::builder(config)
        .flag("--allow-demo-key")
        .start()
        .await;
    assert!(
        gw.stderr().contains("--allow-demo-key"),
        "the start does not warn:\n{}",
        gw.stderr()
    );
    let resp = req("GET", "/x")
        .bearer(&demo.token(&good_claims("demo-user")))
        .send(gw.addr)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.origin_saw()["x-internal-user-id"], ["demo-user"]);
}

/// `check --offline --root`: a deployment's file is checked off the machine it runs on. Service
/// names are not looked up (but must still be host names), and absolute paths are read under the
/// root; without the flags the same file fails on both.
#[test]
fn check_offline_reads_absolute_paths_under_the_root_and_looks_up_no_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/edgewarden-admin")).expect("root");
    std::fs::write(root.join("etc/edgewarden-admin/token"), "a".repeat(40)).expect("token");
    let config = |upstream: &str| {
        valid()
            .server("admin_listen", "127.0.0.1:18081")
            .server("admin_token_file", "/etc/edgewarden-admin/token")
            .with(
                origin("svc", &["127.0.0.1:9".parse().expect("addr")]).set("upstreams", [upstream]),
            )
            .write_in(dir.path())
    };
    let file = config("orders.shop.invalid:8080");
    let on_the_machine = edgewarden(&["check"], &file);
    assert_eq!(on_the_machine.code, 1, "{}", on_the_machine.stdout);
    assert!(
        on_the_machine.stderr.contains("cannot resolve"),
        "{}",
        on_the_machine.stderr
    );
    assert!(
        on_the_machine
            .stderr
            .contains("/etc/edgewarden-admin/token"),
        "{}",
        on_the_machine.stderr
    );

    let root_arg = root.display().to_string();
    let offline = edgewarden(&["check", "--offline", "--root", &root_arg], &file);
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    assert!(offline.stdout.contains("OK"), "{}", offline.stdout);

    let bad_name = config("not a host!:8080");
    let still_checked = edgewarden(&["check", "--offline", "--root", &root_arg], &bad_name);
    assert_eq!(still_checked.code, 1);
    assert!(
        still_checked.stderr.contains("is not a host name"),
        "{}",
        still_checked.stderr
    );
}
