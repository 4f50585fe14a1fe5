//! A route's bounds on the request that its head alone decides: the header fields' size (431) and
//! a declared body length (413). What streams after the head (a chunked body's count, the body's
//! deadline) is enforced by `request_body_filter`.

use pingora::http::RequestHeader;

use super::respond::Rejection;
use crate::config::RequestLimits;

/// `Err` when the head breaks one of `limits`.
pub fn check_head(limits: &RequestLimits, req: &RequestHeader) -> Result<(), Rejection> {
    if let Some(max) = limits.max_header_bytes {
        // Each field as on the wire: name, ": ", value, CRLF.
        let size: usize = req
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if size > max {
            return Err(Rejection::HeadersTooLarge);
        }
    }
    if let Some(max) = limits.max_body_bytes {
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            return Err(Rejection::BodyTooLarge);
        }
    }
    Ok(())
}
