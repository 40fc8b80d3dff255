//! The encrypted cookie store: the whole session record travels, sealed, in
//! the session cookie, and the server keeps no per-session state.
//!
//! The cookie value is a token from [`KeyRing::seal`](crate::KeyRing::seal) for
//! [`Purpose::CookieStore`], with the cookie name as associated data. Its
//! plaintext is:
//!
//! ```text
//! layout:u8 = 1 | id:[u8; 32] | version:u64be | has_expiry:u8 (0 or 1)
//!   | expires_at_ms:i64be (only when has_expiry = 1) | record (RecordCodec bytes)
//! ```
//!
//! `expires_at_ms` is the record's deadline in Unix milliseconds. The record
//! bytes are those of [`SessionRecord::to_stored`], so compression and the
//! decompression cap come from the configured [`RecordCodec`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;
use time::{Duration, OffsetDateTime};

use super::{SessionStore, StoreError, StoredSession};
use crate::codec::CodecError;
use crate::cookie::render_set_cookie;
use crate::{Purpose, SessionConfig, SessionData, SessionError, SessionId, SessionRecord};

/// The default and largest budget for the whole `Set-Cookie` header, in
/// bytes: name, value and attributes together.
///
/// RFC 6265, section 6.1, recommends (SHOULD) that browsers store cookies
/// of at least 4096 bytes measured that way, so a browser may drop a larger
/// cookie without notice.
pub const DEFAULT_COOKIE_BUDGET: usize = 4096;

/// Version of the plaintext layout inside the sealed token.
const PLAINTEXT_LAYOUT: u8 = 1;
/// Bytes of a session id.
const ID_LEN: usize = 32;
/// Layout byte, id, version and the expiry flag.
const FIXED_LEN: usize = 1 + ID_LEN + 8 + 1;
/// Bytes of the expiry when present.
const EXPIRY_LEN: usize = 8;

/// Why [`CookieStore::seal`] produced no cookie.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieStoreError {
    /// The complete `Set-Cookie` header is larger than the budget, so a
    /// browser could drop it. Nothing was sent; the client keeps its previous
    /// cookie.
    #[error(
        "session cookie would be {size} bytes with its attributes, over the limit of {limit} \
         bytes; store less data in the session, or use a server-side store such as the \
         memory or Redis store"
    )]
    TooLarge {
        /// Length of the rendered `Set-Cookie` header value, in bytes.
        size: usize,
        /// The budget in force, in bytes.
        limit: usize,
    },
    /// The record could not be encoded.
    #[error("session record could not be encoded for the cookie store: {0}")]
    Codec(#[from] CodecError),
}

impl From<CookieStoreError> for SessionError {
    fn from(error: CookieStoreError) -> Self {
        match error {
            CookieStoreError::TooLarge { size, limit } => SessionError::TooLarge { size, limit },
            CookieStoreError::Codec(codec) => SessionError::Codec(codec),
        }
    }
}

/// A record read from a valid session cookie.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCookie<T> {
    /// The record. Its version is the one sealed into the cookie.
    pub record: SessionRecord<T>,
    /// True when a retired key opened the cookie: seal the record again so
    /// the client moves to the current key before the retired one is removed.
    pub needs_reseal: bool,
}

/// The encrypted cookie store: sessions live entirely in the client's cookie,
/// sealed with AES-256-GCM under the configuration's key ring.
///
/// - [`CookieStore::seal`] encodes a record and renders the complete
///   `Set-Cookie` header. A header over the budget (4096 bytes by default)
///   is a [`CookieStoreError::TooLarge`], never a cookie the browser drops.
/// - [`CookieStore::load`] opens a cookie value. A malformed, tampered,
///   foreign or undecodable value, an expired record and a revoked id all
///   give `Ok(None)`, with a log line saying why.
///
/// # Logout and copies of a cookie
///
/// Without a revocation store the cookie store is stateless: logout removes
/// the cookie from the browser, but **a copy of the cookie taken earlier
/// stays valid until the session expires** (idle or absolute deadline).
/// Configure [`CookieStore::revocations`] to close that gap: [`CookieStore::revoke`]
/// then records the session id until the session's deadline, and
/// [`CookieStore::load`] rejects it, at the cost of one store lookup per
/// load. Call [`CookieStore::log_statelessness`] at start-up to state the
/// mode in the logs.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use session_core::{CookieStore, MemoryStore, SessionConfig, SessionData, SessionRecord};
///
/// #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
/// struct Cart {
///     items: Vec<String>,
/// }
///
/// impl SessionData for Cart {
///     fn identity(&self) -> Option<String> {
///         None
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // In production, read the secret from the environment or a secret manager.
/// let config = SessionConfig::testing([7u8; 32]).build().unwrap();
/// let store = CookieStore::new(config.clone()).revocations(MemoryStore::default());
///
/// let mut record = SessionRecord::new(
///     config.ids().generate(),
///     Cart::default(),
///     config.clock().now(),
///     config.idle_timeout(),
///     config.absolute_lifetime(),
///     false,
/// );
/// record.data.items.push("apple".to_owned());
///
/// // The full header value, attributes included.
/// let header = store.seal(&record, None).unwrap();
/// assert!(header.starts_with("id="));
///
/// // The next request presents the value part of the cookie.
/// let value = header["id=".len()..].split(';').next().unwrap();
/// let loaded = store.load::<Cart>(value).await.unwrap().unwrap();
/// assert_eq!(loaded.record.data.items, ["apple"]);
///
/// // After logout, copies of the cookie no longer load.
/// store.revoke(&loaded.record).await.unwrap();
/// assert!(store.load::<Cart>(value).await.unwrap().is_none());
/// # }
/// ```
#[derive(Clone)]
pub struct CookieStore {
    config: SessionConfig,
    budget: usize,
    revocations: Option<Arc<dyn SessionStore>>,
}

impl fmt::Debug for CookieStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieStore")
            .field("cookie_name", &self.config.cookie().name())
            .field("budget", &self.budget)
            .field("has_revocations", &self.revocations.is_some())
            .finish_non_exhaustive()
    }
}

impl CookieStore {
    /// Creates a cookie store that seals with `config`'s key ring and cookie
    /// attributes, with a budget of [`DEFAULT_COOKIE_BUDGET`] bytes and no
    /// revocation store.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            budget: DEFAULT_COOKIE_BUDGET,
            revocations: None,
        }
    }

    /// Sets the largest `Set-Cookie` header, name, value and attributes
    /// included, in bytes (default 4096).
    ///
    /// Values above 4096 are clamped to 4096, because browsers need not
    /// store larger cookies. [`CookieStore::load`] also rejects cookie values
    /// longer than the budget, so lowering it makes cookies issued under a
    /// higher budget unreadable.
    pub fn budget(mut self, bytes: usize) -> Self {
        if bytes > DEFAULT_COOKIE_BUDGET {
            tracing::warn!(
                requested = bytes,
                limit = DEFAULT_COOKIE_BUDGET,
                "cookie store budget is above the largest cookie browsers must accept; using the limit"
            );
        }
        self.budget = bytes.min(DEFAULT_COOKIE_BUDGET);
        self
    }

    /// Sets a server-side store that records revoked session ids (default
    /// none). With it, [`CookieStore::revoke`] makes every copy of a
    /// session's cookie invalid, and each [`CookieStore::load`] of a valid
    /// cookie costs one lookup in this store.
    ///
    /// A revoked id is kept until the session's deadline. A session without
    /// an idle timeout or absolute lifetime has no deadline, so its entry
    /// never expires.
    ///
    /// NOTE: an entry that the store evicts early (for example a
    /// [`MemoryStore`](crate::MemoryStore) at its anonymous capacity) makes
    /// the revoked cookie valid again. Size the store for the number of
    /// logouts within one session lifetime, or use Redis.
    pub fn revocations(mut self, store: impl SessionStore) -> Self {
        self.revocations = Some(Arc::new(store));
        self
    }

    /// Returns true when a revocation store is configured.
    pub fn has_revocations(&self) -> bool {
        self.revocations.is_some()
    }

    /// Logs whether logout can revoke copies of a session cookie: at info
    /// level with a revocation store, at warn level without one. Call it once
    /// at start-up.
    pub fn log_statelessness(&self) {
        let cookie = self.config.cookie().name();
        if self.has_revocations() {
            tracing::info!(
                cookie,
                "cookie store has a revocation store: logout makes copies of the session cookie invalid"
            );
        } else {
            tracing::warn!(
                cookie,
                "cookie store has no revocation store: logout removes the session cookie from the \
                 browser, but copies of it stay valid until the session expires; configure \
                 `CookieStore::revocations` to revoke them"
            );
        }
    }

    /// Reads the session sealed in `cookie_value`, the value of the session
    /// cookie in a request.
    ///
    /// Returns `Ok(None)` with one warn log, which never contains the value,
    /// when the value is malformed, longer than the budget, tampered with,
    /// sealed for another cookie name, sealed with a key no longer in the
    /// ring, or not a record of type `T`. Also returns `Ok(None)` for an
    /// expired record (with a debug log) and for a revoked session id (with
    /// a warn log).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the revocation store fails, so a store outage is
    /// never mistaken for "no session".
    pub async fn load<T: SessionData>(
        &self,
        cookie_value: &str,
    ) -> Result<Option<LoadedCookie<T>>, StoreError> {
        let Some(loaded) = self.open::<T>(cookie_value) else {
            return Ok(None);
        };
        if self.is_revoked(loaded.record.id()).await? {
            return Ok(None);
        }
        Ok(Some(loaded))
    }

    /// Returns true, with a warning in the log, when the session `id` was
    /// revoked: a cookie that carries it is a copy kept after logout.
    /// Always false without a revocation store. [`CookieStore::load`] runs
    /// this check; a caller that keeps opened cookies must run it on every
    /// request.
    ///
    /// # Errors
    ///
    /// The revocation store's error.
    pub async fn is_revoked(&self, id: &SessionId) -> Result<bool, StoreError> {
        let Some(revocations) = &self.revocations else {
            return Ok(false);
        };
        if revocations.load(id).await?.is_none() {
            return Ok(false);
        }
        tracing::warn!(
            cookie = self.config.cookie().name(),
            "session cookie belongs to a revoked session, likely a copy kept after logout; \
             treating the request as having no session"
        );
        Ok(true)
    }

    /// Seals `record` and renders the complete `Set-Cookie` header value,
    /// with the configured attributes and, when `max_age` is given, `Max-Age`
    /// and `Expires` (computed from the configuration's clock).
    ///
    /// The cookie carries version `record.version() + 1`, as a store write
    /// does. Each call draws a fresh nonce, so sealing the same record twice
    /// gives different values.
    ///
    /// # Errors
    ///
    /// [`CookieStoreError::TooLarge`] when the rendered header is longer than
    /// the budget (logged at warn with the size and limit), and
    /// [`CookieStoreError::Codec`] when the data cannot be encoded.
    pub fn seal<T: SessionData>(
        &self,
        record: &SessionRecord<T>,
        max_age: Option<Duration>,
    ) -> Result<String, CookieStoreError> {
        let stored = record.to_stored(self.config.codec())?;
        let plaintext = encode_plaintext(&stored);
        let options = self.config.cookie();
        let token =
            self.config
                .keys()
                .seal(Purpose::CookieStore, options.name().as_bytes(), &plaintext);

        let header = render_set_cookie(options, &token, max_age, self.config.clock().now());
        if header.len() > self.budget {
            tracing::warn!(
                cookie = options.name(),
                size = header.len(),
                limit = self.budget,
                "session cookie is over the size budget and was not sent; store less data in the \
                 session or use a server-side store"
            );
            return Err(CookieStoreError::TooLarge {
                size: header.len(),
                limit: self.budget,
            });
        }
        Ok(header)
    }

    /// Records `record`'s id in the revocation store until the session's
    /// deadline, so that every copy of its cookie loads as no session.
    ///
    /// Without a revocation store this does nothing and returns `Ok(())`:
    /// copies of the cookie then stay valid until the session expires. An
    /// already expired record needs no entry and causes no store call.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the revocation store fails.
    pub async fn revoke<T: SessionData>(
        &self,
        record: &SessionRecord<T>,
    ) -> Result<(), StoreError> {
        let Some(revocations) = &self.revocations else {
            return Ok(());
        };
        if record.is_expired(self.config.clock().now()) {
            tracing::debug!("session to revoke has already expired; no revocation entry needed");
            return Ok(());
        }

        let entry = StoredSession {
            id: record.id().clone(),
            version: 1,
            expires_at: record.expires_at(),
            identity: None,
            payload: Bytes::new(),
        };
        // An existing entry (IdTaken) means the session is already revoked.
        revocations.create(&entry).await?;
        Ok(())
    }

    /// Opens and decodes a cookie value, logging why when it gives no record.
    fn open<T: SessionData>(&self, cookie_value: &str) -> Option<LoadedCookie<T>> {
        let cookie = self.config.cookie().name();

        // The grammar and length checks run before any decoding.
        if cookie_value.len() > self.budget {
            tracing::warn!(
                cookie,
                len = cookie_value.len(),
                limit = self.budget,
                "session cookie is invalid: longer than the cookie budget"
            );
            return None;
        }
        if !is_token_grammar(cookie_value) {
            tracing::warn!(
                cookie,
                len = cookie_value.len(),
                "session cookie is invalid: not unpadded base64url"
            );
            return None;
        }

        let keys = self.config.keys();
        let Ok(opened) = keys.open(Purpose::CookieStore, cookie.as_bytes(), cookie_value) else {
            tracing::warn!(
                cookie,
                "session cookie is invalid: it is truncated, tampered with, sealed for another \
                 cookie name, or sealed with a key that is no longer configured"
            );
            return None;
        };

        let Some(stored) = decode_plaintext(&opened.plaintext) else {
            tracing::warn!(
                cookie,
                "session cookie is invalid: it opened, but its contents are not in the cookie \
                 store layout"
            );
            return None;
        };
        let record = match SessionRecord::<T>::from_stored(stored, self.config.codec()) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(
                    cookie,
                    %error,
                    "session cookie is invalid: it opened, but the record does not decode as \
                     the session type"
                );
                return None;
            }
        };

        if record.is_expired(self.config.clock().now()) {
            tracing::debug!(
                cookie,
                "session cookie has expired; treating it as no session"
            );
            return None;
        }
        Some(LoadedCookie {
            record,
            needs_reseal: opened.needs_reseal,
        })
    }
}

/// Returns true when `value` can be an unpadded base64url string: non-empty,
/// only `A-Z a-z 0-9 - _`, and a length that is not 1 modulo 4.
fn is_token_grammar(value: &str) -> bool {
    !value.is_empty()
        && value.len() % 4 != 1
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Builds the plaintext of a cookie token from an encoded record.
fn encode_plaintext(stored: &StoredSession) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN + EXPIRY_LEN + stored.payload.len());
    out.push(PLAINTEXT_LAYOUT);
    out.extend_from_slice(stored.id.as_bytes());
    out.extend_from_slice(&stored.version.to_be_bytes());
    match stored.expires_at {
        Some(deadline) => {
            out.push(1);
            out.extend_from_slice(&unix_ms(deadline).to_be_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&stored.payload);
    out
}

/// Splits a token plaintext into the session it carries, or `None` when the
/// bytes do not follow the layout.
fn decode_plaintext(plaintext: &[u8]) -> Option<StoredSession> {
    let (fixed, rest) = plaintext.split_at_checked(FIXED_LEN)?;
    if fixed[0] != PLAINTEXT_LAYOUT {
        return None;
    }
    let id: [u8; ID_LEN] = fixed[1..1 + ID_LEN].try_into().ok()?;
    let version = u64::from_be_bytes(fixed[1 + ID_LEN..1 + ID_LEN + 8].try_into().ok()?);

    let (expires_at, payload) = match fixed[FIXED_LEN - 1] {
        0 => (None, rest),
        1 => {
            let (ms, payload) = rest.split_first_chunk::<EXPIRY_LEN>()?;
            (Some(from_unix_ms(i64::from_be_bytes(*ms))?), payload)
        }
        _ => return None,
    };

    Some(StoredSession {
        id: SessionId::from_bytes(id),
        version,
        expires_at,
        identity: None,
        payload: Bytes::copy_from_slice(payload),
    })
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn stored(expires_at: Option<OffsetDateTime>) -> StoredSession {
        StoredSession {
            id: SessionId::from_bytes([9u8; ID_LEN]),
            version: 7,
            expires_at,
            identity: Some("ignored".to_owned()),
            payload: Bytes::from_static(b"SR\x01\x00record"),
        }
    }

    #[test]
    fn plaintext_round_trips_with_and_without_expiry() {
        for expires_at in [None, Some(datetime!(2030-01-01 0:30 UTC))] {
            let original = stored(expires_at);
            let bytes = encode_plaintext(&original);
            let expected_len = FIXED_LEN + original.payload.len();
            let expected_len = expected_len + if expires_at.is_some() { EXPIRY_LEN } else { 0 };
            assert_eq!(bytes.len(), expected_len);

            let back = decode_plaintext(&bytes).expect("a plaintext we wrote decodes");
            assert_eq!(back.id, original.id);
            assert_eq!(back.version, 7);
            assert_eq!(back.expires_at, expires_at);
            assert_eq!(back.identity, None);
            assert_eq!(back.payload, original.payload);
        }
    }

    #[test]
    fn plaintext_layout_starts_with_layout_id_and_version() {
        let bytes = encode_plaintext(&stored(Some(OffsetDateTime::UNIX_EPOCH)));
        assert_eq!(bytes[0], PLAINTEXT_LAYOUT);
        assert_eq!(&bytes[1..33], &[9u8; 32]);
        assert_eq!(&bytes[33..41], &7u64.to_be_bytes());
        assert_eq!(bytes[41], 1);
        assert_eq!(&bytes[42..50], &0i64.to_be_bytes());
        assert_eq!(&bytes[50..], b"SR\x01\x00record");
    }

    #[test]
    fn malformed_plaintext_is_rejected() {
        let good = encode_plaintext(&stored(Some(OffsetDateTime::UNIX_EPOCH)));

        let mut wrong_layout = good.clone();
        wrong_layout[0] = 2;
        assert!(decode_plaintext(&wrong_layout).is_none());

        let mut wrong_flag = good.clone();
        wrong_flag[FIXED_LEN - 1] = 2;
        assert!(decode_plaintext(&wrong_flag).is_none());

        for len in [0, 1, FIXED_LEN - 1, FIXED_LEN, FIXED_LEN + EXPIRY_LEN - 1] {
            assert!(decode_plaintext(&good[..len]).is_none(), "length {len}");
        }
    }

    #[test]
    fn plaintext_with_out_of_range_expiry_is_rejected() {
        let mut bytes = encode_plaintext(&stored(Some(OffsetDateTime::UNIX_EPOCH)));
        bytes[FIXED_LEN..FIXED_LEN + EXPIRY_LEN].copy_from_slice(&i64::MAX.to_be_bytes());
        assert!(decode_plaintext(&bytes).is_none());
    }

    #[test]
    fn token_grammar_accepts_only_unpadded_base64url() {
        assert!(is_token_grammar("AQID"));
        assert!(is_token_grammar("AQ-_9z"));
        assert!(!is_token_grammar(""));
        assert!(!is_token_grammar("AQIDB"), "length 1 modulo 4");
        assert!(!is_token_grammar("AQ=="));
        assert!(!is_token_grammar("AQ+/"));
        assert!(!is_token_grammar("AQ ID"));
        assert!(!is_token_grammar("AQ\u{e9}D"));
    }

    #[test]
    fn seal_errors_convert_to_session_errors() {
        let too_large: SessionError = CookieStoreError::TooLarge {
            size: 4097,
            limit: 4096,
        }
        .into();
        assert!(matches!(
            too_large,
            SessionError::TooLarge {
                size: 4097,
                limit: 4096
            }
        ));
        let codec: SessionError = CookieStoreError::Codec(CodecError::Corrupt).into();
        assert!(matches!(codec, SessionError::Codec(CodecError::Corrupt)));
    }

    #[test]
    fn too_large_message_names_size_limit_and_fix() {
        let message = CookieStoreError::TooLarge {
            size: 5000,
            limit: 4096,
        }
        .to_string();
        assert!(message.contains("5000 bytes"), "{message}");
        assert!(message.contains("limit of 4096 bytes"), "{message}");
        assert!(message.contains("store less data"), "{message}");
    }
}
