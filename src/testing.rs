//! Helpers for the crate's unit tests.

use pingora::http::RequestHeader;

/// A `GET` for `target` with these header fields, in order (repeated names kept).
pub fn request_to(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", target.as_bytes(), None).expect("request");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

/// A `GET /` with these header fields.
pub fn request(headers: &[(&str, &str)]) -> RequestHeader {
    request_to("/", headers)
}
