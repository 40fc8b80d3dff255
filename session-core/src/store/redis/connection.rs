//! Connections of the Redis store, standalone or Redis Cluster, and the
//! mapping of their failures to [`StoreError`].
//!
//! deadpool-redis checks a pooled connection with a `PING` each time it is
//! taken from the pool, which would double the round trips of every
//! operation. The store therefore keeps a few connections checked out
//! ("held") and sends each operation on a clone of one of them: both the
//! multiplexed standalone connection and the cluster connection accept
//! concurrent requests. A held connection goes back through the pool, and so
//! through the `PING` check, after it has been idle for a while. Every held
//! connection is discarded after a connection error or a timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::cluster::{self, ClusterConnection};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value,
};
use deadpool_redis::PoolError;
use tokio::sync::Mutex;

use super::value::Malformed;
use crate::StoreError;

/// The pool the store draws its connections from.
pub(super) enum Pool {
    Standalone(deadpool_redis::Pool),
    Cluster(cluster::Pool),
}

impl Pool {
    fn max_size(&self) -> usize {
        match self {
            Pool::Standalone(pool) => pool.status().max_size,
            Pool::Cluster(pool) => pool.status().max_size,
        }
    }

    async fn checkout(&self) -> Result<(Pooled, Connection), Failure> {
        match self {
            Pool::Standalone(pool) => {
                let pooled = pool.get().await?;
                let connection = Connection::Standalone(MultiplexedConnection::clone(&pooled));
                Ok((Pooled::Standalone(pooled), connection))
            }
            Pool::Cluster(pool) => {
                let pooled = pool.get().await?;
                let connection = Connection::Cluster(ClusterConnection::clone(&pooled));
                Ok((Pooled::Cluster(pooled), connection))
            }
        }
    }
}

/// A connection checked out of the pool.
enum Pooled {
    Standalone(deadpool_redis::Connection),
    Cluster(cluster::Connection),
}

impl Pooled {
    /// Removes the connection from the pool for good, so that it is closed
    /// instead of being handed out again.
    fn discard(self) {
        match self {
            Pooled::Standalone(pooled) => drop(deadpool_redis::Connection::take(pooled)),
            Pooled::Cluster(pooled) => drop(cluster::Connection::take(pooled)),
        }
    }
}

/// A connection that operations send commands on.
#[derive(Clone)]
pub(super) enum Connection {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connection {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

struct HeldConnection {
    pooled: Pooled,
    connection: Connection,
    last_used: Instant,
}

/// A connection lent to one operation.
pub(super) struct Lease {
    /// True when the connection was already held before this operation, so
    /// it may have been closed by the server while idle.
    pub(super) reused: bool,
    pub(super) connection: Connection,
}

/// The held connections of one store.
pub(super) struct Connections {
    pool: Pool,
    slots: Vec<Mutex<Option<HeldConnection>>>,
    next_slot: AtomicUsize,
    revalidate_after: Duration,
}

impl Connections {
    /// Holds at most `held` connections of `pool`, and never more than the
    /// pool's maximum size.
    pub(super) fn new(pool: Pool, held: usize, revalidate_after: Duration) -> Self {
        let held = held.clamp(1, pool.max_size().max(1));
        Self {
            pool,
            slots: (0..held).map(|_| Mutex::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            revalidate_after,
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.pool, Pool::Cluster(_))
    }

    pub(super) fn held_count(&self) -> usize {
        self.slots.len()
    }

    /// Lends a held connection, checking one out of the pool first when the
    /// slot is empty or its connection has been idle for too long.
    pub(super) async fn acquire(&self) -> Result<Lease, Failure> {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut held = self.slots[slot].lock().await;

        if let Some(current) = held.as_mut() {
            if current.last_used.elapsed() < self.revalidate_after {
                current.last_used = Instant::now();
                return Ok(Lease {
                    reused: true,
                    connection: current.connection.clone(),
                });
            }
        }

        // Returning the idle connection to the pool makes the next checkout
        // check it with a PING, or replace it if the server closed it.
        *held = None;
        let (pooled, connection) = self.pool.checkout().await?;
        *held = Some(HeldConnection {
            pooled,
            connection: connection.clone(),
            last_used: Instant::now(),
        });
        Ok(Lease {
            reused: false,
            connection,
        })
    }

    /// Stops holding every connection, after one of them failed. A server
    /// restart, failover or network fault breaks all of them at once, and a
    /// broken connection is only noticed when a request is sent on it, which
    /// a write must not risk.
    pub(super) async fn discard_all(&self) {
        for slot in &self.slots {
            if let Some(held) = slot.lock().await.take() {
                held.pooled.discard();
            }
        }
    }
}

/// A failed operation, before it becomes a [`StoreError`].
#[derive(Debug)]
pub(super) enum Failure {
    Redis(RedisError),
    Pool(PoolError),
    Malformed(Malformed),
    /// A script or command returned a reply of an unexpected shape.
    Reply(&'static str),
    /// The operation timeout expired.
    TimedOut,
}

impl From<RedisError> for Failure {
    fn from(error: RedisError) -> Self {
        Failure::Redis(error)
    }
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        Failure::Pool(error)
    }
}

impl From<Malformed> for Failure {
    fn from(malformed: Malformed) -> Self {
        Failure::Malformed(malformed)
    }
}

impl Failure {
    /// Returns true when the connection that produced this failure must not
    /// be used again.
    pub(super) fn breaks_connection(&self) -> bool {
        match self {
            Failure::Redis(error) => is_connection_error(error),
            Failure::Pool(PoolError::Backend(error)) => is_connection_error(error),
            Failure::Pool(PoolError::Timeout(_)) | Failure::TimedOut => true,
            _ => false,
        }
    }

    /// Converts the failure into the store's error type.
    pub(super) fn into_store_error(self, operation: &'static str, timeout: Duration) -> StoreError {
        let timed_out = StoreError::Timeout {
            operation,
            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let error = match self {
            Failure::Redis(error) | Failure::Pool(PoolError::Backend(error)) => error,
            Failure::Pool(PoolError::Timeout(_)) | Failure::TimedOut => return timed_out,
            Failure::Pool(PoolError::Closed) => {
                return StoreError::Unavailable {
                    message: format!("{operation}: the Redis connection pool is closed"),
                }
            }
            Failure::Pool(other) => {
                return StoreError::Backend {
                    message: format!("{operation}: Redis connection pool failed: {other}"),
                }
            }
            Failure::Malformed(malformed) => return malformed.into_error(),
            Failure::Reply(what) => {
                return StoreError::Backend {
                    message: format!("{operation}: unexpected reply from Redis: {what}"),
                }
            }
        };

        if error.is_timeout() {
            return timed_out;
        }
        let message = format!("{operation}: {error}");
        if is_connection_error(&error) || is_transient_server_error(&error) {
            StoreError::Unavailable { message }
        } else {
            StoreError::Backend { message }
        }
    }
}

fn is_connection_error(error: &RedisError) -> bool {
    // Wrong credentials or settings are not an outage, so they are Backend
    // errors that no breaker counts.
    if matches!(
        error.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
    ) {
        return false;
    }
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || error.kind() == ErrorKind::ClusterConnectionNotFound
}

/// Server states that pass: loading a dataset, a cluster that is down or
/// resharding, a replica promoted or demoted.
fn is_transient_server_error(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    )
}
