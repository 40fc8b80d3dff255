//! The clustered Redis store against a real Redis: the shared server at
//! `$REDIS_URL` (default `redis://127.0.0.1:6379`) under a key prefix and
//! channel unique to the run, and private servers where a test counts
//! commands, kills connections or restarts the server.
//!
//! Two stores on one Redis with the same prefix and channel stand for two
//! nodes of one app.

#![cfg(feature = "redis")]

mod support {
    pub mod redis_server;
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use deadpool_redis::redis;
use time::Duration;
use tokio::sync::Notify;

use session_core::conformance::{self, stored};
use session_core::{
    Clock, ClusterConfigError, ClusteredRedisStore, ClusteredRedisStoreBuilder, ManualClock,
    RedisStore, SaveOutcome, SessionEvents, SessionId, SessionStore, StoreError, StoreEvent,
    StoredSession,
};
use support::redis_server::{admin, shared_url, unique_prefix, Cleanup, RedisServer};

fn builder(url: &str, prefix: &str, clock: &ManualClock) -> ClusteredRedisStoreBuilder {
    ClusteredRedisStore::from_url(url)
        .key_prefix(prefix)
        .clock(Arc::new(clock.clone()))
}

async fn node(url: &str, prefix: &str, node_id: &str, clock: &ManualClock) -> ClusteredRedisStore {
    builder(url, prefix, clock)
        .node_id(node_id)
        .build()
        .await
        .expect("valid clustered store configuration")
}

/// Builds a plain Redis store on the same keys. Its writes publish nothing,
/// like a write whose invalidation was lost.
fn silent_writer(url: &str, prefix: &str, clock: &ManualClock) -> RedisStore {
    RedisStore::from_url(url)
        .key_prefix(prefix)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn next_version(session: &StoredSession, payload: &'static [u8]) -> StoredSession {
    let mut next = session.clone();
    next.version += 1;
    next.payload = Bytes::from_static(payload);
    next
}

/// Polls `condition` every 20 ms, at most 10 s, and reports whether it held.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    condition()
}

#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<StoreEvent>>,
    missed: Notify,
}

impl Recorder {
    fn take(&self) -> Vec<StoreEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl SessionEvents for Recorder {
    fn on_store_event(&self, event: &StoreEvent) {
        self.events.lock().unwrap().push(*event);
        if *event == StoreEvent::CacheMiss {
            self.missed.notify_one();
        }
    }
}

#[tokio::test]
async fn conformance_suite_passes() {
    let url = shared_url();
    let root = unique_prefix("clustered-conformance");
    let _cleanup = Cleanup::new(&url, &root);
    let check = AtomicUsize::new(0);

    conformance::run_all(|clock| {
        let prefix = format!("{root}{}:session:", check.fetch_add(1, Ordering::Relaxed));
        let builder = builder(&url, &prefix, clock);
        async move { builder.build().await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn conformance_suite_passes_with_fenced_reads_and_sealing() {
    let url = shared_url();
    let root = unique_prefix("clustered-fenced-conformance");
    let _cleanup = Cleanup::new(&url, &root);
    let check = AtomicUsize::new(0);

    conformance::run_all(|clock| {
        let prefix = format!("{root}{}:session:", check.fetch_add(1, Ordering::Relaxed));
        let config = session_core::SessionConfig::testing(b"clustered test secret, 32 bytes!")
            .clock(clock.clone())
            .build()
            .unwrap();
        let builder = ClusteredRedisStore::from_url(&url)
            .key_prefix(prefix)
            .encrypt_with(&config)
            .fenced_reads(true);
        async move { builder.build().await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn change_on_one_node_evicts_on_the_other() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-evict");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let a = node(&url, &prefix, "node-a", &clock).await;
    let b = node(&url, &prefix, "node-b", &clock).await;
    assert_eq!(a.channel(), b.channel());

    let session = stored(&clock, Some("user-a"), b"v1");
    a.create(&session).await.unwrap();
    assert_eq!(b.load(&session.id).await.unwrap(), Some(session.clone()));
    assert_eq!(b.load(&session.id).await.unwrap(), Some(session.clone()));
    assert_eq!(b.stats().hits, 1, "B's second read is a hit");

    let saved = next_version(&session, b"v2");
    assert_eq!(a.save(&saved, 1).await.unwrap(), SaveOutcome::Saved);
    b.catch_up().await.unwrap();
    assert_eq!(b.stats().invalidations, 1);
    assert_eq!(
        b.load(&session.id).await.unwrap(),
        Some(saved.clone()),
        "B reads the new version after the invalidation"
    );

    assert!(a.delete(&session.id).await.unwrap());
    b.catch_up().await.unwrap();
    assert_eq!(b.stats().invalidations, 2);
    assert_eq!(
        b.load(&session.id).await.unwrap(),
        None,
        "B sees the delete"
    );
    assert_eq!(a.stats().invalidations, 0, "A ignores its own messages");
}

#[tokio::test]
async fn own_messages_are_ignored() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-own");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let a = node(&url, &prefix, "node-a", &clock).await;

    let session = stored(&clock, None, b"v1");
    a.create(&session).await.unwrap();
    let saved = next_version(&session, b"v2");
    a.save(&saved, 1).await.unwrap();
    a.catch_up().await.unwrap();

    let before = a.stats();
    assert_eq!(a.load(&session.id).await.unwrap(), Some(saved));
    let after = a.stats();
    assert_eq!(after.invalidations, 0);
    assert_eq!(
        after.hits,
        before.hits + 1,
        "A reads its own write from the cache"
    );
    assert_eq!(after.misses, before.misses);
}

#[tokio::test]
async fn user_deletion_evicts_on_other_nodes() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-user");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let a = node(&url, &prefix, "node-a", &clock).await;
    let b = node(&url, &prefix, "node-b", &clock).await;

    let first = stored(&clock, Some("user-a"), b"1");
    let second = stored(&clock, Some("user-a"), b"2");
    let other = stored(&clock, Some("admin-b"), b"3");
    for session in [&first, &second, &other] {
        a.create(session).await.unwrap();
        assert!(a.load(&session.id).await.unwrap().is_some());
    }

    assert_eq!(b.delete_by_identity("user-a").await.unwrap(), 2);
    a.catch_up().await.unwrap();
    assert_eq!(a.stats().invalidations, 2);
    assert_eq!(a.load(&first.id).await.unwrap(), None);
    assert_eq!(a.load(&second.id).await.unwrap(), None);
    assert_eq!(a.load(&other.id).await.unwrap(), Some(other));
}

#[tokio::test]
async fn fenced_reads_see_other_nodes_changes_at_once() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-fenced");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let a = builder(&url, &prefix, &clock)
        .node_id("node-a")
        .fenced_reads(true)
        .build()
        .await
        .unwrap();
    let b = node(&url, &prefix, "node-b", &clock).await;

    let mut current = stored(&clock, Some("user-a"), b"v");
    a.create(&current).await.unwrap();
    for round in 0..200 {
        assert_eq!(
            a.load(&current.id).await.unwrap(),
            Some(current.clone()),
            "round {round}: A caches the current version"
        );
        let saved = next_version(&current, b"v");
        assert_eq!(
            b.save(&saved, current.version).await.unwrap(),
            SaveOutcome::Saved
        );
        assert_eq!(
            a.load(&current.id).await.unwrap().map(|s| s.version),
            Some(saved.version),
            "round {round}: the load right after B's save sees it"
        );
        current = saved;
    }
    assert!(b.delete(&current.id).await.unwrap());
    assert_eq!(a.load(&current.id).await.unwrap(), None, "and B's delete");
    assert!(a.stats().hits >= 200, "{:?}", a.stats());
}

#[tokio::test]
async fn garbage_messages_are_ignored() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-garbage");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let a = node(&url, &prefix, "node-a", &clock).await;
    let session = stored(&clock, None, b"v1");
    a.create(&session).await.unwrap();
    let id = session.id.encode();

    let mut connection = admin(&url);
    let garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\x00\x01".to_vec(),
        format!("v1 save 9 node-b {id} extra").into_bytes(),
        format!("v2 save 9 node-b {id}").into_bytes(),
        format!("v1 drop 9 node-b {id}").into_bytes(),
        format!("v1 save -9 node-b {id}").into_bytes(),
        format!("v1 save 9 node/b {id}").into_bytes(),
        format!("v1 save 9 node-b {}", &id[..40]).into_bytes(),
        "x".repeat(100_000).into_bytes(),
    ];
    for payload in &garbage {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(a.channel())
            .arg(payload)
            .query(&mut connection)
            .unwrap();
    }
    a.catch_up().await.unwrap();
    let stats = a.stats();
    assert_eq!(stats.rejected_messages, garbage.len() as u64);
    assert_eq!(stats.invalidations, 0);
    assert_eq!(a.load(&session.id).await.unwrap(), Some(session.clone()));
    assert_eq!(a.stats().hits, stats.hits + 1, "the entry survived");

    // A well-formed message from another node does evict.
    let _: i64 = redis::cmd("PUBLISH")
        .arg(a.channel())
        .arg(format!("v1 save 2 node-b {id}"))
        .query(&mut connection)
        .unwrap();
    a.catch_up().await.unwrap();
    assert_eq!(a.stats().invalidations, 1);
}

#[tokio::test]
async fn other_channels_are_not_notified() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-channel");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let a = builder(&url, &prefix, &clock)
        .node_id("node-a")
        .channel(format!("{prefix}other-app"))
        .build()
        .await
        .unwrap();
    let b = node(&url, &prefix, "node-b", &clock).await;
    assert_eq!(a.channel(), format!("{prefix}other-app"));
    assert_eq!(b.channel(), format!("{prefix}invalidations"));

    let session = stored(&clock, None, b"v1");
    a.create(&session).await.unwrap();
    b.save(&next_version(&session, b"v2"), 1).await.unwrap();
    a.catch_up().await.unwrap();
    assert_eq!(
        a.load(&session.id).await.unwrap(),
        Some(session),
        "the channel setting is honoured, so A never heard of B's save"
    );
}

#[tokio::test]
async fn entries_never_outlive_the_session_deadline() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-deadline");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let a = node(&url, &prefix, "node-a", &clock).await;
    let b = node(&url, &prefix, "node-b", &clock).await;

    let session = stored(&clock, None, b"v1");
    a.create(&session).await.unwrap();
    assert!(a.load(&session.id).await.unwrap().is_some());
    clock.advance(Duration::minutes(30));
    assert_eq!(
        a.load(&session.id).await.unwrap(),
        None,
        "expired at the deadline"
    );

    // B slides a deadline without telling A; A's entry looks expired at the
    // old deadline, so A reads Redis and finds the session still live.
    let slid = stored(&clock, None, b"slid");
    a.create(&slid).await.unwrap();
    assert!(a.load(&slid.id).await.unwrap().is_some());
    assert!(b.load(&slid.id).await.unwrap().is_some());
    let later = clock.now() + Duration::minutes(60);
    assert_eq!(
        b.touch(&slid.id, Some(later), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    a.catch_up().await.unwrap();
    assert_eq!(
        a.stats().invalidations,
        0,
        "a later deadline is not published"
    );

    clock.advance(Duration::minutes(31));
    let misses = a.stats().misses;
    let loaded = a
        .load(&slid.id)
        .await
        .unwrap()
        .expect("live until the new deadline");
    assert_eq!(loaded.expires_at, Some(later));
    assert_eq!(
        a.stats().misses,
        misses + 1,
        "the stale-looking entry was re-read"
    );

    // An earlier deadline is published.
    let earlier = clock.now() + Duration::minutes(5);
    assert_eq!(
        b.touch(&slid.id, Some(earlier), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    a.catch_up().await.unwrap();
    assert_eq!(a.stats().invalidations, 1);
    assert_eq!(
        a.load(&slid.id).await.unwrap().unwrap().expires_at,
        Some(earlier)
    );
}

#[tokio::test]
async fn subscriber_reconnect_clears_the_cache() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let a = node(&server.url(), "app:session:", "node-a", &clock).await;
    let writer = silent_writer(&server.url(), "app:session:", &clock);

    let session = stored(&clock, Some("user-a"), b"v1");
    a.create(&session).await.unwrap();
    let saved = next_version(&session, b"v2");
    assert_eq!(writer.save(&saved, 1).await.unwrap(), SaveOutcome::Saved);
    assert_eq!(
        a.load(&session.id).await.unwrap(),
        Some(session.clone()),
        "without a message, A still serves the old version"
    );

    let subscriptions = a.stats().subscriptions;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.admin())
        .unwrap();
    assert_eq!(killed, 1, "A's subscriber connection");
    assert!(
        eventually(|| a.stats().subscriptions > subscriptions).await,
        "A resubscribes: {:?}",
        a.stats()
    );

    assert_eq!(
        a.load(&session.id).await.unwrap(),
        Some(saved),
        "after the reconnect the cache was cleared, so A reads Redis"
    );
    assert!(a.stats().clears >= 2, "{:?}", a.stats());
}

#[tokio::test]
async fn cache_is_off_while_redis_is_down() {
    let mut server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let a = builder(&server.url(), "app:session:", &clock)
        .node_id("node-a")
        .operation_timeout(StdDuration::from_millis(300))
        .build()
        .await
        .unwrap();
    let session = stored(&clock, None, b"v1");
    a.create(&session).await.unwrap();
    assert!(a.load(&session.id).await.unwrap().is_some());

    server.kill();
    let mut failed = None;
    for _ in 0..500 {
        match a.load(&session.id).await {
            Ok(_) => tokio::time::sleep(StdDuration::from_millis(20)).await,
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    assert!(
        failed.as_ref().is_some_and(StoreError::is_transient),
        "once the subscriber is down, loads go to Redis and fail: {failed:?}"
    );
    assert!(a.catch_up().await.is_err());

    server.restart();
    assert!(
        eventually(|| a.stats().subscriptions >= 2).await,
        "A resubscribes after the restart: {:?}",
        a.stats()
    );
    assert_eq!(
        a.load(&session.id).await.unwrap(),
        None,
        "the restarted server lost the session, and so did the cache"
    );
}

#[tokio::test]
async fn stalled_subscriber_stops_serving_hits() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    // Fences are due every 12.5 ms, and a fence or an operation may take 3 s,
    // so the pause below ages the watermark without breaking the connection.
    let a = builder(&server.url(), "app:session:", &clock)
        .node_id("node-a")
        .max_staleness(StdDuration::from_millis(50))
        .operation_timeout(StdDuration::from_secs(3))
        .build()
        .await
        .unwrap();
    let session = stored(&clock, None, b"v1");
    a.create(&session).await.unwrap();
    assert!(a.load(&session.id).await.unwrap().is_some());

    // Redis stops replying to every client, the subscriber included, but no
    // connection closes.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_000)
        .arg("ALL")
        .query(&mut server.admin())
        .unwrap();
    let mut missed = false;
    for _ in 0..100 {
        let misses = a.stats().misses;
        assert_eq!(a.load(&session.id).await.unwrap(), Some(session.clone()));
        if a.stats().misses > misses {
            missed = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert!(
        missed,
        "hits stop once fences stop coming back: {:?}",
        a.stats()
    );
    let stats = a.stats();
    assert_eq!(
        stats.subscriptions, 1,
        "the subscription never broke: {stats:?}"
    );
    assert_eq!(stats.clears, 1, "{stats:?}");

    let hits = a.stats().hits;
    let mut served = false;
    for _ in 0..200 {
        a.load(&session.id).await.unwrap();
        if a.stats().hits > hits {
            served = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert!(served, "hits resume after the pause: {:?}", a.stats());
}

#[tokio::test]
async fn failed_publish_fails_the_write() {
    let server = RedisServer::start_with(&["--rename-command", "PUBLISH", ""]);
    let clock = ManualClock::starting_now();
    let a = node(&server.url(), "app:session:", "node-a", &clock).await;
    let session = stored(&clock, None, b"v1");
    a.create(&session).await.unwrap();

    let saved = next_version(&session, b"v2");
    let result = a.save(&saved, 1).await;
    assert!(
        matches!(result, Err(StoreError::Backend { .. })),
        "other nodes were not notified, so the save is an error: {result:?}"
    );
    let stats = a.stats();
    assert_eq!(stats.publish_failures, 1, "{stats:?}");
    assert_eq!(
        a.load(&session.id).await.unwrap(),
        Some(saved),
        "the write itself was applied, and A dropped its own entry"
    );
    assert_eq!(a.stats().misses, stats.misses + 1);
    assert!(a.delete(&session.id).await.is_err());
    assert_eq!(a.stats().publish_failures, 2);
}

/// Command call counts from `INFO commandstats`, without the test's own
/// `INFO` and `CONFIG RESETSTAT`.
fn command_calls(connection: &mut redis::Connection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "info" && name != "config|resetstat")
        .collect()
}

fn reset_stats(connection: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(connection)
        .unwrap();
}

#[tokio::test]
async fn cache_hit_costs_no_round_trip() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = builder(&server.url(), "app:session:", &clock)
        .node_id("node-a")
        .max_staleness(StdDuration::from_secs(60))
        .build()
        .await
        .unwrap();
    let mut admin = server.admin();

    // Warm up: open the connection and load the scripts.
    let session = stored(&clock, None, b"cart");
    store.create(&session).await.unwrap();
    let warm = next_version(&session, b"warm");
    store.save(&warm, 1).await.unwrap();
    reset_stats(&mut admin);

    for _ in 0..1_000 {
        assert_eq!(store.load(&session.id).await.unwrap(), Some(warm.clone()));
    }
    let mut calls = command_calls(&mut admin);
    // The subscriber's heartbeat sends a fence every 15 s here.
    let fences = calls.remove("ping").unwrap_or(0);
    assert!(fences <= 1, "{fences} fences");
    assert_eq!(calls, BTreeMap::new(), "1 000 cache hits send no command");
    assert_eq!(store.stats().hits, 1_000);

    reset_stats(&mut admin);
    assert_eq!(store.load(&SessionId::random()).await.unwrap(), None);
    let mut calls = command_calls(&mut admin);
    calls.remove("ping");
    assert_eq!(
        calls,
        BTreeMap::from([("get".to_owned(), 1)]),
        "a miss is one GET"
    );

    reset_stats(&mut admin);
    store.save(&next_version(&warm, b"next"), 2).await.unwrap();
    let mut calls = command_calls(&mut admin);
    calls.remove("ping");
    assert_eq!(
        calls.get("evalsha").copied(),
        Some(1),
        "a save is the Redis store's script: {calls:?}"
    );
    assert_eq!(
        calls.get("publish").copied(),
        Some(1),
        "plus one PUBLISH: {calls:?}"
    );
}

#[tokio::test]
async fn shutdown_stops_every_task() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let writer = silent_writer(&server.url(), "app:session:", &clock);
    let session = stored(&clock, None, b"v1");
    writer.create(&session).await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();

    // No operation runs before the shutdown, so the store's pool has no
    // connection task yet: every task alive beyond `before` is the
    // subscriber's.
    let store = node(&server.url(), "app:session:", "node-a", &clock).await;
    assert!(metrics.num_alive_tasks() > before, "the subscriber runs");
    store.shutdown().await.unwrap();
    assert!(
        eventually(|| metrics.num_alive_tasks() == before).await,
        "{} tasks still alive, {before} before the store",
        metrics.num_alive_tasks()
    );
    let subscribers = || -> String {
        redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut server.admin())
            .unwrap()
    };
    assert!(
        eventually(|| subscribers().is_empty()).await,
        "the subscriber connection is closed: {}",
        subscribers()
    );

    // The store still works, reading Redis every time.
    let mut admin = server.admin();
    reset_stats(&mut admin);
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.load(&session.id).await.unwrap(), Some(session));
    assert_eq!(command_calls(&mut admin).get("get").copied(), Some(2));
    assert_eq!(store.stats().hits, 0);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_running_operations() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let recorder = Arc::new(Recorder::default());
    let store = builder(&server.url(), "app:session:", &clock)
        .node_id("node-a")
        .operation_timeout(StdDuration::from_secs(5))
        .events(recorder.clone())
        .build()
        .await
        .unwrap();
    let session = stored(&clock, None, b"v1");
    store.create(&session).await.unwrap();

    // The load misses, then waits for Redis, which is paused.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(500)
        .arg("ALL")
        .query(&mut server.admin())
        .unwrap();
    let missed = recorder.missed.notified();
    let loading = tokio::spawn({
        let store = store.clone();
        let id = SessionId::random();
        async move { store.load(&id).await }
    });
    missed.await;

    store.shutdown().await.unwrap();
    assert!(loading.is_finished(), "shutdown returned before the load");
    assert_eq!(loading.await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn cache_events_and_counters() {
    let url = shared_url();
    let prefix = unique_prefix("clustered-events");
    let _cleanup = Cleanup::new(&url, &prefix);
    let clock = ManualClock::starting_now();
    let recorder = Arc::new(Recorder::default());
    let a = builder(&url, &prefix, &clock)
        .node_id("node-a")
        .local_cache_max_size(10)
        .events(recorder.clone())
        .build()
        .await
        .unwrap();
    let b = node(&url, &prefix, "node-b", &clock).await;
    assert_eq!(
        recorder.take(),
        vec![StoreEvent::CacheCleared],
        "the first subscription"
    );

    let session = stored(&clock, None, b"v1");
    b.create(&session).await.unwrap();
    a.load(&session.id).await.unwrap();
    a.load(&session.id).await.unwrap();
    b.save(&next_version(&session, b"v2"), 1).await.unwrap();
    a.catch_up().await.unwrap();
    assert_eq!(
        recorder.take(),
        vec![
            StoreEvent::CacheMiss,
            StoreEvent::CacheHit,
            StoreEvent::CacheInvalidated
        ]
    );

    for _ in 0..50 {
        a.create(&stored(&clock, None, b"x")).await.unwrap();
    }
    let stats = a.stats();
    assert!(stats.entries <= 10, "{stats:?}");
    assert!(stats.evictions >= 40, "{stats:?}");
    let evicted = recorder
        .take()
        .iter()
        .filter(|event| **event == StoreEvent::CacheEvicted)
        .count();
    assert_eq!(evicted as u64, stats.evictions);
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.invalidations, 1);
    assert_eq!(stats.subscriptions, 1);
}

#[tokio::test]
async fn invalid_settings_are_rejected() {
    let clock = ManualClock::starting_now();
    let url = shared_url();
    let cases: Vec<(ClusteredRedisStoreBuilder, &str)> = vec![
        (builder(&url, "p:", &clock).node_id(""), "node id"),
        (builder(&url, "p:", &clock).node_id("web 1"), "node id"),
        (
            builder(&url, "p:", &clock).node_id("n".repeat(65)),
            "node id",
        ),
        (
            builder(&url, "p:", &clock).local_cache_ttl(StdDuration::ZERO),
            "local_cache_ttl",
        ),
        (
            builder(&url, "p:", &clock).local_cache_max_size(0),
            "local_cache_max_size",
        ),
        (
            builder(&url, "p:", &clock).max_staleness(StdDuration::from_micros(999)),
            "max_staleness",
        ),
        (builder(&url, "p:", &clock).channel(""), "channel"),
        (builder(&url, "p{x}:", &clock), "key prefix"),
        (builder("http://127.0.0.1:6379", "p:", &clock), "Redis URL"),
    ];
    for (builder, expected) in cases {
        let error = builder.build().await.expect_err(expected);
        assert!(error.to_string().contains(expected), "{expected}: {error}");
        if expected == "node id" {
            assert!(matches!(error, ClusterConfigError::InvalidNodeId { .. }));
        }
    }
}
