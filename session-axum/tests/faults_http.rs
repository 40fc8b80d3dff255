//! Store failures seen through the layer: a store that fails on command
//! wraps the memory store, so each fault hits an exact operation.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::StatusCode;
use session_axum::session_core::SessionStore;
use session_axum::{ManualClock, MemoryStore, StoreFailureMode};
use support::faulty::{self, faulty_harness, Faults};
use support::{id_of, Harness};

fn memory() -> (Arc<dyn SessionStore>, ManualClock) {
    let clock = ManualClock::starting_now();
    let inner = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    (Arc::new(inner), clock)
}

fn faulty() -> (Harness, Arc<Faults>) {
    let (inner, clock) = memory();
    faulty_harness(inner, clock)
}

/// A failed write during rotation keeps the old session.
#[tokio::test]
async fn failed_rotation_keeps_the_old_session() {
    let (inner, clock) = memory();
    faulty::failed_rotation_keeps_the_old_session(inner, clock).await;
}

/// The write finishes before the redirect leaves.
#[tokio::test]
async fn slow_writes_finish_before_the_redirect() {
    let (inner, clock) = memory();
    faulty::slow_writes_finish_before_the_redirect(inner, clock).await;
}

/// A failed write is a 503, not a redirect that claims success.
#[tokio::test]
async fn failed_write_is_503_not_a_redirect() {
    let (h, faults) = faulty();
    faults.writes.store(true, Ordering::SeqCst);
    let login = h.login("user-a", None).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login.location(), None);
    assert_eq!(login.headers.get("cache-control").unwrap(), "no-store");
}

/// A store outage is never "not found": no cookie is deleted and
/// the session works again once the store is back.
#[tokio::test]
async fn outage_is_503_and_never_logs_out() {
    let (h, faults) = faulty();
    let s1 = h.login("user-a", None).await.cookie();

    faults.reads.store(true, Ordering::SeqCst);
    faults.writes.store(true, Ordering::SeqCst);
    let down = h.get("/me", Some(&s1)).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        down.set_cookies().is_empty(),
        "no cookie-deleting Set-Cookie"
    );

    faults.reads.store(false, Ordering::SeqCst);
    faults.writes.store(false, Ordering::SeqCst);
    assert_eq!(h.get("/me", Some(&s1)).await.body, "user-a");
}

/// Without a cookie, a route that ignores the session never calls the store.
#[tokio::test]
async fn outage_does_not_touch_cookieless_public_routes() {
    let (h, faults) = faulty();
    faults.reads.store(true, Ordering::SeqCst);
    let calls = faults.calls.load(Ordering::SeqCst);
    let public = h.get("/public", None).await;
    assert_eq!(public.status, StatusCode::OK);
    let me = h.get("/me", None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        faults.calls.load(Ordering::SeqCst),
        calls,
        "no store call without a cookie"
    );
}

/// Fail-open mode: an outage serves the request as anonymous and writes
/// nothing back over the stored session.
#[tokio::test]
async fn fail_open_serves_anonymous_and_writes_nothing() {
    let (inner, clock) = memory();
    let (mut h, faults) = faulty_harness(inner.clone(), clock);
    let layer = session_axum::SessionLayer::<support::TestSession>::from_shared_store(
        h.store.clone(),
        h.config.clone(),
    )
    .on_store_failure(StoreFailureMode::ServeAnonymous);
    h.app = support::app::router(layer);

    let s1 = h.login("user-a", None).await.cookie();
    assert_eq!(
        h.post("/cart/add?item=x", Some(&s1)).await.status,
        StatusCode::NO_CONTENT
    );

    faults.reads.store(true, Ordering::SeqCst);
    let me = h.get("/me", Some(&s1)).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "served as anonymous");
    let add = h.post("/cart/add?item=y", Some(&s1)).await;
    assert_eq!(add.status, StatusCode::NO_CONTENT);
    assert!(
        add.set_cookies().is_empty(),
        "nothing written, no new cookie"
    );

    faults.reads.store(false, Ordering::SeqCst);
    assert_eq!(
        h.get("/cart", Some(&s1)).await.body,
        "[x]",
        "the stored session is intact"
    );
    assert_eq!(
        inner.list_by_identity("user-a").await.unwrap(),
        vec![id_of(&s1)]
    );
}
