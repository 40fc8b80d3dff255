//! The subscriber's connection to the invalidation channel.
//!
//! - Standalone Redis: `SUBSCRIBE` on a RESP2 pub/sub connection.
//! - Redis Cluster: `SSUBSCRIBE` (sharded pub/sub, Redis 7.0 or later) on a
//!   RESP3 connection to the master that owns the channel's hash slot. Any
//!   node's `CLUSTER SLOTS` names that master, and a `MOVED` reply corrects
//!   a node whose view was out of date.
//!
//! Either way the subscriber sends its fences (`PING`) on the same
//! connection as the subscription, so one server orders the messages and
//! the fence replies.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    Msg, ProtocolVersion, PushInfo, PushKind, RedisResult, ServerErrorKind,
};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc::{self, error::TryRecvError, UnboundedReceiver};

/// The maximum number of hops from one starting node to the master of the
/// channel's slot. A stable cluster needs one. More mean that the topology
/// is changing, so the subscriber retries later with backoff.
const MAX_REDIRECTIONS: usize = 5;

/// The server or cluster that the subscriber subscribes on.
pub(super) enum Target {
    /// A standalone Redis: plain pub/sub.
    Standalone(redis::Client),
    /// A Redis Cluster: sharded pub/sub on the master that owns the
    /// channel's slot.
    Cluster(ClusterTarget),
}

impl Target {
    /// Returns the target for the standalone Redis at `url`.
    pub(super) fn standalone(url: &str) -> RedisResult<Self> {
        redis::Client::open(url).map(Target::Standalone)
    }

    /// Returns the target for the Redis Cluster reached through any of
    /// `urls`, which are tried in turn.
    pub(super) fn cluster(urls: &[String]) -> RedisResult<Self> {
        let mut seeds = Vec::with_capacity(urls.len());
        for url in urls {
            let info = url.as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            seeds.push(info.set_redis_settings(settings));
        }
        if seeds.is_empty() {
            return Err(redis::RedisError::from((
                ErrorKind::InvalidClientConfig,
                "no Redis Cluster URL given",
            )));
        }
        Ok(Target::Cluster(ClusterTarget {
            seeds,
            next_seed: 0,
        }))
    }

    /// Opens a connection and subscribes it to `channel`. Returns the
    /// subscription and the instant the successful subscribe command was
    /// sent: every message published after that instant arrives on it.
    pub(super) async fn subscribe(
        &mut self,
        channel: &str,
        connect_timeout: Duration,
    ) -> RedisResult<(Subscription, Instant)> {
        match self {
            Target::Standalone(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                let sent_at = Instant::now();
                pubsub.subscribe(channel).await?;
                let (sink, stream) = pubsub.split();
                Ok((Subscription::Plain { sink, stream }, sent_at))
            }
            Target::Cluster(cluster) => cluster.subscribe(channel, connect_timeout).await,
        }
    }
}

/// The nodes a cluster subscription starts from.
pub(super) struct ClusterTarget {
    /// The configured nodes, with RESP3 set.
    seeds: Vec<ConnectionInfo>,
    /// The seed the next attempt starts from: the one that worked last.
    /// Every attempt moves it on first, so that a node that hangs until the
    /// subscriber's timeout cancels the attempt does not block every retry.
    next_seed: usize,
}

impl ClusterTarget {
    async fn subscribe(
        &mut self,
        channel: &str,
        connect_timeout: Duration,
    ) -> RedisResult<(Subscription, Instant)> {
        let mut last_error = None;
        for _ in 0..self.seeds.len() {
            let index = self.next_seed;
            self.next_seed = (index + 1) % self.seeds.len();
            let seed = self.seeds[index].clone();
            match subscribe_following_redirections(seed, channel, connect_timeout).await {
                Ok(subscribed) => {
                    self.next_seed = index;
                    return Ok(subscribed);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("a cluster target has at least one seed"))
    }
}

/// Subscribes on the master that owns the channel's slot, starting from
/// `node`: it goes to the master named by the node's `CLUSTER SLOTS`, and
/// follows a `MOVED` reply to `SSUBSCRIBE` when that view was out of date.
async fn subscribe_following_redirections(
    mut node: ConnectionInfo,
    channel: &str,
    connect_timeout: Duration,
) -> RedisResult<(Subscription, Instant)> {
    let mut redirections = 0;
    loop {
        let (pushes_sender, pushes) = mpsc::unbounded_channel();
        // No response timeout: the subscriber bounds the subscription and
        // each fence with its own timeouts.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None)
            .set_push_sender(pushes_sender);
        let client = redis::Client::open(node.clone())?;
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;

        // A replica accepts SSUBSCRIBE for its master's slots, but it
        // receives the messages through replication, after the master
        // replied to SPUBLISH, so its PING replies order nothing.
        let (host, port) = match locate_owner(&mut connection, channel).await? {
            Location::Elsewhere { host, port } => (host, port),
            Location::Here => {
                // The redis crate offers SSUBSCRIBE only on its cluster
                // connection, which resubscribes by itself after a topology
                // change and so would hide the loss. On a RESP3 connection
                // the one confirmation of a one-channel SSUBSCRIBE is the
                // command's reply.
                let sent_at = Instant::now();
                let reply: RedisResult<redis::Value> = redis::cmd("SSUBSCRIBE")
                    .arg(channel)
                    .query_async(&mut connection)
                    .await;
                match reply {
                    Ok(_) => {
                        let subscription = Subscription::Sharded { connection, pushes };
                        return Ok((subscription, sent_at));
                    }
                    Err(error) => match moved_to(&error) {
                        Some(owner) => owner,
                        None => return Err(error),
                    },
                }
            }
        };
        if redirections == MAX_REDIRECTIONS {
            return Err(redis::RedisError::from((
                ErrorKind::Server(ServerErrorKind::TryAgain),
                "the owner of the invalidation channel's slot kept changing",
            )));
        }
        redirections += 1;
        node = redirected(&node, host, port);
    }
}

/// The master of the channel's slot, according to one node's `CLUSTER SLOTS`.
enum Location {
    /// The node is that master.
    Here,
    /// Another node is.
    Elsewhere { host: String, port: u16 },
}

/// Asks the node which master owns the channel's slot, in one round trip:
/// `CLUSTER MYID`, `CLUSTER KEYSLOT` and `CLUSTER SLOTS`.
async fn locate_owner(
    connection: &mut MultiplexedConnection,
    channel: &str,
) -> RedisResult<Location> {
    let (my_id, slot, ranges): (String, u16, Vec<Vec<redis::Value>>) = redis::pipe()
        .cmd("CLUSTER")
        .arg("MYID")
        .cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(channel)
        .cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(connection)
        .await?;

    // Each range is [start, end, master, replica...], and each node is
    // [host, port, id, ...].
    for range in &ranges {
        let (Some(start), Some(end), Some(master)) = (range.first(), range.get(1), range.get(2))
        else {
            continue;
        };
        let start: u16 = redis::from_redis_value_ref(start)?;
        let end: u16 = redis::from_redis_value_ref(end)?;
        if !(start..=end).contains(&slot) {
            continue;
        }
        let (host, port, id): (String, u16, String) = match master {
            redis::Value::Array(fields) if fields.len() >= 3 => (
                redis::from_redis_value_ref(&fields[0])?,
                redis::from_redis_value_ref(&fields[1])?,
                redis::from_redis_value_ref(&fields[2])?,
            ),
            _ => break,
        };
        return Ok(if id == my_id {
            Location::Here
        } else {
            Location::Elsewhere { host, port }
        });
    }
    Err(redis::RedisError::from((
        ErrorKind::Server(ServerErrorKind::ClusterDown),
        "CLUSTER SLOTS names no master for the invalidation channel's slot",
    )))
}

/// Returns the node named by a `MOVED` error, whose address is `host:port`.
fn moved_to(error: &redis::RedisError) -> Option<(String, u16)> {
    if error.kind() != ErrorKind::Server(ServerErrorKind::Moved) {
        return None;
    }
    let (address, _slot) = error.redirect_node()?;
    let (host, port) = address.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// Returns the connection settings of `seed` pointed at `host:port`, with the
/// same credentials, protocol and TLS settings.
fn redirected(seed: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let address = match seed.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    seed.clone().set_addr(address)
}

/// A live subscription to the invalidation channel.
pub(super) enum Subscription {
    /// `SUBSCRIBE` on a RESP2 pub/sub connection.
    Plain {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    /// `SSUBSCRIBE` on a RESP3 connection, whose pushes arrive on `pushes`.
    Sharded {
        connection: MultiplexedConnection,
        pushes: UnboundedReceiver<PushInfo>,
    },
}

/// An item the subscription delivered.
pub(super) enum Event {
    /// A message published on the channel.
    Message(Msg),
    /// A message push without a channel and a payload.
    Malformed,
    /// A push that needs no action, such as the subscribe confirmation.
    Ignored,
    /// The subscription ended; the reason is for the log.
    Lost(&'static str),
}

const CLOSED: &str = "the subscriber connection closed";
const SHARD_UNSUBSCRIBED: &str = "the server ended the shard channel subscription, as a cluster node does when the channel's slot moves to another master";

impl Subscription {
    /// Waits for the next event.
    pub(super) async fn next(&mut self) -> Event {
        match self {
            Subscription::Plain { stream, .. } => match stream.next().await {
                Some(message) => Event::Message(message),
                None => Event::Lost(CLOSED),
            },
            Subscription::Sharded { pushes, .. } => match pushes.recv().await {
                Some(push) => classify(push),
                None => Event::Lost(CLOSED),
            },
        }
    }

    /// Returns the next event that has already arrived, if any.
    pub(super) fn try_next(&mut self) -> Option<Event> {
        match self {
            Subscription::Plain { stream, .. } => match stream.next().now_or_never()? {
                Some(message) => Some(Event::Message(message)),
                None => Some(Event::Lost(CLOSED)),
            },
            Subscription::Sharded { pushes, .. } => match pushes.try_recv() {
                Ok(push) => Some(classify(push)),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Event::Lost(CLOSED)),
            },
        }
    }

    /// Returns a future that sends a `PING` on the subscription's
    /// connection and completes with its reply.
    ///
    /// Both connection types pass every message that arrived before the
    /// reply to the subscriber's queue before they complete the `PING`: the
    /// redis crate reads one connection in order and queues each push
    /// without waiting.
    pub(super) fn ping(&self) -> PingReply {
        match self {
            Subscription::Plain { sink, .. } => {
                let mut sink = sink.clone();
                Box::pin(async move { sink.ping::<redis::Value>().await.map(drop) })
            }
            Subscription::Sharded { connection, .. } => {
                let mut connection = connection.clone();
                Box::pin(async move {
                    redis::cmd("PING")
                        .query_async::<redis::Value>(&mut connection)
                        .await
                        .map(drop)
                })
            }
        }
    }
}

/// The reply to a `PING` sent by [`Subscription::ping`].
pub(super) type PingReply = Pin<Box<dyn Future<Output = RedisResult<()>> + Send>>;

fn classify(push: PushInfo) -> Event {
    match push.kind {
        PushKind::SMessage | PushKind::Message => match Msg::from_push_info(push) {
            Some(message) => Event::Message(message),
            None => Event::Malformed,
        },
        PushKind::SUnsubscribe => Event::Lost(SHARD_UNSUBSCRIBED),
        PushKind::Disconnection => Event::Lost(CLOSED),
        _ => Event::Ignored,
    }
}
