//! `edgewarden-dev token` and `jwks` as a user runs them: messages that say what to do, and
//! output that survives a reader going away.

use std::io::Read;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_edgewarden-dev");

fn key(name: &str) -> String {
    format!("{}/../tests/data/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn jwks_from_a_public_key_says_it_needs_the_private_key() {
    let out = Command::new(BIN)
        .args(["jwks", "--kid", "k", "--key", &key("rsa2048-public.pem")])
        .output()
        .expect("edgewarden-dev runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs the private key"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_reader_that_goes_away_is_not_a_panic() {
    let mut child = Command::new(BIN)
        .args(["jwks", "--kid", "k", "--key", &key("rsa2048-private.pem")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgewarden-dev runs");
    // Close the read end before the JWKS is written, as `| head -c0` would.
    drop(child.stdout.take());
    let status = child.wait().expect("exits");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr text");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn a_token_no_issuer_would_accept_is_signed_with_a_warning() {
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["token", "--key", &key("rsa2048-private.pem")])
            .args(extra)
            .output()
            .expect("edgewarden-dev runs");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).matches('.').count(), 2);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let bare = run(&[]);
    assert!(bare.contains("no iss, aud, sub claim"), "{bare}");
    let complete = run(&["--iss", "https://id.test", "--aud", "api", "--sub", "u"]);
    assert!(!complete.contains("warning"), "{complete}");
    let via_claims = run(&[
        "--claims",
        r#"{"iss":"https://id.test","aud":"api","sub":"u"}"#,
    ]);
    assert!(!via_claims.contains("warning"), "{via_claims}");
}
