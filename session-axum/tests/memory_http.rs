//! The HTTP cases against the memory store, through the real layer.

mod support;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use session_axum::session_core::SessionStore;
use session_axum::{ManualClock, MemoryStore};
use support::{BoxFuture, StoreFactory, StoreProbe};

struct MemoryFactory;

struct MemoryProbe(MemoryStore);

impl StoreProbe for MemoryProbe {
    fn count(&self) -> BoxFuture<'_, u64> {
        Box::pin(async move { self.0.stats().live_sessions })
    }
}

impl StoreFactory for MemoryFactory {
    fn make(
        &self,
        clock: ManualClock,
    ) -> BoxFuture<'_, (Arc<dyn SessionStore>, Arc<dyn StoreProbe>)> {
        Box::pin(async move {
            let store = MemoryStore::builder().clock(Arc::new(clock)).build();
            let probe: Arc<dyn StoreProbe> = Arc::new(MemoryProbe(store.clone()));
            (Arc::new(store) as Arc<dyn SessionStore>, probe)
        })
    }
}

http_cases!(MemoryFactory);

/// Expired sessions are rejected before cleanup and purged by it.
#[tokio::test]
async fn expired_memory_sessions_are_rejected_then_purged() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    // The idle timeout is far longer than the test's real duration, because
    // moka also expires entries on its own real-time clock.
    let h = support::Harness::with_store(store.clone(), clock.clone(), |b| {
        b.idle_timeout(Some(time::Duration::minutes(10)))
            .refresh_interval(time::Duration::minutes(1))
    });
    let mut cookies = Vec::new();
    for _ in 0..10_000 {
        cookies.push(h.post("/cart/add?item=x", None).await.cookie());
    }
    assert_eq!(store.stats().live_sessions, 10_000);

    clock.advance(time::Duration::minutes(11));
    assert_eq!(h.get("/cart", Some(&cookies[0])).await.body, "[]");

    store.purge_expired();
    assert_eq!(store.stats().live_sessions, 0);
}

/// Anonymous churn beyond capacity never pushes out a signed-in user.
#[tokio::test]
async fn anonymous_churn_keeps_signed_in_users() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .capacity(1_000)
        .anonymous_capacity(1_000)
        .build();
    let h = support::Harness::with_store(store.clone(), clock, |b| b);
    let user = h.login("user-a", None).await.cookie();
    for _ in 0..5_000 {
        assert_eq!(
            h.post("/cart/add?item=x", None).await.status,
            axum::http::StatusCode::NO_CONTENT
        );
    }
    let me = h.get("/me", Some(&user)).await;
    assert_eq!(me.status, axum::http::StatusCode::OK);
    assert_eq!(me.body, "user-a");
    assert!(store.stats().live_sessions <= 1_001, "{:?}", store.stats());
}

/// A cookie signed with a retired key is accepted and re-issued under the
/// current key, so the retired key can later be dropped without logouts.
#[tokio::test]
async fn retired_signing_key_is_replaced_on_the_next_request() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    let new_secret = b"the next secret, also 32 bytes!!";

    let before = support::Harness::with_store(store.clone(), clock.clone(), |b| b);
    let old_cookie = before.login("user-a", None).await.cookie();

    let rotated = support::Harness::with_store(store.clone(), clock.clone(), |b| {
        b.secret(new_secret).retired_secret(support::SECRET)
    });
    let me = rotated.get("/me", Some(&old_cookie)).await;
    assert_eq!(me.status, axum::http::StatusCode::OK);
    let new_cookie = me.cookie();
    assert_ne!(new_cookie, old_cookie, "re-signed under the current key");
    assert_eq!(
        support::id_of(&new_cookie),
        support::id_of(&old_cookie),
        "same session"
    );
    assert!(rotated
        .get("/me", Some(&new_cookie))
        .await
        .session_cookies()
        .is_empty());

    let after = support::Harness::with_store(store, clock, |b| b.secret(new_secret));
    assert_eq!(after.get("/me", Some(&new_cookie)).await.body, "user-a");
    assert_eq!(
        after.get("/me", Some(&old_cookie)).await.status,
        axum::http::StatusCode::UNAUTHORIZED
    );
}

/// A layer that keeps a decoded copy of a session still serves what the
/// store contains after another layer (another node) changed it, and after a
/// logout elsewhere.
#[tokio::test]
async fn cached_session_follows_changes_made_elsewhere() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    let node_a = support::Harness::with_store(store.clone(), clock.clone(), |b| b);
    let node_b = support::Harness::with_store(store.clone(), clock.clone(), |b| b);

    let cookie = node_a.post("/cart/add?item=x", None).await.cookie();
    assert_eq!(node_a.get("/cart", Some(&cookie)).await.body, "[x]");
    assert_eq!(node_a.get("/cart", Some(&cookie)).await.body, "[x]");

    assert_eq!(
        node_b.post("/cart/add?item=y", Some(&cookie)).await.status,
        axum::http::StatusCode::NO_CONTENT
    );
    assert_eq!(node_a.get("/cart", Some(&cookie)).await.body, "[x,y]");

    store
        .delete(&support::id_of(&cookie))
        .await
        .expect("memory store delete");
    let after_logout = node_a.get("/cart", Some(&cookie)).await;
    assert_eq!(after_logout.body, "[]");
    assert_eq!(after_logout.session_cookies().len(), 1, "a removal cookie");
}

/// With the record and verified-id caches off, the layer behaves the same.
#[tokio::test]
async fn layer_without_caches_serves_sessions() {
    let clock = ManualClock::starting_now();
    let config = support::test_config(&clock, |b| b);
    let store = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    let layer = session_axum::SessionLayer::<support::TestSession>::new(store, config)
        .record_cache(0)
        .verified_id_cache(0);
    let app = support::app::router(layer);

    let added = support::send_to(&app, Method::POST, "/cart/add?item=x", None).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT);
    let cookie = added.cookie();
    for _ in 0..2 {
        let read = support::send_to(&app, Method::GET, "/cart", Some(&cookie)).await;
        assert_eq!(read.body, "[x]");
    }
}

/// The layer's clock ends the renewal grace window even when the store
/// runs on the system clock.
#[tokio::test]
async fn renewal_grace_follows_the_layer_clock() {
    let clock = ManualClock::starting_now();
    let h = support::Harness::with_store(MemoryStore::default(), clock.clone(), |b| {
        b.renewal_interval(Some(time::Duration::minutes(10)))
            .renewal_grace(time::Duration::seconds(30))
    });
    let s1 = h.post("/cart/add?item=x", None).await.cookie();

    clock.advance(time::Duration::minutes(10));
    let s2 = h.get("/cart", Some(&s1)).await.cookie();
    assert_ne!(support::id_of(&s2), support::id_of(&s1));

    clock.advance(time::Duration::seconds(35));
    let old = h.get("/cart", Some(&s1)).await;
    assert_eq!(old.body, "[]");
    assert_eq!(old.session_cookies().len(), 1, "a removal cookie");
    assert_eq!(h.get("/cart", Some(&s2)).await.body, "[x]");
}
