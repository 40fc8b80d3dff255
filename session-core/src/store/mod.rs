//! The [`SessionStore`] trait and the stores that implement it.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;
use time::OffsetDateTime;

use crate::SessionId;

#[cfg(feature = "redis")]
pub(crate) mod clustered;
pub(crate) mod cookie;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod resilient;

/// A session in the form a server-side store keeps: the encoded record plus the
/// metadata the store needs to index and expire it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session id; the store key is derived from it.
    pub id: SessionId,
    /// Incremented on every write, for compare-and-set.
    pub version: u64,
    /// When the session expires: the earlier of its idle and absolute
    /// deadlines, or `None` when neither is configured. Stores never return a
    /// session at or past this instant, and set their TTL to it.
    pub expires_at: Option<OffsetDateTime>,
    /// The signed-in user's identity, for the per-user index.
    pub identity: Option<String>,
    /// The encoded record (see `RecordCodec`); opaque to the store.
    pub payload: Bytes,
}

impl fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSession")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .field("identity", &self.identity.as_ref().map(|_| "REDACTED"))
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// The result of [`SessionStore::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The record was stored under its id.
    Created,
    /// A live record already has this id; nothing was written. The caller
    /// draws a new id and tries again.
    IdTaken,
}

/// The result of a compare-and-set write ([`SessionStore::save`] or
/// [`SessionStore::touch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The write was applied.
    Saved,
    /// The stored version differs from the expected one: another request
    /// wrote the session first. Nothing was written.
    Conflict,
    /// No live record has this id (deleted or expired). Nothing was written,
    /// so a destroyed session is never brought back.
    Missing,
}

/// A failure of the store itself. "Not found" is never an error: it is
/// `Ok(None)` from [`SessionStore::load`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or the connection broke.
    #[error("session store is unavailable: {message}")]
    Unavailable {
        /// What failed, without any session data.
        message: String,
    },
    /// The operation did not finish in time.
    #[error("session store operation `{operation}` timed out after {after_ms} ms")]
    Timeout {
        /// The operation, such as `load`.
        operation: &'static str,
        /// The timeout that expired, in milliseconds.
        after_ms: u64,
    },
    /// The circuit breaker is open after repeated failures; the store is not
    /// called until the reset timeout passes.
    #[error("session store circuit breaker is open; the store is not called until it recovers")]
    CircuitOpen,
    /// The store is at capacity and refused a new anonymous session.
    #[error(
        "session store is full: {capacity} sessions; raise the capacity or lower the idle timeout"
    )]
    Full {
        /// The configured capacity.
        capacity: u64,
    },
    /// The store returned an error that is not about connectivity.
    #[error("session store failed: {message}")]
    Backend {
        /// What failed, without any session data.
        message: String,
    },
}

impl StoreError {
    /// Returns true for failures that show the store is unhealthy
    /// (connection errors and timeouts). Circuit breakers count only these.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Timeout { .. }
        )
    }
}

/// A server-side session store.
///
/// Every operation is atomic in the backend. Implementations must honour
/// these rules, which `session_core::conformance` (feature `test-suite`)
/// checks:
///
/// - `load` never returns a record at or past its `expires_at`.
/// - `create` is insert-if-absent: an id collision never adopts or
///   overwrites a live record.
/// - `save` and `touch` are compare-and-set on the version and never
///   recreate a deleted or expired record.
/// - The per-identity index follows every create, save and delete.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Loads the live record with this id.
    async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError>;

    /// Stores a new record unless its id is taken.
    async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError>;

    /// Replaces the record if the stored version equals `expected_version`.
    /// `session.version` is the new version.
    async fn save(
        &self,
        session: &StoredSession,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError>;

    /// Moves the expiry of a live record without rewriting its payload, if its
    /// version equals `expected_version`.
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: Option<OffsetDateTime>,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError>;

    /// Deletes the record. Returns whether a record was deleted.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Lists the ids of the live sessions of one identity.
    async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError>;

    /// Deletes every session of one identity and returns how many were deleted.
    async fn delete_by_identity(&self, identity: &str) -> Result<usize, StoreError>;

    /// Stops background work (subscribers, cleanup tasks) and waits for it to
    /// finish. Called once at application shutdown; the default does nothing.
    async fn shutdown(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
