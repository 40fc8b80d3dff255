//! Store failures seen through the layer: a store that fails on command
//! wraps the memory store, so each fault hits an exact operation.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use session_axum::session_core::{
    CreateOutcome, SaveOutcome, SessionId, SessionStore, StoreError, StoredSession,
};
use session_axum::{ManualClock, MemoryStore, StoreFailureMode};
use support::{id_of, Harness};
use time::OffsetDateTime;

/// Which operations fail, and how long every operation takes.
#[derive(Debug, Default)]
struct Faults {
    reads: AtomicBool,
    writes: AtomicBool,
    latency_ms: AtomicU64,
    calls: AtomicU64,
}

#[derive(Debug, Clone)]
struct FaultyStore {
    inner: MemoryStore,
    faults: Arc<Faults>,
}

impl FaultyStore {
    async fn enter(&self, write: bool) -> Result<(), StoreError> {
        self.faults.calls.fetch_add(1, Ordering::SeqCst);
        let latency = self.faults.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let failing = if write {
            &self.faults.writes
        } else {
            &self.faults.reads
        };
        if failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                message: "injected fault".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for FaultyStore {
    async fn load(&self, id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        self.enter(false).await?;
        self.inner.load(id).await
    }
    async fn create(&self, session: &StoredSession) -> Result<CreateOutcome, StoreError> {
        self.enter(true).await?;
        self.inner.create(session).await
    }
    async fn save(
        &self,
        session: &StoredSession,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.enter(true).await?;
        self.inner.save(session, expected).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        at: Option<OffsetDateTime>,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.enter(true).await?;
        self.inner.touch(id, at, expected).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.enter(true).await?;
        self.inner.delete(id).await
    }
    async fn list_by_identity(&self, identity: &str) -> Result<Vec<SessionId>, StoreError> {
        self.enter(false).await?;
        self.inner.list_by_identity(identity).await
    }
    async fn delete_by_identity(&self, identity: &str) -> Result<usize, StoreError> {
        self.enter(true).await?;
        self.inner.delete_by_identity(identity).await
    }
}

fn faulty() -> (Harness, Arc<Faults>, MemoryStore) {
    let clock = ManualClock::starting_now();
    let inner = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    let faults = Arc::new(Faults::default());
    let store = FaultyStore {
        inner: inner.clone(),
        faults: faults.clone(),
    };
    (Harness::with_store(store, clock, |b| b), faults, inner)
}

/// B07: a failed write during rotation keeps the old session and sends no
/// cookie for an id that was never stored.
#[tokio::test]
async fn failed_rotation_keeps_the_old_session() {
    let (h, faults, inner) = faulty();
    let s1 = h.login("user-a", None).await.cookie();
    assert_eq!(
        h.post("/cart/add?item=x", Some(&s1)).await.status,
        StatusCode::NO_CONTENT
    );

    faults.writes.store(true, Ordering::SeqCst);
    let relogin = h.login("user-a", Some(&s1)).await;
    assert_eq!(relogin.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        relogin.body,
        "Session store is unavailable, please retry later"
    );
    assert!(
        relogin.set_cookies().is_empty(),
        "no cookie names an id that was never stored"
    );

    faults.writes.store(false, Ordering::SeqCst);
    assert_eq!(h.get("/cart", Some(&s1)).await.body, "[x]");
    assert_eq!(inner.stats().live_sessions, 1);
}

/// B16: the write finishes before the redirect leaves, so the next page
/// always sees it.
#[tokio::test]
async fn slow_writes_finish_before_the_redirect() {
    let (h, faults, _) = faulty();
    faults.latency_ms.store(30, Ordering::SeqCst);
    for _ in 0..10 {
        let login = h.login("user-a", None).await;
        assert_eq!(login.status, StatusCode::SEE_OTHER);
        assert_eq!(h.get("/me", Some(&login.cookie())).await.body, "user-a");
    }
}

/// B16: a failed write is a 503, not a redirect that claims success.
#[tokio::test]
async fn failed_write_is_503_not_a_redirect() {
    let (h, faults, _) = faulty();
    faults.writes.store(true, Ordering::SeqCst);
    let login = h.login("user-a", None).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login.location(), None);
    assert_eq!(login.headers.get("cache-control").unwrap(), "no-store");
}

/// B57, C24: a store outage is never "not found": no cookie is deleted and
/// the session works again once the store is back.
#[tokio::test]
async fn outage_is_503_and_never_logs_out() {
    let (h, faults, _) = faulty();
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

/// B58: without a cookie, a route that ignores the session never calls the store.
#[tokio::test]
async fn outage_does_not_touch_cookieless_public_routes() {
    let (h, faults, _) = faulty();
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
    let clock = ManualClock::starting_now();
    let inner = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    let faults = Arc::new(Faults::default());
    let store = FaultyStore {
        inner: inner.clone(),
        faults: faults.clone(),
    };
    let mut h = Harness::with_store(store, clock, |b| b);
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
