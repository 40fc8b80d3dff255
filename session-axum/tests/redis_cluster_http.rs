//! The HTTP cases against the Redis store and the clustered store on a
//! three-master Redis Cluster that the test starts on loopback ports.
//! Starting a cluster takes seconds, so one cluster serves every case, run
//! in sequence, and tests that run at the same time share one cluster.
//! Then two app instances on the clustered store, each with its own layer,
//! store, cache and node id, which must behave as one app, also while the
//! invalidation channel's slot moves to another master.

mod support;

#[path = "../../session-core/tests/support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use session_axum::session_core::{RedisStore, SessionStore};
use session_axum::{ClusteredRedisStore, ManualClock};
use support::two_nodes::NodePair;
use support::{BoxFuture, Harness, StoreFactory, StoreProbe};

/// Builds cluster stores under a prefix of its own and deletes every key
/// under it on every master when dropped.
struct ClusterFactory {
    urls: Vec<String>,
    prefix: String,
}

impl ClusterFactory {
    fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            prefix: redis_server::unique_prefix("cluster-http"),
        }
    }
}

impl Drop for ClusterFactory {
    fn drop(&mut self) {
        // One key per DEL: a multi-key DEL fails when the keys sit in
        // different slots.
        for url in &self.urls {
            let mut connection = redis_server::admin(url);
            for key in redis_server::scan(&mut connection, &format!("{}*", self.prefix)) {
                let _: Result<(), _> = deadpool_redis::redis::cmd("DEL")
                    .arg(&key)
                    .query(&mut connection);
            }
        }
    }
}

struct ClusterProbe {
    urls: Vec<String>,
    pattern: String,
}

impl StoreProbe for ClusterProbe {
    fn count(&self) -> BoxFuture<'_, u64> {
        let urls = self.urls.clone();
        let pattern = self.pattern.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                urls.iter()
                    .map(|url| {
                        let mut connection = redis_server::admin(url);
                        redis_server::scan(&mut connection, &pattern).len() as u64
                    })
                    .sum()
            })
            .await
            .unwrap()
        })
    }
}

impl ClusterFactory {
    /// Builds one node of the clustered store on the cluster, under this
    /// factory's prefix and so on its channel.
    async fn clustered_node(
        &self,
        node_id: &str,
        clock: &ManualClock,
        fenced_reads: bool,
    ) -> ClusteredRedisStore {
        ClusteredRedisStore::cluster_from_urls(self.urls.clone())
            .key_prefix(self.prefix.clone())
            .clock(Arc::new(clock.clone()))
            .node_id(node_id)
            .fenced_reads(fenced_reads)
            .build()
            .await
            .expect("valid clustered store configuration")
    }

    fn probe(&self) -> Arc<dyn StoreProbe> {
        Arc::new(ClusterProbe {
            urls: self.urls.clone(),
            pattern: format!("{}{{*", self.prefix),
        })
    }
}

impl StoreFactory for ClusterFactory {
    fn make(
        &self,
        clock: ManualClock,
    ) -> BoxFuture<'_, (Arc<dyn SessionStore>, Arc<dyn StoreProbe>)> {
        Box::pin(async move {
            let store = RedisStore::cluster_from_urls(self.urls.clone())
                .key_prefix(self.prefix.clone())
                .clock(Arc::new(clock))
                .build()
                .expect("valid Redis Cluster store configuration");
            (Arc::new(store) as Arc<dyn SessionStore>, self.probe())
        })
    }
}

/// Builds clustered stores (one node, without fenced reads) on the cluster.
struct ClusteredFactory(ClusterFactory);

impl StoreFactory for ClusteredFactory {
    fn make(
        &self,
        clock: ManualClock,
    ) -> BoxFuture<'_, (Arc<dyn SessionStore>, Arc<dyn StoreProbe>)> {
        Box::pin(async move {
            let store = self.0.clustered_node("node-a", &clock, false).await;
            (Arc::new(store) as Arc<dyn SessionStore>, self.0.probe())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_case_passes_on_redis_cluster() {
    let cluster = redis_server::RedisCluster::start();
    let urls = cluster.urls();
    http_cases_in_sequence!(|| ClusterFactory::new(urls.clone()));
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_clustered_http_case_passes() {
    let cluster = redis_server::RedisCluster::shared();
    let urls = cluster.urls();
    http_cases_in_sequence!(|| ClusteredFactory(ClusterFactory::new(urls.clone())));
}

/// Two instances of the test app on the clustered store, on one cluster and
/// one channel.
struct TwoNodes {
    pair: NodePair,
    _factory: ClusterFactory,
}

impl TwoNodes {
    async fn start(urls: Vec<String>, fenced_reads: bool) -> Self {
        let factory = ClusterFactory::new(urls);
        let clock = ManualClock::starting_now();
        let a_store = factory.clustered_node("node-a", &clock, fenced_reads).await;
        let b_store = factory.clustered_node("node-b", &clock, fenced_reads).await;
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

/// With fenced reads, a logout on B is honoured by A on the very next
/// request, although A had the session cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_b_applies_on_a_at_once() {
    let cluster = redis_server::RedisCluster::shared();
    TwoNodes::start(cluster.urls(), true)
        .await
        .logout_on_b_applies_on_a_at_once(50)
        .await;
}

/// Without fenced reads, the logout reaches A as an invalidation once A has
/// applied what was published before (`catch_up`), not through the cache
/// TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_b_reaches_a_as_an_invalidation() {
    let cluster = redis_server::RedisCluster::shared();
    TwoNodes::start(cluster.urls(), false)
        .await
        .logout_on_b_reaches_a_as_an_invalidation(20)
        .await;
}

/// A write on A is read on B, and B's write is read back on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_a_is_read_on_b() {
    let cluster = redis_server::RedisCluster::shared();
    TwoNodes::start(cluster.urls(), true)
        .await
        .write_on_a_is_read_on_b()
        .await;
}

/// Polls `condition` every 20 ms, at most 10 s, and reports whether it held.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// When the invalidation channel's slot moves to another master, the old
/// master ends both nodes' shard subscriptions. Each node clears its cache
/// and subscribes on the new owner, and invalidations published after the
/// move reach the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_slot_move_resubscribes_on_the_new_owner() {
    // The test moves a slot, so it has a cluster of its own.
    let cluster = Arc::new(redis_server::RedisCluster::start());
    let nodes = TwoNodes::start(cluster.urls(), false).await;
    let channel = nodes.a_store.channel().to_owned();
    assert_eq!(nodes.b_store.channel(), channel);
    let slot = cluster.slot_of(&channel);
    let old_owner = cluster.owner_of(slot);
    assert_eq!(cluster.shard_subscribers(old_owner, &channel), 2);

    // Both nodes cache the session.
    let s1 = nodes.a.login("user-a", None).await.cookie();
    assert_eq!(nodes.a.get("/me", Some(&s1)).await.body, "user-a");
    assert_eq!(nodes.b.get("/me", Some(&s1)).await.body, "user-a");
    let a_before = nodes.a_store.stats();
    let b_before = nodes.b_store.stats();
    assert_eq!(a_before.subscriptions, 1);
    assert_eq!(b_before.subscriptions, 1);

    let moving = cluster.clone();
    let (source, target) = tokio::task::spawn_blocking(move || moving.move_slot(slot))
        .await
        .unwrap();
    assert_eq!(source, old_owner);

    let (a_store, b_store) = (nodes.a_store.clone(), nodes.b_store.clone());
    let resubscribed = eventually(|| {
        a_store.stats().subscriptions == 2
            && b_store.stats().subscriptions == 2
            && cluster.shard_subscribers(target, &channel) == 2
    })
    .await;
    assert!(
        resubscribed,
        "both nodes subscribe on the new owner: subscriptions {} and {}, {} subscribers on the new owner",
        nodes.a_store.stats().subscriptions,
        nodes.b_store.stats().subscriptions,
        cluster.shard_subscribers(target, &channel),
    );
    assert_eq!(cluster.shard_subscribers(source, &channel), 0);
    assert!(nodes.a_store.stats().clears > a_before.clears);
    assert!(nodes.b_store.stats().clears > b_before.clears);

    // The cache was cleared, so A's next read goes to Redis. The read after
    // it is served from the cache again.
    nodes.a_store.catch_up().await.unwrap();
    let before = nodes.a_store.stats();
    assert_eq!(nodes.a.get("/me", Some(&s1)).await.body, "user-a");
    let after = nodes.a_store.stats();
    assert_eq!(after.hits, before.hits, "the cache was cleared");
    assert_eq!(after.misses, before.misses + 1);
    assert_eq!(nodes.a.get("/me", Some(&s1)).await.body, "user-a");
    assert_eq!(nodes.a_store.stats().hits, after.hits + 1);

    // B's store may still route SPUBLISH by the slot map from before the
    // move, and then the cluster client follows the MOVED reply.
    let invalidations = nodes.a_store.stats().invalidations;
    assert_eq!(
        nodes.b.post("/logout", Some(&s1)).await.status,
        StatusCode::SEE_OTHER
    );
    nodes.a_store.catch_up().await.unwrap();
    assert_eq!(nodes.a_store.stats().invalidations, invalidations + 1);
    assert_eq!(
        nodes.a.get("/me", Some(&s1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    drop(nodes);
}

/// While the slot holding a session migrates to another master, every
/// request keeps working; the client follows MOVED and ASK redirections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_survives_a_slot_migration() {
    use deadpool_redis::redis;

    let cluster = redis_server::RedisCluster::start();
    let factory = ClusterFactory::new(cluster.urls());
    let h = support::Harness::new(&factory, |b| b).await;
    let s1 = h.login("user-a", None).await.cookie();
    let key = format!("{}{{{}}}", factory.prefix, support::id_of(&s1).encode());

    let ports: Vec<u16> = cluster.nodes().iter().map(|node| node.port()).collect();
    let urls = cluster.urls();
    let migration = tokio::task::spawn_blocking(move || {
        let mut admins: Vec<redis::Connection> =
            urls.iter().map(|url| redis_server::admin(url)).collect();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query(&mut admins[0])
            .unwrap();
        let ids: Vec<String> = admins
            .iter_mut()
            .map(|admin| redis::cmd("CLUSTER").arg("MYID").query(admin).unwrap())
            .collect();
        let source = (0..admins.len())
            .find(|&index| {
                let count: u64 = redis::cmd("CLUSTER")
                    .arg("COUNTKEYSINSLOT")
                    .arg(slot)
                    .query(&mut admins[index])
                    .unwrap();
                count > 0
            })
            .expect("one master holds the session key");
        let target = (source + 1) % admins.len();

        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&ids[source])
            .query(&mut admins[target])
            .unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&ids[target])
            .query(&mut admins[source])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100)
            .query(&mut admins[source])
            .unwrap();
        let _: () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(ports[target])
            .arg("")
            .arg(0)
            .arg(5_000)
            .arg("KEYS")
            .arg(&keys)
            .query(&mut admins[source])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        for admin in admins.iter_mut() {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&ids[target])
                .query(admin)
                .unwrap();
        }
        (source, target)
    });

    let mut requests = 0;
    while !migration.is_finished() && requests < 5_000 {
        let me = h.get("/me", Some(&s1)).await;
        assert_eq!(
            me.status,
            StatusCode::OK,
            "request {requests} during the migration"
        );
        assert_eq!(me.body, "user-a");
        requests += 1;
    }
    let (source, target) = migration.await.unwrap();
    assert_ne!(source, target);
    // The migration sleeps 200 ms between its steps, so requests ran meanwhile.
    assert!(requests > 0, "no request ran during the migration");
    for round in 0..50 {
        let me = h.get("/me", Some(&s1)).await;
        assert_eq!(
            me.status,
            StatusCode::OK,
            "request {round} after the migration"
        );
    }
    assert_eq!(
        h.post("/cart/add?item=x", Some(&s1)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.get("/cart", Some(&s1)).await.body, "[x]");
    drop(factory);
    drop(cluster);
}
