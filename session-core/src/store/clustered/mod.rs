//! The clustered Redis store: the Redis store with a local cache on each
//! node, kept coherent through Redis pub/sub, on standalone Redis or Redis
//! Cluster. [`ClusteredRedisStore`] documents the guarantees. The `cache`
//! module explains how stale values are kept out of the cache,
//! `subscriber` how the cache proves it is current, `subscription` how the
//! subscriber connects (plain or sharded pub/sub), and `message` the
//! invalidation format.

mod cache;
mod message;
mod subscriber;
mod subscription;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

pub use self::cache::ClusterCacheStats;
use self::cache::{CacheSettings, LocalCache};
use self::message::ChangeKind;
use self::subscriber::{FenceWaiter, Subscriber};
use self::subscription::Target;
use super::redis::{RedisConfigError, RedisStore, RedisStoreBuilder};
use super::{CreateOutcome, SaveOutcome, SessionStore, StoreError, StoredSession};
use crate::events::SessionEvents;
use crate::{Clock, SessionConfig, SessionId};

/// A configuration error found while building a [`ClusteredRedisStore`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClusterConfigError {
    /// The underlying Redis store could not be built.
    #[error(transparent)]
    Redis(#[from] RedisConfigError),
    /// The node id cannot be carried in an invalidation message.
    #[error("invalid node id {node_id:?}: {reason}")]
    InvalidNodeId {
        /// The rejected node id.
        node_id: String,
        /// The rule the node id breaks.
        reason: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid clustered store setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The builder method that set it.
        setting: &'static str,
        /// The rule the value breaks.
        reason: &'static str,
    },
}

/// The address of the store's Redis: one server, or any nodes of a cluster.
enum Urls {
    Standalone(String),
    Cluster(Vec<String>),
}

/// Builder of [`ClusteredRedisStore`]; start it with
/// [`ClusteredRedisStore::from_url`] for standalone Redis or
/// [`ClusteredRedisStore::cluster_from_urls`] for Redis Cluster.
#[must_use]
pub struct ClusteredRedisStoreBuilder {
    redis: RedisStoreBuilder,
    urls: Urls,
    node_id: Option<String>,
    channel: Option<String>,
    local_cache_ttl: Duration,
    local_cache_max_size: u64,
    max_staleness: Duration,
    fenced_reads: bool,
    events: Option<Arc<dyn SessionEvents>>,
}

impl fmt::Debug for ClusteredRedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusteredRedisStoreBuilder")
            .field("redis", &self.redis)
            .field("node_id", &self.node_id)
            .field("channel", &self.channel)
            .field("local_cache_ttl", &self.local_cache_ttl)
            .field("local_cache_max_size", &self.local_cache_max_size)
            .field("max_staleness", &self.max_staleness)
            .field("fenced_reads", &self.fenced_reads)
            .field("events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl ClusteredRedisStoreBuilder {
    /// Sets this node's id, carried in its invalidations so that it can
    /// ignore its own (default `node-` and 16 random hex digits, new at every
    /// build). 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `:`; every
    /// node on a channel needs a distinct id.
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }

    /// Sets the pub/sub channel of the invalidations (default the key prefix
    /// followed by `invalidations`, such as `session:invalidations`). Every
    /// node of one app must use the same channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Sets how long an entry may stay in the local cache (default 30 s).
    /// It also bounds how long a node may serve a version whose
    /// invalidation was never published (see the staleness bound of
    /// [`ClusteredRedisStore`]).
    pub fn local_cache_ttl(mut self, ttl: Duration) -> Self {
        self.local_cache_ttl = ttl;
        self
    }

    /// Sets the maximum number of entries of the local cache (default
    /// 10 000). The least recently used entry is evicted first.
    pub fn local_cache_max_size(mut self, max_size: u64) -> Self {
        self.local_cache_max_size = max_size;
        self
    }

    /// Sets how far behind other nodes' changes a cache hit may be when
    /// invalidations are delayed or lost (default 1 s, at least 1 ms). A
    /// fence is sent every quarter of it; when fences stop coming back in
    /// time, loads read Redis.
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// Makes every cache hit wait for a fence sent after the load began
    /// (default off). A hit then reflects every change whose operation
    /// returned before the load began, on any node, at the cost of one
    /// round trip on the subscriber connection. A lone fenced load is
    /// therefore no faster than a Redis load; concurrent loads share one
    /// fence, so under load they send far fewer commands than a `GET` each.
    pub fn fenced_reads(mut self, fenced: bool) -> Self {
        self.fenced_reads = fenced;
        self
    }

    /// Sets the hook that receives the cache's [`crate::StoreEvent`]s
    /// (default none).
    pub fn events(mut self, events: Arc<dyn SessionEvents>) -> Self {
        self.events = Some(events);
        self
    }

    /// Sets the prefix of every key (default `session:`); see
    /// [`RedisStoreBuilder::key_prefix`].
    pub fn key_prefix(self, prefix: impl Into<String>) -> Self {
        self.redis_options(|redis| redis.key_prefix(prefix))
    }

    /// Sets the clock that decides expiry (default the system clock); see
    /// [`RedisStoreBuilder::clock`].
    pub fn clock(self, clock: Arc<dyn Clock>) -> Self {
        self.redis_options(|redis| redis.clock(clock))
    }

    /// Seals stored values under the configuration's key ring and uses its
    /// clock; see [`RedisStoreBuilder::encrypt_with`].
    pub fn encrypt_with(self, config: &SessionConfig) -> Self {
        self.redis_options(|redis| redis.encrypt_with(config))
    }

    /// Sets the time limit of one Redis operation (default 1 s); see
    /// [`RedisStoreBuilder::operation_timeout`]. It also limits subscribing,
    /// a [`ClusteredRedisStore::catch_up`] and each publish.
    pub fn operation_timeout(self, timeout: Duration) -> Self {
        self.redis_options(|redis| redis.operation_timeout(timeout))
    }

    /// Applies any other setting of the underlying [`RedisStoreBuilder`].
    pub fn redis_options(
        mut self,
        configure: impl FnOnce(RedisStoreBuilder) -> RedisStoreBuilder,
    ) -> Self {
        self.redis = configure(self.redis);
        self
    }

    /// Builds the store and starts its subscriber task, waiting up to the
    /// operation timeout for the first subscription. When Redis cannot be
    /// reached, the store is returned anyway: loads read Redis and the
    /// subscriber keeps retrying with backoff.
    ///
    /// # Errors
    ///
    /// [`ClusterConfigError`] for an invalid URL, key prefix, node id or
    /// setting.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub async fn build(self) -> Result<ClusteredRedisStore, ClusterConfigError> {
        let node_id = self.node_id.unwrap_or_else(random_node_id);
        message::validate_node_id(&node_id).map_err(|reason| {
            ClusterConfigError::InvalidNodeId {
                node_id: node_id.clone(),
                reason,
            }
        })?;
        validate_settings(
            self.local_cache_ttl,
            self.local_cache_max_size,
            self.max_staleness,
            self.channel.as_deref(),
        )?;

        let redis = self.redis.build()?;
        let target = match &self.urls {
            Urls::Standalone(url) => Target::standalone(url),
            Urls::Cluster(urls) => Target::cluster(urls),
        }
        .map_err(|error| RedisConfigError::InvalidUrl {
            message: error.to_string(),
        })?;
        let channel = self
            .channel
            .unwrap_or_else(|| format!("{}invalidations", redis.key_prefix()));
        let timeout = redis.operation_timeout();

        let cache = Arc::new(LocalCache::new(CacheSettings {
            ttl: self.local_cache_ttl,
            max_size: self.local_cache_max_size,
            max_staleness: self.max_staleness,
            clock: redis.clock().clone(),
            events: self.events,
        }));
        let (stop, stop_receiver) = watch::channel(false);
        let (fences, fence_receiver) = mpsc::unbounded_channel();
        let (ready, ready_receiver) = oneshot::channel();
        let subscriber = Subscriber {
            target,
            channel: channel.clone(),
            node_id: node_id.clone(),
            cache: cache.clone(),
            heartbeat: (self.max_staleness / 4).max(Duration::from_millis(1)),
            fence_timeout: self.max_staleness.max(timeout),
            connect_timeout: timeout,
            fences: fence_receiver,
            stop: stop_receiver,
            ready: Some(ready),
        };
        let task = tokio::spawn(subscriber.run());

        if !matches!(
            tokio::time::timeout(timeout, ready_receiver).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(
                channel = %channel,
                "session invalidation subscriber did not subscribe in time; the local cache is off until it does"
            );
        }

        Ok(ClusteredRedisStore {
            inner: Arc::new(Inner {
                redis,
                cache,
                node_id,
                channel,
                local_cache_ttl: self.local_cache_ttl,
                local_cache_max_size: self.local_cache_max_size,
                max_staleness: self.max_staleness,
                fenced_reads: self.fenced_reads,
                fences,
                stop,
                task: tokio::sync::Mutex::new(Some(task)),
                in_flight: InFlight::default(),
            }),
        })
    }
}

fn validate_settings(
    ttl: Duration,
    max_size: u64,
    max_staleness: Duration,
    channel: Option<&str>,
) -> Result<(), ClusterConfigError> {
    let invalid = |setting, reason| Err(ClusterConfigError::InvalidSetting { setting, reason });
    if ttl.is_zero() {
        return invalid(
            "local_cache_ttl",
            "it must be longer than zero; use the Redis store for no local cache",
        );
    }
    if max_size == 0 {
        return invalid(
            "local_cache_max_size",
            "it must be at least 1; use the Redis store for no local cache",
        );
    }
    if max_staleness < Duration::from_millis(1) {
        return invalid("max_staleness", "it must be at least 1 ms");
    }
    if channel.is_some_and(str::is_empty) {
        return invalid("channel", "it must not be empty");
    }
    Ok(())
}

fn random_node_id() -> String {
    format!("node-{:016x}", rand::random::<u64>())
}

/// A [`SessionStore`] for apps on several nodes: the Redis store with a
/// local cache on each node, kept coherent by invalidations over Redis
/// pub/sub.
///
/// # Coherence
///
/// - A load is served from the local cache when it contains a live entry
///   and the cache is serving (see below), with no Redis round trip.
///   Otherwise it reads Redis and caches what it read.
/// - Every save, delete and per-user deletion, and a touch that moves a
///   deadline earlier, publishes an invalidation on the channel after the
///   Redis write succeeded and before the operation returns. Every other
///   node evicts the entry. A node ignores its own messages and every
///   message that does not parse.
/// - The writing node updates its own entry, so it reads its own writes.
/// - Entries live at most `local_cache_ttl` and never past the session's
///   deadline. An entry that looks expired is re-read from Redis, because
///   another node may have slid the deadline with a touch, which is not
///   published.
/// - A load that raced an invalidation never caches the older value: each
///   change leaves a version floor for its id, and inserts below the floor
///   are rejected.
/// - When the subscriber (re)connects, the cache is cleared, because
///   messages may have been missed.
/// - [`SessionStore::shutdown`] waits for running operations, then stops
///   the subscriber task and waits for it.
///
/// # Staleness bound
///
/// Other nodes apply an invalidation when it arrives, which is after the
/// writing node's operation returned (it returns once Redis accepted the
/// publish). So right after a logout on node B, node A may still serve
/// the session from its cache for as long as the message is in flight.
/// [`ClusteredRedisStore::catch_up`] waits until A has applied everything
/// published before the call.
///
/// The cache serves only while its subscriber has proven, within
/// `max_staleness` (default 1 s), that it applied every invalidation
/// published up to some instant. The proof is a `PING` on the subscriber
/// connection (a fence), sent every `max_staleness / 4`. So a cache hit
/// reflects every change whose operation returned more than
/// `max_staleness` earlier, even when messages are lost or the subscriber
/// connection hangs.
///
/// With [`ClusteredRedisStoreBuilder::fenced_reads`], a hit first waits for
/// a fence sent after the load began. It then reflects every change whose
/// operation returned before the load began, on any node, at the cost of
/// one round trip on the subscriber connection, shared by concurrent loads.
///
/// One gap remains: when a write reaches Redis but neither its reply nor
/// its invalidation gets through (a connection fault in between), the
/// operation returns an error, and other nodes may serve the previous
/// version until their entry leaves the cache, at most `local_cache_ttl`
/// later.
///
/// # Round trips
///
/// A cache hit costs none. A miss costs the Redis store's load. Save and
/// delete cost the Redis store's operation plus one publish. Create and a
/// touch that extends the cached deadline cost what they cost on the Redis
/// store.
///
/// # Invalidation messages
///
/// One line of ASCII text, `v1 <kind> <version> <node id> <session id>`,
/// where `<kind>` is `save`, `delete` or `touch`. The message contains the
/// session id, so the channel must be as private as the keys are.
///
/// # Standalone Redis and Redis Cluster
///
/// Both need Redis 7.0 or later. The fence relies on one server ordering
/// the messages and the `PING` replies of the subscriber connection, so
/// every invalidation goes through the server the subscriber is on:
///
/// - [`ClusteredRedisStore::from_url`], standalone Redis: `PUBLISH` and
///   `SUBSCRIBE` on that server.
/// - [`ClusteredRedisStore::cluster_from_urls`], Redis Cluster: sharded
///   pub/sub. Each publish is an `SPUBLISH`, which the cluster client sends
///   to the master that owns the channel's hash slot, and the subscriber
///   `SSUBSCRIBE`s on a connection to that master, found by following
///   `MOVED` replies. A plain `PUBLISH` would reach subscribers on other
///   masters over the cluster bus, with no order relative to their `PING`s.
///
/// When the channel's slot moves to another master (resharding) or its
/// master fails over, the old master ends the subscription or the
/// connection drops. The subscriber treats that as a lost subscription: the
/// cache is cleared and loads read Redis until the subscriber has
/// subscribed on the new owner. While `CLUSTER SETSLOT ... NODE` has reached
/// the new owner but not yet the old one, messages published on the new
/// owner can miss a subscriber still on the old one, for as long as the old
/// owner takes to learn the new configuration.
///
/// Cloning is cheap and shares the cache. Dropping the last clone stops the
/// subscriber task.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use session_core::{ClusteredRedisStore, SessionStore};
///
/// let store = ClusteredRedisStore::from_url("redis://127.0.0.1:6379/0")
///     .key_prefix("myapp:session:")
///     .node_id("web-1")
///     .channel("myapp:session:invalidations")
///     .build()
///     .await?;
/// store.ping().await?;
/// // ... serve requests ...
/// store.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClusteredRedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisStore,
    cache: Arc<LocalCache>,
    node_id: String,
    channel: String,
    local_cache_ttl: Duration,
    local_cache_max_size: u64,
    max_staleness: Duration,
    fenced_reads: bool,
    fences: mpsc::UnboundedSender<FenceWaiter>,
    /// Set to true to stop the subscriber; dropping it stops it too.
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    in_flight: InFlight,
}

impl fmt::Debug for ClusteredRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("ClusteredRedisStore")
            .field("redis", &inner.redis)
            .field("node_id", &inner.node_id)
            .field("channel", &inner.channel)
            .field("local_cache_ttl", &inner.local_cache_ttl)
            .field("local_cache_max_size", &inner.local_cache_max_size)
            .field("max_staleness", &inner.max_staleness)
            .field("fenced_reads", &inner.fenced_reads)
            .finish_non_exhaustive()
    }
}

impl ClusteredRedisStore {
    /// Starts a builder for a standalone Redis at `url`, such as
    /// `redis://user:password@127.0.0.1:6379/2`. The store opens a pool for
    /// its operations and one more connection for its subscriber, and uses
    /// `PUBLISH` and `SUBSCRIBE`. For Redis Cluster use
    /// [`ClusteredRedisStore::cluster_from_urls`].
    pub fn from_url(url: impl Into<String>) -> ClusteredRedisStoreBuilder {
        let url = url.into();
        Self::builder(RedisStore::from_url(url.clone()), Urls::Standalone(url))
    }

    /// Starts a builder for a Redis Cluster (7.0 or later) reached through
    /// any of `urls`, such as `redis://127.0.0.1:7000`. The store opens a
    /// cluster pool for its operations and one more connection for its
    /// subscriber, to the master that owns the channel's hash slot. It uses
    /// sharded pub/sub: `SPUBLISH` and `SSUBSCRIBE`.
    pub fn cluster_from_urls<I, U>(urls: I) -> ClusteredRedisStoreBuilder
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        Self::builder(
            RedisStore::cluster_from_urls(urls.clone()),
            Urls::Cluster(urls),
        )
    }

    fn builder(redis: RedisStoreBuilder, urls: Urls) -> ClusteredRedisStoreBuilder {
        ClusteredRedisStoreBuilder {
            redis,
            urls,
            node_id: None,
            channel: None,
            local_cache_ttl: Duration::from_secs(30),
            local_cache_max_size: 10_000,
            max_staleness: Duration::from_secs(1),
            fenced_reads: false,
            events: None,
        }
    }

    /// Returns this node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Returns the invalidation channel.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Returns the cache counters.
    pub fn stats(&self) -> ClusterCacheStats {
        self.inner.cache.stats()
    }

    /// Sends a `PING` on the pool, to check the server at start-up or in a
    /// health check.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the server cannot be reached in time.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner.redis.ping().await
    }

    /// Waits until this node has applied every invalidation whose operation
    /// returned before the call, on any node, by sending a fence on the
    /// subscriber connection. Concurrent calls share one fence.
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] after the operation timeout, and
    /// [`StoreError::Unavailable`] when the subscriber lost its connection
    /// or stopped.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let (waiter, done) = oneshot::channel();
        let stopped = || StoreError::Unavailable {
            message: "catch_up: the session invalidation subscriber is not connected".to_owned(),
        };
        self.inner.fences.send(waiter).map_err(|_| stopped())?;

        let timeout = self.inner.redis.operation_timeout();
        match tokio::time::timeout(timeout, done).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(StoreError::Timeout {
                operation: "catch_up",
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Publishes an invalidation. On failure the local entry is dropped too,
    /// and the error is returned, because other nodes did not receive the
    /// invalidation.
    async fn publish(
        &self,
        kind: ChangeKind,
        version: u64,
        id: &SessionId,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let text = message::encode(kind, version, &inner.node_id, id);
        let Err(error) = inner.redis.publish(&inner.channel, &text).await else {
            return Ok(());
        };

        inner.cache.forget(id);
        inner
            .cache
            .counters()
            .publish_failures
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("session_cache_publish_failures_total").increment(1);
        tracing::error!(
            operation,
            %error,
            channel = %inner.channel,
            "failed to publish a session invalidation; other nodes may serve the previous version until their cache entry expires"
        );
        Err(error)
    }

    /// Publishes an invalidation after a failed write anyway, because the
    /// write may have been applied with only its reply lost.
    async fn publish_after_failure(
        &self,
        kind: ChangeKind,
        version: u64,
        id: &SessionId,
        operation: &'static str,
    ) {
        let _ = self.publish(kind, version, id, operation).await;
    }
}

#[async_trait]
impl SessionStore for ClusteredRedisStore {
    async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        let inner = &self.inner;
        let _in_flight = inner.in_flight.enter();

        // Without a subscription no fence could come back, and the cache does
        // not serve anyway.
        let current =
            !inner.fenced_reads || (inner.cache.is_subscribed() && self.catch_up().await.is_ok());
        if current {
            if let Some(session) = inner.cache.lookup(id) {
                return Ok(Some(session));
            }
        } else {
            inner.cache.record_miss();
        }

        let ticket = inner.cache.ticket();
        let loaded = inner.redis.load(id).await?;
        match &loaded {
            Some(session) => inner.cache.fill(&ticket, session),
            None => inner.cache.forget(id),
        }
        Ok(loaded)
    }

    async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError> {
        let inner = &self.inner;
        let _in_flight = inner.in_flight.enter();

        // A new id cannot be cached on another node, so nothing is published.
        let ticket = inner.cache.ticket();
        let outcome = inner.redis.create(session).await?;
        if outcome == CreateOutcome::Created {
            inner.cache.written(&ticket, session);
        }
        Ok(outcome)
    }

    async fn save(
        &self,
        session: &StoredSession,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let inner = &self.inner;
        let _in_flight = inner.in_flight.enter();

        let ticket = inner.cache.ticket();
        let outcome = match inner.redis.save(session, expected_version).await {
            Ok(outcome) => outcome,
            Err(error) => {
                inner.cache.forget(&session.id);
                self.publish_after_failure(ChangeKind::Save, session.version, &session.id, "save")
                    .await;
                return Err(error);
            }
        };
        if outcome == SaveOutcome::Saved {
            self.publish(ChangeKind::Save, session.version, &session.id, "save")
                .await?;
            inner.cache.written(&ticket, session);
        } else {
            inner.cache.forget(&session.id);
        }
        Ok(outcome)
    }

    async fn touch(
        &self,
        id: &SessionId,
        expires_at: Option<OffsetDateTime>,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let inner = &self.inner;
        let _in_flight = inner.in_flight.enter();

        let ticket = inner.cache.ticket();
        let outcome = match inner.redis.touch(id, expires_at, expected_version).await {
            Ok(outcome) => outcome,
            Err(error) => {
                inner.cache.forget(id);
                return Err(error);
            }
        };
        if outcome != SaveOutcome::Saved {
            inner.cache.forget(id);
            return Ok(outcome);
        }

        // Other nodes re-read an entry that looks expired, so a later
        // deadline needs no message; an earlier one does.
        // NOTE: "earlier" is judged against this node's entry. When two
        // nodes touch one session at once, a third node's entry can keep a
        // deadline later than the stored one, by the difference of the two
        // deadlines. The layer's touches only slide deadlines forward, so
        // that difference is the time between the two requests.
        if inner
            .cache
            .touched(&ticket, id, expected_version, expires_at)
        {
            self.publish(ChangeKind::Touch, expected_version, id, "touch")
                .await?;
        }
        Ok(outcome)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let _in_flight = inner.in_flight.enter();

        let version = inner.cache.cached_version(id).unwrap_or(0);
        let deleted = inner.redis.delete(id).await;
        inner.cache.deleted(id);
        // Published even when nothing was deleted, so that retrying a delete
        // whose message was lost repairs other nodes' caches.
        match deleted {
            Ok(deleted) => {
                self.publish(ChangeKind::Delete, version, id, "delete")
                    .await?;
                Ok(deleted)
            }
            Err(error) => {
                self.publish_after_failure(ChangeKind::Delete, version, id, "delete")
                    .await;
                Err(error)
            }
        }
    }

    async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError> {
        let _in_flight = self.inner.in_flight.enter();
        self.inner.redis.list_by_identity(identity).await
    }

    async fn delete_by_identity(&self, identity: &str) -> Result<usize, StoreError> {
        let _in_flight = self.inner.in_flight.enter();
        let ids = self.inner.redis.list_by_identity(identity).await?;
        let mut deleted = 0;
        for id in ids {
            if self.delete(&id).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Waits for running operations (at most a bounded time), then stops the
    /// subscriber task and waits for it. Afterwards the store still works,
    /// with its cache off: every load reads Redis.
    async fn shutdown(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        // Each operation is bounded by its timeouts: a fence, the Redis
        // operation and a publish.
        let drain_limit = inner.redis.operation_timeout() * 3;
        if !inner.in_flight.wait_idle(drain_limit).await {
            tracing::warn!(
                running = inner.in_flight.count(),
                "clustered session store shut down with operations still running"
            );
        }

        inner.stop.send_replace(true);
        let Some(task) = inner.task.lock().await.take() else {
            return Ok(());
        };
        task.await.map_err(|error| StoreError::Backend {
            message: format!("shutdown: the session invalidation subscriber task failed: {error}"),
        })
    }
}

/// Counts running operations, for shutdown.
#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns false when operations were still running after `limit`.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let idle = async {
            loop {
                let notified = self.idle.notified();
                if self.count() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, idle).await.is_ok()
    }
}

struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
