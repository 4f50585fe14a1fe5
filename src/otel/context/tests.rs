//! Cases derived from the W3C Trace Context specification (§3.2 traceparent, §3.3 tracestate,
//! §3.2.4 versioning).

use super::*;

const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn parent(value: &str) -> Option<(TraceId, SpanId, u8)> {
    parse_traceparent(value.as_bytes())
}

fn state(fields: &[&str]) -> Option<Vec<(String, String)>> {
    let fields: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    parse_tracestate(&fields)
}

#[test]
fn a_valid_traceparent_gives_its_ids_and_flags() {
    let (trace, span, flags) = parent(VALID).expect("valid");
    assert_eq!(trace.to_string(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span.to_string(), "b7ad6b7169203331");
    assert_eq!(flags, 1);
    let (.., flags) = parent(&VALID.replace("-01", "-00")).expect("valid");
    assert_eq!(flags, 0);
}

#[test]
fn each_malformed_traceparent_is_ignored() {
    let cases = [
        // Upper-case hex anywhere.
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A",
        "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        // All-zero ids.
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        // Version ff, and version 00 with anything after the flags.
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        // Wrong lengths and separators.
        "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ",
        // Not hex.
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01",
        "",
        "00",
    ];
    for case in cases {
        assert_eq!(parent(case), None, "{case:?} was accepted");
    }
}

#[test]
fn later_versions_are_read_as_version_00() {
    let later = VALID.replacen("00", "cc", 1);
    assert!(parent(&later).is_some());
    assert!(parent(&format!("{later}-what-the-future-holds")).is_some());
    // Longer, but not separated by a dash after the flags: restart.
    assert_eq!(parent(&format!("{later}.x")), None);
    assert_eq!(parent(&later[..54]), None);
}

#[test]
fn one_traceparent_field_only() {
    let mut req = RequestHeader::build("GET", b"/", None).expect("request");
    req.append_header(TRACEPARENT, VALID).expect("header");
    assert!(incoming(&req).is_some());
    req.append_header(TRACEPARENT, VALID).expect("header");
    assert_eq!(incoming(&req), None, "two traceparent fields are ambiguous");
}

#[test]
fn tracestate_members_are_kept_in_order_across_fields() {
    let members = state(&[
        "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7",
        "  tenant@vendor=x ,,",
    ])
    .expect("valid");
    assert_eq!(
        members,
        vec![
            ("congo".into(), "t61rcWkgMzE".into()),
            ("rojo".into(), "00f067aa0ba902b7".into()),
            ("tenant@vendor".into(), "x".into()),
        ]
    );
    assert_eq!(
        tracestate(&members),
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,tenant@vendor=x"
    );
}

#[test]
fn a_malformed_tracestate_is_dropped_whole() {
    let cases: &[&[&str]] = &[
        &["Congo=t61"],            // upper-case key
        &["1congo=t61"],           // simple key starting with a digit
        &["congo"],                // no value
        &["congo="],               // empty value
        &["congo=a\tb"],           // a tab in the value
        &["congo=a=b"],            // '=' in the value
        &["congo=t61", "congo=x"], // key repeated across fields
        &["t@toolongsystemid=x"],  // system id over 14 characters
        &["@vendor=x"],            // empty tenant
        &["a=\u{e9}"],             // not printable ASCII
    ];
    for fields in cases {
        assert_eq!(state(fields), None, "{fields:?} was accepted");
    }
    let key_256 = format!("a{}", "b".repeat(255));
    assert!(state(&[&format!("{key_256}=1")]).is_some());
    assert_eq!(state(&[&format!("{key_256}b=1")]), None);
}

#[test]
fn tracestate_limits_are_32_members_and_512_characters() {
    let members = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(state(&[&members(32)]).map(|m| m.len()), Some(32));
    assert_eq!(state(&[&members(33)]), None);
    let long = |key: &str| format!("{key}={}", "x".repeat(250));
    let (a, b, c) = (long("a"), long("b"), long("c"));
    assert!(state(&[&a, &b]).is_some());
    assert_eq!(state(&[&a, &b, &c]), None, "over 512 characters");
}

#[test]
fn a_tracestate_without_a_valid_traceparent_is_dropped() {
    let mut req = RequestHeader::build("GET", b"/", None).expect("request");
    req.append_header(TRACESTATE, "congo=t61").expect("header");
    assert_eq!(incoming(&req), None);
    req.append_header(TRACEPARENT, VALID).expect("header");
    let ctx = incoming(&req).expect("valid");
    assert_eq!(ctx.state, vec![("congo".into(), "t61".into())]);
    assert!(ctx.sampled);
}

#[test]
fn the_gateways_traceparent_round_trips() {
    let (trace, span, _) = parent(VALID).expect("valid");
    let written = traceparent(trace, span, false);
    assert_eq!(written, VALID.replace("-01", "-00"));
    assert_eq!(parent(&written), Some((trace, span, 0)));
}
