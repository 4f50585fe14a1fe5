//! The encodings a request and a decision cross the component boundary in (`wit/policy.wit`,
//! world `policy`): a request goes in as one string of NUL-separated fields, a decision comes back
//! as one list of bytes. This module writes the first and reads the second; the SDK's
//! `edgewarden/_wire.py` is the other side, and both are checked against the same vectors
//! (`python-plugins/sdk/wire_vectors.json`).
//!
//! Reading is strict: a decision has exactly the fields its counts announce, so a NUL inside a
//! header value cannot smuggle in another operation, and every count and size is bounded before
//! anything is allocated for it.

use pingora::http::RequestHeader;
use serde_json::{Map, Value};

use crate::config::CacheInput;

/// Largest decision read (a direct answer's body is at most 1 MiB, see `decision`, plus room
/// for its headers).
pub const MAX_DECISION: usize = (1 << 20) + (64 << 10);
/// Most header operations of one kind, or headers of one answer, a decision may hold.
pub const MAX_FIELDS: usize = 256;

/// What the request carries besides its header, as the gateway decided it.
pub struct Facts<'a> {
    pub client_ip: &'a str,
    pub route: &'a str,
    pub country: Option<&'a str>,
    pub claims_json: Option<&'a str>,
    /// The same claims, parsed (for a view of some of them).
    pub claims: Option<&'a Map<String, Value>>,
}

/// The request as a cached policy sees it: only its declared `inputs`, every other field empty
/// (the query too). The string is also the key its decision is remembered under, so the decision
/// is a function of the key by construction.
pub fn view(req: &RequestHeader, facts: &Facts<'_>, inputs: &[CacheInput]) -> String {
    let has = |input: &CacheInput| inputs.contains(input);
    let claims_paths: Option<String>;
    let claims = if has(&CacheInput::Claims) {
        facts.claims_json
    } else {
        let named = inputs.iter().any(|i| matches!(i, CacheInput::Claim(_)));
        claims_paths = facts
            .claims
            .filter(|_| named)
            .map(|claims| some_claims(claims, inputs));
        claims_paths.as_deref()
    };
    let mut out = String::with_capacity(64);
    for field in [
        has(&CacheInput::Method).then(|| req.method.as_str()),
        has(&CacheInput::Path).then(|| req.uri.path()),
        None,
        has(&CacheInput::ClientIp).then_some(facts.client_ip),
        has(&CacheInput::Route).then_some(facts.route),
        facts.country.filter(|_| has(&CacheInput::Country)),
        claims,
    ] {
        push_field(&mut out, field.unwrap_or_default());
        out.push('\0');
    }
    for input in inputs {
        if let CacheInput::Header(name) = input {
            for value in req.headers.get_all(name) {
                push_header(&mut out, name, value);
            }
        }
    }
    out
}

/// The claims `inputs` name by path, as a JSON object of the same shape (`{}` when the token has
/// none of them).
fn some_claims(claims: &Map<String, Value>, inputs: &[CacheInput]) -> String {
    let top_level = inputs
        .iter()
        .all(|i| !matches!(i, CacheInput::Claim(path) if path.len() != 1));
    if top_level && let Some(written) = top_level_claims(claims, inputs) {
        return written;
    }
    claims_through_a_map(claims, inputs)
}

/// [`some_claims`] for any paths: the picked values put into a new `Map`, written as JSON.
fn claims_through_a_map(claims: &Map<String, Value>, inputs: &[CacheInput]) -> String {
    let mut out = Map::new();
    for input in inputs {
        let CacheInput::Claim(path) = input else {
            continue;
        };
        let mut found = Some(claims);
        let mut value = None;
        for (i, name) in path.iter().enumerate() {
            let Some(object) = found else { break };
            match object.get(name) {
                Some(Value::Object(inner)) if i + 1 < path.len() => found = Some(inner),
                Some(leaf) if i + 1 == path.len() => value = Some(leaf),
                _ => break,
            }
        }
        if let Some(value) = value {
            insert_at(&mut out, path, value.clone());
        }
    }
    Value::Object(out).to_string()
}

/// [`some_claims`] when every path is one name (the usual case: `claim:sub`): the JSON object
/// written straight from the token's claims, names in the order a `Map` keeps them (sorted),
/// without building one.
fn top_level_claims(claims: &Map<String, Value>, inputs: &[CacheInput]) -> Option<String> {
    let mut names: Vec<&str> = inputs
        .iter()
        .filter_map(|i| match i {
            CacheInput::Claim(path) => path.first().map(String::as_str),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (name, value) in names
        .into_iter()
        .filter_map(|name| Some((name, claims.get(name)?)))
    {
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).ok()?;
        out.push(b':');
        serde_json::to_writer(&mut out, value).ok()?;
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

fn insert_at(object: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for name in parents {
        let entry = at
            .entry(name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(inner) = entry else {
            return;
        };
        at = inner;
    }
    at.insert(last.clone(), value);
}

/// The request as one string: `method, path, query, client-ip, route, country, claims-json,
/// headers`, separated by NUL. Header values that are not visible ASCII are left out, as plugins
/// could not set them back either.
pub fn request(req: &RequestHeader, facts: &Facts<'_>) -> String {
    let path = req.uri.path();
    let query = req.uri.query();
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 3)
        .sum();
    let size = req.method.as_str().len()
        + path.len()
        + query.map_or(0, |q| q.len() + 1)
        + facts.client_ip.len()
        + facts.route.len()
        + facts.country.map_or(0, str::len)
        + facts.claims_json.map_or(0, str::len)
        + headers
        + 7;
    let mut out = String::with_capacity(size);
    out.push_str(req.method.as_str());
    out.push('\0');
    out.push_str(path);
    out.push('\0');
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out.push('\0');
    for field in [
        facts.client_ip,
        facts.route,
        facts.country.unwrap_or_default(),
        facts.claims_json.unwrap_or_default(),
    ] {
        // Only the last field may hold a NUL; the others come from the gateway, which never
        // writes one (a JSON text escapes it), so this only guards the encoding's shape.
        push_field(&mut out, field);
        out.push('\0');
    }
    for (name, value) in &req.headers {
        push_header(&mut out, name, value);
    }
    out
}

/// One `name: value` line; a value that is not visible ASCII is left out.
fn push_header(out: &mut String, name: &http::HeaderName, value: &http::HeaderValue) {
    if let Ok(value) = value.to_str() {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    }
}

fn push_field(out: &mut String, field: &str) {
    if field.contains('\0') {
        out.extend(field.chars().filter(|c| *c != '\0'));
    } else {
        out.push_str(field);
    }
}

/// A decision read from a plugin's answer; it borrows the answer's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    Forward(Forward<'a>),
    Respond(Respond<'a>),
}

/// Forward the request with these changes (all empty: unchanged).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forward<'a> {
    pub set: Vec<(&'a str, &'a str)>,
    pub append: Vec<(&'a str, &'a str)>,
    pub remove: Vec<&'a str>,
    pub origin: Option<&'a str>,
    pub path: Option<&'a str>,
}

/// Answer directly.
#[derive(Debug, PartialEq, Eq)]
pub struct Respond<'a> {
    pub status: u16,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// An exception that escaped the plugin's `handle_request`, as the glue reported it.
#[derive(Debug, PartialEq, Eq)]
pub struct Raised<'a> {
    /// The exception's type name (`KeyError`).
    pub kind: &'a str,
    pub message: &'a str,
    /// The innermost line of the plugin's own files it passed (`plugin.py:12`).
    pub location: Option<&'a str>,
}

/// What a plugin answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    Decided(Decision<'a>),
    Raised(Raised<'a>),
}

/// Why an answer could not be read (for logs, never for clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Longer than [`MAX_DECISION`].
    TooLong(usize),
    /// A first byte that is none of `F`, `R`, `E`.
    Kind(u8),
    /// The counts line is not what the kind announces.
    Counts,
    /// More than [`MAX_FIELDS`] of something.
    TooMany,
    /// Fewer or more fields than the counts announce.
    Fields,
    /// A field that is not UTF-8.
    Utf8,
    /// A body shorter or longer than announced.
    Body,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::TooLong(len) => write!(f, "answer of {len} bytes is over {MAX_DECISION}"),
            Malformed::Kind(byte) => write!(f, "answer starts with byte {byte:#04x}"),
            Malformed::Counts => f.write_str("answer's counts are not readable"),
            Malformed::TooMany => write!(f, "answer holds more than {MAX_FIELDS} of a kind"),
            Malformed::Fields => f.write_str("answer's fields do not match its counts"),
            Malformed::Utf8 => f.write_str("answer holds a field that is not UTF-8"),
            Malformed::Body => f.write_str("answer's body does not match its length"),
        }
    }
}

/// Read a plugin's answer.
pub fn answer(bytes: &[u8]) -> Result<Answer<'_>, Malformed> {
    if bytes.len() > MAX_DECISION {
        return Err(Malformed::TooLong(bytes.len()));
    }
    let Some((&kind, rest)) = bytes.split_first() else {
        return Ok(Answer::Decided(Decision::Forward(Forward::default())));
    };
    match kind {
        b'F' => forward(rest).map(|f| Answer::Decided(Decision::Forward(f))),
        b'R' => respond(rest).map(|r| Answer::Decided(Decision::Respond(r))),
        b'E' => raised(rest).map(Answer::Raised),
        other => Err(Malformed::Kind(other)),
    }
}

/// The counts line: `N` decimal numbers separated by spaces, ended by NUL.
fn counts<const N: usize>(bytes: &[u8]) -> Result<([usize; N], &[u8]), Malformed> {
    let end = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or(Malformed::Counts)?;
    let line = std::str::from_utf8(&bytes[..end]).map_err(|_| Malformed::Counts)?;
    let mut numbers = [0usize; N];
    let mut parts = line.split(' ');
    for number in &mut numbers {
        let part = parts.next().ok_or(Malformed::Counts)?;
        if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Malformed::Counts);
        }
        *number = part.parse().map_err(|_| Malformed::Counts)?;
    }
    if parts.next().is_some() {
        return Err(Malformed::Counts);
    }
    Ok((numbers, &bytes[end + 1..]))
}

/// NUL-terminated fields, read one at a time.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<&'a str, Malformed> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or(Malformed::Fields)?;
        let field = std::str::from_utf8(&self.0[..end]).map_err(|_| Malformed::Utf8)?;
        self.0 = &self.0[end + 1..];
        Ok(field)
    }

    fn pairs(&mut self, count: usize) -> Result<Vec<(&'a str, &'a str)>, Malformed> {
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            pairs.push((self.next()?, self.next()?));
        }
        Ok(pairs)
    }
}

fn forward(bytes: &[u8]) -> Result<Forward<'_>, Malformed> {
    let ([set, append, remove, flags], rest) = counts::<4>(bytes)?;
    if set > MAX_FIELDS || append > MAX_FIELDS || remove > MAX_FIELDS {
        return Err(Malformed::TooMany);
    }
    if flags > 3 {
        return Err(Malformed::Counts);
    }
    let mut fields = Fields(rest);
    let set = fields.pairs(set)?;
    let append = fields.pairs(append)?;
    let remove = (0..remove)
        .map(|_| fields.next())
        .collect::<Result<_, _>>()?;
    let origin = (flags & 1 != 0).then(|| fields.next()).transpose()?;
    let path = (flags & 2 != 0).then(|| fields.next()).transpose()?;
    if !fields.0.is_empty() {
        return Err(Malformed::Fields);
    }
    Ok(Forward {
        set,
        append,
        remove,
        origin,
        path,
    })
}

fn respond(bytes: &[u8]) -> Result<Respond<'_>, Malformed> {
    let ([status, headers, length], rest) = counts::<3>(bytes)?;
    let status = u16::try_from(status).map_err(|_| Malformed::Counts)?;
    if headers > MAX_FIELDS {
        return Err(Malformed::TooMany);
    }
    let mut fields = Fields(rest);
    let headers = fields.pairs(headers)?;
    if fields.0.len() != length {
        return Err(Malformed::Body);
    }
    Ok(Respond {
        status,
        headers,
        body: fields.0,
    })
}

fn raised(bytes: &[u8]) -> Result<Raised<'_>, Malformed> {
    let mut fields = Fields(bytes);
    let kind = fields.next()?;
    let message = fields.next()?;
    if fields.0.contains(&0) {
        return Err(Malformed::Fields);
    }
    let location = std::str::from_utf8(fields.0).map_err(|_| Malformed::Utf8)?;
    Ok(Raised {
        kind,
        message,
        location: (!location.is_empty()).then_some(location),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The vectors the SDK's tests check too.
    const VECTORS: &str = include_str!("../../python-plugins/sdk/wire_vectors.json");

    fn vectors(kind: &str) -> Vec<Value> {
        let all: Value = serde_json::from_str(VECTORS).expect("vectors parse");
        all[kind].as_array().expect("a list of vectors").clone()
    }

    fn text(v: &Value) -> &str {
        v.as_str().expect("a string")
    }

    fn pairs(v: &Value) -> Vec<(&str, &str)> {
        v.as_array()
            .expect("pairs")
            .iter()
            .map(|p| (text(&p[0]), text(&p[1])))
            .collect()
    }

    fn opt(v: &Value) -> Option<&str> {
        v.as_str()
    }

    #[test]
    fn requests_are_written_as_the_vectors_say() {
        for vector in vectors("requests") {
            let target = match opt(&vector["query"]) {
                Some(q) => format!("{}?{q}", text(&vector["path"])),
                None => text(&vector["path"]).to_string(),
            };
            let mut req = RequestHeader::build(text(&vector["method"]), target.as_bytes(), None)
                .expect("req");
            for (name, value) in pairs(&vector["headers"]) {
                req.append_header(name.to_string(), value).expect("header");
            }
            let facts = Facts {
                client_ip: text(&vector["client_ip"]),
                route: text(&vector["route"]),
                country: opt(&vector["country"]),
                claims_json: opt(&vector["claims_json"]),
                claims: None,
            };
            assert_eq!(request(&req, &facts), text(&vector["wire"]), "{vector}");
        }
    }

    #[test]
    fn header_values_that_are_not_visible_ascii_are_left_out() {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        req.append_header("x-a", "1").expect("header");
        req.append_header(
            "x-latin",
            http::HeaderValue::from_bytes(b"caf\xe9").expect("value"),
        )
        .expect("header");
        let facts = Facts {
            client_ip: "::1",
            route: "r",
            country: None,
            claims_json: None,
            claims: None,
        };
        assert_eq!(request(&req, &facts), "GET\0/\0\0::1\0r\0\0\0x-a: 1\n");
    }

    #[test]
    fn decisions_are_read_as_the_vectors_say() {
        for vector in vectors("decisions") {
            let wire = text(&vector["wire"]).as_bytes();
            let read = answer(wire).expect("a well-formed vector");
            let want = match text(&vector["kind"]) {
                "forward" => Answer::Decided(Decision::Forward(Forward {
                    set: pairs(&vector["set"]),
                    append: pairs(&vector["append"]),
                    remove: vector["remove"]
                        .as_array()
                        .expect("names")
                        .iter()
                        .map(text)
                        .collect(),
                    origin: opt(&vector["origin"]),
                    path: opt(&vector["path"]),
                })),
                "respond" => Answer::Decided(Decision::Respond(Respond {
                    status: vector["status"].as_u64().expect("status") as u16,
                    headers: pairs(&vector["headers"]),
                    body: text(&vector["body"]).as_bytes(),
                })),
                "raised" => Answer::Raised(Raised {
                    kind: text(&vector["type"]),
                    message: text(&vector["message"]),
                    location: opt(&vector["location"]),
                }),
                other => panic!("unknown vector kind {other}"),
            };
            assert_eq!(read, want, "{vector}");
        }
    }

    #[test]
    fn answers_that_do_not_match_their_counts_are_refused() {
        for (bytes, why) in [
            (&b"X"[..], Malformed::Kind(b'X')),
            (b"F1 0 0 0\0x-a\0", Malformed::Fields),
            // A NUL inside a value would add a field: the count no longer matches.
            (b"F1 0 0 0\0x-a\0v\0x-admin\0", Malformed::Fields),
            (b"F0 0 0 0\0extra\0", Malformed::Fields),
            (b"F0 0 0 1\0", Malformed::Fields),
            (b"F0 0 0\0", Malformed::Counts),
            (b"F0 0 0 0 0\0", Malformed::Counts),
            (b"F0 0 0 4\0", Malformed::Counts),
            (b"F-1 0 0 0\0", Malformed::Counts),
            (b"F+1 0 0 0\0x\0y\0", Malformed::Counts),
            (b"F 0 0 0\0", Malformed::Counts),
            (b"F0 0 0 0", Malformed::Counts),
            (b"F257 0 0 0\0", Malformed::TooMany),
            (b"F999999999 0 0 0\0", Malformed::Counts),
            (b"F1 0 0 0\0x-a\0\xff\0", Malformed::Utf8),
            (b"R200 0 3\0ab", Malformed::Body),
            (b"R200 0 1\0ab", Malformed::Body),
            (b"R70000 0 0\0", Malformed::Counts),
            (b"R200 1 0\0x\0", Malformed::Fields),
            (b"Ekind\0message\0plugin.py:1\0more", Malformed::Fields),
            (b"Ekind", Malformed::Fields),
        ] {
            assert_eq!(
                answer(bytes),
                Err(why),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = vec![b'R'; MAX_DECISION + 1];
        assert_eq!(answer(&long), Err(Malformed::TooLong(MAX_DECISION + 1)));
    }

    #[test]
    fn a_cached_policy_sees_only_its_declared_inputs() {
        let mut req = RequestHeader::build("POST", b"/a?secret=1", None).expect("request");
        for (name, value) in [("x-tenant", "t1"), ("cookie", "s=1"), ("x-tenant", "t2")] {
            req.append_header(name, value).expect("header");
        }
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"alice","org":{"id":7,"name":"Acme"},"exp":4102444800}"#,
        )
        .expect("claims");
        let claims_json = Value::Object(claims.clone()).to_string();
        let facts = Facts {
            client_ip: "192.0.2.1",
            route: "r",
            country: Some("GB"),
            claims_json: Some(&claims_json),
            claims: Some(&claims),
        };
        let header = |name: &str| {
            CacheInput::Header(http::HeaderName::from_bytes(name.as_bytes()).expect("name"))
        };
        let claim = |path: &str| CacheInput::Claim(path.split('.').map(str::to_string).collect());
        assert_eq!(
            view(&req, &facts, &[CacheInput::Country]),
            "\0\0\0\0\0GB\0\0"
        );
        assert_eq!(
            view(
                &req,
                &facts,
                &[header("x-tenant"), CacheInput::Method, CacheInput::Path]
            ),
            "POST\0/a\0\0\0\0\0\0x-tenant: t1\nx-tenant: t2\n",
            "the query stays hidden, every value of a declared header is there"
        );
        assert_eq!(
            view(
                &req,
                &facts,
                &[claim("org.id"), claim("sub"), claim("missing.x")]
            ),
            "\0\0\0\0\0\0{\"org\":{\"id\":7},\"sub\":\"alice\"}\0"
        );
        let no_token = Facts {
            claims_json: None,
            claims: None,
            ..facts
        };
        assert_eq!(
            view(&req, &no_token, &[claim("sub"), CacheInput::Route]),
            "\0\0\0\0r\0\0\0"
        );
    }

    #[test]
    fn a_body_may_hold_any_bytes() {
        let read = answer(b"R200 1 4\0content-type\0application/octet-stream\0\0\xff\0F");
        assert_eq!(
            read,
            Ok(Answer::Decided(Decision::Respond(Respond {
                status: 200,
                headers: vec![("content-type", "application/octet-stream")],
                body: b"\0\xff\0F",
            })))
        );
    }

    #[test]
    fn top_level_claims_are_written_as_a_map_of_them_would_be() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"alice","email":"a\"l\u00e9\nx@example.com","roles":["a","b"],
               "org":{"id":7,"name":"Acme"},"n":1.5,"z":null,"\u00e9t\u00e9":true}"#,
        )
        .expect("claims");
        let claim = |name: &str| CacheInput::Claim(vec![name.to_string()]);
        for names in [
            vec!["sub"],
            vec!["sub", "email"],
            vec!["email", "sub", "sub"],
            vec!["roles", "org", "n", "z", "\u{e9}t\u{e9}"],
            vec!["absent"],
            vec!["absent", "sub"],
            vec![],
        ] {
            let mut inputs: Vec<CacheInput> = names.iter().map(|n| claim(n)).collect();
            inputs.push(CacheInput::Country);
            let direct = top_level_claims(&claims, &inputs).expect("written");
            assert_eq!(direct, claims_through_a_map(&claims, &inputs), "{names:?}");
            assert_eq!(some_claims(&claims, &inputs), direct);
        }
    }
}
