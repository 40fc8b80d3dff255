//! The subscriber task of a clustered store: it applies other nodes'
//! invalidations, confirms with fences that it is up to date, and
//! resubscribes with backoff after losing its subscription.
//!
//! # Fences
//!
//! Redis runs commands one at a time and writes everything for one client
//! connection in order. So when the reply to a `PING` sent on the
//! subscriber connection at instant `t` arrives, every message whose
//! publish finished on that server before `t` has already arrived on that
//! connection. The redis crate queues each message before it completes a
//! later `PING`, so the task applies the queued messages, then records `t`
//! as the instant up to which the cache is known to be current. The cache
//! serves only while that instant is within `max_staleness` of now.
//!
//! This order holds on one server, so every invalidation must go through
//! the server that the subscriber is connected to:
//!
//! - On standalone Redis, nodes `PUBLISH` and the subscriber `SUBSCRIBE`s
//!   on the one server.
//! - On Redis Cluster, a `PUBLISH` on one master reaches subscribers on
//!   other masters through the cluster bus, with no order relative to a
//!   `PING` there. So nodes `SPUBLISH`, which the cluster client routes to
//!   the master that owns the channel's hash slot, and the subscriber
//!   `SSUBSCRIBE`s on a connection to that same master. A master accepts
//!   both only while it owns the slot. A replica accepts `SSUBSCRIBE` too,
//!   but it gets the messages through replication, out of order with the
//!   master's replies, so the subscriber checks with `CLUSTER SLOTS` that
//!   it is on the master.
//!
//! When the slot moves to another master or its master fails over, the
//! old master ends the shard subscription (a `sunsubscribe` push) or the
//! connection drops. The task treats both as a lost subscription: the cache
//! is cleared and stops serving, fences fail, and the task subscribes again
//! on the new owner with backoff.
//!
//! NOTE: `CLUSTER SETSLOT <slot> NODE` is applied to each master
//! separately. While the new owner has it and the old one does not yet,
//! both accept `SPUBLISH` for the slot. A message published on the new
//! owner then misses a subscriber still on the old one, whose fences still
//! succeed. The window lasts until the old owner learns the new
//! configuration and ends the subscription. A failed-over master that
//! still believes it is the master has the same window.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use super::cache::LocalCache;
use super::message;
use super::subscription::{Event, Subscription, Target};

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
    pub(super) target: Target,
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
            let connect = tokio::time::timeout(
                self.connect_timeout,
                self.target.subscribe(&self.channel, self.connect_timeout),
            );
            let connected = tokio::select! {
                () = stopped(&mut self.stop) => break,
                connected = connect => connected,
            };

            let failure = match connected {
                Ok(Ok((subscription, sent_at))) => {
                    retry_delay = FIRST_RETRY_DELAY;
                    match self.listen(sent_at, subscription).await {
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
    /// subscribe command was sent: every message published after it
    /// arrives.
    async fn listen(&mut self, sent_at: Instant, mut subscription: Subscription) -> Ended {
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
                event = subscription.next() => {
                    if let Some(reason) = self.handle(event) {
                        return Ended::Lost(reason.to_owned());
                    }
                }
                reply = wait(&mut fence), if fence.is_some() => {
                    let done = fence.take().expect("the branch runs only with a fence");
                    if let Err(reason) = reply {
                        return Ended::Lost(reason);
                    }
                    match self.drain(&mut subscription) {
                        Drained::Empty => {
                            self.cache.confirm(done.sent_at);
                            for waiter in done.waiters {
                                let _ = waiter.send(());
                            }
                        }
                        Drained::Flooded => waiting.extend(done.waiters),
                        Drained::Lost(reason) => return Ended::Lost(reason.to_owned()),
                    }
                    if !waiting.is_empty() {
                        fence = Some(self.send_fence(&subscription, &mut waiting));
                    }
                }
                request = self.fences.recv() => match request {
                    Some(waiter) => {
                        waiting.push(waiter);
                        if fence.is_none() {
                            fence = Some(self.send_fence(&subscription, &mut waiting));
                        }
                    }
                    None => return Ended::Stopped,
                },
                _ = heartbeat.tick() => {
                    if fence.is_none() {
                        fence = Some(self.send_fence(&subscription, &mut waiting));
                    }
                }
            }
        }
    }

    /// Applies the messages already queued on the connection.
    fn drain(&self, subscription: &mut Subscription) -> Drained {
        for _ in 0..MAX_DRAIN {
            let Some(event) = subscription.try_next() else {
                return Drained::Empty;
            };
            if let Some(reason) = self.handle(event) {
                return Drained::Lost(reason);
            }
        }
        Drained::Flooded
    }

    /// Sends a `PING` on the subscriber connection for the waiters so far.
    fn send_fence(&self, subscription: &Subscription, waiting: &mut Vec<FenceWaiter>) -> Fence {
        let timeout = self.fence_timeout;
        // Taken before the PING is sent, so the fence never claims more
        // than it proves.
        let sent_at = Instant::now();
        let ping = subscription.ping();
        let reply = async move {
            match tokio::time::timeout(timeout, ping).await {
                Ok(Ok(())) => Ok(()),
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

    /// Applies one event. Returns the reason when it ended the subscription.
    fn handle(&self, event: Event) -> Option<&'static str> {
        match event {
            Event::Message(message) => self.apply(message.get_payload_bytes()),
            Event::Malformed => self.reject("a message push without a channel and a payload"),
            Event::Ignored => {}
            Event::Lost(reason) => return Some(reason),
        }
        None
    }

    fn apply(&self, payload: &[u8]) {
        match message::parse(payload) {
            Ok(invalidation) if invalidation.node_id == self.node_id => {}
            Ok(invalidation) => self
                .cache
                .apply_remote(&invalidation.id, invalidation.floor()),
            Err(reason) => self.reject(reason.as_str()),
        }
    }

    fn reject(&self, reason: &'static str) {
        let rejected = self
            .cache
            .counters()
            .rejected_messages
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        metrics::counter!("session_cache_messages_rejected_total").increment(1);
        // Logged at the 1st, 2nd, 4th, 8th ... rejection, so that a flood of
        // junk cannot flood the log.
        if rejected.is_power_of_two() {
            tracing::warn!(
                channel = %self.channel,
                reason,
                rejected_total = rejected,
                "ignored a message on the session invalidation channel that does not parse"
            );
        }
    }
}

enum Drained {
    Empty,
    Flooded,
    Lost(&'static str),
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
