//! The Redis store on a private three-master Redis Cluster.

#![cfg(feature = "redis")]

mod support {
    pub mod redis_server;
}

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use session_core::conformance::{self, stored};
use session_core::{
    CreateOutcome, ManualClock, RedisStore, SaveOutcome, SessionConfig, SessionStore,
};
use support::redis_server::{scan, RedisCluster};

fn cluster_store(cluster: &RedisCluster, prefix: &str, clock: &ManualClock) -> RedisStore {
    RedisStore::cluster_from_urls(cluster.urls())
        .key_prefix(prefix)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid cluster store configuration")
}

#[tokio::test]
async fn conformance_suite_passes_on_a_cluster() {
    let cluster = RedisCluster::start();
    let check = AtomicUsize::new(0);
    conformance::run_all(|clock| {
        let prefix = format!(
            "conformance:{}:session:",
            check.fetch_add(1, Ordering::Relaxed)
        );
        let store = cluster_store(&cluster, &prefix, clock);
        async move { store }
    })
    .await;

    let check = AtomicUsize::new(0);
    conformance::run_all(|clock| {
        let prefix = format!("sealed:{}:session:", check.fetch_add(1, Ordering::Relaxed));
        let config = SessionConfig::testing(b"cluster test secret, 32 bytes!!!")
            .clock(clock.clone())
            .build()
            .unwrap();
        let store = RedisStore::cluster_from_urls(cluster.urls())
            .key_prefix(prefix)
            .encrypt_with(&config)
            .build()
            .unwrap();
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn session_keys_spread_over_every_master() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::starting_now();
    let store = cluster_store(&cluster, "spread:", &clock);
    for index in 0..1_000 {
        let identity = format!("user-{}", index % 50);
        let session = stored(&clock, Some(&identity), b"x");
        assert_eq!(
            store.create(&session).await.unwrap(),
            CreateOutcome::Created
        );
    }

    let mut total = 0;
    for node in cluster.nodes() {
        let mut admin = node.admin();
        let sessions = scan(&mut admin, "spread:{*").len();
        let indexes = scan(&mut admin, "spread:identity:{*").len();
        // 1 000 keys over three masters: about 333 each, and a binomial
        // spread puts fewer than 200 on one master with negligible odds.
        assert!(
            sessions >= 200,
            "master {} holds only {sessions} session keys",
            node.port()
        );
        assert!(
            indexes > 0,
            "master {} holds no identity index",
            node.port()
        );
        total += sessions;
    }
    assert_eq!(total, 1_000);
}

#[tokio::test]
async fn rotation_and_identity_listing_work_across_slots() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::starting_now();
    let store = cluster_store(&cluster, "rotation:", &clock);

    // Sign in on an anonymous session, then rotate its id the way a login
    // does: create the new id, then delete the old one.
    let anonymous = stored(&clock, None, b"cart");
    store.create(&anonymous).await.unwrap();
    let mut signed_in = anonymous.clone();
    signed_in.version = 2;
    signed_in.identity = Some("alice".into());
    assert_eq!(store.save(&signed_in, 1).await.unwrap(), SaveOutcome::Saved);

    let mut rotated = signed_in.clone();
    rotated.id = session_core::SessionId::random();
    rotated.version = 1;
    assert_eq!(
        store.create(&rotated).await.unwrap(),
        CreateOutcome::Created
    );
    assert!(store.delete(&signed_in.id).await.unwrap());

    let others: Vec<_> = (0..20)
        .map(|_| stored(&clock, Some("alice"), b"device"))
        .collect();
    for session in &others {
        store.create(session).await.unwrap();
    }
    let mut expected: BTreeSet<String> = others.iter().map(|session| session.id.encode()).collect();
    expected.insert(rotated.id.encode());
    let listed: BTreeSet<String> = store
        .list_by_identity("alice")
        .await
        .unwrap()
        .iter()
        .map(|id| id.encode())
        .collect();
    assert_eq!(listed, expected);

    assert_eq!(store.delete_by_identity("alice").await.unwrap(), 21);
    assert!(store.list_by_identity("alice").await.unwrap().is_empty());
    assert_eq!(store.load(&rotated.id).await.unwrap(), None);

    // Deleting every session also emptied, and so removed, the index.
    for node in cluster.nodes() {
        let left = scan(&mut node.admin(), "*");
        assert!(
            left.is_empty(),
            "master {} still holds {left:?}",
            node.port()
        );
    }
}
