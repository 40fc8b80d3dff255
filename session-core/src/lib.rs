//! Framework-agnostic building blocks for typed, secure sessions.
//!
//! `session-core` owns everything about a session that does not depend on a
//! web framework: session ids and their signatures, the key ring and sealed
//! tokens, the session record with its flash messages and expiry, the
//! [`SessionConfig`] with its presets, the [`SessionStore`] trait and the
//! stores themselves. The `session-axum` crate wires it into axum.
//!
//! ```
//! use session_core::SessionConfig;
//!
//! // In production, read the secret from the environment or a secret manager.
//! let secret = [7u8; 32];
//! let config = SessionConfig::production(secret).build().expect("a 32-byte secret is valid");
//! assert_eq!(config.cookie().name(), "id");
//! ```

mod binding;
mod clock;
mod codec;
mod config;
mod cookie;
mod data;
mod error;
mod events;
mod flash;
mod id;
mod keys;
mod record;
mod store;
mod token;
mod verified;

pub use binding::{BindingMismatch, BindingPolicy, ClientInfo, Fingerprint, TrustedProxies};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{CodecError, RecordCodec, DEFAULT_MAX_DECOMPRESSED_BYTES};
pub use config::{
    Binding, ConfigError, CookieLifetime, CookieOptions, CookiePrefix, SameSite, SessionConfig,
    SessionConfigBuilder,
};
pub use cookie::{find_cookie_values, render_removal_cookie, render_set_cookie};
pub use data::{Role, SessionData};
pub use error::SessionError;
pub use events::StoreEvent;
pub use events::{
    dispatch as dispatch_event, NoEvents, SessionEvent, SessionEventKind, SessionEvents,
};
pub use flash::{FlashLevel, FlashMessage, FlashState};
pub use id::{
    IdBuildHasher, IdDigest, IdGenerator, IdHasher, RandomIdGenerator, SessionId,
    SESSION_ID_ENCODED_LEN,
};
pub use keys::{KeyRing, Purpose, Secret, SecretError, MIN_SECRET_LEN};
pub use record::{renewal_marker, renewed_to, SessionExpiry, SessionRecord};
#[cfg(feature = "redis")]
pub use store::clustered::{
    ClusterCacheStats, ClusterConfigError, ClusteredRedisStore, ClusteredRedisStoreBuilder,
};
pub use store::cookie::{CookieStore, CookieStoreError, LoadedCookie, DEFAULT_COOKIE_BUDGET};
pub use store::memory::{MemoryStore, MemoryStoreStats};
#[cfg(feature = "redis")]
pub use store::redis::{RedisConfigError, RedisStore, RedisStoreBuilder};
pub use store::resilient::{BreakerState, ResilientStore, ResilientStoreBuilder, RetryPolicy};
pub use store::{CreateOutcome, SaveOutcome, SessionStore, StoreError, StoredSession};
pub use token::{OpenedToken, TokenError};
pub use verified::{VerifiedIdCache, DEFAULT_VERIFIED_ID_SLOTS};

#[cfg(feature = "test-suite")]
pub mod conformance;

/// Re-exported so that `#[derive(Session)]` output and users share one
/// version, and helpers shared with the sibling crates. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::keys::constant_time_eq;
    pub use serde;
}
