//! The bytes of one session value in Redis: a fixed-size ASCII header that
//! the Lua scripts read, followed by the body.
//!
//! ```text
//! offset  len  field
//!      0    2  "s1": format tag and layout version
//!      2    1  'p' when the body is plain, 'e' when it is sealed
//!      3   20  version, decimal, zero-padded
//!     23   20  expires_at as Unix milliseconds, zero-padded, or 20 '-'
//!     43    6  nanoseconds of expires_at past the millisecond, or 6 '-'
//!     49   64  SHA-256 of the identity in lowercase hex, or 64 '-'
//!    113   20  deadline of the identity index entry, Unix ms, or 20 '-'
//!    133       body
//! ```
//!
//! The plain body is `0` for no identity, or `1`, the identity length as a
//! big-endian `u32` and the identity, followed by the payload. A sealed body
//! is the plain body sealed by `KeyRing::seal` with `Purpose::RedisValue`
//! and the Redis key as context, so a value copied under another key does
//! not open.

use bytes::Bytes;
use ring::digest;
use time::OffsetDateTime;

use crate::{KeyRing, Purpose, SessionId, StoreError, StoredSession};

/// Length of the header.
pub(super) const HEADER_LEN: usize = 133;
const TAG: &[u8; 2] = b"s1";
const PLAIN: u8 = b'p';
const SEALED: u8 = b'e';

const VERSION_AT: usize = 3;
const EXPIRES_AT: usize = 23;
const EXPIRES_NANOS_AT: usize = 43;
const IDENTITY_AT: usize = 49;
const INDEX_UNTIL_AT: usize = 113;

const NUMBER_LEN: usize = 20;
const NANOS_LEN: usize = 6;
const DIGEST_LEN: usize = 64;

/// A header field with no value: no deadline or no identity.
const ABSENT: u8 = b'-';

/// The header fields of a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) sealed: bool,
    pub(super) version: u64,
    pub(super) expires_at: Option<OffsetDateTime>,
    /// Hex SHA-256 of the identity, as in the identity index key.
    pub(super) identity_digest: Option<String>,
    /// When the identity index entry of this session expires, in Unix ms.
    pub(super) index_until_ms: Option<i64>,
}

/// The reason bytes under a session key are not a session value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Malformed {
    /// The header is missing, truncated or has another format tag.
    Header,
    /// The body is sealed but the store has no key ring, or the reverse.
    Sealing,
    /// The sealed body does not open with the key ring and this key.
    Seal,
    /// The plain body is truncated or its identity is not UTF-8.
    Body,
}

impl Malformed {
    pub(super) fn into_error(self) -> StoreError {
        let message = match self {
            Malformed::Header => {
                "the value under a session key is not a session value of this store; \
                 another program may be writing under the key prefix"
            }
            Malformed::Sealing => {
                "the value under a session key was written with encryption at rest on \
                 and is read with it off, or the reverse; configure every node alike"
            }
            Malformed::Seal => {
                "the sealed value under a session key does not open with the key ring; \
                 it was sealed with a key that is no longer in the ring or was altered"
            }
            Malformed::Body => "the value under a session key has a truncated or invalid body",
        };
        StoreError::Backend {
            message: message.to_owned(),
        }
    }
}

/// Returns the lowercase hex digest of an identity that names its index:
/// an HMAC-SHA256 under the ring's identity-index key when values are
/// sealed, so that key names do not reveal user ids, and a plain SHA-256
/// otherwise.
pub(super) fn identity_digest(keys: Option<&KeyRing>, identity: &str) -> String {
    let hash: Vec<u8> = match keys {
        Some(keys) => keys
            .sign(Purpose::IdentityIndex, &[identity.as_bytes()])
            .as_ref()
            .to_vec(),
        None => digest::digest(&digest::SHA256, identity.as_bytes())
            .as_ref()
            .to_vec(),
    };
    let mut hex = String::with_capacity(DIGEST_LEN);
    for byte in &hash {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Splits an instant into whole Unix milliseconds and the nanoseconds past
/// them. Instants before 1970 become 0, which is in the past anyway.
pub(super) fn split_millis(at: OffsetDateTime) -> (i64, u32) {
    let nanos = at.unix_timestamp_nanos().max(0);
    let millis = i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX);
    let rest = u32::try_from(nanos % 1_000_000).unwrap_or(0);
    (millis, rest)
}

/// Formats an optional number as a fixed-width header field.
fn number_field(value: Option<u64>, width: usize, out: &mut Vec<u8>) {
    match value {
        Some(value) => out.extend_from_slice(format!("{value:0width$}").as_bytes()),
        None => out.extend(std::iter::repeat_n(ABSENT, width)),
    }
}

/// Returns the `expires_at` header fields (milliseconds, then nanoseconds),
/// as the touch script writes them.
pub(super) fn expiry_fields(expires_at: Option<OffsetDateTime>) -> Vec<u8> {
    let mut out = Vec::with_capacity(NUMBER_LEN + NANOS_LEN);
    let split = expires_at.map(split_millis);
    number_field(
        split.map(|(millis, _)| millis.unsigned_abs()),
        NUMBER_LEN,
        &mut out,
    );
    number_field(
        split.map(|(_, nanos)| u64::from(nanos)),
        NANOS_LEN,
        &mut out,
    );
    out
}

/// Returns the index deadline as a header field.
pub(super) fn index_until_field(index_until_ms: Option<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(NUMBER_LEN);
    number_field(
        index_until_ms.map(|ms| ms.max(0).unsigned_abs()),
        NUMBER_LEN,
        &mut out,
    );
    out
}

/// Encodes `session` for `key`, sealing the body when `keys` is given.
pub(super) fn encode(
    session: &StoredSession,
    index_until_ms: Option<i64>,
    keys: Option<&KeyRing>,
    key: &str,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + session.payload.len() + 64);
    match &session.identity {
        None => body.push(0),
        Some(identity) => {
            body.push(1);
            let len = u32::try_from(identity.len()).unwrap_or(u32::MAX);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(identity.as_bytes());
        }
    }
    body.extend_from_slice(&session.payload);

    let mut out = Vec::with_capacity(HEADER_LEN + body.len() * 4 / 3 + 64);
    out.extend_from_slice(TAG);
    out.push(if keys.is_some() { SEALED } else { PLAIN });
    number_field(Some(session.version), NUMBER_LEN, &mut out);
    out.extend_from_slice(&expiry_fields(session.expires_at));
    match &session.identity {
        Some(identity) => out.extend_from_slice(identity_digest(keys, identity).as_bytes()),
        None => out.extend(std::iter::repeat_n(ABSENT, DIGEST_LEN)),
    }
    out.extend_from_slice(&index_until_field(index_until_ms));
    debug_assert_eq!(out.len(), HEADER_LEN);

    match keys {
        Some(keys) => {
            let sealed = keys.seal(Purpose::RedisValue, key.as_bytes(), &body);
            out.extend_from_slice(sealed.as_bytes());
        }
        None => out.extend_from_slice(&body),
    }
    out
}

fn parse_number(field: &[u8]) -> Result<Option<u64>, Malformed> {
    if field.iter().all(|&byte| byte == ABSENT) {
        return Ok(None);
    }
    if !field.iter().all(u8::is_ascii_digit) {
        return Err(Malformed::Header);
    }
    let text = std::str::from_utf8(field).map_err(|_| Malformed::Header)?;
    text.parse().map(Some).map_err(|_| Malformed::Header)
}

/// Parses the header at the start of `bytes`.
pub(super) fn parse_header(bytes: &[u8]) -> Result<Header, Malformed> {
    if bytes.len() < HEADER_LEN || &bytes[..2] != TAG {
        return Err(Malformed::Header);
    }
    let sealed = match bytes[2] {
        PLAIN => false,
        SEALED => true,
        _ => return Err(Malformed::Header),
    };
    let field = |at: usize, len: usize| &bytes[at..at + len];

    let version = parse_number(field(VERSION_AT, NUMBER_LEN))?.ok_or(Malformed::Header)?;
    let millis = parse_number(field(EXPIRES_AT, NUMBER_LEN))?;
    let nanos = parse_number(field(EXPIRES_NANOS_AT, NANOS_LEN))?;
    let expires_at = match (millis, nanos) {
        (None, None) => None,
        (Some(millis), Some(nanos)) if nanos < 1_000_000 => {
            let total = i128::from(millis) * 1_000_000 + i128::from(nanos);
            Some(OffsetDateTime::from_unix_timestamp_nanos(total).map_err(|_| Malformed::Header)?)
        }
        _ => return Err(Malformed::Header),
    };

    let digest = field(IDENTITY_AT, DIGEST_LEN);
    let identity_digest = if digest.iter().all(|&byte| byte == ABSENT) {
        None
    } else if digest
        .iter()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte))
    {
        Some(String::from_utf8_lossy(digest).into_owned())
    } else {
        return Err(Malformed::Header);
    };

    let index_until_ms = parse_number(field(INDEX_UNTIL_AT, NUMBER_LEN))?
        .map(|ms| i64::try_from(ms).map_err(|_| Malformed::Header))
        .transpose()?;

    Ok(Header {
        sealed,
        version,
        expires_at,
        identity_digest,
        index_until_ms,
    })
}

/// Decodes a value read from `key` into the session `id`.
pub(super) fn decode(
    id: &SessionId,
    bytes: &[u8],
    header: Header,
    keys: Option<&KeyRing>,
    key: &str,
) -> Result<StoredSession, Malformed> {
    let body = &bytes[HEADER_LEN..];
    let opened;
    let plain = match (header.sealed, keys) {
        (true, Some(keys)) => {
            let token = std::str::from_utf8(body).map_err(|_| Malformed::Seal)?;
            opened = keys
                .open(Purpose::RedisValue, key.as_bytes(), token)
                .map_err(|_| Malformed::Seal)?;
            // NOTE: a value sealed with a retired key is re-sealed with the
            // current key on its next save, not here, so a load stays a read.
            opened.plaintext.as_slice()
        }
        (false, None) => body,
        _ => return Err(Malformed::Sealing),
    };

    let (identity, payload) = match plain.split_first() {
        Some((0, rest)) => (None, rest),
        Some((1, rest)) if rest.len() >= 4 => {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let rest = &rest[4..];
            if rest.len() < len {
                return Err(Malformed::Body);
            }
            let identity = std::str::from_utf8(&rest[..len]).map_err(|_| Malformed::Body)?;
            (Some(identity.to_owned()), &rest[len..])
        }
        _ => return Err(Malformed::Body),
    };

    // The digest in the header drives the index; it must match the identity.
    if identity
        .as_deref()
        .map(|identity| identity_digest(keys, identity))
        != header.identity_digest
    {
        return Err(Malformed::Body);
    }

    Ok(StoredSession {
        id: id.clone(),
        version: header.version,
        expires_at: header.expires_at,
        identity,
        payload: Bytes::copy_from_slice(payload),
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::Secret;

    fn session(identity: Option<&str>) -> StoredSession {
        StoredSession {
            id: SessionId::random(),
            version: 42,
            expires_at: Some(datetime!(2031-05-06 07:08:09.123_456_789 UTC)),
            identity: identity.map(str::to_owned),
            payload: Bytes::from_static(b"\x00payload\xff"),
        }
    }

    fn round_trip(session: &StoredSession, keys: Option<&KeyRing>) -> StoredSession {
        let bytes = encode(session, Some(1_900_000_000_000), keys, "k");
        let header = parse_header(&bytes).unwrap();
        assert_eq!(header.index_until_ms, Some(1_900_000_000_000));
        decode(&session.id, &bytes, header, keys, "k").unwrap()
    }

    #[test]
    fn header_layout_matches_the_scripts() {
        let session = session(Some("alice"));
        let bytes = encode(&session, None, None, "k");
        let header = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        assert_eq!(&header[..3], "s1p");
        assert_eq!(&header[3..23], "00000000000000000042");
        assert_eq!(&header[23..43], "00000001935817689123");
        assert_eq!(&header[43..49], "456789");
        assert_eq!(&header[49..113], identity_digest(None, "alice"));
        assert_eq!(&header[113..133], "--------------------");
    }

    #[test]
    fn plain_values_round_trip() {
        for identity in [None, Some("alice"), Some("")] {
            let session = session(identity);
            assert_eq!(round_trip(&session, None), session);
        }
        let mut forever = session(None);
        forever.expires_at = None;
        assert_eq!(round_trip(&forever, None), forever);
    }

    #[test]
    fn sealed_identity_digest_is_keyed() {
        let keys = KeyRing::new(Secret::try_from_bytes(&[3; 32]).unwrap());
        let other = KeyRing::new(Secret::try_from_bytes(&[4; 32]).unwrap());
        let plain = identity_digest(None, "alice");
        let keyed = identity_digest(Some(&keys), "alice");
        assert_eq!(keyed.len(), DIGEST_LEN);
        assert_ne!(
            keyed, plain,
            "a sealed store never names the index by a plain hash"
        );
        assert_ne!(keyed, identity_digest(Some(&other), "alice"));
        assert_eq!(keyed, identity_digest(Some(&keys), "alice"));
    }

    #[test]
    fn sealed_values_round_trip_and_hide_the_body() {
        let keys = KeyRing::new(Secret::try_from_bytes(&[3; 32]).unwrap());
        let session = session(Some("alice@example.com"));
        assert_eq!(round_trip(&session, Some(&keys)), session);

        let bytes = encode(&session, None, Some(&keys), "k");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("alice@example.com"));
        assert!(!text.contains("payload"));
    }

    #[test]
    fn sealed_value_under_another_key_fails() {
        let keys = KeyRing::new(Secret::try_from_bytes(&[3; 32]).unwrap());
        let session = session(None);
        let bytes = encode(&session, None, Some(&keys), "session:{a}");
        let header = parse_header(&bytes).unwrap();
        assert_eq!(
            decode(&session.id, &bytes, header, Some(&keys), "session:{b}"),
            Err(Malformed::Seal)
        );
    }

    #[test]
    fn sealing_mismatch_is_reported() {
        let keys = KeyRing::new(Secret::try_from_bytes(&[3; 32]).unwrap());
        let session = session(None);
        let sealed = encode(&session, None, Some(&keys), "k");
        let plain = encode(&session, None, None, "k");
        let header = parse_header(&sealed).unwrap();
        assert_eq!(
            decode(&session.id, &sealed, header, None, "k"),
            Err(Malformed::Sealing)
        );
        let header = parse_header(&plain).unwrap();
        assert_eq!(
            decode(&session.id, &plain, header, Some(&keys), "k"),
            Err(Malformed::Sealing)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let id = SessionId::random();
        let valid = encode(&session(Some("alice")), None, None, "k");
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"hello".to_vec(),
            vec![0xff; HEADER_LEN + 10],
            valid[..HEADER_LEN - 1].to_vec(),
            [b"s2".as_slice(), &valid[2..]].concat(),
            [&valid[..5], b"x".as_slice(), &valid[6..]].concat(),
            [&valid[..50], b"G".as_slice(), &valid[51..]].concat(),
            [&valid[..43], b"------".as_slice(), &valid[49..]].concat(),
        ];
        for (index, bytes) in cases.iter().enumerate() {
            assert!(parse_header(bytes).is_err(), "case {index}");
        }

        let truncated_body = &valid[..HEADER_LEN + 3];
        let header = parse_header(truncated_body).unwrap();
        assert_eq!(
            decode(&id, truncated_body, header, None, "k"),
            Err(Malformed::Body)
        );
        let no_body = &valid[..HEADER_LEN];
        let header = parse_header(no_body).unwrap();
        assert_eq!(
            decode(&id, no_body, header, None, "k"),
            Err(Malformed::Body)
        );
    }

    #[test]
    fn identity_not_matching_its_digest_is_malformed() {
        let alice = encode(&session(Some("alice")), None, None, "k");
        let bob = encode(&session(Some("bob")), None, None, "k");
        let forged = [&alice[..HEADER_LEN], &bob[HEADER_LEN..]].concat();
        let header = parse_header(&forged).unwrap();
        assert_eq!(
            decode(&SessionId::random(), &forged, header, None, "k"),
            Err(Malformed::Body)
        );
    }
}
