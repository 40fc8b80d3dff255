//! The HTTP cases against the Redis store on a three-master Redis Cluster
//! that the test starts on loopback ports. Starting a cluster takes
//! seconds, so one cluster serves every case, run in sequence.

mod support;

#[path = "../../session-core/tests/support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;

use session_axum::session_core::{RedisStore, SessionStore};
use session_axum::ManualClock;
use support::{BoxFuture, StoreFactory, StoreProbe};

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
            let probe = ClusterProbe {
                urls: self.urls.clone(),
                pattern: format!("{}{{*", self.prefix),
            };
            (
                Arc::new(store) as Arc<dyn SessionStore>,
                Arc::new(probe) as Arc<dyn StoreProbe>,
            )
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

/// While the slot holding a session migrates to another master, every
/// request keeps working; the client follows MOVED and ASK redirections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_survives_a_slot_migration() {
    use axum::http::StatusCode;
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
