//! The Redis store, alone and under `ResilientStore`, when its private
//! redis-server is killed, restarted, paused or drops connections.

#![cfg(feature = "redis")]

mod support {
    pub mod redis_server;
}

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_redis::redis;

use session_core::conformance::stored;
use session_core::{
    BreakerState, ManualClock, RedisStore, ResilientStore, SaveOutcome, SessionEvents, SessionId,
    SessionStore, StoreError, StoreEvent, StoredSession,
};
use support::redis_server::RedisServer;

fn redis_store(server: &RedisServer, clock: &ManualClock, timeout: Duration) -> RedisStore {
    RedisStore::from_url(server.url())
        .key_prefix("faults:session:")
        .clock(Arc::new(clock.clone()))
        .operation_timeout(timeout)
        .build()
        .unwrap()
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, label: &str) {
    match result {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("{label}: expected Unavailable, got {other:?}"),
    }
}

fn assert_transient<T: std::fmt::Debug>(result: Result<T, StoreError>, label: &str) {
    match result {
        Err(error) if error.is_transient() => {}
        other => panic!("{label}: expected a connection error or timeout, got {other:?}"),
    }
}

fn client_command(server: &RedisServer, args: &[&str]) {
    let _: redis::Value = redis::cmd("CLIENT")
        .arg(args)
        .query(&mut server.admin())
        .unwrap();
}

/// Waits until the store's PING succeeds again, for at most 10 s.
async fn wait_until_reachable(store: &RedisStore) {
    let started = Instant::now();
    while store.ping().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the store did not recover within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn killed_server_gives_typed_errors() {
    let mut server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = redis_store(&server, &clock, Duration::from_millis(500));
    let session = stored(&clock, Some("user-a"), b"x");
    store.create(&session).await.unwrap();
    assert!(store.load(&session.id).await.unwrap().is_some());

    server.kill();
    // Twice: first on the held connection, then on new connection attempts.
    for round in 0..2 {
        assert_unavailable(store.load(&session.id).await, &format!("load {round}"));
        assert_unavailable(store.create(&stored(&clock, None, b"y")).await, "create");
        assert_unavailable(store.save(&session, 1).await, "save");
        assert_unavailable(store.touch(&session.id, None, 1).await, "touch");
        assert_unavailable(store.delete(&session.id).await, "delete");
        assert_unavailable(store.list_by_identity("user-a").await, "list");
        assert_unavailable(
            store.delete_by_identity("user-a").await,
            "delete by identity",
        );
        assert_unavailable(store.ping().await, "ping");
    }
}

#[tokio::test]
async fn server_killed_mid_operation_is_unavailable() {
    let mut server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = redis_store(&server, &clock, Duration::from_secs(5));
    let session = stored(&clock, None, b"x");
    store.create(&session).await.unwrap();

    // The paused server keeps the request pending until it is killed.
    client_command(&server, &["PAUSE", "10000", "ALL"]);
    let pending = tokio::spawn({
        let store = store.clone();
        let id = session.id.clone();
        async move { store.load(&id).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !pending.is_finished(),
        "the load waits for the paused server"
    );
    server.kill();

    assert_unavailable(pending.await.unwrap(), "load cut by the kill");
}

#[tokio::test]
async fn restarted_server_serves_again() {
    let mut server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = redis_store(&server, &clock, Duration::from_millis(500));
    let before = stored(&clock, None, b"x");
    store.create(&before).await.unwrap();

    server.restart();
    // The held connection died with the old process: a read retries on a
    // new one at once. The data is gone because persistence is off.
    assert_eq!(store.load(&before.id).await.unwrap(), None);

    let after = stored(&clock, Some("user-a"), b"y");
    store.create(&after).await.unwrap();
    assert_eq!(store.load(&after.id).await.unwrap(), Some(after.clone()));
    assert_eq!(
        store.list_by_identity("user-a").await.unwrap(),
        vec![after.id]
    );
}

#[tokio::test]
async fn connection_closed_by_idle_timeout_is_replaced() {
    let server = RedisServer::start_with(&["--timeout", "1"]);
    let clock = ManualClock::starting_now();
    let store = RedisStore::from_url(server.url())
        .key_prefix("faults:session:")
        .clock(Arc::new(clock.clone()))
        .revalidate_idle_after(Duration::from_millis(500))
        .build()
        .unwrap();
    let session = stored(&clock, None, b"x");
    store.create(&session).await.unwrap();

    // Wait until the server has closed every idle client: only the one
    // asking is left.
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut server.admin())
            .unwrap();
        if info.contains("connected_clients:1\r") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server kept the idle connection: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Even a write, which is never sent twice, succeeds.
    let mut next = session.clone();
    next.version = 2;
    assert_eq!(store.save(&next, 1).await.unwrap(), SaveOutcome::Saved);
    assert_eq!(store.load(&session.id).await.unwrap(), Some(next));
}

#[tokio::test]
async fn killed_connection_is_replaced() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = redis_store(&server, &clock, Duration::from_millis(500));
    let session = stored(&clock, None, b"x");
    store.create(&session).await.unwrap();

    client_command(&server, &["KILL", "TYPE", "normal", "SKIPME", "yes"]);
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        Some(session.clone()),
        "a read retries once on a new connection"
    );

    client_command(&server, &["KILL", "TYPE", "normal", "SKIPME", "yes"]);
    let mut next = session.clone();
    next.version = 2;
    assert_unavailable(
        store.save(&next, 1).await,
        "a write on the killed connection",
    );
    assert_eq!(
        store.save(&next, 1).await.unwrap(),
        SaveOutcome::Saved,
        "the failed write was not applied, and the next one uses a new connection"
    );
}

#[tokio::test]
async fn slow_server_times_out_within_the_bound() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = redis_store(&server, &clock, Duration::from_millis(300));
    let session = stored(&clock, None, b"x");
    store.create(&session).await.unwrap();

    client_command(&server, &["PAUSE", "1500", "ALL"]);
    let error = store.load(&session.id).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Timeout {
                operation: "load",
                after_ms: 300
            }
        ),
        "{error:?}"
    );
    assert_transient(
        store.delete(&SessionId::random()).await,
        "delete while paused",
    );

    wait_until_reachable(&store).await;
    assert_eq!(store.load(&session.id).await.unwrap(), Some(session));
}

/// Records every store event.
#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<StoreEvent>>,
}

impl SessionEvents for Recorder {
    fn on_store_event(&self, event: &StoreEvent) {
        self.events.lock().unwrap().push(*event);
    }
}

#[tokio::test]
async fn breaker_opens_and_recovers_through_one_probe() {
    let mut server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let recorder = Arc::new(Recorder::default());
    let store = Arc::new(
        ResilientStore::builder(redis_store(&server, &clock, Duration::from_secs(5)))
            .max_attempts(1)
            .timeout(Duration::from_secs(5))
            .reset_timeout(Duration::from_millis(300))
            .events(recorder.clone())
            .build(),
    );
    let session = stored(&clock, None, b"x");
    store.create(&session).await.unwrap();

    server.kill();
    for attempt in 1..=5 {
        assert_unavailable(store.load(&session.id).await, &format!("failure {attempt}"));
    }
    assert_eq!(store.breaker_state(), BreakerState::Open);
    assert!(matches!(
        store.load(&session.id).await,
        Err(StoreError::CircuitOpen)
    ));

    server.restart();
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Hold the probe on a paused server and check that nothing else passes.
    client_command(&server, &["PAUSE", "2000", "ALL"]);
    let probe = tokio::spawn({
        let store = store.clone();
        let id = session.id.clone();
        async move { store.load(&id).await }
    });
    let started = Instant::now();
    while store.breaker_state() != BreakerState::HalfOpen {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no probe started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..3 {
        assert!(matches!(
            store.load(&session.id).await,
            Err(StoreError::CircuitOpen)
        ));
    }

    // The restarted server lost the data, and "not found" is a healthy response.
    assert_eq!(probe.await.unwrap().unwrap(), None);
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    assert_eq!(store.load(&session.id).await.unwrap(), None);
    assert_eq!(
        *recorder.events.lock().unwrap(),
        vec![
            StoreEvent::BreakerOpened,
            StoreEvent::BreakerHalfOpen,
            StoreEvent::BreakerClosed
        ]
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_connection_faults() {
    let server = RedisServer::start();
    let clock = ManualClock::starting_now();
    let store = redis_store(&server, &clock, Duration::from_millis(200));
    let mut sessions: Vec<StoredSession> = (0..20)
        .map(|index| stored(&clock, None, format!("{index}:1").as_bytes()))
        .collect();
    for session in &sessions {
        store.create(session).await.unwrap();
    }
    let mut acknowledged: Vec<StoredSession> = sessions.clone();
    let mut failures = 0;

    for round in 0..30 {
        if round % 5 == 4 {
            client_command(&server, &["KILL", "TYPE", "normal", "SKIPME", "yes"]);
        }
        if round % 7 == 6 {
            client_command(&server, &["PAUSE", "300", "ALL"]);
        }
        for (index, session) in sessions.iter_mut().enumerate() {
            let mut next = session.clone();
            next.version += 1;
            next.payload = Bytes::from(format!("{index}:{}", next.version));
            match store.save(&next, session.version).await {
                Ok(SaveOutcome::Saved) => {
                    acknowledged[index] = next.clone();
                    *session = next;
                }
                Ok(outcome) => {
                    // A write that timed out may have been applied later:
                    // continue from what is stored.
                    assert_eq!(outcome, SaveOutcome::Conflict, "session {index}");
                    failures += 1;
                    if let Ok(Some(current)) = store.load(&session.id).await {
                        *session = current;
                    }
                }
                Err(error) => {
                    assert!(error.is_transient(), "session {index}: {error:?}");
                    failures += 1;
                    if let Ok(Some(current)) = store.load(&session.id).await {
                        *session = current;
                    }
                }
            }
        }
    }
    assert!(failures > 0, "the faults were felt");

    wait_until_reachable(&store).await;
    for (index, written) in acknowledged.iter().enumerate() {
        let loaded = store
            .load(&written.id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("session {index} is lost"));
        assert!(
            loaded.version >= written.version,
            "session {index}: acknowledged version {} but stored {}",
            written.version,
            loaded.version
        );
        if loaded.version == written.version {
            assert_eq!(loaded.payload, written.payload, "session {index}");
        }
    }
}
