//! The Redis store and the clustered store on a private three-master Redis
//! Cluster.

#![cfg(feature = "redis")]

mod support {
    pub mod redis_server;
}

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use deadpool_redis::redis;
use session_core::conformance::{self, stored};
use session_core::{
    ClusteredRedisStore, CreateOutcome, ManualClock, RedisStore, SaveOutcome, SessionConfig,
    SessionStore,
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

#[tokio::test]
async fn clustered_store_conformance_suite_passes_on_a_cluster() {
    let cluster = RedisCluster::start();
    let check = AtomicUsize::new(0);
    conformance::run_all(|clock| {
        let prefix = format!(
            "clustered:{}:session:",
            check.fetch_add(1, Ordering::Relaxed)
        );
        let builder = ClusteredRedisStore::cluster_from_urls(cluster.urls())
            .key_prefix(prefix)
            .clock(Arc::new(clock.clone()));
        async move { builder.build().await.unwrap() }
    })
    .await;

    let check = AtomicUsize::new(0);
    conformance::run_all(|clock| {
        let prefix = format!(
            "clustered-fenced:{}:session:",
            check.fetch_add(1, Ordering::Relaxed)
        );
        let config = SessionConfig::testing(b"cluster test secret, 32 bytes!!!")
            .clock(clock.clone())
            .build()
            .unwrap();
        let builder = ClusteredRedisStore::cluster_from_urls(cluster.urls())
            .key_prefix(prefix)
            .encrypt_with(&config)
            .fenced_reads(true);
        async move { builder.build().await.unwrap() }
    })
    .await;
}

/// Each subscriber has one shard subscription, on the master that owns the
/// channel's slot, whichever node it was given first. Invalidations go
/// through `SPUBLISH`, and fences succeed.
#[tokio::test]
async fn clustered_store_subscribes_on_the_channel_owner() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::starting_now();
    let channel = "owner:invalidations";
    let slot = cluster.slot_of(channel);
    let owner = cluster.owner_of(slot);

    // Every node first, so that all but one start with a MOVED reply.
    let mut stores = Vec::new();
    for first in 0..cluster.nodes().len() {
        let mut urls = cluster.urls();
        urls.rotate_left(first);
        let store = ClusteredRedisStore::cluster_from_urls(urls)
            .key_prefix("owner:")
            .node_id(format!("node-{first}"))
            .clock(Arc::new(clock.clone()))
            .build()
            .await
            .unwrap();
        assert_eq!(store.channel(), channel);
        store.catch_up().await.unwrap();
        stores.push(store);
    }
    for index in 0..cluster.nodes().len() {
        let expected = if index == owner { 3 } else { 0 };
        assert_eq!(
            cluster.shard_subscribers(index, channel),
            expected,
            "shard subscribers on master {index}; the owner is {owner}"
        );
    }

    let session = stored(&clock, Some("alice"), b"v1");
    stores[0].create(&session).await.unwrap();
    assert!(stores[1].load(&session.id).await.unwrap().is_some());
    assert!(stores[0].delete(&session.id).await.unwrap());
    stores[1].catch_up().await.unwrap();
    assert_eq!(stores[1].stats().invalidations, 1);
    assert_eq!(stores[1].load(&session.id).await.unwrap(), None);

    // A dropped subscriber connection is a lost subscription: each store
    // clears its cache and subscribes on the owner again.
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut cluster.nodes()[owner].admin())
        .unwrap();
    assert_eq!(killed, 3);
    let mut resubscribed = false;
    for _ in 0..500 {
        resubscribed = stores.iter().all(|store| store.stats().subscriptions == 2)
            && cluster.shard_subscribers(owner, channel) == 3;
        if resubscribed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(resubscribed, "every store subscribed again on the owner");
    for store in &stores {
        assert!(store.stats().clears >= 2, "the cache was cleared");
    }

    let session = stored(&clock, Some("alice"), b"v2");
    stores[0].create(&session).await.unwrap();
    assert!(stores[2].load(&session.id).await.unwrap().is_some());
    assert!(stores[0].delete(&session.id).await.unwrap());
    stores[2].catch_up().await.unwrap();
    assert_eq!(stores[2].stats().invalidations, 2);
    assert_eq!(stores[2].load(&session.id).await.unwrap(), None);
}

/// The subscriber subscribes on the master of the channel's slot even when
/// it starts from that master's replica, which would accept `SSUBSCRIBE`
/// too. When the master dies and its replica takes over, each store loses
/// its subscription, clears its cache and subscribes on the new master.
/// Invalidations then reach the other store again.
#[tokio::test]
async fn clustered_store_follows_a_failover() {
    let mut cluster = RedisCluster::start_with_replicas();
    let clock = ManualClock::starting_now();
    let channel = "failover:invalidations";
    let slot = cluster.slot_of(channel);
    let old_owner = cluster.owner_of(slot);
    let replica = cluster
        .replica_of(old_owner)
        .expect("every master has a replica");

    // The replica first: the store must still subscribe on the master.
    let mut urls = cluster.urls();
    urls.swap(0, replica);
    let mut stores = Vec::new();
    for node_id in ["node-a", "node-b"] {
        let store = ClusteredRedisStore::cluster_from_urls(urls.clone())
            .key_prefix("failover:")
            .node_id(node_id)
            .clock(Arc::new(clock.clone()))
            .build()
            .await
            .unwrap();
        store.catch_up().await.unwrap();
        stores.push(store);
    }
    assert_eq!(cluster.shard_subscribers(old_owner, channel), 2);
    assert_eq!(cluster.shard_subscribers(replica, channel), 0);

    cluster.kill(old_owner);
    // The replica waits for the 1 s node timeout, then an election.
    let mut new_owner = old_owner;
    for _ in 0..1_500 {
        let owner = cluster.owner_of(slot);
        if owner != old_owner
            && stores.iter().all(|store| store.stats().subscriptions == 2)
            && cluster.shard_subscribers(owner, channel) == 2
        {
            new_owner = owner;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_ne!(
        new_owner, old_owner,
        "a replica took over and both stores subscribed on it"
    );
    for store in &stores {
        assert!(store.stats().clears >= 2, "the cache was cleared");
    }

    // The stores' cluster connections may still try the dead master for a
    // while, so each operation gets a few attempts.
    let mut created = None;
    for _ in 0..20 {
        let session = stored(&clock, Some("alice"), b"v1");
        if stores[0].create(&session).await.is_ok() {
            created = Some(session);
            break;
        }
    }
    let session = created.expect("a create succeeds after the failover");
    let mut loaded = None;
    for _ in 0..20 {
        if let Ok(found) = stores[1].load(&session.id).await {
            loaded = Some(found);
            break;
        }
    }
    assert!(loaded
        .expect("a load succeeds after the failover")
        .is_some());
    let hits = stores[1].stats().hits;
    assert!(stores[1].load(&session.id).await.unwrap().is_some());
    assert_eq!(stores[1].stats().hits, hits + 1, "B caches the session");

    let invalidations = stores[1].stats().invalidations;
    let mut deleted = false;
    for _ in 0..20 {
        if stores[0].delete(&session.id).await.is_ok() {
            deleted = true;
            break;
        }
    }
    assert!(deleted, "a delete succeeds after the failover");
    stores[1].catch_up().await.unwrap();
    assert!(stores[1].stats().invalidations > invalidations);
    assert_eq!(stores[1].load(&session.id).await.unwrap(), None);
}
