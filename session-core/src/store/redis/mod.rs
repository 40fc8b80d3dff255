//! A [`SessionStore`] on Redis, standalone or Redis Cluster, through
//! deadpool-redis.
//!
//! # Key layout
//!
//! With the default prefix `session:`:
//!
//! - `session:{<id>}` is a string holding one session: a fixed ASCII header
//!   (format tag, version, expiry, identity digest, index deadline) and the
//!   body (identity and payload, optionally sealed). Its Redis TTL is the
//!   session's `expires_at` (`PXAT`).
//! - `session:identity:{<digest of the identity>}` is a set of the ids of
//!   one identity's sessions, with a TTL at least as late as each member's
//!   expiry.
//!
//! The braces are Redis Cluster hash tags: each session and each identity
//! index lands on its own slot, so keys spread over every master. Every
//! script touches one key, and the identity index is maintained with
//! separate commands. No operation touches a key outside the prefix.
//!
//! # Round trips
//!
//! `load` is one `GET`. `save` and `touch` are one `EVALSHA`, plus one round
//! trip when the identity changed or the index entry must be extended (about
//! once per identity index margin of a sliding session). `create` is one round trip on
//! standalone Redis (`SET NX PXAT`, pipelined with the index update for a
//! signed-in session) and two on a cluster for a signed-in session. `delete`
//! adds one for the index when the session had an identity.

mod connection;
mod scripts;
mod value;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncConnectionConfig};
use deadpool_redis::Runtime;
use futures_util::future::join_all;
use thiserror::Error;
use time::OffsetDateTime;

use self::connection::{Connection, Connections, Failure, Pool};
use self::value::{Header, HEADER_LEN};
use super::{CreateOutcome, SaveOutcome, SessionStore, StoreError, StoredSession};
use crate::{Clock, KeyRing, SessionConfig, SessionId, SystemClock};

/// A configuration error found while building a [`RedisStore`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The Redis URL does not parse or names an unsupported scheme.
    #[error(
        "invalid Redis URL: {message}; expected redis://[user:password@]host[:port][/db] \
         (rediss:// needs the redis crate built with a TLS feature)"
    )]
    InvalidUrl {
        /// The Redis client's error message, without the URL.
        message: String,
    },
    /// The key prefix cannot keep session keys apart or spread.
    #[error("invalid Redis key prefix {prefix:?}: {reason}")]
    InvalidKeyPrefix {
        /// The rejected prefix.
        prefix: String,
        /// The rule the prefix breaks.
        reason: &'static str,
    },
    /// The connection pool could not be built.
    #[error("failed to build the Redis connection pool: {message}")]
    Pool {
        /// The deadpool error message.
        message: String,
    },
}

enum Source {
    Url(String),
    Pool(deadpool_redis::Pool),
    ClusterUrls(Vec<String>),
    ClusterPool(deadpool_redis::cluster::Pool),
}

/// Builder of [`RedisStore`]; start it with [`RedisStore::from_url`],
/// [`RedisStore::from_pool`], [`RedisStore::cluster_from_urls`] or
/// [`RedisStore::from_cluster_pool`].
#[must_use]
pub struct RedisStoreBuilder {
    source: Source,
    key_prefix: String,
    clock: Arc<dyn Clock>,
    sealing: Option<SessionConfig>,
    operation_timeout: Duration,
    connections: usize,
    revalidate_idle_after: Duration,
    identity_index_margin: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
            Source::ClusterUrls(_) => "cluster urls",
            Source::ClusterPool(_) => "cluster pool",
        };
        f.debug_struct("RedisStoreBuilder")
            .field("source", &source)
            .field("key_prefix", &self.key_prefix)
            .field("clock", &self.clock)
            .field("sealed", &self.sealing.is_some())
            .field("operation_timeout", &self.operation_timeout)
            .field("connections", &self.connections)
            .field("revalidate_idle_after", &self.revalidate_idle_after)
            .field("identity_index_margin", &self.identity_index_margin)
            .finish()
    }
}

impl RedisStoreBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            key_prefix: "session:".to_owned(),
            clock: Arc::new(SystemClock),
            sealing: None,
            operation_timeout: Duration::from_secs(1),
            connections: 1,
            revalidate_idle_after: Duration::from_secs(10),
            identity_index_margin: Duration::from_secs(24 * 60 * 60),
        }
    }

    /// Sets the prefix of every key the store reads or writes (default
    /// `session:`). It must be non-empty and free of `{` and `}`, which
    /// would change the Redis Cluster hash tag.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the clock that decides expiry (default the system clock). Give it
    /// the same clock as the `SessionConfig`. Redis itself removes keys at
    /// their deadline by its own clock, so in production this must be the
    /// system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Seals every stored value with AES-256-GCM under the configuration's
    /// key ring (encryption at rest), and uses the configuration's clock.
    /// Off by default. Every node sharing the store must use the same
    /// setting: a store with sealing on rejects plain values, and the reverse.
    pub fn encrypt_with(mut self, config: &SessionConfig) -> Self {
        self.clock = config.shared_clock();
        self.sealing = Some(config.clone());
        self
    }

    /// Takes the configuration's clock, and seals stored values when the
    /// configuration asks for encryption at rest, which the `production`,
    /// `high_security` and `clustered` presets do (see
    /// `SessionConfigBuilder::encrypt_at_rest`).
    pub fn with_config(mut self, config: &SessionConfig) -> Self {
        self.clock = config.shared_clock();
        if config.encrypt_at_rest() {
            self.sealing = Some(config.clone());
        }
        self
    }

    /// Sets the time limit of one operation, connection checkout included
    /// (default 1 s). A slower operation fails with [`StoreError::Timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets how many connections the store keeps checked out of the pool
    /// and spreads operations over (default 1, at least 1, at most the
    /// pool's maximum size). One multiplexed connection carries concurrent
    /// requests; more help when large values would queue behind each other.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Sets how long a held connection may stay idle before it is checked
    /// with a `PING` again (default 10 s). Keep it below the server's
    /// `timeout` setting and below any idle timeout of the network path.
    pub fn revalidate_idle_after(mut self, idle: Duration) -> Self {
        self.revalidate_idle_after = idle;
        self
    }

    /// Sets how far past a session's expiry its identity index entry is kept
    /// (default 24 hours). A larger margin makes index upkeep rarer on
    /// sliding sessions; empty index sets vanish by themselves.
    pub fn identity_index_margin(mut self, margin: Duration) -> Self {
        self.identity_index_margin = margin;
        self
    }

    /// Builds the store. No connection is opened until the first operation;
    /// call [`RedisStore::ping`] to check the server at start-up.
    ///
    /// # Errors
    ///
    /// [`RedisConfigError`] for an invalid URL or key prefix, or a pool
    /// that cannot be built.
    pub fn build(self) -> Result<RedisStore, RedisConfigError> {
        validate_prefix(&self.key_prefix)?;

        let timeout = self.operation_timeout;
        let pool_size = self.connections.max(1) * 2;
        let pool = match self.source {
            Source::Pool(pool) => Pool::Standalone(pool),
            Source::ClusterPool(pool) => Pool::Cluster(pool),
            Source::Url(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let manager = deadpool_redis::Manager::new_with_config(url.as_str(), config)
                    .map_err(|error| RedisConfigError::InvalidUrl {
                        message: error.to_string(),
                    })?;
                let pool = deadpool_redis::Pool::builder(manager)
                    .max_size(pool_size)
                    .wait_timeout(Some(timeout))
                    .create_timeout(Some(timeout))
                    .recycle_timeout(Some(timeout))
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(|error| RedisConfigError::Pool {
                        message: error.to_string(),
                    })?;
                Pool::Standalone(pool)
            }
            Source::ClusterUrls(urls) => {
                let mut pool_config = deadpool_redis::PoolConfig::new(pool_size);
                pool_config.timeouts.wait = Some(timeout);
                pool_config.timeouts.create = Some(timeout);
                pool_config.timeouts.recycle = Some(timeout);
                let mut config = deadpool_redis::cluster::Config::from_urls(urls);
                config.pool = Some(pool_config);
                let pool = config.create_pool(Some(Runtime::Tokio1)).map_err(|error| {
                    RedisConfigError::InvalidUrl {
                        message: error.to_string(),
                    }
                })?;
                Pool::Cluster(pool)
            }
        };

        Ok(RedisStore {
            inner: Arc::new(Inner {
                connections: Connections::new(pool, self.connections, self.revalidate_idle_after),
                key_prefix: self.key_prefix,
                clock: self.clock,
                sealing: self.sealing,
                operation_timeout: timeout,
                identity_index_margin: self.identity_index_margin,
            }),
        })
    }
}

fn validate_prefix(prefix: &str) -> Result<(), RedisConfigError> {
    let reason = if prefix.is_empty() {
        "it must not be empty, so that session keys stay apart from the application's keys"
    } else if prefix.contains(['{', '}']) {
        "it must not contain `{` or `}`, because the store puts a Redis Cluster hash tag \
         after it and a brace in the prefix would send every key to one slot"
    } else {
        return Ok(());
    };
    Err(RedisConfigError::InvalidKeyPrefix {
        prefix: prefix.to_owned(),
        reason,
    })
}

/// A [`SessionStore`] on Redis or Redis Cluster.
///
/// - `create` is insert-if-absent (`SET NX`) with the deadline as `PXAT`.
/// - `save` and `touch` are compare-and-set on the version in one Lua
///   script, so a save after a delete never brings the session back.
/// - Expiry is checked against the store's clock on every read and write,
///   and Redis removes each key at its deadline.
/// - A per-identity index (a set) serves `list_by_identity` and
///   `delete_by_identity` without `SCAN` or `KEYS`.
/// - With [`RedisStoreBuilder::encrypt_with`], values are sealed with
///   AES-256-GCM, bound to their key.
///
/// Needs Redis 7.0 or later. Cloning is cheap and shares the connections.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use session_core::RedisStore;
///
/// let store = RedisStore::from_url("redis://127.0.0.1:6379/0")
///     .key_prefix("myapp:session:")
///     .operation_timeout(Duration::from_millis(500))
///     .build()?;
/// store.ping().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Connections,
    key_prefix: String,
    clock: Arc<dyn Clock>,
    sealing: Option<SessionConfig>,
    operation_timeout: Duration,
    identity_index_margin: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("RedisStore")
            .field("key_prefix", &inner.key_prefix)
            .field("cluster", &inner.connections.is_cluster())
            .field("connections", &inner.connections.held_count())
            .field("sealed", &inner.sealing.is_some())
            .field("operation_timeout", &inner.operation_timeout)
            .field("identity_index_margin", &inner.identity_index_margin)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Starts a builder for a standalone Redis at `url`, such as
    /// `redis://user:password@127.0.0.1:6379/2`. The store creates its own
    /// pool.
    ///
    /// NOTE: this crate does not enable the TLS features of the redis crate,
    /// so `build` rejects `rediss://` URLs unless the application enables one
    /// itself (Cargo shares a crate's features among all its users). TLS is
    /// not tested here.
    pub fn from_url(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Url(url.into()))
    }

    /// Starts a builder on an existing deadpool-redis pool. The store keeps
    /// a few of its connections checked out (see
    /// [`RedisStoreBuilder::connections`]).
    pub fn from_pool(pool: deadpool_redis::Pool) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Pool(pool))
    }

    /// Starts a builder for a Redis Cluster reached through any of `urls`.
    pub fn cluster_from_urls<I, U>(urls: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        RedisStoreBuilder::new(Source::ClusterUrls(
            urls.into_iter().map(Into::into).collect(),
        ))
    }

    /// Starts a builder on an existing deadpool-redis cluster pool.
    pub fn from_cluster_pool(pool: deadpool_redis::cluster::Pool) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::ClusterPool(pool))
    }

    /// Returns the key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// Sends a `PING`, to check the server at start-up or in a health check.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the server cannot be reached in time.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", true, |mut connection| async move {
            let reply: String = redis::cmd("PING").query_async(&mut connection).await?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(Failure::Reply("PING did not return PONG"))
            }
        })
        .await
    }

    /// Returns the store's clock, for the clustered store's expiry checks.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Returns the time limit of one operation.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.inner.operation_timeout
    }

    /// Sends `message` to the pub/sub `channel`, for the clustered store's
    /// invalidations: one `PUBLISH` on standalone Redis, one `SPUBLISH` on
    /// Redis Cluster, which the cluster client sends to the master that owns
    /// the channel's hash slot. Publishing twice is harmless, so the
    /// operation counts as idempotent.
    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        self.run("publish", true, |mut connection| async move {
            let command = if connection.is_cluster() {
                "SPUBLISH"
            } else {
                "PUBLISH"
            };
            let _receivers: i64 = redis::cmd(command)
                .arg(channel)
                .arg(message)
                .query_async(&mut connection)
                .await?;
            Ok(())
        })
        .await
    }

    fn session_key(&self, id: &SessionId) -> String {
        format!("{}{{{}}}", self.inner.key_prefix, id.encode())
    }

    fn index_key(&self, identity_digest: &str) -> String {
        format!("{}identity:{{{identity_digest}}}", self.inner.key_prefix)
    }

    fn keys(&self) -> Option<&KeyRing> {
        self.inner.sealing.as_ref().map(SessionConfig::keys)
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Returns when the identity index entry of a session expiring at
    /// `expires_at` may expire, in Unix ms; `None` means never.
    fn index_until(&self, expires_at: Option<OffsetDateTime>) -> Option<i64> {
        let (millis, _) = value::split_millis(expires_at?);
        let margin =
            i64::try_from(self.inner.identity_index_margin.as_millis()).unwrap_or(i64::MAX);
        Some(millis.saturating_add(margin))
    }

    /// Runs `work` on a held connection within the operation timeout.
    ///
    /// A connection error or timeout discards the held connections. When the
    /// failed connection had been held from an earlier operation and
    /// `idempotent` is true, the work runs once more on a new connection,
    /// because the server may have closed the idle connection before the
    /// request was sent.
    async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        idempotent: bool,
        work: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let connections = &self.inner.connections;
        let attempt = async {
            let lease = connections.acquire().await?;
            let failure = match work(lease.connection).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !(failure.breaks_connection() && idempotent && lease.reused) {
                return Err(failure);
            }

            tracing::debug!(
                operation,
                "held Redis connection failed; retrying on a new one"
            );
            connections.discard_all().await;
            let lease = connections.acquire().await?;
            work(lease.connection).await
        };

        let failure = match tokio::time::timeout(self.inner.operation_timeout, attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::TimedOut,
        };
        if failure.breaks_connection() {
            connections.discard_all().await;
        }
        if let Failure::Malformed(malformed) = &failure {
            tracing::warn!(operation, reason = ?malformed, "invalid value under a Redis session key");
        }
        Err(failure.into_store_error(operation, self.inner.operation_timeout))
    }

    /// Adds `id` to the index of `add`, removes it from the index of
    /// `remove`, on the same connection.
    async fn update_index(
        &self,
        connection: &mut Connection,
        id: &str,
        remove: Option<&str>,
        add: Option<(&str, Option<i64>)>,
    ) -> Result<(), Failure> {
        let remove_key = remove.map(|digest| self.index_key(digest));
        let add_key = add.map(|(digest, until)| (self.index_key(digest), until_arg(until)));
        if remove_key.is_none() && add_key.is_none() {
            return Ok(());
        }

        if !connection.is_cluster() {
            let mut pipeline = redis::pipe();
            if let Some(key) = &remove_key {
                pipeline.cmd("SREM").arg(key).arg(id).ignore();
            }
            if let Some((key, until)) = &add_key {
                pipeline
                    .cmd("EVAL")
                    .arg(scripts::INDEX_ADD_SOURCE)
                    .arg(1)
                    .arg(key)
                    .arg(id)
                    .arg(until)
                    .ignore();
            }
            let () = pipeline.query_async(connection).await?;
            return Ok(());
        }

        // On a cluster the two index keys are on different slots.
        if let Some(key) = &remove_key {
            let _: i64 = redis::cmd("SREM")
                .arg(key)
                .arg(id)
                .query_async(connection)
                .await?;
        }
        if let Some((key, until)) = &add_key {
            let _: i64 = scripts::INDEX_ADD
                .key(key)
                .arg(id)
                .arg(until)
                .invoke_async(connection)
                .await?;
        }
        Ok(())
    }

    /// Reads the headers of the sessions `ids`, in order; an empty vector
    /// stands for a missing key.
    async fn read_headers(
        &self,
        connection: &mut Connection,
        ids: &[SessionId],
    ) -> Result<Vec<Vec<u8>>, Failure> {
        let last = HEADER_LEN as isize - 1;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if !connection.is_cluster() {
            let mut pipeline = redis::pipe();
            for id in ids {
                pipeline
                    .cmd("GETRANGE")
                    .arg(self.session_key(id))
                    .arg(0)
                    .arg(last);
            }
            return Ok(pipeline.query_async(connection).await?);
        }

        // Session keys are on different slots: one request each, in parallel.
        let reads = ids.iter().map(|id| {
            let mut connection = connection.clone();
            let key = self.session_key(id);
            async move {
                redis::cmd("GETRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(last)
                    .query_async::<Vec<u8>>(&mut connection)
                    .await
            }
        });
        let mut headers = Vec::with_capacity(ids.len());
        for header in join_all(reads).await {
            headers.push(header?);
        }
        Ok(headers)
    }
}

fn is_expired(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    expires_at.is_some_and(|deadline| now >= deadline)
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    value::split_millis(at).0
}

/// Formats an optional Unix ms deadline as a script argument: `''` for none.
fn until_arg(until: Option<i64>) -> String {
    until.map(|ms| ms.to_string()).unwrap_or_default()
}

fn version_arg(version: u64) -> String {
    format!("{version:020}")
}

/// Reply of the save and touch scripts.
fn parse_write_reply(
    reply: (String, String, i64),
) -> Result<(SaveOutcome, Option<String>, bool), Failure> {
    let (status, digest, upkeep) = reply;
    let outcome = match status.as_str() {
        "saved" => SaveOutcome::Saved,
        "conflict" => SaveOutcome::Conflict,
        "missing" => SaveOutcome::Missing,
        "malformed" => return Err(Failure::Malformed(value::Malformed::Header)),
        _ => return Err(Failure::Reply("unknown status from the write script")),
    };
    Ok((outcome, digest_arg(digest), upkeep == 1))
}

/// Converts a digest field returned by a script; dashes or empty mean none.
fn digest_arg(digest: String) -> Option<String> {
    (!digest.is_empty() && !digest.starts_with('-')).then_some(digest)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        let key = self.session_key(id);
        let bytes: Option<Vec<u8>> = self
            .run("load", true, |mut connection| {
                let key = &key;
                async move {
                    Ok(redis::cmd("GET")
                        .arg(key)
                        .query_async(&mut connection)
                        .await?)
                }
            })
            .await?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };

        let decoded = value::parse_header(&bytes).and_then(|header: Header| {
            if is_expired(header.expires_at, self.now()) {
                return Ok(None);
            }
            value::decode(id, &bytes, header, self.keys(), &key).map(Some)
        });
        decoded.map_err(|malformed| {
            tracing::warn!(reason = ?malformed, "invalid value under a Redis session key");
            malformed.into_error()
        })
    }

    async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError> {
        if is_expired(session.expires_at, self.now()) {
            return Ok(CreateOutcome::Created);
        }
        let key = self.session_key(&session.id);
        let id = session.id.encode();
        let index_until = self.index_until(session.expires_at);
        let bytes = value::encode(session, index_until, self.keys(), &key);
        let digest = session
            .identity
            .as_deref()
            .map(|identity| value::identity_digest(self.keys(), identity));

        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&bytes).arg("NX");
        if let Some(expires_at) = session.expires_at {
            set.arg("PXAT").arg(unix_ms(expires_at));
        }

        self.run("create", false, |mut connection| {
            let (set, digest, id) = (&set, &digest, &id);
            async move {
                let Some(digest) = digest else {
                    let reply: Option<String> = set.query_async(&mut connection).await?;
                    return Ok(created(reply));
                };

                if connection.is_cluster() {
                    let reply: Option<String> = set.query_async(&mut connection).await?;
                    let outcome = created(reply);
                    if outcome == CreateOutcome::Created {
                        self.update_index(&mut connection, id, None, Some((digest, index_until)))
                            .await?;
                    }
                    return Ok(outcome);
                }

                // One round trip: the set command, then the index update. An
                // index entry added for a taken id is dropped by the next
                // listing, because the stored identity differs or the entry
                // is the live session's own.
                let mut pipeline = redis::pipe();
                pipeline.add_command(set.clone());
                pipeline
                    .cmd("EVAL")
                    .arg(scripts::INDEX_ADD_SOURCE)
                    .arg(1)
                    .arg(self.index_key(digest))
                    .arg(id)
                    .arg(until_arg(index_until))
                    .ignore();
                let (reply,): (Option<String>,) = pipeline.query_async(&mut connection).await?;
                Ok(created(reply))
            }
        })
        .await
    }

    async fn save(
        &self,
        session: &StoredSession,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let key = self.session_key(&session.id);
        let id = session.id.encode();
        let index_until = self.index_until(session.expires_at);
        let bytes = value::encode(session, index_until, self.keys(), &key);
        let digest = session
            .identity
            .as_deref()
            .map(|identity| value::identity_digest(self.keys(), identity));
        let now_ms = unix_ms(self.now());
        let expires_arg = until_arg(session.expires_at.map(unix_ms));

        self.run("save", false, |mut connection| {
            let (key, id, bytes, digest, expires_arg) = (&key, &id, &bytes, &digest, &expires_arg);
            async move {
                let reply = scripts::SAVE
                    .key(key)
                    .arg(version_arg(expected_version))
                    .arg(now_ms)
                    .arg(bytes)
                    .arg(expires_arg)
                    .invoke_async(&mut connection)
                    .await?;
                let (outcome, previous, upkeep) = parse_write_reply(reply)?;
                if upkeep {
                    let remove = previous
                        .as_deref()
                        .filter(|previous| Some(*previous) != digest.as_deref());
                    let add = digest.as_deref().map(|digest| (digest, index_until));
                    self.update_index(&mut connection, id, remove, add).await?;
                }
                Ok(outcome)
            }
        })
        .await
    }

    async fn touch(
        &self,
        id: &SessionId,
        expires_at: Option<OffsetDateTime>,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let key = self.session_key(id);
        let id = id.encode();
        let index_until = self.index_until(expires_at);
        let expiry_fields = value::expiry_fields(expires_at);
        let index_field = value::index_until_field(index_until);
        let now_ms = unix_ms(self.now());
        let expires_arg = until_arg(expires_at.map(unix_ms));

        self.run("touch", true, |mut connection| {
            let (key, id, expiry_fields, index_field, expires_arg) =
                (&key, &id, &expiry_fields, &index_field, &expires_arg);
            async move {
                let reply = scripts::TOUCH
                    .key(key)
                    .arg(version_arg(expected_version))
                    .arg(now_ms)
                    .arg(expiry_fields)
                    .arg(expires_arg)
                    .arg(index_field)
                    .invoke_async(&mut connection)
                    .await?;
                let (outcome, digest, upkeep) = parse_write_reply(reply)?;
                if let (true, Some(digest)) = (upkeep, digest.as_deref()) {
                    self.update_index(&mut connection, id, None, Some((digest, index_until)))
                        .await?;
                }
                Ok(outcome)
            }
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let key = self.session_key(id);
        let id = id.encode();
        let now_ms = unix_ms(self.now());

        self.run("delete", true, |mut connection| {
            let (key, id) = (&key, &id);
            async move {
                let (status, digest): (String, String) = scripts::DELETE
                    .key(key)
                    .arg(now_ms)
                    .invoke_async(&mut connection)
                    .await?;
                let deleted = match status.as_str() {
                    "deleted" => true,
                    "expired" | "missing" => false,
                    "malformed" => return Err(Failure::Malformed(value::Malformed::Header)),
                    _ => return Err(Failure::Reply("unknown status from the delete script")),
                };
                if let Some(digest) = digest_arg(digest) {
                    self.update_index(&mut connection, id, Some(&digest), None)
                        .await?;
                }
                Ok(deleted)
            }
        })
        .await
    }

    async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError> {
        let digest = value::identity_digest(self.keys(), identity);
        let index_key = self.index_key(&digest);
        let now = self.now();

        self.run("list_by_identity", true, |mut connection| {
            let (index_key, digest) = (&index_key, &digest);
            async move {
                let members: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(index_key)
                    .query_async(&mut connection)
                    .await?;

                let mut stale = Vec::new();
                let mut ids = Vec::with_capacity(members.len());
                for member in members {
                    match SessionId::parse(&member) {
                        Some(id) => ids.push(id),
                        None => stale.push(member),
                    }
                }

                let headers = self.read_headers(&mut connection, &ids).await?;
                let mut live = Vec::with_capacity(ids.len());
                for (id, header) in ids.into_iter().zip(headers) {
                    match value::parse_header(&header) {
                        Ok(header) if header.identity_digest.as_ref() == Some(digest) => {
                            if !is_expired(header.expires_at, now) {
                                live.push(id);
                            }
                        }
                        // Gone, signed out or in as someone else, or not a
                        // session value: not a member any more.
                        _ => stale.push(id.encode()),
                    }
                }

                if !stale.is_empty() {
                    let _: i64 = redis::cmd("SREM")
                        .arg(index_key)
                        .arg(&stale)
                        .query_async(&mut connection)
                        .await?;
                }
                Ok(live)
            }
        })
        .await
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

fn created(reply: Option<String>) -> CreateOutcome {
    match reply {
        Some(_) => CreateOutcome::Created,
        None => CreateOutcome::IdTaken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"redis store config test secret!!";

    fn debug_of(config: &SessionConfig) -> String {
        let store = RedisStore::from_url("redis://127.0.0.1:6379")
            .with_config(config)
            .build()
            .expect("a valid URL builds without connecting");
        format!("{store:?}")
    }

    #[tokio::test]
    async fn production_presets_seal_values_at_rest() {
        for config in [
            SessionConfig::production(SECRET).build().unwrap(),
            SessionConfig::high_security(SECRET).build().unwrap(),
            SessionConfig::clustered(SECRET).build().unwrap(),
        ] {
            assert!(debug_of(&config).contains("sealed: true"), "{config:?}");
        }
    }

    #[tokio::test]
    async fn development_preset_stores_plain_values() {
        let config = SessionConfig::development(SECRET).build().unwrap();
        assert!(debug_of(&config).contains("sealed: false"));
        let opted_in = SessionConfig::development(SECRET)
            .encrypt_at_rest(true)
            .build()
            .unwrap();
        assert!(debug_of(&opted_in).contains("sealed: true"));
    }
}
