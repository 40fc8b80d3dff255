//! The subscriber task of a clustered store: it applies other nodes'
//! invalidations, confirms with fences that it is up to date, and
//! resubscribes with backoff after losing its connection.
//!
//! # Fences
//!
//! Redis runs commands one at a time and writes everything for one client
//! connection in order. So when the reply to a `PING` sent on the
//! subscriber connection at instant `t` arrives, every message whose
//! `PUBLISH` finished before `t` has already arrived on that connection. The redis crate queues each
//! message before it completes a later `PING`, so the task applies the
//! queued messages, then records `t` as the instant up to which the cache
//! is known to be current. The cache serves only while that instant is
//! within `max_staleness` of now.
//!
//! This order holds on one Redis server. On Redis Cluster a `PUBLISH` on
//! another master reaches this connection through the cluster bus, with no
//! such order, which is why the clustered store supports standalone Redis
//! only.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::{PubSubSink, PubSubStream};
use deadpool_redis::redis::{self, Msg};
use futures_util::{FutureExt, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use super::cache::LocalCache;
use super::message;

/// The sender that is notified once every invalidation published before
/// the request was applied.
pub(super) type FenceWaiter = oneshot::Sender<()>;

/// The maximum number of queued messages applied after one fence reply. A
/// flood that never lets the queue empty leaves the fence unconfirmed, so
/// the cache stops serving instead of claiming to be current.
const MAX_DRAIN: usize = 100_000;

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Everything the subscriber task owns.
pub(super) struct Subscriber {
    pub(super) client: redis::Client,
    pub(super) channel: String,
    pub(super) node_id: String,
    pub(super) cache: Arc<LocalCache>,
    /// How often a fence is sent when no read requests one.
    pub(super) heartbeat: Duration,
    /// How long a fence may take before the connection counts as lost.
    pub(super) fence_timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) fences: mpsc::UnboundedReceiver<FenceWaiter>,
    pub(super) stop: watch::Receiver<bool>,
    /// Notified once, after the first subscription.
    pub(super) ready: Option<oneshot::Sender<()>>,
}

/// The reason a subscription ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// A `PING` in flight on the subscriber connection.
struct Fence {
    reply: Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
    sent_at: Instant,
    waiters: Vec<FenceWaiter>,
}

impl Subscriber {
    /// Runs until the store shuts down or is dropped.
    pub(super) async fn run(mut self) {
        let mut retry_delay = FIRST_RETRY_DELAY;
        loop {
            let sent_at = Instant::now();
            let connect =
                tokio::time::timeout(self.connect_timeout, subscribe(&self.client, &self.channel));
            let connected = tokio::select! {
                () = stopped(&mut self.stop) => break,
                connected = connect => connected,
            };

            let failure = match connected {
                Ok(Ok((sink, stream))) => {
                    retry_delay = FIRST_RETRY_DELAY;
                    match self.listen(sent_at, sink, stream).await {
                        Ended::Stopped => break,
                        Ended::Lost(reason) => {
                            self.cache.unsubscribed();
                            reason
                        }
                    }
                }
                Ok(Err(error)) => format!("subscribing failed: {error}"),
                Err(_) => format!(
                    "subscribing timed out after {} ms",
                    self.connect_timeout.as_millis()
                ),
            };

            let delay = jittered(retry_delay);
            retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
            tracing::warn!(
                channel = %self.channel,
                error = %failure,
                retry_in_ms = delay.as_millis() as u64,
                "session invalidation subscriber is disconnected; the local cache is off until it resubscribes"
            );
            tokio::select! {
                () = stopped(&mut self.stop) => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        self.cache.unsubscribed();
        tracing::debug!(channel = %self.channel, "session invalidation subscriber stopped");
    }

    /// Serves one subscription until it ends. `sent_at` is when the
    /// `SUBSCRIBE` was sent: every message published after it arrives.
    async fn listen(
        &mut self,
        sent_at: Instant,
        sink: PubSubSink,
        mut stream: PubSubStream,
    ) -> Ended {
        // Messages published before the subscription were missed, so the
        // cache starts empty, and it is current as of the subscription.
        self.cache.subscribed(sent_at);
        let subscriptions = self.cache.counters().subscriptions.load(Ordering::Relaxed);
        if subscriptions > 1 {
            metrics::counter!("session_cache_subscriber_reconnects_total").increment(1);
            tracing::info!(channel = %self.channel, "session invalidation subscriber resubscribed; the local cache was cleared");
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        // The clear satisfies every waiter that registered before it.
        while let Ok(waiter) = self.fences.try_recv() {
            let _ = waiter.send(());
        }

        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut fence: Option<Fence> = None;
        let mut waiting: Vec<FenceWaiter> = Vec::new();

        loop {
            tokio::select! {
                () = stopped(&mut self.stop) => return Ended::Stopped,
                message = stream.next() => match message {
                    Some(message) => self.apply(&message),
                    None => return Ended::Lost("the subscriber connection closed".to_owned()),
                },
                reply = wait(&mut fence), if fence.is_some() => {
                    let done = fence.take().expect("the branch runs only with a fence");
                    if let Err(reason) = reply {
                        return Ended::Lost(reason);
                    }
                    match self.drain(&mut stream) {
                        Drained::Empty => {
                            self.cache.confirm(done.sent_at);
                            for waiter in done.waiters {
                                let _ = waiter.send(());
                            }
                        }
                        Drained::Flooded => waiting.extend(done.waiters),
                        Drained::Closed => {
                            return Ended::Lost("the subscriber connection closed".to_owned())
                        }
                    }
                    if !waiting.is_empty() {
                        fence = Some(self.send_fence(&sink, &mut waiting));
                    }
                }
                request = self.fences.recv() => match request {
                    Some(waiter) => {
                        waiting.push(waiter);
                        if fence.is_none() {
                            fence = Some(self.send_fence(&sink, &mut waiting));
                        }
                    }
                    None => return Ended::Stopped,
                },
                _ = heartbeat.tick() => {
                    if fence.is_none() {
                        fence = Some(self.send_fence(&sink, &mut waiting));
                    }
                }
            }
        }
    }

    /// Applies the messages already queued on the connection.
    fn drain(&self, stream: &mut PubSubStream) -> Drained {
        for _ in 0..MAX_DRAIN {
            match stream.next().now_or_never() {
                Some(Some(message)) => self.apply(&message),
                Some(None) => return Drained::Closed,
                None => return Drained::Empty,
            }
        }
        Drained::Flooded
    }

    /// Sends a `PING` on the subscriber connection for the waiters so far.
    fn send_fence(&self, sink: &PubSubSink, waiting: &mut Vec<FenceWaiter>) -> Fence {
        let mut sink = sink.clone();
        let timeout = self.fence_timeout;
        // Taken before the PING is sent, so the fence never claims more
        // than it proves.
        let sent_at = Instant::now();
        let reply = async move {
            match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(format!("PING on the subscriber connection failed: {error}")),
                Err(_) => Err(format!(
                    "PING on the subscriber connection timed out after {} ms",
                    timeout.as_millis()
                )),
            }
        };
        Fence {
            reply: Box::pin(reply),
            sent_at,
            waiters: std::mem::take(waiting),
        }
    }

    fn apply(&self, message: &Msg) {
        match message::parse(message.get_payload_bytes()) {
            Ok(invalidation) if invalidation.node_id == self.node_id => {}
            Ok(invalidation) => self
                .cache
                .apply_remote(&invalidation.id, invalidation.floor()),
            Err(reason) => {
                let rejected = self
                    .cache
                    .counters()
                    .rejected_messages
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                metrics::counter!("session_cache_messages_rejected_total").increment(1);
                // Logged at the 1st, 2nd, 4th, 8th ... rejection, so that a
                // flood of junk cannot flood the log.
                if rejected.is_power_of_two() {
                    tracing::warn!(
                        channel = %self.channel,
                        reason = reason.as_str(),
                        rejected_total = rejected,
                        "ignored a message on the session invalidation channel that does not parse"
                    );
                }
            }
        }
    }
}

/// Opens a pub/sub connection and subscribes it to `channel`.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub.split())
}

enum Drained {
    Empty,
    Flooded,
    Closed,
}

async fn wait(fence: &mut Option<Fence>) -> Result<(), String> {
    match fence {
        Some(fence) => fence.reply.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Completes when the store requests a stop or is dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Returns a delay between half and all of `delay`, so that nodes that
/// lost Redis together do not reconnect in lockstep.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::rng().random_range(0.5..=1.0))
}
