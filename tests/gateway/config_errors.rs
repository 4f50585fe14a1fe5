//! `edgewarden check` and `run` on bad files: every problem reported with file and key path.

use std::process::Command;

use crate::common::BIN;

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    check_in(dir.path(), text)
}

/// `edgewarden check` on `text` written as `dir/bad.toml` (relative paths resolve in `dir`).
fn check_in(dir: &std::path::Path, text: &str) -> (i32, String, String) {
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE"),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

const VALID: &str = r#"
[server]
listen = ["127.0.0.1:18080"]

[[origins]]
name = "global"
upstreams = ["127.0.0.1:9000"]

[[routes]]
name = "api"
path_prefix = "/api"
origin = "global"
auth = "off"
"#;

#[test]
fn a_file_with_four_mistakes_reports_all_four_and_exits_1() {
    let text = r#"
[server]
listen = ["127.0.0.1:18080"]
threads = "two"
work_stealing = "no"

[[origins]]
name = "global"
upstreams = ["127.0.0.1:9000"]
colour = "blue"

[[routes]]
name = "api"
path_prefix = "/api"
origin = "global"
auth = "off"

[[routes]]
name = "eu"
path_prefix = "/eu"
origin = "eu"
auth = "off"
"#;
    let (code, stderr, _) = check(text);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("FILE: 4 problems found"), "{stderr}");
    assert!(
        stderr.contains("FILE: server.threads: invalid type: string \"two\", expected u64"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "FILE: server.work_stealing: invalid type: string \"no\", expected a boolean"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("FILE: origins[0].colour: unknown key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("FILE: routes[1].origin: no origin named \"eu\""),
        "{stderr}"
    );
}

#[test]
fn a_valid_file_passes_check() {
    let (code, stderr, stdout) = check(VALID);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("OK (1 routes, 1 origins)"), "{stdout}");
}

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edgewarden.toml");
const DEMO_JWKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/jwks.json");

#[test]
fn the_shipped_config_passes_check_only_with_the_demo_key_allowed() {
    let out = Command::new(BIN)
        .args(["check", "--allow-demo-key", "-c", SHIPPED])
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(BIN)
        .args(["check", "-c", SHIPPED])
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "issuers[0] (demo): ",
        "issuer \"demo\" (https://id.demo.edgewarden): the keys hold the repository's public demo key",
        "`edgewarden-dev demo`",
        "--allow-demo-key",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
}

/// A configuration trusting the demo key under another name and kid, requiring tokens on its
/// route, listening on `listen`.
fn demo_key_in_disguise(dir: &std::path::Path, listen: std::net::SocketAddr) -> std::path::PathBuf {
    let jwks = std::fs::read_to_string(DEMO_JWKS)
        .expect("demo JWKS")
        .replace("demo-2026", "prod-2026");
    std::fs::write(dir.join("keys.json"), jwks).expect("keys");
    let text = VALID
        .replace("127.0.0.1:18080", &listen.to_string())
        .replace("auth = \"off\"", "auth = \"required\"")
        + "\n[[issuers]]\nname = \"corp\"\nissuer = \"https://id.corp.example\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\njwks_file = \"keys.json\"\n";
    let path = dir.join("edgewarden.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn the_demo_key_is_recognised_by_its_material_and_refused_by_check_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = crate::common::free_port();
    let path = demo_key_in_disguise(dir.path(), listen);
    let refusal =
        "issuer \"corp\" (https://id.corp.example): the keys hold the repository's public demo key";
    for command in ["check", "run"] {
        let out = Command::new(BIN)
            .args([command, "-c"])
            .arg(&path)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains(refusal), "{command}: {stderr}");
        assert!(stderr.contains("keys.json"), "{command}: {stderr}");
    }
    let out = Command::new(BIN)
        .args(["check", "--allow-demo-key", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn admin_token_file_problems_are_reported_with_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("short-token"), "  too-short\n").expect("token");
    for (file, expected) in [
        (
            "missing-token",
            "missing-token: cannot read the admin token",
        ),
        (
            "short-token",
            "short-token: the admin token must be at least 32 visible ASCII characters",
        ),
    ] {
        let text = VALID.replace(
            "listen = [\"127.0.0.1:18080\"]",
            &format!(
                "listen = [\"127.0.0.1:18080\"]\nthreads = \"two\"\nadmin_token_file = \"{file}\""
            ),
        );
        let (code, stderr, _) = check_in(dir.path(), &text);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("FILE: 2 problems found"), "{stderr}");
        assert!(
            stderr.contains("FILE: server.threads: invalid type"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "FILE: server.admin_token_file: {}/{expected}",
                dir.path().display()
            )),
            "{expected:?} not in\n{stderr}"
        );
        assert!(!stderr.contains("too-short"), "the token shows: {stderr}");
    }
    // A good token passes.
    std::fs::write(
        dir.path().join("good-token"),
        "\n0123456789abcdef0123456789abcdef\n",
    )
    .expect("token");
    let text = VALID.replace(
        "listen = [\"127.0.0.1:18080\"]",
        "listen = [\"127.0.0.1:18080\"]\nadmin_token_file = \"good-token\"",
    );
    let (code, stderr, _) = check_in(dir.path(), &text);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn toml_syntax_errors_name_the_file_and_line() {
    let (code, stderr, _) = check("[server\nlisten = 1\n");
    assert_eq!(code, 1);
    assert!(stderr.contains("FILE: not valid TOML"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn values_and_references_are_validated() {
    let text = r#"
[server]
listen = ["127.0.0.1:80800", "127.0.0.1:1", "127.0.0.1:1"]
admin_listen = "127.0.0.1:1"
shutdown_grace_s = 99999

[[origins]]
name = "Bad Name"
upstreams = []
connect_timeout_ms = 0
health_check = { path = "health", interval_s = 5, extra = 1 }

[[routes]]
name = "a"
path_prefix = "api/../x"
origin = "Bad Name"
auth = "sometimes"
methods = ["GET", "BAD METHOD"]
host = "http://x.example"

[[routes]]
name = "a"
path_prefix = "/same"
origin = "Bad Name"
auth = "off"

[[routes]]
name = "b"
path_prefix = "/same"
origin = "Bad Name"
auth = "off"
"#;
    let (code, stderr, _) = check(text);
    assert_eq!(code, 1);
    for expected in [
        "server.listen[0]: \"127.0.0.1:80800\" is not an IP:port address",
        "server.listen[2]: 127.0.0.1:1 is listed twice",
        "server.admin_listen: 127.0.0.1:1 is also in server.listen",
        "server.shutdown_grace_s: 99999 is out of range 0..=3600",
        "origins[0].name: \"Bad Name\" must be 1-64 characters",
        "origins[0].upstreams: needs at least one host:port",
        "origins[0].connect_timeout_ms: 0 is out of range 1..=60000",
        "origins[0].health_check.path: \"health\" must be an absolute path",
        "origins[0].health_check.extra: unknown key",
        "routes[0].path_prefix: \"api/../x\" must be a canonical absolute path",
        "routes[0].auth: \"sometimes\" is not one of",
        "routes[0].methods[1]: \"BAD METHOD\" is not an HTTP method",
        "routes[0].host: \"http://x.example\" is not a host name",
        "routes: name \"a\" is used twice",
        "routes[2]: same host, path_prefix and methods as route \"a\"",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn auth_without_issuers_and_missing_policies_are_refused() {
    let text = VALID.replace(
        "auth = \"off\"",
        "auth = \"required\"\npolicies = [\"geo\", \"../etc\"]",
    );
    let (code, stderr, _) = check(&text);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("routes[0].auth: checking tokens needs at least one [[issuers]] entry"),
        "{stderr}"
    );
    assert!(
        stderr.contains("geo.toml: cannot read policy file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes[0].policies[1]: \"../etc\" must be a policy file name"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_bad_file_with_the_same_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = []\nunknown = 1\n").expect("write");
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.listen: needs at least one address"),
        "{stderr}"
    );
    assert!(stderr.contains("server.unknown: unknown key"), "{stderr}");
    assert!(
        stderr.contains("origins: at least one [[origins]] entry is required"),
        "{stderr}"
    );
}

#[test]
fn issuer_settings_are_validated() {
    let text = r#"
[server]
listen = ["127.0.0.1:18080"]
max_token_bytes = 10
reserved_headers = ["x-ok-*", "bad header"]

[[issuers]]
name = "a"
issuer = "https://id.test"
audiences = []
algorithms = ["RS256", "HS256", "none"]
jwks_url = "http://id.example.com/jwks.json"
leeway_s = 9999
claims_to_headers = { sub = "bad header", "org..id" = "x-org" }

[[issuers]]
name = "b"
issuer = "https://other.test"
audiences = ["api"]
algorithms = ["ES256"]
jwks_file = "keys.json"
public_key_pem = "x"

[[origins]]
name = "global"
upstreams = ["127.0.0.1:9000"]

[[routes]]
name = "api"
path_prefix = "/api"
origin = "global"
auth = "required"
token_from = ["header", "cookie:", "form:x"]

[[routes]]
name = "open"
path_prefix = "/open"
origin = "global"
auth = "off"
issuers = ["c"]
required_scopes = ["read"]
"#;
    let (code, stderr, _) = check(text);
    assert_eq!(code, 1);
    for expected in [
        "server.max_token_bytes: 10 is out of range 256..=65536",
        "server.reserved_headers[1]: \"bad header\" is not a header name",
        "issuers[0].audiences: needs at least one non-empty audience",
        "issuers[0].algorithms[1]: \"HS256\" is not supported",
        "issuers[0].algorithms[2]: \"none\" is not supported",
        "issuers[0].jwks_url: \"http://id.example.com/jwks.json\" must use https",
        "issuers[0].leeway_s: 9999 is out of range 0..=600",
        "issuers[0].claims_to_headers.\"sub\": \"bad header\" is not a valid header name",
        "issuers[0].claims_to_headers.\"org..id\": claim path must be names separated by dots",
        "issuers[1].jwks_url: give only one of jwks_url, jwks_file and public_key_pem",
        "routes[0].issuers: several issuers are configured: list the ones this route accepts",
        "routes[0].token_from[1]: \"cookie:\" is not",
        "routes[0].token_from[2]: \"form:x\" is not",
        "routes[1].issuers: no issuer named \"c\"",
        "routes[1].required_scopes: needs auth = \"required\" or \"optional\"",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_loads_key_files_and_refuses_weak_or_broken_keys() {
    let weak = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keys/rsa1024-public.pem"
    ))
    .expect("key");
    let config = format!(
        "{}\n[[issuers]]\nname = \"main\"\nissuer = \"https://id.test\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\npublic_key_pem = \"\"\"\n{weak}\"\"\"\n",
        VALID.replace("auth = \"off\"", "auth = \"required\"")
    );
    let (code, stderr, _) = check(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("issuers[0] (main): RSA key of 1024 bits is under 2048"),
        "{stderr}"
    );

    let missing = config.replace(
        &format!("public_key_pem = \"\"\"\n{weak}\"\"\""),
        "jwks_file = \"nope.json\"",
    );
    let (code, stderr, _) = check(&missing);
    assert_eq!(code, 1);
    assert!(stderr.contains("nope.json"), "{stderr}");
}

#[test]
fn geo_mistakes_are_reported_together() {
    let text = VALID.replace(
        "listen = [\"127.0.0.1:18080\"]",
        "listen = [\"127.0.0.1:18080\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.1.2.3/8\", \"nope\"]",
    ) + "\n[geo]\nmmdb = \"missing.mmdb\"\ncountry_header = \"bad header\"\nshade = 1\n";
    let (code, stderr, _) = check(&text);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "FILE: server.trusted_proxies[1]: \"10.1.2.3/8\" has host bits set (did you mean \"10.0.0.0/8\"?)",
        "FILE: server.trusted_proxies[2]: \"nope\" is not an IP address or CIDR",
        "FILE: geo.mmdb: ",
        "missing.mmdb: not a readable MaxMind database",
        "FILE: geo.country_header: \"bad header\" is not a header name",
        "FILE: geo.shade: unknown key",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn a_country_header_without_trusted_proxies_is_refused() {
    let text = format!("{VALID}\n[geo]\ncountry_header = \"cf-ipcountry\"\n");
    let (code, stderr, _) = check(&text);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("FILE: geo.country_header: is only honoured from server.trusted_proxies"),
        "{stderr}"
    );
}

#[test]
fn policy_file_limits_are_validated_all_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("policies")).expect("policies dir");
    std::fs::create_dir_all(dir.path().join("plugins/p")).expect("plugin dir");
    std::fs::write(dir.path().join("plugins/p/plugin.py"), "").expect("plugin");
    std::fs::write(
        dir.path().join("policies/limits.toml"),
        "plugin = \"p\"\ntimeout_ms = 200\ndeadline_ms = 100\nmemory_mb = 2\nisolation = \"cold\"\n",
    )
    .expect("policy");
    let text = VALID
        .replace(
            "[server]\n",
            "[server]\npolicies_dir = \"policies\"\nplugins_dir = \"plugins\"\n",
        )
        .replace("auth = \"off\"", "auth = \"off\"\npolicies = [\"limits\"]");
    let (code, stderr, _) = check_in(dir.path(), &text);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "limits.toml: deadline_ms: 100 is below timeout_ms (200)",
        "limits.toml: memory_mb: 2 is out of range 16..=1024",
        "limits.toml: isolation: \"cold\" is not \"warm\" or \"fresh\"",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn observability_settings_are_checked_with_the_rest() {
    let text = VALID
        .replace(
            "listen = [\"127.0.0.1:18080\"]",
            "listen = [\"127.0.0.1:18080\"]\ntrace_secret = \"short\"",
        )
        .replace(
            "auth = \"off\"",
            "auth = \"off\"\npolicies = [{ policy = \"p\", mode = \"dry-run\" }]",
        )
        + "\n[access_log]\nsample_one_in = 0\nformat = \"clf\"\n";
    let (code, stderr, _) = check(&text);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "FILE: server.trace_secret: must be at least 16 visible ASCII characters",
        "FILE: routes[0].policies[0].mode: \"dry-run\" is not \"enforce\" or \"shadow\"",
        "FILE: access_log.sample_one_in:",
        "FILE: access_log.format: unknown key",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
}

#[test]
fn tls_settings_that_would_fail_or_skip_verification_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello").expect("write");
    let text = VALID
        .replace(
            "listen = [\"127.0.0.1:18080\"]",
            "listen = [\"127.0.0.1:18080\", { addr = \"127.0.0.1:18443\", tls = { cert = \"missing.pem\", key = \"missing.key\" } }, \
             { addr = \"127.0.0.1:18444\", tls = { cert = \"not-a-cert.pem\", key = \"not-a-cert.pem\" } }]",
        )
        .replace(
            "upstreams = [\"127.0.0.1:9000\"]",
            "upstreams = [\"127.0.0.1:9000\"]\ntls = true\nsni = \"\"\nca_file = \"not-a-cert.pem\"",
        );
    let (code, stderr, _) = check_in(dir.path(), &text);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "FILE: server.listen[1].tls: ",
        "missing.pem: No such file",
        "FILE: server.listen[2].tls: ",
        "no PEM certificate in the first or no PEM private key in the second",
        "FILE: origins[0].sni: must name the host",
        "FILE: origins[0].ca_file: ",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
}

#[test]
fn the_canonical_request_keys_report_every_mistake_at_once() {
    let text = r#"
[server]
listen = ["127.0.0.1:18080"]
drop_underscore_headers = "yes"

[[origins]]
name = "global"
upstreams = ["127.0.0.1:9000"]

[[routes]]
name = "encoded"
path_prefix = "/%61pi"
origin = "global"
auth = "off"
allow_path_parameters = 1

[[routes]]
name = "params"
path_prefix = "/api;v=1"
origin = "global"
auth = "off"
case_insensitive = "sometimes"

[[routes]]
name = "ported"
host = "API.example.com:8443"
path_prefix = "/a//b"
origin = "global"
auth = "off"
"#;
    let (code, stderr, _) = check(text);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "FILE: 7 problems found",
        "FILE: server.drop_underscore_headers: invalid type: string \"yes\", expected a boolean",
        "FILE: routes[0].path_prefix: \"/%61pi\" must be a canonical absolute path",
        "FILE: routes[0].allow_path_parameters: invalid type: integer `1`, expected a boolean",
        "FILE: routes[1].path_prefix: \"/api;v=1\" must be a canonical absolute path",
        "FILE: routes[1].case_insensitive: invalid type: string \"sometimes\", expected a boolean",
        "FILE: routes[2].host: \"API.example.com:8443\" is not a host name (no port, scheme or path)",
        "FILE: routes[2].path_prefix: \"/a//b\" must be a canonical absolute path",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
