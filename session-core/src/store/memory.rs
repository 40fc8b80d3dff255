//! An in-process store on moka, for development and single-node apps.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use time::OffsetDateTime;

use super::{CreateOutcome, SaveOutcome, SessionStore, StoreError, StoredSession};
use crate::{Clock, IdBuildHasher, SessionId, SystemClock};

/// One pool of sessions, keyed by id. Ids are drawn by the server and reach
/// the store only after their signature check, so their own bits serve as
/// the hash.
type Pool = Cache<SessionId, Arc<StoredSession>, IdBuildHasher>;

/// Number of lock stripes that serialise operations on one id. A power of two.
const STRIPES: usize = 64;

/// Counters of a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStoreStats {
    /// Sessions currently held, signed-in and anonymous.
    pub live_sessions: u64,
    /// Signed-in sessions currently held.
    pub authenticated_sessions: u64,
    /// Sessions dropped because a pool was at capacity.
    pub evictions: u64,
    /// Sessions dropped because they expired.
    pub expirations: u64,
}

/// An in-memory [`SessionStore`] backed by moka caches.
///
/// - Each entry expires at its session's deadline, measured on the store's
///   clock, and expired entries are never returned even before moka drops
///   them.
/// - Signed-in sessions (those with an identity) and anonymous ones live in
///   separate pools with their own capacity, so a flood of anonymous
///   sessions evicts only other anonymous sessions, never a signed-in user.
///   Within a pool the least recently used entry is evicted.
/// - Sessions vanish when the process exits: use it for development, tests
///   and single-node apps that accept that.
///
/// ```
/// use session_core::MemoryStore;
///
/// let store = MemoryStore::builder().capacity(100_000).anonymous_capacity(50_000).build();
/// assert_eq!(store.stats().live_sessions, 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    authenticated: Pool,
    anonymous: Pool,
    identities: Mutex<HashMap<String, HashSet<SessionId>>>,
    stripes: Vec<Mutex<()>>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    evictions: AtomicU64,
    expirations: AtomicU64,
}

/// Builder of [`MemoryStore`].
#[derive(Debug)]
#[must_use]
pub struct MemoryStoreBuilder {
    capacity: u64,
    anonymous_capacity: u64,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// Sets the maximum number of signed-in sessions (default 100 000).
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the maximum number of anonymous sessions (default 100 000).
    pub fn anonymous_capacity(mut self, capacity: u64) -> Self {
        self.anonymous_capacity = capacity;
        self
    }

    /// Sets the clock that decides expiry (default the system clock). Give it
    /// the same clock as the `SessionConfig`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let counters = Arc::new(Counters::default());
        let pool = |capacity: u64| {
            let listener_counters = counters.clone();
            Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(DeadlineExpiry {
                    clock: self.clock.clone(),
                })
                .eviction_listener(move |_id, _value, cause| match cause {
                    RemovalCause::Size => {
                        listener_counters.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                    RemovalCause::Expired => {
                        listener_counters
                            .expirations
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                })
                .build_with_hasher(IdBuildHasher::default())
        };
        MemoryStore {
            inner: Arc::new(Inner {
                authenticated: pool(self.capacity),
                anonymous: pool(self.anonymous_capacity),
                identities: Mutex::new(HashMap::new()),
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                clock: self.clock,
                counters,
            }),
        }
    }
}

/// Expires each entry at its session's deadline, on the store's clock.
struct DeadlineExpiry {
    clock: Arc<dyn Clock>,
}

impl DeadlineExpiry {
    fn time_left(&self, session: &StoredSession) -> Option<StdDuration> {
        let deadline = session.expires_at?;
        let left = deadline - self.clock.now();
        Some(StdDuration::try_from(left).unwrap_or(StdDuration::ZERO))
    }
}

impl moka::Expiry<SessionId, Arc<StoredSession>> for DeadlineExpiry {
    fn expire_after_create(
        &self,
        _id: &SessionId,
        session: &Arc<StoredSession>,
        _created_at: std::time::Instant,
    ) -> Option<StdDuration> {
        self.time_left(session)
    }

    fn expire_after_update(
        &self,
        _id: &SessionId,
        session: &Arc<StoredSession>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<StdDuration>,
    ) -> Option<StdDuration> {
        self.time_left(session)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl MemoryStore {
    /// Starts a builder with capacity 100 000 per pool and the system clock.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            capacity: 100_000,
            anonymous_capacity: 100_000,
            clock: Arc::new(SystemClock),
        }
    }

    /// Returns the current counters.
    pub fn stats(&self) -> MemoryStoreStats {
        let inner = &self.inner;
        inner.authenticated.run_pending_tasks();
        inner.anonymous.run_pending_tasks();
        let authenticated = inner.authenticated.entry_count();
        MemoryStoreStats {
            live_sessions: authenticated + inner.anonymous.entry_count(),
            authenticated_sessions: authenticated,
            evictions: inner.counters.evictions.load(Ordering::Relaxed),
            expirations: inner.counters.expirations.load(Ordering::Relaxed),
        }
    }

    /// Drops every entry that has expired on the store's clock and returns
    /// how many were dropped. moka also drops expired entries by itself;
    /// this makes the cleanup immediate, for example on a timer.
    pub fn purge_expired(&self) -> u64 {
        let now = self.inner.clock.now();
        let mut purged = 0;
        for pool in [&self.inner.authenticated, &self.inner.anonymous] {
            let expired: Vec<SessionId> = pool
                .iter()
                .filter(|(_, session)| is_expired(session, now))
                .map(|(id, _)| (*id).clone())
                .collect();
            for id in expired {
                let _guard = self.lock(&id);
                if let Some(session) = pool.remove(&id) {
                    self.unindex(&id, session.identity.as_deref());
                    purged += 1;
                }
            }
            pool.run_pending_tasks();
        }
        self.inner
            .counters
            .expirations
            .fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// Spawns a Tokio task that calls [`MemoryStore::purge_expired`] every
    /// `period`, and returns its handle. Abort the handle to stop it.
    pub fn spawn_cleanup(&self, period: StdDuration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                store.purge_expired();
            }
        })
    }

    fn lock(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let bytes = id.as_bytes();
        let index = usize::from(bytes[0]) % STRIPES;
        self.inner.stripes[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pool(&self, identity: Option<&str>) -> &Pool {
        if identity.is_some() {
            &self.inner.authenticated
        } else {
            &self.inner.anonymous
        }
    }

    /// Returns the live entry for `id` and the pool holding it. Must be
    /// called with the id's stripe locked.
    fn find(&self, id: &SessionId) -> Option<(Arc<StoredSession>, &Pool)> {
        let now = self.inner.clock.now();
        for pool in [&self.inner.authenticated, &self.inner.anonymous] {
            if let Some(session) = pool.get(id) {
                if is_expired(&session, now) {
                    pool.remove(id);
                    self.unindex(id, session.identity.as_deref());
                    self.inner
                        .counters
                        .expirations
                        .fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                return Some((session, pool));
            }
        }
        None
    }

    fn identities(&self) -> MutexGuard<'_, HashMap<String, HashSet<SessionId>>> {
        self.inner
            .identities
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn index(&self, id: &SessionId, identity: Option<&str>) {
        if let Some(identity) = identity {
            self.identities()
                .entry(identity.to_owned())
                .or_default()
                .insert(id.clone());
        }
    }

    fn unindex(&self, id: &SessionId, identity: Option<&str>) {
        let Some(identity) = identity else {
            return;
        };
        let mut identities = self.identities();
        if let Some(ids) = identities.get_mut(identity) {
            ids.remove(id);
            if ids.is_empty() {
                identities.remove(identity);
            }
        }
    }
}

fn is_expired(session: &StoredSession, now: OffsetDateTime) -> bool {
    session.expires_at.is_some_and(|deadline| now >= deadline)
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        let _guard = self.lock(id);
        Ok(self
            .find(id)
            .map(|(session, _)| StoredSession::clone(&session)))
    }

    async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError> {
        if is_expired(session, self.inner.clock.now()) {
            return Ok(CreateOutcome::Created);
        }
        let _guard = self.lock(&session.id);
        if self.find(&session.id).is_some() {
            return Ok(CreateOutcome::IdTaken);
        }
        self.pool(session.identity.as_deref())
            .insert(session.id.clone(), Arc::new(session.clone()));
        self.index(&session.id, session.identity.as_deref());
        Ok(CreateOutcome::Created)
    }

    async fn save(
        &self,
        session: &StoredSession,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let _guard = self.lock(&session.id);
        let Some((current, pool)) = self.find(&session.id) else {
            return Ok(SaveOutcome::Missing);
        };
        if current.version != expected_version {
            return Ok(SaveOutcome::Conflict);
        }

        // A login or logout moves the session between the pools.
        let target = self.pool(session.identity.as_deref());
        if !std::ptr::eq(pool, target) {
            pool.remove(&session.id);
        }
        if current.identity != session.identity {
            self.unindex(&session.id, current.identity.as_deref());
            self.index(&session.id, session.identity.as_deref());
        }
        if is_expired(session, self.inner.clock.now()) {
            target.remove(&session.id);
            self.unindex(&session.id, session.identity.as_deref());
            return Ok(SaveOutcome::Saved);
        }
        target.insert(session.id.clone(), Arc::new(session.clone()));
        Ok(SaveOutcome::Saved)
    }

    async fn touch(
        &self,
        id: &SessionId,
        expires_at: Option<OffsetDateTime>,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let _guard = self.lock(id);
        let Some((current, pool)) = self.find(id) else {
            return Ok(SaveOutcome::Missing);
        };
        if current.version != expected_version {
            return Ok(SaveOutcome::Conflict);
        }
        let mut touched = StoredSession::clone(&current);
        touched.expires_at = expires_at;
        pool.insert(id.clone(), Arc::new(touched));
        Ok(SaveOutcome::Saved)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let _guard = self.lock(id);
        let Some((current, pool)) = self.find(id) else {
            return Ok(false);
        };
        pool.remove(id);
        self.unindex(id, current.identity.as_deref());
        Ok(true)
    }

    async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError> {
        let candidates: Vec<SessionId> = self
            .identities()
            .get(identity)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        let mut live = Vec::with_capacity(candidates.len());
        for id in candidates {
            let _guard = self.lock(&id);
            if self.find(&id).is_some() {
                live.push(id);
            }
        }
        Ok(live)
    }

    async fn delete_by_identity(&self, identity: &str) -> Result<usize, StoreError> {
        let ids = self.list_by_identity(identity).await?;
        let mut deleted = 0;
        for id in ids {
            if self.delete(&id).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use crate::ManualClock;

    fn store(clock: &ManualClock) -> MemoryStore {
        MemoryStore::builder()
            .clock(Arc::new(clock.clone()))
            .build()
    }

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        conformance::run_all(|clock| {
            let store = MemoryStore::builder()
                .clock(Arc::new(clock.clone()))
                .build();
            async move { store }
        })
        .await;
    }

    #[tokio::test]
    async fn anonymous_churn_never_evicts_a_signed_in_session() {
        let clock = ManualClock::starting_now();
        let store = MemoryStore::builder()
            .clock(Arc::new(clock.clone()))
            .capacity(1_000)
            .anonymous_capacity(1_000)
            .build();
        let user = conformance::stored(&clock, Some("user-a"), b"user");
        store.create(&user).await.unwrap();

        for _ in 0..5_000 {
            store
                .create(&conformance::stored(&clock, None, b"cart"))
                .await
                .unwrap();
        }
        let stats = store.stats();
        assert!(stats.live_sessions <= 1_001, "{stats:?}");
        assert!(stats.evictions >= 4_000, "{stats:?}");
        assert_eq!(store.load(&user.id).await.unwrap(), Some(user));
    }

    #[tokio::test]
    async fn purge_drops_every_expired_session() {
        let clock = ManualClock::starting_now();
        let store = store(&clock);
        for _ in 0..10_000 {
            let mut session = conformance::stored(&clock, None, b"x");
            // moka also expires entries on its own real-time clock, so the
            // deadline must lie far beyond the test's real duration.
            session.expires_at = Some(clock.now() + time::Duration::minutes(10));
            store.create(&session).await.unwrap();
        }
        assert_eq!(store.stats().live_sessions, 10_000);
        clock.advance(time::Duration::minutes(11));
        assert_eq!(store.purge_expired(), 10_000);
        assert_eq!(store.stats().live_sessions, 0);
        assert_eq!(store.stats().expirations, 10_000);
    }
}
