//! The HTTP cases against the Redis store on a real Redis, plus the Redis
//! faults and round-trip counts seen through the layer.

mod support;

mod redis_support;

use std::sync::Arc;

use axum::http::StatusCode;
use deadpool_redis::redis;
use redis_support::{redis_server, PrefixedKeys};
use session_axum::session_core::{RedisStore, SessionStore};
use session_axum::ManualClock;
use support::{BoxFuture, Harness, StoreFactory, StoreProbe};

/// Builds stores on `$REDIS_URL` under a prefix of its own, and deletes
/// every key under that prefix when dropped, even after a failed case.
struct RedisFactory {
    keys: PrefixedKeys,
}

impl RedisFactory {
    fn new() -> Self {
        Self::on(redis_server::shared_url())
    }

    fn on(url: String) -> Self {
        Self {
            keys: PrefixedKeys::new(url, "http"),
        }
    }
}

impl StoreFactory for RedisFactory {
    fn make(
        &self,
        clock: ManualClock,
    ) -> BoxFuture<'_, (Arc<dyn SessionStore>, Arc<dyn StoreProbe>)> {
        Box::pin(async move {
            let store = RedisStore::from_url(self.keys.url.clone())
                .key_prefix(self.keys.prefix.clone())
                .clock(Arc::new(clock))
                .build()
                .expect("valid Redis store configuration");
            let probe = self.keys.probe();
            (Arc::new(store) as Arc<dyn SessionStore>, probe)
        })
    }
}

http_cases!(RedisFactory::new());

/// Counts the calls of each command since the last reset, from `INFO commandstats`.
fn command_calls(connection: &mut redis::Connection) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .unwrap();
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "info" | "config|resetstat" | "ping" | "client|setinfo"
            )
        })
        .collect()
}

fn reset_stats(connection: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(connection)
        .unwrap();
}

/// One round trip to load, one to save, none for an untouched route, and
/// no touch for a read inside the refresh interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_request() {
    let server = redis_server::RedisServer::start();
    let factory = RedisFactory::on(server.url());
    let h = Harness::new(&factory, |b| b).await;
    let mut admin = server.admin();

    let cookie = h.post("/cart/add?item=x", None).await.cookie();
    let s1 = h.login("user-a", Some(&cookie)).await.cookie();
    // Loads the save and touch scripts into the server's script cache.
    h.post("/cart/add?item=w", Some(&s1)).await;
    h.clock.advance(time::Duration::minutes(2));
    h.get("/me", Some(&s1)).await;

    // Commands that run inside a script show up in `INFO commandstats` too,
    // but cost no round trip of their own.
    const IN_SCRIPTS: [&str; 4] = ["getrange", "set", "setrange", "pexpireat"];
    let total = |calls: &std::collections::BTreeMap<String, u64>| {
        let in_scripts: u64 = if calls.contains_key("evalsha") {
            IN_SCRIPTS.iter().filter_map(|name| calls.get(*name)).sum()
        } else {
            0
        };
        calls.values().sum::<u64>() - in_scripts
    };

    reset_stats(&mut admin);
    assert_eq!(h.get("/public", Some(&s1)).await.status, StatusCode::OK);
    assert_eq!(
        total(&command_calls(&mut admin)),
        0,
        "untouched route: no store call"
    );

    reset_stats(&mut admin);
    assert_eq!(h.get("/me", Some(&s1)).await.body, "user-a");
    let read = command_calls(&mut admin);
    assert_eq!(total(&read), 1, "read: one round trip, got {read:?}");

    reset_stats(&mut admin);
    assert_eq!(
        h.post("/cart/add?item=y", Some(&s1)).await.status,
        StatusCode::NO_CONTENT
    );
    let write = command_calls(&mut admin);
    assert_eq!(write.get("get"), Some(&1), "{write:?}");
    assert_eq!(write.get("evalsha"), Some(&1), "{write:?}");
    assert_eq!(
        total(&write),
        2,
        "write: one load and one save, got {write:?}"
    );

    h.clock.advance(time::Duration::minutes(2));
    reset_stats(&mut admin);
    assert_eq!(h.get("/me", Some(&s1)).await.status, StatusCode::OK);
    let slide = command_calls(&mut admin);
    assert_eq!(slide.get("evalsha"), Some(&1), "{slide:?}");
    assert_eq!(
        total(&slide),
        2,
        "a read after the refresh interval: load and one touch, got {slide:?}"
    );

    reset_stats(&mut admin);
    assert_eq!(h.get("/me", Some(&s1)).await.status, StatusCode::OK);
    assert_eq!(
        total(&command_calls(&mut admin)),
        1,
        "the next read needs no touch"
    );
}

/// A read while Redis is down is a 503 that deletes no cookie, and the
/// session is back once Redis is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_never_logs_the_user_out() {
    let mut server =
        redis_server::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let factory = RedisFactory::on(server.url());
    let h = Harness::new(&factory, |b| b).await;
    let s1 = h.login("user-a", None).await.cookie();

    server.kill();
    let down = h.get("/me", Some(&s1)).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        down.set_cookies().is_empty(),
        "no cookie-deleting Set-Cookie"
    );
    assert_eq!(
        h.get("/public", None).await.status,
        StatusCode::OK,
        "cookieless public route"
    );

    server.restart();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..5 {
        let up = h.get("/me", Some(&s1)).await;
        status = up.status;
        if status == StatusCode::OK {
            assert_eq!(up.body, "user-a");
            break;
        }
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "the session is served again after the restart"
    );
}

/// An idle connection closed by the server is replaced transparently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closed_idle_connection_is_replaced() {
    let server = redis_server::RedisServer::start_with(&["--timeout", "1"]);
    let factory = RedisFactory::on(server.url());
    let h = Harness::new(&factory, |b| b).await;
    let s1 = h.login("user-a", None).await.cookie();

    // Real time must pass for the server to close the idle connection.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let me = h.get("/me", Some(&s1)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body, "user-a");
}

/// Values the app caches in the same database never replace a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_cache_keys_never_replace_a_session() {
    let factory = RedisFactory::new();
    let h = Harness::new(&factory, |b| b).await;
    let s1 = h.login("user-a", None).await.cookie();
    let id = support::id_of(&s1).encode();

    let mut admin = redis_server::admin(&factory.keys.url);
    for key in [id.clone(), format!("sess:{id}"), format!("session:{id}")] {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("{\"user\":\"admin-b\"}")
            .arg("PX")
            .arg(60_000)
            .query(&mut admin)
            .unwrap();
    }
    let me = h.get("/me", Some(&s1)).await;
    assert_eq!(me.body, "user-a");
    for key in [id.clone(), format!("sess:{id}"), format!("session:{id}")] {
        let _: () = redis::cmd("DEL").arg(&key).query(&mut admin).unwrap();
    }
}

/// On Redis: a failed write during rotation keeps the old session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rotation_keeps_the_old_redis_session() {
    let factory = RedisFactory::new();
    let clock = ManualClock::starting_now();
    let (store, _) = factory.make(clock.clone()).await;
    support::faulty::failed_rotation_keeps_the_old_session(store, clock).await;
}

/// On Redis: slow writes still finish before the redirect leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_redis_writes_finish_before_the_redirect() {
    let factory = RedisFactory::new();
    let clock = ManualClock::starting_now();
    let (store, _) = factory.make(clock.clone()).await;
    support::faulty::slow_writes_finish_before_the_redirect(store, clock).await;
}
