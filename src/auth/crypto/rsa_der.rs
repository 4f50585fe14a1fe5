//! Minimal strict DER reader for a PKCS#1 `RSAPublicKey` (RFC 8017 A.1.1):
//! `SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
//!
//! ring verifies signatures with this DER directly but cannot hand n and e back; JWK export
//! (`KeyUtils::rsa_pub_components_from_public_key`) needs them. Only what that structure needs is
//! read: definite lengths in minimal form up to 65535 bytes, positive minimal integers, nothing
//! trailing. Anything else is refused. This reader never decides whether a signature is valid.

/// `(n, e)` as big-endian bytes without leading zeros, or `None` if `der` is not exactly one
/// well-formed `RSAPublicKey`.
pub(super) fn rsa_public_key_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    const TAG_INTEGER: u8 = 0x02;
    const TAG_SEQUENCE: u8 = 0x30;
    let (body, rest) = read_tlv(der, TAG_SEQUENCE)?;
    let (n, body) = read_tlv(body, TAG_INTEGER)?;
    let (e, body) = read_tlv(body, TAG_INTEGER)?;
    if !rest.is_empty() || !body.is_empty() {
        return None;
    }
    Some((positive_integer(n)?.to_vec(), positive_integer(e)?.to_vec()))
}

/// Splits one tag-length-value with the expected tag off the front of `input`:
/// `(value, remainder)`.
fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found_tag, rest) = input.split_first()?;
    if found_tag != tag {
        return None;
    }
    let (&first_len, rest) = rest.split_first()?;
    let (len, rest) = match first_len {
        0x00..=0x7f => (usize::from(first_len), rest),
        // Long forms must be minimal (DER): one length byte for 128..=255, two for 256..=65535.
        0x81 => match rest.split_first()? {
            (&len, rest) if len >= 0x80 => (usize::from(len), rest),
            _ => return None,
        },
        0x82 => match rest.split_first_chunk::<2>()? {
            (&len, rest) if u16::from_be_bytes(len) >= 0x100 => {
                (usize::from(u16::from_be_bytes(len)), rest)
            }
            _ => return None,
        },
        // Indefinite length (0x80) is BER only; longer length fields are far beyond any RSA key.
        _ => return None,
    };
    rest.split_at_checked(len)
}

/// The magnitude of a DER INTEGER that must be positive and minimally encoded.
fn positive_integer(content: &[u8]) -> Option<&[u8]> {
    match content {
        // Empty, zero, or negative (high bit set) integers are not valid moduli or exponents.
        [] | [0] => None,
        [first, ..] if first & 0x80 != 0 => None,
        // A leading zero is allowed only to keep the next byte's high bit from reading as a sign.
        [0, second, ..] if second & 0x80 == 0 => None,
        [0, magnitude @ ..] => Some(magnitude),
        magnitude => Some(magnitude),
    }
}

#[cfg(test)]
mod tests {
    use super::rsa_public_key_components as parse;

    /// `SEQUENCE { INTEGER n, INTEGER e }` with short-form lengths.
    fn der(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, n.len() as u8];
        body.extend_from_slice(n);
        body.extend_from_slice(&[0x02, e.len() as u8]);
        body.extend_from_slice(e);
        let mut out = vec![0x30, body.len() as u8];
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn reads_modulus_and_exponent_and_drops_the_sign_byte() {
        let parsed = parse(&der(&[0x00, 0xc1, 0x02], &[0x01, 0x00, 0x01]));
        assert_eq!(parsed, Some((vec![0xc1, 0x02], vec![0x01, 0x00, 0x01])));
    }

    #[test]
    fn reads_long_form_lengths() {
        let n: Vec<u8> = std::iter::once(0x00).chain([0xab; 256]).collect();
        let mut body = vec![0x02, 0x82, 0x01, 0x01];
        body.extend_from_slice(&n);
        body.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
        let mut key = vec![0x30, 0x82];
        key.extend_from_slice(&(body.len() as u16).to_be_bytes());
        key.extend_from_slice(&body);
        let (got_n, got_e) = parse(&key).expect("well-formed key");
        assert_eq!(got_n, vec![0xab; 256]);
        assert_eq!(got_e, vec![0x01, 0x00, 0x01]);
    }

    #[test]
    fn refuses_negative_zero_and_non_minimal_integers() {
        assert_eq!(parse(&der(&[0xc1], &[0x03])), None, "negative n");
        assert_eq!(parse(&der(&[0x41], &[0x83])), None, "negative e");
        assert_eq!(parse(&der(&[0x00], &[0x03])), None, "zero n");
        assert_eq!(parse(&der(&[0x41], &[])), None, "empty e");
        assert_eq!(parse(&der(&[0x00, 0x41], &[0x03])), None, "padded n");
    }

    #[test]
    fn refuses_trailing_bytes_wrong_tags_and_non_minimal_lengths() {
        let good = der(&[0x41], &[0x03]);
        assert!(parse(&good).is_some());

        let mut trailing = good.clone();
        trailing.push(0x00);
        assert_eq!(parse(&trailing), None, "bytes after the SEQUENCE");

        let three_integers = [
            0x30, 0x09, 0x02, 0x01, 0x41, 0x02, 0x01, 0x03, 0x02, 0x01, 0x05,
        ];
        assert_eq!(parse(&three_integers), None, "extra INTEGER inside");

        let mut set = good.clone();
        set[0] = 0x31;
        assert_eq!(parse(&set), None, "SET instead of SEQUENCE");

        let long_short = [0x30, 0x81, 0x06, 0x02, 0x01, 0x41, 0x02, 0x01, 0x03];
        assert_eq!(parse(&long_short), None, "long form for a short length");

        let indefinite = [0x30, 0x80, 0x02, 0x01, 0x41, 0x02, 0x01, 0x03, 0x00, 0x00];
        assert_eq!(parse(&indefinite), None, "indefinite length");
    }

    #[test]
    fn refuses_every_truncation_without_panicking() {
        let n: Vec<u8> = std::iter::once(0x00).chain([0xab; 200]).collect();
        let mut body = vec![0x02, 0x81, n.len() as u8];
        body.extend_from_slice(&n);
        body.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
        let mut key = vec![0x30, 0x81, body.len() as u8];
        key.extend_from_slice(&body);
        assert!(parse(&key).is_some());
        for len in 0..key.len() {
            assert_eq!(parse(&key[..len]), None, "prefix of {len} bytes");
        }
    }
}
