//! The local cache of one node of a clustered store: a moka cache of
//! sessions, the version floors that keep stale loads out of it, and the
//! freshness watermark that decides whether it may serve at all.
//!
//! # Why a stale value never enters the cache
//!
//! A load reads Redis, then inserts what it read. An invalidation for the
//! same id can be applied between the two, and evicting would then happen
//! before the stale insert. To prevent that, applying a change records a
//! version floor for the id (the lowest version that may still be cached)
//! before it evicts, and every insert runs under the same per-id lock and
//! checks the floor. A delete sets the floor to `u64::MAX`.
//!
//! Floors live for [`FLOOR_TTL`], so an insert is also refused when
//!
//! - its operation started [`FLOOR_TTL`] / 2 ago or earlier, since a floor
//!   it depends on may have expired;
//! - a floor was dropped for space during its operation;
//! - the cache was cleared during its operation.
//!
//! Own writes raise the floor to their new version before inserting, so a
//! slower load of the previous version on the same node is refused too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use time::OffsetDateTime;

use crate::events::{SessionEvents, StoreEvent};
use crate::{Clock, SessionId, StoredSession};

/// How long a version floor is kept after the change that set it.
pub(super) const FLOOR_TTL: Duration = Duration::from_secs(10);

/// The maximum number of version floors. At 10 000 invalidations per second
/// across the cluster, floors of the last [`FLOOR_TTL`] fit. Beyond that,
/// floors are dropped and inserts that overlap a drop are refused, so the
/// cache serves fewer hits but never a stale one.
const FLOOR_CAPACITY: u64 = 100_000;

/// Number of lock stripes that serialise the cache updates of one id. A
/// power of two.
const STRIPES: usize = 64;

/// Counters of a clustered store's local cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClusterCacheStats {
    /// Loads served from the local cache, with no Redis round trip.
    pub hits: u64,
    /// Loads that read Redis: no entry, an entry that looked expired, or a
    /// cache that was not serving.
    pub misses: u64,
    /// Entries dropped to stay within `local_cache_max_size`.
    pub evictions: u64,
    /// Invalidation messages from other nodes that were applied.
    pub invalidations: u64,
    /// Entries currently cached.
    pub entries: u64,
    /// Times the whole cache was dropped: at every (re)subscription and
    /// whenever the subscriber lost its connection.
    pub clears: u64,
    /// Times the subscriber subscribed to the channel, the first time
    /// included.
    pub subscriptions: u64,
    /// Messages on the channel that did not parse and were ignored.
    pub rejected_messages: u64,
    /// Writes whose invalidation could not be published; each returned an
    /// error.
    pub publish_failures: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
    clears: AtomicU64,
    pub(super) subscriptions: AtomicU64,
    pub(super) rejected_messages: AtomicU64,
    pub(super) publish_failures: AtomicU64,
}

/// Taken before the Redis operation whose result may be cached; the insert
/// is refused when anything it records changed meanwhile.
pub(super) struct FillTicket {
    clears: u64,
    floor_drops: u64,
    started: Instant,
}

/// Whether the cache may serve: the subscriber is subscribed, and it has
/// proven recently enough that every earlier invalidation was applied.
struct Freshness {
    base: Instant,
    max_staleness: Duration,
    subscribed: AtomicBool,
    /// Nanoseconds after `base` at which the last confirmed fence was sent.
    confirmed: AtomicU64,
}

impl Freshness {
    /// Returns `at` in nanoseconds after `base`. The subscriber starts after
    /// the cache is built, so it never reports an earlier instant.
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn serving(&self) -> bool {
        if !self.subscribed.load(Ordering::Acquire) {
            return false;
        }
        let confirmed = self.confirmed.load(Ordering::Acquire);
        let now = self.nanos(Instant::now());
        now.saturating_sub(confirmed)
            <= u64::try_from(self.max_staleness.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The local cache of one node.
pub(super) struct LocalCache {
    entries: Cache<SessionId, Arc<StoredSession>>,
    floors: Cache<SessionId, u64>,
    floor_drops: Arc<AtomicU64>,
    clears: AtomicU64,
    stripes: Box<[Mutex<()>]>,
    clock: Arc<dyn Clock>,
    freshness: Freshness,
    counters: Arc<Counters>,
    events: Option<Arc<dyn SessionEvents>>,
}

/// Expires each entry after the cache TTL or at its session's deadline on
/// the store's clock, whichever comes first.
struct EntryExpiry {
    clock: Arc<dyn Clock>,
    ttl: Duration,
}

impl EntryExpiry {
    fn time_left(&self, session: &StoredSession) -> Duration {
        let Some(deadline) = session.expires_at else {
            return self.ttl;
        };
        let left = Duration::try_from(deadline - self.clock.now()).unwrap_or(Duration::ZERO);
        left.min(self.ttl)
    }
}

impl moka::Expiry<SessionId, Arc<StoredSession>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _id: &SessionId,
        session: &Arc<StoredSession>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.time_left(session))
    }

    fn expire_after_update(
        &self,
        _id: &SessionId,
        session: &Arc<StoredSession>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.time_left(session))
    }
}

/// The settings of a [`LocalCache`].
pub(super) struct CacheSettings {
    pub(super) ttl: Duration,
    pub(super) max_size: u64,
    pub(super) max_staleness: Duration,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) events: Option<Arc<dyn SessionEvents>>,
}

impl LocalCache {
    pub(super) fn new(settings: CacheSettings) -> Self {
        let counters = Arc::new(Counters::default());
        let listener_counters = counters.clone();
        let listener_events = settings.events.clone();
        let entries = Cache::builder()
            .max_capacity(settings.max_size)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(EntryExpiry {
                clock: settings.clock.clone(),
                ttl: settings.ttl,
            })
            .eviction_listener(move |_id, _session, cause| {
                if cause == RemovalCause::Size {
                    listener_counters.evictions.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("session_cache_evictions_total").increment(1);
                    if let Some(events) = &listener_events {
                        events.on_store_event(&StoreEvent::CacheEvicted);
                    }
                }
            })
            .build();

        let floor_drops = Arc::new(AtomicU64::new(0));
        let listener_drops = floor_drops.clone();
        let floors = Cache::builder()
            .max_capacity(FLOOR_CAPACITY)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_live(FLOOR_TTL)
            .eviction_listener(move |_id, _floor, cause| {
                if cause == RemovalCause::Size {
                    listener_drops.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build();

        Self {
            entries,
            floors,
            floor_drops,
            clears: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            clock: settings.clock,
            freshness: Freshness {
                base: Instant::now(),
                max_staleness: settings.max_staleness,
                subscribed: AtomicBool::new(false),
                confirmed: AtomicU64::new(0),
            },
            counters,
            events: settings.events,
        }
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(super) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub(super) fn stats(&self) -> ClusterCacheStats {
        self.entries.run_pending_tasks();
        let counters = &self.counters;
        ClusterCacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            evictions: counters.evictions.load(Ordering::Relaxed),
            invalidations: counters.invalidations.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
            clears: counters.clears.load(Ordering::Relaxed),
            subscriptions: counters.subscriptions.load(Ordering::Relaxed),
            rejected_messages: counters.rejected_messages.load(Ordering::Relaxed),
            publish_failures: counters.publish_failures.load(Ordering::Relaxed),
        }
    }

    /// Returns whether the subscriber is subscribed, so that a fence can
    /// come back.
    pub(super) fn is_subscribed(&self) -> bool {
        self.freshness.subscribed.load(Ordering::Acquire)
    }

    /// Returns whether the cache may serve hits now.
    pub(super) fn serving(&self) -> bool {
        self.freshness.serving()
    }

    /// Returns the live cached session, counting a hit, or `None`, counting
    /// a miss. An entry that looks expired is a miss, because another node
    /// may have moved its deadline later without telling this one.
    pub(super) fn lookup(&self, id: &SessionId) -> Option<StoredSession> {
        let hit = self
            .serving()
            .then(|| self.entries.get(id))
            .flatten()
            .filter(|session| !is_expired(session, self.now()));
        match hit {
            Some(session) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("session_cache_hits_total").increment(1);
                self.emit(StoreEvent::CacheHit);
                Some(StoredSession::clone(&session))
            }
            None => {
                self.record_miss();
                None
            }
        }
    }

    pub(super) fn record_miss(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("session_cache_misses_total").increment(1);
        self.emit(StoreEvent::CacheMiss);
    }

    /// Starts an operation whose result may be cached.
    pub(super) fn ticket(&self) -> FillTicket {
        FillTicket {
            clears: self.clears.load(Ordering::SeqCst),
            floor_drops: self.floor_drops.load(Ordering::SeqCst),
            started: Instant::now(),
        }
    }

    /// Caches a session read from Redis, unless a change to it was applied
    /// after `ticket` was taken.
    pub(super) fn fill(&self, ticket: &FillTicket, session: &StoredSession) {
        let _guard = self.lock(&session.id);
        self.insert_checked(ticket, session);
    }

    /// Caches a session this node just wrote, and keeps older versions from
    /// being cached by slower loads.
    pub(super) fn written(&self, ticket: &FillTicket, session: &StoredSession) {
        let _guard = self.lock(&session.id);
        self.raise_floor(&session.id, session.version);
        self.insert_checked(ticket, session);
    }

    /// Moves the deadline of the cached session after this node touched it.
    /// Returns true when other nodes need an invalidation, because the new
    /// deadline is earlier than the cached one or no entry was cached to
    /// compare with.
    pub(super) fn touched(
        &self,
        ticket: &FillTicket,
        id: &SessionId,
        version: u64,
        expires_at: Option<OffsetDateTime>,
    ) -> bool {
        let _guard = self.lock(id);
        let Some(cached) = self
            .entries
            .get(id)
            .filter(|cached| cached.version == version)
        else {
            self.entries.invalidate(id);
            return true;
        };
        let earlier = match (expires_at, cached.expires_at) {
            (_, None) => expires_at.is_some(),
            (None, Some(_)) => false,
            (Some(new), Some(old)) => new < old,
        };
        let mut moved = StoredSession::clone(&cached);
        moved.expires_at = expires_at;
        if earlier {
            self.raise_floor(id, version.saturating_add(1));
            self.entries.invalidate(id);
        } else {
            self.insert_checked(ticket, &moved);
        }
        earlier
    }

    /// Drops this node's entry after a write that did not apply, or whose
    /// invalidation could not be published.
    pub(super) fn forget(&self, id: &SessionId) {
        let _guard = self.lock(id);
        self.entries.invalidate(id);
    }

    /// Drops the entry of a session this node deleted, for good.
    pub(super) fn deleted(&self, id: &SessionId) {
        let _guard = self.lock(id);
        self.raise_floor(id, u64::MAX);
        self.entries.invalidate(id);
    }

    /// Returns the version of the cached entry, if any.
    pub(super) fn cached_version(&self, id: &SessionId) -> Option<u64> {
        self.entries.get(id).map(|session| session.version)
    }

    /// Applies an invalidation from another node: no version below `floor`
    /// is cached for `id` from now on.
    pub(super) fn apply_remote(&self, id: &SessionId, floor: u64) {
        {
            let _guard = self.lock(id);
            self.raise_floor(id, floor);
            self.entries.invalidate(id);
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("session_cache_invalidations_total").increment(1);
        self.emit(StoreEvent::CacheInvalidated);
    }

    /// Marks the subscription as established: drops every entry, because
    /// messages may have been missed, and serves again as of `sent_at`, the
    /// instant the `SUBSCRIBE` was sent.
    pub(super) fn subscribed(&self, sent_at: Instant) {
        self.clear();
        self.freshness
            .confirmed
            .store(self.freshness.nanos(sent_at), Ordering::Release);
        self.freshness.subscribed.store(true, Ordering::Release);
        self.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops serving and drops every entry, after the subscriber lost its
    /// connection or stopped.
    pub(super) fn unsubscribed(&self) {
        let was_subscribed = self.freshness.subscribed.swap(false, Ordering::AcqRel);
        if was_subscribed {
            self.clear();
        }
    }

    /// Records that every invalidation published before `sent_at` has been
    /// applied.
    pub(super) fn confirm(&self, sent_at: Instant) {
        self.freshness
            .confirmed
            .fetch_max(self.freshness.nanos(sent_at), Ordering::AcqRel);
    }

    fn clear(&self) {
        // Holding every stripe keeps inserts from straddling the clear.
        let _guards: Vec<MutexGuard<'_, ()>> = self
            .stripes
            .iter()
            .map(|stripe| {
                stripe
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            })
            .collect();
        self.clears.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
        self.counters.clears.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("session_cache_clears_total").increment(1);
        self.emit(StoreEvent::CacheCleared);
    }

    /// Inserts `session` if nothing since `ticket` forbids it and no newer
    /// version is cached. A refused insert leaves the current entry, which
    /// passed the same checks when it was inserted. Must be called with the
    /// id's stripe locked.
    fn insert_checked(&self, ticket: &FillTicket, session: &StoredSession) {
        let allowed = self.freshness.subscribed.load(Ordering::Acquire)
            && self.clears.load(Ordering::SeqCst) == ticket.clears
            && self.floor_drops.load(Ordering::SeqCst) == ticket.floor_drops
            && ticket.started.elapsed() < FLOOR_TTL / 2
            && self
                .floors
                .get(&session.id)
                .is_none_or(|floor| floor != u64::MAX && session.version >= floor)
            && !is_expired(session, self.now())
            && self
                .entries
                .get(&session.id)
                .is_none_or(|cached| cached.version <= session.version);
        if allowed {
            self.entries
                .insert(session.id.clone(), Arc::new(session.clone()));
        }
    }

    /// Must be called with the id's stripe locked.
    fn raise_floor(&self, id: &SessionId, floor: u64) {
        let current = self.floors.get(id).unwrap_or(0);
        self.floors.insert(id.clone(), current.max(floor));
    }

    fn lock(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let index = usize::from(id.as_bytes()[0]) % STRIPES;
        self.stripes[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, event: StoreEvent) {
        if let Some(events) = &self.events {
            events.on_store_event(&event);
        }
    }
}

fn is_expired(session: &StoredSession, now: OffsetDateTime) -> bool {
    session.expires_at.is_some_and(|deadline| now >= deadline)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ManualClock;

    fn cache(clock: &ManualClock, max_staleness: Duration) -> LocalCache {
        let cache = LocalCache::new(CacheSettings {
            ttl: Duration::from_secs(30),
            max_size: 100,
            max_staleness,
            clock: Arc::new(clock.clone()),
            events: None,
        });
        cache.subscribed(Instant::now());
        cache
    }

    fn session(clock: &ManualClock, id: &SessionId, version: u64) -> StoredSession {
        StoredSession {
            id: id.clone(),
            version,
            expires_at: Some(clock.now() + time::Duration::minutes(30)),
            identity: None,
            payload: Bytes::from(version.to_string()),
        }
    }

    fn cached_version(cache: &LocalCache, id: &SessionId) -> Option<u64> {
        cache.lookup(id).map(|session| session.version)
    }

    #[test]
    fn load_racing_a_remote_change_is_not_cached() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_secs(1));
        let id = SessionId::random();

        let ticket = cache.ticket();
        cache.apply_remote(&id, 2);
        cache.fill(&ticket, &session(&clock, &id, 1));
        assert_eq!(
            cached_version(&cache, &id),
            None,
            "version 1 read before the change"
        );

        let ticket = cache.ticket();
        cache.fill(&ticket, &session(&clock, &id, 2));
        assert_eq!(
            cached_version(&cache, &id),
            Some(2),
            "the changed version is cached"
        );
    }

    #[test]
    fn deleted_ids_are_never_cached_again() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_secs(1));
        let remote = SessionId::random();
        let own = SessionId::random();

        cache.apply_remote(&remote, u64::MAX);
        cache.deleted(&own);
        for id in [&remote, &own] {
            let ticket = cache.ticket();
            cache.fill(&ticket, &session(&clock, id, 7));
            assert_eq!(cached_version(&cache, id), None);
        }
    }

    #[test]
    fn own_write_beats_a_slower_load() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_secs(1));
        let id = SessionId::random();

        let load = cache.ticket();
        let write = cache.ticket();
        cache.written(&write, &session(&clock, &id, 2));
        cache.fill(&load, &session(&clock, &id, 1));
        assert_eq!(cached_version(&cache, &id), Some(2));
    }

    #[test]
    fn fills_across_a_clear_are_refused() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_secs(1));
        let id = SessionId::random();

        let ticket = cache.ticket();
        cache.unsubscribed();
        cache.fill(&cache.ticket(), &session(&clock, &id, 1));
        assert_eq!(cached_version(&cache, &id), None, "not subscribed");

        cache.subscribed(Instant::now());
        cache.fill(&ticket, &session(&clock, &id, 1));
        assert_eq!(cached_version(&cache, &id), None, "began before the clear");
    }

    #[test]
    fn fill_after_floor_loss_is_refused() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_secs(1));
        let id = SessionId::random();

        let ticket = cache.ticket();
        cache.floor_drops.fetch_add(1, Ordering::SeqCst);
        cache.fill(&ticket, &session(&clock, &id, 1));
        assert_eq!(
            cached_version(&cache, &id),
            None,
            "a floor was dropped for space"
        );

        let Some(started) = Instant::now().checked_sub(FLOOR_TTL / 2) else {
            return;
        };
        let slow = FillTicket {
            started,
            ..cache.ticket()
        };
        cache.fill(&slow, &session(&clock, &id, 1));
        assert_eq!(
            cached_version(&cache, &id),
            None,
            "floors it needs may have expired"
        );
    }

    #[test]
    fn stale_watermark_stops_hits() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_millis(5));
        let id = SessionId::random();
        cache.fill(&cache.ticket(), &session(&clock, &id, 1));
        assert_eq!(cached_version(&cache, &id), Some(1));

        let (Some(base), Some(long_ago)) = (
            Instant::now().checked_sub(Duration::from_secs(1)),
            Instant::now().checked_sub(Duration::from_millis(50)),
        ) else {
            return;
        };
        let mut cache = cache;
        cache.freshness.base = base;
        cache
            .freshness
            .confirmed
            .store(cache.freshness.nanos(long_ago), Ordering::Release);
        assert!(!cache.serving());
        assert_eq!(cached_version(&cache, &id), None);

        cache.confirm(Instant::now());
        assert_eq!(
            cached_version(&cache, &id),
            Some(1),
            "a new fence restores hits"
        );
    }

    #[test]
    fn expired_entries_are_misses() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_secs(1));
        let id = SessionId::random();
        cache.fill(&cache.ticket(), &session(&clock, &id, 1));
        clock.advance(time::Duration::minutes(30));
        assert_eq!(cached_version(&cache, &id), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (0, 1));
    }

    #[test]
    fn touch_reports_only_earlier_deadlines() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, Duration::from_secs(1));
        let id = SessionId::random();
        let current = session(&clock, &id, 3);
        let deadline = current.expires_at.unwrap();
        cache.fill(&cache.ticket(), &current);

        let later = deadline + time::Duration::minutes(5);
        assert!(!cache.touched(&cache.ticket(), &id, 3, Some(later)));
        assert_eq!(cache.lookup(&id).unwrap().expires_at, Some(later));
        assert!(
            !cache.touched(&cache.ticket(), &id, 3, None),
            "no deadline is the latest"
        );

        assert!(cache.touched(&cache.ticket(), &id, 3, Some(deadline)));
        assert_eq!(cached_version(&cache, &id), None);

        let other = SessionId::random();
        assert!(
            cache.touched(&cache.ticket(), &other, 1, Some(later)),
            "nothing cached to compare with"
        );
    }
}
