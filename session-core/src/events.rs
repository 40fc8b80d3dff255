//! Lifecycle events, for audit logs and hooks.
//!
//! Events carry a keyed digest of the session id ([`IdDigest`]), never the
//! id itself, the data or any token.

use std::fmt;

use crate::id::IdDigest;

/// The kind of a session lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEventKind {
    /// A new session was stored for the first time.
    Started,
    /// An existing session was loaded.
    Loaded,
    /// A session was written back.
    Saved,
    /// A session was destroyed.
    Destroyed,
    /// A session moved to a new id; `digest` is the new id's digest and
    /// `previous` the old one's.
    Regenerated,
    /// A loaded session had expired and was treated as absent.
    Expired,
    /// The client no longer matches the session's binding fingerprint.
    BindingMismatch,
    /// A cookie that failed signature or decryption checks was presented.
    Tampered,
    /// A validly signed id was presented that the store does not know.
    UnknownId,
    /// One client sent more invalid or unknown session cookies than the
    /// layer's limit allows within its window, a sign of id guessing.
    /// Carries no digest: no session is concerned.
    InvalidCookieFlood,
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    /// What happened.
    pub kind: SessionEventKind,
    /// Digest of the session id concerned, when there is one.
    pub digest: Option<IdDigest>,
    /// Digest of the previous id, for [`SessionEventKind::Regenerated`].
    pub previous: Option<IdDigest>,
}

/// Callbacks for session lifecycle events.
///
/// Every method has an empty default, so an implementation overrides only
/// what it needs. [`SessionEvents::on_event`] receives every event; the
/// named callbacks mirror the five lifecycle points. Callbacks run inline on
/// the request path: keep them fast and hand slow work to a task.
pub trait SessionEvents: Send + Sync + fmt::Debug + 'static {
    /// Returns false when the hook ignores every session event, so that
    /// callers can skip computing the id digests. The default is true.
    fn wants_events(&self) -> bool {
        true
    }

    /// Called for every event, before the named callback.
    fn on_event(&self, event: &SessionEvent) {
        let _ = event;
    }
    /// A new session was stored.
    fn on_started(&self, event: &SessionEvent) {
        let _ = event;
    }
    /// A session was loaded.
    fn on_loaded(&self, event: &SessionEvent) {
        let _ = event;
    }
    /// A session was saved.
    fn on_saved(&self, event: &SessionEvent) {
        let _ = event;
    }
    /// A session was destroyed.
    fn on_destroyed(&self, event: &SessionEvent) {
        let _ = event;
    }
    /// A session was regenerated.
    fn on_regenerated(&self, event: &SessionEvent) {
        let _ = event;
    }
    /// A resilient store retried an operation or its circuit breaker changed
    /// state, or a clustered store's cache served, missed or dropped entries.
    fn on_store_event(&self, event: &StoreEvent) {
        let _ = event;
    }
}

/// An action of a resilient store about failures of the store it wraps, or
/// of a clustered store's local cache.
///
/// Carries no session id or data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreEvent {
    /// An operation failed with a connection error or a timeout and is tried
    /// again.
    Retry {
        /// The operation, such as `load`.
        operation: &'static str,
        /// The attempt about to start, counting from 1; the first retry is
        /// attempt 2.
        attempt: u32,
    },
    /// Consecutive failures reached the threshold: calls now fail fast.
    BreakerOpened,
    /// The reset timeout passed: the next call is let through as a probe.
    BreakerHalfOpen,
    /// A probe succeeded: calls reach the store again.
    BreakerClosed,
    /// A clustered store served a load from its local cache.
    CacheHit,
    /// A clustered store had no usable cache entry and read Redis.
    CacheMiss,
    /// A clustered store dropped a cached session because another node
    /// changed or deleted it.
    CacheInvalidated,
    /// A clustered store dropped a cached session to stay within its size
    /// bound.
    CacheEvicted,
    /// A clustered store dropped its whole local cache, because its
    /// subscriber (re)connected or lost its connection and may have missed
    /// invalidations.
    CacheCleared,
}

/// The default hook, which does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl SessionEvents for NoEvents {
    fn wants_events(&self) -> bool {
        false
    }
}

/// Sends `event` to `hook`: `on_event`, then the matching named callback.
pub fn dispatch(hook: &dyn SessionEvents, event: &SessionEvent) {
    hook.on_event(event);
    match event.kind {
        SessionEventKind::Started => hook.on_started(event),
        SessionEventKind::Loaded => hook.on_loaded(event),
        SessionEventKind::Saved => hook.on_saved(event),
        SessionEventKind::Destroyed => hook.on_destroyed(event),
        SessionEventKind::Regenerated => hook.on_regenerated(event),
        _ => {}
    }
}
