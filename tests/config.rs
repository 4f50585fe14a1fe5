//! Bad configuration files and what the gateway reports for them, as golden files.
//!
//! Each `tests/config/invalid/NAME.toml` is checked in-process the way `edgewarden check` checks a
//! file (`Config::load`, then `Generation::check`: nothing is started), and the report, as `check`
//! prints it, must be exactly `tests/config/invalid/NAME.errors`. Paths in a report are relative
//! to `tests/config/invalid/`; files that a case needs beside it are under `files/`.
//!
//! To add a case: write `NAME.toml`, add `NAME` to `cases!` below, run the case with
//! `EDGEWARDEN_BLESS=1` to write `NAME.errors`, and read what it says. `EDGEWARDEN_BLESS=1` on the
//! whole suite rewrites every golden file from what the gateway reports now; `git diff` shows what
//! changed.

use std::collections::BTreeSet;
use std::path::Path;

use edgewarden::config::Config;
use edgewarden::generation::Generation;

/// The golden files.
const INVALID: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/config/invalid");

/// `text` with paths made relative to [`INVALID`] (and any other path in the repository made
/// relative to its root).
fn relative(text: &str) -> String {
    text.replace(&format!("{INVALID}/"), "")
        .replace(concat!(env!("CARGO_MANIFEST_DIR"), "/"), "")
}

/// What `edgewarden check` reports for the file at `path`.
fn report(path: &Path) -> String {
    match Config::load(path).and_then(Generation::check) {
        Ok(summary) => panic!("{} passes the check ({summary})", path.display()),
        Err(e) => relative(&e.to_string()),
    }
}

fn blessing() -> bool {
    std::env::var_os("EDGEWARDEN_BLESS").is_some_and(|v| v == "1")
}

/// Check `NAME.toml` against `NAME.errors`, or write `NAME.errors` when blessing.
fn golden(name: &str) {
    let input = Path::new(INVALID).join(format!("{name}.toml"));
    let golden = input.with_extension("errors");
    let actual = report(&input);
    if blessing() {
        std::fs::write(&golden, &actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; EDGEWARDEN_BLESS=1 writes it from the report:\n{actual}",
            golden.display()
        )
    });
    if actual != expected {
        let (want, got): (BTreeSet<&str>, BTreeSet<&str>) =
            (expected.lines().collect(), actual.lines().collect());
        let missing: Vec<&&str> = want.difference(&got).collect();
        let unexpected: Vec<&&str> = got.difference(&want).collect();
        panic!(
            "the report for {name}.toml is not {name}.errors \
             (EDGEWARDEN_BLESS=1 rewrites it)\n\
             expected but not reported: {missing:#?}\n\
             reported but not expected: {unexpected:#?}\n\
             the whole report:\n{actual}"
        );
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// One test per golden file.
        mod invalid {
            $(
                #[test]
                fn $name() {
                    super::golden(stringify!($name));
                }
            )*
        }

        const CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

cases! {
    admin_token_missing,
    admin_token_short,
    auth_without_issuers,
    canonical_request_keys,
    cors_mistakes,
    country_header_without_trusted_proxies,
    empty_listen,
    four_mistakes,
    geo_mistakes,
    issuer_settings,
    limits_for_policies,
    missing_jwks_file,
    misspelt_keys,
    observability,
    origin_failures,
    pem_as_jwks_file,
    policy_limits,
    policy_cache,
    rate_limits,
    redis_settings,
    redis_tls,
    request_limits,
    sni_certificates,
    tls_settings,
    toml_syntax,
    tracing_endpoint,
    tracing_settings,
    values_and_references,
    weak_key,
}

#[test]
fn every_golden_file_has_its_case() {
    let mut inputs = BTreeSet::new();
    let mut goldens = BTreeSet::new();
    for entry in std::fs::read_dir(INVALID).expect("tests/config/invalid") {
        let path = entry.expect("entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => inputs.insert(stem),
            Some("errors") => goldens.insert(stem),
            _ => continue,
        };
    }
    let cases: BTreeSet<String> = CASES.iter().map(|c| c.to_string()).collect();
    let unlisted: Vec<&String> = inputs.difference(&cases).collect();
    assert!(
        unlisted.is_empty(),
        "add {unlisted:?} to cases! in tests/config.rs"
    );
    let missing: Vec<&String> = cases.difference(&inputs).collect();
    assert!(missing.is_empty(), "no .toml for the cases {missing:?}");
    if !blessing() {
        let orphans: Vec<&String> = goldens.difference(&inputs).collect();
        assert!(orphans.is_empty(), ".errors without a .toml: {orphans:?}");
    }
}

#[test]
fn a_report_never_shows_the_admin_token() {
    let path = Path::new(INVALID).join("admin_token_short.toml");
    let token =
        std::fs::read_to_string(Path::new(INVALID).join("files/short-token")).expect("token file");
    let report = report(&path);
    assert!(report.contains("admin_token_file"), "{report}");
    assert!(!report.contains(token.trim()), "the token shows: {report}");
}

#[test]
fn an_admin_token_of_32_visible_characters_passes_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Surrounding whitespace and newlines are not part of the token.
    std::fs::write(
        dir.path().join("good-token"),
        "\n0123456789abcdef0123456789abcdef\n",
    )
    .expect("token");
    let path = dir.path().join("edgewarden.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = ["127.0.0.1:18080"]
admin_token_file = "good-token"

[[origins]]
name = "global"
upstreams = ["127.0.0.1:9000"]

[[routes]]
name = "api"
path_prefix = "/api"
origin = "global"
auth = "off"
"#,
    )
    .expect("config");
    let checked = Config::load(&path).and_then(Generation::check);
    assert_eq!(
        checked.as_deref().map_err(ToString::to_string),
        Ok("1 routes, 1 origins")
    );
}
