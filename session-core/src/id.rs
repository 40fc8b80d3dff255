//! Session ids, their signature in the cookie, and their log digest.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::keys::{constant_time_eq, fill_random, sign_with, KeyRing, Purpose};

/// Random bytes in a session id: 256 bits.
const ID_BYTES: usize = 32;
/// Bytes of the HMAC-SHA256 tag kept in the cookie: 128 bits.
const TAG_BYTES: usize = 16;
/// Length of an id encoded as base64url without padding.
pub const SESSION_ID_ENCODED_LEN: usize = 43;
const TAG_ENCODED_LEN: usize = 22;
/// Length of the signed cookie value `<id>.<tag>`.
pub(crate) const SIGNED_ID_LEN: usize = SESSION_ID_ENCODED_LEN + 1 + TAG_ENCODED_LEN;

/// A session id: 256 bits from the operating system's CSPRNG.
///
/// The bytes are private and `Debug` is redacted. Its text form is a fixed
/// 43-character base64url string, used as the store key; in the cookie the id
/// travels with an HMAC tag (see [`SessionId::to_cookie_value`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// Draws a new random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        fill_random(&mut bytes);
        Self(bytes)
    }

    /// Builds an id from raw bytes. Meant for custom [`IdGenerator`]s in
    /// tests; production ids come from [`SessionId::random`].
    pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// Parses the 43-character base64url form used as the store key.
    ///
    /// Returns `None` for any other length, alphabet or a non-canonical
    /// encoding.
    pub fn parse(encoded: &str) -> Option<Self> {
        if encoded.len() != SESSION_ID_ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(encoded, &mut bytes) {
            Ok(ID_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    /// Returns the 43-character base64url form, used as the store key.
    ///
    /// Treat it as a secret: it must never be logged.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Returns the raw bytes.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    /// Returns the cookie value `<id>.<tag>`, where the tag is a truncated
    /// HMAC-SHA256 of the cookie name and the id under the current key.
    pub fn to_cookie_value(&self, keys: &KeyRing, cookie_name: &str) -> String {
        let tag = keys.sign(Purpose::IdSignature, &[cookie_name.as_bytes(), &self.0]);
        let mut out = String::with_capacity(SIGNED_ID_LEN);
        URL_SAFE_NO_PAD.encode_string(self.0, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&tag.as_ref()[..TAG_BYTES], &mut out);
        out
    }

    /// Verifies a cookie value produced by [`SessionId::to_cookie_value`]
    /// with any key of the ring, and returns the id.
    ///
    /// The grammar is checked first, so a malformed value costs no HMAC. A
    /// forged or foreign value returns `None` without touching any store.
    pub fn from_cookie_value(keys: &KeyRing, cookie_name: &str, value: &str) -> Option<Self> {
        Self::verify_cookie_value(keys, cookie_name, value).map(|(id, _)| id)
    }

    /// Like [`SessionId::from_cookie_value`], and also returns true when a
    /// retired key signed the value, so the caller can re-issue the cookie
    /// under the current key before the retired key is dropped.
    pub fn verify_cookie_value(
        keys: &KeyRing,
        cookie_name: &str,
        value: &str,
    ) -> Option<(Self, bool)> {
        if value.len() != SIGNED_ID_LEN || value.as_bytes()[SESSION_ID_ENCODED_LEN] != b'.' {
            return None;
        }
        let id = Self::parse(&value[..SESSION_ID_ENCODED_LEN])?;
        let mut tag = [0u8; TAG_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(&value[SESSION_ID_ENCODED_LEN + 1..], &mut tag) {
            Ok(TAG_BYTES) => {}
            _ => return None,
        }

        keys.all().find_map(|(index, key)| {
            let expected = sign_with(key, Purpose::IdSignature, &[cookie_name.as_bytes(), &id.0]);
            constant_time_eq(&expected.as_ref()[..TAG_BYTES], &tag)
                .then(|| (id.clone(), index != 0))
        })
    }

    /// Returns a short keyed digest of the id, safe to log for correlation.
    pub fn digest(&self, keys: &KeyRing) -> IdDigest {
        let tag = keys.sign(Purpose::LogDigest, &[&self.0]);
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(&tag.as_ref()[..6]);
        IdDigest(bytes)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(REDACTED)")
    }
}

/// A 48-bit keyed digest of a session id, printed as 12 hex digits.
///
/// It lets logs correlate events of one session without revealing the id:
/// without the server's key it cannot be turned back into the id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdDigest([u8; 6]);

impl fmt::Display for IdDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for IdDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdDigest({self})")
    }
}

/// A hasher for maps keyed by [`SessionId`] that takes the id's own random
/// bits as the hash instead of running SipHash over them.
///
/// Use it only where every key comes from [`SessionId::random`] or from a
/// verified cookie: clients cannot choose such ids, so they cannot make
/// them collide. Build maps with [`IdBuildHasher`].
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A `SessionId` hashes as its 32 bytes; the first eight are enough.
        // Each write is mixed into the running hash, so other keys still
        // hash correctly, but only the first eight bytes of a write count.
        let mut chunk = [0u8; 8];
        let take = bytes.len().min(8);
        chunk[..take].copy_from_slice(&bytes[..take]);
        self.0 =
            (self.0.rotate_left(5) ^ u64::from_le_bytes(chunk)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, _length: usize) {
        // The length prefix of the id's bytes is the same for every id.
    }
}

/// Builds [`IdHasher`]s, for `HashMap<SessionId, _, IdBuildHasher>` and
/// other maps keyed by server-drawn ids.
pub type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;

/// A source of new session ids.
///
/// The default draws from the OS CSPRNG. Tests may inject a generator that
/// replays chosen ids to provoke collisions; the stores' insert-if-absent
/// `create` then makes sure a colliding id never adopts a live record.
pub trait IdGenerator: Send + Sync + fmt::Debug + 'static {
    /// Returns a new id.
    fn generate(&self) -> SessionId;
}

/// Draws ids from `ring::rand::SystemRandom`, the operating system's CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIdGenerator;

impl IdGenerator for RandomIdGenerator {
    fn generate(&self) -> SessionId {
        SessionId::random()
    }
}

impl<G: IdGenerator> IdGenerator for Arc<G> {
    fn generate(&self) -> SessionId {
        (**self).generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use std::collections::HashSet;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(Secret::try_from_bytes(&[byte; 32]).unwrap())
    }

    #[test]
    fn ids_are_unique_and_fixed_length_over_100_000_draws() {
        let mut seen = HashSet::with_capacity(100_000);
        for _ in 0..100_000 {
            let encoded = SessionId::random().encode();
            assert_eq!(encoded.len(), SESSION_ID_ENCODED_LEN);
            assert!(encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert!(seen.insert(encoded), "duplicate id drawn");
        }
    }

    #[test]
    fn id_hasher_spreads_random_ids() {
        use std::collections::HashMap;
        use std::hash::BuildHasher;

        let ids: Vec<SessionId> = (0..1000).map(|_| SessionId::random()).collect();
        let mut map: HashMap<SessionId, usize, IdBuildHasher> = HashMap::default();
        for (index, id) in ids.iter().enumerate() {
            map.insert(id.clone(), index);
        }
        for (index, id) in ids.iter().enumerate() {
            assert_eq!(map.get(id), Some(&index));
        }

        let hasher = IdBuildHasher::default();
        let hashes: HashSet<u64> = ids.iter().map(|id| hasher.hash_one(id)).collect();
        assert_eq!(hashes.len(), ids.len(), "random ids get distinct hashes");
    }

    #[test]
    fn signed_cookie_value_round_trips() {
        let ring = ring(1);
        let id = SessionId::random();
        let value = id.to_cookie_value(&ring, "id");
        assert_eq!(value.len(), SIGNED_ID_LEN);
        assert_eq!(SessionId::from_cookie_value(&ring, "id", &value), Some(id));
    }

    #[test]
    fn forged_or_foreign_cookie_value_is_rejected() {
        let ring = ring(1);
        let id = SessionId::random();
        let value = id.to_cookie_value(&ring, "id");

        // A well-formed id with a tag from another id.
        let other = SessionId::random().to_cookie_value(&ring, "id");
        let forged = format!(
            "{}{}",
            &value[..SESSION_ID_ENCODED_LEN],
            &other[SESSION_ID_ENCODED_LEN..]
        );
        assert_eq!(SessionId::from_cookie_value(&ring, "id", &forged), None);

        assert_eq!(SessionId::from_cookie_value(&ring, "sid", &value), None);
        assert_eq!(
            SessionId::from_cookie_value(&self::ring(2), "id", &value),
            None
        );
        assert_eq!(SessionId::from_cookie_value(&ring, "id", &value[1..]), None);
        assert_eq!(
            SessionId::from_cookie_value(&ring, "id", &format!("{value}A")),
            None
        );
        assert_eq!(
            SessionId::from_cookie_value(&ring, "id", "é".repeat(33).as_str()),
            None
        );
        assert_eq!(SessionId::from_cookie_value(&ring, "id", ""), None);
    }

    #[test]
    fn retired_key_still_verifies_an_id() {
        let old = ring(1);
        let id = SessionId::random();
        let value = id.to_cookie_value(&old, "id");
        let rotated = KeyRing::new(Secret::try_from_bytes(&[2u8; 32]).unwrap())
            .with_retired(Secret::try_from_bytes(&[1u8; 32]).unwrap());
        assert_eq!(
            SessionId::from_cookie_value(&rotated, "id", &value),
            Some(id)
        );
    }

    #[test]
    fn debug_and_digest_hide_the_id() {
        let ring = ring(1);
        let id = SessionId::random();
        assert_eq!(format!("{id:?}"), "SessionId(REDACTED)");
        let digest = id.digest(&ring).to_string();
        assert_eq!(digest.len(), 12);
        assert!(!id.encode().contains(&digest));
    }

    #[test]
    fn parse_rejects_non_canonical_text() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.encode()), Some(id));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse(&"!".repeat(SESSION_ID_ENCODED_LEN)), None);
    }
}
