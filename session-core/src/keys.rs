//! Secrets, the key ring and the per-purpose keys derived from it.
//!
//! Every key the library uses is derived once, when the configuration is
//! built, with HKDF-SHA256 from one secret per ring entry. A request costs one
//! AEAD or HMAC operation per token, never a key derivation.

use std::fmt;
use std::num::NonZeroU32;

use ring::{aead, hkdf, hmac, pbkdf2, rand::SecureRandom};
use thiserror::Error;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Salt for the HKDF extract step. Changing it changes every derived key.
const HKDF_SALT: &[u8] = b"session-core/hkdf/v1";

/// The reason a secret was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error(
        "secret is {actual} bytes long but at least {MIN_SECRET_LEN} are required; generate one with `openssl rand -base64 48`"
    )]
    TooShort {
        /// The length that was given.
        actual: usize,
    },
}

/// Secret key material from which the session keys are derived.
///
/// `Debug` prints `Secret(REDACTED)` and equality runs in constant time.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
}

impl Secret {
    /// Wraps raw secret bytes, which must be at least 32 bytes long.
    ///
    /// # Errors
    ///
    /// [`SecretError::TooShort`] when `bytes` has fewer than 32 bytes.
    pub fn try_from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                actual: bytes.len(),
            });
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    /// Draws a fresh 64-byte secret from the operating system's CSPRNG.
    ///
    /// Sessions sealed with it do not survive a restart; use it for tests and
    /// demos only.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 64];
        fill_random(&mut bytes);
        Self { bytes }
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl TryFrom<&str> for Secret {
    type Error = SecretError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::try_from_bytes(value.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.bytes, &other.bytes)
    }
}

impl Eq for Secret {}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocation is freed.
        for byte in self.bytes.iter_mut() {
            *byte = 0;
        }
    }
}

/// The use of a derived key. Each purpose has its own key, so a value
/// produced for one purpose never verifies or opens under another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// HMAC tag that signs the session id inside the cookie.
    IdSignature,
    /// HMAC over the client IP and User-Agent for session binding.
    BindingFingerprint,
    /// HMAC giving a short, non-reversible digest of an id for logs.
    LogDigest,
    /// AEAD key of the encrypted cookie store.
    CookieStore,
    /// AEAD key for session records encrypted at rest in Redis.
    RedisValue,
    /// HMAC naming a user's index of sessions in a store, so that key names
    /// do not reveal user ids.
    IdentityIndex,
}

impl Purpose {
    pub(crate) fn label(self) -> &'static [u8] {
        match self {
            Purpose::IdSignature => b"session id signature",
            Purpose::BindingFingerprint => b"binding fingerprint",
            Purpose::LogDigest => b"log digest",
            Purpose::CookieStore => b"cookie store",
            Purpose::RedisValue => b"redis value",
            Purpose::IdentityIndex => b"identity index",
        }
    }
}

/// The keys derived from one secret.
pub(crate) struct DerivedKeys {
    /// Stable identifier of the secret, carried in tokens so that the right
    /// key is tried first after a rotation.
    pub(crate) id: u32,
    id_signature: hmac::Key,
    binding: hmac::Key,
    log_digest: hmac::Key,
    identity_index: hmac::Key,
    cookie_store: aead::LessSafeKey,
    redis_value: aead::LessSafeKey,
}

impl DerivedKeys {
    fn derive(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let expand = |label: &[u8]| -> [u8; 32] {
            let mut out = [0u8; 32];
            prk.expand(&[label], hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(&mut out))
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            out
        };

        let id_bytes = expand(b"key id");
        let aead_key = |purpose: Purpose| {
            let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &expand(purpose.label()))
                .expect("AES-256-GCM takes a 32-byte key");
            aead::LessSafeKey::new(unbound)
        };
        let hmac_key =
            |purpose: Purpose| hmac::Key::new(hmac::HMAC_SHA256, &expand(purpose.label()));

        Self {
            id: u32::from_be_bytes([id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]]),
            id_signature: hmac_key(Purpose::IdSignature),
            binding: hmac_key(Purpose::BindingFingerprint),
            log_digest: hmac_key(Purpose::LogDigest),
            identity_index: hmac_key(Purpose::IdentityIndex),
            cookie_store: aead_key(Purpose::CookieStore),
            redis_value: aead_key(Purpose::RedisValue),
        }
    }

    pub(crate) fn hmac(&self, purpose: Purpose) -> &hmac::Key {
        match purpose {
            Purpose::IdSignature => &self.id_signature,
            Purpose::BindingFingerprint => &self.binding,
            Purpose::LogDigest => &self.log_digest,
            Purpose::IdentityIndex => &self.identity_index,
            Purpose::CookieStore | Purpose::RedisValue => {
                unreachable!("{purpose:?} is an AEAD purpose, not an HMAC purpose")
            }
        }
    }

    pub(crate) fn aead(&self, purpose: Purpose) -> &aead::LessSafeKey {
        match purpose {
            Purpose::CookieStore => &self.cookie_store,
            Purpose::RedisValue => &self.redis_value,
            Purpose::IdSignature
            | Purpose::BindingFingerprint
            | Purpose::LogDigest
            | Purpose::IdentityIndex => {
                unreachable!("{purpose:?} is an HMAC purpose, not an AEAD purpose")
            }
        }
    }
}

/// The current secret and any number of retired ones, with their derived keys.
///
/// New tokens and signatures always use the current key. Retired keys are
/// only used to verify or open values produced before a rotation, so callers
/// can re-seal them under the current key.
///
/// ```
/// use session_core::{KeyRing, Secret};
///
/// let old = Secret::try_from_bytes(&[1u8; 32]).unwrap();
/// let new = Secret::try_from_bytes(&[2u8; 32]).unwrap();
/// let ring = KeyRing::new(new).with_retired(old);
/// assert_eq!(ring.len(), 2);
/// ```
pub struct KeyRing {
    /// Index 0 is the current key; the rest are retired, newest first.
    keys: Vec<DerivedKeys>,
}

impl KeyRing {
    /// Creates a ring whose current key is derived from `current`.
    pub fn new(current: Secret) -> Self {
        Self {
            keys: vec![DerivedKeys::derive(current.expose())],
        }
    }

    /// Creates a ring from a passphrase, stretched with PBKDF2-HMAC-SHA256.
    ///
    /// The stretching runs here, once; every later operation uses the derived
    /// keys. Use it when the secret is a human-chosen passphrase rather than
    /// random bytes.
    pub fn from_passphrase(passphrase: &Secret, salt: &[u8], iterations: NonZeroU32) -> Self {
        Self::new(stretch_passphrase(passphrase, salt, iterations))
    }

    /// Adds a retired key, accepted for reading only.
    pub fn with_retired(mut self, retired: Secret) -> Self {
        self.keys.push(DerivedKeys::derive(retired.expose()));
        self
    }

    /// Appends the keys of `other` as retired keys.
    pub(crate) fn with_ring_keys(mut self, other: KeyRing) -> Self {
        self.keys.extend(other.keys);
        self
    }

    /// Returns the number of keys, current and retired.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns false, because a ring always contains a current key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Returns the identifier of the current key.
    pub fn current_key_id(&self) -> u32 {
        self.keys[0].id
    }

    pub(crate) fn current(&self) -> &DerivedKeys {
        &self.keys[0]
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = (usize, &DerivedKeys)> {
        self.keys.iter().enumerate()
    }

    /// Computes an HMAC-SHA256 tag with the current key of `purpose`.
    pub(crate) fn sign(&self, purpose: Purpose, parts: &[&[u8]]) -> hmac::Tag {
        sign_with(self.current(), purpose, parts)
    }
}

pub(crate) fn sign_with(keys: &DerivedKeys, purpose: Purpose, parts: &[&[u8]]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(keys.hmac(purpose));
    for part in parts {
        context.update(&(part.len() as u32).to_be_bytes());
        context.update(part);
    }
    context.sign()
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .field("material", &"REDACTED")
            .finish()
    }
}

fn stretch_passphrase(passphrase: &Secret, salt: &[u8], iterations: NonZeroU32) -> Secret {
    let mut out = vec![0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        passphrase.expose(),
        &mut out,
    );
    Secret { bytes: out }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // NOTE: black_box keeps the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .expect("the operating system's random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_shorter_than_32_bytes_is_rejected() {
        assert_eq!(
            Secret::try_from_bytes(&[0u8; 31]).unwrap_err(),
            SecretError::TooShort { actual: 31 }
        );
        assert!(Secret::try_from_bytes(&[0u8; 32]).is_ok());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::try_from_bytes(b"a very secret value of 32 bytes!").unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(REDACTED)");
        let ring = KeyRing::new(secret);
        let printed = format!("{ring:?}");
        assert!(printed.contains("REDACTED"), "{printed}");
        assert!(!printed.contains("secret value"), "{printed}");
    }

    #[test]
    fn secrets_compare_by_value() {
        let a = Secret::try_from_bytes(&[5u8; 32]).unwrap();
        let b = Secret::try_from_bytes(&[5u8; 32]).unwrap();
        let c = Secret::try_from_bytes(&[6u8; 32]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn key_ids_differ_per_secret_and_are_stable() {
        let a1 = KeyRing::new(Secret::try_from_bytes(&[1u8; 32]).unwrap());
        let a2 = KeyRing::new(Secret::try_from_bytes(&[1u8; 32]).unwrap());
        let b = KeyRing::new(Secret::try_from_bytes(&[2u8; 32]).unwrap());
        assert_eq!(a1.current_key_id(), a2.current_key_id());
        assert_ne!(a1.current_key_id(), b.current_key_id());
    }

    #[test]
    fn purposes_have_distinct_keys() {
        let ring = KeyRing::new(Secret::try_from_bytes(&[3u8; 32]).unwrap());
        let id_tag = ring.sign(Purpose::IdSignature, &[b"x"]);
        let binding_tag = ring.sign(Purpose::BindingFingerprint, &[b"x"]);
        assert_ne!(id_tag.as_ref(), binding_tag.as_ref());
    }

    #[test]
    fn passphrase_stretching_is_deterministic() {
        let pass = Secret::try_from_bytes(b"correct horse battery staple 1234").unwrap();
        let iterations = NonZeroU32::new(1_000).unwrap();
        let a = KeyRing::from_passphrase(&pass, b"app salt", iterations);
        let b = KeyRing::from_passphrase(&pass, b"app salt", iterations);
        let c = KeyRing::from_passphrase(&pass, b"other salt", iterations);
        assert_eq!(a.current_key_id(), b.current_key_id());
        assert_ne!(a.current_key_id(), c.current_key_id());
    }
}
