//! The HTTP cases against the clustered Redis store (a local cache per node,
//! kept coherent over pub/sub) on a real Redis. Then two app instances on
//! one Redis, each with its own layer, store, cache and node id, which must
//! behave as one app.

mod support;

mod redis_support;

use std::sync::Arc;

use axum::http::StatusCode;
use deadpool_redis::redis;
use redis_support::{redis_server, PrefixedKeys};
use session_axum::session_core::SessionStore;
use session_axum::{ClusteredRedisStore, ManualClock};
use support::two_nodes::NodePair;
use support::{id_of, BoxFuture, Harness, StoreFactory, StoreProbe};

/// Builds stores on `$REDIS_URL` under a prefix (and so a channel) of its
/// own, and deletes every key under that prefix when dropped, even after a
/// failed case.
struct ClusterFactory {
    keys: PrefixedKeys,
}

impl ClusterFactory {
    fn new() -> Self {
        Self::on(redis_server::shared_url())
    }

    fn on(url: String) -> Self {
        Self {
            keys: PrefixedKeys::new(url, "cluster-http"),
        }
    }

    async fn node(
        &self,
        node_id: &str,
        clock: &ManualClock,
        fenced_reads: bool,
    ) -> ClusteredRedisStore {
        ClusteredRedisStore::from_url(self.keys.url.clone())
            .key_prefix(self.keys.prefix.clone())
            .clock(Arc::new(clock.clone()))
            .node_id(node_id)
            .fenced_reads(fenced_reads)
            .build()
            .await
            .expect("valid clustered store configuration")
    }
}

impl StoreFactory for ClusterFactory {
    fn make(
        &self,
        clock: ManualClock,
    ) -> BoxFuture<'_, (Arc<dyn SessionStore>, Arc<dyn StoreProbe>)> {
        Box::pin(async move {
            let store = self.node("node-a", &clock, false).await;
            let probe = self.keys.probe();
            (Arc::new(store) as Arc<dyn SessionStore>, probe)
        })
    }
}

http_cases!(ClusterFactory::new());

/// Two instances of the test app on one Redis and one channel.
struct TwoNodes {
    pair: NodePair,
    _factory: ClusterFactory,
}

impl TwoNodes {
    async fn start(fenced_reads: bool) -> Self {
        let factory = ClusterFactory::new();
        let clock = ManualClock::starting_now();
        let a_store = factory.node("node-a", &clock, fenced_reads).await;
        let b_store = factory.node("node-b", &clock, fenced_reads).await;
        Self {
            pair: NodePair {
                a: Harness::with_store(a_store.clone(), clock.clone(), |b| b),
                b: Harness::with_store(b_store.clone(), clock, |b| b),
                a_store,
                b_store,
            },
            _factory: factory,
        }
    }
}

impl std::ops::Deref for TwoNodes {
    type Target = NodePair;

    fn deref(&self) -> &NodePair {
        &self.pair
    }
}

/// A login on A is served by B, whose cache has never seen it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_on_a_is_seen_on_b() {
    let nodes = TwoNodes::start(false).await;
    let s1 = nodes.a.login("user-a", None).await.cookie();
    let me = nodes.b.get("/me", Some(&s1)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body, "user-a");
    assert_eq!(nodes.b_store.stats().hits, 0, "B read Redis");
}

/// With fenced reads, a logout on B is honoured by A on the very next
/// request, although A had the session cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_b_applies_on_a_at_once() {
    TwoNodes::start(true)
        .await
        .logout_on_b_applies_on_a_at_once(50)
        .await;
}

/// Without fenced reads, the logout reaches A as an invalidation, once
/// A has applied what was published before (`catch_up`), and not through
/// the cache TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_b_reaches_a_as_an_invalidation() {
    TwoNodes::start(false)
        .await
        .logout_on_b_reaches_a_as_an_invalidation(20)
        .await;
}

/// Across nodes, a privilege increase seen by B rotates the id, which
/// kills the old id on A at once. A revocation saved by B leaves A with the
/// new version, so A's own check finds nothing to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_change_on_b_is_honoured_by_a() {
    let nodes = TwoNodes::start(true).await;
    nodes.set_roles("user-a", &["viewer"]);
    let c1 = nodes.a.login("user-a", None).await.cookie();
    assert_eq!(
        nodes.a.get("/admin", Some(&c1)).await.status,
        StatusCode::FORBIDDEN
    );

    nodes.set_roles("user-a", &["viewer", "admin"]);
    let granted = nodes.b.get("/admin", Some(&c1)).await;
    assert_eq!(granted.status, StatusCode::OK);
    let c2 = granted.cookie();
    assert_ne!(
        id_of(&c1),
        id_of(&c2),
        "a privilege increase rotates the id"
    );
    assert_eq!(
        nodes.a.get("/me", Some(&c1)).await.status,
        StatusCode::UNAUTHORIZED,
        "the old id is dead on A"
    );
    assert_eq!(
        nodes.a.get("/admin", Some(&c2)).await.status,
        StatusCode::OK
    );

    nodes.set_roles("user-a", &["viewer"]);
    let revoked = nodes.b.get("/admin", Some(&c2)).await;
    assert_eq!(revoked.status, StatusCode::FORBIDDEN);
    let on_a = nodes.a.get("/admin", Some(&c2)).await;
    assert_eq!(
        on_a.status,
        StatusCode::FORBIDDEN,
        "A honours the revocation"
    );
    assert!(on_a.session_cookies().is_empty());
    let stored = nodes.b_store.load(&id_of(&c2)).await.unwrap().unwrap();
    assert_eq!(
        nodes
            .a_store
            .load(&id_of(&c2))
            .await
            .unwrap()
            .map(|s| s.version),
        Some(stored.version),
        "A holds the version B saved, not the one it cached before"
    );
}

/// A write on A is read on B, and B's write is read back on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_a_is_read_on_b() {
    TwoNodes::start(true).await.write_on_a_is_read_on_b().await;
}

/// On one node, a read right after a write returns it, from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_writes_on_one_node() {
    let factory = ClusterFactory::new();
    let clock = ManualClock::starting_now();
    let store = factory.node("node-a", &clock, false).await;
    let h = Harness::with_store(store.clone(), clock, |b| b);

    let s1 = h.post("/cart/add?item=x", None).await.cookie();
    for item in ["y", "z"] {
        assert_eq!(
            h.post(&format!("/cart/add?item={item}"), Some(&s1))
                .await
                .status,
            StatusCode::NO_CONTENT
        );
    }
    let hits = store.stats().hits;
    assert_eq!(h.get("/cart", Some(&s1)).await.body, "[x,y,z]");
    assert_eq!(store.stats().hits, hits + 1, "served from the cache");
    assert_eq!(store.stats().misses, 0, "every read on this node was a hit");
}

/// Across nodes, concurrent writes on A and B never lose an update. The
/// loser of a race gets 409, and its item is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_two_nodes_lose_nothing() {
    let nodes = TwoNodes::start(false).await;
    for round in 0..50 {
        let s1 = nodes.a.login("user-a", None).await.cookie();
        // Both nodes cache the session first.
        assert_eq!(nodes.b.get("/cart", Some(&s1)).await.body, "[]");
        let (x, y) = tokio::join!(
            nodes.a.post("/cart/add?item=x&delay_ms=5", Some(&s1)),
            nodes.b.post("/cart/add?item=y&delay_ms=5", Some(&s1)),
        );
        let mut expected = Vec::new();
        for (response, item) in [(&x, "x"), (&y, "y")] {
            match response.status {
                StatusCode::NO_CONTENT => expected.push(item),
                StatusCode::CONFLICT => {}
                other => panic!("round {round}: unexpected {other} for {item}"),
            }
        }
        assert!(!expected.is_empty(), "round {round}: one write wins");
        nodes.a_store.catch_up().await.unwrap();
        let cart = nodes.a.get("/cart", Some(&s1)).await.body;
        let mut items: Vec<&str> = cart
            .trim_matches(['[', ']'])
            .split(',')
            .filter(|item| !item.is_empty())
            .collect();
        items.sort_unstable();
        assert_eq!(items, expected, "round {round}: {cart}");
    }
}

/// While Redis is down and the cache has stopped serving, a read is a
/// 503 that deletes no cookie. After the restart the session is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_never_logs_the_user_out() {
    let mut server =
        redis_server::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let factory = ClusterFactory::on(server.url());
    let h = Harness::new(&factory, |b| b).await;
    let s1 = h.login("user-a", None).await.cookie();
    assert_eq!(h.get("/me", Some(&s1)).await.body, "user-a");

    server.kill();
    let mut down = None;
    for _ in 0..500 {
        let response = h.get("/me", Some(&s1)).await;
        if response.status != StatusCode::OK {
            down = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let down = down.expect("the cache stops serving once its subscriber is disconnected");
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        down.set_cookies().is_empty(),
        "no cookie-deleting Set-Cookie"
    );

    server.restart();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..500 {
        let up = h.get("/me", Some(&s1)).await;
        status = up.status;
        if status == StatusCode::OK {
            assert_eq!(up.body, "user-a");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "the session is served again after the restart"
    );
}

/// Values the app caches in the same database never replace a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_cache_keys_never_replace_a_session() {
    let nodes = TwoNodes::start(false).await;
    let s1 = nodes.a.login("user-a", None).await.cookie();
    let id = id_of(&s1).encode();

    let mut admin = redis_server::admin(&redis_server::shared_url());
    let keys = [id.clone(), format!("sess:{id}"), format!("session:{id}")];
    for key in &keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("{\"user\":\"admin-b\"}")
            .arg("PX")
            .arg(60_000)
            .query(&mut admin)
            .unwrap();
    }
    assert_eq!(nodes.b.get("/me", Some(&s1)).await.body, "user-a");
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut admin).unwrap();
}

/// The layer's graceful shutdown stops the store's subscriber, and the app
/// keeps serving from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_shutdown_stops_the_subscriber() {
    let nodes = TwoNodes::start(false).await;
    let s1 = nodes.a.login("user-a", None).await.cookie();

    nodes.a.layer.shutdown().await.unwrap();
    assert!(
        nodes.a_store.catch_up().await.is_err(),
        "no subscriber answers any more"
    );
    let hits = nodes.a_store.stats().hits;
    assert_eq!(nodes.a.get("/me", Some(&s1)).await.body, "user-a");
    assert_eq!(nodes.a_store.stats().hits, hits, "read from Redis");

    assert_eq!(
        nodes.b.post("/logout", Some(&s1)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        nodes.a.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// On the clustered store: a failed write during rotation keeps the old
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rotation_keeps_the_old_clustered_session() {
    let factory = ClusterFactory::new();
    let clock = ManualClock::starting_now();
    let (store, _) = factory.make(clock.clone()).await;
    support::faulty::failed_rotation_keeps_the_old_session(store, clock).await;
}

/// On the clustered store: slow writes still finish before the redirect
/// leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clustered_writes_finish_before_the_redirect() {
    let factory = ClusterFactory::new();
    let clock = ManualClock::starting_now();
    let (store, _) = factory.make(clock.clone()).await;
    support::faulty::slow_writes_finish_before_the_redirect(store, clock).await;
}
