//! The error type of session operations.

use thiserror::Error;

use crate::codec::CodecError;
use crate::config::ConfigError;
use crate::store::StoreError;

/// Anything that can go wrong while loading or saving a session.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed or timed out. The stored session is left as it was.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Another request changed the session between this request's load and
    /// save, and the change could not be merged.
    #[error("session was changed by a concurrent request; retry the request")]
    Conflict,
    /// The encoded session is larger than the configured budget.
    #[error(
        "session is {size} bytes but the limit is {limit} bytes; store less data in the session"
    )]
    TooLarge {
        /// Size of the encoded session or `Set-Cookie` header, in bytes.
        size: usize,
        /// The configured limit, in bytes.
        limit: usize,
    },
}
