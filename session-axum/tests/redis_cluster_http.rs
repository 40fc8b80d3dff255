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
