//! What a plugin may decide, checked before anything is applied: a readable answer (`wire`),
//! legal header names and values, only headers the policy allows, only allowed origins, a sane
//! path, a bounded direct answer.

use http::header::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use super::wire::{self, Answer, Decision, Forward, Malformed, Respond};
use crate::config::Name;
use crate::header_pattern::HeaderPatterns;
use crate::ids::OriginId;
use crate::target::{self, Parsed};

/// Largest body a plugin may answer with.
const MAX_BODY: usize = 1 << 20;
/// Fields no plugin may touch: they frame the message or describe the connection.
const FRAMING: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// A decision that passed validation.
pub enum Checked {
    Forward(Changes),
    Respond(PolicyAnswer),
}

/// What a forward decision changes, validated; `apply` makes the changes.
pub struct Changes {
    set: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
    /// Another origin, one of the policy's `allow_origins`.
    pub origin: Option<OriginId>,
    path: Option<String>,
}

/// A policy's own answer, validated (status, headers, bounded body): what the gateway writes.
#[derive(Debug)]
pub struct PolicyAnswer {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

/// What a policy's output may touch.
pub struct Allowed<'a> {
    /// `allow_headers`.
    pub headers: &'a HeaderPatterns,
    /// The names of `allow_origins`, resolved to the generation's origins.
    pub origins: &'a [(Name, OriginId)],
}

impl Allowed<'_> {
    fn header(&self, name: &HeaderName) -> bool {
        !FRAMING.contains(&name.as_str()) && self.headers.matches(name.as_str())
    }
}

/// Why a plugin's decision was refused, or could not be applied (for logs and shadow decisions'
/// details, never for clients).
#[derive(Debug)]
pub enum Refused {
    /// An answer that does not follow the encoding (`wire`).
    Malformed(Malformed),
    /// A header name that is not a legal field name.
    IllegalName(String),
    /// A header value that is not a legal field value.
    IllegalValue(HeaderName),
    /// A header outside the policy's `allow_headers`.
    NotAllowed(HeaderName),
    /// A framing or connection header in a direct answer.
    SetByGateway(HeaderName),
    /// An origin outside the policy's `allow_origins`.
    Origin(String),
    /// A new path that is not a plain absolute path (with why, when the canonicaliser said).
    Path(Option<target::TargetError>),
    /// A direct answer's status outside 200-599.
    Status(u16),
    /// A direct answer's body over [`MAX_BODY`] bytes (its size).
    Body(usize),
    /// A checked header the request would not take.
    Header(Box<pingora::Error>),
    /// A checked path that, with the request's query, does not form a URI.
    Uri,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Malformed(why) => write!(f, "unreadable decision: {why}"),
            Refused::IllegalName(name) => write!(f, "illegal header name {name:?}"),
            Refused::IllegalValue(name) => write!(f, "illegal value for header {name}"),
            Refused::NotAllowed(name) => write!(f, "header {name} is not in allow_headers"),
            Refused::SetByGateway(name) => write!(f, "header {name} is set by the gateway"),
            Refused::Origin(name) => write!(f, "origin {name:?} is not in allow_origins"),
            Refused::Path(None) => f.write_str("path must be a plain absolute path"),
            Refused::Path(Some(e)) => write!(f, "path must be a plain absolute path: {e}"),
            Refused::Status(status) => write!(f, "status {status} is outside 200-599"),
            Refused::Body(len) => write!(f, "body of {len} bytes is over {MAX_BODY}"),
            Refused::Header(e) => write!(f, "{e}"),
            Refused::Uri => f.write_str("path does not form a URI"),
        }
    }
}

impl std::error::Error for Refused {}

/// Read and validate a plugin's answer (an exception's answer is the host's to report, and is
/// refused here). `Err` names what was wrong.
pub fn check(answer: &[u8], allowed: &Allowed<'_>) -> Result<Checked, Refused> {
    match wire::answer(answer).map_err(Refused::Malformed)? {
        Answer::Decided(Decision::Forward(forward)) => check_forward(forward, allowed),
        Answer::Decided(Decision::Respond(response)) => check_response(response),
        Answer::Raised(_) => Err(Refused::Malformed(Malformed::Kind(b'E'))),
    }
}

fn header_name(name: &str) -> Result<HeaderName, Refused> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| Refused::IllegalName(name.to_string()))
}

fn pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Refused> {
    let name = header_name(name)?;
    match HeaderValue::from_str(value) {
        Ok(value) => Ok((name, value)),
        Err(_) => Err(Refused::IllegalValue(name)),
    }
}

fn check_forward(action: Forward<'_>, allowed: &Allowed<'_>) -> Result<Checked, Refused> {
    let mut set = Vec::with_capacity(action.set.len());
    let mut append = Vec::with_capacity(action.append.len());
    let mut remove = Vec::with_capacity(action.remove.len());
    for (list, out) in [(&action.set, &mut set), (&action.append, &mut append)] {
        for (name, value) in list {
            let (name, value) = pair(name, value)?;
            if !allowed.header(&name) {
                return Err(Refused::NotAllowed(name));
            }
            out.push((name, value));
        }
    }
    for name in &action.remove {
        let name = header_name(name)?;
        if !allowed.header(&name) {
            return Err(Refused::NotAllowed(name));
        }
        remove.push(name);
    }
    let origin = match action.origin {
        None => None,
        Some(name) => match allowed
            .origins
            .iter()
            .find(|(allowed, _)| allowed.as_str() == name)
        {
            Some((_, id)) => Some(*id),
            None => return Err(Refused::Origin(name.to_string())),
        },
    };
    let path = action.path.map(canonical_path).transpose()?;
    Ok(Checked::Forward(Changes {
        set,
        append,
        remove,
        origin,
        path,
    }))
}

/// A policy's new path, through the same canonicaliser as every request target: an absolute
/// path without query or `;` parameters, forwarded in canonical form.
fn canonical_path(path: &str) -> Result<String, Refused> {
    match target::parse(path.as_bytes(), None, false) {
        Ok(Parsed::Target(t)) if t.query().is_none() && !t.has_parameters => Ok(t.target),
        Ok(_) => Err(Refused::Path(None)),
        Err(e) => Err(Refused::Path(Some(e))),
    }
}

fn check_response(response: Respond<'_>) -> Result<Checked, Refused> {
    if !(200..=599).contains(&response.status) {
        return Err(Refused::Status(response.status));
    }
    if response.body.len() > MAX_BODY {
        return Err(Refused::Body(response.body.len()));
    }
    let mut headers = Vec::with_capacity(response.headers.len());
    for (name, value) in &response.headers {
        let (name, value) = pair(name, value)?;
        if FRAMING.contains(&name.as_str()) {
            return Err(Refused::SetByGateway(name));
        }
        headers.push((name, value));
    }
    Ok(Checked::Respond(PolicyAnswer {
        status: response.status,
        headers,
        body: response.body.to_vec(),
    }))
}

impl Changes {
    /// Make the header and path changes on the request; returns the origin chosen, if any.
    pub fn apply(self, req: &mut RequestHeader) -> Result<Option<OriginId>, Refused> {
        for name in self.remove {
            req.remove_header(&name);
        }
        for (name, value) in self.set {
            req.insert_header(name, value).map_err(Refused::Header)?;
        }
        for (name, value) in self.append {
            req.append_header(name, value).map_err(Refused::Header)?;
        }
        if let Some(path) = self.path {
            let target = match req.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            let uri: http::Uri = target.parse().map_err(|_| Refused::Uri)?;
            req.set_uri(uri);
        }
        Ok(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forward answer as a plugin's glue writes it.
    fn forward(set: &[(&str, &str)], origin: Option<&str>, path: Option<&str>) -> Vec<u8> {
        let flags = u8::from(origin.is_some()) | (u8::from(path.is_some()) << 1);
        let mut out = format!("F{} 0 0 {flags}\0", set.len());
        for field in set
            .iter()
            .flat_map(|(k, v)| [*k, *v])
            .chain(origin)
            .chain(path)
        {
            out.push_str(field);
            out.push('\0');
        }
        out.into_bytes()
    }

    #[test]
    fn only_allowed_headers_origins_and_paths_pass() {
        let headers = HeaderPatterns::new(["x-portal", "x-internal-*"]);
        let origins = vec![(Name::new("uk").expect("name"), OriginId::at(1))];
        let allowed = Allowed {
            headers: &headers,
            origins: &origins,
        };
        let checked = check(
            &forward(
                &[("x-portal", "uk"), ("x-internal-user-id", "u")],
                Some("uk"),
                Some("/a"),
            ),
            &allowed,
        );
        assert!(
            matches!(checked, Ok(Checked::Forward(Changes { origin: Some(id), .. })) if id == OriginId::at(1)),
            "the allowed origin is resolved to its id"
        );
        for (bad, why) in [
            (
                forward(&[("x-other", "1")], None, None),
                "header x-other is not in allow_headers",
            ),
            (
                forward(&[("x-portal", "a\r\nx-evil: 1")], None, None),
                "illegal value for header x-portal",
            ),
            (
                forward(&[("bad header", "1")], None, None),
                "illegal header name \"bad header\"",
            ),
            (
                forward(&[("host", "evil")], None, None),
                "header host is not in allow_headers",
            ),
            (
                forward(&[], Some("us"), None),
                "origin \"us\" is not in allow_origins",
            ),
            (
                forward(&[], None, Some("/a/../admin")),
                "path must be a plain absolute path: dot-segments in the path",
            ),
            (
                forward(&[], None, Some("relative")),
                "path must be a plain absolute path: request target must be an absolute path",
            ),
        ] {
            let refused = check(&bad, &allowed).err().map(|e| e.to_string());
            assert_eq!(refused.as_deref(), Some(why));
        }
    }

    #[test]
    fn direct_answers_are_bounded() {
        let allowed = Allowed {
            headers: &HeaderPatterns::default(),
            origins: &[],
        };
        let respond = |status: u16, headers: &[(&str, &str)], body: usize| {
            let mut out = format!("R{status} {} {body}\0", headers.len());
            for (name, value) in headers {
                out.push_str(&format!("{name}\0{value}\0"));
            }
            let mut out = out.into_bytes();
            out.resize(out.len() + body, b'x');
            out
        };
        assert!(
            check(
                &respond(200, &[("content-type", "text/plain")], 10),
                &allowed
            )
            .is_ok()
        );
        assert!(matches!(
            check(&respond(99, &[], 0), &allowed),
            Err(Refused::Status(99))
        ));
        assert!(check(&respond(600, &[], 0), &allowed).is_err());
        assert!(check(&respond(200, &[("content-length", "1")], 0), &allowed).is_err());
        assert!(check(&respond(200, &[], MAX_BODY + 1), &allowed).is_err());
    }
}
