use proptest::prelude::*;

use super::*;

fn canon(raw: &str) -> Result<String, TargetError> {
    match parse(raw.as_bytes(), Some("api.test"), false)? {
        Parsed::Target(t) => Ok(t.target),
        Parsed::ServerOptions => panic!("asterisk"),
    }
}

#[test]
fn canonical_targets_are_kept_and_equivalent_forms_normalised() {
    for (raw, want) in [
        ("/", "/"),
        ("/api/users?id=1&x=%2f", "/api/users?id=1&x=%2f"),
        ("/%61pi", "/api"),
        ("/%41%2d%2E%5F%7e", "/A-._~"),
        ("/a%2cb", "/a%2Cb"),
        ("/a%20b", "/a%20b"),
        ("/caf\u{e9}", "/caf%C3%A9"),
        ("/a|b{c}", "/a%7Cb%7Bc%7D"),
        ("/a/", "/a/"),
        ("/a/..b/...", "/a/..b/..."),
        ("/a%25zz", "/a%25zz"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a?b?c=d#", "/a?b?c=d#"),
    ] {
        if want.contains('#') {
            assert_eq!(canon(raw), Err(TargetError::ForbiddenCharacter), "{raw}");
        } else {
            assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
        }
    }
}

#[test]
fn ambiguous_paths_are_refused_with_their_reason() {
    use TargetError::*;
    for (raw, why) in [
        ("/a/../admin", DotSegment),
        ("/a/./b", DotSegment),
        ("/..", DotSegment),
        ("/a/%2e%2E/b", DotSegment),
        ("/a/.%2e", DotSegment),
        ("/a/%2E", DotSegment),
        ("/public/..;/api", DotSegment),
        ("/public/.;x/api", DotSegment),
        ("/a%2fb", EncodedSeparator),
        ("/a%2Fb", EncodedSeparator),
        ("/a%5Cb", EncodedSeparator),
        ("/a%00", EncodedSeparator),
        ("/a%0a", EncodedSeparator),
        ("/a%3Bb", EncodedSeparator),
        ("/a%252e%252e/b", EncodedSeparator),
        ("/a\\b", ForbiddenCharacter),
        ("/a\tb", ForbiddenCharacter),
        ("//admin", EmptySegment),
        ("/a//b", EmptySegment),
        ("/;x/api", EmptySegment),
        ("/api/;x", EmptySegment),
        ("/a%", BadEscape),
        ("/a%2", BadEscape),
        ("/a%zz", BadEscape),
        ("/%C0%AF", NotUtf8),
        ("/a%FF", NotUtf8),
    ] {
        assert_eq!(canon(raw), Err(why), "{raw}");
    }
}

#[test]
fn path_parameters_are_marked_and_stripped_for_routing() {
    let Ok(Parsed::Target(t)) = parse(b"/api;jsessionid=1/users;v=2?q", None, false) else {
        panic!("refused");
    };
    assert!(t.has_parameters);
    assert_eq!(t.path(), "/api;jsessionid=1/users;v=2");
    assert_eq!(t.route_path(), "/api/users");
    assert_eq!(t.query(), Some("q"));
}

#[test]
fn only_origin_form_and_matching_absolute_form_are_accepted() {
    let host = Some("api.test");
    let ok = |raw: &str| match parse(raw.as_bytes(), host, false) {
        Ok(Parsed::Target(t)) => Ok(t.target),
        Ok(Parsed::ServerOptions) => Ok("*".into()),
        Err(e) => Err(e),
    };
    assert_eq!(ok("http://api.test/x?y").as_deref(), Ok("/x?y"));
    assert_eq!(ok("HTTPS://API.test.:443/x").as_deref(), Ok("/x"));
    assert_eq!(ok("http://api.test").as_deref(), Ok("/"));
    for (raw, why) in [
        ("api/secret", TargetError::NotOriginForm),
        ("*", TargetError::NotOriginForm),
        ("?x=1", TargetError::NotOriginForm),
        ("ftp://api.test/x", TargetError::NotOriginForm),
        ("foo:bar://api.test/admin", TargetError::NotOriginForm),
        ("http://api.test?x", TargetError::NotOriginForm),
        ("http://other.test/api", TargetError::AuthorityMismatch),
        ("http://user@api.test/api", TargetError::AuthorityMismatch),
        ("http://api.test/../x", TargetError::DotSegment),
    ] {
        assert_eq!(ok(raw), Err(why), "{raw}");
    }
    assert_eq!(parse(b"*", host, true), Ok(Parsed::ServerOptions));
    assert_eq!(
        parse(b"http://api.test/x", None, false),
        Err(TargetError::AuthorityMismatch),
        "absolute-form without a Host to match"
    );
}

#[test]
fn hosts_differing_only_in_form_are_one_host() {
    for raw in [
        "api.test",
        "API.Test",
        "api.test.",
        "api.test:8080",
        "Api.Test.:80",
    ] {
        assert_eq!(canonical_host(raw).as_deref(), Ok("api.test"), "{raw}");
    }
    assert_eq!(canonical_host("[::1]:80").as_deref(), Ok("::1"));
    assert_eq!(canonical_host("127.0.0.1:9").as_deref(), Ok("127.0.0.1"));
    for bad in [
        "",
        ".",
        "api..test",
        "api.test..",
        "api.test:",
        "api.test:x",
        "api.test:1:2",
        "a%2etest",
        "a b",
        "[::1",
        "[zz]",
        "[::1]x",
        "user@api.test",
    ] {
        assert_eq!(canonical_host(bad), Err(TargetError::BadHost), "{bad:?}");
    }
}

use crate::testing::request as req;

#[test]
fn host_is_canonical_and_rewritten_when_written_otherwise() {
    for (raw, host, written) in [
        ("Example.com:8080", "example.com", "example.com:8080"),
        ("api.test.", "api.test", "api.test"),
        ("api.test", "api.test", "api.test"),
        ("[::1]:80", "::1", "[::1]:80"),
    ] {
        let mut r = req(&[("host", raw)]);
        assert_eq!(host_of(&mut r), Ok(Some(host.to_string())), "{raw}");
        assert_eq!(r.headers["host"], written, "{raw}");
    }
    assert_eq!(host_of(&mut req(&[])), Ok(None));
    assert_eq!(
        host_of(&mut req(&[("host", "a..b")])),
        Err(TargetError::BadHost)
    );
}

#[test]
fn a_request_is_rewritten_only_when_its_target_was_not_canonical() {
    let mut r = RequestHeader::build("GET", b"/%61pi;v=1/x?q=%7e", None).expect("request");
    r.append_header("host", "API.test.").expect("host");
    let routed = canonicalise(&mut r)
        .expect("canonical")
        .expect("not OPTIONS *");
    assert_eq!(
        routed,
        RoutePath {
            host: Some("api.test".into()),
            path: "/api/x".into(),
            has_parameters: true
        }
    );
    assert_eq!(r.raw_path(), b"/api;v=1/x?q=%7e");
    assert_eq!(r.uri.path(), "/api;v=1/x");
    assert_eq!(r.headers["host"], "api.test");
    let mut r = RequestHeader::build("OPTIONS", b"*", None).expect("request");
    assert_eq!(canonicalise(&mut r), Ok(None));
}

/// How a lenient origin reads a path: decode once, strip `;` parameters from each segment,
/// resolve dot-segments, merge slashes (Tomcat's order, the most generous reading).
fn lenient_reading(path: &str) -> Vec<u8> {
    let decoded = decode(path.as_bytes());
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        let name = segment.split(|&b| b == b';').next().unwrap_or_default();
        match name {
            b"" => {}
            b"." => {}
            b".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    let mut out = Vec::new();
    for segment in segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() || (decoded.ends_with(b"/") && decoded.len() > 1) {
        out.push(b'/');
    }
    out
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api".to_string()),
        Just("admin".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just(".%2E".to_string()),
        Just("".to_string()),
        Just(";x=1".to_string()),
        Just("api;jsessionid=2".to_string()),
        Just("..;".to_string()),
        Just("%61pi".to_string()),
        Just("%41DMIN".to_string()),
        Just("%2f".to_string()),
        Just("%2F".to_string()),
        Just("%5c".to_string()),
        Just("\\".to_string()),
        Just("%3b".to_string()),
        Just("%25".to_string()),
        Just("%252e".to_string()),
        Just("%00".to_string()),
        Just("%20".to_string()),
        Just("a%7e".to_string()),
        Just("%C3%A9".to_string()),
        Just("%c0%af".to_string()),
        Just("%".to_string()),
        Just("%g1".to_string()),
        "[a-zA-Z0-9._~-]{1,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Either refused, or canonical (a fixed point) and read by a lenient origin as the very path
    /// that was routed.
    #[test]
    fn forwarded_path_reads_as_the_routed_path(
        segments in prop::collection::vec(segment(), 0..7),
        trailing in any::<bool>(),
    ) {
        let mut raw = String::new();
        for s in &segments {
            raw.push('/');
            raw.push_str(s);
        }
        if trailing || raw.is_empty() {
            raw.push('/');
        }
        let parsed = parse(raw.as_bytes(), None, false);
        if let (Err(e), Ok(mut req)) = (&parsed, RequestHeader::build("GET", raw.as_bytes(), None)) {
            prop_assert_eq!(canonicalise(&mut req), Err(*e), "the request step accepts {}", raw);
        }
        if let Ok(Parsed::Target(t)) = parsed {
            let again = parse(t.target.as_bytes(), None, false);
            prop_assert_eq!(again, Ok(Parsed::Target(t.clone())), "not a fixed point: {}", raw);
            let routed = t.route_path();
            prop_assert_eq!(
                lenient_reading(t.path()),
                decode(routed.as_bytes()),
                "origin reads another path for {} (routed {})", raw, routed
            );
            prop_assert!(t.target.is_ascii());
            // The request step (with its shortcut for targets canonical as sent) agrees.
            if let Ok(mut req) = RequestHeader::build("GET", raw.as_bytes(), None) {
                let routed = canonicalise(&mut req);
                prop_assert_eq!(
                    routed,
                    Ok(Some(RoutePath {
                        host: None,
                        path: t.route_path().into_owned(),
                        has_parameters: t.has_parameters,
                    }))
                );
                prop_assert_eq!(req.raw_path(), t.target.as_bytes());
            }
            for escape in t.path().split('%').skip(1) {
                let hex = escape.get(..2).unwrap_or_default();
                let value = u8::from_str_radix(hex, 16);
                prop_assert!(
                    value.is_ok() && hex == hex.to_ascii_uppercase(),
                    "not upper-case hex after % in {}", t.target
                );
                prop_assert!(
                    !value.is_ok_and(|v| v.is_ascii_alphanumeric() || b"-._~".contains(&v)),
                    "an unreserved character left encoded in {}", t.target
                );
            }
            prop_assert!(t.path().parse::<http::uri::PathAndQuery>().is_ok());
        }
    }

    /// Any host form the check accepts is canonical, and every spelling of it maps to it.
    #[test]
    fn host_forms_map_to_one_host(
        labels in prop::collection::vec("[a-zA-Z0-9-]{1,6}", 1..4),
        dot in any::<bool>(),
        port in prop::option::of(0u16..),
    ) {
        let name = labels.join(".");
        let mut raw = name.clone();
        if dot {
            raw.push('.');
        }
        if let Some(port) = port {
            raw.push_str(&format!(":{port}"));
        }
        let canonical = canonical_host(&raw);
        prop_assert_eq!(canonical.clone(), Ok(name.to_ascii_lowercase()));
        let canonical = canonical.unwrap_or_default();
        prop_assert_eq!(canonical_host(&canonical), Ok(canonical.clone()));
    }
}
