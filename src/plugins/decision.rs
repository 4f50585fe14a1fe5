//! What a plugin may decide, checked before anything is applied: legal header names and values,
//! only headers the policy allows, only allowed origins, a sane path, a bounded direct answer.

use http::header::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use super::bindings::edgewarden::policy::types::{Decision, ForwardAction, Response};
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
    pub origins: &'a [(String, OriginId)],
}

impl Allowed<'_> {
    fn header(&self, name: &HeaderName) -> bool {
        !FRAMING.contains(&name.as_str()) && self.headers.matches(name.as_str())
    }
}

/// Validate a plugin's decision. `Err` names what was wrong (for logs, never for clients).
pub fn check(decision: Decision, allowed: &Allowed<'_>) -> Result<Checked, String> {
    match decision {
        Decision::Forward(action) => check_forward(action, allowed),
        Decision::Respond(response) => check_response(response),
    }
}

fn pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("illegal header name {name:?}"))?;
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("illegal value for header {name}"))?;
    Ok((name, value))
}

fn check_forward(action: ForwardAction, allowed: &Allowed<'_>) -> Result<Checked, String> {
    let mut set = Vec::with_capacity(action.set_headers.len());
    let mut append = Vec::with_capacity(action.append_headers.len());
    let mut remove = Vec::with_capacity(action.remove_headers.len());
    for (list, out) in [
        (&action.set_headers, &mut set),
        (&action.append_headers, &mut append),
    ] {
        for (name, value) in list {
            let (name, value) = pair(name, value)?;
            if !allowed.header(&name) {
                return Err(format!("header {name} is not in allow_headers"));
            }
            out.push((name, value));
        }
    }
    for name in &action.remove_headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("illegal header name {name:?}"))?;
        if !allowed.header(&name) {
            return Err(format!("header {name} is not in allow_headers"));
        }
        remove.push(name);
    }
    let origin = match &action.origin {
        None => None,
        Some(name) => match allowed.origins.iter().find(|(allowed, _)| allowed == name) {
            Some((_, id)) => Some(*id),
            None => return Err(format!("origin {name:?} is not in allow_origins")),
        },
    };
    let path = action.path.map(|path| canonical_path(&path)).transpose()?;
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
fn canonical_path(path: &str) -> Result<String, String> {
    match target::parse(path.as_bytes(), None, false) {
        Ok(Parsed::Target(t)) if t.query().is_none() && !t.has_parameters => Ok(t.target),
        Ok(_) => Err("path must be a plain absolute path".to_string()),
        Err(e) => Err(format!("path must be a plain absolute path: {e}")),
    }
}

fn check_response(response: Response) -> Result<Checked, String> {
    if !(200..=599).contains(&response.status) {
        return Err(format!("status {} is outside 200-599", response.status));
    }
    if response.body.len() > MAX_BODY {
        return Err(format!(
            "body of {} bytes is over {MAX_BODY}",
            response.body.len()
        ));
    }
    let mut headers = Vec::with_capacity(response.headers.len());
    for (name, value) in &response.headers {
        let (name, value) = pair(name, value)?;
        if FRAMING.contains(&name.as_str()) {
            return Err(format!("header {name} is set by the gateway"));
        }
        headers.push((name, value));
    }
    Ok(Checked::Respond(PolicyAnswer {
        status: response.status,
        headers,
        body: response.body,
    }))
}

impl Changes {
    /// Make the header and path changes on the request; returns the origin chosen, if any.
    pub fn apply(self, req: &mut RequestHeader) -> Result<Option<OriginId>, String> {
        for name in self.remove {
            req.remove_header(&name);
        }
        for (name, value) in self.set {
            req.insert_header(name, value).map_err(|e| e.to_string())?;
        }
        for (name, value) in self.append {
            req.append_header(name, value).map_err(|e| e.to_string())?;
        }
        if let Some(path) = self.path {
            let target = match req.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            let uri: http::Uri = target
                .parse()
                .map_err(|_| "path does not form a URI".to_string())?;
            req.set_uri(uri);
        }
        Ok(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(set: &[(&str, &str)], origin: Option<&str>, path: Option<&str>) -> Decision {
        Decision::Forward(ForwardAction {
            set_headers: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            append_headers: vec![],
            remove_headers: vec![],
            origin: origin.map(str::to_string),
            path: path.map(str::to_string),
        })
    }

    #[test]
    fn only_allowed_headers_origins_and_paths_pass() {
        let headers = HeaderPatterns::new(["x-portal", "x-internal-*"]);
        let origins = vec![("uk".to_string(), OriginId::at(1))];
        let allowed = Allowed {
            headers: &headers,
            origins: &origins,
        };
        let checked = check(
            forward(
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
        for bad in [
            forward(&[("x-other", "1")], None, None),
            forward(&[("x-portal", "a\r\nx-evil: 1")], None, None),
            forward(&[("bad header", "1")], None, None),
            forward(&[("host", "evil")], None, None),
            forward(&[], Some("us"), None),
            forward(&[], None, Some("/a/../admin")),
            forward(&[], None, Some("relative")),
        ] {
            assert!(check(bad, &allowed).is_err());
        }
    }

    #[test]
    fn direct_answers_are_bounded() {
        let allowed = Allowed {
            headers: &HeaderPatterns::default(),
            origins: &[],
        };
        let respond = |status: u16, headers: Vec<(String, String)>, body: usize| {
            Decision::Respond(Response {
                status,
                headers,
                body: vec![b'x'; body],
            })
        };
        assert!(
            check(
                respond(200, vec![("content-type".into(), "text/plain".into())], 10),
                &allowed
            )
            .is_ok()
        );
        assert!(check(respond(99, vec![], 0), &allowed).is_err());
        assert!(check(respond(600, vec![], 0), &allowed).is_err());
        assert!(
            check(
                respond(200, vec![("content-length".into(), "1".into())], 0),
                &allowed
            )
            .is_err()
        );
        assert!(check(respond(200, vec![], MAX_BODY + 1), &allowed).is_err());
    }
}
