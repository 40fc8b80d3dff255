//! The one sealed-token format.
//!
//! ```text
//! base64url-no-pad( version:u8 | key_id:u32be | nonce:[u8; 12] | AES-256-GCM(ciphertext | tag:[u8; 16]) )
//! ```
//!
//! The associated data binds the version, the key id, the purpose label and a
//! caller-supplied context (the cookie name), so a token sealed for one cookie
//! or purpose never opens as another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::aead;
use thiserror::Error;

use crate::keys::{fill_random, KeyRing, Purpose};

/// The only token format version this library writes or reads.
pub(crate) const TOKEN_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + aead::NONCE_LEN;
const TAG_LEN: usize = 16;

/// A token that did not open. Every malformed, truncated, extended,
/// re-encoded, foreign-key or foreign-purpose token gives this one error, so
/// the cause cannot be probed from outside.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("token is invalid: malformed, tampered with, or sealed with an unknown key")]
pub struct TokenError;

/// The plaintext of an opened token, and whether it must be re-sealed.
#[derive(Debug)]
pub struct OpenedToken {
    /// The decrypted payload.
    pub plaintext: Vec<u8>,
    /// True when a retired key opened the token; the caller should seal the
    /// payload again under the current key.
    pub needs_reseal: bool,
}

impl KeyRing {
    /// Seals `plaintext` for `purpose` under the current key, with `context`
    /// (typically the cookie name) as associated data.
    ///
    /// # Panics
    ///
    /// When `purpose` is not an AEAD purpose ([`Purpose::CookieStore`] or
    /// [`Purpose::RedisValue`]), which is a bug in the caller.
    pub fn seal(&self, purpose: Purpose, context: &[u8], plaintext: &[u8]) -> String {
        let keys = self.current();

        let mut nonce = [0u8; aead::NONCE_LEN];
        fill_random(&mut nonce);

        let mut buf = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        buf.push(TOKEN_VERSION);
        buf.extend_from_slice(&keys.id.to_be_bytes());
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);

        let ad = associated_data(&buf[..5], purpose, context);
        let body = &mut buf[HEADER_LEN..];
        let tag = keys
            .aead(purpose)
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(ad),
                body,
            )
            .expect("AES-GCM sealing only fails for inputs over 64 GiB");
        buf.extend_from_slice(tag.as_ref());

        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Opens a token produced by [`KeyRing::seal`] with the same `purpose`
    /// and `context`, trying the current key and then the retired ones.
    ///
    /// # Errors
    ///
    /// [`TokenError`] for anything that is not a token sealed by a key of
    /// this ring for this purpose and context.
    pub fn open(
        &self,
        purpose: Purpose,
        context: &[u8],
        token: &str,
    ) -> Result<OpenedToken, TokenError> {
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError)?;
        if raw.len() < HEADER_LEN + TAG_LEN || raw[0] != TOKEN_VERSION {
            return Err(TokenError);
        }

        let key_id = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce.copy_from_slice(&raw[5..HEADER_LEN]);
        let ad = associated_data(&raw[..5], purpose, context);

        // Only a key whose id matches can have sealed the token. Ids are 32
        // bits of a hash, so a collision between two ring keys is possible
        // but harmless: both are tried.
        for (index, keys) in self.all() {
            if keys.id != key_id {
                continue;
            }
            let mut body = raw[HEADER_LEN..].to_vec();
            let opened = keys.aead(purpose).open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&ad),
                &mut body,
            );
            if let Ok(plaintext) = opened {
                let len = plaintext.len();
                body.truncate(len);
                return Ok(OpenedToken {
                    plaintext: body,
                    needs_reseal: index != 0,
                });
            }
        }
        Err(TokenError)
    }
}

fn associated_data(version_and_key_id: &[u8], purpose: Purpose, context: &[u8]) -> Vec<u8> {
    let label = purpose.label();
    let mut ad = Vec::with_capacity(version_and_key_id.len() + label.len() + context.len() + 2);
    ad.extend_from_slice(version_and_key_id);
    ad.extend_from_slice(label);
    ad.push(0);
    ad.extend_from_slice(context);
    ad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use proptest::prelude::*;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(Secret::try_from_bytes(&[byte; 32]).unwrap())
    }

    #[test]
    fn sealed_token_opens_with_same_purpose_and_context() {
        let ring = ring(1);
        let token = ring.seal(Purpose::CookieStore, b"id", b"hello");
        let opened = ring.open(Purpose::CookieStore, b"id", &token).unwrap();
        assert_eq!(opened.plaintext, b"hello");
        assert!(!opened.needs_reseal);
    }

    #[test]
    fn token_for_another_cookie_name_or_purpose_fails() {
        let ring = ring(1);
        let token = ring.seal(Purpose::CookieStore, b"id", b"hello");
        assert_eq!(
            ring.open(Purpose::CookieStore, b"other", &token)
                .unwrap_err(),
            TokenError
        );
        assert_eq!(
            ring.open(Purpose::RedisValue, b"id", &token).unwrap_err(),
            TokenError
        );
    }

    #[test]
    fn retired_key_opens_and_asks_for_reseal() {
        let old = ring(1);
        let token = old.seal(Purpose::CookieStore, b"id", b"payload");
        let rotated = KeyRing::new(Secret::try_from_bytes(&[2u8; 32]).unwrap())
            .with_retired(Secret::try_from_bytes(&[1u8; 32]).unwrap());
        let opened = rotated.open(Purpose::CookieStore, b"id", &token).unwrap();
        assert_eq!(opened.plaintext, b"payload");
        assert!(opened.needs_reseal);

        let dropped = ring(2);
        assert_eq!(
            dropped
                .open(Purpose::CookieStore, b"id", &token)
                .unwrap_err(),
            TokenError
        );
    }

    #[test]
    fn nonces_differ_for_identical_payloads() {
        let ring = ring(1);
        let a = ring.seal(Purpose::CookieStore, b"id", b"same");
        let b = ring.seal(Purpose::CookieStore, b"id", b"same");
        assert_ne!(a, b);
    }

    #[test]
    fn padded_or_garbage_tokens_fail() {
        let ring = ring(1);
        let token = ring.seal(Purpose::CookieStore, b"id", b"x");
        assert!(ring
            .open(Purpose::CookieStore, b"id", &format!("{token}="))
            .is_err());
        assert!(ring.open(Purpose::CookieStore, b"id", "").is_err());
        assert!(ring
            .open(Purpose::CookieStore, b"id", &"A".repeat(10_000))
            .is_err());
        assert!(ring
            .open(Purpose::CookieStore, b"id", "not base64 !!")
            .is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let ring = ring(9);
            let token = ring.seal(Purpose::CookieStore, b"id", &payload);
            let opened = ring.open(Purpose::CookieStore, b"id", &token).unwrap();
            prop_assert_eq!(opened.plaintext, payload);
        }

        #[test]
        fn any_single_byte_change_fails(payload in proptest::collection::vec(any::<u8>(), 0..256), position in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let ring = ring(9);
            let token = ring.seal(Purpose::CookieStore, b"id", &payload);
            let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
            let at = position.index(raw.len());
            raw[at] ^= flip;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(ring.open(Purpose::CookieStore, b"id", &tampered).is_err());
        }

        #[test]
        fn any_truncation_or_extension_fails(payload in proptest::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>(), extra in proptest::collection::vec(any::<u8>(), 1..32)) {
            let ring = ring(9);
            let token = ring.seal(Purpose::CookieStore, b"id", &payload);
            let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();

            let truncated = URL_SAFE_NO_PAD.encode(&raw[..cut.index(raw.len())]);
            prop_assert!(ring.open(Purpose::CookieStore, b"id", &truncated).is_err());

            let mut extended = raw.clone();
            extended.extend_from_slice(&extra);
            prop_assert!(ring.open(Purpose::CookieStore, b"id", &URL_SAFE_NO_PAD.encode(&extended)).is_err());

            // Text-level changes: a dropped or appended character.
            prop_assert!(ring.open(Purpose::CookieStore, b"id", &token[..token.len() - 1]).is_err());
            let appended = format!("{token}A");
            prop_assert!(ring.open(Purpose::CookieStore, b"id", &appended).is_err());
        }
    }
}
